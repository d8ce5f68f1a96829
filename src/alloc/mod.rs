//! The global allocator wrapper: attributes every allocation to the current task and span.
//!
//! ```
//! #[global_allocator]
//! static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
//! # fn main() {}
//! ```
//!
//! # How an operation is recorded
//!
//! Each allocation gets a 16-byte header (`header`) just before the pointer handed to the
//! caller, holding its attribution key. A free reads the header back, so it is charged to the
//! task and span that *allocated* the memory, whichever thread frees it. Counting goes to the
//! current thread's own table (`slots`; the `record` module has the rest of the way); the
//! common case makes no syscall, takes no lock, does no atomic read-modify-write and never
//! allocates.
//!
//! The header is written from the first allocation on, also before heapspan is started (the
//! pass-through mode), so that memory allocated before start can be freed correctly after it.
//!
//! This file is the `GlobalAlloc` dispatch; the rooms around it: `header` (layouts, words),
//! `state` (the mode, the pool), `local` (the thread-local), `span_stack`, `record`,
//! `slots` and `ring` (the thread tables), `fallback`, `budget`, `pages`, and the
//! live index (`index`, `indexed`, `scan`, `sites`).

pub(crate) mod budget;
pub(crate) mod fallback;
pub(crate) mod handoff;
pub(crate) mod header;
pub(crate) mod index;
mod indexed;
pub(crate) mod invalid;
pub(crate) mod key;
pub(crate) mod local;
pub(crate) mod pages;
mod recent;
pub(crate) mod record;
pub(crate) mod ring;
pub(crate) mod sampler;
pub(crate) mod scan;
pub mod sites;
pub(crate) mod slots;
pub(crate) mod span_stack;
pub(crate) mod state;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

use crate::sync::statics::Ordering;
pub use header::HEADER_BYTES;
use header::{Key, TASK_HEAPSPAN, TASK_UNTRACKED};
#[doc(hidden)]
pub use local::simulate_thread_exit;
// The custody API's way into block headers (crate::custody).
pub(crate) use invalid::set_custody;
pub(crate) use local::InternalScope;
pub(crate) use local::{
    current_key_for_span, current_table, enter_task_name, exit_task_name, mark_internal_thread,
    pop_span, push_event, push_span, regroup_span,
};
use local::{local, Local, ORPHAN};
use slots::Op;
use state::Mode;
pub(crate) use state::{next_span_instance, stop, Pool};

/// heapspan's global allocator: a wrapper around any [`GlobalAlloc`] (the system allocator by
/// default; mimalloc and jemalloc work the same way).
///
/// Until heapspan is started it only writes the header and forwards to the inner allocator.
///
/// Declare it as the `#[global_allocator]` static: with the live index on, frees deferred by a
/// heap scan are released later through the allocator that deferred them, so an `Allocator`
/// used while heapspan runs must live for the rest of the process.
#[derive(Debug, Default)]
pub struct Allocator<A = System> {
    inner: A,
}

impl Allocator<System> {
    /// The wrapper around the system allocator.
    pub const fn system() -> Self {
        Allocator { inner: System }
    }
}

impl<A> Allocator<A> {
    /// Wraps `inner`, e.g. `Allocator::new(mimalloc::MiMalloc)`.
    pub const fn new(inner: A) -> Self {
        Allocator { inner }
    }
}

/// The live index's settings at start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexStart {
    /// [`Mode::Counting`] (no index), [`Mode::Indexed`] or [`Mode::Sampled`].
    pub(crate) mode: Mode,
    pub(crate) sample_mean: u64,
    pub(crate) capacity: usize,
    pub(crate) sites: bool,
}

