//! heapspan's quickstart: a small service-like program (an ingest task, a few request workers,
//! a cache that keeps memory) that prints, on exit, which tasks and spans hold memory and what
//! is wrong with it.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//! Needs no collector. `QUICKSTART_REQUESTS` sets how many requests it serves (default 2400).
//! At the end it writes the HTML view of the run to `target/heapspan-report.html`.
//!
//! It plants three real problems, which its report's "Findings" section names:
//! - the `loader` task leaks a 1 MiB table that nothing points to when it ends
//!   (`task.escaped_allocation`, holder: nothing on the heap);
//! - every `request` span leaves a 1 KiB audit record in a global `Vec`
//!   (`span.residue_growth`: a per-request leak);
//! - the `cache` task builds two `Rc`s that point at each other and drops its handles
//!   (`refcount.unreachable_cycle`).
//!
//! The live index is on (the relation graph tells who holds what). A service keeps the default
//! 10-second window; the quickstart cuts its windows itself ([`heapspan::Guard::cut_window`]),
//! one per batch of requests, so that a second of work spans the dozen windows a growth test
//! needs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info_span, Instrument};

// 1. Count every allocation.
#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Audit records kept for ever: the per-request leak.
static AUDIT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Where the HTML view of the run goes (relative to the working directory).
const HTML_REPORT: &str = "target/heapspan-report.html";

/// Windows the quickstart cuts (one per batch of requests).
const WINDOWS: u64 = 12;

/// A request as the ingest task hands it to a worker.
struct Request {
    id: u64,
    path: String,
    body: Vec<u8>,
    reply: oneshot::Sender<usize>,
}

/// Parses a body into "fields" (allocates a vector of strings, freed at the end of the request).
fn parse(body: &[u8]) -> Vec<String> {
    body.chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// Renders a response (allocates a buffer that grows as it is written).
fn render(fields: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f.as_bytes());
        out.push(b'\n');
    }
    out
}

async fn worker(mut rx: mpsc::Receiver<Request>, cache: mpsc::Sender<(String, Vec<u8>)>) {
    while let Some(req) = rx.recv().await {
        let span = info_span!("request", id = req.id, path = %req.path);
        async {
            let fields = info_span!("parse").in_scope(|| parse(&req.body));
            let response = info_span!("render").in_scope(|| render(&fields));
            tokio::task::yield_now().await;
            // The planted per-request leak: an audit record nobody ever removes.
            AUDIT.lock().unwrap().push(
                format!("{} {}", req.id, req.path)
                    .into_bytes()
                    .repeat(1024 / 16),
            );
            let len = response.len();
            // Every tenth response is cached: that memory outlives the request.
            if req.id % 10 == 0 {
                let _ = cache.send((req.path.clone(), response)).await;
            }
            let _ = req.reply.send(len);
        }
        .instrument(span)
        .await;
    }
}

/// A graph node that can point at another (for the planted cycle).
struct Peer {
    payload: Vec<u8>,
    next: RefCell<Option<Rc<Peer>>>,
}

