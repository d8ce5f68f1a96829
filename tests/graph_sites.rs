//! Code locations of indexed allocations (`capture_sites`): one site per call path, and the
//! site symbolizes to the function that asked for the memory.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use heapspan::graph::live::site_location;

#[inline(never)]
fn make_leaf(v: u64) -> Box<[u64; 4]> {
    Box::new([v; 4])
}

#[inline(never)]
fn make_other(v: u64) -> Box<[u64; 4]> {
    Box::new([v + 1; 4])
}

#[inline(never)]
fn push_some(v: &mut Vec<u64>) {
    for i in 0..100 {
        v.push(i);
    }
}

#[test]
fn sites_tell_call_sites_apart_and_name_the_caller() {
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .capture_sites(true)
        .start()
        .unwrap();
    // One call instruction for all three (an opaque loop condition: no unrolled copies, whose
    // different return addresses would be different sites).
    let mut a = Vec::with_capacity(3);
    let mut i = 0;
    while std::hint::black_box(i) < 3 {
        a.push(make_leaf(i));
        i += 1;
    }
    let b = make_other(7);
    let g = guard.graph().expect("index on");
    let site = |p: &[u64; 4]| g.node_at(p.as_ptr() as usize).expect("indexed").site;
    let leaf = site(&a[0]);
    assert_ne!(leaf, 0);
    assert!(a.iter().all(|x| site(x) == leaf), "one call path, one site");
    assert_ne!(site(&b), leaf, "another call site");
    let loc = site_location(leaf).expect("symbolized");
    assert!(loc.function.contains("make_leaf"), "{loc:?}");
    // File and line come from debug info (the test profile has it; release builds may not).
    if cfg!(debug_assertions) {
        assert!(
            loc.file
                .as_deref()
                .is_some_and(|f| f.ends_with("graph_sites.rs")),
            "{loc:?}"
        );
    }
    let other = site_location(site(&b)).expect("symbolized");
    assert!(other.function.contains("make_other"), "{other:?}");
    // Deep allocation APIs too (a debug `Vec::push` has many frames of its own).
    let mut pushed = Vec::new();
    push_some(&mut pushed);
    let g = guard.graph().expect("index on");
    let grown = g.node_at(pushed.as_ptr() as usize).expect("indexed").site;
    let loc = site_location(grown).expect("symbolized");
    assert!(loc.function.contains("push_some"), "{loc:?}");
    // DOT labels carry the location (the Vec's buffer owns the leaves: they are drawn).
    let dot = g.to_dot(&Default::default());
    assert!(dot.contains("make_leaf"), "{dot}");
    drop((a, b));
}
