//! The recent frees of indexed blocks on one thread table: the evidence that names where a
//! double-freed block was freed first ([`super::invalid`]).
//!
//! Each table keeps its own [`RECENT`] most recent frees, written by the table's owner only
//! (plain loads and stores, no read-modify-write, nothing shared between threads on the free
//! path); the rare reader, an invalid free, looks through every table. The tables have no
//! common order, so a block whose address was freed on two tables (its memory reused in
//! between) is told apart by the key it was allocated under, when the reader knows it, and is
//! otherwise reported with its first freeing place unknown.
//!
//! All atomics, valid when all-zero, like the rest of the table.

use super::header::Key;
use crate::sync::{fence, AtomicU64, AtomicUsize, Ordering};

/// Frees remembered per table (a power of two).
#[cfg(not(loom))]
pub(crate) const RECENT: usize = 64;
#[cfg(loom)]
pub(crate) const RECENT: usize = 2;

/// One remembered free: the block's address and the keys it was allocated and freed under,
/// behind a sequence number (odd while the owner rewrites the slot) so a reader never takes
/// half of two frees for one.
#[derive(Debug)]
struct Slot {
    seq: AtomicU64,
    addr: AtomicUsize,
    words: [AtomicU64; 4],
}

impl Slot {
    #[cfg(loom)]
    fn new() -> Self {
        Slot {
            seq: AtomicU64::new(0),
            addr: AtomicUsize::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A free found in a table: the keys the block was allocated and freed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) allocated_by: Key,
    pub(crate) freed_by: Key,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RecentFrees {
    /// Frees remembered so far (the next slot, modulo [`RECENT`]).
    next: AtomicUsize,
    slots: [Slot; RECENT],
}

impl RecentFrees {
    /// An empty ring, as all-zero memory holds it.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        RecentFrees {
            next: AtomicUsize::new(0),
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }

    /// Owner only: remembers a valid free of the block at `user`, allocated under `by` and
    /// freed under `now`.
    #[inline]
    pub(crate) fn remember(&self, user: *mut u8, by: Key, now: Key) {
        let n = self.next.load(Ordering::Relaxed);
        self.next.store(n.wrapping_add(1), Ordering::Relaxed);
        let slot = &self.slots[n % RECENT];
        // A seqlock with one writer: odd while rewritten; the fence keeps the new contents
        // from being seen before the odd number is.
        let v = slot.seq.load(Ordering::Relaxed);
        slot.seq.store(v.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        slot.addr.store(user as usize, Ordering::Relaxed);
        slot.words[0].store(by.task, Ordering::Relaxed);
        slot.words[1].store(by.span, Ordering::Relaxed);
        slot.words[2].store(now.task, Ordering::Relaxed);
        slot.words[3].store(now.span, Ordering::Relaxed);
        slot.seq.store(v.wrapping_add(2), Ordering::Release);
    }

    /// The most recent free of `user` in this table allocated under `by` (any key if `None`).
    /// A slot being rewritten meanwhile is skipped (it is evidence, not bookkeeping).
    pub(crate) fn find(&self, user: *mut u8, by: Option<Key>) -> Option<Found> {
        let next = self.next.load(Ordering::Relaxed);
        (0..RECENT.min(next)).find_map(|k| {
            let slot = &self.slots[next.wrapping_sub(1 + k) % RECENT];
            let v = slot.seq.load(Ordering::Acquire);
            if v % 2 == 1 {
                return None;
            }
            let addr = slot.addr.load(Ordering::Relaxed);
            let w = |i: usize| slot.words[i].load(Ordering::Relaxed);
            let found = Found {
                allocated_by: Key::new(w(0), w(1)),
                freed_by: Key::new(w(2), w(3)),
            };
            fence(Ordering::Acquire);
            let whole = slot.seq.load(Ordering::Relaxed) == v;
            (whole && addr == user as usize && by.is_none_or(|b| b == found.allocated_by))
                .then_some(found)
        })
    }
}

/// The free of `user` (allocated under `by`, when known) among `tables`' recent frees: the one
/// found, or, when tables disagree on who allocated or freed it (the address was reused and
/// freed again, and nothing orders the tables), none.
pub(crate) fn find_in<'a>(
    tables: impl IntoIterator<Item = &'a RecentFrees>,
    user: *mut u8,
    by: Option<Key>,
) -> Option<Found> {
    let mut found: Option<Found> = None;
    for t in tables {
        if let Some(f) = t.find(user, by) {
            if found.is_some_and(|g| g != f) {
                return None;
            }
            found = Some(f);
        }
    }
    found
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn fresh() -> Box<RecentFrees> {
        // SAFETY: atomics only, valid (and empty) when all-zero: what the pool's zeroed
        // mapping relies on for the whole table.
        unsafe { Box::<RecentFrees>::new_zeroed().assume_init() }
    }

    const A: Key = Key { task: 7, span: 1 };
    const B: Key = Key { task: 8, span: 2 };
    const C: Key = Key { task: 9, span: 3 };

    #[test]
    fn the_newest_free_of_an_address_is_found_and_old_ones_fall_out() {
        let r = fresh();
        let p = 0x1000 as *mut u8;
        assert_eq!(r.find(p, None), None);
        r.remember(p, A, B);
        r.remember(p, A, C);
        assert_eq!(
            r.find(p, None),
            Some(Found {
                allocated_by: A,
                freed_by: C
            })
        );
        assert_eq!(r.find(p, Some(B)), None, "allocated under another key");
        for k in 0..RECENT {
            r.remember((0x2000 + 16 * k) as *mut u8, B, B);
        }
        assert_eq!(r.find(p, None), None, "{RECENT} later frees pushed it out");
    }

    #[test]
    fn tables_that_disagree_leave_the_first_free_unknown() {
        let (t1, t2) = (fresh(), fresh());
        let p = 0x1000 as *mut u8;
        t1.remember(p, A, B);
        let one = find_in([&*t1, &*t2], p, None);
        assert_eq!(one.map(|f| f.freed_by), Some(B));
        // The same address, reused, freed again on another table by another task.
        t2.remember(p, A, C);
        assert_eq!(
            find_in([&*t1, &*t2], p, None),
            None,
            "no order between tables"
        );
        // Told apart by the allocating key when the reader knows it.
        t2.remember(p, C, C);
        assert_eq!(
            find_in([&*t1, &*t2], p, Some(C)).map(|f| f.freed_by),
            Some(C)
        );
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A reader looking for an address while its owner rewrites the slots (the same address
    /// freed again, then another one over it): it finds one whole free or none, never the
    /// keys of two.
    #[test]
    fn a_reader_racing_the_owner_finds_whole_frees_only() {
        const A: Key = Key { task: 7, span: 1 };
        const B: Key = Key { task: 8, span: 2 };
        const C: Key = Key { task: 9, span: 3 };
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let r = Arc::new(RecentFrees::new());
            let p = 0x1000 as *mut u8;
            r.remember(p, A, B);
            let owner = {
                let r = r.clone();
                loom::thread::spawn(move || {
                    let p = 0x1000 as *mut u8;
                    r.remember(p, A, C);
                    r.remember(0x2000 as *mut u8, C, C);
                })
            };
            let found = r.find(p, None);
            assert!(
                found.is_none()
                    || found
                        == Some(Found {
                            allocated_by: A,
                            freed_by: B
                        })
                    || found
                        == Some(Found {
                            allocated_by: A,
                            freed_by: C
                        }),
                "{found:?}"
            );
            owner.join().unwrap();
        });
    }
}
