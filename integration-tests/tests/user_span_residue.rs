//! Feature `tracing-opentelemetry`: a request that leaks 1000 bytes and returns a 3000-byte
//! body freed after its span closed. The span's close-time `heapspan.memory.live` counts both
//! (about 4 KB); a window later its `heapspan.span.residue` child shows the 1000 bytes left,
//! though heapspan retains fewer closed spans than were sampled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use heapspan::export::{names as n, ExportConfig};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Requests served, all sampled (with the warm-up, fewer than `DEFAULT_MAX_RESIDUE_SPANS`).
const REQUESTS: usize = 20;
const LEAK: usize = 1000;
const BODY: usize = 3000;

/// What the test keeps of an ended span. The `SpanData` itself is dropped at once: it holds
/// attributes tracing-opentelemetry allocated while the request's span was entered, which
/// would otherwise stay live and count in the span's residue.
#[derive(Debug)]
struct Got {
    name: String,
    trace_id: TraceId,
    span_id: SpanId,
    parent: SpanId,
    links: Vec<SpanId>,
    attrs: Vec<(String, Value)>,
}

impl Got {
    #[track_caller]
    fn int(&self, key: &str) -> i64 {
        match self.attrs.iter().find(|(k, _)| k == key) {
            Some((_, Value::I64(v))) => *v,
            other => panic!("{key}: {other:?} in {self:?}"),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<Got>>>);

impl SpanProcessor for Collect {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: SpanData) {
        let got = Got {
            name: span.name.to_string(),
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
            parent: span.parent_span_id,
            links: span
                .links
                .iter()
                .map(|l| l.span_context.span_id())
                .collect(),
            attrs: span
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.clone()))
                .collect(),
        };
        drop(span);
        self.0.lock().unwrap().push(got);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// A request: leaks `LEAK` bytes and returns a `BODY`-byte response, both allocated inside
/// its `span`; the span closes before the response is freed (as a server's body outlives the
/// handler's span).
fn handle(span: tracing::Span) -> Vec<u8> {
    let body = {
        let _e = span.enter();
        let leaked: &'static mut [u8] = Box::leak(vec![7u8; LEAK].into_boxed_slice());
        std::hint::black_box(leaked);
        std::hint::black_box(vec![1u8; BODY])
    };
    drop(span);
    body
}

#[test]
fn a_request_shows_what_it_left_a_window_later() {
    let collect = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collect.clone())
        .build();
    // heapspan's spans go through the same provider as the application's; windows are cut by
    // the test only (`cut_window`, and the last one when the guard is dropped). Only 4 closed
    // spans are retained: the sampled ones are kept until their residue is read all the same.
    let guard = heapspan::builder()
        .closed_span_retention(4)
        .export(
            ExportConfig::default()
                .tracer_provider(provider.clone())
                .window(Duration::from_secs(3600))
                .shutdown_timeout(Duration::from_secs(60)),
        )
        .start()
        .unwrap();
    // heapspan's layer below the OpenTelemetry layer: its on_close runs first.
    let subscriber = tracing_subscriber::registry()
        .with(heapspan::layer())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        heapspan::spawn("server", async {
            // The first span entered on the thread also carries one-time initializations (64
            // bytes here) that stay live: a warm-up request takes them, under a span of its
            // own.
            drop(handle(tracing::info_span!("warmup")));
            for _ in 0..REQUESTS {
                let body = handle(tracing::info_span!("request"));
                // The response is written out and freed after the span closed.
                drop(std::hint::black_box(body));
            }
        })
        .await
    })
    .unwrap();
    // The window the requests closed in; their sample is read at the end of the next one.
    guard.cut_window();
    guard.cut_window();
    drop(guard);

    let got = collect.0.lock().unwrap();
    let requests: Vec<&Got> = got.iter().filter(|s| s.name == "request").collect();
    assert_eq!(requests.len(), REQUESTS);
    // At the close, the span holds the leak and the body: 4000 bytes, plus tracing-
    // opentelemetry's own bookkeeping allocated while the span was entered (a few hundred
    // bytes, freed when its span data is dropped): tolerance 1 KiB.
    for r in &requests {
        let live = r.int(n::MEMORY_LIVE);
        assert!(
            ((LEAK + BODY) as i64..=(LEAK + BODY + 1024) as i64).contains(&live),
            "close-time live {live}"
        );
    }
    let residues: Vec<&Got> = got
        .iter()
        .filter(|s| s.name == n::SPAN_RESIDUE_SPAN)
        .collect();
    assert_eq!(
        residues.len(),
        REQUESTS + 1,
        "every request and the warm-up was sampled and left bytes"
    );
    let warmup = got.iter().find(|s| s.name == "warmup").expect("warm-up");
    let residues: Vec<&Got> = residues
        .into_iter()
        .filter(|s| s.parent != warmup.span_id)
        .collect();
    for s in &residues {
        // A child of one of the requests, in its trace.
        let parent = requests
            .iter()
            .find(|r| r.span_id == s.parent)
            .unwrap_or_else(|| panic!("the parent of {s:?} is no request"));
        assert_eq!(s.trace_id, parent.trace_id);
        // Exactly the leak: the body and the bookkeeping were freed after the close.
        assert_eq!(s.int(n::MEMORY_RESIDUE), LEAK as i64, "{s:?}");
        assert_eq!(s.int(n::ALLOCATIONS_RESIDUE), 1);
        assert_eq!(s.int(n::MEMORY_LIVE), parent.int(n::MEMORY_LIVE));
    }
    let mut parents: Vec<SpanId> = residues.iter().map(|s| s.parent).collect();
    parents.sort_unstable_by_key(|id| u64::from_be_bytes(id.to_bytes()));
    parents.dedup();
    assert_eq!(parents.len(), REQUESTS, "one residue per request");
    // The second window's root counts the sample (the first and the last read none), and
    // the residue spans link to it.
    let roots: Vec<&Got> = got
        .iter()
        .filter(|s| s.name == n::PROCESS_WINDOW_SPAN)
        .collect();
    assert_eq!(roots.len(), 3);
    let read: Vec<i64> = roots
        .iter()
        .map(|r| r.int(n::SPAN_RESIDUE_INSTANCES))
        .collect();
    assert_eq!(read, [0, (REQUESTS + 1) as i64, 0]);
    let root = roots[1];
    assert!(residues.iter().all(|s| s.links == [root.span_id]));
    let sampled = (REQUESTS + 1) as i64;
    assert_eq!(root.int(n::SPAN_RESIDUE_CANDIDATES), sampled);
    assert_eq!(root.int(n::SPAN_RESIDUE_INSTANCES), sampled);
    let bytes = root.int(n::SPAN_RESIDUE_BYTES);
    assert!(
        (sampled * LEAK as i64..=sampled * LEAK as i64 + 1024).contains(&bytes),
        "the requests' {} bytes and the warm-up's: {bytes}",
        REQUESTS * LEAK
    );
}
