//! With no endpoint, heapspan writes OTLP JSON lines (the protobuf JSON mapping) to the file
//! named by `HEAPSPAN_OTLP_FILE`; each line decodes into the official proto types.

use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::*;

#[test]
fn the_file_holds_otlp_json_lines() {
    let dir = scratch("file_export");
    let file = dir.join("heapspan.otlp.jsonl");
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("HEAPSPAN_OTLP_FILE", &file)
            .env("OTEL_SERVICE_NAME", "file-app")
            .env("APP_MILLIS", "500")
            .env("APP_HOLD_AFTER_MILLIS", "400"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).expect("the OTLP file");
    let (mut metric_lines, mut trace_lines) = (0, 0);
    let mut holder_live = Vec::new();
    let (mut windows, mut roots) = (0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        if v.get("resourceMetrics").is_some() {
            let req: ExportMetricsServiceRequest =
                serde_json::from_str(line).expect("ExportMetricsServiceRequest");
            metric_lines += 1;
            let rm = &req.resource_metrics[0];
            let service = rm
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name");
            assert!(format!("{service:?}").contains("file-app"));
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if m.name == n::TASK_MEMORY_LIVE {
                    assert_eq!(m.unit, n::UNIT_BYTES);
                    let json = serde_json::to_string(m).unwrap();
                    if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) =
                        &m.data
                    {
                        for p in &s.data_points {
                            if format!("{:?}", p.attributes).contains("\"holder\"") {
                                holder_live.push(format!("{:?}", p.value));
                            }
                        }
                    }
                    assert!(json.contains("asInt"), "{json}");
                }
            }
        } else if v.get("resourceSpans").is_some() {
            let req: ExportTraceServiceRequest =
                serde_json::from_str(line).expect("ExportTraceServiceRequest");
            trace_lines += 1;
            for s in req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                assert_eq!(s.trace_id.len(), 16);
                if s.name == n::PROCESS_WINDOW_SPAN {
                    assert!(
                        s.parent_span_id.is_empty(),
                        "the root of its window's trace"
                    );
                    roots += 1;
                } else {
                    assert_eq!(s.name, n::WINDOW_SPAN);
                    assert_eq!(s.parent_span_id.len(), 8, "a child of its window's root");
                    windows += 1;
                }
            }
            // Trace ids are hex strings in the OTLP JSON mapping.
            let id = v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
                .as_str()
                .expect("traceId string");
            assert_eq!(id.len(), 32);
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        } else {
            panic!("neither metrics nor traces: {line}");
        }
    }
    assert!(metric_lines >= 2, "{metric_lines} metric lines");
    assert!(trace_lines >= 1, "{trace_lines} trace lines");
    assert!(windows >= 3);
    assert!(roots >= 1, "each window's trace has its root");
    assert!(
        holder_live.iter().any(|v| v.contains(&HOLD.to_string())),
        "{holder_live:?}"
    );
}
