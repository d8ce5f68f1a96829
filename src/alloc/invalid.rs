//! Frees the allocator does not recognise: sorted out, never forwarded, and reported through a
//! preallocated queue.
//!
//! A free or realloc whose header check fails ([`header::check`]) comes here, on its cold
//! side. Nothing of the block is trusted: the header words are compared, never followed, and
//! the block is **not** given to the inner allocator (a second free of a block glibc already
//! holds is how glibc aborts or its lists get corrupted; a foreign pointer is not ours to
//! free). What is known about the free becomes a [`Record`] in a fixed array of this module
//! (the allocator must not allocate here), which the window stage drains into the
//! `dealloc.invalid` finding. Which case it is:
//!
//! - **in custody**: the header is valid with [`CUSTODY`](header::CUSTODY) set: a block handed
//!   to foreign code is freed by Rust. The block stays allocated (foreign code may still use
//!   it);
//! - **double free**: the block's tombstone names it ([`header::read_tombstone`]), or, with the
//!   live index on, it is an indexed block whose entry no longer names it, or it is among the
//!   most recent indexed frees its thread tables remember ([`super::recent`], which also names
//!   the task and span of the first free);
//! - **layout mismatch**: with the live index on, the block is a live indexed block whose size
//!   or alignment differs from the free's layout (its own size word says so);
//! - **unrecognised**: anything else: a pointer heapspan never handed out, a plain block freed
//!   with another size, or a second free whose traces the inner allocator reused.
//!
//! With [`InvalidFreeAction::Abort`](crate::InvalidFreeAction::Abort) the freeing thread then
//! waits (at most [`ABORT_WAIT`]; not at all on heapspan's own threads, which write the
//! report) until the window stage has reported the record and the export has written it, and
//! aborts the process.
//!
//! Accounting is untouched by an invalid free: nothing is recorded as freed, which is true of
//! a block that is not given back (in custody, a wrong layout), and of a second free (the
//! first one was counted).

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;
use std::time::Duration;

use super::header::{self, Key, EXT};
use super::local::{local, Local};
use super::{index, Allocator};
use crate::sync::statics::{AtomicBool, AtomicU64, Ordering};

/// What kind of invalid free a [`Record`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Case {
    DoubleFree = 1,
    LayoutMismatch = 2,
    InCustody = 3,
    Unrecognised = 4,
}

impl Case {
    fn from_u64(v: u64) -> Option<Case> {
        Some(match v {
            1 => Case::DoubleFree,
            2 => Case::LayoutMismatch,
            3 => Case::InCustody,
            4 => Case::Unrecognised,
            _ => return None,
        })
    }
}

/// One invalid free, as the window stage reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) case: Case,
    /// A realloc, not a free.
    pub(crate) realloc: bool,
    /// The block's address (never exported: it tells the finding apart from others).
    pub(crate) addr: usize,
    /// The size and alignment the free gave.
    pub(crate) size: u64,
    pub(crate) align: u64,
    /// The size the block was allocated with, when known (a layout mismatch).
    pub(crate) allocated_size: Option<u64>,
    /// Who allocated the block, when known.
    pub(crate) allocated_by: Option<Key>,
    /// Who freed it the first time, when known (a double free found among the thread tables' recent frees, [`super::recent`]).
    pub(crate) first_free_by: Option<Key>,
    /// Who was current at this free.
    pub(crate) freed_by: Key,
}

/// Records the queue holds until the window stage drains them.
pub(crate) const QUEUE: usize = 64;
/// How long an aborting free waits for its report to be written.
pub(crate) const ABORT_WAIT: Duration = Duration::from_secs(10);

const UNKNOWN: u64 = u64::MAX;

struct Slot {
    /// `n + 1` once record `n` is complete in it.
    seq: AtomicU64,
    words: [AtomicU64; 12],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    seq: AtomicU64::new(0),
    words: [const { AtomicU64::new(0) }; 12],
};

