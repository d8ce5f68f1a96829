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
//! Each allocation gets a 16-byte header (more for alignments above 16) just before the
//! pointer handed to the caller, holding its attribution key. A free reads the
//! header back, so it is charged to the task and span that *allocated* the memory, whichever
//! thread frees it. Counting goes to the current thread's own table (`slots`); the hot path
//! makes no syscall, takes no lock, does no atomic read-modify-write and never allocates.
//!
//! The header is written from the first allocation on, also before heapspan is started (the
//! pass-through mode), so that memory allocated before start can be freed correctly after it.

pub(crate) mod index;
pub(crate) mod key;
pub(crate) mod orphans;
pub(crate) mod scan;
pub mod sites;
pub(crate) mod slots;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

use crate::sync::statics::{AtomicPtr, AtomicU64, AtomicU8, Ordering};
use index::EXT;
use key::{TASK_HEAPSPAN, TASK_NONE, TASK_UNTRACKED};
use orphans::OrphanQueue;
use slots::{Key, Op, ThreadState, ACTIVE, FREE};

/// Header bytes in front of every allocation with an alignment of 16 or less.
pub const HEADER_BYTES: usize = 16;

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

/// Where the header goes for `layout`: the inner layout and the offset of the user pointer.
#[inline(always)]
fn outer(layout: Layout) -> Option<(Layout, usize)> {
    if layout.align() <= HEADER_BYTES {
        let size = layout.size().checked_add(HEADER_BYTES)?;
        if size > isize::MAX as usize - (HEADER_BYTES - 1) {
            return None;
        }
        let align = if layout.align() < 8 {
            8
        } else {
            layout.align()
        };
        // SAFETY: `align` is a power of two (8 or the layout's own), and `size` rounded up to
        // it (at most 15 more bytes) stays within `isize::MAX`, as checked above.
        return Some((
            unsafe { Layout::from_size_align_unchecked(size, align) },
            HEADER_BYTES,
        ));
    }
    outer_over_aligned(layout)
}

#[cold]
fn outer_over_aligned(layout: Layout) -> Option<(Layout, usize)> {
    let off = layout.align();
    let size = layout.size().checked_add(off)?;
    Layout::from_size_align(size, layout.align())
        .ok()
        .map(|l| (l, off))
}

/// Writes the header just below `user`.
///
/// # Safety
/// `user - 16 .. user` must be writable memory of this allocation, 8-aligned.
#[inline]
unsafe fn write_header(user: *mut u8, key: Key) {
    // SAFETY: by the caller's contract; `outer` reserves at least 16 bytes in front of `user`
    // and keeps `user` at least 8-aligned.
    unsafe {
        let h = user.sub(HEADER_BYTES).cast::<u64>();
        h.write(key.task);
        h.add(1).write(key.span);
    }
}

/// Reads the header just below `user`.
///
/// # Safety
/// `user` must be a live pointer returned by this allocator.
#[inline]
unsafe fn read_header(user: *mut u8) -> Key {
    // SAFETY: every pointer this allocator returns has a header written by `write_header`.
    unsafe {
        let h = user.sub(HEADER_BYTES).cast::<u64>();
        Key {
            task: h.read(),
            span: h.add(1).read(),
        }
    }
}

