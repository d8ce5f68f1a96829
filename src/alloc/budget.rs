//! The hard bound on heapspan's queue memory ([`Builder::max_queue_bytes`](crate::Builder::max_queue_bytes)):
//! what the per-thread rings' chunks and the fallback stack's nodes may hold together.

use crate::sync::statics::{AtomicU64, AtomicUsize, Ordering};

/// Bytes of queue memory held now (chunks in use or kept spare, nodes not yet drained).
static HELD: AtomicUsize = AtomicUsize::new(0);
/// The bound, set at start.
static MAX: AtomicUsize = AtomicUsize::new(256 << 20);
/// Operations that could not be recorded at all (the system allocator refused queue memory
/// for a free or a realloc): the only loss heapspan knows.
pub(crate) static LOST: AtomicU64 = AtomicU64::new(0);

/// Sets the bound (at start).
pub(crate) fn set_max(bytes: usize) {
    MAX.store(bytes, Ordering::Relaxed);
}

/// Takes `bytes` of queue memory: refused at the bound unless `beyond` (an operation on a
/// block already attributed, which must be recorded).
pub(crate) fn take(bytes: usize, beyond: bool) -> bool {
    let held = HELD.fetch_add(bytes, Ordering::Relaxed);
    if !beyond && held.saturating_add(bytes) > MAX.load(Ordering::Relaxed) {
        HELD.fetch_sub(bytes, Ordering::Relaxed);
        return false;
    }
    true
}

/// Gives back what [`take`] took.
pub(crate) fn give_back(bytes: usize) {
    HELD.fetch_sub(bytes, Ordering::Relaxed);
}

/// Queue memory held now, bytes.
pub(crate) fn held() -> u64 {
    HELD.load(Ordering::Relaxed) as u64
}
