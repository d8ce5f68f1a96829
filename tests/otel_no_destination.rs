//! Feature `tracing-opentelemetry` with no export destination: `start()` says on stderr that
//! spans given heapspan's tracer would go nowhere, instead of a silent `None`. The check runs
//! in a child process (this test binary, re-run), whose stderr the parent reads.
#![cfg(feature = "tracing-opentelemetry")]

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const CHILD: &str = "HEAPSPAN_TEST_CHILD";

#[test]
fn start_with_no_destination_says_spans_go_nowhere() {
    if std::env::var_os(CHILD).is_some() {
        let guard = heapspan::builder().start().expect("starts");
        assert!(guard.tracer_provider().is_none());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "start_with_no_destination_says_spans_go_nowhere",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .expect("the child runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("heapspan exports no traces").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains("Guard::tracer_provider() is None"),
        "{stderr}"
    );
}
