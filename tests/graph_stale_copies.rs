//! Regression test: heapspan's own capture buffers must not come back as phantom pointers.
//!
//! A capture copies the words of every indexed block (`CopiedHeap`, freed at the end of
//! `graph::live::capture`) and returns a node list holding the address of every live block
//! (`Graph::nodes`, freed when the `LiveGraph` is dropped). Both are freed as they are, so the
//! heap keeps a copy of every pointer and every address it had at that capture. The scan reads
//! whole blocks, uninitialised capacity included: a later block that reuses that memory without
//! writing all of it (any `Vec::with_capacity`, a hash table's empty buckets) shows those words
//! to the next capture as pointers, and an `owns` edge becomes `shares` (an `arc_clone` too).
//!
//! Measured on tests/graph_fixtures.rs in its first form (one `Arc`, fixtures freed, tests in
//! parallel): 100 runs lost the `Arc`'s three `arc_clone` edges 7 times and 37 and 75 of the
//! 254 tree edges once each; the phantom holders found while debugging included a freed node
//! list (80-byte records with weight 1.0) of an earlier capture, reused by a 12 KiB block. The
//! same fixtures kept instead of freed: edges lost in 6 runs of 150; against a copy of
//! heapspan that zeroes its own blocks before freeing them (the fix below, tried outside the
//! tree): none in 300 runs, and this test passes.
//!
//! The fix (in place): zero heapspan's own blocks before they go back to the inner allocator when
//! the live index is on: in `Allocator::dealloc` (src/alloc/mod.rs) when the header's task is
//! `TASK_HEAPSPAN`, and in `Allocator::realloc` for such blocks allocate, copy and zero the old
//! block instead of calling the inner `realloc`; or scrub `CopiedHeap`, the scan's scratch
//! buffers and `Graph::nodes` on drop.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use heapspan::graph::{EdgeKind, Node};
use heapspan::IndexMode;

/// High bits no user-space address has.
const NOT_AN_ADDRESS: u64 = 0xA5A5 << 48;

struct Holder {
    _tag: u64,
    target: Box<[u64; 4]>,
}

#[test]
fn a_buffer_the_program_never_wrote_holds_no_pointers() {
    let guard = heapspan::builder()
        .live_index(IndexMode::Full)
        .start()
        .expect("heapspan starts");
    let holder = Box::new(Holder {
        _tag: NOT_AN_ADDRESS,
        target: Box::new([NOT_AN_ADDRESS; 4]),
    });
    let target = std::ptr::from_ref::<[u64; 4]>(&holder.target) as usize;
    let holder_at = std::ptr::from_ref::<Holder>(&holder) as usize;

    // A first capture: its node list holds the target's address.
    let first = guard.graph().expect("the live index is on");
    assert!(first.node_at(target).is_some());
    let list_bytes = first.graph.nodes.capacity() * size_of::<Node>();
    drop(first);
    // An uninitialised buffer that takes the freed node list's memory back (an indexed block
    // has a 32-byte header, the node list had a 16-byte one: same block size).
    let fresh: Vec<u8> = Vec::with_capacity(list_bytes - 16);
    let fresh_at = fresh.as_ptr() as usize;

    let second = guard.graph().expect("the live index is on");
    let id = |addr| second.node_at(addr).expect("indexed").id;
    let (holder_id, target_id, fresh_id) = (id(holder_at), id(target), id(fresh_at));
    let from_fresh = second
        .graph
        .edges
        .iter()
        .filter(|e| e.from == fresh_id)
        .count();
    let into_target: Vec<_> = second
        .graph
        .edges
        .iter()
        .filter(|e| e.to == target_id)
        .collect();
    eprintln!(
        "{from_fresh} edges from a {}-byte buffer never written; edges into the target: \
         {into_target:?}",
        list_bytes - 16
    );
    assert_eq!(
        from_fresh, 0,
        "a buffer the program never wrote points at {from_fresh} blocks: the previous \
         capture's node list, freed with every address in it"
    );
    assert!(
        into_target
            .iter()
            .any(|e| e.kind == EdgeKind::Owns && e.from == holder_id),
        "the target has one holder: {into_target:?}"
    );
    drop(fresh);
    drop(holder);
}