// SAFETY: every method forwards to `inner` with the layout `outer` derives from the caller's
// layout, always the same derivation for the same caller layout, so the inner allocator sees a
// consistent layout for each block; the caller gets `base + off`, which is aligned to the
// requested alignment (off is a multiple of it and base is aligned to at least it) and has
// `layout.size()` usable bytes behind it. Accounting never touches the block itself beyond the
// header.
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

    #[inline]
    unsafe fn dealloc(&self, user: *mut u8, layout: Layout) {
        // SAFETY: every block this allocator hands out has its span word at `user - 8`.
        if unsafe { user.sub(8).cast::<u64>().read() } & EXT != 0 {
            // SAFETY: an extended block of this allocator, freed by its owner.
            return unsafe { self.dealloc_ext(user, layout) };
        }
        // `outer` succeeded for this layout when it was allocated, so it succeeds now.
        let Some((outer, off)) = outer(layout) else {
            return;
        };
        let state = STATE.load(Ordering::Relaxed);
        if state != OFF {
            // SAFETY: `user` came from `alloc*`/`realloc` of this allocator with `layout`.
            let key = unsafe { read_header(user) };
            let l = local();
            let st = l.state.get();
            // The common case has no call but the inner free (so no saved registers): the
            // thread's table, its last slot, not one of heapspan's own blocks to scrub.
            let fast = st as usize > ORPHAN as usize && {
                // SAFETY: a non-sentinel `state` points into the leaked pool, owned by this
                // thread; the hint is this table's.
                unsafe { (*st).record_hinted(key, Op::Free(layout.size() as u64), &l.hint) }
            };
            if !fast || (state >= INDEXED && key.task == TASK_HEAPSPAN) {
                // SAFETY: forwarded caller contract.
                return unsafe { self.dealloc_slow(user, layout, key, state, fast) };
            }
        }
        // SAFETY: `base` and `outer` are exactly what the inner allocator handed out.
        unsafe { self.inner.dealloc(user.sub(off), outer) };
    }

    #[inline]
    unsafe fn realloc(&self, user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((outer, off)) = outer(layout) else {
            return ptr::null_mut();
        };
        let Some(new_outer) = new_size.checked_add(off) else {
            return ptr::null_mut();
        };
        if Layout::from_size_align(new_outer, outer.align()).is_err() {
            return ptr::null_mut();
        }
        // SAFETY: `user` is live with a header; read it before the block may move.
        let key = unsafe { read_header(user) };
        let state = STATE.load(Ordering::Relaxed);
        if state == SAMPLED {
            // A realloc is a new allocation of `new_size` to the sampler (every live block is
            // indexed with probability p(its size)): when the draw changes the block's kind, it
            // moves to a block of the other kind.
            let take = local().sampler.hit(new_size);
            if take != (key.span & EXT != 0) {
                // SAFETY: forwarded caller contract.
                if let Some(p) = unsafe { self.realloc_resample(user, layout, new_size, take) } {
                    return p;
                }
            }
        }
        if key.span & EXT != 0 {
            // SAFETY: an extended block of this allocator, reallocated by its owner.
            return unsafe { self.realloc_ext(user, layout, new_size) };
        }
        if key.task == TASK_HEAPSPAN && state >= INDEXED {
            // SAFETY: forwarded caller contract.
            return unsafe { self.realloc_scrubbed(user, layout, new_size, key) };
        }
        // SAFETY: `base`/`outer` are what the inner allocator handed out; `new_outer` is
        // non-zero and was checked not to overflow isize when rounded to the alignment.
        let base = unsafe { self.inner.realloc(user.sub(off), outer, new_outer) };
        if base.is_null() {
            return base;
        }
        on_resize(key, layout.size(), new_size);
        // SAFETY: the header moved with the block (it is inside it): same offset.
        unsafe { base.add(off) }
    }
}

