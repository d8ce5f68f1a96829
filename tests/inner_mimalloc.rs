//! heapspan around another inner allocator (mimalloc): the same exact figures.

mod common;

#[global_allocator]
static ALLOC: heapspan::Allocator<mimalloc::MiMalloc> =
    heapspan::Allocator::new(mimalloc::MiMalloc);

#[test]
fn mimalloc_inside_gives_exact_figures() {
    common::start();
    let rt = common::runtime(2);
    const N: usize = 123_457;
    let (held_tx, held_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let task = rt.spawn(heapspan::instrument("on-mimalloc", async move {
        let mut v: Vec<u8> = Vec::with_capacity(N);
        v.resize(N, 9);
        let big = vec![0u64; 4096]; // over-aligned paths are exercised elsewhere; plain here
        held_tx.send(()).unwrap();
        std::future::pending::<()>().await;
        drop((v, big));
    }));
    held_rx.recv().unwrap();
    let snap = common::snapshot();
    let t = snap.task_by_id(task.id()).unwrap();
    assert_eq!(t.mem.allocated_bytes, (N + 4096 * 8) as u64, "{t:?}");
    assert_eq!(t.mem.allocations, 2);
    assert_eq!(t.mem.live_bytes(), (N + 4096 * 8) as i64);
    task.abort();
}
