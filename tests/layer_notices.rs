//! heapspan says so, once, on stderr, when its layer and a running heapspan do not meet. Each
//! scenario runs in a child process of its own (this binary again, with `SCENARIO` set): the
//! allocator, the subscriber and the notices are process-wide.

use std::process::Command;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Names the scenario a child process runs.
const SCENARIO: &str = "LAYER_NOTICES_SCENARIO";

const NEVER_STARTED: &str = "heapspan's tracing layer sees spans, but heapspan was never started";
const STOPPED: &str = "heapspan's tracing layer still sees spans after heapspan stopped";
const NO_LAYER: &str = "heapspan is running, but its tracing layer is not in the subscriber";

/// In the parent: runs `test` in a child with `SCENARIO=test` and returns its stderr. In the
/// child: `None`, and the caller runs the scenario.
fn in_child(test: &str) -> Option<String> {
    if std::env::var_os(SCENARIO).is_some() {
        return None;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, test)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child {test} failed:\n{stderr}");
    Some(stderr)
}

#[track_caller]
fn count(stderr: &str, what: &str) -> usize {
    stderr.lines().filter(|l| l.contains(what)).count()
}

fn spans(n: usize) {
    for i in 0..n {
        tracing::info_span!("request", i).in_scope(|| drop(vec![0u8; 64]));
    }
}

#[test]
fn layer_installed_but_heapspan_never_started() {
    let Some(stderr) = in_child("layer_installed_but_heapspan_never_started") else {
        heapspan::layer::set_notice_grace(Duration::ZERO);
        let subscriber = tracing_subscriber::registry().with(heapspan::layer());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        spans(3);
        return;
    };
    assert_eq!(count(&stderr, NEVER_STARTED), 1, "once:\n{stderr}");
    assert!(stderr.contains("heapspan::builder().start()"), "{stderr}");
    assert_eq!(
        count(&stderr, STOPPED) + count(&stderr, NO_LAYER),
        0,
        "{stderr}"
    );
}

#[test]
fn layer_installed_and_the_guard_dropped_at_once() {
    let Some(stderr) = in_child("layer_installed_and_the_guard_dropped_at_once") else {
        heapspan::layer::set_notice_grace(Duration::ZERO);
        let subscriber = tracing_subscriber::registry().with(heapspan::layer());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        // The mistake: `let _ = ...` drops the guard, and heapspan with it.
        let _ = heapspan::builder().start().unwrap();
        spans(3);
        return;
    };
    assert_eq!(count(&stderr, STOPPED), 1, "once:\n{stderr}");
    assert_eq!(
        count(&stderr, NEVER_STARTED) + count(&stderr, NO_LAYER),
        0,
        "{stderr}"
    );
}

#[test]
fn heapspan_started_with_a_subscriber_that_lacks_the_layer() {
    let Some(stderr) = in_child("heapspan_started_with_a_subscriber_that_lacks_the_layer") else {
        // The application's subscriber, without heapspan's layer.
        tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
        let guard = heapspan::builder().start().unwrap();
        spans(3);
        let snap = guard.snapshot();
        assert!(snap.span_names.is_empty(), "no span reached heapspan");
        guard.cut_window();
        drop(guard);
        return;
    };
    assert_eq!(count(&stderr, NO_LAYER), 1, "once:\n{stderr}");
    assert!(stderr.contains(".with(heapspan::layer())"), "{stderr}");
    assert_eq!(
        count(&stderr, NEVER_STARTED) + count(&stderr, STOPPED),
        0,
        "{stderr}"
    );
}

#[test]
fn started_with_the_layer_says_nothing() {
    let Some(stderr) = in_child("started_with_the_layer_says_nothing") else {
        heapspan::layer::set_notice_grace(Duration::ZERO);
        let subscriber = tracing_subscriber::registry().with(heapspan::layer());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        let guard = heapspan::builder().start().unwrap();
        spans(3);
        assert_eq!(guard.snapshot().span_name("request").unwrap().instances, 3);
        guard.cut_window();
        drop(guard);
        return;
    };
    assert_eq!(
        count(&stderr, NEVER_STARTED) + count(&stderr, STOPPED) + count(&stderr, NO_LAYER),
        0,
        "{stderr}"
    );
}
