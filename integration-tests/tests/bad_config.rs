//! Each rejected setting stops the app at start with an error that names the setting, the value
//! and what is accepted.

use std::time::Duration;

use heapspan_integration_tests::*;

#[track_caller]
fn rejected(vars: &[(&str, &str)]) -> String {
    let mut cmd = app(env!("CARGO_BIN_EXE_export_app"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .find_map(|l| l.strip_prefix("ERROR: "))
        .expect("an error line")
        .to_owned()
}

#[test]
fn every_bad_setting_is_rejected_at_start() {
    let url = "an http:// URL with a host, such as http://127.0.0.1:4318";
    assert_eq!(
        rejected(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")]),
        format!("invalid value \"localhost:4318\" for OTEL_EXPORTER_OTLP_ENDPOINT: expected {url}")
    );
    assert_eq!(
        rejected(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://:1/v1/traces")]),
        format!("invalid value \"http://:1/v1/traces\" for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: expected {url}")
    );
    // heapspan's exporters have no TLS: refused at start, with the way to TLS.
    assert_eq!(
        rejected(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example:4318"
        )]),
        "invalid value \"https://collector.example:4318\" for OTEL_EXPORTER_OTLP_ENDPOINT: \
         expected an http:// URL: heapspan's own exporters have no TLS. To export over \
         https://, build OpenTelemetry providers with a TLS-capable exporter \
         (opentelemetry-otlp with its `reqwest-rustls` or `tls-ring` feature) and pass them to \
         heapspan with ExportConfig::tracer_provider and ExportConfig::meter_provider"
    );
    assert_eq!(
        rejected(&[("HEAPSPAN_FOLD_INTERVAL_MS", "soon")]),
        "invalid value \"soon\" for HEAPSPAN_FOLD_INTERVAL_MS: expected a whole number of milliseconds from 1 to 60000"
    );
    assert_eq!(
        rejected(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
        "invalid value \"http/json\" for OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf or grpc"
    );
    assert_eq!(
        rejected(&[("HEAPSPAN_WINDOW_MS", "0")]),
        "invalid value \"0\" for HEAPSPAN_WINDOW_MS: expected a whole number of milliseconds, at least 1"
    );
    assert_eq!(
        rejected(&[("OTEL_METRIC_EXPORT_INTERVAL", "10s")]),
        "invalid value \"10s\" for OTEL_METRIC_EXPORT_INTERVAL: expected a whole number of milliseconds, at least 1"
    );
    assert_eq!(
        rejected(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "-5")]),
        "invalid value \"-5\" for OTEL_EXPORTER_OTLP_TIMEOUT: expected a whole number of milliseconds, at least 1"
    );
    assert_eq!(
        rejected(&[("OTEL_RESOURCE_ATTRIBUTES", "team")]),
        "invalid value \"team\" for OTEL_RESOURCE_ATTRIBUTES: expected comma-separated key=value pairs (values percent-encoded)"
    );
    assert_eq!(
        rejected(&[("OTEL_EXPORTER_OTLP_HEADERS", "=token")]),
        "invalid value \"=token\" for OTEL_EXPORTER_OTLP_HEADERS: expected comma-separated key=value pairs (values percent-encoded)"
    );
    assert_eq!(
        rejected(&[("HEAPSPAN_LIVE_INDEX", "on")]),
        "invalid value \"on\" for HEAPSPAN_LIVE_INDEX: expected off, full or sampled"
    );
    assert_eq!(
        rejected(&[
            ("HEAPSPAN_LIVE_INDEX", "sampled"),
            ("HEAPSPAN_SAMPLE_MEAN_BYTES", "0")
        ]),
        "invalid value \"0\" for HEAPSPAN_SAMPLE_MEAN_BYTES: expected a whole number of bytes from 1 to 1099511627776"
    );
    let missing = scratch("bad_config").join("no/such/dir/out.jsonl");
    let e = rejected(&[("HEAPSPAN_OTLP_FILE", missing.to_str().unwrap())]);
    assert!(
        e.starts_with("could not set up the OTLP JSON file: ") && e.contains("no/such/dir"),
        "{e}"
    );
}
