//! A spawn storm on the multi-thread runtime: what heapspan costs a program that spawns many
//! short tasks, and whether it still accounts for them exactly.
//!
//! The workload: a tokio runtime with 2 worker threads, where one task spawns `N` short tasks
//! (100,000; 10,000 in a debug build) and awaits them all. Each task makes about nine small
//! allocations (its task cell, a `format!` string, a `Vec<u64>` of 8 to 31 items, a
//! `HashMap<u64, String>` that grows once while it takes four clones of the string) and sends
//! the vector and one of the clones to a consumer task over a channel, which frees them: a
//! share of the blocks is freed by another task, usually on another thread. The time is that of
//! the whole storm, from the first spawn to the last join (the consumer's included).
//!
//! heapspan is the global allocator of the whole process and starts once per process, so each
//! configuration runs in a child process (this binary again, `HEAPSPAN_STORM_MODE` set), with
//! the same runtime shape:
//! - `system`: `System` as the global allocator (the baseline);
//! - `pass-through`: heapspan's allocator installed, not started;
//! - `unwrapped`: heapspan started, tasks spawned with `tokio::spawn`;
//! - `wrapped`: heapspan started, tasks spawned with `heapspan::spawn("storm", fut)`.
//!
//! Each child runs a warm-up storm of `N / 4` tasks, then the timed one. The configurations
//! alternate within rounds (11; 3 under `cargo test --benches`), the order rotating from round
//! to round; the figures are the median and the middle half of the per-round ratios. Started
//! children also print what the snapshot says of the storm: `dropped`, `is_exact()` and, when
//! wrapped, how many of the `N` tasks have their name (an `INEXACT` marker when anything is
//! missing). Two more kinds of children read their resident memory (`VmRSS`) right after
//! `heapspan::builder().start()`, and at the same point with heapspan not started.
//!
//! `cargo bench --bench spawn_storm` prints the table at the end; `cargo test --release --bench
//! spawn_storm` (or the binary run without `--bench`) is the short test mode. An `INEXACT`
//! result fails the run only with `HEAPSPAN_STORM_REQUIRE_EXACT` set (today heapspan loses
//! operations in this storm; its accounting core is being fixed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// The global allocator: `System` in the `system` child, heapspan's in every other process
/// (decided at the first allocation, from the environment, as in `benches/alloc.rs`).
struct Global;

#[global_allocator]
static GLOBAL: Global = Global;

/// 0: not decided yet, 1: `System`, 2: heapspan.
static GLOBAL_KIND: AtomicU8 = AtomicU8::new(0);

const MODE_VAR: &str = "HEAPSPAN_STORM_MODE";

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
    let v = unsafe { libc::getenv(c"HEAPSPAN_STORM_MODE".as_ptr()) };
    // SAFETY: a non-null `getenv` result is a NUL-terminated string of the environment.
    let system = !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) } == c"system";
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

/// Tasks in a timed storm.
const N: u64 = if cfg!(debug_assertions) {
    10_000
} else {
    100_000
};

/// The storm configurations, in the order of the table.
const MODES: [&str; 4] = ["system", "pass-through", "unwrapped", "wrapped"];

/// What a task hands over to the consumer, which frees it.
type Handoff = (Vec<u64>, Option<String>);

/// One short task: about nine small allocations (with its task cell), two of the blocks sent
/// to the consumer to free.
async fn short_task(i: u64, tx: UnboundedSender<Handoff>) -> u64 {
    let name = format!("storm-{i}");
    let items: Vec<u64> = (i..i + 8 + i % 24).collect();
    let mut map = HashMap::new();
    for k in 0..4 {
        map.insert(k, name.clone());
    }
    let handed = map.remove(&(i % 4));
    let kept = black_box(&map).values().map(String::len).sum::<usize>() + name.len();
    let _ = tx.send((items, handed));
    kept as u64
}

/// Spawns `n` short tasks (named `name` when `wrapped`) and a consumer, awaits them all, and
/// returns the time from the first spawn to the last join.
async fn storm(n: u64, wrapped: bool, name: &'static str) -> Duration {
    let start = Instant::now();
    let (tx, mut rx) = unbounded_channel::<Handoff>();
    let consumer = tokio::spawn(async move {
        let mut sum = 0;
        while let Some((items, s)) = rx.recv().await {
            sum += items.len() + s.map_or(0, |s| s.len());
        }
        sum as u64
    });
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        let task = short_task(i, tx.clone());
        handles.push(if wrapped {
            heapspan::spawn(name, task)
        } else {
            tokio::spawn(task)
        });
    }
    drop(tx);
    let mut sum = 0;
    for h in handles {
        sum += h.await.expect("a storm task panicked");
    }
    sum += consumer.await.expect("the consumer panicked");
    black_box(sum);
    start.elapsed()
}

