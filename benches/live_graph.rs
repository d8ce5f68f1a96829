//! The relation graph of this process's real heap: 1M live indexed allocations (full mode),
//! scanned in place by [`heapspan::Guard::graph`].
//!
//! Reported per capture: live allocations per second (nodes / capture time), heap bytes copied
//! per second during the scan's copy phase (the pause frees are deferred for), and the whole
//! capture (scan + graph build). `cargo bench --bench live_graph`; `HEAPSPAN_BENCH_NODES` for
//! another heap size.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

struct Tree {
    _v: u64,
    _left: Option<Box<Tree>>,
    _right: Option<Box<Tree>>,
}

/// What the bench keeps live: box trees, `Vec<String>`s and data buffers.
type Heap = (Vec<Option<Box<Tree>>>, Vec<Vec<String>>, Vec<Vec<u64>>);

fn tree(depth: u32, n: &mut usize) -> Option<Box<Tree>> {
    if depth == 0 || *n == 0 {
        return None;
    }
    *n -= 1;
    Some(Box::new(Tree {
        _v: u64::from(depth),
        _left: tree(depth - 1, n),
        _right: tree(depth - 1, n),
    }))
}

/// About `nodes` live allocations: box trees, `Vec<String>`s and data buffers.
fn build_heap(nodes: usize) -> Heap {
    let third = nodes / 3;
    let mut trees = Vec::new();
    let mut left = third;
    while left > 0 {
        trees.push(tree(12, &mut left));
    }
    let strings = (0..third / 64)
        .map(|i| (0..63).map(|k| format!("item-{i}-{k}")).collect())
        .collect();
    let buffers = (0..third)
        .map(|i| (0..(i % 32) as u64).map(|k| k * 7919).collect())
        .collect();
    (trees, strings, buffers)
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let quick = std::env::args().any(|a| a == "--test");
    let nodes: usize = std::env::var("HEAPSPAN_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 1_000_000 });
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .start()
        .expect("heapspan starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let heap = rt.block_on(async { tokio::spawn(async move { build_heap(nodes) }).await });
    let heap = heap.expect("heap task");

    let g = guard.graph().expect("the live index is on");
    let s = g.scan;
    let secs = s.duration.as_secs_f64();
    println!(
        "live graph: {} nodes, {} edges; capture {:.1} ms = {:.2} M allocations/s; copy phase \
         (frees deferred) {:.1} ms for {:.1} MiB = {:.2} GB/s; tracker memory {:.1} MiB",
        g.graph.nodes.len(),
        g.graph.edges.len(),
        secs * 1e3,
        g.graph.nodes.len() as f64 / secs / 1e6,
        s.pause.as_secs_f64() * 1e3,
        s.scanned_bytes as f64 / (1 << 20) as f64,
        s.scanned_bytes as f64 / s.pause.as_secs_f64() / 1e9,
        guard.snapshot().tracker_bytes as f64 / (1 << 20) as f64,
    );
    assert!(g.graph.nodes.len() >= nodes * 9 / 10, "{s:?}");
    c.bench_function("live_graph/capture", |b| {
        b.iter(|| black_box(guard.graph()))
    });
    drop(black_box(heap));
    c.final_summary();
}
