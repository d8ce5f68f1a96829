//! Shared helpers for the load scenarios (`tests/load_*.rs`, one binary per scenario: the
//! global allocator and heapspan's start are process-wide).
//!
//! - [`Counting`]: an inner allocator that counts every call heapspan forwards to it, with
//!   atomic counters (process-wide) and thread-local ones (for calibrating an allocation on the
//!   calling thread), independently of heapspan. It knows only the header rule.
//! - [`quiescent_point`]: a moment where the inner allocator's counters and a snapshot's
//!   `total` describe the same set of operations.
//! - [`YieldOnce`], [`task_id_u64`], the registry warm-up, and `#[track_caller]` assertions.
#![allow(dead_code, unreachable_pub)]

pub mod storm;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use heapspan::{Guard, MemStats, Snapshot};

/// The inner allocator of the scenarios that compare against an independent count: forwards
/// to `System` unchanged, counting calls and bytes.
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` and without destructors: readable from any allocator call, also while the
    // thread exits.
    static MY_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static MY_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// The caller's bytes of a block the inner allocator sees: heapspan asks the inner allocator
/// for `size + max(align, 16)` bytes (a 16-byte header, or an `align`-sized prefix for larger
/// alignments; the live index, off in these tests, would use 32).
pub fn user_bytes(l: Layout) -> u64 {
    (l.size() - l.align().max(heapspan::alloc::HEADER_BYTES)) as u64
}

fn count_alloc(l: Layout) {
    let b = user_bytes(l);
    ALLOCS.fetch_add(1, Relaxed);
    ALLOC_BYTES.fetch_add(b, Relaxed);
    let _ = MY_ALLOCS.try_with(|c| c.set(c.get() + 1));
    let _ = MY_BYTES.try_with(|c| c.set(c.get() + b));
}

// SAFETY: forwards every call to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count_alloc(l);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count_alloc(l);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        FREES.fetch_add(1, Relaxed);
        FREED_BYTES.fetch_add(user_bytes(l), Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // A realloc is neither an allocation nor a free: its growth counts as allocated
        // bytes, its shrinkage as freed bytes (heapspan's rule, and the same header on both
        // sides, so the difference of the inner sizes is the difference of the user sizes).
        REALLOCS.fetch_add(1, Relaxed);
        let old = l.size() as u64;
        let new64 = new as u64;
        if new64 > old {
            ALLOC_BYTES.fetch_add(new64 - old, Relaxed);
        } else {
            FREED_BYTES.fetch_add(old - new64, Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

/// The inner allocator's process-wide counts: `[allocations, allocated bytes, frees, freed
/// bytes]`, in the caller's bytes.
pub fn inner() -> [u64; 4] {
    [
        ALLOCS.load(Relaxed),
        ALLOC_BYTES.load(Relaxed),
        FREES.load(Relaxed),
        FREED_BYTES.load(Relaxed),
    ]
}

/// Reallocs the inner allocator saw (for the report only).
pub fn inner_reallocs() -> u64 {
    REALLOCS.load(Relaxed)
}

/// Allocations and allocated bytes (the caller's bytes) `f` made on this thread, as the
/// inner allocator saw them.
pub fn measure_here<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    let (a0, b0) = (MY_ALLOCS.with(Cell::get), MY_BYTES.with(Cell::get));
    let r = f();
    let (a1, b1) = (MY_ALLOCS.with(Cell::get), MY_BYTES.with(Cell::get));
    (r, a1 - a0, b1 - b0)
}

/// `[allocations, allocated bytes, frees, freed bytes]` of a `MemStats`.
pub fn four(m: &MemStats) -> [u64; 4] {
    [m.allocations, m.allocated_bytes, m.frees, m.freed_bytes]
}

pub fn sub4(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
}

