//! Export volume and trace layout: one trace per window under a `heapspan.process.window`
//! root, a bounded number of window spans per window, idle holders re-sent every n windows,
//! findings and residue spans hung where a user finds them.

use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};

use super::*;
use crate::aggregator::residue::{OtelIds, Residue, ResidueRound};
use crate::findings::{Finding, FindingId, Kind, Verdict};
use crate::windows::Window;

fn int(s: &SpanData, key: &str) -> Option<i64> {
    match attr(&s.attributes, key) {
        Some(Value::I64(v)) => Some(*v),
        None => None,
        other => panic!("{key}: {other:?}"),
    }
}

/// A running task that allocated `allocated` bytes and freed `freed`.
fn busy(id: u64, allocated: u64, freed: u64) -> TaskStats {
    let mut t = task(id, &format!("t{id}"), allocated, None);
    t.mem.freed_bytes = freed;
    t.mem.frees = u64::from(freed > 0);
    t
}

impl Exporter {
    /// Cuts the window ending at `snap` and lets `edit` change it before it is encoded.
    fn window_edited(&mut self, snap: &Snapshot, edit: impl FnOnce(&mut Window)) {
        let mut w = self.test_windower.window_with(snap.clone(), false, None);
        edit(&mut w);
        self.window(&w);
    }
}

#[test]
fn one_trace_per_window_under_the_process_root() {
    let mut e = exporter(ExportConfig::default());
    let mut snap = snapshot(
        at(10_000),
        vec![busy(7, 4096, 1024), task(9, "loader", 512, Some(at(4000)))],
        Vec::new(),
    );
    snap.total = MemStats {
        allocated_bytes: 10_000,
        allocations: 40,
        freed_bytes: 3000,
        frees: 30,
        peak_bytes: 8000,
    };
    e.windows_with(&snap, false, None);
    let first = queued(&e);
    let r = root(&first);
    assert_eq!(r.parent_span_id, SpanId::INVALID, "the root of its trace");
    assert_eq!((r.start_time, r.end_time), (at(0), at(10_000)));
    for (key, v) in [
        (n::WINDOW_TASKS, 2),
        (n::WINDOW_TASKS_OMITTED, 0),
        (n::WINDOW_TASKS_IDLE, 0),
        // The process's figures: the first window counts from the start.
        (n::MEMORY_ALLOCATED, 10_000),
        (n::MEMORY_FREED, 3000),
        (n::ALLOCATIONS, 40),
        (n::MEMORY_LIVE, 7000),
        (n::MEMORY_PEAK, 8000),
    ] {
        assert_eq!(int(r, key), Some(v), "{key}");
    }
    assert_eq!(
        attr(&r.attributes, n::WINDOW_EXACT),
        Some(&Value::Bool(true))
    );
    let ws = windows(&first);
    assert_eq!(ws.len(), 2);
    for w in &ws {
        assert_eq!(w.parent_span_id, r.span_context.span_id());
        assert_eq!(w.span_context.trace_id(), r.span_context.trace_id());
        assert!(w.links.is_empty(), "no earlier window span to link to");
    }

    // The next window is a trace of its own; the task's window span links to its previous one.
    let mut snap = snapshot(at(20_000), vec![busy(7, 8192, 1024)], Vec::new());
    snap.total = MemStats {
        allocated_bytes: 14_096,
        allocations: 41,
        freed_bytes: 3000,
        frees: 30,
        peak_bytes: 11_096,
    };
    e.windows_with(&snap, false, None);
    let second = queued(&e);
    let r2 = root(&second);
    assert_ne!(r2.span_context.trace_id(), r.span_context.trace_id());
    assert_eq!(
        int(r2, n::MEMORY_ALLOCATED),
        Some(4096),
        "the window's delta"
    );
    assert_eq!(int(r2, n::ALLOCATIONS), Some(1));
    assert_eq!(int(r2, n::MEMORY_FREED), Some(0));
    assert_eq!(int(r2, n::WINDOW_TASKS), Some(1));
    let w7 = window(&second, 7);
    assert_eq!(w7.parent_span_id, r2.span_context.span_id());
    let before = window(&first, 7);
    assert_eq!(w7.links.len(), 1);
    assert_eq!(w7.links[0].span_context, before.span_context);
}

#[test]
fn the_cap_keeps_the_biggest_tasks_and_the_root_counts_the_rest() {
    let mut e = exporter(ExportConfig::default().max_window_spans(2));
    let snap = snapshot(
        at(10_000),
        vec![
            busy(1, 100, 0),
            busy(2, 50_000, 50_000),
            busy(3, 7000, 0),
            busy(4, 10, 0),
            busy(5, 300, 300),
        ],
        Vec::new(),
    );
    e.windows_with(&snap, false, None);
    let spans = queued(&e);
    let mut ids: Vec<i64> = windows(&spans)
        .iter()
        .map(|s| int(s, n::TOKIO_TASK_ID).unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [2, 3], "the two that moved or hold the most bytes");
    assert_eq!(int(root(&spans), n::WINDOW_TASKS), Some(2));
    assert_eq!(int(root(&spans), n::WINDOW_TASKS_OMITTED), Some(3));
    assert_eq!(
        spans.len(),
        3,
        "two window spans and the root, nothing else"
    );
}

