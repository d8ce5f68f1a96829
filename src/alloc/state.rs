//! Process-wide state: the allocator's one mode, the settings taken at start, and the pool of
//! thread tables.
//!
//! The pool is one anonymous memory mapping of `max_threads` tables, made at start and never
//! unmapped (threads may still touch their tables while they exit, at any time). A table is
//! all atomics, valid when all-zero, so the mapping needs no initialisation: a page becomes
//! resident only when a thread that claimed its table writes to it.

use std::ptr;

use super::slots::ThreadState;
use crate::sync::statics::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

/// What the allocator does with an operation: the one encoding of heapspan's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Mode {
    /// Not running (before start, after stop): the header is written, nothing is counted.
    Off = 0,
    /// Counting.
    Counting = 1,
    /// Counting, every allocation indexed (the live index in full mode).
    Indexed = 2,
    /// Counting, sampled allocations indexed.
    Sampled = 3,
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Off as u8);
static POOL: AtomicPtr<Pool> = AtomicPtr::new(ptr::null_mut());
/// Next heapspan span instance (0 means "no span").
static NEXT_SPAN: AtomicU64 = AtomicU64::new(1);

/// The current mode.
#[inline(always)]
pub(crate) fn mode() -> Mode {
    let m = MODE.load(Ordering::Relaxed);
    // SAFETY: `MODE` is only ever stored from a `Mode` (`start`, `stop`; its initial value is
    // `Mode::Off as u8`), so it always holds one of `Mode`'s discriminants. (A checked match
    // costs the allocation hot path a compare and a conditional move on every call.)
    unsafe { std::mem::transmute::<u8, Mode>(m) }
}

/// Whether the live index is on.
pub(crate) fn indexing() -> bool {
    mode() >= Mode::Indexed
}

/// Queue entries (two 16 KiB chunks) past which a thread's queue makes the
/// aggregator fold early.
pub(crate) const PRESSURE: usize = 2 * super::ring::CHUNK;

/// The thread tables, created once at start and never freed.
#[derive(Debug)]
pub(crate) struct Pool {
    tables: *const ThreadState,
    capacity: usize,
    /// One more than the highest table ever claimed (the aggregator and the scanner read
    /// `..high`; tables never claimed are all-zero, which reads as empty).
    pub(crate) high: AtomicU64,
    /// Operations of threads that found no table free.
    pub(crate) fallback: super::fallback::Fallback,
}

// SAFETY: `tables` points to `capacity` tables that live for the rest of the process and are
// made of atomics only; sharing them between threads is what they are for.
unsafe impl Sync for Pool {}
// SAFETY: as above; the pool owns nothing thread-bound.
unsafe impl Send for Pool {}

impl Pool {
    /// A pool of `tables` (loom models build their tables; the process's pool is a mapping).
    #[cfg(loom)]
    pub(crate) fn of(tables: &'static [ThreadState]) -> Pool {
        Pool {
            tables: tables.as_ptr(),
            capacity: tables.len(),
            high: AtomicU64::new(0),
            fallback: super::fallback::Fallback::new(),
        }
    }

    /// Every table that was ever claimed (and the never-claimed ones below the highest, which
    /// read as empty).
    pub(crate) fn claimed(&self) -> &[ThreadState] {
        let high = (self.high.load(Ordering::Acquire) as usize).min(self.capacity);
        // SAFETY: `tables` holds `capacity` valid tables (all-zero or in use) for the life of
        // the process, and `high <= capacity`.
        unsafe { std::slice::from_raw_parts(self.tables, high) }
    }

    /// Every table of the pool.
    pub(crate) fn all(&self) -> &[ThreadState] {
        // SAFETY: as in `claimed`.
        unsafe { std::slice::from_raw_parts(self.tables, self.capacity) }
    }

    /// Bytes of the pool's mapping that are resident right now.
    pub(crate) fn resident_bytes(&self) -> u64 {
        super::pages::resident(
            self.tables.cast(),
            self.capacity * std::mem::size_of::<ThreadState>(),
        )
    }

    /// True when some thread's queue holds more than [`PRESSURE`] entries: the aggregator
    /// should fold now rather than at its next interval (to keep queue memory small; nothing
    /// is lost either way).
    pub(crate) fn under_pressure(&self) -> bool {
        self.claimed().iter().any(|t| t.ring_len() > PRESSURE)
    }
}

/// The pool, once started.
#[inline]
pub(crate) fn pool() -> Option<&'static Pool> {
    let p = POOL.load(Ordering::Acquire);
    // SAFETY: POOL is only ever set to a leaked, never-freed `Pool`.
    unsafe { p.as_ref() }
}

/// Maps the pool and turns counting on in `mode` (the live index, if on, is configured
/// already). Fails if heapspan already runs, or if the mapping cannot be made.
pub(crate) fn start(max_threads: usize, mode: Mode) -> Result<&'static Pool, ()> {
    let bytes = max_threads * std::mem::size_of::<ThreadState>();
    let tables = super::pages::map_zeroed(bytes).ok_or(())?;
    let pool: &'static Pool = Box::leak(Box::new(Pool {
        tables: tables.cast(),
        capacity: max_threads,
        high: AtomicU64::new(0),
        fallback: super::fallback::Fallback::new(),
    }));
    if POOL
        .compare_exchange(
            ptr::null_mut(),
            ptr::from_ref(pool).cast_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return Err(());
    }
    MODE.store(mode.max(Mode::Counting) as u8, Ordering::Release);
    Ok(pool)
}

/// Turns counting off: heapspan passes through again (it cannot be restarted).
pub(crate) fn stop() {
    MODE.store(Mode::Off as u8, Ordering::Release);
}

/// A fresh heapspan span instance.
/// Instance 0 means "no span": it is skipped when the 40-bit counter wraps.
pub(crate) fn next_span_instance() -> u64 {
    loop {
        let i = NEXT_SPAN.fetch_add(1, Ordering::Relaxed) & super::header::SPAN_MASK;
        if i != 0 {
            return i;
        }
    }
}
