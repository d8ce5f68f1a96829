//! `heapspan::builder()` reads the `HEAPSPAN_*`/`OTEL_*` environment at start, values set in
//! code win, and bad settings (a malformed variable, an `https://` endpoint) fail the start
//! before anything runs, leaving heapspan startable. One process: heapspan starts once.

use std::time::Duration;

use heapspan::env::{HEAPSPAN_FOLD_INTERVAL_MS, HEAPSPAN_LIVE_INDEX, OTEL_EXPORTER_OTLP_ENDPOINT};
use heapspan::export::ExportConfig;
use heapspan::Error;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

#[track_caller]
fn invalid(r: heapspan::Result<heapspan::Guard>) -> (&'static str, String, &'static str) {
    match r {
        Err(Error::InvalidConfig {
            setting,
            value,
            expected,
        }) => (setting, value, expected),
        Err(e) => panic!("expected InvalidConfig, got {e}"),
        Ok(_) => panic!("expected InvalidConfig, heapspan started"),
    }
}

#[test]
fn builder_reads_the_environment_and_code_wins() {
    // The only test of this binary, before any thread of heapspan's or the runtime's exists.
    std::env::set_var(HEAPSPAN_LIVE_INDEX, "full");
    std::env::set_var(HEAPSPAN_FOLD_INTERVAL_MS, "soon");
    std::env::set_var(
        OTEL_EXPORTER_OTLP_ENDPOINT,
        "https://collector.example:4318",
    );

    // A malformed variable is not accepted silently.
    let (setting, value, expected) = invalid(heapspan::builder().start());
    assert_eq!(setting, HEAPSPAN_FOLD_INTERVAL_MS);
    assert_eq!(value, "soon");
    assert_eq!(expected, "a whole number of milliseconds from 1 to 60000");
    assert!(matches!(
        heapspan::Builder::from_env(),
        Err(Error::InvalidConfig {
            setting: HEAPSPAN_FOLD_INTERVAL_MS,
            ..
        })
    ));

    // An https:// endpoint (here from the environment) is refused at start, saying how to
    // export over TLS, rather than failing every export later with "network error".
    let b = heapspan::builder().fold_interval(Duration::from_millis(20));
    let (setting, value, expected) = invalid(b.clone().start());
    assert_eq!(setting, OTEL_EXPORTER_OTLP_ENDPOINT);
    assert_eq!(value, "https://collector.example:4318");
    assert!(expected.contains("ExportConfig::tracer_provider and ExportConfig::meter_provider"));
    // The same in code.
    let (setting, _, _) = invalid(
        b.clone()
            .export(ExportConfig::default().endpoint("https://c:4318"))
            .start(),
    );
    assert_eq!(setting, "endpoint");

    // Set in code, both win: the bad variable is not read, and no export is configured. The
    // live index comes from the environment (`HEAPSPAN_LIVE_INDEX=full`).
    let b = b.export(
        ExportConfig::default()
            .enabled(false)
            .endpoint("http://127.0.0.1:9"),
    );
    let guard = b
        .clone()
        .start()
        .expect("the failed attempts started nothing");
    assert!(
        guard.graph().is_some(),
        "HEAPSPAN_LIVE_INDEX=full turned the live index on (no graph with it off)"
    );
    // heapspan runs once per process.
    assert!(matches!(b.start(), Err(Error::AlreadyStarted)));
}
