//! Allocator overhead against the system allocator, measured in the same run with the same
//! threads alive (an idle thread stands in for heapspan's aggregator while the baseline and
//! the pass-through mode are measured, so glibc is in its multi-thread mode throughout).
//!
//! `cargo bench --bench alloc` prints criterion's figures and, at the end, a ratio table.
//! The live-index modes (`full`, `sampled`) run in child processes of the same binary, since
//! heapspan starts once per process; each child measures `System` again in its own run.
//!
//! Two kinds of rows:
//! - **direct**: `GlobalAlloc::alloc` and `dealloc` called on the allocator value, inlined into
//!   the loop, `System` and heapspan alternating in one process;
//! - **box**: `drop(Box::new([1u8; 64]))` through the global allocator (`__rust_alloc`, as
//!   programs allocate), which is `System` in one child process and heapspan in another, the
//!   children alternating round by round.
//!
//! Two floors are measured with the direct rows, against `System` in the same rounds: the
//! cheapest wrapper that can charge a free to its allocator (a 16-byte header written and
//! read, nothing else), and one `tokio::task::try_id()` per allocation and nothing else (the
//! stable task-identity API itself).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tracing_subscriber::layer::SubscriberExt;

static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// The global allocator: heapspan's, or `System` in the `box-system` child, for the whole
/// process (decided at the first allocation, from the environment; both paths pay the same
/// predictable branch).
struct Global;

#[global_allocator]
static GLOBAL: Global = Global;

/// 0: not decided yet, 1: `System`, 2: heapspan.
static GLOBAL_KIND: AtomicU8 = AtomicU8::new(0);

#[inline(always)]
fn system_global() -> bool {
    match GLOBAL_KIND.load(Relaxed) {
        0 => decide_global(),
        k => k == 1,
    }
}

#[cold]
fn decide_global() -> bool {
    // SAFETY: a NUL-terminated name; glibc's `getenv` neither allocates nor keeps the pointer.
    let v = unsafe { libc::getenv(c"HEAPSPAN_BENCH_MODE".as_ptr()) };
    // SAFETY: a non-null `getenv` result is a NUL-terminated string of the environment.
    let system = !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) } == c"box-system";
    GLOBAL_KIND.store(if system { 1 } else { 2 }, Relaxed);
    system
}

// SAFETY: forwards every call, unchanged, to one of two allocators, always the same one for
// the whole process (decided before the first block is handed out).
unsafe impl GlobalAlloc for Global {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe {
            if system_global() {
                System.alloc(l)
            } else {
                ALLOC.alloc(l)
            }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe {
            if system_global() {
                System.alloc_zeroed(l)
            } else {
                ALLOC.alloc_zeroed(l)
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe {
            if system_global() {
                System.dealloc(p, l)
            } else {
                ALLOC.dealloc(p, l)
            }
        }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe {
            if system_global() {
                System.realloc(p, l, new)
            } else {
                ALLOC.realloc(p, l, new)
            }
        }
    }
}

/// Floor: a 16-byte header written on alloc and read on free, nothing else (only for
/// `LAYOUT`'s alignment of 8).
struct HeaderOnly;

// SAFETY: the block handed out is `p + 16` of a `System` block of `size + 16` bytes, aligned
// to 8 like `LAYOUT` asks; the free gives back exactly that block.
unsafe impl GlobalAlloc for HeaderOnly {
    #[inline(always)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: a non-zero layout of alignment 8; the header's two words are in the block.
        unsafe {
            let p = System.alloc(Layout::from_size_align_unchecked(l.size() + 16, 8));
            if p.is_null() {
                return p;
            }
            p.cast::<u64>().write(1);
            p.cast::<u64>().add(1).write(0);
            p.add(16)
        }
    }
    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe {
            // The one check a free must make: which kind of header the block has.
            if p.sub(8).cast::<u64>().read() >> 63 != 0 {
                std::process::abort();
            }
            System.dealloc(
                p.sub(16),
                Layout::from_size_align_unchecked(l.size() + 16, 8),
            );
        }
    }
}

/// Floor: one `tokio::task::try_id()` per allocation, nothing else.
struct TryIdOnly;

// SAFETY: forwards to `System` unchanged.
unsafe impl GlobalAlloc for TryIdOnly {
    #[inline(always)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        black_box(tokio::task::try_id());
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc(l) }
    }
    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { System.dealloc(p, l) }
    }
}

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
    ratios_of(phase, &ALLOC, &[1, 2], out);
}

