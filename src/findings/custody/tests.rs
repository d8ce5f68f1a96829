//! `ffi.custody` drafts from violations: severity per case, the danger surface with and
//! without the graph, names, and a problem kept once found.

use std::panic::Location;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::alloc::header::span_word;
use crate::findings::{Engine, EvidenceValue, Finding, Judged};
use crate::graph::{build, FlatHeap, GraphConfig, Node};
use crate::{MemStats, TaskSource, TaskStats};

const BOUNDARY: &str = "keeper";
const BASE: usize = 0x7300_0000;
/// A `Vec<Box<[u8; 1000]>>` of 3: its 24-byte buffer at `BASE` owns three 1000-byte boxes.
const BOX: usize = 1000;
const VEC_SURFACE: u64 = 24 + 3 * BOX as u64;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn task(id: u64, name: &str) -> TaskStats {
    TaskStats {
        key: TaskKey { id },
        name: Some(name.to_owned()),
        location: None,
        first_span: None,
        source: TaskSource::Wrapper,
        mem: MemStats::default(),
        started: Some(at(0)),
        ended: None,
        first_activity: None,
        last_activity: None,
        future_size: None,
        last_poll: None,
    }
}

/// The vector's buffer (node 1) and its boxes (nodes 2..=4), and an unrelated 64-byte block
/// (node 5).
fn vec_graph() -> LiveGraph {
    let stride = BOX.next_multiple_of(16) + 16;
    let mut heap = FlatHeap::new(BASE, (64 + 4 * stride) / 8);
    let mut nodes = vec![Node::new(AllocId(1), BASE, 24)];
    for k in 0..3 {
        let addr = BASE + 64 + k * stride;
        heap.write(BASE + 8 * k, addr);
        nodes.push(Node::new(AllocId(k as u64 + 2), addr, BOX));
    }
    nodes.push(Node::new(AllocId(5), BASE + 64 + 3 * stride, 64));
    LiveGraph {
        graph: build(&nodes, &heap, &[], &GraphConfig::default()),
        ..LiveGraph::default()
    }
}

#[track_caller]
fn here() -> &'static Location<'static> {
    Location::caller()
}

fn violation(case: Case, addr: usize, location: &'static Location<'static>) -> Violation {
    Violation {
        case,
        term: (case == Case::NotReclaimed).then_some(Term::Deadline),
        in_custody: case == Case::NotReclaimed,
        addr,
        size: 24,
        boundary: (case != Case::NotHanded).then_some(BOUNDARY),
        location,
        key: Key::new(7, 0),
        by: None,
        freed_by: None,
        realloc: false,
        at: at(5),
    }
}

/// Judges windows of `violations` (one slice per window) with `graph`; the last window.
fn judge(
    cfg: &FindingsConfig,
    windows: &[&[Violation]],
    tasks: Vec<TaskStats>,
    graph: Option<&LiveGraph>,
) -> Judged {
    let mut engine = Engine::new(cfg.clone());
    let mut last = Judged::default();
    for (i, vs) in windows.iter().enumerate() {
        let snap = crate::export::graph::tests::snapshot(
            at(10 * (i as u64 + 1)),
            tasks.clone(),
            Vec::new(),
        );
        last = engine.judge(&Input {
            snap: &snap,
            prev: None,
            start: at(10 * i as u64),
            graph,
            invalid: &[],
            invalid_lost: 0,
            custody: vs,
        });
    }
    last
}

fn custody(j: &Judged) -> Vec<&Finding> {
    j.current
        .iter()
        .filter(|f| f.kind == Kind::FfiCustody)
        .collect()
}

#[track_caller]
fn text(f: &Finding, key: &str) -> String {
    match f.evidence.iter().find(|(k, _)| *k == key) {
        Some((_, EvidenceValue::Text(t))) => t.clone(),
        other => panic!("{key}: {other:?} in {f:?}"),
    }
}

#[track_caller]
fn int(f: &Finding, key: &str) -> i64 {
    match f.evidence.iter().find(|(k, _)| *k == key) {
        Some((_, EvidenceValue::Int(i))) => *i,
        other => panic!("{key}: {other:?} in {f:?}"),
    }
}