impl<A: GlobalAlloc> Allocator<A> {
    /// `alloc` and `alloc_zeroed`: by the state, pass-through, counted, or indexed.
    #[inline(always)]
    unsafe fn alloc_any(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let state = STATE.load(Ordering::Relaxed);
        if state >= INDEXED {
            if state == SAMPLED && !local().sampler.hit(layout.size()) {
                // SAFETY: forwarded caller contract.
                return unsafe { self.alloc_plain(layout, zeroed, true) };
            }
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_indexed(layout, zeroed) };
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_plain(layout, zeroed, state == ON) }
    }

    /// The rest of a plain free: counted unless `recorded`, scrubbed if it is one of
    /// heapspan's own blocks while the live index is on, then freed.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(
        &self,
        user: *mut u8,
        layout: Layout,
        key: Key,
        state: u8,
        recorded: bool,
    ) {
        if !recorded {
            record(local(), key, Op::Free(layout.size() as u64));
        }
        if state >= INDEXED && key.task == TASK_HEAPSPAN {
            // heapspan's own buffers hold addresses of the heap (a scan's copies, node lists):
            // freed as they are, a block reusing the memory would show them to the next scan
            // as pointers.
            // SAFETY: the caller's block, `layout.size()` bytes, freed right after.
            unsafe { user.write_bytes(0, layout.size()) };
        }
        if let Some((outer, off)) = outer(layout) {
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
        let Some((outer, off)) = outer(layout) else {
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
            let key = alloc_key(l);
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
        unsafe { write_header(user, key) };
        user
    }

    /// An allocation the live index takes (every one in full mode, a sampled one otherwise):
    /// indexed with the extended header when the thread has a table with a free entry, else a
    /// plain counted one.
    #[inline(never)]
    unsafe fn alloc_indexed(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let l = local();
        let mut st = l.state.get();
        if st.is_null() && !l.busy.get() {
            // The thread's first operation since start: claim its table now, so that this
            // allocation is indexed too.
            st = l.claim_now();
        }
        let reserved = if st as usize > ORPHAN as usize && !l.heapspan_own.get() {
            // SAFETY: a non-sentinel `state` points into the leaked pool, owned by this thread.
            let st = unsafe { &*st };
            index::reserve(st.id, &st.index)
        } else {
            None
        };
        let Some(r) = reserved else {
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_plain(layout, zeroed, true) };
        };
        let Some((outer, off)) = index::outer_ext(layout) else {
            // Too big for the size word (or for the address space): not indexed.
            r.cancel();
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_plain(layout, zeroed, true) };
        };
        // SAFETY: `outer` has a non-zero size (it includes the header).
        let base = unsafe { self.inner_alloc(outer, zeroed) };
        if base.is_null() {
            r.cancel();
            return base;
        }
        // SAFETY: `off < outer.size()`.
        let user = unsafe { base.add(off) };
        let key = on_alloc(layout.size() as u64);
        if sites::ON.load(Ordering::Relaxed) != 0 {
            r.set_site(sites::capture());
        }
        // SAFETY: `off >= 32` bytes in front of `user` belong to the block, 8-aligned.
        unsafe { r.publish(user, layout, key.task, key.span) };
        user
    }

    /// Which `in_free` flag this thread raises, and its table (if it has one).
    #[inline(always)]
    fn marker(l: &Local) -> (index::Marker<'static>, Option<&'static ThreadState>) {
        let st = l.state.get();
        if st as usize > ORPHAN as usize {
            // SAFETY: a non-sentinel `state` points into the leaked pool.
            let st: &'static ThreadState = unsafe { &*st };
            (index::Marker::Own(&st.index), Some(st))
        } else {
            (index::Marker::Orphan, None)
        }
    }

    /// Frees an extended block: counted, its entry cleared, and released now or, while a scan
    /// runs, deferred until it ends.
    #[inline(never)]
    unsafe fn dealloc_ext(&self, user: *mut u8, layout: Layout) {
        // SAFETY: a live extended block: its header words are readable.
        let (id, task, span) = unsafe {
            (
                index::word(user, 32).load(Ordering::Relaxed),
                index::word(user, 16).load(Ordering::Relaxed),
                index::word(user, 8).load(Ordering::Relaxed) & !EXT,
            )
        };
        let l = local();
        if STATE.load(Ordering::Relaxed) != OFF {
            record(l, Key { task, span }, Op::Free(layout.size() as u64));
        }
        // SAFETY: forwarded: a live extended block being freed.
        unsafe { self.free_ext_uncounted(l, user, layout, id) };
    }

    /// Releases an extended block (already counted): its entry cleared, the block released
    /// now or, while a scan runs, deferred until it ends.
    ///
    /// # Safety
    /// `user` is a live extended block of this allocator with `layout` and id `id`, being freed.
    #[inline(always)]
    unsafe fn free_ext_uncounted(&self, l: &Local, user: *mut u8, layout: Layout, id: u64) {
        let (marker, own) = Self::marker(l);
        let scanning = marker.enter();
        // SAFETY: `id` is this live block's id and we are freeing it.
        unsafe { index::clear_entry(id, own) };
        // The flag comes down before the block is released or deferred: with the entry
        // cleared, a scan that starts now never sees the block, and a running one (which we
        // saw) keeps it until its end because it is deferred.
        marker.exit();
        if scanning {
            // SAFETY: a live extended block of this allocator being freed; the global
            // allocator lives for the whole process.
            unsafe { index::defer(self, user) };
        } else {
            // SAFETY: the block is ours to free; its layout is the caller's.
            unsafe { self.release_ext(user, layout) };
        }
    }

    /// A sampled-mode realloc whose draw changes the block's kind (`to_ext`: plain to indexed,
    /// else indexed to plain): a new block of the other kind keeps the original key, the
    /// contents are copied, the old block released. Counted like any realloc (growth or
    /// shrinkage, no allocation or free). `None`: the block cannot be indexed here (no table,
    /// no entry, heapspan's own): go on with an ordinary realloc.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_resample(
        &self,
        user: *mut u8,
        layout: Layout,
        new_size: usize,
        to_ext: bool,
    ) -> Option<*mut u8> {
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        // The old block's inner layout (it was allocated with it, so this cannot fail).
        let (old_outer, old_off) = outer(layout)?;
        // SAFETY: a live block of this allocator: its last two header words are readable.
        let key = unsafe { read_header(user) };
        let key = Key {
            task: key.task,
            span: key.span & !EXT,
        };
        if key.task == TASK_HEAPSPAN {
            // heapspan's own blocks are never indexed (and are scrubbed when they move).
            return None;
        }
        let l = local();
        let new_user = if to_ext {
            let st = l.state.get();
            if st as usize <= ORPHAN as usize || l.heapspan_own.get() {
                return None;
            }
            // SAFETY: a non-sentinel `state` points into the leaked pool, owned by this thread.
            let st = unsafe { &*st };
            let r = index::reserve(st.id, &st.index)?;
            let Some((new_outer, off)) = index::outer_ext(new_layout) else {
                r.cancel();
                return None;
            };
            // SAFETY: a non-zero layout.
            let base = unsafe { self.inner.alloc(new_outer) };
            if base.is_null() {
                r.cancel();
                return Some(base);
            }
            // SAFETY: `off` bytes in front of `nu` are in the new block; `min(old, new)`
            // bytes are copied between two distinct live blocks.
            let nu = unsafe {
                let nu = base.add(off);
                ptr::copy_nonoverlapping(user, nu, layout.size().min(new_size));
                nu
            };
            if sites::ON.load(Ordering::Relaxed) != 0 {
                r.set_site(sites::capture());
            }
            // SAFETY: `off >= 32` bytes in front of `nu` belong to the block, 8-aligned.
            unsafe { r.publish(nu, new_layout, key.task, key.span) };
            // SAFETY: the old plain block, as the inner allocator handed it out.
            unsafe { self.inner.dealloc(user.sub(old_off), old_outer) };
            nu
        } else {
            let (new_outer, off) = outer(new_layout)?;
            // SAFETY: a non-zero layout.
            let base = unsafe { self.inner.alloc(new_outer) };
            if base.is_null() {
                return Some(base);
            }
            // SAFETY: as above; the new block's 16-byte header goes in front of `nu`.
            let nu = unsafe {
                let nu = base.add(off);
                ptr::copy_nonoverlapping(user, nu, layout.size().min(new_size));
                write_header(nu, key);
                nu
            };
            // SAFETY: the old block is a live extended block being replaced.
            unsafe {
                let id = index::word(user, 32).load(Ordering::Relaxed);
                self.free_ext_uncounted(l, user, layout, id);
            }
            nu
        };
        on_resize(key, layout.size(), new_size);
        Some(new_user)
    }

    /// A realloc of one of heapspan's own blocks while the live index is on: moved by hand so
    /// that the old block is zeroed before it is freed (see `dealloc`).
    #[cold]
    #[inline(never)]
    unsafe fn realloc_scrubbed(
        &self,
        user: *mut u8,
        layout: Layout,
        new_size: usize,
        key: Key,
    ) -> *mut u8 {
        let (Some((old_outer, off)), Ok(new_layout)) = (
            outer(layout),
            Layout::from_size_align(new_size, layout.align()),
        ) else {
            return ptr::null_mut();
        };
        let Some((new_outer, new_off)) = outer(new_layout) else {
            return ptr::null_mut();
        };
        // SAFETY: a non-zero layout.
        let base = unsafe { self.inner.alloc(new_outer) };
        if base.is_null() {
            return base;
        }
        // SAFETY: two distinct live blocks; `min(old, new)` bytes copied, then the old block
        // zeroed and freed with the layout it was allocated with.
        let nu = unsafe {
            let nu = base.add(new_off);
            ptr::copy_nonoverlapping(user, nu, layout.size().min(new_size));
            write_header(nu, key);
            user.write_bytes(0, layout.size());
            self.inner.dealloc(user.sub(off), old_outer);
            nu
        };
        on_resize(key, layout.size(), new_size);
        nu
    }

    /// Gives an extended block back to the inner allocator.
    ///
    /// # Safety
    /// `user` is an extended block of this allocator with `layout`, no longer used by anyone.
    pub(crate) unsafe fn release_ext(&self, user: *mut u8, layout: Layout) {
        if let Some((outer, off)) = index::outer_ext(layout) {
            // SAFETY: `user - off` and `outer` are what the inner allocator handed out.
            unsafe { self.inner.dealloc(user.sub(off), outer) };
        }
    }

    /// Reallocates an extended block: the entry follows it with the next generation (the
    /// `evolution` edge), and while a scan runs the old block is not freed but deferred.
    #[inline(never)]
    unsafe fn realloc_ext(&self, user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((outer, off)) = index::outer_ext(layout) else {
            return ptr::null_mut();
        };
        if new_size as u64 > index::SIZE_MASK {
            // An indexed block's size word holds 48 bits: such a realloc fails.
            return ptr::null_mut();
        }
        let Some(new_outer) = new_size.checked_add(off) else {
            return ptr::null_mut();
        };
        let Ok(new_layout) = Layout::from_size_align(new_outer, outer.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: a live extended block: its header words are readable.
        let (id, sw, task, span) = unsafe {
            (
                index::word(user, 32).load(Ordering::Relaxed),
                index::word(user, 24).load(Ordering::Relaxed),
                index::word(user, 16).load(Ordering::Relaxed),
                index::word(user, 8).load(Ordering::Relaxed) & !EXT,
            )
        };
        let new_id = index::next_id(id);
        let l = local();
        let (marker, _) = Self::marker(l);
        let scanning = marker.enter();
        let new_user = if scanning {
            // A scan runs and may read the old block: it is copied and deferred, not freed.
            marker.exit();
            // SAFETY: `new_layout` is non-zero.
            let base = unsafe { self.inner.alloc(new_layout) };
            if base.is_null() {
                return base;
            }
            // SAFETY: `off` bytes in front of the new user pointer are in the new block; the
            // header and `min(old, new)` bytes are copied between two distinct live blocks.
            unsafe {
                let nu = base.add(off);
                ptr::copy_nonoverlapping(
                    user.sub(index::EXT_HEADER),
                    nu.sub(index::EXT_HEADER),
                    index::EXT_HEADER + layout.size().min(new_size),
                );
                nu
            }
        } else {
            // No scan runs: hide the entry, so that one starting from now on skips the block
            // while the inner realloc may free it.
            // SAFETY: `id` is this block's id; the caller reallocates it.
            unsafe { index::hide_entry(id) };
            marker.exit();
            // SAFETY: `user - off`/`outer` are what the inner allocator handed out.
            let base = unsafe { self.inner.realloc(user.sub(off), outer, new_outer) };
            if base.is_null() {
                // SAFETY: the block is unchanged and still ours: its entry names it again.
                unsafe { index::show_entry(id, user) };
                return base;
            }
            // SAFETY: the header moved with the block.
            unsafe { base.add(off) }
        };
        // SAFETY: `new_user` is this extended block in its new place, not yet reachable by a
        // scanner (its entry names the old address or is hidden).
        unsafe { index::rewrite_after_realloc(new_user, new_id, sw, new_size) };
        // SAFETY: `id` is this block's id; the caller moves it.
        unsafe { index::move_entry(id, new_user) };
        if scanning {
            // SAFETY: the old block, no longer named by its entry, is freed by the realloc;
            // deferred until the scans that may have read it are over.
            unsafe { index::defer(self, user) };
        }
        let key = Key { task, span };
        on_resize(key, layout.size(), new_size);
        new_user
    }
}

