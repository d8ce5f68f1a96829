//! heapspan's quickstart: a small service-like program (an ingest task, a few request workers,
//! a cache that keeps memory) that prints, on exit, which tasks and spans hold memory.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//! Needs no collector. `QUICKSTART_REQUESTS` sets how many requests it serves (default 2000).
//! With `HEAPSPAN_LIVE_INDEX=full` it also prints the strongest edges of the relation graph:
//! what the live memory is made of (see `examples/graph.rs` for more).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info_span, Instrument};

// 1. Count every allocation.
#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

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

/// Keeps everything it is sent: the task that holds memory.
async fn cache(mut rx: mpsc::Receiver<(String, Vec<u8>)>) -> usize {
    let mut entries: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some((k, v)) = rx.recv().await {
        entries.insert(k, v);
    }
    entries.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 2. Start heapspan: aggregator thread plus a global subscriber with heapspan's layer.
    let guard = heapspan::init()?;
    let requests: u64 = std::env::var("QUICKSTART_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);

    // 3. Name the tasks you spawn (with `--cfg tokio_unstable`, tokio's own names work too).
    let (cache_tx, cache_rx) = mpsc::channel(256);
    let cache_task = heapspan::spawn("cache", cache(cache_rx));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (tx, rx) = mpsc::channel::<Request>(64);
        workers.push(tx);
        heapspan::spawn(format!("worker-{w}"), worker(rx, cache_tx.clone()));
    }
    // Held until the report, so the cache is still alive (and holding memory) when it prints.
    let cache_open = cache_tx;
    let ingest = heapspan::spawn("ingest", async move {
        let mut served = 0usize;
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
            if id % 500 == 499 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        served
    });
    let served = ingest.await?;
    // Let the workers see their queues close and end.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("served {requests} requests ({served} response bytes)");
    println!("{}", guard.report(8));
    if let Some(g) = guard.graph() {
        println!(
            "relation graph: {} live indexed allocations, {} edges, {} cycles; strongest edges:",
            g.graph.nodes.len(),
            g.graph.edges.len(),
            g.graph.cycles.len()
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
    drop(cache_open);
    let entries = cache_task.await?;
    println!("the cache held {entries} entries; it has ended and freed them");
    Ok(())
}
