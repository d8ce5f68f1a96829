//! Resident memory at start: heapspan started with no load adds at most 4 MiB of resident
//! memory over pass-through (the allocator installed, heapspan never started). Measured as
//! `VmRSS` in child processes, this test binary run again with `HEAPSPAN_LOAD_RSS_MODE` set:
//! `pass-through` or `started`. Each child reads its `VmRSS` once `start()` has returned (for
//! pass-through, at the same point of the same code path) and prints it; the parent compares
//! the medians of three children of each mode, run alternately. Linux only.

#![cfg(target_os = "linux")]

mod load;

use std::process::Command;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const MODE_VAR: &str = "HEAPSPAN_LOAD_RSS_MODE";
const TEST_NAME: &str = "started_heapspan_adds_at_most_4_mib_of_resident_memory";
const BOUND: u64 = 4 << 20;
const ROUNDS: usize = 3;

/// The child's part: start heapspan (or not) and print the resident set size.
fn child(mode: &str) {
    let guard = match mode {
        "pass-through" => None,
        "started" => Some(heapspan::builder().start().expect("heapspan starts")),
        other => panic!("unknown {MODE_VAR} {other:?}"),
    };
    let rss = load::vm_rss_bytes();
    println!("HEAPSPAN_LOAD_RSS={rss}");
    drop(guard);
}

fn measure(mode: &str) -> u64 {
    let exe = std::env::current_exe().expect("this test binary");
    let out = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(MODE_VAR, mode)
        // The child's heapspan starts with its defaults, whatever the parent's environment.
        .env_remove("HEAPSPAN_FOLD_INTERVAL_MS")
        .env_remove("HEAPSPAN_MAX_THREADS")
        .env_remove("HEAPSPAN_LIVE_INDEX")
        .env_remove("HEAPSPAN_CAPTURE_SITES")
        .env_remove("HEAPSPAN_OTLP_FILE")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child ({mode}) failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split("HEAPSPAN_LOAD_RSS=").nth(1))
        .unwrap_or_else(|| panic!("child ({mode}) printed no RSS: {stdout}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .expect("a number of bytes")
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn started_heapspan_adds_at_most_4_mib_of_resident_memory() {
    if let Ok(mode) = std::env::var(MODE_VAR) {
        return child(&mode);
    }
    let (mut pass, mut started) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        pass.push(measure("pass-through"));
        started.push(measure("started"));
    }
    let (p, s) = (median(pass.clone()), median(started.clone()));
    let kib = |b: u64| b / 1024;
    eprintln!(
        "VmRSS KiB: pass-through {:?} (median {}), started {:?} (median {}); started adds {} KiB \
         (bound {} KiB)",
        pass.iter().map(|&b| kib(b)).collect::<Vec<_>>(),
        kib(p),
        started.iter().map(|&b| kib(b)).collect::<Vec<_>>(),
        kib(s),
        kib(s.saturating_sub(p)),
        kib(BOUND)
    );
    assert!(
        s <= p + BOUND,
        "started adds at most 4 MiB of resident memory over pass-through: {} KiB over {} KiB",
        kib(s.saturating_sub(p)),
        kib(p)
    );
}
