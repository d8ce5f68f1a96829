//! Each setting of [`FindingsConfig`] moves a verdict.
//!
//! Every test plants one problem in synthetic windows (snapshots, and a relation graph built
//! from a fake heap where the kind needs one), judges them with the real [`Engine`] and its
//! detectors with the setting on one side of the planted value, then on the other, and asserts
//! that the verdict on that kind changes: found or not, or its severity. Where the detector
//! compares with `>=`, the planted value sits exactly on the threshold (found) and one unit past
//! it (not found), so each test also pins which side of the threshold is inclusive.
//!
//! Tests are named after the setting (`<setting>_moves_the_…verdict`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::env::{HEAPSPAN_FINDINGS, HEAPSPAN_GROWTH_WINDOWS};
use crate::graph::{build, AllocId, FlatHeap, GraphConfig, Node};
use crate::layer::names::task_index;
use crate::{
    Buckets, Dropped, Error, MemStats, SizeHistogram, SpanNameStats, TaskNameStats, TaskSource,
    TaskStats,
};

/// The windows' length.
const WINDOW: Duration = Duration::from_secs(10);
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// `secs` seconds after an arbitrary origin.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// The end of window `i` (the first window ends at `at(1000)`).
fn end(i: usize) -> SystemTime {
    at(1000 + 10 * i as u64)
}

/// A snapshot taken at `taken_at` with nothing in it.
fn empty(taken_at: SystemTime) -> Snapshot {
    Snapshot {
        taken_at,
        tasks: Vec::new(),
        task_names: Vec::new(),
        spans: Vec::new(),
        span_names: Vec::new(),
        span_groups: Vec::new(),
        no_span: MemStats::default(),
        buckets: Buckets::default(),
        total: MemStats::default(),
        allocation_sizes: SizeHistogram::default(),
        dropped: Dropped::default(),
        handoffs: crate::HandOffs::default(),
        tracker_bytes: 0,
    }
}

/// `bytes` allocated in one allocation, none freed.
fn live(bytes: u64) -> MemStats {
    MemStats {
        allocated_bytes: bytes,
        allocations: 1,
        ..MemStats::default()
    }
}

/// A running task of heapspan's wrapper, started at `at(0)`, polled and active at `now`,
/// holding nothing.
fn running(id: u64, name: &str, now: SystemTime) -> TaskStats {
    TaskStats {
        key: TaskKey { id },
        name: Some(name.to_owned()),
        location: None,
        first_span: None,
        source: TaskSource::Wrapper,
        mem: MemStats::default(),
        started: Some(at(0)),
        ended: None,
        first_activity: Some(at(0)),
        last_activity: Some(now),
        future_size: None,
        last_poll: Some(now),
    }
}

/// Judges `windows` in order with a fresh engine on `cfg` (each window starts where the
/// previous one ended; the first one lasts [`WINDOW`]), `graph` handed over with every window;
/// returns the last window's verdict.
#[track_caller]
fn judge(cfg: &FindingsConfig, windows: &[Snapshot], graph: Option<&LiveGraph>) -> Judged {
    cfg.validate().expect("the tests use valid settings");
    let mut engine = Engine::new(cfg.clone());
    let mut last = Judged::default();
    for (i, snap) in windows.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &windows[p]);
        let start = prev.map_or(snap.taken_at - WINDOW, |p| p.taken_at);
        last = engine.judge(&Input {
            snap,
            prev,
            start,
            graph,
            invalid: &[],
            invalid_lost: 0,
            custody: &[],
        });
    }
    last
}

/// The one finding of `kind`, if any.
#[track_caller]
fn finding(j: &Judged, kind: Kind) -> Option<&Finding> {
    let found: Vec<&Finding> = j.current.iter().filter(|f| f.kind == kind).collect();
    assert!(
        found.len() <= 1,
        "one finding of {kind} at most: {found:#?}"
    );
    found.first().copied()
}

/// The severity of the finding of `kind` (`None`: not found).
#[track_caller]
fn verdict(j: &Judged, kind: Kind) -> Option<Severity> {
    finding(j, kind).map(|f| f.severity)
}

/// The verdicts on `kind` with `a`, then with `b`.
#[track_caller]
fn verdicts(
    kind: Kind,
    windows: &[Snapshot],
    graph: Option<&LiveGraph>,
    a: FindingsConfig,
    b: FindingsConfig,
) -> [Option<Severity>; 2] {
    [
        verdict(&judge(&a, windows, graph), kind),
        verdict(&judge(&b, windows, graph), kind),
    ]
}

fn cfg() -> FindingsConfig {
    FindingsConfig::default()
}

// ---------------------------------------------------------------------------------------------
// Inputs.

