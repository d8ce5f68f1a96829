//! Allocator overhead against the system allocator, measured in the same run with the same
//! threads alive (an idle thread stands in for heapspan's aggregator while the baseline and
//! the pass-through mode are measured, so glibc is in its multi-thread mode throughout).
//!
//! `cargo bench --bench alloc` prints criterion's figures and, at the end, a ratio table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const LAYOUT: Layout = match Layout::from_size_align(64, 8) {
    Ok(l) => l,
    Err(_) => panic!(),
};

/// One 64-byte alloc + free through `a`, like `drop(Box::new([0u8; 64]))`.
#[inline(always)]
fn pair(a: &impl GlobalAlloc) {
    // SAFETY: a non-zero layout; the block is written within its size and freed once.
    unsafe {
        let p = a.alloc(black_box(LAYOUT));
        p.write(1);
        a.dealloc(black_box(p), LAYOUT);
    }
}

/// ns per pair with `threads` threads each doing `iters` pairs at once.
fn run(a: &(impl GlobalAlloc + Sync), threads: usize, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters {
                    pair(a);
                }
            });
        }
    });
    start.elapsed()
}

fn bench_pairs(c: &mut Criterion, phase: &str) {
    let mut g = c.benchmark_group(format!("alloc_free_64B/{phase}"));
    for threads in [1usize, 2] {
        g.bench_function(format!("system/{threads}t"), |b| {
            b.iter_custom(|n| run(&System, threads, n))
        });
        g.bench_function(format!("heapspan/{threads}t"), |b| {
            b.iter_custom(|n| run(&ALLOC, threads, n))
        });
    }
    g.finish();
}

/// Median ns per pair over interleaved rounds, for the ratio table.
fn median_ns(a: &(impl GlobalAlloc + Sync), threads: usize) -> f64 {
    const N: u64 = 2_000_000;
    let mut v: Vec<f64> = (0..7)
        .map(|_| run(a, threads, N).as_nanos() as f64 / N as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    v[3]
}

fn ratios(phase: &str, out: &mut Vec<String>) {
    for threads in [1usize, 2] {
        // Interleave to share any drift of the machine between both.
        let mut sys = Vec::new();
        let mut hs = Vec::new();
        for _ in 0..3 {
            sys.push(median_ns(&System, threads));
            hs.push(median_ns(&ALLOC, threads));
        }
        let (s, h) = (sys.iter().sum::<f64>() / 3.0, hs.iter().sum::<f64>() / 3.0);
        out.push(format!(
            "| {phase:<12} | {threads} | {s:>6.2} ns | {h:>6.2} ns | {:>5.2}x |",
            h / s
        ));
    }
}

fn span_pairs(c: &mut Criterion, out: &mut Vec<String>) {
    let with = tracing::Dispatch::new(tracing_subscriber::registry().with(heapspan::layer()));
    let without = tracing::Dispatch::new(
        tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new()),
    );
    let mut g = c.benchmark_group("span_enter_exit");
    let mut measure = |name: &str, d: &tracing::Dispatch| {
        tracing::dispatcher::with_default(d, || {
            let span = tracing::info_span!("bench");
            g.bench_function(name, |b| b.iter(|| drop(black_box(span.enter()))));
            const N: u32 = 2_000_000;
            let t = Instant::now();
            for _ in 0..N {
                drop(black_box(span.enter()));
            }
            t.elapsed().as_nanos() as f64 / f64::from(N)
        })
    };
    let a = measure("registry", &without);
    let b = measure("registry+heapspan", &with);
    g.finish();
    out.push(format!(
        "span enter+exit: {a:.1} ns without heapspan's layer, {b:.1} ns with it (+{:.1} ns per pair)",
        b - a
    ));
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Resident memory per live 64-byte allocation, system vs heapspan.
fn bookkeeping(out: &mut Vec<String>) {
    const N: usize = 1_000_000;
    let per = |a: &dyn Fn() -> *mut u8, free: &dyn Fn(*mut u8)| {
        let mut ptrs = Vec::with_capacity(N);
        let before = rss_bytes();
        for _ in 0..N {
            let p = a();
            // SAFETY: 64 writable bytes.
            unsafe { p.write_bytes(1, 64) };
            ptrs.push(p);
        }
        let after = rss_bytes();
        for p in ptrs {
            free(p);
        }
        (after - before) as f64 / N as f64
    };
    fn sys_alloc() -> *mut u8 {
        // SAFETY: a non-zero layout; freed once by `sys_free` with the same layout.
        unsafe { System.alloc(LAYOUT) }
    }
    fn sys_free(p: *mut u8) {
        // SAFETY: `p` came from `sys_alloc` with this layout.
        unsafe { System.dealloc(p, LAYOUT) }
    }
    fn hs_alloc() -> *mut u8 {
        // SAFETY: a non-zero layout; freed once by `hs_free` with the same layout.
        unsafe { ALLOC.alloc(LAYOUT) }
    }
    fn hs_free(p: *mut u8) {
        // SAFETY: `p` came from `hs_alloc` with this layout.
        unsafe { ALLOC.dealloc(p, LAYOUT) }
    }
    let sys = per(&sys_alloc, &sys_free);
    let hs = per(&hs_alloc, &hs_free);
    out.push(format!(
        "resident bytes per live 64-byte allocation: system {sys:.1} B, heapspan {hs:.1} B (+{:.1} B; the header is {} B)",
        hs - sys,
        heapspan::alloc::HEADER_BYTES
    ));
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick-ratios");
    // Stand-in for the aggregator thread while heapspan is not started.
    let stand_in = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(3600)));
    let mut table = vec![
        "| mode         | threads | system | heapspan | ratio |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    let mut notes = Vec::new();
    bench_pairs(&mut c, "pass-through");
    if !quick {
        ratios("pass-through", &mut table);
    }
    let guard = heapspan::builder().start().expect("heapspan starts");
    stand_in.thread().unpark();
    stand_in.join().ok();
    bench_pairs(&mut c, "started");
    if !quick {
        ratios("started", &mut table);
        span_pairs(&mut c, &mut notes);
        bookkeeping(&mut notes);
        println!("\n{}\n\n{}", table.join("\n"), notes.join("\n"));
    } else {
        span_pairs(&mut c, &mut notes);
    }
    let snap = guard.snapshot();
    assert_eq!(
        snap.dropped.total(),
        0,
        "nothing dropped while benchmarking"
    );
    c.final_summary();
}
