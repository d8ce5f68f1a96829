//! Per-thread counter tables: the only memory the allocation hot path writes.
//!
//! Each thread owns one [`ThreadState`]: a small open-addressed table of [`Slot`]s keyed by
//! attribution [`Key`] (task and span), holding *cumulative* counters. Only the owning thread
//! writes a slot (plain relaxed load + store, no read-modify-write, no lock); the aggregator
//! thread reads every slot and computes deltas against what it already applied.
//!
//! When a thread needs a slot for a new key and the probe window is full, it *evicts* one: it
//! pushes the slot's final counters into the thread's [`Ring`] of retired tenancies and reuses
//! the slot under a new sequence number. A slot's `seq` is a seqlock: odd while the owner
//! rewrites its key, even otherwise, and bumped by two on every reuse, so the aggregator can
//! tell one tenancy of a slot from the next and never double counts. The ring grows when the
//! aggregator falls behind, so nothing is dropped; only at the queue bound
//! ([`budget`](super::budget)) is a *new allocation* refused, for the caller to send to the
//! overflow bucket.
//!
//! A table is atomics only and all-zero when fresh (an empty table: see [`EMPTY`]), so the
//! pool's mapping needs no initialisation.

use super::header::Key;
use super::ring::Ring;
use crate::sync::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Slots per thread (a power of two).
#[cfg(not(loom))]
pub(crate) const SLOTS: usize = 256;
#[cfg(loom)]
pub(crate) const SLOTS: usize = 1;
/// Buckets of the allocation-size histogram: upper bounds 16 B, 64 B, … 16 MiB (powers of 4),
/// and one above.
pub(crate) const SIZE_BUCKETS: usize = 12;

/// Bucket by `leading_zeros(n - 1)`: `ceil(log2(n)) = 64 - lz`, bucket `ceil((log - 4) / 2)`
/// clamped to `0..SIZE_BUCKETS` (a table lookup instead of arithmetic on the hot path).
static BUCKET_BY_LZ: [u8; 65] = {
    let mut t = [0u8; 65];
    let mut lz: usize = 0;
    while lz <= 64 {
        let log: usize = 64 - lz;
        let b = if log <= 4 { 0 } else { (log - 4).div_ceil(2) };
        t[lz] = if b < SIZE_BUCKETS {
            b as u8
        } else {
            (SIZE_BUCKETS - 1) as u8
        };
        lz += 1;
    }
    t
};

/// The histogram bucket of an allocation of `n` bytes: `(bound[i-1], bound[i]]`.
#[inline(always)]
pub(crate) fn size_bucket(n: u64) -> usize {
    BUCKET_BY_LZ[n.saturating_sub(1).leading_zeros() as usize] as usize
}

/// How many neighbouring slots a key may live in before one is evicted.
const PROBE: usize = if SLOTS < 4 { SLOTS } else { 4 };

/// A task word no slot is ever recorded under (task words of real tasks have ids below
/// `2^48 − 16`; the reserved buckets are the top three words). Slots store `task ^ EMPTY`, so
/// an all-zero slot (fresh, untouched memory) is an empty one.
const EMPTY: u64 = u64::MAX - 7;

/// The longest ring [`ThreadState::peek`] walks.
pub(crate) const PEEK_RING_MAX: usize = 4096;

/// Where a key's probe window starts: Fibonacci hashing of both words (cheap, and spreads
/// sequential ids).
#[inline]
fn hash(key: Key) -> usize {
    let h = (key.task ^ key.span.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize
}

/// Cumulative counters of one slot tenancy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) alloc_bytes: u64,
    pub(crate) allocs: u64,
    pub(crate) free_bytes: u64,
    pub(crate) frees: u64,
}

impl Counters {
    /// `self - earlier`, counter by counter (cumulative counters only grow within a tenancy).
    pub(crate) fn since(self, earlier: Counters) -> Counters {
        Counters {
            alloc_bytes: self.alloc_bytes.wrapping_sub(earlier.alloc_bytes),
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            free_bytes: self.free_bytes.wrapping_sub(earlier.free_bytes),
            frees: self.frees.wrapping_sub(earlier.frees),
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        *self == Counters::default()
    }
}

/// One accounting operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A new allocation of `n` bytes (one allocation).
    Alloc(u64),
    /// A free of `n` bytes (one free).
    Free(u64),
    /// A realloc grew an allocation by `n` bytes (no new allocation).
    Grow(u64),
    /// A realloc shrank an allocation by `n` bytes (no free).
    Shrink(u64),
}

