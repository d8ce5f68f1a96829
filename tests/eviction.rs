//! Bounded memory: beyond the retention limits, ended tasks and closed spans are summarised
//! into their name's totals, which stay exact, also for memory they still hold.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;

#[test]
fn summarised_tasks_and_spans_keep_exact_name_totals() {
    let guard = heapspan::builder()
        .ended_task_retention(4)
        .closed_span_retention(4)
        .start()
        .unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    // Warm each worker's span stack (the registry's own, per-thread, allocated on a thread's
    // first enter) outside the measured tasks: many tasks at once, each yielding inside its
    // span, so that both workers run some.
    rt.block_on(async {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let span = tracing::info_span!("warmup");
                tokio::spawn(async move {
                    let _e = span.enter();
                    std::thread::sleep(Duration::from_millis(1));
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    // 20 tasks, each allocates 1000 + i bytes inside its own `evict_req` span and keeps half of
    // them alive beyond its end (returned to the test). The spans are created here, outside the
    // tasks, so that the registry's own allocations for them are not the tasks'.
    let kept: Vec<Vec<u8>> = rt.block_on(async {
        let mut out = Vec::with_capacity(20);
        for i in 0..20usize {
            let span = tracing::info_span!("evict_req");
            let h = heapspan::spawn("evict-worker", async move {
                let _e = span.enter();
                let keep = vec![1u8; 1000 + i];
                drop(std::hint::black_box(vec![2u8; 1000 + i]));
                keep
            });
            out.push(h.await.unwrap());
        }
        out
    });
    let expect: u64 = (0..20u64).map(|i| 2 * (1000 + i)).sum();
    let kept_bytes: i64 = (0..20i64).map(|i| 1000 + i).sum();
    // Eviction runs every 100 ms, at a fold.
    std::thread::sleep(Duration::from_millis(250));
    let snap = guard.snapshot();
    let held = snap.tasks_named("evict-worker").count();
    assert!(
        held <= 4,
        "only the last 4 ended tasks are held individually: {held}"
    );
    let name = snap.task_name("evict-worker").unwrap();
    assert_eq!(name.tasks, 20);
    assert_eq!(name.ended, 20);
    assert_eq!(name.mem.allocated_bytes, expect);
    assert_eq!(
        name.mem.live_bytes(),
        kept_bytes,
        "summarised tasks still hold their memory"
    );
    let spans = snap.span_name("evict_req").unwrap();
    assert_eq!(spans.instances, 20);
    assert!(snap.spans_named("evict_req").count() <= 4);
    assert_eq!(spans.mem.allocated_bytes, expect);
    assert_eq!(spans.mem.live_bytes(), kept_bytes);

    // Their frees, long after they were summarised, still reach the name totals.
    drop(kept);
    let snap = guard.snapshot();
    assert_eq!(snap.task_name("evict-worker").unwrap().mem.live_bytes(), 0);
    assert_eq!(
        snap.task_name("evict-worker").unwrap().mem.freed_bytes,
        expect
    );
    assert_eq!(snap.span_name("evict_req").unwrap().mem.live_bytes(), 0);
    assert!(
        snap.task_name("evict-worker").unwrap().mem.peak_bytes >= kept_bytes as u64,
        "the name's peak covers what all its tasks held together"
    );
    assert_eq!(snap.dropped.total(), 0);
}
