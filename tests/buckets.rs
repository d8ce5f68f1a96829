//! Allocations outside tasks land in the documented buckets, and nothing is lost: an
//! independent counter in the inner allocator sees exactly what the buckets add up to.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The inner allocator: counts every block and byte it hands out and takes back, independently
/// of heapspan (it only knows the header size rule).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

fn user_bytes(l: Layout) -> u64 {
    (l.size() - l.align().max(heapspan::alloc::HEADER_BYTES)) as u64
}

// SAFETY: forwards to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(user_bytes(l), Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        FREES.fetch_add(1, Relaxed);
        FREED.fetch_add(user_bytes(l), Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let (old, new_user) = (
            user_bytes(l),
            user_bytes(Layout::from_size_align(new, l.align()).unwrap()),
        );
        if new_user > old {
            BYTES.fetch_add(new_user - old, Relaxed);
        } else {
            FREED.fetch_add(old - new_user, Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: heapspan::Allocator<Counting> = heapspan::Allocator::new(Counting);

fn inner() -> [u64; 4] {
    [
        ALLOCS.load(Relaxed),
        BYTES.load(Relaxed),
        FREES.load(Relaxed),
        FREED.load(Relaxed),
    ]
}

/// Everything outside heapspan's own bucket.
fn user_total(s: &heapspan::Snapshot) -> [u64; 4] {
    let (t, h) = (s.total, s.buckets.heapspan);
    [
        t.allocations - h.allocations,
        t.allocated_bytes - h.allocated_bytes,
        t.frees - h.frees,
        t.freed_bytes - h.freed_bytes,
    ]
}

#[test]
fn blocking_tasks_threads_and_pre_start_memory_land_in_their_buckets_and_nothing_is_lost() {
    // Before start: untracked. Freed after start: counted as the untracked bucket's frees.
    let before_start = vec![0u8; 4444];
    // A long fold interval keeps heapspan's thread quiet, so the inner counter sees only the
    // workload between the two snapshots.
    let guard = heapspan::builder()
        .fold_interval(Duration::from_secs(60))
        .start()
        .unwrap();
    let rt = common::runtime(2);
    // Let the runtime's worker threads start and park before the window opens.
    rt.block_on(async {
        for _ in 0..4 {
            tokio::spawn(async {}).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let s1 = guard.snapshot();
    let i1 = inner();

    // Workload: main thread outside any task, a plain thread, a blocking task.
    let on_main = vec![1u8; 1111];
    let from_thread = std::thread::spawn(|| vec![2u8; 2222]).join().unwrap();
    let blocking = rt.spawn_blocking(|| vec![3u8; 3333]);
    let blocking_id = blocking.id();
    let from_blocking = rt.block_on(blocking).unwrap();
    drop(before_start);
    // Let the blocking pool's thread finish dropping the task it ran (its frees are part of
    // the workload) and park; nothing else runs until the second snapshot.
    std::thread::sleep(Duration::from_millis(300));

    let i2 = inner();
    let s2 = guard.snapshot();
    let d_inner: Vec<u64> = i2.iter().zip(i1).map(|(b, a)| b - a).collect();
    let d_heapspan: Vec<u64> = user_total(&s2)
        .iter()
        .zip(user_total(&s1))
        .map(|(b, a)| b - a)
        .collect();
    assert_eq!(
        d_heapspan, d_inner,
        "[allocs, bytes, frees, freed]: buckets add up to the inner allocator's count"
    );
    assert_eq!(s2.dropped.total(), 0);
    let (h1, h2) = (s1.allocation_sizes, s2.allocation_sizes);
    assert_eq!(
        h2.count() - h1.count(),
        s2.total.allocations - s1.total.allocations,
        "the size histogram counts every allocation once"
    );
    assert!(
        h2.counts[4] - h1.counts[4] >= 3,
        "1111, 2222 and 3333 bytes: the (1 KiB, 4 KiB] bucket"
    );

    let blocking_task = s2
        .task_by_id(blocking_id)
        .expect("spawn_blocking runs as a task of its own");
    assert!(
        blocking_task.mem.allocated_bytes >= 3333,
        "{blocking_task:?}"
    );
    let un = s2.buckets.unattributed.allocated_bytes - s1.buckets.unattributed.allocated_bytes;
    assert!(
        un >= 1111 + 2222,
        "main thread and plain thread are unattributed: {un}"
    );
    let untracked = s2.buckets.untracked;
    assert_eq!(
        untracked.allocated_bytes, 0,
        "before start nothing is counted"
    );
    assert!(untracked.freed_bytes >= 4444, "its frees after start are");
    assert!(
        s2.buckets.heapspan.allocated_bytes > 0,
        "heapspan's own allocations have their bucket"
    );
    drop((on_main, from_thread, from_blocking));
}
