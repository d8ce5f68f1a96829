//! `task.stalled`: named tasks that are never polled again while they hold memory.
//!
//! - `stuck` holds 512 KiB and awaits a future that never wakes it: low.
//! - `wedged` holds 6 MiB the same way, above `high_bytes` (4 MiB here): high.
//! - `ticker` holds 512 KiB too but wakes every 5 ms, and `idle_listener` never wakes but holds
//!   only 16 KiB (below `stalled_min_bytes`, 64 KiB): neither is found.
//!
//! `stalled_after` and `stalled_min_age` are 400 ms instead of 60 s, so the test waits a
//! second. The live index is on: the held bytes are the ownership closure of the task's
//! allocations, the holder the allocation that keeps the most of it.

mod common;

use std::time::Duration;

use heapspan::findings::{EvidenceValue, Finding, FindingsConfig, Holder, Kind, Severity};
use tokio::sync::oneshot;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const KIB: usize = 1 << 10;
const STALLED_AFTER: Duration = Duration::from_millis(400);

fn buffer(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect()
}

use common::evidence;

/// A task that allocates `len` bytes, says so, and is never woken again.
fn stall(name: &'static str, len: usize, ready: oneshot::Sender<()>) {
    heapspan::spawn(name, async move {
        let held = buffer(len, name.len() as u8);
        ready.send(()).unwrap();
        std::future::pending::<()>().await;
        drop(held);
    });
}

/// Held bytes: the planted buffer is exact; the closure of the task's allocations adds what
/// else it keeps (at most what a worker thread's first poll of it initialises): 1 % above the
/// buffer at most, never below.
#[track_caller]
fn assert_stalled(f: &Finding, planted: usize, severity: Severity) {
    let planted = planted as u64;
    assert_eq!(f.severity, severity, "{}", f.summary);
    assert!(f.score >= 0.5, "reported: {}", f.score);
    assert!(
        f.bytes >= planted && f.bytes <= planted + planted / 100,
        "{}: {} B, planted {planted} B (+1 % at most): {}",
        f.task_name.as_deref().unwrap_or("?"),
        f.bytes,
        f.summary
    );
    match &f.holder {
        Some(Holder::Allocation { bytes, .. }) => assert!(
            *bytes >= planted && *bytes <= f.bytes,
            "the holder is the planted buffer: {bytes} B"
        ),
        h => panic!("holder: {h:?}"),
    }
    assert!(f.from_graph);
    assert_eq!(f.tasks.len(), 1);
    assert!(f
        .location
        .as_ref()
        .is_some_and(|l| l.file.ends_with("findings_task_stalled.rs")));
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_IDLE_BASIS),
        &EvidenceValue::Text("poll".to_owned())
    );
    for key in [
        heapspan::export::names::FINDING_IDLE_SECONDS,
        heapspan::export::names::FINDING_AGE_SECONDS,
    ] {
        match evidence(f, key) {
            EvidenceValue::Float(s) => assert!(*s >= STALLED_AFTER.as_secs_f64(), "{key}: {s}"),
            v => panic!("{key}: {v:?}"),
        }
    }
}

#[test]
fn a_task_never_polled_again_while_holding_memory_is_stalled() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default()
            .live_index(heapspan::IndexMode::Full)
            .findings(
                FindingsConfig::default()
                    .stalled_after(STALLED_AFTER)
                    .stalled_min_age(STALLED_AFTER)
                    .high_bytes(4 << 20),
            ),
    );
    let rt = common::runtime(2);

    let (stop_ticker, ticker) = rt.block_on(async {
        let mut readies = Vec::new();
        for (name, len) in [
            ("stuck", 512 * KIB),
            ("wedged", 6 * KIB * KIB),
            ("idle_listener", 16 * KIB),
        ] {
            let (tx, rx) = oneshot::channel();
            stall(name, len, tx);
            readies.push(rx);
        }
        let (ready_tx, ready) = oneshot::channel();
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let ticker = heapspan::spawn("ticker", async move {
            let held = buffer(512 * KIB, 3);
            ready_tx.send(()).unwrap();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            held.len()
        });
        readies.push(ready);
        for r in readies {
            r.await.unwrap();
        }
        (stop, ticker)
    });
    guard.cut_window();
    // More than `stalled_after` (and `stalled_min_age`) with no poll of the stalled tasks.
    std::thread::sleep(STALLED_AFTER * 5 / 2);
    let findings = guard.cut_window();
    let of = |name: &str| -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.kind == Kind::TaskStalled && f.task_name.as_deref() == Some(name))
            .collect()
    };
    let stuck = of("stuck");
    assert_eq!(stuck.len(), 1, "{findings:#?}");
    assert_stalled(stuck[0], 512 * KIB, Severity::Low);
    let wedged = of("wedged");
    assert_eq!(wedged.len(), 1, "{findings:#?}");
    assert_stalled(wedged[0], 6 * KIB * KIB, Severity::High);
    assert!(of("ticker").is_empty(), "polled every 5 ms");
    assert!(of("idle_listener").is_empty(), "below stalled_min_bytes");
    // A stall is not also reported as a suspended retention.
    assert!(
        !findings.iter().any(|f| f.kind == Kind::SuspendedRetention),
        "{findings:#?}"
    );

    rt.block_on(async {
        stop_ticker.send(()).unwrap();
        assert_eq!(ticker.await.unwrap(), 512 * KIB);
    });
    // The stalled tasks are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(5));
}
