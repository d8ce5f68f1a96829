//! A thread table's queue of retired slot tenancies: single producer (the owning thread),
//! single consumer (the aggregator), unbounded.
//!
//! Entries live in 16 KiB chunks linked in order, taken from the system allocator (never
//! through the global allocator) when the producer fills one, so a slow consumer never makes
//! the producer drop or wait. The producer writes an entry, then publishes it with a release
//! store of `tail`; a chunk's `next` link is stored before the first entry of the next chunk
//! is published, so a consumer that acquires `tail` past a chunk boundary finds the link. The
//! consumer hands a chunk it has read to the producer through `spare` (one chunk kept for
//! reuse), or frees it. Chunk memory counts against the queue bound ([`budget`](super::budget)).
//!
//! All fields are zero in a fresh table: the first push allocates the first chunk.

use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, CacheLine, Ordering};

/// Entries per chunk.
#[cfg(not(loom))]
pub(crate) const CHUNK: usize = 255;
#[cfg(loom)]
pub(crate) const CHUNK: usize = 2;
/// Bytes of one chunk.
pub(crate) const CHUNK_BYTES: usize = std::mem::size_of::<Chunk>();

/// One retired tenancy: slot, sequence number, key and the four counters.
pub(crate) type Words = [u64; 8];

#[derive(Debug)]
struct Cell([AtomicU64; 8]);

#[derive(Debug)]
#[repr(C, align(64))]
struct Chunk {
    next: AtomicPtr<Chunk>,
    cells: [Cell; CHUNK],
}

