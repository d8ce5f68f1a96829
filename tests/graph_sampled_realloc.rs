//! Sampled mode treats a realloc as a new allocation of the new size: vectors grown by
//! pushing are sampled by their final size, so the weighted estimate of their bytes is
//! unbiased. The bound: 5 standard deviations of the estimator, `sqrt(Σ s² (1 − p) / p)` with
//! `p = 1 − exp(−s / mean)`.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

#[test]
fn grown_vectors_are_estimated_within_five_sigma() {
    const MEAN: u64 = 64 << 10;
    const N: usize = 1000;
    const LEN: usize = 64 << 10;
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Sampled { mean_bytes: MEAN })
        .start()
        .unwrap();
    let vecs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut v = Vec::new();
            for k in 0..LEN {
                v.push((i + k) as u8);
            }
            v
        })
        .collect();
    let g = guard.graph().expect("index on");
    let mut estimate = 0u64;
    let mut truth = 0u64;
    let mut variance = 0f64;
    let mut sampled = 0;
    for v in &vecs {
        let s = v.capacity() as f64;
        truth += v.capacity() as u64;
        let p = -(-s / MEAN as f64).exp_m1();
        variance += s * s * (1.0 - p) / p;
        if let Some(n) = g.node_at(v.as_ptr() as usize) {
            assert_eq!(n.size, v.capacity(), "the node is the final buffer");
            estimate += n.weighted_size();
            sampled += 1;
        }
    }
    let sd = variance.sqrt();
    let err = estimate as f64 - truth as f64;
    eprintln!("truth {truth} estimate {estimate} sd {sd:.0} sampled {sampled}/{N}");
    assert!(
        err.abs() <= 5.0 * sd,
        "estimate {estimate} vs {truth}: off by {err:.0}, 5 sd = {:.0}",
        5.0 * sd
    );
    drop(vecs);
}
