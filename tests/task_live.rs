//! A task that allocates a known amount and keeps it shows that much live; when it frees it,
//! live returns to its baseline.

mod common;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::sync::mpsc;

#[test]
fn a_kept_allocation_is_live_until_freed() {
    common::start();
    let rt = common::runtime(2);
    const N: usize = 1_000_003;
    // Channels made outside the task, so the task's own allocations are only the buffer.
    let (held_tx, held_rx) = mpsc::sync_channel::<()>(1);
    let (free_tx, free_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
    let handle = rt.spawn(heapspan::instrument("holder", async move {
        let buf = vec![1u8; N];
        held_tx.send(()).unwrap();
        free_rx.await.unwrap();
        drop(std::hint::black_box(buf));
        done_tx.send(()).unwrap();
        std::future::pending::<()>().await;
    }));
    held_rx.recv().unwrap();
    let snap = common::snapshot();
    let t = snap.task_by_id(handle.id()).expect("task is in the table");
    assert_eq!(t.name.as_deref(), Some("holder"));
    assert_eq!(t.mem.live_bytes(), N as i64, "{t:?}");
    assert_eq!(t.mem.allocated_bytes, N as u64);
    assert_eq!(t.mem.allocations, 1);
    assert!(t.mem.peak_bytes >= N as u64);

    free_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    let snap = common::snapshot();
    let t = snap.task_by_id(handle.id()).unwrap();
    assert_eq!(t.mem.live_bytes(), 0, "{t:?}");
    assert_eq!(t.mem.freed_bytes, N as u64);
    assert_eq!(t.mem.peak_bytes, N as u64, "peak stays");
    assert!(t.ended.is_none());
    handle.abort();
    drop(rt);
    let snap = common::snapshot();
    let t = snap.task_by_id(handle.id()).unwrap();
    assert!(t.ended.is_some(), "the wrapper's drop marks the end");
    assert_eq!(snap.dropped.total(), 0);
}
