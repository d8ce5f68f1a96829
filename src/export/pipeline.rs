//! The export thread: every metric interval it takes a snapshot, turns the per-name figures
//! into instrument updates and exports what heapspan's reader collected; every window it diffs
//! each task against the previous window and emits `heapspan.window` spans.
//!
//! Everything runs on one named thread (`heapspan-export`) that counts its allocations to the
//! `heapspan` bucket, has no tracing subscriber, and calls exporters inside OpenTelemetry's
//! suppression scope. heapspan's own providers have no background thread: metrics go through a
//! [`ManualReader`] collected here, spans through a bounded queue drained here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, Gauge, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::config::Resolved;
use super::names as n;
use super::sink::{ExportFailed, Sink};
use crate::aggregator::{self, Shared};
use crate::alloc::InternalScope;
use crate::error::Result;
use crate::{MemStats, Snapshot, TaskKey};

/// Spans per export request: a window span is well under 1 KiB, so a request stays far below
/// the 4 MiB receive limit of collectors.
const SPANS_PER_REQUEST: usize = 512;
/// At most one warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The running export thread; [`ExportHandle::shutdown`] flushes and stops it.
#[derive(Debug)]
pub(crate) struct ExportHandle {
    /// heapspan's own tracer provider (when it owns one), lent to the application.
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    // In a mutex only so that the guard stays `Sync`.
    done: Mutex<std::sync::mpsc::Receiver<()>>,
    shutdown_timeout: Duration,
}

impl ExportHandle {
    /// Asks the thread for a last snapshot and export, and waits for it at most the configured
    /// shutdown timeout (then leaves it behind: a stuck collector never blocks the process).
    pub(crate) fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            if done.recv_timeout(self.shutdown_timeout).is_ok() {
                let _ = t.join();
            }
        }
    }
}

/// A [`ManualReader`] the export thread keeps a handle to.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Span processor of heapspan's own tracer provider: ended spans wait in a bounded queue for
/// the export thread; when it is full they are dropped and counted.
#[derive(Debug)]
struct QueueProcessor {
    queue: Arc<SpanQueue>,
}

