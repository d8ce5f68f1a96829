//! `alloc.cross_task_free`: bytes of a task name's blocks that another task (or no task)
//! freed, per window: a hand-off figure (info, diagnostic, below the reporting score), never a
//! problem by itself.
//!
//! What the detector does (src/findings/escapes.rs): per task name, its row of the window's
//! hand-off matrix (counted in the free path: `Snapshot::handoffs`); at least
//! `cross_task_min_bytes` (1 MiB) make the finding, with the row's cells as evidence.
//!
//! - `producer` allocates 8 buffers of 256 KiB (2 MiB), sends them to the long-lived
//!   `consumer` and ends (window 2); the consumer frees them in window 3: a 2 MiB finding
//!   there for `producer`.
//! - `quick` hands 2 MiB to `consumer` as well, freed in the window `quick` ended in: a 2 MiB
//!   finding in that window (the matrix sees a hand-off whenever it is freed, also while the
//!   allocating task still runs).
//! - `trickle` hands 64 KiB over, freed a window after it ended: below the threshold.
//! - 3 000 `worker` tasks in window 2 each free their own 1 KiB buffer: no hand-off at all,
//!   though more of them end in the window than heapspan keeps ended tasks (1 024): the frees
//!   of the forgotten ones are not taken for hand-offs. (They run before the producer, whose
//!   record must still be kept in window 3 for its hand-off to be counted.)

mod common;

use heapspan::findings::{Finding, Kind, Severity, Verdict};
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const BUFFERS: usize = 8;
const BUFFER: usize = 256 << 10;
const WORKERS: usize = 3000;

/// What the consumer is asked to do.
enum Msg {
    Keep(Vec<u8>),
    /// Frees what it keeps, then answers.
    FreeAll(oneshot::Sender<usize>),
}

fn buffer(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(3).wrapping_add(seed))
        .collect()
}

fn hand_over(
    name: &'static str,
    count: usize,
    len: usize,
    tx: mpsc::Sender<Msg>,
) -> tokio::task::JoinHandle<()> {
    heapspan::spawn(name, async move {
        for i in 0..count {
            tx.send(Msg::Keep(buffer(len, i as u8))).await.unwrap();
        }
    })
}

fn cross<'a>(findings: &'a [Finding], name: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.kind == Kind::CrossTaskFree && f.task_name.as_deref() == Some(name))
        .collect()
}

#[test]
fn frees_by_another_task_are_a_hand_off_figure() {
    let guard = common::start_with_manual_windows(heapspan::Builder::default());
    let rt = common::runtime(2);
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let consumer = {
        let _runtime = rt.enter();
        heapspan::spawn("consumer", async move {
            let mut kept = Vec::new();
            let mut freed = 0;
            while let Some(m) = rx.recv().await {
                match m {
                    Msg::Keep(b) => kept.push(b),
                    Msg::FreeAll(done) => {
                        let n = kept.iter().map(Vec::len).sum::<usize>();
                        kept = Vec::new();
                        freed += n;
                        done.send(n).unwrap();
                    }
                }
            }
            freed
        })
    };
    let free_all = |tx: &mpsc::Sender<Msg>| {
        rt.block_on(async {
            let (done, freed) = oneshot::channel();
            tx.send(Msg::FreeAll(done)).await.ok().unwrap();
            freed.await.unwrap()
        })
    };

    // Window 1: nothing yet (and no previous window to compare with).
    guard.cut_window();

    // Window 2: 3 000 workers come and go; `producer` and `trickle` hand their buffers over
    // and end; `quick` too, and the consumer frees its buffers (the only ones it holds yet) in
    // the same window: the window's hand-off.
    rt.block_on(async {
        let workers: Vec<_> = (0..WORKERS)
            .map(|i| {
                heapspan::spawn("worker", async move {
                    let own = buffer(1024, i as u8);
                    tokio::task::yield_now().await;
                    own.len()
                })
            })
            .collect();
        for w in workers {
            assert_eq!(w.await.unwrap(), 1024);
        }
    });
    rt.block_on(async { hand_over("quick", BUFFERS, BUFFER, tx.clone()).await })
        .unwrap();
    assert_eq!(free_all(&tx), BUFFERS * BUFFER);
    rt.block_on(async { hand_over("producer", BUFFERS, BUFFER, tx.clone()).await })
        .unwrap();
    rt.block_on(async { hand_over("trickle", 1, 64 << 10, tx.clone()).await })
        .unwrap();
    let second = guard.cut_window();
    let snap = guard.snapshot();
    let workers = snap.task_names.iter().find(|n| n.name == "worker").unwrap();
    assert_eq!(workers.ended, WORKERS as u64);
    assert!(
        snap.tasks
            .iter()
            .filter(|t| t.name.as_deref() == Some("worker"))
            .count()
            < WORKERS,
        "more workers ended than heapspan keeps"
    );
    let quick = cross(&second, "quick");
    assert_eq!(quick.len(), 1, "{second:#?}");
    let planted = (BUFFERS * BUFFER) as u64;
    assert!(
        quick[0].bytes >= planted && quick[0].bytes <= planted + planted / 100,
        "{} B, planted {planted} B",
        quick[0].bytes
    );
    assert!(
        cross(&second, "worker").is_empty() && cross(&second, "producer").is_empty(),
        "the workers freed their own; the producer's buffers are still held: {second:#?}"
    );
    assert!(
        snap.handoffs
            .cells
            .iter()
            .all(|c| c.allocated_by != "worker"),
        "{:?}",
        snap.handoffs
    );

    // Window 3: the consumer frees the producer's and the trickle's buffers.
    assert_eq!(free_all(&tx), BUFFERS * BUFFER + (64 << 10));
    let third = guard.cut_window();
    let producer = cross(&third, "producer");
    assert_eq!(producer.len(), 1, "{third:#?}");
    let f = producer[0];
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.verdict, Verdict::Diagnostic);
    assert!(
        f.score < 0.5,
        "a hand-off figure is never reported by itself: {}",
        f.score
    );
    assert_eq!(f.holder, None);
    assert_eq!(f.allocations, BUFFERS as u64, "the frees");
    assert_eq!(f.tasks.len(), 1, "the producer");
    assert!(
        f.location
            .as_ref()
            .is_some_and(|l| l.file.ends_with("findings_cross_task_free.rs")),
        "the producer's spawn location: {:?}",
        f.location
    );
    // Bytes: the 2 MiB the consumer freed, exactly (its other allocations, the channel's,
    // are freed by itself or not at all); 1 % for a worker thread's lazily initialised state
    // the producer may have allocated and another task freed.
    assert!(
        f.bytes >= planted && f.bytes <= planted + planted / 100,
        "{} B, planted {planted} B",
        f.bytes
    );
    assert!(cross(&third, "trickle").is_empty(), "below 1 MiB");
    assert!(
        cross(&third, "worker").is_empty(),
        "the workers freed their own"
    );
    assert!(
        cross(&third, "quick").is_empty(),
        "nothing of it freed this window"
    );
    assert!(
        !third.iter().any(
            |f| f.kind == Kind::EscapedAllocation && f.task_name.as_deref() == Some("producer")
        ),
        "handed off and freed: not escaped"
    );

    // Window 4: nothing more was freed.
    let fourth = guard.cut_window();
    assert!(!fourth.iter().any(|f| f.kind == Kind::CrossTaskFree));

    drop(tx);
    let freed = rt.block_on(consumer).unwrap();
    assert_eq!(freed, 2 * BUFFERS * BUFFER + (64 << 10));
}