static SLOTS: [Slot; QUEUE] = [EMPTY_SLOT; QUEUE];
/// Records claimed (the next record's number).
static HEAD: AtomicU64 = AtomicU64::new(0);
/// Records drained (only the window stage writes it).
static TAIL: AtomicU64 = AtomicU64::new(0);
/// Records lost because the queue was full.
static LOST: AtomicU64 = AtomicU64::new(0);
/// Whether an invalid free aborts the process after its report.
pub(crate) static ABORT: AtomicBool = AtomicBool::new(false);
/// Records reported through to the export (set by the stage that wrote them).
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// Remembers a valid free of an indexed block in this thread's table: who allocated it (`key`)
/// and who frees it (`now`). Threads without a table of their own remember nothing (it is
/// evidence, not bookkeeping).
#[inline]
pub(crate) fn remember_free(l: &Local, user: *mut u8, key: Key, now: Key) {
    if let Some(st) = l.table() {
        st.recent_frees().remember(user, key.without_ext(), now);
    }
}

/// The remembered free of `user` (allocated under `by`, when known) in any thread table:
/// `(allocated by, freed by)`.
fn recent(user: *mut u8, by: Option<Key>) -> Option<(Key, Key)> {
    let pool = super::state::pool()?;
    let tables = pool.claimed().iter().map(|t| t.recent_frees());
    super::recent::find_in(tables, user, by).map(|f| (f.allocated_by, f.freed_by))
}

/// Writes `r` into the queue, or counts it lost when the queue is full. A number is claimed
/// only with room for it, so every claimed record gets written and [`drain`] never waits at a
/// gap (a lost record claiming a number left one the drain took for a record being written).
fn push(r: &Record) -> Option<u64> {
    let mut n = HEAD.load(Ordering::Acquire);
    loop {
        if n.wrapping_sub(TAIL.load(Ordering::Acquire)) >= QUEUE as u64 {
            LOST.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match HEAD.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => n = now,
        }
    }
    let slot = &SLOTS[(n % QUEUE as u64) as usize];
    let key = |k: Option<Key>| k.map_or((UNKNOWN, UNKNOWN), |k| (k.task, k.span));
    let (at, asp) = key(r.allocated_by);
    let (ft, fsp) = key(r.first_free_by);
    let words = [
        r.case as u64 | (u64::from(r.realloc) << 8),
        r.addr as u64,
        r.size,
        r.align,
        r.allocated_size.unwrap_or(UNKNOWN),
        at,
        asp,
        ft,
        fsp,
        r.freed_by.task,
        r.freed_by.span,
        0,
    ];
    for (w, v) in slot.words.iter().zip(words) {
        w.store(v, Ordering::Relaxed);
    }
    slot.seq.store(n + 1, Ordering::Release);
    Some(n)
}

/// The records written since the last drain, in order (the window stage's call), and the
/// number to pass to [`mark_reported`] once they are reported. Stops at a record still being
/// written.
pub(crate) fn drain() -> (Vec<Record>, u64) {
    let mut out = Vec::new();
    let head = HEAD.load(Ordering::Acquire);
    let mut n = TAIL.load(Ordering::Relaxed);
    while n < head {
        let slot = &SLOTS[(n % QUEUE as u64) as usize];
        let seq = slot.seq.load(Ordering::Acquire);
        if seq != n + 1 {
            if seq > n + 1 || n + QUEUE as u64 <= head {
                // Overwritten or lost: skip it.
                n += 1;
                continue;
            }
            break;
        }
        let w: [u64; 12] = std::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
        let key = |t: u64, s: u64| (t != UNKNOWN).then_some(Key::new(t, s));
        if let Some(case) = Case::from_u64(w[0] & 0xFF) {
            out.push(Record {
                case,
                realloc: w[0] >> 8 & 1 != 0,
                addr: w[1] as usize,
                size: w[2],
                align: w[3],
                allocated_size: (w[4] != UNKNOWN).then_some(w[4]),
                allocated_by: key(w[5], w[6]),
                first_free_by: key(w[7], w[8]),
                freed_by: Key::new(w[9], w[10]),
            });
        }
        n += 1;
    }
    TAIL.store(n, Ordering::Release);
    (out, n)
}

/// Records waiting to be drained.
pub(crate) fn pending() -> bool {
    HEAD.load(Ordering::Acquire) > TAIL.load(Ordering::Acquire)
}

/// Records lost because the queue was full.
pub(crate) fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// The stage that writes the reports says that the records drained up to `upto` (what
/// [`drain`] returned) are written.
pub(crate) fn mark_reported(upto: u64) {
    REPORTED.fetch_max(upto, Ordering::AcqRel);
}