// ---------------------------------------------------------------------------------------------
// Process-wide state.

const OFF: u8 = 0;
const ON: u8 = 1;
/// Counting, with the live index on.
const INDEXED: u8 = 2;
/// Counting, with the sampled live index on.
const SAMPLED: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(OFF);
static POOL: AtomicPtr<Pool> = AtomicPtr::new(ptr::null_mut());
/// Next heapspan span id (0 means "no span").
static NEXT_SPAN: AtomicU64 = AtomicU64::new(1);

/// The per-thread states and the shared fallback, created once at start and never freed
/// (threads may still touch them while they exit, at any time).
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) threads: Box<[ThreadState]>,
    pub(crate) orphans: OrphanQueue,
    /// Highest number of thread states ever claimed (the aggregator reads `..high`).
    pub(crate) high: AtomicU64,
}

impl Pool {
    /// True when some thread's retired ring is filling up: the aggregator should fold now.
    pub(crate) fn under_pressure(&self) -> bool {
        let high = self.high.load(Ordering::Relaxed) as usize;
        self.threads[..high]
            .iter()
            .any(|t| t.ring_len() > slots::RING / 8)
    }
}

/// Installs the pool and turns counting on. Fails if heapspan already runs.
pub(crate) fn start(max_threads: usize, live_index: IndexStart) -> Result<&'static Pool, ()> {
    let _g = InternalScope::enter();
    let indexed = live_index.mode != index::MODE_OFF;
    let pool: &'static Pool = Box::leak(Box::new(Pool {
        threads: (0..max_threads).map(ThreadState::new).collect(),
        orphans: OrphanQueue::new(),
        high: AtomicU64::new(0),
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
    if indexed {
        index::register_membarrier();
        index::SAMPLE_MEAN.store(live_index.sample_mean.max(1), Ordering::Relaxed);
        index::CAPACITY.store(live_index.capacity as u64, Ordering::Relaxed);
        sites::ON.store(u8::from(live_index.sites && cfg!(unix)), Ordering::Relaxed);
        index::MODE.store(live_index.mode, Ordering::Relaxed);
        let state = if live_index.mode == index::MODE_SAMPLED {
            SAMPLED
        } else {
            INDEXED
        };
        STATE.store(state, Ordering::Release);
    } else {
        STATE.store(ON, Ordering::Release);
    }
    Ok(pool)
}

