//! The OTLP variables in opentelemetry-otlp 0.33's order, per signal: the signal's own
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_*` wins over the generic `OTEL_EXPORTER_OTLP_*` (the
//! generic protocol used to win over the signals' own), observed on the wire.

use std::time::Duration;

use heapspan::env::*;
use heapspan_integration_tests::*;

#[test]
fn signal_variables_win_over_the_generic_ones_on_the_wire() {
    let rx = Receiver::start();
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            // Generic: gRPC to a port nobody listens on, one header value.
            .env(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")
            .env(
                OTEL_EXPORTER_OTLP_HEADERS,
                "x-heapspan-test=generic,x-other=o",
            )
            // Each signal's own: HTTP to the receiver; traces with a header of their own.
            .env(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                format!("{}/v1/traces", rx.endpoint()),
            )
            .env(
                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
                format!("{}/v1/metrics", rx.endpoint()),
            )
            .env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf")
            .env(OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, "http/protobuf")
            .env(OTEL_EXPORTER_OTLP_TRACES_HEADERS, "x-heapspan-test=traces")
            .env("APP_MILLIS", "600"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        !rx.traces().is_empty(),
        "traces came over HTTP to their own endpoint"
    );
    assert!(
        !rx.metrics().is_empty(),
        "metrics came over HTTP to their own endpoint"
    );
    let traces = rx.header_values("/v1/traces", "x-heapspan-test");
    assert!(
        !traces.is_empty() && traces.iter().all(|v| v == "traces"),
        "{traces:?}"
    );
    // The signal's headers replace the generic ones (opentelemetry-otlp does not merge them).
    assert!(rx.header_values("/v1/traces", "x-other").is_empty());
    let metrics = rx.header_values("/v1/metrics", "x-heapspan-test");
    assert!(
        !metrics.is_empty() && metrics.iter().all(|v| v == "generic"),
        "{metrics:?}"
    );
    assert!(rx
        .header_values("/v1/metrics", "x-other")
        .iter()
        .all(|v| v == "o"));
}
