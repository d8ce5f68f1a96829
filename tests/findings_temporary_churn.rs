//! `alloc.temporary_churn`: a `hot_loop` span that allocates a 64-byte scratch buffer and
//! frees it again 100 000 times in one window is found, as an info-level hint (a reused
//! buffer would avoid it), with its allocations and bytes. A `builder` span that allocates
//! 20 000 blocks in the same window and keeps them is not churn.
//!
//! The rate threshold is 10 000 allocations a second (instead of 100 000) so that a debug
//! build on a loaded machine clears it: the window lasts as long as the loops (well under a
//! second), and 100 000 allocations stay above the threshold for any window up to 10 s. No
//! live index is needed: the figures are the span names' counters.

mod common;

use heapspan::findings::{Finding, FindingsConfig, Kind, Severity, Verdict};
use tracing::info_span;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const SCRATCH: usize = 64;
const CHURN: usize = 100_000;
const KEPT: usize = 20_000;
const THRESHOLD: f64 = 10_000.0;

use common::evidence_float as evidence;

#[test]
fn allocations_freed_right_away_at_a_high_rate_are_churn() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default()
            .findings(FindingsConfig::default().churn_allocations_per_sec(THRESHOLD)),
    );
    let rt = common::runtime(2);

    guard.cut_window();
    let kept = rt.block_on(async {
        let cruncher = heapspan::spawn("cruncher", async {
            info_span!("hot_loop").in_scope(|| {
                let mut sum = 0u64;
                for i in 0..CHURN {
                    let scratch = vec![(i % 251) as u8 + 1; SCRATCH];
                    sum += u64::from(std::hint::black_box(&scratch)[i % SCRATCH]);
                }
                sum
            })
        });
        let builder = heapspan::spawn("builder", async {
            info_span!("builder").in_scope(|| {
                let mut kept = Vec::with_capacity(KEPT);
                for i in 0..KEPT {
                    kept.push(vec![(i % 251) as u8; SCRATCH]);
                }
                kept
            })
        });
        assert!(cruncher.await.unwrap() > 0);
        builder.await.unwrap()
    });
    let findings = guard.cut_window();
    let churn: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == Kind::TemporaryChurn)
        .collect();
    assert_eq!(churn.len(), 1, "the hot loop only: {churn:#?}");
    let f = churn[0];
    assert_eq!(
        f.span_name.as_deref(),
        Some(format!("{}::hot_loop", module_path!()).as_str()),
        "the span as `target::name`"
    );
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.verdict, Verdict::Diagnostic);
    assert!(
        f.score < 0.5,
        "a performance hint, not a reported finding: {}",
        f.score
    );
    // Allocations and bytes of the window: the loop's, exactly, plus whatever the span's
    // first entry on a thread allocates (tracing's per-thread span stack): 1 %.
    let (allocs, bytes) = (CHURN as u64, (CHURN * SCRATCH) as u64);
    assert!(
        f.allocations >= allocs && f.allocations <= allocs + allocs / 100,
        "{} allocations, planted {allocs}",
        f.allocations
    );
    assert!(
        f.bytes >= bytes && f.bytes <= bytes + bytes / 100,
        "{} B, planted {bytes} B",
        f.bytes
    );
    assert!(evidence(f, heapspan::export::names::FINDING_FREED_FRACTION) >= 0.99);
    assert!(evidence(f, heapspan::export::names::FINDING_RATE) >= THRESHOLD);
    assert_eq!(kept.len(), KEPT);
}
