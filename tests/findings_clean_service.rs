//! A clean, busy, service-shaped program gets no finding of medium or above over 36 windows,
//! with the live index on (every detector runs, the graph-based ones included).
//!
//! Each window serves 200 requests, each its own short-lived task (`request`: task churn)
//! under a `handle_request` span with a nested `parse` span. A request reads the
//! `Arc`-shared configuration, parses a body (temporary allocations), hands its response buffer
//! through a channel to a long-lived `writer` task, which keeps the last 100 responses (buffers
//! that outlive the tasks that made them: transferred, not escaped), and stores a row in a
//! cache bounded at 300 keys, which fills during the first windows (warm-up) and then
//! plateaus (new rows replace, and free, old ones). A `ticker` task wakes every few
//! milliseconds holding a small buffer.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heapspan::findings::Severity;
use tokio::sync::mpsc;
use tracing::{info_span, Instrument};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const WINDOWS: usize = 36;
const REQUESTS_PER_WINDOW: usize = 200;
const CACHE_KEYS: usize = 300;
const KEPT_RESPONSES: usize = 100;

struct Config {
    prefix: String,
    limits: Vec<u32>,
}

async fn handle(
    id: usize,
    config: Arc<Config>,
    cache: Arc<Mutex<HashMap<usize, Vec<u8>>>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let body = vec![(id % 251) as u8; 1024 + id % 512];
    let fields: Vec<String> = info_span!("parse").in_scope(|| {
        body.chunks(64)
            .map(|c| format!("{}{}", config.prefix, c.len()))
            .collect()
    });
    tokio::task::yield_now().await;
    let mut response = Vec::with_capacity(1024);
    for f in &fields {
        response.extend_from_slice(f.as_bytes());
    }
    response.truncate(config.limits[0] as usize);
    cache
        .lock()
        .unwrap()
        .insert(id % CACHE_KEYS, vec![1; 256 + id % 256]);
    let _ = out.send(response).await;
}

#[test]
fn a_clean_service_has_no_finding_of_medium_or_above() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
    );
    let rt = common::runtime(2);
    let mut loud = Vec::new();
    let mut seen_kinds = std::collections::BTreeSet::new();
    rt.block_on(async {
        let config = Arc::new(Config {
            prefix: "field-".to_owned(),
            limits: vec![768, 1024],
        });
        let cache = Arc::new(Mutex::new(HashMap::new()));
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let writer = heapspan::spawn("writer", async move {
            let mut kept = VecDeque::with_capacity(KEPT_RESPONSES + 1);
            let mut n = 0usize;
            while let Some(r) = rx.recv().await {
                kept.push_back(r);
                if kept.len() > KEPT_RESPONSES {
                    kept.pop_front();
                }
                n += 1;
            }
            n
        });
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ticker = heapspan::spawn("ticker", async move {
            let scratch = vec![0u8; 4096];
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tokio::time::sleep(Duration::from_millis(3)) => {}
                }
            }
            scratch.len()
        });
        let mut id = 0;
        for w in 0..WINDOWS {
            let mut handles = Vec::with_capacity(REQUESTS_PER_WINDOW);
            for _ in 0..REQUESTS_PER_WINDOW {
                let fut = handle(id, config.clone(), cache.clone(), tx.clone())
                    .instrument(info_span!("handle_request", id));
                handles.push(heapspan::spawn("request", fut));
                id += 1;
            }
            for h in handles {
                h.await.unwrap();
            }
            let findings = tokio::task::block_in_place(|| guard.cut_window());
            for f in &findings {
                seen_kinds.insert(f.kind.as_str());
            }
            loud.extend(
                findings
                    .into_iter()
                    .filter(|f| f.severity >= Severity::Medium)
                    .map(|f| (w, f)),
            );
        }
        drop(tx);
        let _ = stop_tx.send(());
        assert_eq!(
            writer.await.unwrap(),
            WINDOWS * REQUESTS_PER_WINDOW,
            "every response reached the writer"
        );
        ticker.await.unwrap();
    });
    let snap = guard.snapshot();
    let requests = snap
        .task_names
        .iter()
        .find(|t| t.name == "request")
        .expect("the request tasks");
    assert_eq!(requests.ended, (WINDOWS * REQUESTS_PER_WINDOW) as u64);
    assert!(snap.is_exact());
    assert!(
        loud.is_empty(),
        "findings of medium or above on a clean service (kinds seen: {seen_kinds:?}):\n{}",
        loud.iter()
            .map(|(w, f)| format!(
                "window {w}: {} {} {} B {}: {}",
                f.severity,
                f.kind,
                f.bytes,
                f.place(),
                f.summary
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("kinds seen (below medium): {seen_kinds:?}");
}