/// A snapshot whose `total` covers exactly the operations the inner allocator has counted at
/// the moment the second value was read, for a process in which nothing but the calling
/// thread runs (the caller makes sure of that: no runtime, or one whose threads were joined).
///
/// Why two snapshots around the count: a snapshot folds everything recorded up to its fold, then builds the
/// tables it returns, and that building allocates (charged to the `heapspan` bucket, folded by
/// the *next* snapshot). So the inner count read right after snapshot `a` is "everything up to
/// `a`'s fold, plus `a`'s own building"; snapshot `b`, taken next, folds exactly that. The
/// aggregator thread is held meanwhile so that it does nothing of its own between the two
/// (its folds allocate too), and `a` is kept alive until `b` has been taken (its frees would
/// be operations after the count). What `b`'s fold allocates itself happens after the count
/// was read and is not in `b.total` either (it is recorded after its thread's table was read,
/// or, at a quiescent moment, not at all: there are no events to take in and no new keys).
///
/// A snapshot also forgets the records of owners that ended two folds before and gives sparse
/// tables' memory back (allocations of heapspan's own, folded by its later folds): a first
/// snapshot, dropped before `a`, does that work after the workload, so that `b`'s folds have
/// none of it left to do after the count.
///
/// Returns `(b, count, a)`; drop `a` when convenient (after the comparison).
pub fn quiescent_point(guard: &Guard) -> (Snapshot, [u64; 4], Snapshot) {
    let hold = guard.hold_aggregator();
    drop(guard.snapshot());
    let a = guard.snapshot();
    let count = inner();
    let b = guard.snapshot();
    drop(hold);
    (b, count, a)
}

/// Yields once by waking itself. (`tokio::task::yield_now` defers its waker to a per-worker
/// list that grows now and then: tokio's allocation, rightly charged to the task polled at the
/// time, but it would make the expected figures depend on scheduling.)
pub struct YieldOnce(bool);

pub fn yield_once() -> YieldOnce {
    YieldOnce(false)
}

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A tokio task id as the `u64` heapspan keys it by (`TaskKey::id`): tokio's `Id` hashes as
/// its inner `NonZeroU64`, so a hasher that keeps the written value recovers it (no
/// allocation, no string).
pub fn task_id_u64(id: tokio::task::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    #[derive(Default)]
    struct Keep(u64);
    impl Hasher for Keep {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 << 8) | u64::from(*b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut h = Keep::default();
    id.hash(&mut h);
    h.finish()
}

/// Grows this thread's share of the tracing registry to more than the scenarios ever use at
/// once, outside any measured task or span: its span slab page for this thread (pages are
/// allocated on demand and kept), its per-thread span stack (a `Vec` that grows on enter) and
/// its thread-local buckets. After this, creating, entering and closing spans on the thread
/// allocates nothing of the registry's own, so that span and task figures are only what the
/// scenario allocated. Run it on every runtime thread (`on_thread_start`). `depth` stays
/// within the 32 nested spans heapspan tracks.
pub fn warm_registry(spans_at_once: usize, depth: usize) {
    assert!(depth <= 32);
    let spans: Vec<tracing::Span> = (0..spans_at_once)
        .map(|_| tracing::info_span!("load_warmup"))
        .collect();
    {
        let mut entered: Vec<tracing::span::Entered<'_>> =
            spans.iter().take(depth).map(|s| s.enter()).collect();
        // Innermost first, as nested code exits.
        while let Some(e) = entered.pop() {
            drop(e);
        }
    }
    drop(spans);
}

/// A multi-thread runtime with `workers` workers whose threads warm the registry up first
/// (see [`warm_registry`]).
pub fn runtime_with_warm_registry(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .on_thread_start(|| warm_registry(4096, 16))
        .build()
        .expect("runtime")
}

/// A plain multi-thread runtime.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Nothing dropped, for any reason, and the snapshot says it is exact.
#[track_caller]
pub fn assert_lossless(snap: &Snapshot, when: &str) {
    assert_eq!(
        snap.dropped,
        heapspan::Dropped::default(),
        "{when}: nothing dropped, for any reason"
    );
    assert_eq!(snap.dropped.total(), 0, "{when}");
    assert!(snap.is_exact(), "{when}: the snapshot is exact");
    assert_eq!(
        snap.buckets.overflow,
        MemStats::default(),
        "{when}: nothing went to the overflow bucket"
    );
}

/// The process total is the sum of every task (held or summarised: the per-name figures cover
/// both) and every bucket, field by field.
#[track_caller]
pub fn assert_total_adds_up(snap: &Snapshot, when: &str) {
    let mut sum = [0u64; 4];
    let b = &snap.buckets;
    for m in snap.task_names.iter().map(|n| &n.mem).chain([
        &b.unattributed,
        &b.heapspan,
        &b.untracked,
        &b.overflow,
    ]) {
        for (s, v) in sum.iter_mut().zip(four(m)) {
            *s += v;
        }
    }
    assert_eq!(
        sum,
        four(&snap.total),
        "{when}: [allocations, allocated, frees, freed] of every task name and bucket add up to the total"
    );
}

/// A process-wide comparison: everything except heapspan's own bucket, as live bytes and live
/// blocks.
pub fn user_live(s: &Snapshot) -> (i64, i64) {
    let (t, h) = (s.total, s.buckets.heapspan);
    (
        t.live_bytes() - h.live_bytes(),
        t.live_allocations() - h.live_allocations(),
    )
}

/// VmRSS of this process, bytes (Linux).
#[cfg(target_os = "linux")]
pub fn vm_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS in kB");
    kb * 1024
}