/// Sorts out an invalid free (or realloc) of `user`, records it, and aborts if so configured.
/// `(t, s)` are the header words as read.
#[cold]
#[inline(never)]
fn classify(user: *mut u8, layout: Layout, t: u64, s: u64, realloc: bool) -> Record {
    let size = layout.size();
    let mut r = Record {
        case: Case::Unrecognised,
        realloc,
        addr: user as usize,
        size: size as u64,
        align: layout.align() as u64,
        allocated_size: None,
        allocated_by: None,
        first_free_by: None,
        freed_by: local().alloc_key(),
    };
    if let Some(key) = header::check_words(t, s, user, size) {
        // The tag holds, so the cold path was taken for the custody flag.
        r.case = Case::InCustody;
        r.allocated_by = Some(key.without_ext());
        return r;
    }
    // SAFETY: the caller was handed `user` for `size` bytes; read, not trusted.
    let tomb = unsafe { header::read_tombstone(user, size) }.map(|key| key.without_ext());
    if let Some((by, first)) = recent(user, tomb) {
        r.case = Case::DoubleFree;
        r.allocated_by = Some(by);
        r.first_free_by = Some(first);
        return r;
    }
    if let Some(key) = tomb {
        r.case = Case::DoubleFree;
        r.allocated_by = Some(key);
        return r;
    }
    if s & EXT != 0 {
        // Perhaps a live indexed block freed with another layout: its id word names it.
        // SAFETY: the 32 bytes below `user` are readable when it is one of ours (the flag is a
        // hint only: `names` checks the id against the index's own memory).
        let id = unsafe { index::word(user, 32).load(Ordering::Relaxed) };
        if index::names(id, user) {
            // SAFETY: `names` says the block is live and indexed: its size word is readable.
            let sw = unsafe { index::word(user, 24).load(Ordering::Relaxed) };
            let real = (sw & index::SIZE_MASK) as usize;
            if let Some(key) = header::check_words(t, s, user, real) {
                r.case = Case::LayoutMismatch;
                r.allocated_size = Some(real as u64);
                r.allocated_by = Some(key.without_ext());
            }
        }
    }
    r
}

/// Records `r` and, in abort mode, waits for its report and aborts.
fn report(r: &Record) {
    let n = push(r);
    if !ABORT.load(Ordering::Relaxed) {
        return;
    }
    let l = local();
    if let Some(n) = n {
        // heapspan's own threads write the report: they never wait for it.
        if !l.heapspan_own.get() {
            let step = Duration::from_millis(10);
            let mut waited = Duration::ZERO;
            while REPORTED.load(Ordering::Acquire) <= n && waited < ABORT_WAIT {
                std::thread::sleep(step);
                waited += step;
            }
        }
    }
    let msg = b"heapspan: invalid free detected; aborting (HEAPSPAN_ON_INVALID_FREE=abort)\n";
    // SAFETY: writing a static buffer to stderr; no allocation.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort();
}

/// The cold side of `dealloc` for a block whose header check failed: sorted out, reported,
/// never forwarded.
///
/// # Safety
/// `user` is a pointer the caller passed to `dealloc` with `layout`; nothing else is assumed
/// (the 16 bytes below it were already read).
#[cold]
#[inline(never)]
pub(crate) unsafe fn on_free(user: *mut u8, layout: Layout, t: u64, s: u64) {
    report(&classify(user, layout, t, s, false));
}

/// The cold side of `realloc` for a block whose header check failed: reported, the old block
/// left alone, and a new block of `new_size` handed out (with the old contents copied only for
/// a block in custody, the one case where they are known to be live).
///
/// # Safety
/// As for [`on_free`]; `new_size` is the caller's.
#[cold]
#[inline(never)]
pub(crate) unsafe fn on_realloc<A: GlobalAlloc>(
    alloc: &Allocator<A>,
    user: *mut u8,
    layout: Layout,
    new_size: usize,
    t: u64,
    s: u64,
) -> *mut u8 {
    let r = classify(user, layout, t, s, true);
    let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
        report(&r);
        return ptr::null_mut();
    };
    // SAFETY: a non-zero size (the caller's realloc contract).
    let nu = unsafe { alloc.alloc(new_layout) };
    if !nu.is_null() && r.case == Case::InCustody {
        // SAFETY: a valid live block of `layout.size()` bytes and a new distinct one.
        unsafe { ptr::copy_nonoverlapping(user, nu, layout.size().min(new_size)) };
    }
    report(&r);
    nu
}

