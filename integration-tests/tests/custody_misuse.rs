//! The other `ffi.custody` cases, each planted through the C library `keeper` with a block of
//! its own size and a boundary of its own, in the span `misuse` with the live index on (a block
//! with no pointers: its danger surface is itself):
//!
//! - `released_after_reclaim` (high): C gives it back, Rust reclaims it, then the C side is
//!   said to have released it too;
//! - `reclaimed_after_release` (high): C consumes it and lets go, then Rust reclaims it;
//! - `released_twice` (medium);
//! - `handed_twice` (medium): handed over again while C holds it;
//! - `not_handed` (medium, probable): reclaimed with no handover (boundary `unknown`).

#[path = "custody_common/mod.rs"]
mod custody_common;

use custody_common::*;
use heapspan::custody;
use heapspan::export::{names as n, ExportConfig};
use heapspan::findings::{Severity, Verdict};
use heapspan_integration_tests::keeper::*;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// A boxed array of `N` bytes of `fill`, as a raw pointer.
fn block<const N: usize>(fill: u8) -> *mut [u8; N] {
    Box::into_raw(Box::new([fill; N]))
}

/// Frees a block of [`block`].
///
/// # Safety
/// `p` came from [`block`] with the same `N`, and Rust owns it.
unsafe fn free<const N: usize>(p: *mut [u8; N]) {
    // SAFETY: by the caller's contract.
    drop(unsafe { Box::from_raw(p) });
}

#[test]
fn every_other_broken_rule_is_its_own_finding() {
    let guard = start(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
        ExportConfig::default(),
    );
    let span = tracing::info_span!("misuse");
    let _in = span.enter();

    // SAFETY (every block below): a live block holding one array; C keeps it until it gives
    // it back or consumes it, and Rust frees it once at the end.
    let a = block::<128>(1);
    let b = block::<256>(2);
    let c = block::<384>(3);
    let d = block::<512>(4);
    let e = block::<640>(5);
    unsafe {
        let _ = custody::handover(a, 1, "codec");
        assert_eq!(keeper_take(a.cast(), 128), 0);
        assert_eq!(keeper_give_back(), a.cast());
    }
    custody::reclaim(a);
    custody::release(a);

    unsafe {
        let _ = custody::handover(b, 1, "parser");
        assert_eq!(keeper_take(b.cast(), 256), 0);
        assert_eq!(keeper_consume(), 2 * 256);
    }
    custody::release(b);
    custody::reclaim(b);

    unsafe {
        let _ = custody::handover(c, 1, "sink");
        assert_eq!(keeper_take(c.cast(), 384), 0);
        assert_eq!(keeper_consume(), 3 * 384);
    }
    custody::release(c);
    custody::release(c);

    unsafe {
        let _ = custody::handover(d, 1, "cache");
        assert_eq!(keeper_take(d.cast(), 512), 0);
        let again = custody::handover(d, 1, "cache");
        assert!(again.is_guarded(), "still flagged");
    }

    custody::reclaim(e);

    let fs = custody(&guard.cut_window());
    assert_eq!(fs.len(), 5, "{fs:#?}");
    for (case, boundary, bytes, severity, verdict) in [
        (
            "released_after_reclaim",
            "codec",
            128,
            Severity::High,
            Verdict::Confirmed,
        ),
        (
            "reclaimed_after_release",
            "parser",
            256,
            Severity::High,
            Verdict::Confirmed,
        ),
        (
            "released_twice",
            "sink",
            384,
            Severity::Medium,
            Verdict::Confirmed,
        ),
        (
            "handed_twice",
            "cache",
            512,
            Severity::Medium,
            Verdict::Confirmed,
        ),
        (
            "not_handed",
            "unknown",
            640,
            Severity::Medium,
            Verdict::Probable,
        ),
    ] {
        let f = find(&fs, case, boundary);
        assert_eq!((f.severity, f.verdict), (severity, verdict), "{case}");
        assert_eq!(f.bytes, bytes, "{case}: the block's surface is itself");
        assert_eq!(f.allocations, 1, "{case}");
        assert_eq!(f.roots.len(), 1, "{case}");
        assert_eq!(
            f.span_name.as_deref(),
            Some("custody_misuse::misuse"),
            "{case}"
        );
        assert!(f.score >= 0.5, "{case} is reported");
        assert_eq!(int(f, n::FINDING_CUSTODY_POINTERS), 1);
    }
    drop(guard);

    // SAFETY: C gives `d` back; every block is Rust's again, freed once.
    unsafe {
        assert_eq!(keeper_give_back(), d.cast());
        custody::reclaim(d);
        free(a);
        free(b);
        free(c);
        free(d);
        free(e);
        assert_eq!(keeper_held(), 0);
    }
}
