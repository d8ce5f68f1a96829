//! `task.suspended_retention`: named tasks that keep memory across a long `.await`.
//!
//! - `sleeper` holds 2 MiB while it waits on a channel nobody sends to until the end: low.
//! - `big_sleeper` holds 6 MiB the same way, above `high_bytes` (4 MiB here): one severity up,
//!   medium.
//! - `busy` holds 2 MiB too but wakes every 5 ms (not suspended), and `light` waits holding
//!   256 KiB (below `suspended_min_bytes`, 1 MiB): neither is found.
//!
//! `suspended_after` is 500 ms instead of 30 s, so the test waits one second. The finding's
//! bytes come from the relation graph (the live index is on): the ownership closure of the
//! task's allocations; its holder is the allocation that keeps the most of it.

mod common;

use std::time::Duration;

use heapspan::findings::{EvidenceValue, Finding, FindingsConfig, Holder, Kind, Severity};
use tokio::sync::oneshot;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const MIB: usize = 1 << 20;
const SUSPENDED_AFTER: Duration = Duration::from_millis(500);

fn buffer(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

use common::evidence;

/// Held bytes: the planted buffer is exact, and the closure of the task's allocations adds
/// what else the task allocated and keeps (here nothing but what a worker thread's first poll
/// of it may initialise): 1 % above the planted buffer at most, never below it.
#[track_caller]
fn assert_holds(f: &Finding, planted: usize) {
    let planted = planted as u64;
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
    assert_eq!(f.roots.len(), 1);
    assert!(f.from_graph);
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_IDLE_BASIS),
        &EvidenceValue::Text("poll".to_owned()),
        "idle measured from the wrapper's polls"
    );
    match evidence(f, heapspan::export::names::FINDING_IDLE_SECONDS) {
        EvidenceValue::Float(s) => assert!(*s >= SUSPENDED_AFTER.as_secs_f64(), "idle {s} s"),
        v => panic!("idle seconds: {v:?}"),
    }
}

/// A task that allocates `len` bytes, says so, and waits until told to stop.
fn holder(
    name: &'static str,
    len: usize,
    ready: oneshot::Sender<()>,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<usize> {
    heapspan::spawn(name, async move {
        let held = buffer(len, name.len() as u8);
        ready.send(()).unwrap();
        let _ = stop.await;
        held.len()
    })
}

#[test]
fn memory_held_across_a_long_await_is_found() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default()
            .live_index(heapspan::IndexMode::Full)
            .findings(
                FindingsConfig::default()
                    .suspended_after(SUSPENDED_AFTER)
                    .high_bytes(4 << 20),
            ),
    );
    let rt = common::runtime(2);

    let (stops, handles) = rt.block_on(async {
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        let mut readies = Vec::new();
        for (name, len) in [
            ("sleeper", 2 * MIB),
            ("big_sleeper", 6 * MIB),
            ("light", 256 << 10),
        ] {
            let (ready_tx, ready) = oneshot::channel();
            let (stop, stop_rx) = oneshot::channel();
            handles.push((name, len, holder(name, len, ready_tx, stop_rx)));
            stops.push(stop);
            readies.push(ready);
        }
        let (ready_tx, ready) = oneshot::channel();
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        handles.push((
            "busy",
            2 * MIB,
            heapspan::spawn("busy", async move {
                let held = buffer(2 * MIB, 7);
                ready_tx.send(()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                }
                held.len()
            }),
        ));
        stops.push(stop);
        readies.push(ready);
        for r in readies {
            r.await.unwrap();
        }
        (stops, handles)
    });
    guard.cut_window();
    // Twice the idle threshold, with no poll of the waiting tasks meanwhile.
    std::thread::sleep(2 * SUSPENDED_AFTER);
    let findings = guard.cut_window();
    let of = |name: &str| -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.kind == Kind::SuspendedRetention && f.task_name.as_deref() == Some(name))
            .collect()
    };

    let sleeper = of("sleeper");
    assert_eq!(sleeper.len(), 1, "{findings:#?}");
    assert_eq!(sleeper[0].severity, Severity::Low);
    assert!(sleeper[0].score >= 0.5, "reported");
    assert_holds(sleeper[0], 2 * MIB);

    let big = of("big_sleeper");
    assert_eq!(big.len(), 1, "{findings:#?}");
    assert_eq!(big[0].severity, Severity::Medium, "above high_bytes");
    assert_holds(big[0], 6 * MIB);

    assert!(of("busy").is_empty(), "polled every 5 ms");
    assert!(of("light").is_empty(), "below suspended_min_bytes");
    assert!(
        !findings.iter().any(|f| f.kind == Kind::TaskStalled),
        "not stalled: stalled_after is still 60 s"
    );

    rt.block_on(async {
        for s in stops {
            s.send(()).unwrap();
        }
        for (name, len, h) in handles {
            assert_eq!(h.await.unwrap(), len, "{name}");
        }
    });
}