#[test]
fn an_idle_holder_is_sent_again_every_n_windows() {
    let mut e = exporter(ExportConfig::default().idle_holder_interval(3));
    let mut sent = Vec::new();
    for w in 1..=7u64 {
        // Task 7 allocated 4096 bytes in the first window and holds them since.
        let snap = snapshot(at(10_000 * w), vec![busy(7, 4096, 0)], Vec::new());
        e.windows_with(&snap, false, None);
        let spans = queued(&e);
        let r = root(&spans);
        match windows(&spans).as_slice() {
            [] => assert_eq!(int(r, n::WINDOW_TASKS_IDLE), Some(1), "window {w}"),
            [s] => {
                assert_eq!(int(s, n::MEMORY_LIVE), Some(4096));
                assert_eq!(int(r, n::WINDOW_TASKS_IDLE), Some(0));
                sent.push(w);
            }
            more => panic!("window {w}: {} window spans", more.len()),
        }
    }
    assert_eq!(sent, [1, 4, 7]);
}

fn finding(task: u64) -> Finding {
    Finding {
        id: FindingId(0xF00D),
        kind: Kind::TaskMemoryGrowth,
        severity: Severity::Medium,
        score: 0.5,
        confidence: 0.7,
        verdict: Verdict::Probable,
        bytes: 4096,
        allocations: 1,
        task_name: Some(format!("t{task}")),
        tasks: vec![TaskKey { id: task }],
        span_name: None,
        location: None,
        holder: None,
        summary: "grows".into(),
        evidence: Vec::new(),
        from_graph: false,
        first_seen: at(0),
        last_seen: at(0),
        windows: 1,
        roots: Vec::new(),
    }
}

#[test]
fn a_finding_hangs_from_its_tasks_window_span_else_from_the_windows_root() {
    let mut e = exporter(ExportConfig::default().idle_holder_interval(10));
    let add = |w: &mut Window| {
        w.findings.current = vec![finding(7)];
        w.findings.emit = vec![FindingId(0xF00D)];
    };
    // Window 1: task 7 has a window span: the finding is its child.
    e.window_edited(
        &snapshot(at(10_000), vec![busy(7, 4096, 0)], Vec::new()),
        add,
    );
    let spans = queued(&e);
    let f = spans.iter().find(|s| s.name == n::FINDING_SPAN).unwrap();
    let w7 = window(&spans, 7);
    assert_eq!(f.parent_span_id, w7.span_context.span_id());
    assert_eq!(
        f.span_context.trace_id(),
        root(&spans).span_context.trace_id()
    );
    // Window 2: task 7 is idle (no window span this window): the finding hangs from this
    // window's root, in this window's trace, linked to the task's last window span.
    e.window_edited(
        &snapshot(at(20_000), vec![busy(7, 4096, 0)], Vec::new()),
        add,
    );
    let spans2 = queued(&e);
    assert!(windows(&spans2).is_empty());
    let f = spans2.iter().find(|s| s.name == n::FINDING_SPAN).unwrap();
    let r = root(&spans2);
    assert_eq!(f.parent_span_id, r.span_context.span_id());
    assert_eq!(f.span_context.trace_id(), r.span_context.trace_id());
    assert_eq!(f.links.len(), 1);
    assert_eq!(f.links[0].span_context, w7.span_context);
}

fn residue(span: u64, live_now: u64, live_at_close: i64) -> Residue {
    Residue {
        span,
        target: "app",
        name: "request",
        ids: OtelIds {
            trace_id: 0x00AA_0000_0000_0000_0000_0000_0000_0000 + u128::from(span),
            span_id: 0x5500 + span,
            flags: 1,
        },
        closed: at(3000),
        live_at_close,
        mem: MemStats {
            allocated_bytes: 4000,
            allocations: 2,
            freed_bytes: 4000 - live_now,
            frees: u64::from(live_now < 4000),
            peak_bytes: 4000,
        },
    }
}

#[test]
fn a_residue_is_a_child_of_the_applications_span_linked_to_the_window() {
    let mut e = exporter(ExportConfig::default());
    let read: SystemTime = at(20_000);
    e.window_edited(&snapshot(read, Vec::new(), Vec::new()), |w| {
        w.residues = ResidueRound {
            candidates: 7,
            // One left 1000 bytes; the other left nothing (no span for it).
            residues: vec![residue(1, 1000, 4000), residue(2, 0, 3000)],
        };
    });
    let spans = queued(&e);
    let r = root(&spans);
    // The sample's figures on the root: only where it can be on.
    if cfg!(feature = "tracing-opentelemetry") {
        assert_eq!(int(r, n::SPAN_RESIDUE_INSTANCES), Some(2));
        assert_eq!(int(r, n::SPAN_RESIDUE_CANDIDATES), Some(7));
        assert_eq!(int(r, n::SPAN_RESIDUE_BYTES), Some(1000));
    } else {
        assert_eq!(int(r, n::SPAN_RESIDUE_INSTANCES), None);
    }
    let res: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == n::SPAN_RESIDUE_SPAN)
        .collect();
    assert_eq!(res.len(), 1);
    let s = res[0];
    // In the application's trace, under its span.
    assert_eq!(
        s.span_context.trace_id(),
        TraceId::from(0x00AA_0000_0000_0000_0000_0000_0000_0001u128)
    );
    assert_eq!(s.parent_span_id, SpanId::from(0x5501u64));
    assert!(
        !s.parent_span_is_remote,
        "the application's span is in this process"
    );
    assert_eq!((s.start_time, s.end_time), (at(3000), read));
    assert_eq!(int(s, n::MEMORY_RESIDUE), Some(1000));
    assert_eq!(int(s, n::ALLOCATIONS_RESIDUE), Some(1));
    assert_eq!(
        int(s, n::MEMORY_LIVE),
        Some(4000),
        "the close-time figure beside it"
    );
    assert_eq!(
        attr(&s.attributes, n::SPAN_NAME),
        Some(&Value::from("app::request"))
    );
    assert_eq!(s.links.len(), 1);
    assert_eq!(s.links[0].span_context, r.span_context);
}