#[derive(Debug)]
struct SpanQueue {
    spans: Mutex<VecDeque<SpanData>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        let mut q = self.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.queue.capacity {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(span);
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

struct Instruments {
    task_allocated: Counter<u64>,
    task_freed: Counter<u64>,
    task_live: UpDownCounter<i64>,
    task_peak: Gauge<u64>,
    task_allocations: Counter<u64>,
    span_allocated: Counter<u64>,
    span_freed: Counter<u64>,
    span_live: UpDownCounter<i64>,
    span_allocations: Counter<u64>,
    tracker_memory: Gauge<u64>,
    tracker_dropped: Counter<u64>,
}

impl Instruments {
    fn new(m: &Meter) -> Self {
        Instruments {
            task_allocated: m
                .u64_counter(n::TASK_MEMORY_ALLOCATED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated by tokio tasks, per task name.")
                .build(),
            task_freed: m
                .u64_counter(n::TASK_MEMORY_FREED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes of tasks' allocations freed, per allocating task name.")
                .build(),
            task_live: m
                .i64_up_down_counter(n::TASK_MEMORY_LIVE)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated and not yet freed, per task name.")
                .build(),
            task_peak: m
                .u64_gauge(n::TASK_MEMORY_PEAK)
                .with_unit(n::UNIT_BYTES)
                .with_description("Largest live bytes of a single task of the name.")
                .build(),
            task_allocations: m
                .u64_counter(n::TASK_ALLOCATIONS)
                .with_unit(n::UNIT_ALLOCATIONS)
                .with_description("Allocations, per task name.")
                .build(),
            span_allocated: m
                .u64_counter(n::SPAN_MEMORY_ALLOCATED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated inside tracing spans, per span name.")
                .build(),
            span_freed: m
                .u64_counter(n::SPAN_MEMORY_FREED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes of spans' allocations freed, per span name.")
                .build(),
            span_live: m
                .i64_up_down_counter(n::SPAN_MEMORY_LIVE)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated inside spans and not yet freed.")
                .build(),
            span_allocations: m
                .u64_counter(n::SPAN_ALLOCATIONS)
                .with_unit(n::UNIT_ALLOCATIONS)
                .with_description("Allocations inside spans, per span name.")
                .build(),
            tracker_memory: m
                .u64_gauge(n::TRACKER_MEMORY)
                .with_unit(n::UNIT_BYTES)
                .with_description("heapspan's own bookkeeping memory.")
                .build(),
            tracker_dropped: m
                .u64_counter(n::TRACKER_DROPPED)
                .with_unit(n::UNIT_EVENTS)
                .with_description("What heapspan could not record or export, per reason.")
                .build(),
        }
    }
}

/// Maps names to series attributes under a cap: a name keeps the series it was given; names
/// seen once every slot is taken go to `other`. Each round offers new names largest first.
struct NameCap {
    cap: usize,
    key: &'static str,
    assigned: HashMap<String, [KeyValue; 1]>,
    other: [KeyValue; 1],
}

impl NameCap {
    fn new(key: &'static str, cap: usize) -> Self {
        NameCap {
            cap,
            key,
            assigned: HashMap::new(),
            other: [KeyValue::new(key, n::OTHER)],
        }
    }

    fn attrs(&mut self, name: &str) -> (&[KeyValue], bool) {
        if !self.assigned.contains_key(name) && self.assigned.len() < self.cap {
            self.assigned
                .insert(name.to_owned(), [KeyValue::new(self.key, name.to_owned())]);
        }
        match self.assigned.get(name) {
            Some(a) => (a, false),
            None => (&self.other, true),
        }
    }
}

/// Adds the growth from `prev` to `cur` to one name's four cumulative series.
fn add_deltas(
    [allocated, freed, allocations]: [&Counter<u64>; 3],
    live: &UpDownCounter<i64>,
    cur: &MemStats,
    prev: &MemStats,
    attrs: &[KeyValue],
) {
    let (a, f, c, l) = delta(cur, prev);
    if a > 0 {
        allocated.add(a, attrs);
    }
    if f > 0 {
        freed.add(f, attrs);
    }
    if c > 0 {
        allocations.add(c, attrs);
    }
    if l != 0 {
        live.add(l, attrs);
    }
}

fn delta(cur: &MemStats, prev: &MemStats) -> (u64, u64, u64, i64) {
    (
        cur.allocated_bytes.saturating_sub(prev.allocated_bytes),
        cur.freed_bytes.saturating_sub(prev.freed_bytes),
        cur.allocations.saturating_sub(prev.allocations),
        cur.live_bytes().saturating_sub(prev.live_bytes()),
    )
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Clone, Copy)]
struct WindowState {
    at_start: MemStats,
    start: SystemTime,
}

/// Providers and sink, built and checked before heapspan starts.
pub(crate) struct Prepared(Exporter);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sink", &self.0.sink)
            .finish()
    }
}

/// At most this many idle tasks that hold memory get a window span per window (the largest by
/// live bytes), so that a window stays within the span queue.
const IDLE_HOLDER_WINDOWS: usize = 500;

/// The state of the export thread.
struct Exporter {
    shared: Option<Shared>,
    cfg: Resolved,
    sink: Sink,
    instruments: Instruments,
    own_meter: Option<(SdkMeterProvider, SharedReader)>,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    own_tracer: Option<SdkTracerProvider>,
    queue: Arc<SpanQueue>,
    resource: Resource,
    tasks: NameCap,
    spans: NameCap,
    prev_task_names: HashMap<String, MemStats>,
    prev_span_names: HashMap<(&'static str, &'static str), MemStats>,
    prev_dropped: crate::Dropped,
    prev_queue_dropped: u64,
    export_failed: u64,
    prev_export_failed: u64,
    windows: HashMap<TaskKey, WindowState>,
    finished: HashSet<TaskKey>,
    last_window: SystemTime,
    last_warn: Option<Instant>,
    /// Start of the cumulative allocation-size histogram, and its latest value.
    sizes_start: SystemTime,
    sizes: Option<crate::SizeHistogram>,
    #[cfg(feature = "tokio-metrics")]
    runtime: Option<super::runtime::RuntimeMetrics>,
    #[cfg(feature = "tokio-metrics")]
    task_polls: super::task_polls::TaskPolls,
}

/// Builds the providers and the sink, so that errors surface before heapspan starts; `None` if
/// export is off.
pub(crate) fn prepare(cfg: Resolved) -> Result<Option<Prepared>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let _scope = InternalScope::enter();
    let mut attrs: Vec<KeyValue> = cfg
        .resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !cfg.resource.iter().any(|(k, _)| k == "service.name") {
        attrs.push(KeyValue::new("service.name", "unknown_service"));
    }
    attrs.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attrs.push(KeyValue::new("telemetry.sdk.name", "opentelemetry"));
    let resource = Resource::builder_empty().with_attributes(attrs).build();
    let sink = Sink::build(&cfg, &resource)?;
    let scope = InstrumentationScope::builder(n::SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();

    let (meter, own_meter) = match &cfg.meter_provider {
        Some(p) => (p.meter_with_scope(scope.clone()), None),
        None => {
            let reader = SharedReader(Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Cumulative)
                    .build(),
            ));
            let p = SdkMeterProvider::builder()
                .with_resource(resource.clone())
                .with_reader(reader.clone())
                .build();
            (p.meter_with_scope(scope.clone()), Some((p, reader)))
        }
    };
    let queue = Arc::new(SpanQueue {
        spans: Mutex::new(VecDeque::new()),
        capacity: cfg.span_queue_capacity,
        dropped: AtomicU64::new(0),
    });
    let (tracer, own_tracer) = match &cfg.tracer_provider {
        Some(p) => (p.tracer_with_scope(scope), None),
        None => {
            let p = SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_span_processor(QueueProcessor {
                    queue: queue.clone(),
                })
                .with_max_attributes_per_span(256)
                .with_max_events_per_span(1024)
                .build();
            (p.tracer_with_scope(scope), Some(p))
        }
    };
    let instruments = Instruments::new(&meter);
    #[cfg(feature = "tokio-metrics")]
    let rt_handle = cfg
        .tokio_runtime
        .clone()
        .or_else(|| tokio::runtime::Handle::try_current().ok());
    Ok(Some(Prepared(Exporter {
        shared: None,
        tasks: NameCap::new(n::TOKIO_TASK_NAME, cfg.max_task_names),
        spans: NameCap::new(n::SPAN_NAME, cfg.max_span_names),
        cfg,
        sink,
        instruments,
        own_meter,
        tracer,
        own_tracer,
        queue,
        resource,
        prev_task_names: HashMap::new(),
        prev_span_names: HashMap::new(),
        prev_dropped: crate::Dropped::default(),
        prev_queue_dropped: 0,
        export_failed: 0,
        prev_export_failed: 0,
        windows: HashMap::new(),
        finished: HashSet::new(),
        last_window: SystemTime::now(),
        last_warn: None,
        sizes_start: SystemTime::now(),
        sizes: None,
        #[cfg(feature = "tokio-metrics")]
        runtime: super::runtime::RuntimeMetrics::new(&meter, rt_handle.as_ref()),
        #[cfg(feature = "tokio-metrics")]
        task_polls: super::task_polls::TaskPolls::new(&meter),
    })))
}

impl Prepared {
    /// Starts the export thread on the aggregator's tables.
    pub(crate) fn spawn(self, shared: Shared) -> Result<ExportHandle> {
        let mut exporter = self.0;
        exporter.shared = Some(shared);
        let tracer_provider = exporter.own_tracer.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let shutdown_timeout = exporter.cfg.shutdown_timeout;
        let thread = {
            let stop = stop.clone();
            crate::builder::spawn_heapspan_thread("heapspan-export", move || {
                exporter.run(&stop);
                let _ = done_tx.send(());
            })?
        };
        Ok(ExportHandle {
            tracer_provider,
            stop,
            thread: Some(thread),
            done: Mutex::new(done),
            shutdown_timeout,
        })
    }
}

impl Exporter {
    fn run(mut self, stop: &AtomicBool) {
        let start = Instant::now();
        let mut next_metrics = start + self.cfg.metric_interval;
        let mut next_window = start + self.cfg.window;
        self.last_window = SystemTime::now();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let now = Instant::now();
            let metrics_due = stopping || now >= next_metrics;
            let window_due = stopping || now >= next_window;
            if metrics_due || window_due {
                let snap = match &self.shared {
                    Some(s) => aggregator::lock(s).snapshot(),
                    None => return,
                };
                if window_due {
                    self.windows(&snap, stopping);
                    self.export_spans();
                    next_window = now + self.cfg.window;
                }
                if metrics_due {
                    self.metrics(&snap);
                    self.export_metrics();
                    next_metrics = now + self.cfg.metric_interval;
                }
            }
            if stopping {
                self.shutdown();
                return;
            }
            let wait = next_metrics
                .min(next_window)
                .saturating_duration_since(Instant::now());
            std::thread::park_timeout(wait);
        }
    }