/// [`ratios`] for any allocator `a` against `System`.
fn ratios_of(phase: &str, a: &(impl GlobalAlloc + Sync), threads: &[usize], out: &mut Vec<String>) {
    for &threads in threads {
        let (mut sys, mut hs, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..21 {
            let (s, h) = if round % 2 == 0 {
                let s = ns_per_pair(&System, threads);
                (s, ns_per_pair(a, threads))
            } else {
                let h = ns_per_pair(a, threads);
                (ns_per_pair(&System, threads), h)
            };
            sys.push(s);
            hs.push(h);
            ratio.push(h / s);
        }
        out.push(row(phase, threads, &sys, &hs, &ratio));
    }
}

/// A table row from per-round figures: medians, and the middle half of the ratios.
fn row(phase: &str, threads: usize, sys: &[f64], hs: &[f64], ratio: &[f64]) -> String {
    let mut sorted = ratio.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f) as usize];
    format!(
        "| {phase:<20} | {threads} | {:>6.2} ns | {:>6.2} ns | {:>5.2}x | {:.2}x-{:.2}x |",
        median(sys.to_vec()),
        median(hs.to_vec()),
        median(ratio.to_vec()),
        q(0.25),
        q(0.75),
    )
}

/// ns per `drop(Box::new([1u8; 64]))` through the global allocator: the median of 5 runs.
fn box_ns(quick: bool) -> f64 {
    let n: u32 = if quick { 10_000 } else { 1_000_000 };
    let runs = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                drop(black_box(Box::new([1u8; 64])));
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    median(runs)
}

/// A box child: its global allocator is `System` (`box-system`) or heapspan, not started
/// (`box-pass-through`) or started (`box-started`); prints ns per pair.
fn box_child(mode: &str, quick: bool) {
    // glibc in its multi-thread mode, as in the parent.
    let stand_in = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(3600)));
    let guard = (mode == "box-started").then(|| heapspan::builder().start().expect("starts"));
    assert_eq!(system_global(), mode == "box-system");
    println!("ns {}", box_ns(quick));
    drop(guard);
    stand_in.thread().unpark();
}

/// The box rows: rounds of three children (system, pass-through, started), ratios per round.
fn box_rows(quick: bool, table: &mut Vec<String>) {
    let exe = std::env::current_exe().expect("bench executable");
    let child_ns = |mode: &str| -> f64 {
        let mut cmd = std::process::Command::new(&exe);
        cmd.env("HEAPSPAN_BENCH_MODE", mode);
        if quick {
            cmd.arg("--test");
        }
        let out = cmd.output().expect("child bench runs");
        assert!(out.status.success(), "{mode} child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("ns ")?.parse().ok())
            .unwrap_or_else(|| panic!("{mode} child printed no figure: {text}"))
    };
    let rounds = if quick { 1 } else { 21 };
    let (mut sys, mut pass, mut started) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        sys.push(child_ns("box-system"));
        pass.push(child_ns("box-pass-through"));
        started.push(child_ns("box-started"));
    }
    let ratio = |h: &[f64]| -> Vec<f64> { h.iter().zip(&sys).map(|(h, s)| h / s).collect() };
    table.push(row("box pass-through", 1, &sys, &pass, &ratio(&pass)));
    table.push(row("box started", 1, &sys, &started, &ratio(&started)));
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
        if mode.starts_with("box-") {
            box_child(&mode, quick);
        } else {
            child(&mode, quick);
        }
        return;
    }
    // `HEAPSPAN_BENCH_RATIOS_ONLY=1`: skip criterion's groups, print only the ratio table.
    let ratios_only = std::env::var_os("HEAPSPAN_BENCH_RATIOS_ONLY").is_some();
    // Stand-in for the aggregator thread while heapspan is not started.
    let stand_in = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(3600)));
    let mut table = vec![
        "| mode                 | threads | system | heapspan | ratio (median) | middle half |"
            .to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let mut notes = Vec::new();
    if !ratios_only {
        bench_pairs(&mut c, "pass-through");
    }
    if !quick {
        ratios_of("floor: 16-byte header", &HeaderOnly, &[1], &mut table);
        ratios_of("floor: try_id", &TryIdOnly, &[1], &mut table);
        ratios("pass-through", &mut table);
    } else {
        // The floors work (`cargo test --benches`).
        pair(&HeaderOnly);
        pair(&TryIdOnly);
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
    box_rows(quick, &mut table);
    if !quick {
        println!("\n{}\n\n{}", table.join("\n"), notes.join("\n"));
    }
    c.final_summary();
}
