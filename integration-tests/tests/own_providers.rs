//! The application passes its own meter and tracer providers: heapspan records its metrics
//! into the application's meter and creates its window spans with the application's tracer;
//! the application's reader and processor see them (and heapspan starts no exporter).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use heapspan::export::names as n;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const HOLD: usize = 1 << 20;

/// The application's reader, which it keeps a handle to.
#[derive(Debug, Clone)]
struct AppReader(Arc<ManualReader>);

impl MetricReader for AppReader {
    fn register_pipeline(&self, p: Weak<Pipeline>) {
        self.0.register_pipeline(p)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, t: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(t)
    }
    fn temporality(&self, k: InstrumentKind) -> Temporality {
        self.0.temporality(k)
    }
}

/// The application's span processor.
#[derive(Debug, Clone, Default)]
struct AppSpans(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for AppSpans {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn holder_live(reader: &AppReader) -> Option<i64> {
    let mut rm = ResourceMetrics::default();
    reader.collect(&mut rm).expect("collect");
    for sm in rm.scope_metrics() {
        assert_eq!(sm.scope().name(), n::SCOPE);
        for m in sm.metrics().filter(|m| m.name() == n::TASK_MEMORY_LIVE) {
            assert_eq!(m.unit(), n::UNIT_BYTES);
            if let AggregatedMetrics::I64(MetricData::Sum(s)) = m.data() {
                for p in s.data_points() {
                    if p.attributes().any(|kv| {
                        kv.key.as_str() == n::TOKIO_TASK_NAME && kv.value.as_str() == "holder"
                    }) {
                        return Some(p.value());
                    }
                }
            }
        }
    }
    None
}

#[test]
fn heapspan_uses_the_applications_providers() {
    let reader = AppReader(Arc::new(ManualReader::builder().build()));
    let meters = SdkMeterProvider::builder()
        .with_reader(reader.clone())
        .build();
    let spans = AppSpans::default();
    let tracers = SdkTracerProvider::builder()
        .with_span_processor(spans.clone())
        .build();
    let guard = heapspan::builder()
        .export(
            heapspan::export::ExportConfig::default()
                .meter_provider(meters.clone())
                .tracer_provider(tracers.clone())
                .window(Duration::from_millis(100))
                .metric_export_interval(Duration::from_millis(100)),
        )
        .start()
        .expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let holder = heapspan::spawn("holder", async move {
            let v = std::hint::black_box(vec![3u8; HOLD]);
            let _ = rx.await;
            drop(v);
        });
        // Bounded wait for heapspan's thread to record the held bytes.
        let mut seen = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = holder_live(&reader);
            if seen == Some(HOLD as i64) {
                break;
            }
        }
        assert_eq!(seen, Some(HOLD as i64));
        let _ = tx.send(());
        holder.await.unwrap();
    });
    drop(guard);
    let got = spans.0.lock().unwrap();
    let windows: Vec<&SpanData> = got.iter().filter(|s| s.name == n::WINDOW_SPAN).collect();
    assert!(
        windows.iter().any(|s| s
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == n::TOKIO_TASK_NAME && kv.value.as_str() == "holder")),
        "no holder window among {} spans",
        got.len()
    );
    assert_eq!(
        holder_live(&reader),
        Some(0),
        "the final export saw the free"
    );
}