/// A storm child: prints the storm's time and, when started, what the snapshot says of it.
fn storm_child(mode: &str) {
    let started = matches!(mode, "unwrapped" | "wrapped");
    let wrapped = mode == "wrapped";
    let guard = started.then(|| heapspan::builder().start().expect("heapspan starts"));
    assert_eq!(system_global(), mode == "system");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(rt.spawn(storm(N / 4, wrapped, "warmup")))
        .expect("warm-up storm");
    let took = rt
        .block_on(rt.spawn(storm(N, wrapped, "storm")))
        .expect("storm");
    println!("storm_ns {}", took.as_nanos());
    drop(rt);
    let Some(guard) = guard else { return };
    let snap = guard.snapshot();
    let named = snap.task_name("storm").map(|t| t.tasks);
    let inexact = snap.dropped.total() != 0 || !snap.is_exact() || (wrapped && named != Some(N));
    println!(
        "exactness {mode}: dropped.total()={} ({:?}) of {} allocations counted, is_exact()={} \
         named storm tasks={}{}",
        snap.dropped.total(),
        snap.dropped,
        snap.total.allocations,
        snap.is_exact(),
        match named {
            Some(t) => format!("{t} of {N}"),
            None if wrapped => format!("none of {N}"),
            None => "n/a (unwrapped)".to_owned(),
        },
        if inexact { "  <<< INEXACT" } else { "" },
    );
    println!("dropped_total {}", snap.dropped.total());
    println!("not_exact {}", u8::from(!snap.is_exact()));
    if wrapped {
        println!("named_tasks {}", named.unwrap_or(0));
    }
}

/// `VmRSS` of this process, KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// A memory child: `VmRSS` right after `heapspan::builder().start()` (`rss-started`), or at
/// the same point with heapspan's allocator installed but not started (`rss-pass-through`).
fn rss_child(mode: &str) {
    let guard = (mode == "rss-started").then(|| heapspan::builder().start().expect("starts"));
    println!("rss_kib {}", vm_rss_kib());
    drop(guard);
}

/// CPU seconds used by every process of the machine (`/proc/stat`) and by this one and its
/// waited-for children (`getrusage`): their difference over a run is what other processes took
/// from the cores the storm needs.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = f.iter().take(8).sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ours = [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
        .into_iter()
        .map(|who| {
            // SAFETY: `getrusage` writes a `rusage` into the zeroed value it is given.
            let ru = unsafe {
                let mut ru: libc::rusage = std::mem::zeroed();
                libc::getrusage(who, &mut ru);
                ru
            };
            let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
            t(ru.ru_utime) + t(ru.ru_stime)
        })
        .sum();
    (busy / hz, ours)
}