    fn warn(&mut self, what: &str, e: &ExportFailed) {
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_warn = Some(now);
            eprintln!(
                "heapspan: exporting {what} failed ({}); dropped spans are counted in {} and \
                 export retries every interval (this warning repeats at most once a minute)",
                e.0,
                n::TRACKER_DROPPED
            );
        }
    }

    /// Turns the snapshot's per-name tables into instrument updates.
    fn metrics(&mut self, snap: &Snapshot) {
        self.sizes = Some(snap.allocation_sizes);
        let ins = &self.instruments;
        // Tasks: largest first so that the cap keeps the biggest names.
        let mut names: Vec<&crate::TaskNameStats> = snap.task_names.iter().collect();
        names.sort_by_key(|t| std::cmp::Reverse(t.mem.allocated_bytes));
        let mut other_peak = None::<u64>;
        for t in names {
            let prev = self
                .prev_task_names
                .get(&t.name)
                .copied()
                .unwrap_or_default();
            let (attrs, is_other) = self.tasks.attrs(&t.name);
            add_deltas(
                [&ins.task_allocated, &ins.task_freed, &ins.task_allocations],
                &ins.task_live,
                &t.mem,
                &prev,
                attrs,
            );
            if is_other {
                other_peak = Some(other_peak.unwrap_or(0).max(t.mem.peak_bytes));
            } else if t.mem.peak_bytes != prev.peak_bytes || prev == MemStats::default() {
                ins.task_peak.record(t.mem.peak_bytes, attrs);
            }
            if prev != t.mem {
                self.prev_task_names.insert(t.name.clone(), t.mem);
            }
        }
        if let Some(p) = other_peak {
            ins.task_peak.record(p, &self.tasks.other);
        }
        // Spans.
        let mut snames: Vec<&crate::SpanNameStats> = snap.span_names.iter().collect();
        snames.sort_by_key(|s| std::cmp::Reverse(s.mem.allocated_bytes));
        let mut label = String::new();
        for s in snames {
            let key = (s.target, s.name);
            let prev = self.prev_span_names.get(&key).copied().unwrap_or_default();
            if prev == s.mem {
                continue;
            }
            label.clear();
            label.push_str(s.target);
            label.push_str("::");
            label.push_str(s.name);
            let (attrs, _) = self.spans.attrs(&label);
            add_deltas(
                [&ins.span_allocated, &ins.span_freed, &ins.span_allocations],
                &ins.span_live,
                &s.mem,
                &prev,
                attrs,
            );
            self.prev_span_names.insert(key, s.mem);
        }
        // Self metrics.
        ins.tracker_memory.record(snap.tracker_bytes, &[]);
        let d = snap.dropped;
        let p = self.prev_dropped;
        let queue_dropped = self.queue.dropped.load(Ordering::Relaxed);
        for (reason, cur, prev) in [
            (
                n::DROP_REASON_FALLBACK_QUEUE_FULL,
                d.fallback_queue_full,
                p.fallback_queue_full,
            ),
            (
                n::DROP_REASON_EVENT_QUEUE_FULL,
                d.event_queue_full,
                p.event_queue_full,
            ),
            (
                n::DROP_REASON_SPAN_STACK_OVERFLOW,
                d.span_stack_overflow,
                p.span_stack_overflow,
            ),
            (
                n::DROP_REASON_EXPORT_QUEUE_FULL,
                queue_dropped,
                self.prev_queue_dropped,
            ),
            (
                n::DROP_REASON_EXPORT_FAILED,
                self.export_failed,
                self.prev_export_failed,
            ),
        ] {
            // Every reason gets a series (zero until something is dropped), so dashboards can
            // rely on it.
            ins.tracker_dropped.add(
                cur.saturating_sub(prev),
                &[KeyValue::new(n::DROP_REASON, reason)],
            );
        }
        self.prev_dropped = d;
        self.prev_queue_dropped = queue_dropped;
        self.prev_export_failed = self.export_failed;
        #[cfg(feature = "tokio-metrics")]
        if let Some(rt) = &mut self.runtime {
            rt.record();
        }
        #[cfg(feature = "tokio-metrics")]
        self.task_polls.record();
    }

    fn export_metrics(&mut self) {
        let Some((_, reader)) = &self.own_meter else {
            return;
        };
        if !self.sink.takes_metrics() {
            return;
        }
        let mut rm = ResourceMetrics::default();
        if reader.collect(&mut rm).is_err() {
            return;
        }
        let _suppress = Context::enter_telemetry_suppressed_scope();
        if let Err(e) = self.sink.export_metrics(&rm) {
            self.warn("metrics", &e);
        }
        if let Some(h) = self.sizes {
            let req =
                super::histogram::request(&self.resource, self.sizes_start, SystemTime::now(), &h);
            if let Err(e) = self.sink.export_raw_metrics(&req) {
                self.warn("metrics", &e);
            }
        }
    }

    /// Emits one `heapspan.window` span per task active in the window, and a final one for
    /// each task that ended.
    fn windows(&mut self, snap: &Snapshot, stopping: bool) {
        let now = snap.taken_at;
        let window_start = self.last_window;
        let mut seen: HashSet<TaskKey> = HashSet::with_capacity(snap.tasks.len());
        // Idle tasks that still hold memory get a window too (a task holding a leak must stay
        // visible), the largest IDLE_HOLDER_WINDOWS of them by live bytes.
        let mut idle_holders: Vec<(i64, TaskKey)> = snap
            .tasks
            .iter()
            .filter(|t| t.ended.is_none() && t.mem.live_bytes() > 0)
            .filter(|t| {
                self.windows
                    .get(&t.key)
                    .is_some_and(|st| st.at_start == t.mem)
            })
            .map(|t| (t.mem.live_bytes(), t.key))
            .collect();
        idle_holders.sort_unstable_by(|a, b| b.cmp(a));
        let idle_holders: HashSet<TaskKey> = idle_holders
            .into_iter()
            .take(IDLE_HOLDER_WINDOWS)
            .map(|(_, k)| k)
            .collect();
        for t in &snap.tasks {
            seen.insert(t.key);
            if self.finished.contains(&t.key) {
                continue;
            }
            let st = self.windows.get(&t.key).copied().unwrap_or_else(|| {
                let began = t.started.or(t.first_activity).unwrap_or(window_start);
                WindowState {
                    at_start: MemStats::default(),
                    start: began.max(window_start),
                }
            });
            let ended = t.ended;
            let changed = st.at_start != t.mem;
            if ended.is_none() && !changed && !stopping && !idle_holders.contains(&t.key) {
                self.windows.insert(
                    t.key,
                    WindowState {
                        at_start: st.at_start,
                        start: now,
                    },
                );
                continue;
            }
            let end = ended.unwrap_or(now).max(st.start);
            self.window_span(t, &st, end);
            if ended.is_some() {
                self.windows.remove(&t.key);
                self.finished.insert(t.key);
            } else {
                self.windows.insert(
                    t.key,
                    WindowState {
                        at_start: t.mem,
                        start: now,
                    },
                );
            }
        }
        self.windows.retain(|k, _| seen.contains(k));
        self.finished.retain(|k| seen.contains(k));
        self.last_window = now;
    }

    fn window_span(&self, t: &crate::TaskStats, st: &WindowState, end: SystemTime) {
        let (a, f, c, _) = delta(&t.mem, &st.at_start);
        let mut attrs = Vec::with_capacity(14);
        attrs.push(KeyValue::new(n::TOKIO_TASK_NAME, t.display_name()));
        attrs.push(KeyValue::new(n::TOKIO_TASK_ID, i64_of(t.key.id)));
        if let Some(l) = &t.location {
            attrs.push(KeyValue::new(n::CODE_FILE_PATH, l.file.clone()));
            attrs.push(KeyValue::new(n::CODE_LINE_NUMBER, i64::from(l.line)));
        }
        attrs.push(KeyValue::new(n::WINDOW_START, unix_nanos(st.start)));
        attrs.push(KeyValue::new(n::WINDOW_END, unix_nanos(end)));
        attrs.push(KeyValue::new(n::MEMORY_ALLOCATED, i64_of(a)));
        attrs.push(KeyValue::new(n::MEMORY_FREED, i64_of(f)));
        attrs.push(KeyValue::new(n::MEMORY_LIVE, t.mem.live_bytes()));
        attrs.push(KeyValue::new(n::MEMORY_PEAK, i64_of(t.mem.peak_bytes)));
        attrs.push(KeyValue::new(n::ALLOCATIONS, i64_of(c)));
        let mut span = self
            .tracer
            .span_builder(n::WINDOW_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(st.start)
            .with_attributes(attrs)
            // An explicit, unsuppressed root context: the SDK drops spans started inside the
            // suppression scope.
            .start_with_context(&self.tracer, &Context::new());
        span.end_with_timestamp(end);
    }

    fn export_spans(&mut self) {
        if self.own_tracer.is_none() {
            return;
        }
        let _suppress = Context::enter_telemetry_suppressed_scope();
        loop {
            let batch: Vec<SpanData> = {
                let mut q = self.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
                let k = q.len().min(SPANS_PER_REQUEST);
                q.drain(..k).collect()
            };
            if batch.is_empty() {
                return;
            }
            let len = batch.len() as u64;
            if let Err(e) = self.sink.export_spans(batch) {
                self.export_failed = self.export_failed.saturating_add(len);
                self.warn("spans", &e);
                // The collector is down: drop the rest of this window's spans too (counted)
                // rather than waiting a timeout per request.
                let mut q = self.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
                self.export_failed = self.export_failed.saturating_add(q.len() as u64);
                q.clear();
                return;
            }
        }
    }

    fn shutdown(&mut self) {
        let t = self.cfg.shutdown_timeout;
        let _suppress = Context::enter_telemetry_suppressed_scope();
        self.sink.shutdown(t);
        if let Some((p, _)) = &self.own_meter {
            let _ = p.shutdown_with_timeout(t);
        }
        if let Some(p) = &self.own_tracer {
            let _ = p.shutdown_with_timeout(t);
        }
        let _ = &self.resource;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_beyond_the_cap_share_the_other_series_and_keep_their_slot() {
        let mut cap = NameCap::new(n::TOKIO_TASK_NAME, 2);
        assert_eq!(
            cap.attrs("a"),
            (&[KeyValue::new(n::TOKIO_TASK_NAME, "a")][..], false)
        );
        assert!(!cap.attrs("b").1);
        let (other, is_other) = cap.attrs("c");
        assert!(is_other);
        assert_eq!(other, &[KeyValue::new(n::TOKIO_TASK_NAME, n::OTHER)][..]);
        // A name keeps the series it was given, so deltas always go where they went before.
        assert!(!cap.attrs("a").1);
        assert!(cap.attrs("c").1);
        assert_eq!(cap.assigned.len(), 2);
    }

    #[test]
    fn deltas_are_exact_and_saturating() {
        let prev = MemStats {
            allocated_bytes: 100,
            allocations: 2,
            freed_bytes: 40,
            frees: 1,
            peak_bytes: 60,
        };
        let cur = MemStats {
            allocated_bytes: 150,
            allocations: 3,
            freed_bytes: 140,
            frees: 3,
            peak_bytes: 60,
        };
        assert_eq!(delta(&cur, &prev), (50, 100, 1, -50));
        assert_eq!(delta(&prev, &cur), (0, 0, 0, 50));
    }

    #[test]
    fn the_guard_can_live_in_a_static() {
        fn sync_send<T: Sync + Send>() {}
        sync_send::<super::ExportHandle>();
        sync_send::<crate::Guard>();
    }
}
