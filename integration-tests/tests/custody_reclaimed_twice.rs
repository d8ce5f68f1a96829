//! `ffi.custody` `reclaimed_twice`, planted through the C library `keeper`, with the live index
//! on: the `ffi_roundtrip` task hands the buffer of a `Vec<Box<[u8; 1000]>>` of 2 to C, C gives
//! it back, and Rust reclaims it twice (two code paths each think they took it back: the road
//! to a double free). Critical, its danger surface the buffer and its boxes (2 × 8 + 2 × 1000
//! bytes), the second reclaim's call site in the evidence; kept in later windows. Once reclaimed
//! the block is Rust's again: freeing it is a valid free (no `dealloc.invalid`).

#[path = "custody_common/mod.rs"]
mod custody_common;

use custody_common::*;
use heapspan::custody;
use heapspan::export::{names as n, ExportConfig};
use heapspan::findings::{Kind, Severity, Verdict};
use heapspan_integration_tests::keeper::*;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const BOXES: usize = 2;

#[test]
fn a_pointer_reclaimed_twice_is_critical_with_its_danger_surface() {
    let guard = start(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
        ExportConfig::default(),
    );
    let rt = runtime();
    let (addr, second_reclaim) = rt.block_on(async {
        heapspan::spawn("ffi_roundtrip", async {
            let b = Boxes::new(BOXES, 0xC3);
            // SAFETY: the buffer of a vector of capacity `n`: a live block of `n` boxes.
            let p = unsafe { custody::handover(b.ptr, b.n, "keeper") };
            assert!(p.is_guarded());
            // SAFETY: C keeps the pointer, then gives back the one it kept last.
            let back = unsafe {
                assert_eq!(keeper_take(b.ptr.cast(), b.n * 8), 0);
                keeper_give_back()
            };
            assert_eq!(back, b.ptr.cast());
            custody::reclaim(back);
            let line = line!() + 1;
            custody::reclaim(back);
            (b.addr(), line)
        })
        .await
        .unwrap()
    });

    let fs = custody(&guard.cut_window());
    assert_eq!(fs.len(), 1, "{fs:#?}");
    let f = find(&fs, "reclaimed_twice", "keeper");
    assert_eq!(
        (f.severity, f.verdict),
        (Severity::Critical, Verdict::Confirmed)
    );
    assert_eq!(
        f.bytes,
        Boxes::surface(BOXES),
        "the buffer and its boxes: {f:#?}"
    );
    assert_eq!(f.allocations, BOXES as u64 + 1);
    assert_eq!(f.roots.len(), 1);
    assert_eq!(f.task_name.as_deref(), Some("ffi_roundtrip"));
    let call = text(f, n::FINDING_CUSTODY_CALL);
    assert!(
        call.ends_with(&format!("custody_reclaimed_twice.rs:{second_reclaim}")),
        "the second reclaim: {call}"
    );
    assert!(
        f.summary.contains("reclaimed a second time"),
        "{}",
        f.summary
    );
    let first_id = f.id;

    // Reclaimed, so Rust's again: a plain free, not an invalid one.
    // SAFETY: the buffer of a vector of `BOXES`, owned by Rust again.
    unsafe { Boxes::free(addr, BOXES) };
    let later = guard.cut_window();
    assert!(
        later.iter().all(|f| f.kind != Kind::DeallocInvalid),
        "{later:#?}"
    );
    let kept = custody(&later);
    assert_eq!(kept.len(), 1, "kept for the run");
    assert_eq!((kept[0].id, kept[0].windows), (first_id, 2));
    assert_eq!(kept[0].bytes, Boxes::surface(BOXES), "as found");
}
