//! `ffi.custody` with the live index off: no relation graph, so a finding's bytes are the
//! handed-over block alone (a `Vec<Box<[u8; 1000]>>` of 4: its 32-byte buffer, not the boxes),
//! with no roots; and a free by Rust in custody is still caught (the header's custody flag does
//! not need the index).

#[path = "custody_common/mod.rs"]
mod custody_common;

use std::time::Duration;

use custody_common::*;
use heapspan::custody;
use heapspan::export::{names as n, ExportConfig};
use heapspan::findings::Severity;
use heapspan_integration_tests::keeper::*;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const BOXES: usize = 4;
const BLOCK: usize = 2048;

#[test]
fn without_the_index_the_bytes_are_the_handed_block_and_frees_are_still_caught() {
    let guard = start(heapspan::Builder::default(), ExportConfig::default());
    let b = Boxes::new(BOXES, 0x77);
    let block = Box::into_raw(Box::new([9u8; BLOCK]));
    // SAFETY: live blocks of the global allocator of the sizes given; C keeps them.
    unsafe {
        let p = custody::handover(b.ptr, b.n, "keeper").deadline(Duration::ZERO);
        assert!(p.is_guarded());
        assert_eq!(keeper_take(b.ptr.cast(), b.n * 8), 0);
        assert!(custody::handover(block, 1, "keeper").is_guarded());
        assert_eq!(keeper_take(block.cast(), BLOCK), 0);
        // The bug: Rust frees what C holds.
        drop(Box::from_raw(block));
    }

    let fs = custody(&guard.cut_window());
    assert_eq!(fs.len(), 2, "{fs:#?}");
    let late = find(&fs, "not_reclaimed", "keeper");
    assert_eq!(late.severity, Severity::Medium);
    assert_eq!(
        late.bytes,
        (BOXES * 8) as u64,
        "the buffer alone: {late:#?}"
    );
    assert_eq!(late.allocations, 1);
    assert!(late.roots.is_empty() && !late.from_graph);
    assert_eq!(text(late, n::FINDING_CUSTODY_UNTIL), "deadline");
    let freed = find(&fs, "freed_in_custody", "keeper");
    assert_eq!(freed.severity, Severity::Critical);
    assert_eq!(freed.bytes, BLOCK as u64);
    drop(guard);

    // SAFETY: C gives back what it kept last (the block Rust "freed", which the allocator
    // kept), then the boxes' buffer, which Rust owns again.
    unsafe {
        assert_eq!(keeper_consume(), 9 * BLOCK as u64);
        assert_eq!(keeper_give_back() as usize, b.addr());
        custody::reclaim(b.ptr);
        Boxes::free(b.addr(), BOXES);
    }
}