/// One window per value: task `grower` (id 1), running and polled, holding that many bytes.
fn task_series(values: &[u64]) -> Vec<Snapshot> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let mut t = running(1, "grower", end(i));
            t.mem = live(v);
            Snapshot {
                tasks: vec![t],
                ..empty(end(i))
            }
        })
        .collect()
}

/// One window per value: span `thresholds::request`, 10 more instances each window, all
/// closed, leaving that many bytes live.
fn span_series(values: &[u64]) -> Vec<Snapshot> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| Snapshot {
            span_names: vec![SpanNameStats {
                name: "request",
                target: "thresholds",
                instances: 10 * (i as u64 + 1),
                closed: 10 * (i as u64 + 1),
                mem: live(v),
            }],
            ..empty(end(i))
        })
        .collect()
}

/// `windows` points from 1 MiB up by `step` each window.
fn steady(windows: usize, step: u64) -> Vec<u64> {
    (0..windows as u64).map(|i| MIB + i * step).collect()
}

/// Ten windows of steady growth by 100 KiB: 3 warm-up windows, then the K + 1 = 7 points the
/// default test reads, which grew by 6 × 100 KiB = 614,400 bytes.
fn ten_windows_of_growth() -> Vec<u64> {
    steady(10, 100 * KIB)
}
const TEN_WINDOWS_GROWTH: u64 = 600 * KIB;

/// Eight flat windows at 1 MiB, then four windows each 100 KiB above the last: growth over
/// the last 4 deltas only.
fn growth_over_the_last_four() -> Vec<u64> {
    let mut v = vec![MIB; 8];
    v.extend((1..=4).map(|k| MIB + k * 100 * KIB));
    v
}

/// Windows in which tasks named `name` ended and left `residue` bytes (no task of the name
/// runs).
fn residue_windows(name: &str, residue: u64, windows: usize) -> Vec<Snapshot> {
    (0..windows)
        .map(|i| Snapshot {
            task_names: vec![TaskNameStats {
                name: name.to_owned(),
                tasks: 1,
                ended: 1,
                mem: live(residue),
                task_peak_bytes: residue,
            }],
            ..empty(end(i))
        })
        .collect()
}

/// One window (at `at(1000)`) with one running task of `mem_bytes`, started `age` seconds
/// ago, last polled `since_poll` seconds ago (`None`: no poll clock, last allocation
/// `since_activity` seconds ago).
fn idle_task_window(
    mem_bytes: u64,
    age: u64,
    since_poll: Option<u64>,
    since_activity: u64,
) -> Vec<Snapshot> {
    let now = end(0);
    let mut t = running(1, "sleeper", now);
    t.mem = live(mem_bytes);
    t.started = Some(now - Duration::from_secs(age));
    t.first_activity = t.started;
    t.last_activity = Some(now - Duration::from_secs(since_activity));
    t.last_poll = since_poll.map(|s| now - Duration::from_secs(s));
    vec![Snapshot {
        tasks: vec![t],
        ..empty(now)
    }]
}

/// One window with a running task `big` whose future is `size` bytes.
fn large_future_window(size: u64) -> Vec<Snapshot> {
    let mut t = running(1, "big", end(0));
    t.future_size = Some(size);
    vec![Snapshot {
        tasks: vec![t],
        ..empty(end(0))
    }]
}

/// A graph of `nodes` over `heap`, with no task names.
fn graph_of(nodes: &[Node], heap: &FlatHeap) -> LiveGraph {
    LiveGraph {
        graph: build(nodes, heap, &[], &GraphConfig::default()),
        ..LiveGraph::default()
    }
}

/// Two 40-byte `RcBox`es `[strong 1, weak 1, borrow flag, next, value]` of task 3 pointing at
/// each other, and nothing else: an unreachable `Rc` cycle of 80 bytes.
fn rc_cycle() -> LiveGraph {
    const BASE: usize = 0x7000_0000;
    let (a, b) = (BASE, BASE + 48);
    let mut heap = FlatHeap::new(BASE, 12);
    for (x, y, value) in [(a, b, 0x1111_2222_3333), (b, a, 0x4444_5555_6666)] {
        heap.write(x, 1);
        heap.write(x + 8, 1);
        heap.write(x + 16, 0);
        heap.write(x + 24, y);
        heap.write(x + 32, value);
    }
    let node = |id, addr| Node {
        task: 3,
        site: 41,
        alloc_time_ns: 1_000 * id,
        ..Node::new(AllocId(id), addr, 40)
    };
    graph_of(&[node(1, a), node(2, b)], &heap)
}
const RC_CYCLE_BYTES: u64 = 80;

