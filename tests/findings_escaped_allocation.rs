//! `task.escaped_allocation`: three named tasks end and leave memory behind, one per holder
//! class of the catalog, and each is found with its class, severity, holder and bytes.
//!
//! - `leaker` leaks a 256 KiB table (`Box::leak`) and a 128 KiB buffer (`mem::forget`):
//!   nothing on the heap points at them, so they are *unowned* (medium, holder nothing).
//! - `registrar` pushes 8 buffers of 32 KiB into a global registry (`static Mutex<Vec<..>>`)
//!   whose storage the program reserved at start-up, outside any task: a long-lived container
//!   keeps them, so they are *retained* (low, holder a container allocated outside any task).
//! - `producer` sends 8 buffers of 32 KiB through a channel to the running `sink` task, which
//!   keeps them in a `Vec` of its own: *transferred* (info, holder the running task `sink`).
//! - `mailer` sends 8 buffers of 32 KiB into a channel that the running `inbox` task made and
//!   has not read yet: the channel's block, `inbox`'s memory, holds them: *transferred* too
//!   (holder `inbox`). (A channel made outside any task, in `main`, would be a container no
//!   running task allocated, so *retained*: heapspan sees who allocated a block, and a task's
//!   future lives in a block its spawner allocated.)
//!
//! The live index is on (the holder comes from the relation graph), windows are cut by the
//! test, and the grace is the default one window: the memory of a task that ended in window
//! A counts as escaped at the end of window B, once it stayed through a whole window.

mod common;

use std::sync::Mutex;

use heapspan::findings::{Finding, Holder, Kind, Severity, Verdict};
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const LEAKED_TABLE: usize = 256 << 10;
const FORGOTTEN: usize = 128 << 10;
const BUFFERS: usize = 8;
const BUFFER: usize = 32 << 10;

/// The global registry `registrar` fills; its storage is reserved at start-up.
static REGISTRY: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer with contents that are neither zero nor uniform.
fn buffer(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Bytes tolerance: the planted blocks are exact, but an ended task's other survivors go to
/// the same class: a worker thread's lazily initialised thread-locals (tokio's context,
/// tracing's dispatcher state), which the first task polled on the thread allocates, a few
/// hundred bytes to a few KiB. 2 % of the planted bytes, never below them.
#[track_caller]
fn assert_bytes(f: &Finding, planted: usize) {
    let planted = planted as u64;
    assert!(
        f.bytes >= planted && f.bytes <= planted + planted / 50,
        "{}: {} B, planted {planted} B (+2 % at most): {}",
        f.kind,
        f.bytes,
        f.summary
    );
}

fn escaped<'a>(findings: &'a [Finding], task: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.kind == Kind::EscapedAllocation && f.task_name.as_deref() == Some(task))
        .collect()
}

fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} B {} holder {:?}: {}",
                f.severity,
                f.kind,
                f.bytes,
                f.place(),
                f.holder,
                f.summary
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn escaped_allocations_are_classified_by_their_holder() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
    );
    // The registry's storage, reserved at start-up outside any task.
    REGISTRY.lock().unwrap().reserve_exact(BUFFERS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (stop_sink, sink, stop_inbox, inbox) = rt.block_on(async {
        // The running task that takes the producer's buffers.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(BUFFERS);
        let (got_all_tx, got_all) = oneshot::channel::<()>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let sink = heapspan::spawn("sink", async move {
            let mut kept = Vec::with_capacity(BUFFERS);
            while kept.len() < BUFFERS {
                kept.push(rx.recv().await.expect("the producer sends them all"));
            }
            got_all_tx.send(()).unwrap();
            let _ = stop_rx.await;
            kept.iter().map(Vec::len).sum::<usize>()
        });

        // A running task that makes a channel, hands out its sender and reads nothing yet.
        let (sender_tx, sender) = oneshot::channel::<mpsc::Sender<Vec<u8>>>();
        let (stop_inbox_tx, stop_inbox_rx) = oneshot::channel::<()>();
        let inbox = heapspan::spawn("inbox", async move {
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(BUFFERS);
            sender_tx.send(tx).unwrap();
            let _ = stop_inbox_rx.await;
            let mut len = 0;
            while let Ok(b) = rx.try_recv() {
                len += b.len();
            }
            len
        });
        let to_inbox = sender.await.unwrap();

        let leaker = heapspan::spawn("leaker", async {
            let table: &'static mut [u8] = Box::leak(buffer(LEAKED_TABLE, 1).into_boxed_slice());
            let forgotten = buffer(FORGOTTEN, 2);
            let len = std::hint::black_box(table).len() + forgotten.len();
            std::mem::forget(forgotten);
            len
        });
        let registrar = heapspan::spawn("registrar", async {
            for i in 0..BUFFERS {
                let b = buffer(BUFFER, 3 + i as u8);
                REGISTRY.lock().unwrap().push(b);
                tokio::task::yield_now().await;
            }
        });
        let producer = heapspan::spawn("producer", async move {
            for i in 0..BUFFERS {
                tx.send(buffer(BUFFER, 50 + i as u8)).await.unwrap();
            }
        });
        let mailer = heapspan::spawn("mailer", async move {
            for i in 0..BUFFERS {
                to_inbox.send(buffer(BUFFER, 90 + i as u8)).await.unwrap();
            }
        });
        assert_eq!(leaker.await.unwrap(), LEAKED_TABLE + FORGOTTEN);
        mailer.await.unwrap();
        registrar.await.unwrap();
        producer.await.unwrap();
        got_all.await.unwrap();
        (stop_tx, sink, stop_inbox_tx, inbox)
    });
    assert_eq!(
        REGISTRY.lock().unwrap().capacity(),
        BUFFERS,
        "the registry's storage stayed the one reserved at start-up"
    );

    // Window A: the three tasks ended in it; nothing has outlived the grace yet.
    let a = guard.cut_window();
    for name in ["leaker", "registrar", "producer", "mailer"] {
        assert!(
            escaped(&a, name).is_empty(),
            "escaped before the grace window was over:\n{}",
            describe(&a)
        );
    }
    // Window B: their memory stayed live through a whole window.
    let b = guard.cut_window();
    let all = describe(&b);
    println!("window B findings:\n{all}");

    let leaker = escaped(&b, "leaker");
    assert_eq!(leaker.len(), 1, "one finding for the leaker:\n{all}");
    let f = leaker[0];
    assert_eq!(f.holder, Some(Holder::Nothing), "{all}");
    assert_eq!(f.holder.as_ref().unwrap().class(), "unowned");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.verdict, Verdict::Probable);
    assert!(f.from_graph);
    assert_bytes(f, LEAKED_TABLE + FORGOTTEN);
    assert!(f.allocations >= 2, "{all}");
    assert!(f.score >= 0.5, "an unowned escape is reported: {}", f.score);

    let registrar = escaped(&b, "registrar");
    assert_eq!(registrar.len(), 1, "one finding for the registrar:\n{all}");
    let f = registrar[0];
    assert_eq!(
        f.holder,
        Some(Holder::Container { allocated_by: None }),
        "{all}"
    );
    assert_eq!(f.holder.as_ref().unwrap().class(), "retained");
    assert_eq!(f.severity, Severity::Low);
    assert_bytes(f, BUFFERS * BUFFER);
    assert!(f.allocations >= BUFFERS as u64, "{all}");

    let producer = escaped(&b, "producer");
    assert_eq!(producer.len(), 1, "one finding for the producer:\n{all}");
    let f = producer[0];
    assert_eq!(f.holder, Some(Holder::Task("sink".to_owned())), "{all}");
    assert_eq!(f.holder.as_ref().unwrap().class(), "transferred");
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.verdict, Verdict::Diagnostic);
    assert_bytes(f, BUFFERS * BUFFER);
    assert!(f.score < 0.5, "a hand-off is a figure, not reported");

    let mailer = escaped(&b, "mailer");
    assert_eq!(mailer.len(), 1, "one finding for the mailer:\n{all}");
    let f = mailer[0];
    assert_eq!(f.holder, Some(Holder::Task("inbox".to_owned())), "{all}");
    assert_eq!(f.holder.as_ref().unwrap().class(), "transferred");
    assert_eq!(f.severity, Severity::Info);
    assert_bytes(f, BUFFERS * BUFFER);

    // The running tasks that hold the hand-offs have escaped nothing.
    assert!(escaped(&b, "sink").is_empty(), "{all}");
    assert!(escaped(&b, "inbox").is_empty(), "{all}");

    rt.block_on(async {
        stop_sink.send(()).unwrap();
        assert_eq!(sink.await.unwrap(), BUFFERS * BUFFER);
        stop_inbox.send(()).unwrap();
        assert_eq!(inbox.await.unwrap(), BUFFERS * BUFFER);
    });
}
