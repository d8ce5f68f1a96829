//! The test app exports over OTLP/gRPC (feature `grpc`) to a real collector, from a
//! current-thread tokio runtime (the flavour where the SDK's own gRPC setup hangs).

use std::time::Duration;

use heapspan_integration_tests::*;

#[test]
fn the_collector_receives_the_contract_over_grpc() {
    let dir = scratch("collector_grpc");
    let mut rotel = Rotel::start(&dir);
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=export-app-grpc,k=v",
            )
            .env("APP_RUNTIME", "current")
            .env("APP_USER_SPANS", "1")
            .env("APP_MILLIS", "800")
            .env("APP_HOLD_AFTER_MILLIS", "500"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(500));
    rotel.stop();
    assert_contract(
        &rotel.log_text(),
        &[("service.name", "export-app-grpc"), ("k", "v")],
    );
}