impl Chunk {
    /// A chunk as loom builds it (elsewhere chunks come zeroed from the system allocator).
    fn new() -> Chunk {
        Chunk {
            next: AtomicPtr::new(std::ptr::null_mut()),
            cells: std::array::from_fn(|_| Cell(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

/// See the module docs. The producer's fields come first; the consumer's start on a cache
/// line of their own (`head` is aligned), so a push never shares a line with what a drain
/// writes.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Ring {
    /// Entries published (producer).
    tail: AtomicUsize,
    /// Producer only: the chunk entry `tail` goes to (null before the first push).
    tail_chunk: AtomicPtr<Chunk>,
    /// The first chunk, for the consumer's first read.
    first: AtomicPtr<Chunk>,
    /// Entries consumed (consumer).
    head: CacheLine<AtomicUsize>,
    /// Consumer only: the chunk entry `head` is in.
    head_chunk: AtomicPtr<Chunk>,
    /// A chunk the consumer is done with, for the producer to reuse.
    spare: AtomicPtr<Chunk>,
}

impl Ring {
    /// An empty ring (what all-zero memory holds), for tests and loom models.
    #[cfg(any(test, loom))]
    pub(crate) fn new() -> Ring {
        Ring {
            tail: AtomicUsize::new(0),
            tail_chunk: AtomicPtr::new(std::ptr::null_mut()),
            first: AtomicPtr::new(std::ptr::null_mut()),
            head: CacheLine(AtomicUsize::new(0)),
            head_chunk: AtomicPtr::new(std::ptr::null_mut()),
            spare: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Producer only: appends `w`. False (nothing appended) if a new chunk was needed and
    /// refused: at the queue bound unless `beyond`, or by the system allocator.
    pub(crate) fn push(&self, w: Words, beyond: bool) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        let pos = t % CHUNK;
        let mut c = self.tail_chunk.load(Ordering::Relaxed);
        if pos == 0 {
            let Some(n) = self.new_chunk(beyond) else {
                return false;
            };
            if c.is_null() {
                self.first.store(n, Ordering::Release);
            } else {
                // SAFETY: `c` is the producer's current chunk; the consumer frees a chunk only
                // once it has read past its end, which needs this link first.
                unsafe { &*c }.next.store(n, Ordering::Release);
            }
            self.tail_chunk.store(n, Ordering::Relaxed);
            c = n;
        }
        // SAFETY: `c` is the producer's chunk (allocated above or earlier, not yet handed to
        // the consumer's recycling: that needs an entry past it to be published).
        let cell = &unsafe { &*c }.cells[pos];
        for (a, v) in cell.0.iter().zip(w) {
            a.store(v, Ordering::Relaxed);
        }
        self.tail.store(t.wrapping_add(1), Ordering::Release);
        true
    }

    fn new_chunk(&self, beyond: bool) -> Option<*mut Chunk> {
        let s = self.spare.swap(std::ptr::null_mut(), Ordering::Acquire);
        if !s.is_null() {
            // SAFETY: the consumer stored it after it was done with it; only we take it.
            unsafe { &*s }
                .next
                .store(std::ptr::null_mut(), Ordering::Relaxed);
            return Some(s);
        }
        if !super::budget::take(CHUNK_BYTES, beyond) {
            return None;
        }
        // SAFETY: a chunk is atomics only: all-zero is `Chunk::new()`.
        let n = unsafe { crate::sync::alloc_zeroed(Chunk::new) };
        if n.is_null() {
            super::budget::give_back(CHUNK_BYTES);
            return None;
        }
        Some(n)
    }

    /// Entries published and not yet consumed.
    pub(crate) fn len(&self) -> usize {
        self.tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head.load(Ordering::Relaxed))
    }

    /// Consumer only: every published entry, in order; consumed.
    pub(crate) fn drain(&self, f: impl FnMut(Words)) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let c = self.walk(head, tail, f, true);
        self.head_chunk.store(c, Ordering::Relaxed);
        self.head.store(tail, Ordering::Release);
    }

    /// The consumer's lock holder: every published entry, not consumed (the consumer must not
    /// run meanwhile).
    pub(crate) fn peek(&self, f: impl FnMut(Words)) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        self.walk(head, tail, f, false);
    }

    /// Reads entries `from..to`; with `recycle`, chunks read to their end are handed back.
    /// Returns the chunk entry `to` is in (or the last one read).
    fn walk(&self, from: usize, to: usize, mut f: impl FnMut(Words), recycle: bool) -> *mut Chunk {
        let mut c = self.head_chunk.load(Ordering::Relaxed);
        let mut i = from;
        while i != to {
            let pos = i % CHUNK;
            if c.is_null() {
                c = self.first.load(Ordering::Acquire);
            } else if pos == 0 {
                // SAFETY: `c` is the chunk of entry `i - 1`, which we read; entry `i` is
                // published, so its chunk's link (stored before) is visible.
                let n = unsafe { &*c }.next.load(Ordering::Acquire);
                if recycle {
                    self.recycle(c);
                }
                c = n;
            }
            // SAFETY: entry `i` is published (`i < to <= tail`, acquired), in chunk `c`, which
            // the producer no longer frees or reuses (only the consumer hands chunks back).
            let cell = &unsafe { &*c }.cells[pos];
            f(std::array::from_fn(|k| cell.0[k].load(Ordering::Relaxed)));
            i = i.wrapping_add(1);
        }
        c
    }

    /// Consumer: chunk `c` is read to its end and the producer has moved on.
    fn recycle(&self, c: *mut Chunk) {
        if self
            .spare
            .compare_exchange(
                std::ptr::null_mut(),
                c,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            // SAFETY: `c` came from `alloc_zeroed` in `new_chunk`; nobody uses it any more
            // (the producer writes only to later chunks, and `spare` holds another one).
            unsafe { crate::sync::free(c) };
            super::budget::give_back(CHUNK_BYTES);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_across_chunks_and_chunks_are_reused() {
        let r = Ring::new();
        let mut next = 0u64;
        let mut seen = Vec::new();
        for round in 0..5 {
            for _ in 0..(CHUNK * 3 + 7) {
                assert!(r.push([next; 8], false));
                next += 1;
            }
            let mut peeked = 0;
            r.peek(|_| peeked += 1);
            assert_eq!(peeked, r.len(), "round {round}");
            r.drain(|w| seen.push(w[0]));
            assert_eq!(r.len(), 0);
        }
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A producer filling more than a chunk while the consumer drains: every entry comes out
    /// once, in order, and chunks handed back are reused safely.
    #[test]
    fn producer_and_consumer_across_chunk_boundaries() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let r = Arc::new(Ring::new());
            let p = {
                let r = r.clone();
                loom::thread::spawn(move || {
                    for v in 1..=5u64 {
                        assert!(r.push([v; 8], true));
                    }
                })
            };
            let mut seen = Vec::new();
            r.drain(|w| seen.push(w[0]));
            r.drain(|w| seen.push(w[0]));
            p.join().unwrap();
            r.drain(|w| seen.push(w[0]));
            assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        });
    }
}