#[test]
fn with_the_graph_the_bytes_are_the_ownership_closure_of_the_handed_block() {
    let g = vec_graph();
    let loc = here();
    let j = judge(
        &FindingsConfig::default(),
        &[&[violation(Case::NotReclaimed, BASE, loc)]],
        vec![task(7, "ffi_worker")],
        Some(&g),
    );
    let fs = custody(&j);
    assert_eq!(fs.len(), 1);
    let f = fs[0];
    assert_eq!(
        (f.severity, f.verdict),
        (Severity::Medium, Verdict::Confirmed)
    );
    assert_eq!(
        f.bytes, VEC_SURFACE,
        "the buffer and its three boxes, not node 5"
    );
    assert_eq!(f.allocations, 4);
    assert_eq!(f.roots, vec![AllocId(1)], "the handed block is the root");
    assert_eq!(
        j.surface_roots,
        vec![AllocId(1)],
        "so the DOT output highlights it"
    );
    assert!(f.from_graph);
    assert_eq!(text(f, n::FINDING_CUSTODY_CASE), "not_reclaimed");
    assert_eq!(text(f, n::FINDING_CUSTODY_UNTIL), "deadline");
    assert_eq!(text(f, n::FINDING_BOUNDARY), BOUNDARY);
    assert_eq!(int(f, n::FINDING_CUSTODY_POINTERS), 1);
    assert_eq!(
        f.task_name.as_deref(),
        Some("ffi_worker"),
        "from the snapshot"
    );
    assert_eq!(f.tasks, vec![TaskKey { id: 7 }]);
    assert_eq!(
        f.location_str(),
        Some(format!("{}:{}", loc.file(), loc.line()))
    );
    assert!(
        f.summary
            .contains("still in foreign custody at its deadline"),
        "{}",
        f.summary
    );
}

#[test]
fn without_the_graph_the_bytes_are_the_handed_block_alone() {
    let j = judge(
        &FindingsConfig::default(),
        &[&[violation(Case::NotReclaimed, BASE, here())]],
        Vec::new(),
        None,
    );
    let f = custody(&j)[0];
    assert_eq!((f.bytes, f.allocations), (24, 1));
    assert!(f.roots.is_empty() && !f.from_graph);
    // Not in the snapshot: named by the key's name index (none: unnamed).
    assert_eq!(f.task_name.as_deref(), Some("unnamed"));
    assert!(f.summary.contains("needs the live index"), "{}", f.summary);
}

#[test]
fn a_block_the_graph_lacks_counts_its_own_size_beside_the_closures() {
    let g = vec_graph();
    let loc = here();
    let lacking = Violation {
        size: 512,
        ..violation(Case::NotReclaimed, 0x10, loc)
    };
    let j = judge(
        &FindingsConfig::default(),
        &[&[violation(Case::NotReclaimed, BASE, loc), lacking]],
        Vec::new(),
        Some(&g),
    );
    let f = custody(&j)[0];
    assert_eq!(f.bytes, VEC_SURFACE + 512);
    assert_eq!(f.allocations, 5);
    assert_eq!(
        int(f, n::FINDING_CUSTODY_POINTERS),
        2,
        "one problem, two pointers"
    );
}

#[test]
fn a_large_surface_makes_not_reclaimed_high() {
    let g = vec_graph();
    let v = [violation(Case::NotReclaimed, BASE, here())];
    let at_threshold = FindingsConfig::default().high_bytes(VEC_SURFACE);
    assert_eq!(
        custody(&judge(&at_threshold, &[&v], Vec::new(), Some(&g)))[0].severity,
        Severity::High
    );
    let above = FindingsConfig::default().high_bytes(VEC_SURFACE + 1);
    assert_eq!(
        custody(&judge(&above, &[&v], Vec::new(), Some(&g)))[0].severity,
        Severity::Medium
    );
}

