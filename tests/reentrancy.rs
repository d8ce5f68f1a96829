//! heapspan's own allocations (the layer's span bookkeeping, events, the aggregator, snapshots)
//! never recurse into the allocator and never land in user buckets.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use tracing::info_span;
use tracing_subscriber::layer::SubscriberExt;

/// Spans with fields, entered and closed, with allocations inside; returns what the task
/// allocated according to heapspan.
fn run_in_task(
    guard: &'static heapspan::Guard,
    with_layer: bool,
    snapshot_inside: bool,
) -> heapspan::MemStats {
    let dispatch = if with_layer {
        tracing::Dispatch::new(tracing_subscriber::registry().with(heapspan::layer()))
    } else {
        // A no-op layer, not a bare registry: a registry only clears closed spans when a
        // layer stack drives it (a bare one keeps their slots, and allocates more pages).
        tracing::Dispatch::new(
            tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new()),
        )
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let h = rt.spawn(async move {
                    let mut keep = Vec::with_capacity(300);
                    for i in 0..300u64 {
                        let span = info_span!("request", i, path = "/x");
                        let _e = span.enter();
                        keep.push(vec![0u8; 64]);
                        let inner = info_span!("inner", i);
                        inner.in_scope(|| keep.push(vec![1u8; 32]));
                        if snapshot_inside && i % 100 == 0 {
                            // Folding and copying the tables from inside the task.
                            drop(std::hint::black_box(guard.snapshot()));
                        }
                    }
                    keep.len()
                });
                let id = h.id();
                assert_eq!(rt.block_on(h).unwrap(), 600);
                guard.snapshot().task_by_id(id).unwrap().mem
            })
        })
        .join()
        .unwrap()
    })
}

#[test]
fn the_layer_and_snapshots_add_nothing_to_user_buckets() {
    static GUARD: std::sync::OnceLock<heapspan::Guard> = std::sync::OnceLock::new();
    let guard = GUARD.get_or_init(|| heapspan::builder().start().unwrap());
    let heapspan_before = guard.snapshot().buckets.heapspan.allocated_bytes;
    // The first run registers the callsites (tracing's own one-time allocations).
    run_in_task(guard, true, false);
    let plain = run_in_task(guard, false, false);
    let layered = run_in_task(guard, true, false);
    let layered_with_snapshots = run_in_task(guard, true, true);
    assert_eq!(
        (plain.allocated_bytes, plain.allocations),
        (layered.allocated_bytes, layered.allocations),
        "the layer's own bookkeeping is not charged to the task"
    );
    assert_eq!(
        (layered.allocated_bytes, layered.allocations),
        (
            layered_with_snapshots.allocated_bytes,
            layered_with_snapshots.allocations
        ),
        "snapshots taken inside the task are not charged to it"
    );
    assert!(plain.allocated_bytes >= 300 * (64 + 32));
    let snap = guard.snapshot();
    assert!(
        snap.buckets.heapspan.allocated_bytes > heapspan_before,
        "they are charged to heapspan"
    );
    assert_eq!(
        snap.span_name("request").unwrap().instances,
        900,
        "the three layered runs were seen"
    );
    assert_eq!(snap.dropped.total(), 0);
}
