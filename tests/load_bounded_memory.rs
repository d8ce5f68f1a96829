//! Bounded memory: a million span instances, each closed, each leaving one block live (it is
//! allocated inside the span and kept outside it). The span name's figures stay exact through
//! the summarising of closed instances, and heapspan's own resident bookkeeping
//! (`Snapshot::tracker_bytes`) stays under 64 MiB.

mod load;

use tracing::info_span;

use load::assert_lossless;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Span instances: a million, as the issue asks, in debug builds too (the loop takes about 4 to
/// 5 s unoptimised on a 2-core VM, well inside the time a test binary may take, so there is no
/// smaller debug size).
const INSTANCES: usize = 1_000_000;
/// The bound on heapspan's bookkeeping with `INSTANCES` closed instances holding memory.
const TRACKER_BOUND: u64 = 64 << 20;
const BLOCK: usize = std::mem::size_of::<u64>();

#[test]
fn a_million_closed_spans_holding_memory_keep_exact_totals_in_bounded_bookkeeping() {
    let guard = heapspan::init().expect("heapspan starts with its layer");
    // The callsite registers and the registry sets up this thread outside the measured span.
    drop(info_span!("bm_leak").in_scope(|| Box::new(0u64)));
    let s0 = guard.snapshot();
    let base = s0
        .span_name("bm_leak")
        .cloned()
        .expect("the warm-up instance");
    assert_eq!(base.mem.live_bytes(), 0);

    // Room for every block up front, outside any span: pushing allocates nothing.
    let mut held: Vec<Box<u64>> = Vec::with_capacity(INSTANCES);
    let started = std::time::Instant::now();
    for i in 0..INSTANCES {
        let span = info_span!("bm_leak");
        let b = span.in_scope(|| Box::new(i as u64));
        held.push(b);
        // `span` closes here; its block lives on in `held`.
    }
    let elapsed = started.elapsed();
    let s1 = guard.snapshot();
    let n = INSTANCES as u64;
    let name = s1.span_name("bm_leak").cloned();
    eprintln!(
        "bounded memory: {INSTANCES} closed spans holding one {BLOCK}-byte block each in \
         {elapsed:.2?}; tracker_bytes {} ({:.1} MiB, bound {} MiB); heapspan bucket live {} \
         ({:.1} MiB); {} instances held individually; name {name:?}; dropped {:?}",
        s1.tracker_bytes,
        s1.tracker_bytes as f64 / (1 << 20) as f64,
        TRACKER_BOUND >> 20,
        s1.buckets.heapspan.live_bytes(),
        s1.buckets.heapspan.live_bytes() as f64 / (1 << 20) as f64,
        s1.spans_named("bm_leak").count(),
        s1.dropped
    );
    assert_lossless(&s1, "with a million closed spans holding memory");
    let name = name.unwrap();
    assert_eq!(
        (name.instances - base.instances, name.closed - base.closed),
        (n, n),
        "every instance seen and closed"
    );
    assert_eq!(
        (
            name.mem.allocations - base.mem.allocations,
            name.mem.allocated_bytes - base.mem.allocated_bytes,
            name.mem.frees - base.mem.frees,
            name.mem.freed_bytes - base.mem.freed_bytes
        ),
        (n, n * BLOCK as u64, 0, 0),
        "[allocations, allocated, frees, freed]: one block per instance, none freed"
    );
    assert_eq!(name.mem.live_bytes(), (n * BLOCK as u64) as i64);
    assert!(
        s1.tracker_bytes < TRACKER_BOUND,
        "heapspan's bookkeeping stays under {} MiB: {} bytes",
        TRACKER_BOUND >> 20,
        s1.tracker_bytes
    );
    // `tracker_bytes` is heapspan's own account; what the allocator measured of heapspan's
    // heap (its bucket's live bytes: the aggregator's tables, and the small first snapshot
    // this test holds) must be under the same bound.
    assert!(
        s1.buckets.heapspan.live_bytes() < TRACKER_BOUND as i64,
        "heapspan's own live heap stays under {} MiB: {} bytes",
        TRACKER_BOUND >> 20,
        s1.buckets.heapspan.live_bytes()
    );

    // Their frees, long after the instances were summarised, still reach the name.
    drop(held);
    let s2 = guard.snapshot();
    eprintln!(
        "bounded memory: after the frees, tracker_bytes {} ({:.1} MiB)",
        s2.tracker_bytes,
        s2.tracker_bytes as f64 / (1 << 20) as f64
    );
    assert_lossless(&s2, "after the blocks are freed");
    let name = s2.span_name("bm_leak").unwrap();
    assert_eq!(
        (
            name.mem.frees - base.mem.frees,
            name.mem.freed_bytes - base.mem.freed_bytes
        ),
        (n, n * BLOCK as u64),
        "every block's free is charged to its span's name"
    );
    assert_eq!(name.mem.live_bytes(), 0);
    assert!(s2.tracker_bytes < TRACKER_BOUND);
}
