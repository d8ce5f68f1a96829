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
    // The events: rotel logs each as `SpanEvent #k`, its name, then its attributes.
    let events = edge_events(&log);
    assert!(!events.is_empty(), "no heapspan.edge event:\n{log}");
    for ev in &events {
        let get = |k: &str| ev.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let kind = get(n::EDGE_KIND).expect("a kind");
        let capability = match kind {
            "Str(owns)" | "Str(contains)" | "Str(evolution)" => "Str(exclusive)",
            "Str(shares)" | "Str(arc_clone)" | "Str(rc_clone)" => "Str(shared)",
            "Str(slice)" | "Str(clone)" => "Str(borrow)",
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(get(n::EDGE_CAPABILITY), Some(capability), "{ev:?}");
        let confidence: f64 = get(n::EDGE_CONFIDENCE)
            .and_then(|v| v.strip_prefix("Double(")?.strip_suffix(')')?.parse().ok())
            .expect("a Double confidence");
        assert!((0.0..=1.0).contains(&confidence), "{ev:?}");
        for key in [n::EDGE_FROM, n::EDGE_TO, n::EDGE_BYTES] {
            assert!(
                get(key).is_some_and(|v| v.starts_with("Int(")),
                "{key} is an i64: {ev:?}"
            );
        }
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

/// The attributes (`key`, rendered value) of every `heapspan.edge` event in rotel's log.
fn edge_events(log: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    for line in log.lines() {
        let t = line.trim();
        if t.starts_with("SpanEvent #") || t.starts_with("Span #") || t.starts_with("Links:") {
            out.extend(current.take());
            continue;
        }
        if t == format!("-> Name: {}", n::EDGE_EVENT) {
            current = Some(Vec::new());
            continue;
        }
        if let (Some(ev), Some(kv)) = (current.as_mut(), t.strip_prefix("-> ")) {
            if let Some((k, v)) = kv.split_once(": ") {
                if k.starts_with("heapspan.edge.") {
                    ev.push((k.to_owned(), v.to_owned()));
                }
            }
        }
    }
    out.extend(current);
    out
}
