//! `task.memory_growth`: a long-running task named `hoarder` keeps one more 64 KiB chunk every
//! window (in a `Vec` it owns), 12 windows cut by the test. The finding names the task, its
//! live bytes, the growth over the K windows, and the allocation that holds it all (the
//! chunks' `Vec`), from the first window its series can be judged on (warm-up + K + 1).
//!
//! A `batcher` task fills a buffer and drains it every other window (a saw-tooth), and a
//! `steady` task holds the same 256 KiB throughout: neither is growth.

mod common;

use heapspan::findings::{EvidenceValue, Finding, Holder, Kind, Severity};
use tokio::sync::mpsc;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const WINDOWS: usize = 12;
const CHUNK: usize = 64 << 10;
const K: usize = heapspan::findings::DEFAULT_GROWTH_WINDOWS;
const FIRST_FINDING_WINDOW: usize = heapspan::findings::DEFAULT_WARMUP_WINDOWS + K + 1;

fn chunk(seed: usize) -> Vec<u8> {
    (0..CHUNK).map(|i| (i * 7 + seed) as u8).collect()
}

fn growth_bytes(f: &Finding) -> i64 {
    f.evidence
        .iter()
        .find_map(|(k, v)| match v {
            EvidenceValue::Int(b) if *k == heapspan::export::names::FINDING_GROWTH_BYTES => {
                Some(*b)
            }
            _ => None,
        })
        .expect("a growth figure")
}

#[test]
fn a_task_that_keeps_growing_is_found() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
    );
    let rt = common::runtime(2);

    // Each task gets a message per window and answers once it has done its window's work.
    let (hoard_tx, mut hoard_rx) = mpsc::channel::<usize>(1);
    let (batch_tx, mut batch_rx) = mpsc::channel::<usize>(1);
    let (steady_tx, mut steady_rx) = mpsc::channel::<usize>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<&'static str>(3);
    let (hoarder, batcher, steady) = rt.block_on(async {
        let done = done_tx.clone();
        let hoarder = heapspan::spawn("hoarder", async move {
            let mut kept: Vec<Vec<u8>> = Vec::with_capacity(WINDOWS);
            while let Some(w) = hoard_rx.recv().await {
                kept.push(chunk(w));
                done.send("hoarder").await.unwrap();
            }
            kept.len()
        });
        let done = done_tx.clone();
        let batcher = heapspan::spawn("batcher", async move {
            let mut batch: Vec<Vec<u8>> = Vec::new();
            while let Some(w) = batch_rx.recv().await {
                if w % 2 == 0 {
                    // Drained with its storage: a `clear` would keep the chunks' stale
                    // (pointer, capacity, length) in a live block, and the allocator hands
                    // their addresses to the hoarder's next chunks; the graph would take those
                    // words for a second owner of them (a word is evidence, not proof).
                    batch = Vec::new();
                } else {
                    batch.push(chunk(w));
                    batch.push(chunk(w + 1));
                }
                done.send("batcher").await.unwrap();
            }
        });
        let done = done_tx;
        let steady = heapspan::spawn("steady", async move {
            let held = chunk(0).repeat(4);
            while steady_rx.recv().await.is_some() {
                done.send("steady").await.unwrap();
            }
            held.len()
        });
        (hoarder, batcher, steady)
    });

    let mut found: Vec<(usize, Finding)> = Vec::new();
    for w in 1..=WINDOWS {
        rt.block_on(async {
            hoard_tx.send(w).await.unwrap();
            batch_tx.send(w).await.unwrap();
            steady_tx.send(w).await.unwrap();
            for _ in 0..3 {
                done_rx.recv().await.unwrap();
            }
        });
        let findings = guard.cut_window();
        for name in ["batcher", "steady"] {
            assert!(
                !findings
                    .iter()
                    .any(|f| f.kind == Kind::TaskMemoryGrowth
                        && f.task_name.as_deref() == Some(name)),
                "window {w}: {name} does not grow"
            );
        }
        let growth: Vec<Finding> = findings
            .into_iter()
            .filter(|f| {
                f.kind == Kind::TaskMemoryGrowth && f.task_name.as_deref() == Some("hoarder")
            })
            .collect();
        assert!(growth.len() <= 1, "one finding per task");
        if w < FIRST_FINDING_WINDOW {
            assert!(
                growth.is_empty(),
                "window {w}: found before warm-up and K windows: {growth:?}"
            );
        } else {
            let f = growth
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("window {w}: no growth finding for hoarder"));
            found.push((w, f));
        }
    }
    assert_eq!(found.len(), WINDOWS + 1 - FIRST_FINDING_WINDOW);
    let snap = guard.snapshot();
    let hoarder_key = snap
        .tasks
        .iter()
        .find(|t| t.name.as_deref() == Some("hoarder"))
        .expect("the hoarder")
        .key;
    for (w, f) in &found {
        // The task's live bytes: its `w` chunks and their `Vec` (12 pointers' worth of
        // header, 288 B). Tolerance 1 %: whatever else a worker thread's first poll of the task
        // leaves attributed to it (lazily initialised thread-locals).
        let held = (w * CHUNK) as u64;
        assert!(
            f.bytes >= held && f.bytes <= held + held / 100,
            "window {w}: {} B, planted {held} B (+1 % at most): {}",
            f.bytes,
            f.summary
        );
        assert_eq!(f.severity, Severity::Medium, "{}", f.summary);
        assert!(f.score >= 0.5);
        assert_eq!(f.tasks, vec![hoarder_key]);
        assert!(
            f.location
                .as_ref()
                .is_some_and(|l| l.file.ends_with("findings_task_memory_growth.rs")),
            "the spawn location: {:?}",
            f.location
        );
        // Growth over the K windows: exactly K chunks (1 % as above).
        let grown = (K * CHUNK) as i64;
        let g = growth_bytes(f);
        assert!(
            g >= grown && g <= grown + grown / 100,
            "window {w}: grew {g} B, planted {grown} B"
        );
        // The holder: the `Vec` of chunks, which keeps every chunk alive.
        match &f.holder {
            Some(Holder::Allocation { bytes, .. }) => assert!(
                std::env::var("DEBUG_NODES").is_ok() || *bytes >= held && *bytes <= f.bytes,
                "window {w}: the chunks' Vec retains {bytes} B of {held} B"
            ),
            h => panic!("holder: {h:?}"),
        }
        assert_eq!(f.roots.len(), 1);
    }

    drop((hoard_tx, batch_tx, steady_tx));
    rt.block_on(async {
        assert_eq!(hoarder.await.unwrap(), WINDOWS);
        batcher.await.unwrap();
        assert_eq!(steady.await.unwrap(), 4 * CHUNK);
    });
}
