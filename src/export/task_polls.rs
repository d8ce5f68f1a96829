//! Poll counts and poll time of tasks wrapped by heapspan ([`crate::spawn`],
//! [`crate::instrument`]), per task name (feature `tokio-metrics`), exported as
//! `tokio.task.polls` and `tokio.task.poll.duration`.
//!
//! The wrapper asks for its name's [`PollStats`] once (at the first poll) with [`slot`] and then
//! calls [`PollStats::record`] after every poll: two relaxed atomic adds, no lock, no
//! allocation. Names beyond [`MAX_NAMES`] share the [`names::OTHER`](super::names::OTHER)
//! slot. The export thread reads the cumulative figures at every metric collection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::KeyValue;

use super::names as n;
use crate::alloc::InternalScope;

/// Task names with their own poll series.
pub(crate) const MAX_NAMES: usize = 500;

/// Cumulative poll figures of one task name.
#[derive(Debug, Default)]
pub(crate) struct PollStats {
    polls: AtomicU64,
    nanos: AtomicU64,
}

impl PollStats {
    /// One poll that took `d`.
    #[inline]
    pub(crate) fn record(&self, d: Duration) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Names in registration order (append-only, read by the export thread) and an index for the
/// wrapper's lookup.
#[derive(Default)]
struct Registry {
    order: Vec<(String, &'static PollStats)>,
    index: HashMap<String, &'static PollStats>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry::default()))
}

fn other() -> &'static PollStats {
    static O: OnceLock<PollStats> = OnceLock::new();
    O.get_or_init(PollStats::default)
}

/// The stats of task name `name` (created on first use, leaked: at most [`MAX_NAMES`]). Takes a
/// short lock: called once per task, at its first poll.
pub(crate) fn slot(name: &str) -> &'static PollStats {
    let _scope = InternalScope::enter();
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = r.index.get(name) {
        return s;
    }
    if r.order.len() >= MAX_NAMES {
        return other();
    }
    let s: &'static PollStats = Box::leak(Box::default());
    r.order.push((name.to_owned(), s));
    r.index.insert(name.to_owned(), s);
    s
}

/// Instruments and the figures already exported.
pub(crate) struct TaskPolls {
    polls: Counter<u64>,
    duration: Counter<f64>,
    sent: Vec<(KeyValue, u64, u64)>,
}

impl TaskPolls {
    pub(crate) fn new(m: &Meter) -> Self {
        TaskPolls {
            polls: m
                .u64_counter(n::TOKIO_TASK_POLLS)
                .with_unit(n::UNIT_POLLS)
                .with_description("Polls of tasks wrapped by heapspan, per task name.")
                .build(),
            duration: m
                .f64_counter(n::TOKIO_TASK_POLL_DURATION)
                .with_unit(n::UNIT_SECONDS)
                .with_description("Time spent polling tasks wrapped by heapspan, per task name.")
                .build(),
            sent: Vec::new(),
        }
    }

    /// Adds what was polled since the last call.
    pub(crate) fn record(&mut self) {
        let r = registry().lock().unwrap_or_else(|p| p.into_inner());
        // `other` first, then the names in the order they were registered (append-only), so
        // that index `i` always means the same name.
        let all = std::iter::once((n::OTHER, other()))
            .chain(r.order.iter().map(|(k, s)| (k.as_str(), *s)));
        for (i, (name, s)) in all.enumerate() {
            if self.sent.len() <= i {
                self.sent
                    .push((KeyValue::new(n::TOKIO_TASK_NAME, name.to_owned()), 0, 0));
            }
            let polls = s.polls.load(Ordering::Relaxed);
            let nanos = s.nanos.load(Ordering::Relaxed);
            let (attr, p0, n0) = &mut self.sent[i];
            if polls > *p0 {
                self.polls.add(polls - *p0, std::slice::from_ref(attr));
                self.duration.add(
                    Duration::from_nanos(nanos.saturating_sub(*n0)).as_secs_f64(),
                    std::slice::from_ref(attr),
                );
                *p0 = polls;
                *n0 = nanos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slot_per_name() {
        let a = slot("poll-test-a");
        let b = slot("poll-test-b");
        assert!(std::ptr::eq(a, slot("poll-test-a")));
        assert!(!std::ptr::eq(a, b));
        a.record(Duration::from_micros(5));
        a.record(Duration::from_micros(7));
        assert_eq!(a.polls.load(Ordering::Relaxed), 2);
        assert_eq!(a.nanos.load(Ordering::Relaxed), 12_000);
    }
}