/// The live index's settings at start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexStart {
    pub(crate) mode: u8,
    pub(crate) sample_mean: u64,
    pub(crate) capacity: usize,
    pub(crate) sites: bool,
}

/// Whether the live index is on.
pub(crate) fn indexing() -> bool {
    STATE.load(Ordering::Relaxed) >= INDEXED
}

/// Turns counting off: heapspan passes through again (it cannot be restarted).
pub(crate) fn stop() {
    STATE.store(OFF, Ordering::Release);
}

#[inline]
pub(crate) fn pool() -> Option<&'static Pool> {
    let p = POOL.load(Ordering::Acquire);
    // SAFETY: POOL is only ever set to a leaked, never-freed `Pool`.
    unsafe { p.as_ref() }
}

/// A fresh heapspan span id.
pub(crate) fn next_span_id() -> u64 {
    NEXT_SPAN.fetch_add(1, Ordering::Relaxed) & key::SPAN_MASK
}

// ---------------------------------------------------------------------------------------------
// Per-thread state.

const SPAN_STACK: usize = 32;
/// `Local::state` of a thread that must use the shared fallback.
const ORPHAN: *const ThreadState = ptr::dangling();

struct Local {
    /// This thread's table: null until claimed, `ORPHAN` once torn down or if none was free.
    state: Cell<*const ThreadState>,
    /// Inside the allocator's own bookkeeping: a nested allocation goes to the fallback.
    busy: Cell<bool>,
    /// `internal > 0 || busy`, kept up to date so the hot path reads one cell.
    heapspan_own: Cell<bool>,
    /// Depth of heapspan code on this thread (its threads hold it for life).
    internal: Cell<u32>,
    /// Slot used last, in this thread's own table (a hint for the next lookup).
    hint: slots::Hint,
    /// Cached generation of the last task seen: (task id, generation, epoch).
    gen_cache: Cell<(u64, u16, u64)>,
    /// Entered user spans, innermost last; `depth` may exceed the capacity (the excess is
    /// not tracked, its allocations go to the deepest tracked span).
    spans: [Cell<u64>; SPAN_STACK],
    depth: Cell<usize>,
    /// The innermost tracked span (0 for none), kept up to date by push and pop.
    current: Cell<u64>,
    /// Byte countdown of the sampled live index.
    sampler: index::Sampler,
}