/// A 64-byte block of task 3 from site 61 and `copies` later copies of it from the same site
/// (100 ns apart, well within the clone window): a clone storm of `64 × copies` bytes.
fn clone_storm(copies: usize) -> LiveGraph {
    const BASE: usize = 0x7100_0000;
    const SIZE: usize = 64;
    const STRIDE: usize = SIZE + 16;
    let mut heap = FlatHeap::new(BASE, (copies + 1) * STRIDE / 8);
    let mut nodes = Vec::new();
    for k in 0..=copies {
        let addr = BASE + k * STRIDE;
        // Distinct words, far from any address of the heap and above 2^16 (not default-like).
        for w in 0..SIZE / 8 {
            heap.write(addr + 8 * w, 0x5eed_0000_0000 + w * 0x1_0000_0001);
        }
        nodes.push(Node {
            task: 3,
            site: 61,
            alloc_time_ns: 1_000 + 100 * k as u64,
            ..Node::new(AllocId(k as u64 + 1), addr, SIZE)
        });
    }
    graph_of(&nodes, &heap)
}

/// `count` zeroed blocks of `size` bytes allocated by task `task` (not running, not in the
/// snapshot) named `name`, that nothing points to.
fn unowned_blocks(task: u64, name: &str, count: usize, size: usize) -> LiveGraph {
    const BASE: usize = 0x7200_0000;
    let stride = size.next_multiple_of(16) + 16;
    let heap = FlatHeap::new(BASE, count * stride / 8);
    let nodes: Vec<Node> = (0..count)
        .map(|k| Node {
            task,
            alloc_time_ns: 1_000_000_000 * k as u64,
            ..Node::new(AllocId(k as u64 + 1), BASE + k * stride, size)
        })
        .collect();
    LiveGraph {
        task_names: vec![task_index(name); count],
        ..graph_of(&nodes, &heap)
    }
}

// ---------------------------------------------------------------------------------------------
// The engine and the reporting threshold.

#[test]
fn enabled_moves_the_verdict() {
    let w = large_future_window(4096);
    assert_eq!(
        verdicts(
            Kind::LargeFuture,
            &w,
            None,
            cfg().enabled(true),
            cfg().enabled(false)
        ),
        [Some(Severity::Low), None]
    );
    assert!(judge(&cfg().enabled(false), &w, None).current.is_empty());
}