#[test]
fn each_case_has_its_severity_and_verdict() {
    let loc = here();
    for (case, severity, verdict) in [
        (Case::NotReclaimed, Severity::Medium, Verdict::Confirmed),
        (Case::FreedInCustody, Severity::Critical, Verdict::Confirmed),
        (Case::ReclaimedTwice, Severity::Critical, Verdict::Confirmed),
        (
            Case::ReleasedAfterReclaim,
            Severity::High,
            Verdict::Confirmed,
        ),
        (
            Case::ReclaimedAfterRelease,
            Severity::High,
            Verdict::Confirmed,
        ),
        (Case::ReleasedTwice, Severity::Medium, Verdict::Confirmed),
        (Case::HandedTwice, Severity::Medium, Verdict::Confirmed),
        (Case::NotHanded, Severity::Medium, Verdict::Probable),
    ] {
        let j = judge(
            &FindingsConfig::default(),
            &[&[violation(case, BASE, loc)]],
            Vec::new(),
            None,
        );
        let f = custody(&j)[0];
        assert_eq!((f.severity, f.verdict), (severity, verdict), "{case:?}");
        assert!(f.score >= 0.5, "{case:?} is reported: {}", f.score);
        assert_eq!(text(f, n::FINDING_CUSTODY_CASE), case.as_str());
    }
    assert_eq!(Case::ALL.len(), 8, "every case above");
}

#[test]
fn cases_and_boundaries_are_separate_problems_at_one_handover_site() {
    let loc = here();
    let other = Violation {
        boundary: Some("codec"),
        ..violation(Case::ReclaimedTwice, BASE, loc)
    };
    let j = judge(
        &FindingsConfig::default(),
        &[&[
            violation(Case::ReclaimedTwice, BASE, loc),
            violation(Case::ReleasedTwice, BASE, loc),
            other,
        ]],
        Vec::new(),
        None,
    );
    let fs = custody(&j);
    assert_eq!(fs.len(), 3, "{fs:#?}");
    let ids: std::collections::BTreeSet<_> = fs.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn a_problem_is_kept_for_the_run_and_grows_with_new_pointers() {
    let g = vec_graph();
    let loc = here();
    let v = [violation(Case::ReclaimedTwice, BASE, loc)];
    let j = judge(
        &FindingsConfig::default(),
        &[&v, &[], &[]],
        Vec::new(),
        Some(&g),
    );
    let f = custody(&j)[0];
    assert_eq!(f.windows, 3, "the same finding, every window");
    assert_eq!(f.bytes, VEC_SURFACE, "as found: not measured again");
    assert!(j.emit.is_empty(), "unchanged: not sent again");
    let j = judge(
        &FindingsConfig::default(),
        &[&v, &[], &v],
        Vec::new(),
        Some(&g),
    );
    let f = custody(&j)[0];
    assert_eq!(int(f, n::FINDING_CUSTODY_POINTERS), 2);
    assert_eq!(f.bytes, 2 * VEC_SURFACE, "each pointer's surface as found");
}

#[test]
fn a_free_in_custody_names_who_freed_it() {
    let group = crate::layer::groups::base(("app::ffi", "drop_it"));
    let by = Key::new(8, span_word(group, 3));
    let v = Violation {
        freed_by: Some(by),
        realloc: true,
        ..violation(Case::FreedInCustody, BASE, here())
    };
    let j = judge(
        &FindingsConfig::default(),
        &[&[v]],
        vec![task(8, "dropper")],
        None,
    );
    let f = custody(&j)[0];
    assert_eq!(text(f, n::FINDING_FREE_TASK), "dropper");
    assert_eq!(text(f, n::FINDING_FREE_SPAN), "app::ffi::drop_it");
    assert!(f.summary.contains("reallocated by Rust"), "{}", f.summary);
}

#[test]
fn the_call_that_broke_the_rule_is_evidence() {
    let by = here();
    let v = Violation {
        by: Some(by),
        ..violation(Case::ReclaimedTwice, BASE, here())
    };
    let j = judge(&FindingsConfig::default(), &[&[v]], Vec::new(), None);
    let f = custody(&j)[0];
    assert_eq!(
        text(f, n::FINDING_CUSTODY_CALL),
        format!("{}:{}", by.file(), by.line())
    );
}

#[test]
fn a_pointer_not_handed_over_has_no_boundary_and_is_probable() {
    let j = judge(
        &FindingsConfig::default(),
        &[&[violation(Case::NotHanded, BASE, here())]],
        Vec::new(),
        None,
    );
    let f = custody(&j)[0];
    assert_eq!(text(f, n::FINDING_BOUNDARY), "unknown");
    assert!(f.confidence < 1.0);
}
