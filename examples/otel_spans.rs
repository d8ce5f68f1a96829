//! Memory on your own spans, with tracing-opentelemetry: each span gets
//! `heapspan.memory.allocated`, `.freed`, `.live`, `.peak` and `heapspan.allocations` when it
//! closes, so a request's bytes show up in Jaeger or Tempo on the request itself.
//!
//! ```text
//! cargo run --example otel_spans --features tracing-opentelemetry
//! ```
//!
//! Versions that fit together: heapspan 0.1 is built on opentelemetry, opentelemetry_sdk and
//! opentelemetry-otlp **0.33**, and tracing-opentelemetry **0.34** is the release built on
//! opentelemetry 0.33 (a tracer of another opentelemetry version does not fit its
//! `with_tracer`). The order:
//!
//! 1. `heapspan::builder()...start()` first, with an export destination: a collector
//!    (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `ExportConfig::endpoint`) or a file
//!    (`ExportConfig::file`). Then `guard.tracer_provider()` lends heapspan's provider: your
//!    spans go out beside heapspan's, through its bounded queue and export thread.
//! 2. The subscriber: heapspan's layer *below* the OpenTelemetry layer (added first), so that
//!    heapspan's `on_close` writes the attributes before the OpenTelemetry layer ends the span.
//!
//! With no endpoint and no file, heapspan exports nothing and `tracer_provider()` is `None`
//! (and `start()` says so on stderr when this feature is on): bring your own provider then
//! (`ExportConfig::tracer_provider`). This example writes to a file and reads it back.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file =
        std::env::temp_dir().join(format!("heapspan-otel-spans-{}.jsonl", std::process::id()));
    // 1. heapspan first, exporting somewhere.
    let guard = heapspan::builder()
        .export(heapspan::export::ExportConfig::default().file(&file))
        .start()?;
    let provider = guard
        .tracer_provider()
        .expect("heapspan exports to a file, so it has a tracer provider");
    // 2. heapspan's layer below the OpenTelemetry layer.
    let subscriber = tracing_subscriber::registry().with(heapspan::layer()).with(
        tracing_opentelemetry::layer()
            // Context activation (on by default) makes an OpenTelemetry `Context` each
            // time a span is entered, about 400 bytes kept until it closes, and they are
            // charged to the span: leave it on if you propagate that context (to an HTTP
            // client, say), and know the figure includes it.
            .with_context_activation(false)
            .with_tracer(provider.tracer("otel-spans-example")),
    );
    tracing::subscriber::set_global_default(subscriber)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let kept = rt.block_on(async {
        heapspan::spawn("requests", async {
            let mut kept = Vec::with_capacity(3); // outside the spans
            for id in 0..3u32 {
                let span = tracing::info_span!("handle_request", id);
                let _e = span.enter();
                // 4 KiB of scratch, freed before the span closes, and 1 KiB kept past it.
                let scratch = std::hint::black_box(vec![0u8; 4096]);
                drop(scratch);
                kept.push(std::hint::black_box(vec![1u8; 1024]));
            }
            kept
        })
        .await
    })?;
    // Dropping the guard flushes the last window and the spans.
    drop(guard);
    std::thread::sleep(Duration::from_millis(50));

    // The OTLP JSON file: one export request per line.
    let json = std::fs::read_to_string(&file)?;
    let _ = std::fs::remove_file(&file);
    let mut requests = 0;
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let spans = v["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
            .flat_map(|s| s["spans"].as_array().into_iter().flatten());
        for span in spans.filter(|s| s["name"] == "handle_request") {
            let attr = |key: &str| {
                span["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == key)
                    .and_then(|a| a["value"]["intValue"].as_str()?.parse::<i64>().ok())
            };
            let (allocated, live, peak) = (
                attr(heapspan::export::names::MEMORY_ALLOCATED),
                attr(heapspan::export::names::MEMORY_LIVE),
                attr(heapspan::export::names::MEMORY_PEAK),
            );
            println!(
                "handle_request: allocated {allocated:?} B, live at close {live:?} B, peak \
                 {peak:?} B"
            );
            // Exact: the span stayed on one thread. `peak` is the highest live value seen at a
            // fold or at the close, so a transient between two folds may not show in it.
            assert_eq!(live, Some(1024), "the kilobyte kept past the close");
            assert_eq!(
                allocated,
                Some(4096 + 1024),
                "the scratch and the kept kilobyte"
            );
            assert!(peak >= live);
            requests += 1;
        }
    }
    assert_eq!(requests, 3, "the three request spans, with their memory");
    drop(kept);
    Ok(())
}
