//! Sampled live index (`IndexMode::Sampled { mean_bytes: 4096 }`): one task allocates and keeps
//! a known set of blocks; the graph's weighted byte total of that task's nodes estimates the
//! exact counters within stated statistical bounds, and sampling leaves the exact counters
//! exact.
//!
//! # The bound
//!
//! An allocation of `s` bytes is indexed with probability `p(s) = 1 − exp(−s / mean)`,
//! independently of the others (the sampler's countdown is exponential, hence memoryless), and
//! its node weighs `1 / p(s)`. The estimate `Σ_indexed s / p(s)` of the task's live bytes `T`
//! is unbiased with variance `Σ s² (1 − p) / p` (one Bernoulli trial per block). The test
//! asserts `|estimate − T| ≤ 5 σ` (plus half a byte per node for the rounding of
//! `Node::weighted_size`), and that the number of indexed blocks is within `5 σ` of its mean
//! `Σ p`, `σ² = Σ p (1 − p)`. Five standard deviations: a false failure about once in 1.7
//! million runs under a normal approximation (with 20,000 independent blocks, a close one).
//!
//! The capture scans only the first 64 bytes of each node (`max_scan_bytes_per_node`): sizes
//! and weights come from the index, not from the contents, and the blocks are never written.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::sync::OnceLock;

use heapspan::graph::GraphConfig;
use heapspan::{CaptureConfig, Guard, IndexMode};
use tokio::sync::oneshot;

/// Mean bytes between samples.
const MEAN: u64 = 4096;
/// Blocks the task keeps.
const BLOCKS: usize = 20_000;
/// Block sizes are log-uniform between these (so `p` goes from 0.004 to 1 − e^-16).
const MIN_SIZE: f64 = 16.0;
const MAX_SIZE: f64 = 65_536.0;
/// Standard deviations allowed.
const Z: f64 = 5.0;
const SEED: u64 = 0x5A3D;

static GUARD: OnceLock<Guard> = OnceLock::new();

fn guard() -> &'static Guard {
    GUARD.get_or_init(|| {
        heapspan::builder()
            .live_index(IndexMode::Sampled { mean_bytes: MEAN })
            .capture(CaptureConfig {
                graph: GraphConfig {
                    max_scan_bytes_per_node: 64,
                    ..GraphConfig::default()
                },
                ..CaptureConfig::default()
            })
            .start()
            .expect("heapspan starts")
    })
}

/// The block sizes, the same sequence every time (splitmix64, log-uniform).
fn sizes() -> impl Iterator<Item = usize> {
    let mut x = SEED;
    (0..BLOCKS).map(move |_| {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        (MIN_SIZE * (MAX_SIZE / MIN_SIZE).powf(u)).round() as usize
    })
}

/// The probability that an allocation of `s` bytes is indexed.
fn p(s: usize) -> f64 {
    -(-(s as f64) / MEAN as f64).exp_m1()
}

#[test]
fn sampled_totals_estimate_the_exact_counters() {
    let guard = guard();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    // The task's only allocations: the holder and the blocks (capacity only, never written).
    let task = rt.spawn(async move {
        let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(BLOCKS);
        for s in sizes() {
            blocks.push(Vec::with_capacity(s));
        }
        let _ = ready_tx.send(());
        let _ = release_rx.await;
        drop(blocks);
    });
    rt.block_on(ready_rx).expect("the blocks are allocated");
    let id = task.id();
    let task_word: u64 = id.to_string().parse().expect("a task id is a number");

    // Exact: the blocks and the holder, whatever was sampled.
    let all: Vec<usize> = sizes().chain([BLOCKS * size_of::<Vec<u8>>()]).collect();
    let exact: u64 = all.iter().map(|&s| s as u64).sum();
    let snap = guard.snapshot();
    let t = snap.task_by_id(id).expect("the task is in the table");
    assert_eq!(t.mem.live_bytes(), exact as i64, "{:?}", t.mem);
    assert_eq!(t.mem.allocations, all.len() as u64, "{:?}", t.mem);

    let g = guard.graph().expect("the live index is on");
    assert_eq!(g.scan.over_budget_nodes, 0, "{:?}", g.scan);
    assert_eq!(g.graph.skipped.nodes, 0, "{:?}", g.graph.skipped);
    assert_eq!(g.scan.unindexed, 0, "{:?}", g.scan);
    let nodes: Vec<_> = g
        .graph
        .nodes
        .iter()
        .filter(|n| n.task == task_word)
        .collect();
    for n in &nodes {
        let w = 1.0 / p(n.size);
        assert!(
            (n.weight - w).abs() <= 1e-9 * w,
            "weight 1/p: {n:?}, expected {w}"
        );
    }
    let estimate: f64 = nodes.iter().map(|n| n.weighted_size() as f64).sum();
    let sd = all
        .iter()
        .map(|&s| {
            let p = p(s);
            (s as f64).powi(2) * (1.0 - p) / p
        })
        .sum::<f64>()
        .sqrt();
    let mean_count: f64 = all.iter().map(|&s| p(s)).sum();
    let sd_count = all.iter().map(|&s| p(s) * (1.0 - p(s))).sum::<f64>().sqrt();
    eprintln!(
        "exact {exact} bytes in {} blocks; sampled {} nodes (expected {mean_count:.0} ± \
         {sd_count:.0}), estimate {estimate:.0} bytes, off by {:.0} = {:.2} σ (σ = {sd:.0}, \
         {:.2}% of the total)",
        all.len(),
        nodes.len(),
        estimate - exact as f64,
        (estimate - exact as f64) / sd,
        100.0 * sd / exact as f64,
    );
    let rounding = 0.5 * nodes.len() as f64;
    assert!(
        (estimate - exact as f64).abs() <= Z * sd + rounding,
        "estimate {estimate} vs exact {exact}: more than {Z} σ (σ = {sd:.0}) apart"
    );
    assert!(
        (nodes.len() as f64 - mean_count).abs() <= Z * sd_count,
        "{} nodes sampled, expected {mean_count:.0} ± {Z} × {sd_count:.1}",
        nodes.len()
    );

    let _ = release_tx.send(());
    rt.block_on(task).expect("the task ends");
    let t = guard.snapshot();
    let t = t.task_by_id(id).expect("the task is in the table");
    assert_eq!(t.mem.live_bytes(), 0, "everything freed: {:?}", t.mem);
}
