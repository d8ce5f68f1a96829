//! A node bigger than the per-node scan cap is counted and reported, not cut silently. Its own
//! binary: a capture in a parallel test of another binary's would race that binary's
//! annotation captures (annotations are process-wide).
#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use heapspan::graph::EdgeKind;

fn guard() -> &'static heapspan::Guard {
    static G: std::sync::OnceLock<heapspan::Guard> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        heapspan::builder()
            .live_index(heapspan::IndexMode::Full)
            .start()
            .unwrap()
    })
}

/// A node bigger than the per-node scan cap (a table of boxes past it) is read up to the cap
/// and reported as truncated, not left out silently: the boxes past the cap have no owner in
/// the graph, and the counts say why.
#[test]
fn a_node_past_the_per_node_cap_is_reported_truncated() {
    let guard = guard();
    const CAP: usize = 64 * 1024;
    // 16,384 pointers: 128 KiB of table, twice the cap.
    let table: Vec<Box<u64>> = (0..16_384u64).map(Box::new).collect();
    let mut cfg = heapspan::CaptureConfig::default();
    cfg.graph.max_scan_bytes_per_node = CAP;
    let g = guard.graph_with(&cfg).expect("index on");
    assert_eq!(g.scan.over_budget_nodes, 0, "{:?}", g.scan);
    assert!(
        g.graph.skipped.truncated_nodes >= 1,
        "{:?}",
        g.graph.skipped
    );
    assert!(
        g.graph.skipped.truncated_bytes >= (table.len() * 8 - CAP) as u64,
        "{:?}",
        g.graph.skipped
    );
    let table_id = g.node_at(table.as_ptr() as usize).expect("indexed").id;
    let owned = g
        .graph
        .edges
        .iter()
        .filter(|e| e.from == table_id && e.kind == EdgeKind::Owns)
        .count();
    assert_eq!(owned, CAP / 8, "the boxes in the first {CAP} bytes only");
    drop(table);
}
