//! Recording one operation: the thread's own table, else a table borrowed for the call, else
//! the shared fallback; an allocation refused at the queue bound goes to the overflow bucket.

use super::handoff::{self, Side, SIDE_NONE};
use super::header::{Key, ID_MASK, TASK_NONE, TASK_OVERFLOW};
use super::local::Local;
use super::slots::{size_bucket, Op, SIZE_BUCKETS};
use super::state::{self, Mode};
use crate::sync::statics::{AtomicU64, Ordering};

/// Records `op` under `key` on this thread. False only for an allocation refused at the queue
/// bound (or by the system allocator): the caller attributes the block to the overflow
/// bucket instead ([`overflow`]). Every other operation is recorded.
#[inline(always)]
pub(crate) fn record(l: &Local, key: Key, op: Op) -> bool {
    if let Some(st) = l.table() {
        return st.record(key, op, &l.hint);
    }
    record_cold(l, key, op)
}

/// A thread's first operation (claims its table), and threads without a table of their own
/// (exited, or beyond the pool's capacity).
#[cold]
#[inline(never)]
fn record_cold(l: &Local, key: Key, op: Op) -> bool {
    let Some(pool) = state::pool() else {
        return true;
    };
    if l.may_claim() {
        l.set_busy(true);
        l.claim(pool);
        l.set_busy(false);
        if let Some(st) = l.table() {
            return st.record(key, op, &l.hint);
        }
        // Every table is claimed by a live thread: none to borrow either.
        return pool.fallback.push(key, op);
    }
    if let Some(recorded) = l.with_borrowed(|st, hint| st.record(key, op, hint)) {
        return recorded;
    }
    pool.fallback.push(key, op)
}

/// The key of the block an allocation of `size` gets when it could not be recorded under its
/// own: the overflow bucket, counted here (its later free, under this key, goes through the
/// tables like any other).
#[cold]
#[inline(never)]
pub(crate) fn overflow(size: u64) -> Key {
    OVERFLOW_ALLOCS.fetch_add(1, Ordering::Relaxed);
    OVERFLOW_BYTES.fetch_add(size, Ordering::Relaxed);
    OVERFLOW_SIZES[size_bucket(size)].fetch_add(1, Ordering::Relaxed);
    Key::new(TASK_OVERFLOW, 0)
}

/// Allocations sent to the overflow bucket (cumulative).
pub(crate) static OVERFLOW_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Their bytes (cumulative).
pub(crate) static OVERFLOW_BYTES: AtomicU64 = AtomicU64::new(0);
/// Their size histogram (cumulative).
pub(crate) static OVERFLOW_SIZES: [AtomicU64; SIZE_BUCKETS] =
    [const { AtomicU64::new(0) }; SIZE_BUCKETS];

/// Counts an allocation of `size` bytes (heapspan is running) and returns the key its header
/// gets.
#[inline(always)]
pub(crate) fn on_alloc(l: &Local, size: u64) -> Key {
    let key = l.alloc_key();
    if record(l, key, Op::Alloc(size)) {
        key
    } else {
        overflow(size)
    }
}

/// Whether a free of a block allocated under `key`, made while task `current` runs (its id, 0
/// outside any task, or its task word: only the id bits are compared), may be a hand-off: the
/// ids differ. A cheap test for the free path; the rest is [`on_handoff`]'s.
#[inline(always)]
pub(crate) fn maybe_handoff(key: Key, current: u64) -> bool {
    const {
        // The reserved buckets' id bits match no task's id (nor 0): their frees always take
        // the slow path, where heapspan's own blocks are scrubbed.
        assert!(super::header::TASK_HEAPSPAN & ID_MASK >= super::header::ID_LIMIT);
        assert!(TASK_OVERFLOW & ID_MASK >= super::header::ID_LIMIT);
    }
    (key.task ^ current) & ID_MASK != 0
}

/// A free of `size` bytes of a block allocated under `key`, made while the task of id
/// `current_id` runs (0: none), which [`maybe_handoff`] found not to be the allocating one:
/// counted in the hand-off cells of this thread's table (or of a table borrowed for the call;
/// with none to borrow, in the shared overflow figures). Blocks of heapspan's own, of before
/// start and of the overflow bucket have no allocating task to name, and frees by heapspan's
/// own code are no hand-off: none of them is counted.
#[cold]
#[inline(never)]
pub(crate) fn on_handoff(l: &Local, key: Key, size: u64, current_id: u64) {
    if l.heapspan_own.get() || key.task >= TASK_OVERFLOW {
        return;
    }
    // The freeing task's word, from the id the free already asked tokio for.
    let (from, to) = (side(key.task), side(l.task_word_of(current_id)));
    if let Some(st) = l.table() {
        st.handoffs().record(from, to, size);
        return;
    }
    if l.with_borrowed(|st, _| st.handoffs().record(from, to, size))
        .is_none()
    {
        handoff::SHARED_OVERFLOW_FREES.fetch_add(1, Ordering::Relaxed);
        handoff::SHARED_OVERFLOW_BYTES.fetch_add(size, Ordering::Relaxed);
    }
}

/// The hand-off side of a task word that is no reserved bucket but [`TASK_NONE`]: its name
/// index, or [`SIDE_NONE`].
#[inline]
fn side(task: u64) -> Side {
    if task == TASK_NONE {
        SIDE_NONE
    } else {
        Key::new(task, 0).task_name()
    }
}

/// Counts a realloc from `old` to `new` bytes: growth or shrinkage, under the block's key.
#[inline(always)]
pub(crate) fn on_resize(key: Key, old: usize, new: usize) {
    let (old, new) = (old as u64, new as u64);
    let op = if new > old {
        Op::Grow(new - old)
    } else if old > new {
        Op::Shrink(old - new)
    } else {
        return;
    };
    // Only while running: once stopped nobody folds the tables, so recording would only fill
    // them up.
    if state::mode() == Mode::Off {
        return;
    }
    let recorded = record(super::local::local(), key, op);
    debug_assert!(recorded, "only allocations are ever refused");
}
