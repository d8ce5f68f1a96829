//! `init()` with a global subscriber already set fails *before* starting heapspan, so the
//! advice of its error (add `heapspan::layer()` to your subscriber and call
//! `heapspan::builder().start()`) works: heapspan starts once per process.

use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

#[test]
fn init_with_a_subscriber_set_leaves_the_start_to_the_builder() {
    // The application's own subscriber, with heapspan's layer added as the error advises.
    let subscriber = tracing_subscriber::registry().with(heapspan::layer());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let err = heapspan::init().unwrap_err();
    assert!(
        matches!(err, heapspan::Error::SubscriberAlreadySet),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "a global tracing subscriber is already set; add heapspan::layer() to it and use \
         heapspan::builder().start()"
    );

    let guard = heapspan::builder()
        .start()
        .expect("init() started nothing: the builder's start is still available");
    // And it runs with the application's subscriber: a span's allocation is attributed.
    let kept = tracing::info_span!("advised").in_scope(|| vec![1u8; 1000]);
    let snap = guard.snapshot();
    let span = snap
        .span_names
        .iter()
        .find(|s| s.name == "advised")
        .unwrap_or_else(|| panic!("span row: {:?}", snap.span_names));
    assert_eq!(span.mem.allocated_bytes, 1000);
    assert_eq!(span.mem.live_bytes(), 1000);
    drop(kept);
}