impl Op {
    /// Whether the operation attributes new memory (it may be refused at the queue bound).
    #[inline]
    pub(crate) fn is_alloc(self) -> bool {
        matches!(self, Op::Alloc(_))
    }

    /// (bytes counter, count counter, bytes, count increment)
    #[inline]
    fn parts(self) -> (usize, usize, u64, u64) {
        match self {
            Op::Alloc(n) => (0, 1, n, 1),
            Op::Free(n) => (2, 3, n, 1),
            Op::Grow(n) => (0, 1, n, 0),
            Op::Shrink(n) => (2, 3, n, 0),
        }
    }
}

#[inline]
fn bump(a: &AtomicU64, n: u64) {
    // Owner-only counter: a relaxed load and store compile to plain moves; no `lock` prefix.
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// One table entry. 64 bytes: one cache line.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    seq: AtomicU64,
    task: AtomicU64,
    span: AtomicU64,
    counters: [AtomicU64; 4],
}

impl Slot {
    #[cfg(loom)]
    fn new() -> Self {
        Slot {
            seq: AtomicU64::new(0),
            task: AtomicU64::new(0),
            span: AtomicU64::new(0),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline]
    fn holds(&self, key: Key) -> bool {
        self.task.load(Ordering::Relaxed) == key.task ^ EMPTY
            && self.span.load(Ordering::Relaxed) == key.span
    }

    fn is_empty(&self) -> bool {
        self.task.load(Ordering::Relaxed) == 0
    }

    fn key(&self) -> Key {
        Key {
            task: self.task.load(Ordering::Relaxed) ^ EMPTY,
            span: self.span.load(Ordering::Relaxed),
        }
    }

    #[inline]
    fn apply(&self, op: Op) {
        let (b, c, n, k) = op.parts();
        bump(&self.counters[b], n);
        if k != 0 {
            bump(&self.counters[c], k);
        }
    }

    fn load_counters(&self) -> Counters {
        Counters {
            alloc_bytes: self.counters[0].load(Ordering::Relaxed),
            allocs: self.counters[1].load(Ordering::Relaxed),
            free_bytes: self.counters[2].load(Ordering::Relaxed),
            frees: self.counters[3].load(Ordering::Relaxed),
        }
    }

    /// Owner only: give the slot to `key` with zeroed counters (seqlock write section).
    fn reassign(&self, key: Key) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.task.store(key.task ^ EMPTY, Ordering::Relaxed);
        self.span.store(key.span, Ordering::Relaxed);
        for c in &self.counters {
            c.store(0, Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

/// What the aggregator reads of a slot or a retired tenancy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) slot: u32,
    /// Even sequence number of the tenancy.
    pub(crate) seq: u64,
    pub(crate) key: Key,
    pub(crate) counters: Counters,
    /// True for a retired tenancy: these counters are final.
    pub(crate) last: bool,
}

/// Lifecycle of a [`ThreadState`] in the pool: free (never claimed, or given back), or claimed
/// by one thread (its owner, or a thread borrowing it for one operation).
pub(crate) const FREE: u8 = 0;
pub(crate) const ACTIVE: u8 = 1;

/// The slot a thread used last: a pointer into that thread's own table (null until the first
/// lookup), so the hot path reaches its slot with one load from the thread-local.
#[derive(Debug)]
pub(crate) struct Hint(std::cell::Cell<*const Slot>);

impl Hint {
    pub(crate) const fn new() -> Self {
        Hint(std::cell::Cell::new(std::ptr::null()))
    }
}

/// The per-thread state: slot table, retired ring, size histogram. Aligned so that the fields
/// its owner writes on every allocation share no cache line with another thread's state or
/// with the field the aggregator writes (the ring's `head`).
#[derive(Debug)]
#[repr(C, align(128))]
pub(crate) struct ThreadState {
    pub(crate) status: AtomicU8,
    /// This table's position in the pool (the table part of allocation ids), written by each
    /// owner when it claims the table.
    id: AtomicUsize,
    /// Allocation-size histogram of this thread's allocations (cumulative).
    sizes: [AtomicU64; SIZE_BUCKETS],
    /// Bytes realloc grew allocations by (rare path): the histogram's sum is the allocated
    /// bytes minus these.
    grown: AtomicU64,
    ring: Ring,
    slots: [Slot; SLOTS],
    /// Frees of other tasks' blocks on this table, per pair of task names.
    handoffs: super::handoff::HandOffs,
    /// The last frees of indexed blocks on this table (evidence for a double free).
    recent_frees: super::recent::RecentFrees,
}

impl ThreadState {
    /// A fresh table, as all-zero memory holds it (the pool maps tables zeroed; loom models
    /// build them with this).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        ThreadState {
            status: AtomicU8::new(FREE),
            id: AtomicUsize::new(0),
            sizes: std::array::from_fn(|_| AtomicU64::new(0)),
            grown: AtomicU64::new(0),
            ring: Ring::new(),
            slots: std::array::from_fn(|_| Slot::new()),
            handoffs: super::handoff::HandOffs::new(),
            recent_frees: super::recent::RecentFrees::new(),
        }
    }

    /// The table's position in the pool.
    #[inline]
    pub(crate) fn id(&self) -> usize {
        self.id.load(Ordering::Relaxed)
    }

    /// The recent frees of indexed blocks (written by the owner only).
    #[inline]
    pub(crate) fn recent_frees(&self) -> &super::recent::RecentFrees {
        &self.recent_frees
    }

    /// The hand-off cells (written by the owner, or the thread holding the table borrowed).
    #[inline]
    pub(crate) fn handoffs(&self) -> &super::handoff::HandOffs {
        &self.handoffs
    }

    /// The new owner: notes the table's position (after a successful claim).
    pub(crate) fn set_id(&self, id: usize) {
        self.id.store(id, Ordering::Relaxed);
    }

    /// Owner only: record `op` under `key`. `hint` is the slot the thread used last; it is
    /// updated to the slot used now. Never blocks; never allocates through the global
    /// allocator (the ring may take a chunk from the system allocator). Returns false only for
    /// an allocation refused at the queue bound (or by the system allocator): a slot had to be
    /// evicted and the ring could not grow. Any other operation is recorded, beyond the bound
    /// if need be; if even that is refused it is counted as lost.
    ///
    /// `hint` must only ever be used with this table (it is set to point into it).
    #[inline]
    #[must_use]
    pub(crate) fn record(&self, key: Key, op: Op, hint: &Hint) -> bool {
        let p = hint.0.get();
        if !p.is_null() {
            // SAFETY: a non-null hint was set by `record_cold` of this same table (the caller's
            // contract) to one of its slots, which live as long as the table.
            let slot = unsafe { &*p };
            if slot.holds(key) {
                slot.apply(op);
                self.count_size(op);
                return true;
            }
        }
        self.record_cold(key, op, hint)
    }

    /// Owner only: records `op` if `key` is in the slot the thread used last; false (and
    /// nothing done) otherwise. The call-free part of [`ThreadState::record`].
    #[inline(always)]
    pub(crate) fn record_hinted(&self, key: Key, op: Op, hint: &Hint) -> bool {
        let p = hint.0.get();
        if p.is_null() {
            return false;
        }
        // SAFETY: as in `record`.
        let slot = unsafe { &*p };
        if !slot.holds(key) {
            return false;
        }
        slot.apply(op);
        self.count_size(op);
        true
    }

    /// The size histogram and realloc growth, for operations recorded here (a refused one is
    /// counted by whoever records it: the fallback's consumer, or the overflow counters).
    #[inline(always)]
    fn count_size(&self, op: Op) {
        match op {
            Op::Alloc(n) => bump(&self.sizes[size_bucket(n)], 1),
            Op::Grow(n) => bump(&self.grown, n),
            _ => {}
        }
    }

    #[cold]
    #[inline(never)]
    fn record_cold(&self, key: Key, op: Op, hint: &Hint) -> bool {
        let start = hash(key);
        let mut empty = None;
        for i in 0..PROBE {
            let idx = (start + i) & (SLOTS - 1);
            let slot = &self.slots[idx];
            if slot.holds(key) {
                hint.0.set(slot);
                slot.apply(op);
                self.count_size(op);
                return true;
            }
            if empty.is_none() && slot.is_empty() {
                empty = Some(idx);
            }
        }
        let idx = match empty {
            Some(idx) => idx,
            None => {
                // Evict a slot of the window, not the one this thread used last (likely its
                // current task and span, about to be used again): its tenancy goes to the ring.
                let hinted = hint.0.get();
                let idx = (0..PROBE)
                    .map(|i| (start + i) & (SLOTS - 1))
                    .find(|&i| !std::ptr::eq(&self.slots[i], hinted))
                    .unwrap_or(start & (SLOTS - 1));
                if !self.retire(idx, !op.is_alloc()) {
                    if op.is_alloc() {
                        return false;
                    }
                    // The system allocator refused even a chunk: the operation is lost.
                    super::budget::LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return true;
                }
                idx
            }
        };
        let slot = &self.slots[idx];
        slot.reassign(key);
        hint.0.set(slot);
        slot.apply(op);
        self.count_size(op);
        true
    }

    /// Owner only: push slot `idx`'s tenancy into the ring. False when the ring cannot grow
    /// (see [`Ring::push`]).
    fn retire(&self, idx: usize, beyond: bool) -> bool {
        let slot = &self.slots[idx];
        let c = slot.load_counters();
        let key = slot.key();
        self.ring.push(
            [
                idx as u64,
                slot.seq.load(Ordering::Relaxed),
                key.task,
                key.span,
                c.alloc_bytes,
                c.allocs,
                c.free_bytes,
                c.frees,
            ],
            beyond,
        )
    }

    /// Aggregator: adds this thread's cumulative size histogram to `counts` and its realloc
    /// growth to `grown`.
    pub(crate) fn add_sizes(&self, counts: &mut [u64; SIZE_BUCKETS], grown: &mut u64) {
        for (c, a) in counts.iter_mut().zip(&self.sizes) {
            *c = c.wrapping_add(a.load(Ordering::Relaxed));
        }
        *grown = grown.wrapping_add(self.grown.load(Ordering::Relaxed));
    }

    /// Every tenancy of `key` not yet consumed by the aggregator: retired ones still in the
    /// ring and the current one in the table. For the aggregator's lock holder only (the ring
    /// is read without being consumed, so the consumer must not advance meanwhile).
    ///
    /// The ring is only looked at while it holds at most [`PEEK_RING_MAX`] entries (a fold's
    /// worth at most, normally): a stalled aggregator must not make every peek walk its whole
    /// backlog. Past that, tenancies retired since the last fold are left out.
    pub(crate) fn peek(&self, key: Key, mut f: impl FnMut(Reading)) {
        if self.ring.len() <= PEEK_RING_MAX {
            self.ring.peek(|w| {
                if let Queued::Tenancy(r) = queued(w) {
                    if r.key == key {
                        f(r);
                    }
                }
            });
        }
        let start = hash(key);
        for i in 0..PROBE {
            let idx = (start + i) & (SLOTS - 1);
            if let Some(r) = read_slot(idx, &self.slots[idx]).filter(|r| r.key == key) {
                f(r);
            }
        }
    }

    /// How many retired tenancies wait in the ring (the aggregator folds early when many do).
    pub(crate) fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// Owner only: queues lifecycle event `w` (its first word has [`EVENT`] set) behind the
    /// tenancies retired so far. Always queued (beyond the queue bound if need be); false only
    /// if the system allocator refused a chunk.
    pub(crate) fn push_event(&self, w: super::ring::Words) -> bool {
        debug_assert!(w[0] & EVENT != 0);
        self.ring.push(w, true)
    }

    /// Aggregator only (single consumer): what was queued since the last read (retired
    /// tenancies and events), without the slots.
    pub(crate) fn read_queued(&self, mut f: impl FnMut(Queued)) {
        self.ring.drain(|w| f(queued(w)));
    }

    /// Aggregator only (single consumer): everything queued first (retired tenancies and
    /// events, in the order the owner queued them), then every occupied slot as it is now. A
    /// slot being rewritten at this instant is skipped (it is read next time).
    pub(crate) fn read(&self, mut f: impl FnMut(Queued)) {
        self.ring.drain(|w| f(queued(w)));
        for (idx, slot) in self.slots.iter().enumerate() {
            if let Some(r) = read_slot(idx, slot) {
                f(Queued::Tenancy(r));
            }
        }
    }
}

/// First-word flag of a queue entry that is a lifecycle event (a retired tenancy's first word
/// is its slot number, below [`SLOTS`]).
pub(crate) const EVENT: u64 = 1 << 63;

/// What a thread's queue holds: a tenancy's counters, or an event the thread sent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Queued {
    Tenancy(Reading),
    Event(super::ring::Words),
}