/// A free of an indexed block whose header holds but whose entry no longer names it: a second
/// free (the first cleared the entry). Not forwarded.
///
/// # Safety
/// `user` was passed to `dealloc` with `layout`; `key` is what its header says.
#[cold]
#[inline(never)]
pub(crate) unsafe fn on_stale_ext(user: *mut u8, layout: Layout, key: Key) {
    report(&stale(user, layout, key, false));
}

/// [`on_stale_ext`] for a realloc: reported, and a new block handed out.
///
/// # Safety
/// As for [`on_stale_ext`].
#[cold]
#[inline(never)]
pub(crate) unsafe fn on_stale_ext_realloc<A: GlobalAlloc>(
    alloc: &Allocator<A>,
    user: *mut u8,
    layout: Layout,
    new_size: usize,
    key: Key,
) -> *mut u8 {
    let r = stale(user, layout, key, true);
    let nu = match Layout::from_size_align(new_size, layout.align()) {
        // SAFETY: a non-zero size (the caller's realloc contract).
        Ok(l) => unsafe { alloc.alloc(l) },
        Err(_) => ptr::null_mut(),
    };
    report(&r);
    nu
}

fn stale(user: *mut u8, layout: Layout, key: Key, realloc: bool) -> Record {
    let first = recent(user, Some(key.without_ext())).map(|(_, f)| f);
    Record {
        case: Case::DoubleFree,
        realloc,
        addr: user as usize,
        size: layout.size() as u64,
        align: layout.align() as u64,
        allocated_size: None,
        allocated_by: Some(key.without_ext()),
        first_free_by: first,
        freed_by: local().alloc_key(),
    }
}

/// Sets or clears the custody flag of live block `user` of this allocator: true if done, false
/// if `user` is not a live block of heapspan's allocator of `size` bytes (its header does not
/// check).
///
/// # Safety
/// `user` must point at least 16 bytes into readable memory (any heap pointer does); it is
/// written only when its header checks, i.e. when it is a live block of this allocator whose
/// owner is the caller.
pub(crate) unsafe fn set_custody(user: *mut u8, size: usize, on: bool) -> bool {
    // SAFETY: by the caller's contract; read, not trusted.
    let (t, s) = unsafe { header::read_raw(user) };
    let Some(key) = header::check_words(t, s, user, size) else {
        return false;
    };
    let flag = if on { header::CUSTODY } else { 0 };
    let (nt, ns) = header::tagged(Key::new(key.task, key.span | flag), user, size);
    if ns & EXT != 0 {
        // Indexed: the words are read by scans concurrently, so written atomically.
        // SAFETY: a live extended block of the caller's.
        unsafe {
            index::word(user, 16).store(nt, Ordering::Relaxed);
            index::word(user, 8).store(ns, Ordering::Relaxed);
        }
    } else {
        // SAFETY: a live block of the caller's: its header is its own memory.
        unsafe {
            let h = user.sub(header::HEADER_BYTES).cast::<u64>();
            h.write(nt);
            h.add(1).write(ns);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_queue() {
        let r = Record {
            case: Case::DoubleFree,
            realloc: true,
            addr: 0x1000,
            size: 256,
            align: 8,
            allocated_size: None,
            allocated_by: Some(Key::new(5, 6)),
            first_free_by: None,
            freed_by: Key::new(7, 8),
        };
        let before = drain();
        drop(before);
        assert!(push(&r).is_some());
        assert!(pending());
        assert_eq!(drain().0, vec![r]);
        assert!(!pending());

        // A full queue loses what does not fit, counted, and the next record still comes out.
        let lost_before = lost();
        for _ in 0..QUEUE + 3 {
            let _ = push(&r);
        }
        assert_eq!(lost() - lost_before, 3);
        assert_eq!(drain().0.len(), QUEUE);
        assert!(push(&r).is_some());
        assert_eq!(drain().0, vec![r], "no gap left behind by the lost records");
    }
}