#[test]
fn min_score_moves_the_verdict() {
    // A large future scores base 0.75 × confirmed 1.0 = 0.75 in its first window; below the
    // reporting score it stays a hint: judged, but neither emitted nor counted.
    let w = large_future_window(4096);
    let reported = judge(&cfg().min_score(0.75), &w, None);
    let f = finding(&reported, Kind::LargeFuture).expect("found");
    assert_eq!(f.score, 0.75);
    assert_eq!(reported.emit, vec![f.id]);
    assert_eq!(reported.counted, vec![(Kind::LargeFuture, Severity::Low)]);

    let hint = judge(&cfg().min_score(0.76), &w, None);
    assert!(finding(&hint, Kind::LargeFuture).is_some(), "still a hint");
    assert!(hint.emit.is_empty());
    assert!(hint.counted.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Escapes and cross-task frees.

#[test]
fn escape_grace_windows_moves_the_verdict() {
    // Tasks named `escaper` ended and left 100,000 bytes, seen in 2 windows: the window of
    // their end and one more.
    let w = residue_windows("escaper", 100_000, 2);
    assert_eq!(
        verdicts(
            Kind::EscapedAllocation,
            &w,
            None,
            cfg().escape_min_bytes(100_000).escape_grace_windows(1),
            cfg().escape_min_bytes(100_000).escape_grace_windows(2),
        ),
        [Some(Severity::Low), None]
    );
    // With a grace of 0 the window of the end is enough.
    assert_eq!(
        verdict(
            &judge(
                &cfg().escape_min_bytes(100_000).escape_grace_windows(0),
                &w[..1],
                None
            ),
            Kind::EscapedAllocation
        ),
        Some(Severity::Low)
    );
}

#[test]
fn escape_min_bytes_moves_the_verdict() {
    // Without the graph: the residue (100,000 bytes over both windows) against the threshold.
    let w = residue_windows("escaper", 100_000, 2);
    assert_eq!(
        verdicts(
            Kind::EscapedAllocation,
            &w,
            None,
            cfg().escape_min_bytes(100_000),
            cfg().escape_min_bytes(100_001),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn escape_min_bytes_moves_the_verdict_with_the_graph() {
    // The residue is 200,000 bytes, of which the graph sees 4 × 25,000 = 100,000 bytes that
    // nothing points to: the class's bytes are what the threshold is checked against.
    let name = "thresholds-escaper-graph";
    let w = residue_windows(name, 200_000, 2);
    let g = unowned_blocks(5, name, 4, 25_000);
    let j = judge(&cfg().escape_min_bytes(100_000), &w, Some(&g));
    let f = finding(&j, Kind::EscapedAllocation).expect("found");
    assert_eq!(
        (f.severity, f.bytes, f.allocations, f.holder.clone()),
        (Severity::Medium, 100_000, 4, Some(Holder::Nothing))
    );
    assert_eq!(
        verdicts(
            Kind::EscapedAllocation,
            &w,
            Some(&g),
            cfg().escape_min_bytes(100_000),
            cfg().escape_min_bytes(100_001),
        ),
        [Some(Severity::Medium), None]
    );
}

/// A graph that left nodes out (or read some only in part) cannot say nothing points at a
/// block: the unowned escape is weakened to low, at confidence 0.5, and says how many nodes
/// were unseen.
#[test]
fn an_unowned_escape_is_weaker_when_the_graph_left_nodes_unread() {
    let name = "thresholds-escaper-unseen";
    let w = residue_windows(name, 200_000, 2);
    let mut g = unowned_blocks(5, name, 4, 25_000);
    g.graph.skipped.truncated_nodes = 1;
    g.graph.skipped.unreadable = 2;
    let j = judge(&cfg().escape_min_bytes(100_000), &w, Some(&g));
    let f = finding(&j, Kind::EscapedAllocation).expect("found");
    assert_eq!(
        (f.severity, f.holder.clone(), f.confidence),
        (Severity::Low, Some(Holder::Nothing), 0.5)
    );
    assert!(f.evidence.iter().any(
        |(k, v)| *k == crate::export::names::FINDING_GRAPH_UNSEEN_NODES
            && *v == EvidenceValue::from(3u64)
    ));
}

/// A hand-off cell of the matrix.
fn cell(from: &str, to: &str, bytes: u64, frees: u64) -> crate::HandOff {
    crate::HandOff {
        allocated_by: from.to_owned(),
        freed_by: to.to_owned(),
        bytes,
        frees,
    }
}

/// Two windows in which a running task named `producer` hands blocks off: by the end of the
/// first, 1 MiB to `consumer`; by the end of the second (the matrix is cumulative), `bytes`
/// more to `consumer` and 4 KiB to code outside any task. Blocks allocated outside any task
/// and freed by `consumer`, and the overflow cell, also grow by 8 MiB.
fn handoff_windows(bytes: u64) -> Vec<Snapshot> {
    let first = vec![cell("producer", "consumer", MIB, 16)];
    let second = vec![
        cell("producer", "consumer", MIB + bytes, 48),
        cell("producer", crate::HandOffs::NO_TASK, 4 * KIB, 1),
        cell(crate::HandOffs::NO_TASK, "consumer", 8 * MIB, 2),
        cell("other", "other", 8 * MIB, 2),
    ];
    [first, second]
        .into_iter()
        .enumerate()
        .map(|(i, cells)| Snapshot {
            tasks: vec![
                running(1, "producer", end(i)),
                running(2, "consumer", end(i)),
            ],
            handoffs: crate::HandOffs {
                cells,
                overflow_frees: 2 * i as u64,
            },
            ..empty(end(i))
        })
        .collect()
}

#[test]
fn cross_task_min_bytes_moves_the_verdict() {
    // The allocating task still runs: the matrix sees its hand-offs all the same. The
    // second window's row of `producer` is 2 MiB to `consumer` and 4 KiB to no task.
    let w = handoff_windows(2 * MIB - 4 * KIB);
    assert_eq!(
        verdicts(
            Kind::CrossTaskFree,
            &w,
            None,
            cfg().cross_task_min_bytes(2 * MIB),
            cfg().cross_task_min_bytes(2 * MIB + 1),
        ),
        [Some(Severity::Info), None]
    );
}

#[test]
fn a_cross_task_free_finding_is_the_windows_row_of_the_matrix_with_its_cells() {
    let w = handoff_windows(3 * MIB);
    let j = judge(&cfg().cross_task_min_bytes(MIB), &w, None);
    let found: Vec<&Finding> = j
        .current
        .iter()
        .filter(|f| f.kind == Kind::CrossTaskFree)
        .collect();
    // One finding, of `producer` (blocks allocated outside any task and the overflow cell
    // have no task name to report), with the second window's figures: its row of the matrix
    // grew by 3 MiB to `consumer` and 4 KiB to no task.
    assert_eq!(found.len(), 1, "{found:?}");
    let f = found[0];
    assert_eq!(f.task_name.as_deref(), Some("producer"));
    assert_eq!(
        (f.severity, f.verdict),
        (Severity::Info, Verdict::Diagnostic)
    );
    assert_eq!(f.bytes, 3 * MIB + 4 * KIB);
    assert_eq!(f.allocations, 33);
    assert!(
        f.evidence.iter().any(|(k, v)| {
            *k == crate::export::names::FINDING_HANDOFF_CELLS
                && *v
                    == EvidenceValue::Text(format!(
                        "consumer = {} B / 32; no task = 4096 B / 1",
                        3 * MIB
                    ))
        }),
        "{:?}",
        f.evidence
    );
    // Two frees of the window found no cell of the matrix: the row is a lower bound, and says
    // so.
    assert_eq!(f.confidence, 0.8);
    assert!(f.summary.starts_with("at least 3.0 MiB"), "{}", f.summary);
    assert!(f.summary.contains("2 hand-off(s)"), "{}", f.summary);

    // With no overflow in the window, the row is exact.
    let mut w = w;
    w[1].handoffs.cells.retain(|c| c.allocated_by != "other");
    w[1].handoffs.overflow_frees = 0;
    let j = judge(&cfg().cross_task_min_bytes(MIB), &w, None);
    let f = j
        .current
        .iter()
        .find(|f| f.kind == Kind::CrossTaskFree)
        .expect("the producer's row");
    assert_eq!(f.confidence, 1.0);
    assert!(!f.summary.contains("at least"), "{}", f.summary);
}
// ---------------------------------------------------------------------------------------------
// Growth.

#[test]
fn growth_windows_moves_the_verdict() {
    // Growth over the last 4 deltas of 11: K = 4 sees only growth; K = 6 sees 4 positive
    // deltas of 6 (0.67, below the default 0.8).
    let w = task_series(&growth_over_the_last_four());
    assert_eq!(
        verdicts(
            Kind::TaskMemoryGrowth,
            &w,
            None,
            cfg().growth_windows(4),
            cfg().growth_windows(6),
        ),
        [Some(Severity::Medium), None]
    );
}

#[test]
fn growth_positive_fraction_moves_the_verdict() {
    // 3 warm-up windows, then 7 points rising by 300 KiB with 2 dips: deltas + + − + + −,
    // 4 of 6 positive (0.667).
    let mut v = vec![MIB; 3];
    v.extend([0, 100, 200, 150, 250, 350, 300].map(|k| MIB + k * KIB));
    let w = task_series(&v);
    assert_eq!(
        verdicts(
            Kind::TaskMemoryGrowth,
            &w,
            None,
            cfg().growth_positive_fraction(0.65),
            cfg().growth_positive_fraction(0.7),
        ),
        [Some(Severity::Medium), None]
    );
}

#[test]
fn growth_min_bytes_moves_the_verdict() {
    let w = task_series(&ten_windows_of_growth());
    assert_eq!(
        verdicts(
            Kind::TaskMemoryGrowth,
            &w,
            None,
            cfg().growth_min_bytes(TEN_WINDOWS_GROWTH),
            cfg().growth_min_bytes(TEN_WINDOWS_GROWTH + 1),
        ),
        [Some(Severity::Medium), None]
    );
}

#[test]
fn growth_min_bytes_moves_the_span_residue_verdict() {
    let w = span_series(&ten_windows_of_growth());
    assert_eq!(
        verdicts(
            Kind::SpanResidueGrowth,
            &w,
            None,
            cfg().growth_min_bytes(TEN_WINDOWS_GROWTH),
            cfg().growth_min_bytes(TEN_WINDOWS_GROWTH + 1),
        ),
        [Some(Severity::Medium), None]
    );
}

#[test]
fn growth_min_bytes_at_the_top_of_its_range_still_moves_the_verdict() {
    let w = task_series(&ten_windows_of_growth());
    assert_eq!(
        verdicts(
            Kind::TaskMemoryGrowth,
            &w,
            None,
            cfg().growth_min_bytes(TEN_WINDOWS_GROWTH),
            cfg().growth_min_bytes(u64::MAX),
        ),
        [Some(Severity::Medium), None]
    );
}

#[test]
fn growth_high_bytes_moves_the_verdict() {
    let w = task_series(&ten_windows_of_growth());
    assert_eq!(
        verdicts(
            Kind::TaskMemoryGrowth,
            &w,
            None,
            cfg().growth_high_bytes(TEN_WINDOWS_GROWTH),
            cfg().growth_high_bytes(TEN_WINDOWS_GROWTH + 1),
        ),
        [Some(Severity::High), Some(Severity::Medium)]
    );
}

#[test]
fn growth_high_bytes_moves_the_span_residue_verdict() {
    let w = span_series(&ten_windows_of_growth());
    assert_eq!(
        verdicts(
            Kind::SpanResidueGrowth,
            &w,
            None,
            cfg().growth_high_bytes(TEN_WINDOWS_GROWTH),
            cfg().growth_high_bytes(TEN_WINDOWS_GROWTH + 1),
        ),
        [Some(Severity::High), Some(Severity::Medium)]
    );
}

#[test]
fn warmup_windows_moves_the_verdict() {
    // Seven windows of growth from the series' first: K + 1 = 7 points and no warm-up.
    let w = task_series(&steady(7, 100 * KIB));
    assert_eq!(
        verdicts(
            Kind::TaskMemoryGrowth,
            &w,
            None,
            cfg().warmup_windows(0),
            cfg().warmup_windows(1),
        ),
        [Some(Severity::Medium), None]
    );
}

// ---------------------------------------------------------------------------------------------
// Suspended and stalled tasks, large futures.

/// A task alive 100 s, with no poll clock, last allocating 40 s ago, holding 2 MiB.
fn suspended() -> Vec<Snapshot> {
    idle_task_window(2 * MIB, 100, None, 40)
}

#[test]
fn suspended_after_moves_the_verdict() {
    assert_eq!(
        verdicts(
            Kind::SuspendedRetention,
            &suspended(),
            None,
            cfg().suspended_after(Duration::from_secs(40)),
            cfg().suspended_after(Duration::from_secs(41)),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn suspended_min_bytes_moves_the_verdict() {
    assert_eq!(
        verdicts(
            Kind::SuspendedRetention,
            &suspended(),
            None,
            cfg().suspended_min_bytes(2 * MIB),
            cfg().suspended_min_bytes(2 * MIB + 1),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn high_bytes_moves_the_retention_verdict() {
    assert_eq!(
        verdicts(
            Kind::SuspendedRetention,
            &suspended(),
            None,
            cfg().high_bytes(2 * MIB),
            cfg().high_bytes(2 * MIB + 1),
        ),
        [Some(Severity::Medium), Some(Severity::Low)]
    );
}

/// A task alive 200 s, last polled 90 s ago, holding 100 KiB (below the retention's 1 MiB, so
/// a task that is not stalled gets no finding at all).
fn stalled() -> Vec<Snapshot> {
    idle_task_window(100 * KIB, 200, Some(90), 90)
}

#[test]
fn stalled_after_moves_the_verdict() {
    assert_eq!(
        verdicts(
            Kind::TaskStalled,
            &stalled(),
            None,
            cfg().stalled_after(Duration::from_secs(90)),
            cfg().stalled_after(Duration::from_secs(91)),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn stalled_min_age_moves_the_verdict() {
    assert_eq!(
        verdicts(
            Kind::TaskStalled,
            &stalled(),
            None,
            cfg().stalled_min_age(Duration::from_secs(200)),
            cfg().stalled_min_age(Duration::from_secs(201)),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn stalled_min_bytes_moves_the_verdict() {
    assert_eq!(
        verdicts(
            Kind::TaskStalled,
            &stalled(),
            None,
            cfg().stalled_min_bytes(100 * KIB),
            cfg().stalled_min_bytes(100 * KIB + 1),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn high_bytes_moves_the_stall_verdict() {
    assert_eq!(
        verdicts(
            Kind::TaskStalled,
            &stalled(),
            None,
            cfg().high_bytes(100 * KIB),
            cfg().high_bytes(100 * KIB + 1),
        ),
        [Some(Severity::High), Some(Severity::Low)]
    );
}

#[test]
fn large_future_bytes_moves_the_verdict() {
    assert_eq!(
        verdicts(
            Kind::LargeFuture,
            &large_future_window(4096),
            None,
            cfg().large_future_bytes(4096),
            cfg().large_future_bytes(4097),
        ),
        [Some(Severity::Low), None]
    );
}

// ---------------------------------------------------------------------------------------------
// Cycles and clone storms (the graph's kinds).

#[test]
fn cycle_confirm_windows_moves_the_verdict() {
    // The same cycle in 2 consecutive windows.
    let g = rc_cycle();
    let w = [empty(end(0)), empty(end(1))];
    assert_eq!(
        verdicts(
            Kind::UnreachableCycle,
            &w,
            Some(&g),
            cfg().cycle_confirm_windows(2),
            cfg().cycle_confirm_windows(3),
        ),
        [Some(Severity::High), None]
    );
    // Confirmed in its first window with 1.
    assert_eq!(
        verdict(
            &judge(&cfg().cycle_confirm_windows(1), &w[..1], Some(&g)),
            Kind::UnreachableCycle
        ),
        Some(Severity::High)
    );
}

#[test]
fn cycle_critical_bytes_moves_the_verdict() {
    let g = rc_cycle();
    let w = [empty(end(0)), empty(end(1))];
    let j = judge(&cfg(), &w, Some(&g));
    let f = finding(&j, Kind::UnreachableCycle).expect("found");
    assert_eq!((f.bytes, f.allocations), (RC_CYCLE_BYTES, 2));
    // Critical *above* the threshold.
    assert_eq!(
        verdicts(
            Kind::UnreachableCycle,
            &w,
            Some(&g),
            cfg().cycle_critical_bytes(RC_CYCLE_BYTES - 1),
            cfg().cycle_critical_bytes(RC_CYCLE_BYTES),
        ),
        [Some(Severity::Critical), Some(Severity::High)]
    );
}

#[test]
fn clone_storm_min_clones_moves_the_verdict() {
    // 10 copies of 64 bytes: 640 bytes, far below the default 1 MiB of duplicated bytes.
    let g = clone_storm(10);
    let w = [empty(end(0))];
    let j = judge(&cfg().clone_storm_min_clones(10), &w, Some(&g));
    let f = finding(&j, Kind::CloneStorm).expect("found");
    assert_eq!((f.allocations, f.bytes), (10, 640));
    assert_eq!(
        verdicts(
            Kind::CloneStorm,
            &w,
            Some(&g),
            cfg().clone_storm_min_clones(10),
            cfg().clone_storm_min_clones(11),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn clone_storm_min_bytes_moves_the_verdict() {
    // The same 640 bytes, with a count threshold out of reach.
    let g = clone_storm(10);
    let w = [empty(end(0))];
    let base = cfg().clone_storm_min_clones(1000);
    assert_eq!(
        verdicts(
            Kind::CloneStorm,
            &w,
            Some(&g),
            base.clone().clone_storm_min_bytes(640),
            base.clone().clone_storm_min_bytes(641),
        ),
        [Some(Severity::Low), None]
    );
}

#[test]
fn high_bytes_moves_the_clone_storm_verdict() {
    let g = clone_storm(10);
    let w = [empty(end(0))];
    let base = cfg().clone_storm_min_clones(10);
    assert_eq!(
        verdicts(
            Kind::CloneStorm,
            &w,
            Some(&g),
            base.clone().high_bytes(640),
            base.clone().high_bytes(641),
        ),
        [Some(Severity::Medium), Some(Severity::Low)]
    );
}

// ---------------------------------------------------------------------------------------------
// Churn.

#[test]
fn churn_allocations_per_sec_moves_the_verdict() {
    // In a 10 s window span `thresholds::parse` made 1,000,000 allocations and freed them
    // all: 100,000 a second.
    let span = |allocations: u64, bytes: u64| SpanNameStats {
        name: "parse",
        target: "thresholds",
        instances: 1,
        closed: 1,
        mem: MemStats {
            allocated_bytes: bytes,
            allocations,
            freed_bytes: bytes,
            frees: allocations,
            peak_bytes: 0,
        },
    };
    let w = [
        Snapshot {
            span_names: vec![span(0, 0)],
            ..empty(end(0))
        },
        Snapshot {
            span_names: vec![span(1_000_000, 64_000_000)],
            ..empty(end(1))
        },
    ];
    assert_eq!(
        verdicts(
            Kind::TemporaryChurn,
            &w,
            None,
            cfg().churn_allocations_per_sec(100_000.0),
            cfg().churn_allocations_per_sec(100_001.0),
        ),
        [Some(Severity::Info), None]
    );
}

// ---------------------------------------------------------------------------------------------
// The environment and validation.

/// A lookup that knows one variable.
fn env(key: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
    move |k| (k == key).then(|| value.to_owned())
}

/// The setting an `InvalidConfig` error names.
#[track_caller]
fn setting_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidConfig { setting, .. } => setting,
        e => panic!("not an InvalidConfig: {e:?}"),
    }
}

#[test]
fn heapspan_findings_env_moves_the_verdict() {
    let w = large_future_window(4096);
    let off = cfg().apply_env(env(HEAPSPAN_FINDINGS, "off")).unwrap();
    assert!(!off.enabled);
    assert_eq!(
        verdict(&judge(&cfg(), &w, None), Kind::LargeFuture),
        Some(Severity::Low)
    );
    assert!(judge(&off, &w, None).current.is_empty());
    // Nothing set: nothing changes.
    assert_eq!(cfg().apply_env(|_| None).unwrap(), cfg());

    let e = cfg()
        .apply_env(env(HEAPSPAN_FINDINGS, "maybe"))
        .unwrap_err();
    assert_eq!(setting_of(&e), HEAPSPAN_FINDINGS);
    assert_eq!(
        e.to_string(),
        "invalid value \"maybe\" for HEAPSPAN_FINDINGS: expected on or off (or 1/0, true/false)"
    );
}

#[test]
fn findings_settings_set_in_code_win_over_the_environment() {
    // Set in code: the variable is not applied (nor read: a bad value does not matter).
    let c = cfg()
        .enabled(true)
        .apply_env(env(HEAPSPAN_FINDINGS, "off"))
        .unwrap();
    assert!(c.enabled);
    let c = cfg()
        .growth_windows(8)
        .apply_env(env(HEAPSPAN_GROWTH_WINDOWS, "six"))
        .unwrap();
    assert_eq!(c.growth_windows, 8);
    // A config passed with other settings still takes the variables it does not set.
    let c = cfg()
        .min_score(0.3)
        .apply_env(env(HEAPSPAN_GROWTH_WINDOWS, "4"))
        .unwrap();
    assert_eq!((c.growth_windows, c.min_score), (4, 0.3));
}

#[test]
fn heapspan_growth_windows_env_moves_the_verdict() {
    let w = task_series(&growth_over_the_last_four());
    let four = cfg().apply_env(env(HEAPSPAN_GROWTH_WINDOWS, "4")).unwrap();
    assert_eq!(four.growth_windows, 4);
    assert_eq!(
        verdict(&judge(&four, &w, None), Kind::TaskMemoryGrowth),
        Some(Severity::Medium)
    );
    assert_eq!(
        verdict(&judge(&cfg(), &w, None), Kind::TaskMemoryGrowth),
        None
    );

    let e = cfg()
        .apply_env(env(HEAPSPAN_GROWTH_WINDOWS, "six"))
        .unwrap_err();
    assert_eq!(setting_of(&e), HEAPSPAN_GROWTH_WINDOWS);
    assert_eq!(
        e.to_string(),
        "invalid value \"six\" for HEAPSPAN_GROWTH_WINDOWS: expected an integer from 2 to 1000"
    );
}

#[test]
fn heapspan_growth_windows_env_out_of_range_names_the_variable() {
    for v in ["0", "1", "1001"] {
        let e = cfg()
            .apply_env(env(HEAPSPAN_GROWTH_WINDOWS, v))
            .expect_err(v);
        assert_eq!(setting_of(&e), HEAPSPAN_GROWTH_WINDOWS, "{v}");
    }
}

#[test]
fn validate_rejects_bad_values_naming_the_setting() {
    let bad: [(FindingsConfig, &str); 14] = [
        (cfg().min_score(-0.1), "findings.min_score"),
        (cfg().min_score(1.01), "findings.min_score"),
        (cfg().min_score(f64::NAN), "findings.min_score"),
        (cfg().growth_windows(1), "findings.growth_windows"),
        (cfg().growth_windows(1001), "findings.growth_windows"),
        (
            cfg().growth_positive_fraction(0.0),
            "findings.growth_positive_fraction",
        ),
        (
            cfg().growth_positive_fraction(1.01),
            "findings.growth_positive_fraction",
        ),
        (
            cfg().growth_positive_fraction(f64::NAN),
            "findings.growth_positive_fraction",
        ),
        (
            cfg().cycle_confirm_windows(0),
            "findings.cycle_confirm_windows",
        ),
        (
            cfg().churn_allocations_per_sec(0.0),
            "findings.churn_allocations_per_sec",
        ),
        (
            cfg().churn_allocations_per_sec(-1.0),
            "findings.churn_allocations_per_sec",
        ),
        (
            cfg().churn_allocations_per_sec(f64::NAN),
            "findings.churn_allocations_per_sec",
        ),
        (cfg().growth_windows(0), "findings.growth_windows"),
        (
            // The first bad one is named.
            cfg().min_score(2.0).growth_windows(0),
            "findings.min_score",
        ),
    ];
    for (c, setting) in bad {
        let e = c.validate().expect_err(setting);
        assert_eq!(setting_of(&e), setting, "{c:?}");
        assert!(e.to_string().contains(setting), "{e}");
    }
    assert_eq!(
        cfg().min_score(1.5).validate().unwrap_err().to_string(),
        "invalid value \"1.5\" for findings.min_score: expected 0 to 1"
    );
    // The edges of the ranges are accepted.
    for c in [
        cfg(),
        cfg().min_score(0.0),
        cfg().min_score(1.0),
        cfg().growth_windows(2),
        cfg().growth_windows(1000),
        cfg().growth_positive_fraction(1.0),
        cfg().growth_positive_fraction(f64::MIN_POSITIVE),
        cfg().cycle_confirm_windows(1),
        cfg().churn_allocations_per_sec(f64::MIN_POSITIVE),
    ] {
        assert_eq!(c.validate().ok(), Some(()), "{c:?}");
    }
}