thread_local! {
    // No destructor: it stays readable while the thread exits, after other locals are gone.
    static LOCAL: Local = const {
        Local {
            state: Cell::new(ptr::null()),
            busy: Cell::new(false),
            heapspan_own: Cell::new(false),
            internal: Cell::new(0),
            hint: slots::Hint::new(),
            gen_cache: Cell::new((0, 0, 0)),
            spans: [const { Cell::new(0) }; SPAN_STACK],
            depth: Cell::new(0),
            current: Cell::new(0),
            sampler: index::Sampler::new(),
        }
    };
    // Its destructor hands the thread's table back to the pool when the thread exits.
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit };
}

/// This thread's `Local`, without a closure per access.
#[inline(always)]
fn local() -> &'static Local {
    let p: *const Local = LOCAL.with(ptr::from_ref);
    // SAFETY: `LOCAL` has a `const` initialiser and no destructor, so its storage is valid from
    // the thread's start to its very end. `Local` holds `Cell`s and is not `Sync`, so the
    // reference cannot leave this thread, and no code of this thread runs after its end.
    unsafe { &*p }
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        release_thread();
    }
}

/// Gives this thread's table back to the pool; from now on its operations go through the
/// fallback queue (what a thread's exit does, after which more frees may still come).
fn release_thread() {
    let _ = LOCAL.try_with(|l| {
        let st = l.state.replace(ORPHAN);
        if !st.is_null() && st != ORPHAN {
            // SAFETY: a non-sentinel `state` points into the leaked pool.
            unsafe { (*st).status.store(FREE, Ordering::Release) };
        }
    });
}

/// The calling thread's table (its index in the pool) and the attribution key an allocation
/// in span `span` would get right now; `None` if the thread has no table.
pub(crate) fn current_key_for_span(span: u64) -> Option<(usize, Key)> {
    let pool = pool()?;
    let l = local();
    let st = l.state.get();
    if st as usize <= ORPHAN as usize {
        return None;
    }
    let base = pool.threads.as_ptr();
    // SAFETY: `st` points into `pool.threads` (a claimed table of this pool), so both pointers
    // are in the same allocation and the offset is a whole number of elements.
    let index = usize::try_from(unsafe { st.offset_from(base) }).ok()?;
    let (task, gen) = l.task_key();
    Some((
        index,
        Key {
            task,
            span: (span & key::SPAN_MASK) | (u64::from(gen) << key::SPAN_BITS),
        },
    ))
}