fn queued(w: super::ring::Words) -> Queued {
    if w[0] & EVENT != 0 {
        Queued::Event(w)
    } else {
        Queued::Tenancy(retired(w))
    }
}

/// A retired tenancy as the ring holds it.
fn retired(v: super::ring::Words) -> Reading {
    Reading {
        slot: v[0] as u32,
        seq: v[1],
        key: Key {
            task: v[2],
            span: v[3],
        },
        counters: Counters {
            alloc_bytes: v[4],
            allocs: v[5],
            free_bytes: v[6],
            frees: v[7],
        },
        last: true,
    }
}

/// Seqlock read of one slot: `None` if empty or being rewritten.
fn read_slot(idx: usize, slot: &Slot) -> Option<Reading> {
    let s1 = slot.seq.load(Ordering::Acquire);
    if s1 & 1 == 1 {
        return None;
    }
    let empty = slot.is_empty();
    let key = slot.key();
    let counters = slot.load_counters();
    fence(Ordering::Acquire);
    let s2 = slot.seq.load(Ordering::Relaxed);
    if s1 != s2 || empty {
        return None;
    }
    Some(Reading {
        slot: idx as u32,
        seq: s1,
        key,
        counters,
        last: false,
    })
}

/// The aggregator's memory of what it has applied from one [`ThreadState`]: turns cumulative
/// readings into exact deltas, once each. The common case (a slot's current tenancy) is an
/// array lookup; only tenancies replaced before their retired entry was read wait in a map.
#[derive(Debug)]
pub(crate) struct Applied {
    /// Per slot: the tenancy last read (sequence number, counters already applied).
    current: Vec<Option<(u64, Counters)>>,
    /// Tenancies replaced in their slot whose retired entry has not been read yet.
    older: std::collections::HashMap<(u32, u64), Counters>,
    /// Per slot: tenancies with a smaller sequence number are finished (their retired entry
    /// was applied); late readings of them are ignored.
    finished: Vec<u64>,
}