/// Configures the live index (if on), maps the thread tables and turns counting on. Fails if
/// heapspan already runs or a mapping cannot be made.
pub(crate) fn start(max_threads: usize, index: IndexStart) -> Result<&'static Pool, ()> {
    let mut mode = index.mode;
    if mode >= Mode::Indexed {
        sampler::SAMPLE_MEAN.store(index.sample_mean.max(1), Ordering::Relaxed);
        let sites = index.sites && cfg!(unix);
        sites::ON.store(u8::from(sites), Ordering::Relaxed);
        if !index::configure(max_threads, index.capacity, sites) {
            mode = Mode::Counting;
        }
    }
    state::start(max_threads, mode)
}

const UNTRACKED: Key = Key {
    task: TASK_UNTRACKED,
    span: 0,
};

// SAFETY: a free or realloc whose header does not check (`header::check`: a block not ours,
// already freed, freed with another size, or in foreign custody) is never forwarded (see
// `invalid`); every other call forwards to `inner` with the layout `header::outer` (or, for
// indexed blocks, `index::outer_ext`) derives from the caller's layout, always the same
// derivation for the same caller layout and block kind, so the inner allocator sees a
// consistent layout for each block; the caller gets `base + off`, which is aligned to the
// requested alignment (off is a multiple of it and base is aligned to at least it) and has
// `layout.size()` usable bytes behind it. Accounting never touches the block itself beyond
// the header, except on a free, right before the block goes back: the tombstone in its first
// 16 bytes (`header::write_tombstone`), and heapspan's own blocks zeroed while the live index
// is on.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Allocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_any(layout, false) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_any(layout, true) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, user: *mut u8, layout: Layout) {
        // SAFETY: read, not trusted: the 16 bytes below a pointer this allocator handed out
        // are its header; below any other heap pointer, they are readable memory of the heap
        // (see "Safety and correctness": what cannot be checked).
        let (t, s) = unsafe { header::read_raw(user) };
        let Some(key) = header::check(t, s, user, layout.size()) else {
            // SAFETY: forwarded caller contract (as far as the caller kept it).
            return unsafe { invalid::on_free(user, layout, t, s) };
        };
        if key.span & header::EXT != 0 {
            // SAFETY: an extended block of this allocator, freed by its owner.
            return unsafe { self.dealloc_ext(user, layout, key) };
        }
        let mode = state::mode();
        if mode != Mode::Off {
            let l = local();
            // Who frees it, by id (0 outside any task): a call into tokio, skipped while
            // heapspan's own code runs on this thread (a table being claimed, heapspan's
            // threads), as the allocation path skips it.
            let current = if l.heapspan_own.get() {
                0
            } else {
                Local::current_task_id()
            };
            let handoff = record::maybe_handoff(key, current);
            let st = l.state.get();
            // Besides `try_id`, the common case makes no call but the inner free: the thread's
            // table, its last slot, the allocating task (so no hand-off to count), not one of
            // heapspan's own blocks to scrub.
            let fast = st as usize > ORPHAN as usize && {
                // SAFETY: a non-sentinel `state` points into the leaked pool, owned by this
                // thread; the hint is this table's.
                unsafe { (*st).record_hinted(key, Op::Free(layout.size() as u64), &l.hint) }
            };
            // A free that may be a hand-off takes the slow path, and so does every free of a
            // reserved bucket's block (heapspan's own, which need scrubbing while the live
            // index is on; of before start; of the overflow bucket): their id bits match no
            // task's, nor 0.
            if !fast || handoff {
                let done = Done {
                    recorded: fast,
                    handoff,
                    current,
                    mode,
                };
                // SAFETY: forwarded caller contract.
                return unsafe { self.dealloc_slow(user, layout, key, (t, s), done) };
            }
        }
        // `outer` succeeded for this layout when it was allocated, so it succeeds now.
        let Some((outer, off)) = header::outer(layout) else {
            return;
        };
        // SAFETY: the caller's block of `layout.size()` bytes, freed right after.
        unsafe { header::write_tombstone(user, layout.size(), t, s) };
        // SAFETY: `base` and `outer` are exactly what the inner allocator handed out.
        unsafe { self.inner.dealloc(user.sub(off), outer) };
    }

    #[inline]
    unsafe fn realloc(&self, user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((outer, off)) = header::outer(layout) else {
            return ptr::null_mut();
        };
        let Some(new_outer) = new_size.checked_add(off) else {
            return ptr::null_mut();
        };
        if Layout::from_size_align(new_outer, outer.align()).is_err() {
            return ptr::null_mut();
        }
        // SAFETY: read, not trusted, as in `dealloc`.
        let (t, s) = unsafe { header::read_raw(user) };
        let Some(key) = header::check(t, s, user, layout.size()) else {
            // SAFETY: forwarded caller contract (as far as the caller kept it).
            return unsafe { invalid::on_realloc(self, user, layout, new_size, t, s) };
        };
        let mode = state::mode();
        if mode == Mode::Sampled {
            // A realloc is a new allocation of `new_size` to the sampler (every live block is
            // indexed with probability p(its size)): when the draw changes the block's kind, it
            // moves to a block of the other kind.
            let take = local().sampler.hit(new_size);
            if take != (key.span & header::EXT != 0) {
                // SAFETY: forwarded caller contract; `key` is the block's, checked.
                if let Some(p) = unsafe { self.realloc_resample(user, layout, new_size, key, take) }
                {
                    return p;
                }
            }
        }
        if key.span & header::EXT != 0 {
            // SAFETY: an extended block of this allocator, reallocated by its owner.
            return unsafe { self.realloc_ext(user, layout, new_size, key) };
        }
        if key.task == TASK_HEAPSPAN && mode >= Mode::Indexed {
            // SAFETY: forwarded caller contract.
            return unsafe { self.realloc_scrubbed(user, layout, new_size, key) };
        }
        // SAFETY: `base`/`outer` are what the inner allocator handed out; `new_outer` is
        // non-zero and was checked not to overflow isize when rounded to the alignment.
        let base = unsafe { self.inner.realloc(user.sub(off), outer, new_outer) };
        if base.is_null() {
            return base;
        }
        record::on_resize(key, layout.size(), new_size);
        // SAFETY: the header moved with the block (it is inside it): same offset; its tag is
        // rewritten for the new address and size.
        unsafe {
            let nu = base.add(off);
            header::write(nu, key, new_size);
            nu
        }
    }
}