/// For tests: does to the calling thread what its exit does to heapspan's thread-local state,
/// so that a test can free memory "after the thread's locals are gone" deterministically.
#[doc(hidden)]
pub fn simulate_thread_exit() {
    release_thread();
}

impl Local {
    #[inline]
    fn current_span(&self) -> u64 {
        self.current.get()
    }

    fn refresh_current(&self) {
        let d = self.depth.get().min(SPAN_STACK);
        self.current
            .set(if d == 0 { 0 } else { self.spans[d - 1].get() });
    }

    fn set_busy(&self, busy: bool) {
        self.busy.set(busy);
        self.heapspan_own.set(busy || self.internal.get() > 0);
    }

    fn set_internal(&self, internal: u32) {
        self.internal.set(internal);
        self.heapspan_own.set(self.busy.get() || internal > 0);
    }

    #[inline]
    fn task_key(&self) -> (u64, u16) {
        let Some(id) = tokio::task::try_id() else {
            return (TASK_NONE, 0);
        };
        let id = key::task_id_u64(id);
        let epoch = key::GEN_EPOCH.load(Ordering::Relaxed);
        let (cid, cgen, cepoch) = self.gen_cache.get();
        if cid == id && cepoch == epoch {
            return (id, cgen);
        }
        let gen = key::generation(id);
        self.gen_cache.set((id, gen, epoch));
        (id, gen)
    }

    /// Claims a table for this thread outside any operation (the indexed path needs it before
    /// recording); the sentinel if none is free.
    #[cold]
    #[inline(never)]
    fn claim_now(&self) -> *const ThreadState {
        let Some(pool) = pool() else {
            return ptr::null();
        };
        self.set_busy(true);
        let st = self.claim(pool);
        self.set_busy(false);
        st
    }

    #[cold]
    fn claim(&self, pool: &'static Pool) -> *const ThreadState {
        let st = pool.threads.iter().enumerate().find(|(_, t)| {
            t.status.load(Ordering::Relaxed) == FREE
                && t.status
                    .compare_exchange(FREE, ACTIVE, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        });
        let Some((i, st)) = st else {
            self.state.set(ORPHAN);
            return ORPHAN;
        };
        pool.high.fetch_max(i as u64 + 1, Ordering::Relaxed);
        self.state.set(st);
        // Registering the exit hook may allocate (glibc's TLS destructor list): `busy` is set
        // by our caller, so that allocation goes to the fallback queue.
        let _ = RELEASE.try_with(|_| ());
        st
    }
}

/// Records `op` under `key` on this thread: the thread's own table when it has one and is not
/// already inside heapspan's bookkeeping, else the cold path.
#[inline(always)]
fn record(l: &Local, key: Key, op: Op) {
    let st = l.state.get();
    if st as usize > ORPHAN as usize {
        // SAFETY: a non-sentinel `state` points into the leaked pool and this thread owns it
        // (claimed with a CAS, released only by this thread's exit hook, after which `state`
        // is the sentinel). Table operations never allocate, so a nested operation (made
        // while the claim below registers the exit hook) never interleaves with a write to
        // the table in progress.
        if unsafe { (*st).record(key, op, &l.hint) } {
            return;
        }
    }
    record_cold(l, key, op);
}

/// First operation on a thread (claims a table), re-entrant operations, threads without a
/// table, and operations a full ring refused: all go through here.
#[cold]
#[inline(never)]
fn record_cold(l: &Local, key: Key, op: Op) {
    let Some(pool) = pool() else { return };
    let st = l.state.get();
    if !st.is_null() || l.busy.get() {
        // Re-entrant, orphaned, or refused by a full ring.
        pool.orphans.push(key, op);
        return;
    }
    l.set_busy(true);
    let st = l.claim(pool);
    let recorded = st != ORPHAN && {
        // SAFETY: just claimed from the leaked pool by this thread (see `record`).
        unsafe { (*st).record(key, op, &l.hint) }
    };
    if !recorded {
        pool.orphans.push(key, op);
    }
    l.set_busy(false);
}

const UNTRACKED: Key = Key {
    task: TASK_UNTRACKED,
    span: 0,
};

/// The key an allocation made now on this thread gets.
#[inline(always)]
fn alloc_key(l: &Local) -> Key {
    if l.heapspan_own.get() {
        Key {
            task: TASK_HEAPSPAN,
            span: 0,
        }
    } else {
        let (task, gen) = l.task_key();
        Key {
            task,
            span: l.current_span() | (u64::from(gen) << key::SPAN_BITS),
        }
    }
}

/// Counts an allocation of `size` bytes (heapspan is running) and returns its key.
#[inline(always)]
fn on_alloc(size: u64) -> Key {
    let l = local();
    let key = alloc_key(l);
    record(l, key, Op::Alloc(size));
    key
}

/// The rest of a counted plain allocation that missed the fast path: counted, its header
/// written.
///
/// # Safety
/// `user` is a new block of this allocator with 16 header bytes in front of it.
#[cold]
#[inline(never)]
unsafe fn alloc_finish_slow(user: *mut u8, key: Key, size: u64) -> *mut u8 {
    record(local(), key, Op::Alloc(size));
    // SAFETY: by the caller's contract.
    unsafe { write_header(user, key) };
    user
}

/// Counts a realloc from `old` to `new` bytes: growth or shrinkage, under the block's key.
#[inline(always)]
fn on_resize(key: Key, old: usize, new: usize) {
    let (old, new) = (old as u64, new as u64);
    if new > old {
        on_op(key, Op::Grow(new - old));
    } else if old > new {
        on_op(key, Op::Shrink(old - new));
    }
}

#[inline(always)]
fn on_op(key: Key, op: Op) {
    // Only while running: once stopped nobody folds the tables, so recording would only fill
    // them up.
    if STATE.load(Ordering::Relaxed) == OFF {
        return;
    }
    record(local(), key, op);
}

// ---------------------------------------------------------------------------------------------
// Hooks for the layer and for heapspan's own code.

/// While alive, allocations on this thread go to the `heapspan` bucket.
#[derive(Debug)]
pub(crate) struct InternalScope(());

impl InternalScope {
    pub(crate) fn enter() -> Self {
        let _ = LOCAL.try_with(|l| l.set_internal(l.internal.get().saturating_add(1)));
        InternalScope(())
    }
}

impl Drop for InternalScope {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| l.set_internal(l.internal.get().saturating_sub(1)));
    }
}