impl Default for Applied {
    fn default() -> Self {
        Applied {
            current: vec![None; SLOTS],
            older: std::collections::HashMap::new(),
            finished: vec![0; SLOTS],
        }
    }
}

impl Applied {
    /// Counters of `r`'s tenancy already applied.
    fn applied(&self, r: &Reading) -> Counters {
        match self.current[r.slot as usize] {
            Some((seq, c)) if seq == r.seq => c,
            _ => self
                .older
                .get(&(r.slot, r.seq))
                .copied()
                .unwrap_or_default(),
        }
    }

    /// What of `r` has not been applied yet, without recording it as applied.
    pub(crate) fn pending(&self, r: &Reading) -> Counters {
        if r.seq < self.finished[r.slot as usize] {
            return Counters::default();
        }
        r.counters.since(self.applied(r))
    }

    /// The delta of `r` not yet applied, or `None` if nothing new.
    pub(crate) fn delta(&mut self, r: &Reading) -> Option<Counters> {
        let slot = r.slot as usize;
        if r.seq < self.finished[slot] {
            return None;
        }
        let before = self.applied(r);
        if r.last {
            // Final counters: the tenancy is done.
            self.finished[slot] = r.seq.wrapping_add(1);
            match self.current[slot] {
                Some((seq, _)) if seq == r.seq => self.current[slot] = None,
                _ => {
                    self.older.remove(&(r.slot, r.seq));
                }
            }
        } else {
            match self.current[slot] {
                Some((seq, c)) if seq < r.seq => {
                    // The slot has a new tenant; the old one's retired entry is still to come.
                    self.older.insert((r.slot, seq), c);
                    self.current[slot] = Some((r.seq, r.counters));
                }
                Some((seq, _)) if seq > r.seq => {
                    self.older.insert((r.slot, r.seq), r.counters);
                }
                _ => self.current[slot] = Some((r.seq, r.counters)),
            }
        }
        let d = r.counters.since(before);
        (!d.is_zero()).then_some(d)
    }
}