/// Runs this binary as a `mode` child and returns its stdout.
fn child(mode: &str) -> String {
    let exe = std::env::current_exe().expect("bench executable");
    let out = Command::new(exe)
        .env(MODE_VAR, mode)
        .output()
        .expect("child runs");
    assert!(out.status.success(), "{mode} child failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `key ` in a child's output.
fn figure(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` figure in: {text}"))
}

/// Median, first and third quartiles.
fn quartiles(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // Linear interpolation between the two nearest ranks.
    let q = |f: f64| {
        let x = (s.len() - 1) as f64 * f;
        let (i, j) = (x.floor() as usize, x.ceil() as usize);
        s[i] + (s[j] - s[i]) * (x - x.floor())
    };
    (q(0.5), q(0.25), q(0.75))
}

fn main() {
    // Test mode as criterion decides it: `cargo bench` passes `--bench`, `cargo test --benches`
    // passes nothing (so the `--test` check of `benches/alloc.rs` alone never fires there).
    let quick =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    if let Ok(mode) = std::env::var(MODE_VAR) {
        if mode.starts_with("rss-") {
            rss_child(&mode);
        } else {
            storm_child(&mode);
        }
        return;
    }
    let began = Instant::now();
    let cpu_before = cpu_seconds();
    let rounds = if quick { 3 } else { 11 };
    println!(
        "spawn storm: {N} tasks on 2 workers, {rounds} rounds of {} child processes",
        MODES.len()
    );

    // Resident memory at start.
    let (mut rss_pass, mut rss_started) = (Vec::new(), Vec::new());
    for _ in 0..if quick { 1 } else { 5 } {
        rss_pass.push(figure(&child("rss-pass-through"), "rss_kib"));
        rss_started.push(figure(&child("rss-started"), "rss_kib"));
    }

    // The storm rounds: every configuration once per round, the order rotating.
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut exactness = Vec::new();
    // Per started configuration: dropped.total(), !is_exact() and (wrapped) named tasks.
    let (mut dropped, mut not_exact, mut named) = (
        vec![Vec::new(); MODES.len()],
        vec![0; MODES.len()],
        Vec::new(),
    );
    for round in 0..rounds {
        for k in 0..MODES.len() {
            let m = (round + k) % MODES.len();
            let out = child(MODES[m]);
            ns[m].push(figure(&out, "storm_ns"));
            if out.contains("dropped_total") {
                dropped[m].push(figure(&out, "dropped_total"));
                not_exact[m] += figure(&out, "not_exact") as usize;
            }
            if MODES[m] == "wrapped" {
                named.push(figure(&out, "named_tasks"));
            }
            exactness.extend(
                out.lines()
                    .filter(|l| l.starts_with("exactness"))
                    .map(|l| format!("round {round}: {l}")),
            );
        }
        let ms: Vec<String> = (0..MODES.len())
            .map(|m| format!("{} {:.1} ms", MODES[m], ns[m][round] / 1e6))
            .collect();
        println!("round {round}: {}", ms.join(", "));
    }

    let ratio =
        |a: usize, b: usize| -> Vec<f64> { ns[a].iter().zip(&ns[b]).map(|(a, b)| a / b).collect() };
    let mut table = vec![
        format!(
            "| {:<38} | {:>9} | {:>11} | {:>9} | {:>11} | {:<6} |",
            "configuration", "storm", "per task", "ratio", "middle half", "target"
        ),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let rows: [(&str, usize, usize, &str); 5] = [
        ("System", 0, 0, ""),
        ("pass-through (installed, not started)", 1, 0, ""),
        ("started, unwrapped (tokio::spawn)", 2, 0, "<= 1.3x"),
        ("started, wrapped (heapspan::spawn)", 3, 0, ""),
        ("wrapped / unwrapped", 3, 2, "<= 1.1x"),
    ];
    for (label, a, b, target) in rows {
        let (med, lo, hi) = quartiles(&ratio(a, b));
        // A row over another configuration than System's has no storm time of its own.
        let (storm, per_task) = if b == 0 {
            let ms = quartiles(&ns[a]).0 / 1e6;
            (
                format!("{ms:.1} ms"),
                format!("{:.0} ns", ms * 1e6 / N as f64),
            )
        } else {
            (String::new(), String::new())
        };
        table.push(format!(
            "| {label:<38} | {storm:>9} | {per_task:>11} | {med:>8.2}x | {lo:.2}x-{hi:.2}x | {target:<6} |"
        ));
    }

    let (pass, _, _) = quartiles(&rss_pass);
    let (started, _, _) = quartiles(&rss_started);
    let rss = format!(
        "VmRSS at start: pass-through {:.1} MiB, right after heapspan::builder().start() {:.1} MiB: \
         +{:.2} MiB (median of {} children of each kind)",
        pass / 1024.0,
        started / 1024.0,
        (started - pass) / 1024.0,
        rss_pass.len()
    );

    let inexact = exactness.iter().any(|l| l.contains("INEXACT"));
    println!("\n{}\n\n{rss}\n", table.join("\n"));
    println!(
        "exactness after the timed storm (started children; counts since start: the warm-up's \
         {} tasks and the storm's {N}):",
        N / 4
    );
    for l in &exactness {
        println!("  {l}");
    }
    for m in 0..MODES.len() {
        if dropped[m].is_empty() {
            continue;
        }
        let (med, _, _) = quartiles(&dropped[m]);
        let (min, max) = (
            dropped[m].iter().copied().fold(f64::INFINITY, f64::min),
            dropped[m].iter().copied().fold(0.0, f64::max),
        );
        println!(
            "{}: dropped.total() median {med:.0} (min {min:.0}, max {max:.0}), is_exact() false \
             in {} of {rounds} children",
            MODES[m], not_exact[m]
        );
    }
    let full = named.iter().filter(|&&t| t == N as f64).count();
    println!("wrapped: all {N} storm tasks named in {full} of {rounds} children");
    if inexact {
        println!(
            "INEXACT: heapspan lost or could not attribute part of the storm (see the lines above)"
        );
        // Not a failure while the accounting core is being fixed, unless asked for.
        assert!(
            std::env::var_os("HEAPSPAN_STORM_REQUIRE_EXACT").is_none(),
            "INEXACT with HEAPSPAN_STORM_REQUIRE_EXACT set"
        );
    } else {
        println!("exact: nothing dropped, every wrapped task named");
    }
    let wall = began.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let others = ((cpu_after.0 - cpu_before.0) - (cpu_after.1 - cpu_before.1)).max(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "\n(ratios: each round's figure over System's, or wrapped's over unwrapped's, in the same \
         round; median and middle half of {rounds} rounds; {wall:.1} s in all)"
    );
    let share = others / (wall * cores);
    println!(
        "other processes used {others:.1} CPU-seconds during the run ({:.0}% of {cores} cores){}",
        share * 100.0,
        if share > 0.05 {
            "  <<< NOISY: the figures are not clean, run again on an idle machine"
        } else {
            ""
        }
    );
}
