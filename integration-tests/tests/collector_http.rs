//! The test app exports over OTLP/HTTP to a real collector (rotel); its debug log shows the
//! contract's metrics and units, exact live bytes, window spans and the resource.

use std::time::Duration;

use heapspan_integration_tests::*;

#[test]
fn the_collector_receives_the_contract_over_http() {
    let dir = scratch("collector_http");
    let mut rotel = Rotel::start(&dir);
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())
            .env("OTEL_SERVICE_NAME", "export-app-http")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=itest,team=memory%20team",
            )
            .env("APP_USER_SPANS", "1")
            .env("APP_MILLIS", "800")
            .env("APP_HOLD_AFTER_MILLIS", "500"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout_value(&out, "DONE", "iterations").unwrap() > 0);
    // rotel batches for 200 ms; stopping it flushes.
    std::thread::sleep(Duration::from_millis(500));
    rotel.stop();
    assert_contract(
        &rotel.log_text(),
        &[
            ("service.name", "export-app-http"),
            ("deployment.environment.name", "itest"),
            ("team", "memory team"),
        ],
    );
}