/// A fresh table on the heap, for tests (the pool maps them instead).
#[cfg(all(test, not(loom)))]
pub(crate) fn fresh() -> Box<ThreadState> {
    // SAFETY: a table is atomics (and arrays and structs of them) only, all valid and empty
    // when all-zero: the same claim the pool's zeroed mapping relies on.
    unsafe { Box::<ThreadState>::new_zeroed().assume_init() }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn drain(
        ts: &ThreadState,
        applied: &mut Applied,
        out: &mut std::collections::HashMap<Key, Counters>,
    ) {
        ts.read(|q| {
            let Queued::Tenancy(r) = q else { return };
            if let Some(d) = applied.delta(&r) {
                let e = out.entry(r.key).or_default();
                e.alloc_bytes += d.alloc_bytes;
                e.allocs += d.allocs;
                e.free_bytes += d.free_bytes;
                e.frees += d.frees;
            }
        });
    }

    #[test]
    fn many_keys_are_counted_exactly_through_evictions() {
        let ts = fresh();
        let hint = Hint::new();
        let mut applied = Applied::default();
        let mut out = std::collections::HashMap::new();
        // 1000 keys, far more than the table holds: forces evictions through the ring.
        for round in 0..3u64 {
            for k in 0..1000u64 {
                let key = Key {
                    task: k,
                    span: round,
                };
                assert!(ts.record(key, Op::Alloc(k + 1), &hint));
                assert!(ts.record(key, Op::Free(1), &hint));
                if k % 97 == 0 {
                    drain(&ts, &mut applied, &mut out);
                }
            }
        }
        drain(&ts, &mut applied, &mut out);
        drain(&ts, &mut applied, &mut out);
        assert_eq!(out.len(), 3000);
        for (key, c) in &out {
            assert_eq!(c.alloc_bytes, key.task + 1, "{key:?}");
            assert_eq!((c.allocs, c.free_bytes, c.frees), (1, 1, 1), "{key:?}");
        }
    }

    #[test]
    fn sizes_fall_in_their_power_of_four_buckets() {
        let cases = [
            (1, 0),
            (16, 0),
            (17, 1),
            (64, 1),
            (65, 2),
            (256, 2),
            (1024, 3),
            (1025, 4),
            (16 << 20, 10),
            ((16 << 20) + 1, 11),
            (u64::MAX, 11),
        ];
        for (n, b) in cases {
            assert_eq!(size_bucket(n), b, "{n} bytes");
        }
        let ts = fresh();
        let hint = Hint::new();
        for n in [8u64, 100, 100, 5000] {
            assert!(ts.record(Key { task: 1, span: 0 }, Op::Alloc(n), &hint));
        }
        assert!(ts.record(Key { task: 1, span: 0 }, Op::Free(100), &hint));
        assert!(ts.record(Key { task: 1, span: 0 }, Op::Grow(30), &hint));
        let (mut counts, mut grown) = ([0; SIZE_BUCKETS], 0);
        ts.add_sizes(&mut counts, &mut grown);
        assert_eq!(counts, [1, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(grown, 30);
    }

    #[test]
    fn a_consumer_that_falls_far_behind_loses_nothing() {
        let ts = fresh();
        let hint = Hint::new();
        // Twenty chunks' worth of evictions with no read in between: the ring grows.
        let n = (SLOTS + super::super::ring::CHUNK * 20) as u64 * 4;
        for k in 0..n {
            assert!(ts.record(Key { task: k, span: 0 }, Op::Alloc(8), &hint));
        }
        assert!(ts.ring_len() > super::super::ring::CHUNK * 20);
        let mut applied = Applied::default();
        let mut out = std::collections::HashMap::new();
        drain(&ts, &mut applied, &mut out);
        assert_eq!(out.len() as u64, n);
        assert!(out.values().all(|c| c.alloc_bytes == 8 && c.allocs == 1));
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// An owner recording (with evictions) while the aggregator reads: every byte is applied
    /// exactly once.
    #[test]
    fn concurrent_reader_applies_each_byte_once() {
        // A preemption bound keeps the model finite and fast; bugs in protocols like these
        // show up within two preemptions (loom's documentation recommends 2-3).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let ts = Arc::new(ThreadState::new());
            let owner = {
                let ts = ts.clone();
                loom::thread::spawn(move || {
                    let hint = Hint::new();
                    // The second key evicts the first (one slot): the race under test is a
                    // reader meeting a slot being retired and reused.
                    for k in 0..2u64 {
                        assert!(ts.record(Key { task: k, span: 0 }, Op::Alloc(10 + k), &hint));
                    }
                })
            };
            let mut applied = Applied::default();
            let mut total = 0u64;
            let mut add = |q: Queued| {
                if let Queued::Tenancy(r) = q {
                    total += applied.delta(&r).map_or(0, |d| d.alloc_bytes);
                }
            };
            ts.read(&mut add);
            owner.join().unwrap();
            ts.read(&mut add);
            assert_eq!(total, 21, "each byte applied exactly once");
        });
    }
}
