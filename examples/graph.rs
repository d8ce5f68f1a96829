//! The relation graph of a small service's heap: who owns what, what is shared, what leaks
//! in a cycle, and which task holds it.
//!
//! `cargo run --release --example graph` prints the strongest edges, the cycles and the
//! biggest retainers, and writes the graph as Graphviz DOT to `heapspan-graph.dot` (render it
//! with `dot -Tsvg heapspan-graph.dot -o heapspan-graph.svg`). Needs no collector.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use heapspan::graph::{DotOptions, EdgeKind};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Configuration every handler shares.
struct Config {
    name: String,
    limits: Vec<u64>,
}

/// A doubly linked pair: the classic `Rc` cycle that never frees.
struct Peer {
    _payload: Vec<u8>,
    other: RefCell<Option<Rc<Peer>>>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(heapspan::layer()),
    )?;
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let config = Arc::new(Config {
        name: "checkout".to_owned(),
        limits: (0..64).collect(),
    });
    let (hold_tx, hold_rx) = std::sync::mpsc::channel();
    rt.block_on(async {
        // Three handlers hold the shared config; one also keeps a cache.
        for h in 0..3 {
            let config = config.clone();
            let hold_tx = hold_tx.clone();
            heapspan::spawn(format!("handler-{h}"), async move {
                let span = tracing::info_span!("request", handler = h);
                let held = span.in_scope(|| {
                    let mut cache: HashMap<u64, Vec<u8>> = HashMap::new();
                    if h == 0 {
                        for k in 0..32u64 {
                            cache.insert(k, vec![k as u8; 256]);
                        }
                        let key = cache.keys().next().map(|k| k as *const u64 as *const u8);
                        let members: Vec<*const u8> = cache.values().map(|v| v.as_ptr()).collect();
                        if let Some(key) = key {
                            heapspan::graph::live::annotate_container(key, &members);
                        }
                    }
                    // A leak: two peers that point at each other.
                    let a = Rc::new(Peer {
                        _payload: vec![7; 4096],
                        other: RefCell::new(None),
                    });
                    let b = Rc::new(Peer {
                        _payload: vec![9; 4096],
                        other: RefCell::new(Some(a.clone())),
                    });
                    *a.other.borrow_mut() = Some(b);
                    drop(a);
                    // A log buffer that grew by pushing (realloc after realloc).
                    let mut log = Vec::new();
                    for i in 0..10_000u32 {
                        log.push(i);
                    }
                    (cache, log)
                });
                let _ = hold_tx.send(config);
                let _held = held;
                std::future::pending::<()>().await;
            });
        }
    });
    for _ in 0..3 {
        let _ = hold_rx.recv()?;
    }

    let g = guard.graph().expect("the live index is on");
    let graph = &g.graph;
    println!(
        "live indexed allocations: {}, edges: {}, cycles: {}; scan copied {} KiB in {:?} \
         (frees deferred for {:?})",
        graph.nodes.len(),
        graph.edges.len(),
        graph.cycles.len(),
        g.scan.scanned_bytes / 1024,
        g.scan.duration,
        g.scan.pause,
    );
    println!("\nedges by kind:");
    for (k, n) in EdgeKind::ALL.iter().zip(graph.count_by_kind()) {
        if n > 0 {
            println!("  {:<10} {n}", k.as_str());
        }
    }
    println!("\nstrongest edges (bytes, kind, capability, confidence):");
    for e in graph.top_edges(12) {
        println!(
            "  {:>8} B  {:<9} {:<9} {:.2}  {} -> {}{}",
            e.bytes,
            e.kind.as_str(),
            e.capability.as_str(),
            e.confidence,
            e.from,
            e.to,
            if e.cross_task { "  (cross-task)" } else { "" }
        );
    }
    println!("\ncycles (ownership edges only):");
    for c in graph.cycles.iter().take(5) {
        let bytes: u64 = c
            .iter()
            .filter_map(|id| graph.node(*id))
            .map(|n| n.size as u64)
            .sum();
        println!("  {} allocations, {bytes} B: {:?}", c.len(), c);
    }
    let mut retainers: Vec<_> = graph.nodes.iter().zip(&graph.retained).collect();
    retainers.sort_by(|a, b| b.1.cmp(a.1));
    println!("\nbiggest retainers (retained bytes: reachable only through them):");
    for (n, r) in retainers.iter().take(5) {
        println!(
            "  {:>8} B  {} ({} B itself, task {})",
            r, n.id, n.size, n.task
        );
    }
    let dot = g.to_dot(&DotOptions::default());
    std::fs::write("heapspan-graph.dot", &dot)?;
    println!(
        "\nwrote heapspan-graph.dot ({} bytes): dot -Tsvg heapspan-graph.dot -o heapspan-graph.svg",
        dot.len()
    );
    let _ = config.name.len() + config.limits.len();
    Ok(())
}