/// Threads of this process (`Threads:` of /proc/self/status).
pub fn thread_count() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads line")
}

/// Drops `rt` and waits until its worker threads are gone. Dropping a runtime returns once
/// its workers have left their loops, before their thread-local destructors run; those free
/// what tasks allocated into thread-locals (tracing's per-thread span stack, tokio's
/// scheduler context), charged to the tasks that allocated it. Waiting for the threads to
/// exit (the kernel's thread count: the event itself, not a time) makes those frees part of
/// what comes before.
pub fn drop_runtime_and_join(rt: tokio::runtime::Runtime, threads_before: usize) {
    drop(rt);
    while thread_count() > threads_before {
        std::thread::yield_now();
    }
}

/// The second comparison point of a workload that began at `(s1, c1)`: heapspan's total
/// between the two points equals the counting inner allocator's, nothing was dropped, the
/// figures add up, and the live bytes outside heapspan's own bucket are back to the baseline.
/// Returns the second point's snapshots (`b`, then `a`, as [`quiescent_point`]).
#[track_caller]
pub fn assert_second_point(
    guard: &Guard,
    s1: &Snapshot,
    c1: [u64; 4],
    what: &str,
) -> (Snapshot, Snapshot) {
    let (s2, c2, a2) = quiescent_point(guard);
    let counted = sub4(c2, c1);
    let heapspan = sub4(four(&s2.total), four(&s1.total));
    eprintln!(
        "{what}: inner allocator [allocations, bytes, frees, freed] {counted:?} \
         ({} reallocs in all), heapspan {heapspan:?}, dropped {:?}",
        inner_reallocs(),
        s2.dropped
    );
    assert_lossless(&s2, "at the end");
    // Comparable: every call heapspan forwarded to the inner allocator between the two points
    // (its own included: the wrapper's and the aggregator's, charged to its bucket) against
    // every operation heapspan recorded between the two points' folds, in the caller's bytes
    // on both sides (the inner allocator takes the header off) and with reallocs as growth and
    // shrinkage only (see `quiescent_point`).
    assert_eq!(
        heapspan, counted,
        "[allocations, allocated bytes, frees, freed bytes] between the two points: heapspan's \
         total equals the inner allocator's count"
    );
    assert_total_adds_up(&s2, "at the end");
    assert_eq!(
        user_live(&s2),
        user_live(s1),
        "(live bytes, live blocks) outside heapspan's own bucket: back to the baseline"
    );
    (s2, a2)
}