impl<A: GlobalAlloc> Allocator<A> {
    /// `alloc` and `alloc_zeroed`: by the mode, pass-through, counted, or indexed.
    #[inline(always)]
    unsafe fn alloc_any(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let mode = state::mode();
        if mode >= Mode::Indexed {
            if mode == Mode::Sampled && !local().sampler.hit(layout.size()) {
                // SAFETY: forwarded caller contract.
                return unsafe { self.alloc_plain(layout, zeroed, true) };
            }
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_indexed(layout, zeroed) };
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_plain(layout, zeroed, mode == Mode::Counting) }
    }

    /// The rest of a plain free: counted unless `done.recorded`, counted as a hand-off if
    /// `done.handoff` says it may be one, scrubbed if it is one of heapspan's own blocks while
    /// the live index is on, then freed.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(
        &self,
        user: *mut u8,
        layout: Layout,
        key: Key,
        (t, s): (u64, u64),
        done: Done,
    ) {
        let l = local();
        if !done.recorded {
            record::record(l, key, Op::Free(layout.size() as u64));
        }
        if done.handoff {
            record::on_handoff(l, key, layout.size() as u64, done.current);
        }
        if done.mode >= Mode::Indexed && key.task == TASK_HEAPSPAN {
            // heapspan's own buffers hold addresses of the heap (a scan's copies, node lists):
            // freed as they are, a block reusing the memory would show them to the next scan
            // as pointers.
            // SAFETY: the caller's block, `layout.size()` bytes, freed right after.
            unsafe { user.write_bytes(0, layout.size()) };
        }
        // SAFETY: the caller's block of `layout.size()` bytes, freed right after.
        unsafe { header::write_tombstone(user, layout.size(), t, s) };
        if let Some((outer, off)) = header::outer(layout) {
            // SAFETY: `base` and `outer` are exactly what the inner allocator handed out.
            unsafe { self.inner.dealloc(user.sub(off), outer) };
        }
    }

    /// The inner allocator's `alloc` or `alloc_zeroed`.
    ///
    /// # Safety
    /// `outer` has a non-zero size.
    #[inline(always)]
    unsafe fn inner_alloc(&self, outer: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: by the caller's contract.
        unsafe {
            if zeroed {
                self.inner.alloc_zeroed(outer)
            } else {
                self.inner.alloc(outer)
            }
        }
    }

    /// An allocation with the 16-byte header; counted when `tracked`.
    #[inline(always)]
    unsafe fn alloc_plain(&self, layout: Layout, zeroed: bool, tracked: bool) -> *mut u8 {
        let Some((outer, off)) = header::outer(layout) else {
            return ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size (it includes the header).
        let base = unsafe { self.inner_alloc(outer, zeroed) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `off < outer.size()`, so `user` stays inside the block.
        let user = unsafe { base.add(off) };
        let key = if tracked {
            let l = local();
            let key = l.alloc_key();
            let st = l.state.get();
            let size = layout.size() as u64;
            // The common case makes no call here (fewer saved registers): the thread's table
            // and its last slot. Anything else finishes in a tail call.
            let recorded = st as usize > ORPHAN as usize && {
                // SAFETY: a non-sentinel `state` points into the leaked pool, owned by this
                // thread; the hint is this table's.
                unsafe { (*st).record_hinted(key, Op::Alloc(size), &l.hint) }
            };
            if !recorded {
                // SAFETY: `user` is the new block, with room for its header.
                return unsafe { alloc_finish_slow(user, key, size) };
            }
            key
        } else {
            UNTRACKED
        };
        // SAFETY: `off >= 16` bytes in front of `user` belong to the block; `user` is 8-aligned.
        unsafe { header::write(user, key, layout.size()) };
        user
    }
}

/// What the inlined part of a free did before handing over to `dealloc_slow`.
#[derive(Clone, Copy)]
struct Done {
    /// The free is counted.
    recorded: bool,
    /// The current task's id is not the block's: it may be a hand-off.
    handoff: bool,
    /// The current task's id (0 outside any task, or while heapspan's own code runs).
    current: u64,
    /// The mode the free was counted in.
    mode: Mode,
}

/// The rest of a counted plain allocation that missed the fast path: counted (or sent to the
/// overflow bucket), its header written.
///
/// # Safety
/// `user` is a new block of this allocator with 16 header bytes in front of it.
#[cold]
#[inline(never)]
unsafe fn alloc_finish_slow(user: *mut u8, key: Key, size: u64) -> *mut u8 {
    let key = if record::record(local(), key, Op::Alloc(size)) {
        key
    } else {
        record::overflow(size)
    };
    // SAFETY: by the caller's contract.
    unsafe { header::write(user, key, size as usize) };
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_realloc() {
        let a = Allocator::system();
        let l = Layout::from_size_align(40, 32).unwrap();
        // SAFETY: a non-zero layout; the pointer is used within its size and freed once with
        // the layout of its last realloc.
        unsafe {
            let p = a.alloc(l);
            assert_eq!(p as usize % 32, 0);
            assert_eq!(header::read_raw(p).0 & !header::TASK_TAG, TASK_UNTRACKED);
            p.write_bytes(7, 40);
            let q = a.realloc(p, l, 4000);
            assert_eq!(q as usize % 32, 0);
            assert_eq!(*q.add(39), 7);
            let (t, s) = header::read_raw(q);
            assert_eq!(
                header::check(t, s, q, 4000).map(|k| k.task),
                Some(TASK_UNTRACKED)
            );
            a.dealloc(q, Layout::from_size_align(4000, 32).unwrap());
        }
    }
}
