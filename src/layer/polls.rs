//! When each wrapped task was last polled: one relaxed store per poll into a fixed table, no
//! allocation, no lock, for `task.stalled`.
//!
//! Slot `id % SLOTS` holds `tag << 40 | (ms + 1)`: `tag` is bits 12..36 of the task id, `ms` the
//! allocator's coarse clock ([`NOW_MS`](crate::alloc::index::NOW_MS), milliseconds since the
//! aggregator started, advanced each fold). Two tasks of one slot overwrite each other: a
//! reader whose tag does not match learns nothing (the task's last poll is unknown, so no
//! stall is claimed for it); two live tasks would need ids 2^36 apart to share a slot and a
//! tag. So the table can lose a stall (a busy task sharing the stalled one's slot), never
//! invent one.

use crate::sync::statics::AtomicU64;
use std::sync::atomic::Ordering;

/// Slots of the table (32 KiB).
const SLOTS: usize = 4096;
const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const TAG_MASK: u64 = (1 << 24) - 1;

static LAST_POLL: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn tag(id: u64) -> u64 {
    (id / SLOTS as u64) & TAG_MASK
}

/// Notes that task `id` is being polled now.
#[inline]
pub(crate) fn record(id: u64) {
    let ms = crate::alloc::index::NOW_MS.load(Ordering::Relaxed);
    let v = (tag(id) << TIME_BITS) | ((ms + 1) & TIME_MASK);
    LAST_POLL[id as usize % SLOTS].store(v, Ordering::Relaxed);
}

/// When task `id` was last polled, in milliseconds of the allocator's clock; `None` if unknown
/// (never polled through the wrapper, or its slot taken by another task since).
pub(crate) fn last_poll_ms(id: u64) -> Option<u64> {
    let v = LAST_POLL[id as usize % SLOTS].load(Ordering::Relaxed);
    (v != 0 && v >> TIME_BITS == tag(id)).then(|| (v & TIME_MASK) - 1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_slot_answers_only_for_its_last_task() {
        let a = 7 + 3 * SLOTS as u64;
        let b = 7 + 5 * SLOTS as u64;
        assert_eq!(last_poll_ms(a), None);
        record(a);
        assert!(last_poll_ms(a).is_some());
        assert_eq!(
            last_poll_ms(b),
            None,
            "another task of the slot learns nothing"
        );
        record(b);
        assert_eq!(last_poll_ms(a), None, "overwritten: unknown, not stale");
        assert!(last_poll_ms(b).is_some());
    }
}
