//! Tasks that hold memory while they do not run: `task.suspended_retention` (no activity for a
//! while, holding a lot), `task.stalled` (alive for long and not polled for long), and
//! `task.large_future` (a spawned future of [`FindingsConfig::large_future_bytes`] or more).
//!
//! *Idle* is measured from the task's last poll where heapspan's wrapper saw it
//! ([`crate::spawn`], [`crate::instrument`]), else from its last allocation or free (a task that
//! neither allocates nor frees may still be polled: that basis says so in the evidence, and
//! only retention is judged on it; a stall needs the poll clock). *Held* is what the task
//! allocated and is still live; with the relation graph it is the ownership closure of the
//! task's allocations, blocks shared through an `Rc`/`Arc` counted once per strong reference
//! (`size / strong`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{human, raise, Draft, FindingsConfig, Holder, Input, Kind, Severity, Verdict};
use crate::export::names as n;
use crate::graph::live::LiveGraph;
use crate::graph::AllocId;
use crate::TaskStats;

/// Nodes walked at most per flagged task.
const MAX_WALK: usize = 100_000;

pub(crate) fn run(cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
    let now = input.snap.taken_at;
    let by_task = input.graph.map(nodes_by_task);
    large_futures(cfg, input, out);
    for t in input.snap.tasks.iter().filter(|t| t.ended.is_none()) {
        let (idle, basis) = match (t.last_poll, t.last_activity.or(t.started)) {
            (Some(p), _) => (since(now, p), "poll"),
            (None, Some(a)) => (since(now, a), "allocation"),
            (None, None) => continue,
        };
        let age = t.started.map_or(Duration::ZERO, |s| since(now, s));
        let stalled = basis == "poll" && idle >= cfg.stalled_after && age >= cfg.stalled_min_age;
        if !stalled && idle < cfg.suspended_after {
            continue;
        }
        let (held, holder, from_graph): (u64, Option<(Holder, AllocId)>, bool) =
            match (input.graph, &by_task) {
                (Some(g), Some(map)) => {
                    let roots = map.get(&t.key.id).map(Vec::as_slice).unwrap_or(&[]);
                    let (bytes, holder) = held_through_graph(g, roots);
                    (bytes, holder, true)
                }
                _ => (t.mem.live_bytes().max(0) as u64, None, false),
            };
        let name = t.display_name();
        let mut d = if stalled && held >= cfg.stalled_min_bytes {
            let severity = if held >= cfg.high_bytes {
                Severity::High
            } else {
                Severity::Low
            };
            Draft::new(
                Kind::TaskStalled,
                severity,
                Verdict::Probable,
                format!(
                    "task {name} (id {}) has not been polled for {} s (alive {} s) and holds {}",
                    t.key.id,
                    idle.as_secs(),
                    age.as_secs(),
                    human(held)
                ),
            )
        } else if idle >= cfg.suspended_after && held >= cfg.suspended_min_bytes {
            let severity = if held >= cfg.high_bytes {
                raise(Severity::Low)
            } else {
                Severity::Low
            };
            Draft::new(
                Kind::SuspendedRetention,
                severity,
                Verdict::Probable,
                format!(
                    "task {name} (id {}) has been idle for {} s (no {basis}) and keeps {} \
                     alive across its await",
                    t.key.id,
                    idle.as_secs(),
                    human(held)
                ),
            )
        } else {
            continue;
        };
        d.confidence = if basis == "poll" { 0.8 } else { 0.5 } + if from_graph { 0.1 } else { 0.0 };
        d.bytes = held;
        d.allocations = t.mem.live_allocations().max(0) as u64;
        d.task_name = Some(name);
        d.tasks = vec![t.key];
        d.location = t.location.clone();
        d.from_graph = from_graph;
        let (holder, root) = match holder {
            Some((h, id)) => (Some(h), Some(id)),
            None => (None, None),
        };
        d.roots = root.into_iter().collect();
        d.holder = Some(holder.unwrap_or(if from_graph {
            Holder::Task(t.display_name())
        } else {
            Holder::Unknown
        }));
        d.ev(n::FINDING_IDLE_SECONDS, idle.as_secs_f64());
        d.ev(n::FINDING_IDLE_BASIS, basis);
        d.ev(n::FINDING_AGE_SECONDS, age.as_secs_f64());
        out.push(d);
    }
}

fn since(now: SystemTime, t: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or(Duration::ZERO)
}

/// `task.large_future`, one per task name (its running tasks' largest future): the size is
/// the compiler's, so confirmed; low, because it costs memory per task, not a leak.
fn large_futures(cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
    let mut by_name: HashMap<String, (u64, Vec<&TaskStats>)> = HashMap::new();
    for t in input.snap.tasks.iter().filter(|t| t.ended.is_none()) {
        let Some(size) = t.future_size.filter(|&s| s >= cfg.large_future_bytes) else {
            continue;
        };
        let e = by_name.entry(t.display_name()).or_default();
        e.0 = e.0.max(size);
        e.1.push(t);
    }
    for (name, (size, tasks)) in by_name {
        let mut d = Draft::new(
            Kind::LargeFuture,
            Severity::Low,
            Verdict::Confirmed,
            format!(
                "{} running task(s) named {name} each hold a future of {size} B (at least {} B): \
                 box the large state or the future",
                tasks.len(),
                cfg.large_future_bytes
            ),
        );
        d.confidence = 1.0;
        d.bytes = size;
        d.allocations = tasks.len() as u64;
        d.task_name = Some(name);
        d.tasks = tasks.iter().take(8).map(|t| t.key).collect();
        d.location = tasks.iter().find_map(|t| t.location.clone());
        d.ev(n::FINDING_FUTURE_SIZE, size);
        d.ev(n::FINDING_TASKS, tasks.len());
        d.ev(n::FINDING_THRESHOLD, cfg.large_future_bytes);
        out.push(d);
    }
}

/// Per tokio task id, its nodes' ids.
fn nodes_by_task(g: &LiveGraph) -> HashMap<u64, Vec<AllocId>> {
    let mut m: HashMap<u64, Vec<AllocId>> = HashMap::new();
    for node in g.graph.nodes.iter().filter(|n| n.task != 0) {
        m.entry(node.task).or_default().push(node.id);
    }
    m
}

/// Bytes reachable from `roots` over ownership edges, a block behind `strong` references
/// counted `1 / strong`; and the allocation among them that holds the most, as a holder.
fn held_through_graph(g: &LiveGraph, roots: &[AllocId]) -> (u64, Option<(Holder, AllocId)>) {
    let graph = &g.graph;
    let closure = graph.ownership_closure_of(roots, MAX_WALK);
    let bytes = closure
        .nodes
        .iter()
        .filter_map(|&id| graph.node(id).map(|nd| (id, nd.weighted_size())))
        .map(|(id, size)| match graph.refcount_of(id) {
            Some(r) if r.strong > 1 => size / r.strong as u64,
            _ => size,
        })
        .sum();
    let holder = roots
        .iter()
        .filter_map(|&id| {
            Some((
                id,
                graph.retained_of(id)?.max(graph.node(id)?.weighted_size()),
            ))
        })
        .max_by_key(|&(_, b)| b)
        .and_then(|(id, b)| {
            let node = graph.node(id)?;
            Some((
                Holder::Allocation {
                    bytes: b,
                    location: g.site_location(node.site).map(|l| l.to_string()),
                },
                id,
            ))
        });
    (bytes, holder)
}
