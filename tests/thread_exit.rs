//! Frees that come after a thread's locals are gone (other TLS destructors, libc's exit path)
//! still count, through the fallback queue.

mod common;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

#[test]
fn frees_after_thread_teardown_are_charged_to_the_allocating_task() {
    common::start();
    let rt = common::runtime(1);
    const N: usize = 54_321;
    let task = rt.spawn(heapspan::instrument("producer", async { vec![1u8; N] }));
    let id = task.id();
    let v = rt.block_on(task).unwrap();
    let before = common::snapshot();
    let t0 = before.task_by_id(id).unwrap().mem;
    assert_eq!(t0.live_bytes(), N as i64);
    std::thread::spawn(move || {
        heapspan::alloc::simulate_thread_exit();
        drop(v); // a free with this thread's table already given back
        drop(std::hint::black_box(vec![0u8; 999])); // and an allocation + free
    })
    .join()
    .unwrap();
    let after = common::snapshot();
    let t1 = after.task_by_id(id).unwrap().mem;
    assert_eq!(
        t1.freed_bytes - t0.freed_bytes,
        N as u64,
        "the late free is counted"
    );
    assert_eq!(t1.live_bytes(), 0);
    assert!(
        after.buckets.unattributed.allocated_bytes - before.buckets.unattributed.allocated_bytes
            >= 999,
        "late allocations land in the unattributed bucket"
    );
    assert_eq!(after.dropped.total(), 0);
}
