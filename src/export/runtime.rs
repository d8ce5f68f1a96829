//! tokio runtime metrics (feature `tokio-metrics`), sampled with tokio-metrics'
//! [`RuntimeMonitor`](tokio_metrics::RuntimeMonitor) on the export thread at every metric
//! collection, beside heapspan's own under `tokio.` names (see [`super::names`]).
//!
//! The runtime is the one given to [`ExportConfig::tokio_runtime`](super::ExportConfig), else
//! the one [`Builder::start`](crate::Builder::start) is called in; with neither, no runtime
//! metrics are exported.

use opentelemetry::metrics::{Counter, Gauge, Meter};

use super::names as n;

/// The instruments and the monitor's interval iterator.
pub(crate) struct RuntimeMetrics {
    intervals: tokio_metrics::RuntimeIntervals,
    workers: Gauge<u64>,
    alive: Gauge<u64>,
    global_queue: Gauge<u64>,
    busy: Counter<f64>,
    parks: Counter<u64>,
    #[cfg(tokio_unstable)]
    polls: Counter<u64>,
}

impl RuntimeMetrics {
    pub(crate) fn new(m: &Meter, handle: Option<&tokio::runtime::Handle>) -> Option<Self> {
        let handle = handle?;
        Some(RuntimeMetrics {
            intervals: tokio_metrics::RuntimeMonitor::new(handle).intervals(),
            workers: m
                .u64_gauge(n::TOKIO_RUNTIME_WORKERS)
                .with_unit(n::UNIT_WORKERS)
                .with_description("Worker threads of the runtime.")
                .build(),
            alive: m
                .u64_gauge(n::TOKIO_RUNTIME_TASKS_ALIVE)
                .with_unit(n::UNIT_TASKS)
                .with_description("Tasks alive in the runtime.")
                .build(),
            global_queue: m
                .u64_gauge(n::TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH)
                .with_unit(n::UNIT_TASKS)
                .with_description("Tasks waiting in the runtime's global queue.")
                .build(),
            busy: m
                .f64_counter(n::TOKIO_RUNTIME_WORKER_BUSY_DURATION)
                .with_unit(n::UNIT_SECONDS)
                .with_description("Time the workers spent busy, summed over workers.")
                .build(),
            parks: m
                .u64_counter(n::TOKIO_RUNTIME_WORKER_PARKS)
                .with_unit(n::UNIT_PARKS)
                .with_description("Times the workers parked, summed over workers.")
                .build(),
            #[cfg(tokio_unstable)]
            polls: m
                .u64_counter(n::TOKIO_RUNTIME_WORKER_POLLS)
                .with_unit(n::UNIT_POLLS)
                .with_description("Task polls by the workers (needs --cfg tokio_unstable).")
                .build(),
        })
    }

    /// Samples the runtime (deltas since the last call) and records them.
    pub(crate) fn record(&mut self) {
        let Some(m) = self.intervals.next() else {
            return;
        };
        self.workers.record(m.workers_count as u64, &[]);
        self.alive.record(m.live_tasks_count as u64, &[]);
        self.global_queue.record(m.global_queue_depth as u64, &[]);
        self.busy.add(m.total_busy_duration.as_secs_f64(), &[]);
        self.parks.add(m.total_park_count, &[]);
        #[cfg(tokio_unstable)]
        self.polls.add(m.total_polls_count, &[]);
    }
}
