//! With the live index on, the test app's window spans reach a real collector (rotel) with
//! their graph: node and edge counts, `heapspan.edge` events with kind, capability and
//! confidence, and the `heapspan.graph.edges` gauge by kind.

use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::*;

#[test]
fn window_spans_carry_the_relation_graph_to_the_collector() {
    let dir = scratch("graph_export");
    let mut rotel = Rotel::start(&dir);
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())
            .env("OTEL_SERVICE_NAME", "export-app-graph")
            .env("HEAPSPAN_LIVE_INDEX", "full")
            .env("HEAPSPAN_WINDOW_MS", "200")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
            .env("APP_MILLIS", "600")
            .env("APP_HOLD_AFTER_MILLIS", "600"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(500));
    rotel.stop();
    let log = rotel.log_text();
    let spans = logged_spans(&log);
    let graphed: Vec<_> = spans
        .iter()
        .filter(|s| s.name == n::WINDOW_SPAN && s.int(n::GRAPH_NODES).is_some())
        .collect();
    assert!(!graphed.is_empty(), "no window span with a graph:\n{log}");
    let holder = graphed
        .iter()
        .find(|s| s.attr(n::TOKIO_TASK_NAME) == Some("holder") && s.int(n::GRAPH_NODES) > Some(0))
        .unwrap_or_else(|| panic!("the holder's window has graph nodes:\n{log}"));
    assert!(holder.int(n::GRAPH_EDGES_ATTR) > Some(0), "{holder:?}");
    // The events: rotel logs each with its name and attributes.
    assert!(
        log.contains(n::EDGE_EVENT),
        "no heapspan.edge event:\n{log}"
    );
    for key in [
        n::EDGE_KIND,
        n::EDGE_CAPABILITY,
        n::EDGE_CONFIDENCE,
        n::EDGE_FROM,
        n::EDGE_TO,
    ] {
        assert!(log.contains(key), "no {key} in the log");
    }
    let (points, _) = logged_metrics(&log);
    let edges: Vec<_> = points
        .iter()
        .filter(|p| p.metric == n::GRAPH_EDGES)
        .collect();
    assert!(!edges.is_empty(), "no {} metric", n::GRAPH_EDGES);
    assert!(
        edges.iter().any(|p| p.attr(n::EDGE_KIND) == Some("owns")),
        "{edges:?}"
    );
}
