//! `ffi.custody` `freed_in_custody`, planted through the C library `keeper`, with the live
//! index on: in the `ffi_owner` task, Rust frees a 4 KiB block C still holds, and reallocates
//! (grows) a 1 KiB `Vec` buffer C still holds. The allocator forwards neither (the blocks stay
//! allocated, and C still reads what was written: the sums below), and each becomes a critical
//! `ffi.custody` finding naming its boundary and the freeing task, its danger surface the
//! block, rather than a `dealloc.invalid` (the free belongs to its passport). The findings are
//! in the OTLP JSON file.

#[path = "custody_common/mod.rs"]
mod custody_common;

use custody_common::*;
use heapspan::custody;
use heapspan::export::{names as n, ExportConfig};
use heapspan::findings::{Kind, Severity, Verdict};
use heapspan_integration_tests::keeper::*;
use heapspan_integration_tests::{file_spans, scratch};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const BLOCK: usize = 4096;
const BUF: usize = 1024;

#[test]
fn a_free_or_realloc_by_rust_in_custody_is_kept_and_found() {
    let dir = scratch("custody_freed_in_custody");
    let file = dir.join("heapspan.otlp.jsonl");
    let guard = start(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
        ExportConfig::default().file(&file),
    );
    let rt = runtime();
    rt.block_on(async {
        heapspan::spawn("ffi_owner", async {
            let block = Box::into_raw(Box::new([3u8; BLOCK]));
            // SAFETY: a live block holding one `[u8; BLOCK]`; C keeps it.
            unsafe {
                assert!(custody::handover(block, 1, "keeper").is_guarded());
                assert_eq!(keeper_take(block.cast(), BLOCK), 0);
            }
            // The bug: Rust frees what C holds.
            // SAFETY: (for Rust) the block of a `Box`; the allocator keeps it for C.
            drop(unsafe { Box::from_raw(block) });

            let mut buf = vec![1u8; BUF];
            assert_eq!(buf.capacity(), BUF);
            // SAFETY: a vector's buffer of capacity `BUF`; C keeps it.
            unsafe {
                assert!(custody::handover(buf.as_mut_ptr(), BUF, "keeper_buf").is_guarded());
                assert_eq!(keeper_take(buf.as_mut_ptr().cast(), BUF), 0);
            }
            // The bug: Rust grows (reallocates) what C holds.
            buf.reserve(4 * BUF);
            assert_eq!(buf.iter().map(|&b| u64::from(b)).sum::<u64>(), BUF as u64);
        })
        .await
        .unwrap()
    });

    let all = guard.cut_window();
    assert!(
        all.iter().all(|f| f.kind != Kind::DeallocInvalid),
        "the frees belong to their passports: {all:#?}"
    );
    let fs = custody(&all);
    assert_eq!(fs.len(), 2, "{fs:#?}");
    for (boundary, bytes, op) in [
        ("keeper", BLOCK, "freed"),
        ("keeper_buf", BUF, "reallocated"),
    ] {
        let f = find(&fs, "freed_in_custody", boundary);
        assert_eq!(
            (f.severity, f.verdict),
            (Severity::Critical, Verdict::Confirmed)
        );
        assert_eq!(f.bytes, bytes as u64, "{boundary}: the kept block");
        assert_eq!(f.task_name.as_deref(), Some("ffi_owner"));
        assert_eq!(text(f, n::FINDING_FREE_TASK), "ffi_owner");
        assert!(
            f.summary
                .contains(&format!("{op} by Rust in task `ffi_owner`")),
            "{}",
            f.summary
        );
    }
    drop(guard);

    // C still reads what was written (last kept first): nothing reused the blocks.
    // SAFETY: the blocks the allocator kept for C.
    unsafe {
        assert_eq!(keeper_consume(), BUF as u64);
        assert_eq!(keeper_consume(), 3 * BLOCK as u64);
        assert_eq!(keeper_held(), 0);
    }

    let spans = file_spans(&file);
    let exported: Vec<_> = spans
        .iter()
        .filter(|s| s.name == n::FINDING_SPAN && s.attr(n::FINDING_KIND) == Some("ffi.custody"))
        .collect();
    assert_eq!(exported.len(), 2, "{exported:#?}");
    for s in exported {
        assert_eq!(s.attr(n::FINDING_CUSTODY_CASE), Some("freed_in_custody"));
        assert_eq!(s.attr(n::FINDING_SEVERITY), Some("critical"));
        assert!(matches!(
            s.attr(n::FINDING_BOUNDARY),
            Some("keeper" | "keeper_buf")
        ));
    }
}
