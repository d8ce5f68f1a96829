//! Tasks heapspan did not see spawned (plain `tokio::spawn` on stable tokio: a server's
//! connection tasks, a library's) have no name and no location; heapspan names them by the
//! span their first allocation in a span was made in, in the snapshot and the report.
#![cfg(not(tokio_unstable))]

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn a_task_heapspan_did_not_spawn_is_named_by_its_first_span() {
    let guard = heapspan::builder().start().expect("starts");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("no other subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (id, kept) = rt.block_on(async {
        let h = tokio::spawn(
            async { std::hint::black_box(vec![3u8; 4096]) }
                .instrument(tracing::info_span!("conn", http.route = "/items")),
        );
        let id = h.id();
        (id, h.await.unwrap())
    });
    let snap = guard.snapshot();
    let t = snap.task_by_id(id).expect("the task is recorded");
    assert_eq!((t.name.as_deref(), t.location.as_ref()), (None, None));
    assert_eq!(
        t.first_span.as_deref(),
        Some("unnamed_tasks::conn {http.route=/items}")
    );
    assert_eq!(
        t.display_name(),
        "unnamed (in unnamed_tasks::conn {http.route=/items})"
    );
    // Its 4 KiB, and what the first task to run on a worker thread pays for that thread's
    // lazily made thread-locals (tracing's span stack among them: about 100 B).
    assert!((4096..4096 + 512).contains(&t.mem.allocated_bytes), "{t:?}");
    assert!(
        // The report clips long names from the left, keeping the span.
        guard.report(20).contains("::conn {http.route=/items})"),
        "{}",
        guard.report(20)
    );
    drop(kept);
}
