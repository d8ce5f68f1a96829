//! Danger findings reach a real collector (rotel) and the OTLP JSON file with the contract's
//! names: the test app's `leaker` task leaks 1 MiB that nothing points to and ends; with the
//! live index on, a `heapspan.finding` span of kind `task.escaped_allocation` (medium, holder
//! class `unowned`, 1 MiB ± 10 %) follows, with the `heapspan.findings` counter.

use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::*;

/// Asserts the escaped allocation's finding among `spans` (name, attributes).
#[track_caller]
fn assert_escape(spans: &[LoggedSpan], what: &str) {
    let f = spans
        .iter()
        .find(|s| {
            s.name == n::FINDING_SPAN
                && s.attr(n::FINDING_KIND) == Some("task.escaped_allocation")
                && s.attr(n::TOKIO_TASK_NAME) == Some("leaker")
        })
        .unwrap_or_else(|| panic!("no escaped-allocation finding for leaker in {what}"));
    assert_eq!(f.attr(n::FINDING_SEVERITY), Some("medium"), "{f:?}");
    assert_eq!(f.attr(n::FINDING_HOLDER_CLASS), Some("unowned"), "{f:?}");
    assert_eq!(f.attr(n::FINDING_FROM_GRAPH), Some("true"), "{f:?}");
    let bytes = f.int(n::FINDING_BYTES).expect("heapspan.finding.bytes");
    assert!(
        (bytes - LEAK).abs() * 10 <= LEAK,
        "bytes {bytes} within 10 % of {LEAK}"
    );
    let id = f.attr(n::FINDING_ID).expect("an id");
    assert_eq!(id.len(), 16, "{id}");
    for key in [
        n::FINDING_SCORE,
        n::FINDING_CONFIDENCE,
        n::FINDING_VERDICT,
        n::FINDING_SUMMARY,
        n::FINDING_HOLDER,
        n::FINDING_WINDOWS,
        n::FINDING_ALLOCATIONS,
    ] {
        assert!(f.attr(key).is_some(), "{key} missing: {f:?}");
    }
}

#[test]
fn findings_reach_the_collector() {
    let dir = scratch("findings_export");
    let mut rotel = Rotel::start(&dir);
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())
            .env("OTEL_SERVICE_NAME", "export-app-findings")
            .env("HEAPSPAN_LIVE_INDEX", "full")
            .env("HEAPSPAN_WINDOW_MS", "200")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
            .env("APP_LEAK", "1")
            .env("APP_MILLIS", "1200"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(500));
    rotel.stop();
    let log = rotel.log_text();
    assert_escape(&logged_spans(&log), "the collector's log");
    let (points, _) = logged_metrics(&log);
    assert!(
        points.iter().any(|p| p.metric == n::FINDINGS
            && p.attr(n::FINDING_KIND) == Some("task.escaped_allocation")
            && p.attr(n::FINDING_SEVERITY) == Some("medium")
            && p.value >= 1.0),
        "no {} point for the escape",
        n::FINDINGS
    );
}

#[test]
fn findings_are_in_the_otlp_json_file() {
    let dir = scratch("findings_file");
    let file = dir.join("heapspan.otlp.jsonl");
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("HEAPSPAN_OTLP_FILE", &file)
            .env("OTEL_SERVICE_NAME", "file-app-findings")
            .env("HEAPSPAN_LIVE_INDEX", "full")
            .env("HEAPSPAN_WINDOW_MS", "200")
            .env("APP_LEAK", "1")
            .env("APP_MILLIS", "1200"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let spans = file_spans(&file);
    assert_escape(&spans, "the OTLP JSON file");
}