/// Keeps what it is sent, up to 500 paths: the task that holds memory (and plateaus).
async fn cache(mut rx: mpsc::Receiver<(String, Vec<u8>)>) -> usize {
    {
        // The planted cycle: two Rcs that point at each other, their handles dropped.
        let a = Rc::new(Peer {
            payload: vec![1; 64 << 10],
            next: RefCell::new(None),
        });
        let b = Rc::new(Peer {
            payload: vec![2; 64 << 10],
            next: RefCell::new(Some(a.clone())),
        });
        *a.next.borrow_mut() = Some(b.clone());
        let _ = (a.payload.len(), b.payload.len());
    }
    let mut entries: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some((k, v)) = rx.recv().await {
        entries.insert(k, v);
    }
    entries.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 2. Start heapspan with the live index on (the relation graph says who holds what), and
    //    install a subscriber with heapspan's layer.
    use tracing_subscriber::{fmt, layer::SubscriberExt, EnvFilter, Layer};
    let guard = heapspan::Builder::from_env()?
        .live_index(heapspan::IndexMode::Full)
        // The HTML view of the run, written when the guard is dropped.
        .html_report(HTML_REPORT)
        // Windows are cut below, one per batch; the timer would cut one an hour.
        .export(heapspan::export::ExportConfig::default().window(Duration::from_secs(3600)))
        .start()?;
    //    The log filter is the fmt layer's alone (a per-layer filter): a filter on the whole
    //    stack would hide DEBUG spans from heapspan too.
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(heapspan::layer())
            .with(fmt::layer().with_filter(log_filter)),
    )?;
    let requests: u64 = std::env::var("QUICKSTART_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2400)
        .max(WINDOWS);

    // The planted escape: a loader whose table outlives it, pointed at by nothing.
    heapspan::spawn("loader", async {
        // `black_box`: a release build may otherwise elide an allocation nothing reads.
        let table: &'static mut [u8] =
            Box::leak(std::hint::black_box(vec![7u8; 1 << 20]).into_boxed_slice());
        table.len()
    })
    .await?;

    // 3. Name the tasks you spawn (with `--cfg tokio_unstable`, tokio's own names work too).
    let (cache_tx, cache_rx) = mpsc::channel(256);
    let cache_task = heapspan::spawn("cache", cache(cache_rx));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (tx, rx) = mpsc::channel::<Request>(64);
        workers.push(tx);
        heapspan::spawn(format!("worker-{w}"), worker(rx, cache_tx.clone()));
    }
    // Held until the report, so the cache and the workers are still alive (a service keeps
    // serving) when it prints.
    let cache_open = cache_tx;
    let workers_open = workers.clone();
    // After each batch the ingest waits until its window is cut.
    let (batch_tx, mut batch_done) = mpsc::channel::<oneshot::Sender<()>>(1);
    let ingest = heapspan::spawn("ingest", async move {
        let mut served = 0usize;
        let per_window = requests / WINDOWS;
        for id in 0..requests {
            let (reply, answer) = oneshot::channel();
            let body = vec![b'a' + (id % 26) as u8; 512 + (id as usize % 7) * 256];
            let req = Request {
                id,
                path: format!("/items/{}", id % 500),
                body,
                reply,
            };
            if workers[(id % 4) as usize].send(req).await.is_err() {
                break;
            }
            served += answer.await.unwrap_or(0);
            if id % per_window == per_window - 1 {
                let (cut, window_cut) = oneshot::channel();
                if batch_tx.send(cut).await.is_err() || window_cut.await.is_err() {
                    break;
                }
            }
        }
        served
    });
    // One window per batch of requests.
    let mut windows = 0;
    while let Some(cut) = batch_done.recv().await {
        guard.cut_window();
        let _ = cut.send(());
        windows += 1;
    }
    let served = ingest.await?;
    println!("served {requests} requests ({served} response bytes) in {windows} windows");
    println!("{}", guard.report(8));
    if let Some(g) = guard.graph() {
        println!(
            "relation graph: {} live indexed allocations, {} edges, {} cycles ({:?}); strongest \
             edges:",
            g.graph.nodes.len(),
            g.graph.edges.len(),
            g.graph.cycles.len(),
            g.graph.skipped,
        );
        let snap = guard.snapshot();
        let task = |id: heapspan::graph::AllocId| {
            g.graph
                .node(id)
                .and_then(|n| {
                    snap.tasks
                        .iter()
                        .find(|t| t.key.id == n.task && n.task != 0)
                })
                .map_or_else(|| "-".to_owned(), |t| t.display_name())
        };
        for e in g.graph.top_edges(5) {
            println!(
                "  {:>9} B  {:<9} {:<9} confidence {:.2}  {} -> {}",
                e.bytes,
                e.kind.as_str(),
                e.capability.as_str(),
                e.confidence,
                task(e.from),
                task(e.to),
            );
        }
    }
    drop((cache_open, workers_open));
    let entries = cache_task.await?;
    println!("the cache held {entries} entries; it has ended and freed them");
    // Stopping heapspan writes the HTML view: charts, findings, the graph around each one.
    drop(guard);
    println!("HTML report (open it in a browser): {HTML_REPORT}");
    Ok(())
}