/// Marks the calling thread as heapspan's own for the rest of its life.
pub(crate) fn mark_internal_thread() {
    std::mem::forget(InternalScope::enter());
}

/// The layer entered span `id` on this thread. Returns false if the stack was too deep to
/// track it.
pub(crate) fn push_span(id: u64) -> bool {
    let l = local();
    let d = l.depth.get();
    l.depth.set(d + 1);
    if d < SPAN_STACK {
        l.spans[d].set(id);
        l.current.set(id);
        true
    } else {
        false
    }
}

/// The layer exited span `id` on this thread (spans may exit out of order).
pub(crate) fn pop_span(id: u64) {
    let l = local();
    let d = l.depth.get();
    if d == 0 {
        return;
    }
    let tracked = d.min(SPAN_STACK);
    if let Some(pos) = (0..tracked).rev().find(|&i| l.spans[i].get() == id) {
        for i in pos..tracked - 1 {
            l.spans[i].set(l.spans[i + 1].get());
        }
        // Past the capacity the next deeper span was never recorded: its slot reads as none.
        l.spans[tracked - 1].set(if d > SPAN_STACK {
            0
        } else {
            l.spans[tracked - 1].get()
        });
        l.depth.set(d - 1);
        l.refresh_current();
    } else if d > SPAN_STACK {
        // One of the untracked, deeper spans.
        l.depth.set(d - 1);
        l.refresh_current();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_layout_keeps_alignment_and_room_for_the_header() {
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            let l = Layout::from_size_align(24, align).unwrap();
            let (o, off) = outer(l).unwrap();
            assert!(off >= HEADER_BYTES && off % align == 0, "align {align}");
            assert!(o.align() >= align && o.align() >= 8);
            assert_eq!(o.size(), 24 + off);
        }
        assert!(outer(Layout::from_size_align(isize::MAX as usize - 4, 1).unwrap()).is_none());
    }

    #[test]
    fn header_round_trips_through_realloc() {
        let a = Allocator::system();
        let l = Layout::from_size_align(40, 32).unwrap();
        // SAFETY: a non-zero layout; the pointer is used within its size and freed once with
        // the layout of its last realloc.
        unsafe {
            let p = a.alloc(l);
            assert_eq!(p as usize % 32, 0);
            assert_eq!(read_header(p).task, TASK_UNTRACKED);
            p.write_bytes(7, 40);
            let q = a.realloc(p, l, 4000);
            assert_eq!(q as usize % 32, 0);
            assert_eq!(*q.add(39), 7);
            assert_eq!(read_header(q).task, TASK_UNTRACKED);
            a.dealloc(q, Layout::from_size_align(4000, 32).unwrap());
        }
    }
}
