//! Allocator overhead against the system allocator, measured in the same run with the same
//! threads alive (an idle thread stands in for heapspan's aggregator while the baseline and
//! the pass-through mode are measured, so glibc is in its multi-thread mode throughout).
//!
//! `cargo bench --bench alloc` prints criterion's figures and, at the end, a ratio table.
//! The live-index modes (`full`, `sampled`) run in child processes of the same binary, since
//! heapspan starts once per process; each child measures `System` again in its own run.

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

/// ns per pair of one timed run of `N` pairs per thread.
fn ns_per_pair(a: &(impl GlobalAlloc + Sync), threads: usize) -> f64 {
    const N: u64 = 1_000_000;
    run(a, threads, N).as_nanos() as f64 / N as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The ratio table: 21 rounds, each timing `System` and heapspan back to back (so that both
/// share whatever the machine is doing at that moment); the median of the per-round ratios.
fn ratios(phase: &str, out: &mut Vec<String>) {
    for threads in [1usize, 2] {
        let (mut sys, mut hs, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..21 {
            let (s, h) = if round % 2 == 0 {
                let s = ns_per_pair(&System, threads);
                (s, ns_per_pair(&ALLOC, threads))
            } else {
                let h = ns_per_pair(&ALLOC, threads);
                (ns_per_pair(&System, threads), h)
            };
            sys.push(s);
            hs.push(h);
            ratio.push(h / s);
        }
        let mut sorted = ratio.clone();
        sorted.sort_by(f64::total_cmp);
        out.push(format!(
            "| {phase:<12} | {threads} | {:>6.2} ns | {:>6.2} ns | {:>5.2}x | {:.2}x-{:.2}x |",
            median(sys),
            median(hs),
            median(ratio),
            sorted[5],
            sorted[15],
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

unsafe extern "C" {
    /// glibc: usable bytes of a block from `malloc` (the chunk is 8 bytes more).
    fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
}

/// Memory per live 64-byte allocation: the inner allocator's chunk, system vs heapspan.
fn bookkeeping(out: &mut Vec<String>) {
    // SAFETY: a non-zero layout; the pointer is measured and freed once with the same layout.
    let sys = unsafe {
        let p = System.alloc(LAYOUT);
        let n = malloc_usable_size(p.cast()) + 8;
        System.dealloc(p, LAYOUT);
        n
    };
    // SAFETY: as above; heapspan's block starts `HEADER_BYTES` below the pointer it returns
    // (alignment 8), which is what `malloc` returned.
    let hs = unsafe {
        let p = ALLOC.alloc(LAYOUT);
        let n = malloc_usable_size(p.sub(heapspan::alloc::HEADER_BYTES).cast()) + 8;
        ALLOC.dealloc(p, LAYOUT);
        n
    };
    out.push(format!(
        "memory per live 64-byte allocation (glibc chunk): system {sys} B, heapspan {hs} B \
         (+{} B: the {}-byte header; no other per-allocation state)",
        hs - sys,
        heapspan::alloc::HEADER_BYTES
    ));
}

/// Memory per live 64-byte indexed allocation: the chunk growth over `System` plus the index
/// entry.
fn indexed_bookkeeping(mode: &str, out: &mut Vec<String>) {
    // SAFETY: as in `bookkeeping`; an indexed block starts 32 bytes below its pointer.
    let (sys, hs) = unsafe {
        let p = System.alloc(LAYOUT);
        let sys = malloc_usable_size(p.cast()) + 8;
        System.dealloc(p, LAYOUT);
        let p = ALLOC.alloc(LAYOUT);
        let hs = malloc_usable_size(p.sub(32).cast()) + 8;
        ALLOC.dealloc(p, LAYOUT);
        (sys, hs)
    };
    out.push(format!(
        "{mode}: memory per live indexed 64-byte allocation: glibc chunk {sys} B -> {hs} B, \
         plus the 16-byte index entry: +{} B in all (32-byte header + 16-byte entry = 48 B \
         of bookkeeping; the chunk rounds to 16)",
        hs - sys + 16
    ));
}

/// The live-index modes run in child processes (heapspan starts once per process): this
/// binary again, with `HEAPSPAN_BENCH_MODE` set; their table rows and notes are collected.
fn run_child(mode: &str, quick: bool, table: &mut Vec<String>, notes: &mut Vec<String>) {
    let exe = std::env::current_exe().expect("bench executable");
    let mut cmd = std::process::Command::new(exe);
    cmd.env("HEAPSPAN_BENCH_MODE", mode)
        .env("HEAPSPAN_BENCH_RATIOS_ONLY", "1");
    if quick {
        cmd.arg("--test");
    }
    let out = cmd.output().expect("child bench runs");
    assert!(out.status.success(), "{mode} child failed: {out:?}");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with("| ") {
            table.push(line.to_owned());
        } else if line.starts_with(mode) {
            notes.push(line.to_owned());
        }
    }
}

/// A child: heapspan started with the live index in `mode`, then the ratio rows.
fn child(mode: &str, quick: bool) {
    let index = match mode {
        "full" | "sites" => heapspan::IndexMode::Full,
        "sampled" => heapspan::IndexMode::Sampled {
            mean_bytes: heapspan::DEFAULT_SAMPLE_MEAN_BYTES,
        },
        other => panic!("HEAPSPAN_BENCH_MODE={other}: expected full or sampled"),
    };
    let guard = heapspan::builder()
        .live_index(index)
        .capture_sites(mode == "sites")
        .start()
        .expect("heapspan starts");
    if mode == "sites" {
        // The cost of a code location: full mode with and without sites differ by one stack
        // walk per allocation.
        let n = if quick { 1_000 } else { 100_000 };
        let t = std::time::Instant::now();
        for _ in 0..n {
            pair(&ALLOC);
        }
        let with = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!(
            "sites: an indexed 64-byte alloc+free pair with its code location captured: {with:.0} ns \
             (a stack walk of up to {} frames per indexed allocation)",
            heapspan::alloc::sites::FRAMES
        );
        return;
    }
    if quick {
        // `cargo test --benches`: the indexed paths work and a graph can be taken.
        for _ in 0..10_000 {
            pair(&ALLOC);
        }
        let _ = guard.graph().expect("the live index is on");
    } else {
        let mut rows = Vec::new();
        ratios(mode, &mut rows);
        let mut notes = Vec::new();
        if mode == "full" {
            indexed_bookkeeping(mode, &mut notes);
        } else {
            notes.push(format!(
                "{mode}: sampled allocations are indexed like in full mode (48 B of \
                 bookkeeping each); the others carry the 16-byte header only"
            ));
        }
        println!("{}\n{}", rows.join("\n"), notes.join("\n"));
    }
    assert_eq!(guard.snapshot().dropped.total(), 0);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let quick = std::env::args().any(|a| a == "--test");
    if let Ok(mode) = std::env::var("HEAPSPAN_BENCH_MODE") {
        child(&mode, quick);
        return;
    }
    // `HEAPSPAN_BENCH_RATIOS_ONLY=1`: skip criterion's groups, print only the ratio table.
    let ratios_only = std::env::var_os("HEAPSPAN_BENCH_RATIOS_ONLY").is_some();
    // Stand-in for the aggregator thread while heapspan is not started.
    let stand_in = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(3600)));
    let mut table = vec![
        "| mode         | threads | system | heapspan | ratio (median) | middle half |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let mut notes = Vec::new();
    if !ratios_only {
        bench_pairs(&mut c, "pass-through");
    }
    if !quick {
        ratios("pass-through", &mut table);
    }
    let guard = heapspan::builder().start().expect("heapspan starts");
    stand_in.thread().unpark();
    stand_in.join().ok();
    if !ratios_only {
        bench_pairs(&mut c, "started");
    }
    if !quick {
        ratios("started", &mut table);
        span_pairs(&mut c, &mut notes);
        bookkeeping(&mut notes);
    } else {
        span_pairs(&mut c, &mut notes);
    }
    let snap = guard.snapshot();
    assert_eq!(
        snap.dropped.total(),
        0,
        "nothing dropped while benchmarking"
    );
    // This process's heapspan threads stop before the children measure (2 cores: its
    // aggregator would share them with the child's loops).
    drop(guard);
    for mode in ["full", "sampled", "sites"] {
        run_child(mode, quick, &mut table, &mut notes);
    }
    if !quick {
        println!("\n{}\n\n{}", table.join("\n"), notes.join("\n"));
    }
    c.final_summary();
}
