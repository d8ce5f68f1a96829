//! `TaskNameStats::task_peak_bytes` (what `heapspan.task.memory.peak` exports) is the largest
//! peak of a single task of the name, not the peak of the name's total.

#[global_allocator]
static A: heapspan::Allocator = heapspan::Allocator::system();

mod common;

#[test]
fn a_names_task_peak_is_its_largest_single_task() {
    common::start();
    let rt = common::runtime(2);
    let (go_a, wait_a) = tokio::sync::oneshot::channel::<()>();
    let (go_b, wait_b) = tokio::sync::oneshot::channel::<()>();
    // Bounded channels: their buffer is allocated here, not in the tasks when they send.
    let (held_a, a_holds) = std::sync::mpsc::sync_channel::<()>(1);
    let (held_b, b_holds) = std::sync::mpsc::sync_channel::<()>(1);
    let a = rt.spawn(heapspan::instrument("peaker", async move {
        let v = std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
        held_a.send(()).unwrap();
        let _ = wait_a.await;
        drop(v);
    }));
    let b = rt.spawn(heapspan::instrument("peaker", async move {
        let v = std::hint::black_box(Vec::<u8>::with_capacity(2 << 20));
        held_b.send(()).unwrap();
        let _ = wait_b.await;
        drop(v);
    }));
    a_holds.recv().unwrap();
    b_holds.recv().unwrap();
    // Both hold their block at this fold: the name's total peaks at 3 MiB, its largest task at
    // 2 MiB.
    let snap = common::snapshot();
    let name = snap.task_name("peaker").expect("peaker");
    assert_eq!(name.mem.live_bytes(), 3 << 20);
    go_a.send(()).unwrap();
    go_b.send(()).unwrap();
    rt.block_on(async {
        a.await.unwrap();
        b.await.unwrap();
    });
    let snap = common::snapshot();
    let name = snap.task_name("peaker").expect("peaker");
    assert_eq!(name.mem.live_bytes(), 0);
    assert_eq!(name.mem.peak_bytes, 3 << 20, "the name's total");
    assert_eq!(name.task_peak_bytes, 2 << 20, "the largest single task");
    assert_eq!((name.tasks, name.ended), (2, 2));
    assert!(snap.is_exact());
}
