//! The live index: which allocations are live, where, and since when (for the relation graph).
//!
//! # Layout
//!
//! An indexed allocation has a 32-byte header instead of 16 (the *extended* header, flagged by
//! [`EXT`] in the span word, so a free knows which layout it is):
//!
//! | offset from the user pointer | word |
//! |---|---|
//! | −8 | span word, with [`EXT`] set |
//! | −16 | task word |
//! | −24 | size word: size (48 bits), log2 of the alignment, realloc count, [`DEFERRED`] |
//! | −32 | allocation id: thread table (16 bits), entry (24 bits), generation (24 bits) |
//!
//! and a 16-byte [`Entry`] in the allocating thread's index: the address and the allocation
//! time. 48 bytes per live indexed allocation in all.
//!
//! Entries are owned by the allocating thread's table. The owner takes entries from its own
//! free list (entries it freed itself), then from the table's remote-free stack (entries other
//! threads freed: pushed with a compare-and-swap, taken whole by the owner with one swap, so no
//! ABA), then from a bump pointer. Besides the owner, only the thread that frees or reallocates
//! a block writes its entry.
//!
//! # Scans and frees
//!
//! The scanner reads the contents of indexed allocations, so none may go back to the inner
//! allocator while it reads. The handshake, a Dekker pair:
//!
//! - a free of an indexed block raises its thread's `in_free` flag, then (after a fence) reads
//!   the scanning flag; it clears the block's entry and lowers `in_free` (release); only then
//!   does it free the block, or, if it saw a scan, *defer* it (a lock-free stack, released
//!   after the scan). A realloc hides the entry ([`MOVING`]) the same way before the inner
//!   realloc may free the old block, or, during a scan, copies and defers the old block;
//! - the scanner sets `SCANNING`, then (after a fence) waits until no thread is inside such a
//!   free; from then on every entry it reads names a block that stays allocated until it clears
//!   `SCANNING`.
//!
//! The free side's fence is a compiler fence when the process registered for Linux's
//! `membarrier(PRIVATE_EXPEDITED)`, which the scanner then issues to make every running thread
//! execute a full barrier (the asymmetric-fence pattern of liburcu and folly); otherwise both
//! sides use `fence(SeqCst)`. A deferred block keeps its size word (with [`DEFERRED`] set
//! first) so a scanner reading it concurrently stays inside it and then discards it.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

use crate::sync::statics::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

pub(crate) use super::header::EXT;
/// Size-word flag: the block was freed during a scan and waits on the deferred stack.
pub(crate) const DEFERRED: u64 = 1 << 63;
pub(crate) const SIZE_MASK: u64 = (1 << 48) - 1;
const ALIGN_SHIFT: u32 = 48;
const REALLOC_SHIFT: u32 = 54;
const REALLOC_MAX: u64 = 0xFF;
/// Extended header bytes.
pub(crate) const EXT_HEADER: usize = 32;

/// Entry state of a block being moved by a realloc (below any real address, even; odd values
/// are free-list links, 0 an entry never used).
const MOVING: usize = 2;
/// Entries per table at most (24 bits of the id).
pub(crate) const MAX_ENTRIES: usize = 1 << 24;
/// End of a free list (no entry index reaches it). The list heads store `head ^ NO_ENTRY`, so
/// that an all-zero (fresh) table's lists are empty.
const NO_ENTRY: u32 = MAX_ENTRIES as u32;
const GEN_MASK: u64 = (1 << 24) - 1;

/// Entries per thread table.
pub(crate) static CAPACITY: AtomicU64 = AtomicU64::new(0);
/// Whether entries get a code-location column.
static SITES: AtomicU8 = AtomicU8::new(0);
/// The per-thread indexes, one per thread table of the pool (same numbering): a mapping made
/// by [`configure`], all-zero (empty) until used, never unmapped.
static TABLES: AtomicPtr<ThreadIndex> = AtomicPtr::new(ptr::null_mut());
static TABLE_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Turns the live index on, before counting starts: maps an index for each of `tables` thread
/// tables, sets the entries per table and whether sites are kept, and registers for
/// asymmetric fences. False if the mapping cannot be made (the index stays off).
pub(crate) fn configure(tables: usize, capacity: usize, sites: bool) -> bool {
    let Some(p) = super::pages::map_zeroed(tables * std::mem::size_of::<ThreadIndex>()) else {
        return false;
    };
    CAPACITY.store(capacity as u64, Ordering::Relaxed);
    SITES.store(u8::from(sites), Ordering::Relaxed);
    TABLE_COUNT.store(tables, Ordering::Relaxed);
    TABLES.store(p.cast(), Ordering::Release);
    register_membarrier();
    true
}

/// The index of thread table `i`.
///
/// # Safety
/// The index is configured and `i` is below the pool's capacity (the caller's own table, or
/// the table part of a live indexed block's id).
#[inline(always)]
pub(crate) unsafe fn table(i: usize) -> &'static ThreadIndex {
    // SAFETY: by the caller's contract `TABLES` holds at least `i + 1` indexes (all-zero ones
    // are valid and empty), mapped for the rest of the process.
    unsafe { &*TABLES.load(Ordering::Acquire).add(i) }
}

/// The indexes of thread tables `..high` (none if the index is off).
pub(crate) fn tables(high: usize) -> &'static [ThreadIndex] {
    let p = TABLES.load(Ordering::Acquire);
    if p.is_null() {
        return &[];
    }
    let n = high.min(TABLE_COUNT.load(Ordering::Relaxed));
    // SAFETY: `p` holds `TABLE_COUNT` indexes for the rest of the process; `n` is at most that.
    unsafe { std::slice::from_raw_parts(p, n) }
}
/// Milliseconds since start, advanced by the aggregator at every fold: allocation times have
/// the fold interval's resolution.
pub(crate) static NOW_MS: AtomicU64 = AtomicU64::new(0);
/// The scan/free handshake.
#[cfg(not(loom))]
static GATE: Gate = Gate::new();
#[cfg(loom)]
loom::lazy_static! {
    static ref GATE: Gate = Gate::new();
}
/// Blocks freed during a scan (linked through their task word).
static DEFERRED_HEAD: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

/// One index entry: 16 bytes.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry {
    /// The user pointer while live; [`MOVING`] while a realloc moves the block; a free-list
    /// link `next << 1 | 1` once freed; 0 if never used.
    pub(crate) addr: std::sync::atomic::AtomicUsize,
    /// Allocation time in ms since start (40 bits) and generation (24 bits).
    pub(crate) meta: AtomicU64,
}

/// The live index's part of a thread table, in the index's own mapping (numbered as the
/// pool's tables); all-zero (empty) until its table's thread indexes an allocation.
#[derive(Debug)]
pub(crate) struct ThreadIndex {
    entries: AtomicPtr<Entry>,
    /// Sites of the entries' allocations (parallel to `entries`), when sites are captured.
    sites: AtomicPtr<AtomicU64>,
    /// Entries ever handed out (the scanner reads `..bump`).
    bump: AtomicU64,
    /// Owner only: head of the free list.
    free_head: AtomicU64,
    /// Entries freed on other threads: a multi-producer stack (links in the entries, like the
    /// free list) that the owner takes whole when its free list runs dry.
    remote_head: AtomicU64,
    /// Allocations not indexed because the table was full.
    pub(crate) unindexed: AtomicU64,
    /// Owner only: allocating the entries failed; do not retry on every allocation.
    failed: AtomicU8,
    /// Inside a free of an indexed block (read by the scanner).
    pub(crate) in_free: crate::sync::CacheLine<crate::sync::AtomicU64>,
}

impl ThreadIndex {
    /// The entries, allocated on first use (zeroed, straight from the system allocator so it
    /// never re-enters heapspan; kept for the life of the process, reused by later threads).
    /// The first use per table is a cold path that maps `16 × capacity` bytes of address
    /// space (a syscall, once); if that fails, the table stays unindexed.
    fn entries(&self) -> Option<&[Entry]> {
        let cap = CAPACITY.load(Ordering::Relaxed) as usize;
        let mut p = self.entries.load(Ordering::Acquire);
        if p.is_null() {
            if cap == 0 || self.failed.load(Ordering::Relaxed) != 0 {
                return None;
            }
            let layout = Layout::array::<Entry>(cap).ok()?;
            // SAFETY: a non-zero layout; `Entry` is two atomics, valid when all-zero.
            p = unsafe { std::alloc::System.alloc_zeroed(layout) }.cast();
            if p.is_null() {
                self.failed.store(1, Ordering::Relaxed);
                return None;
            }
            if SITES.load(Ordering::Relaxed) != 0 {
                if let Ok(l) = Layout::array::<AtomicU64>(cap) {
                    // SAFETY: a non-zero layout; atomics are valid when all-zero.
                    let s = unsafe { std::alloc::System.alloc_zeroed(l) };
                    self.sites.store(s.cast(), Ordering::Release);
                }
            }
            // Only the owner allocates; the scanner only reads.
            self.entries.store(p, Ordering::Release);
        }
        // SAFETY: `p` points to `cap` zero-initialised entries that are never freed.
        Some(unsafe { std::slice::from_raw_parts(p, cap) })
    }

    /// The site of entry `i`'s allocation (0: none captured).
    pub(crate) fn site(&self, i: u32) -> u64 {
        let s = self.sites.load(Ordering::Acquire);
        if s.is_null() {
            return 0;
        }
        // SAFETY: `sites` has as many elements as `entries`, and `i` indexes a published entry.
        unsafe { &*s.add(i as usize) }.load(Ordering::Relaxed)
    }

    /// The entries as far as the scanner may read them.
    pub(crate) fn published(&self) -> &[Entry] {
        let p = self.entries.load(Ordering::Acquire);
        if p.is_null() {
            return &[];
        }
        let n = self.bump.load(Ordering::Acquire) as usize;
        // SAFETY: `p` holds CAPACITY entries (never freed) and `bump <= CAPACITY`.
        unsafe { std::slice::from_raw_parts(p, n) }
    }

    /// Owner only: an entry for a new allocation, or `None` when the table is full.
    #[inline(always)]
    fn reserve(&self) -> Option<(u32, &Entry)> {
        let head = list_head(self.free_head.load(Ordering::Relaxed));
        if head != NO_ENTRY {
            // The free list is only ever non-empty once the entries exist.
            let p = self.entries.load(Ordering::Relaxed);
            // SAFETY: `head` came from this table's free list: an index below its capacity.
            let e = unsafe { &*p.add(head as usize) };
            let next = e.addr.load(Ordering::Relaxed) >> 1;
            self.free_head
                .store(list_word(next as u32), Ordering::Relaxed);
            return Some((head, e));
        }
        self.reserve_slow()
    }

    #[cold]
    #[inline(never)]
    fn reserve_slow(&self) -> Option<(u32, &Entry)> {
        let entries = self.entries()?;
        // Entries other threads freed: take them all as the new free list.
        if self.remote_head.load(Ordering::Relaxed) != list_word(NO_ENTRY) {
            let head = list_head(
                self.remote_head
                    .swap(list_word(NO_ENTRY), Ordering::Acquire),
            );
            if head != NO_ENTRY {
                let e = &entries[head as usize];
                let next = e.addr.load(Ordering::Relaxed) >> 1;
                self.free_head
                    .store(list_word(next as u32), Ordering::Relaxed);
                return Some((head, e));
            }
        }
        let b = self.bump.load(Ordering::Relaxed) as usize;
        if b < entries.len() {
            self.bump.store(b as u64 + 1, Ordering::Release);
            return Some((b as u32, &entries[b]));
        }
        self.unindexed.store(
            self.unindexed.load(Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        None
    }

    /// Owner only: puts entry `i` on the free list.
    #[inline(always)]
    fn release_own(&self, i: u32, e: &Entry) {
        let head = list_head(self.free_head.load(Ordering::Relaxed)) as usize;
        e.addr.store((head << 1) | 1, Ordering::Release);
        self.free_head.store(list_word(i), Ordering::Relaxed);
    }

    /// Any thread but the owner: pushes entry `i` on the remote-free stack.
    fn release_remote(&self, i: u32, e: &Entry) {
        let mut head = self.remote_head.load(Ordering::Relaxed);
        loop {
            e.addr
                .store(((list_head(head) as usize) << 1) | 1, Ordering::Relaxed);
            match self.remote_head.compare_exchange_weak(
                head,
                list_word(i),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

/// A free-list head as stored (`head ^ NO_ENTRY`: zero is the empty list).
#[inline(always)]
fn list_word(head: u32) -> u64 {
    u64::from(head ^ NO_ENTRY)
}

/// A free-list head from its stored word.
#[inline(always)]
fn list_head(word: u64) -> u32 {
    word as u32 ^ NO_ENTRY
}

// ---------------------------------------------------------------------------------------------
// Ids and header words.

#[inline]
fn make_id(table: usize, entry: u32, gen: u64) -> u64 {
    ((table as u64) << 48) | (u64::from(entry) << 24) | (gen & GEN_MASK)
}

/// `(table, entry, generation)` of an allocation id.
#[inline]
pub(crate) fn split_id(id: u64) -> (usize, u32, u64) {
    (
        (id >> 48) as usize,
        ((id >> 24) & 0xFF_FFFF) as u32,
        id & GEN_MASK,
    )
}

#[inline]
fn size_word(size: usize, align: usize, reallocs: u64) -> u64 {
    (size as u64 & SIZE_MASK)
        | (u64::from(align.trailing_zeros()) << ALIGN_SHIFT)
        | (reallocs.min(REALLOC_MAX) << REALLOC_SHIFT)
}

/// Realloc count of a size word.
#[inline]
pub(crate) fn reallocs_of(size_word: u64) -> u64 {
    (size_word >> REALLOC_SHIFT) & REALLOC_MAX
}

/// The header word at `user - off` as an atomic.
///
/// # Safety
/// `user - off` must be a header word of a block that stays allocated while the reference is
/// used.
#[inline]
pub(crate) unsafe fn word<'a>(user: *const u8, off: usize) -> &'a AtomicU64 {
    // SAFETY: by the caller's contract the word is inside a live block, 8-aligned (`user` is
    // at least 8-aligned and `off` a multiple of 8). Once the block is published, its header
    // words are written only atomically (`defer`, `rewrite_after_realloc`, the custody flag's
    // `invalid::set_custody`, all by the block's owner); plain reads of them (the check in
    // `dealloc`/`realloc`, by the owner) never race with a write.
    unsafe { AtomicU64::from_ptr(user.sub(off).cast::<u64>().cast_mut()) }
}

/// Where the extended header goes for `layout`.
#[inline]
pub(crate) fn outer_ext(layout: Layout) -> Option<(Layout, usize)> {
    // The size word holds 48 bits: bigger blocks are never indexed.
    if layout.size() as u64 > SIZE_MASK {
        return None;
    }
    if layout.align() <= 16 {
        let size = layout.size().checked_add(EXT_HEADER)?;
        if size > isize::MAX as usize - 15 {
            return None;
        }
        let align = layout.align().max(8);
        // SAFETY: `align` is a power of two and `size` rounded up to it fits in isize.
        return Some((
            unsafe { Layout::from_size_align_unchecked(size, align) },
            EXT_HEADER,
        ));
    }
    // Alignments above 16 already put `align >= 32` bytes in front of the user pointer.
    super::header::outer(layout)
}

// ---------------------------------------------------------------------------------------------
// The allocation side.

/// A reserved entry, until the block is published.
pub(crate) struct Reserved<'a> {
    table: usize,
    index: &'a ThreadIndex,
    entry: u32,
    e: &'a Entry,
}

/// Reserves an entry in table `table` (the calling thread's own).
#[inline]
pub(crate) fn reserve(table: usize) -> Option<Reserved<'static>> {
    if TABLES.load(Ordering::Relaxed).is_null() {
        return None;
    }
    // SAFETY: the index is configured, and `table` is the caller's own table of the pool.
    let index = unsafe { self::table(table) };
    let (entry, e) = index.reserve()?;
    Some(Reserved {
        table,
        index,
        entry,
        e,
    })
}

impl Reserved<'_> {
    /// Records the allocation's code location (before [`Reserved::publish`]).
    pub(crate) fn set_site(&self, site: u64) {
        let s = self.index.sites.load(Ordering::Relaxed);
        if !s.is_null() {
            // SAFETY: `sites` parallels `entries`, and `entry` is below their capacity.
            unsafe { &*s.add(self.entry as usize) }.store(site, Ordering::Relaxed);
        }
    }

    /// The allocation failed: the entry goes back.
    pub(crate) fn cancel(self) {
        self.index.release_own(self.entry, self.e);
    }

    /// Writes the extended header of `user` and publishes the entry.
    ///
    /// # Safety
    /// `user` must have [`EXT_HEADER`] bytes of its block in front of it, 8-aligned.
    #[inline(always)]
    pub(crate) unsafe fn publish(self, user: *mut u8, layout: Layout, task: u64, span: u64) {
        let gen = (self.e.meta.load(Ordering::Relaxed) + 1) & GEN_MASK;
        let id = make_id(self.table, self.entry, gen);
        let (task, span) = super::header::tagged(
            super::header::Key::new(task, span | EXT),
            user,
            layout.size(),
        );
        // SAFETY: by the caller's contract; the block is not published yet, so plain writes.
        unsafe {
            let h = user.sub(EXT_HEADER).cast::<u64>();
            h.write(id);
            h.add(1).write(size_word(layout.size(), layout.align(), 0));
            h.add(2).write(task);
            h.add(3).write(span);
        }
        self.e.meta.store(
            (NOW_MS.load(Ordering::Relaxed) << 24) | gen,
            Ordering::Relaxed,
        );
        // Release: the header and the time are visible to a scanner that reads the address.
        self.e.addr.store(user as usize, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// The free side.

/// The handshake between frees of indexed blocks and the scanner (see the module docs): a
/// Dekker pair of "a scan runs" and per-thread "inside a free" flags.
#[derive(Debug)]
pub(crate) struct Gate {
    /// A scan is reading indexed blocks.
    scanning: crate::sync::AtomicU8,
    /// Frees of indexed blocks in progress on threads without a table.
    orphans_in_free: crate::sync::AtomicU64,
    /// `membarrier(PRIVATE_EXPEDITED)` is registered: frees need only a compiler fence.
    asymmetric: crate::sync::AtomicU8,
    /// Scans are off for good (a membarrier failed after registration).
    disabled: crate::sync::AtomicU8,
}

impl Gate {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Gate {
            scanning: crate::sync::AtomicU8::new(0),
            orphans_in_free: crate::sync::AtomicU64::new(0),
            asymmetric: crate::sync::AtomicU8::new(0),
            disabled: crate::sync::AtomicU8::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Gate {
            scanning: crate::sync::AtomicU8::new(0),
            orphans_in_free: crate::sync::AtomicU64::new(0),
            asymmetric: crate::sync::AtomicU8::new(0),
            disabled: crate::sync::AtomicU8::new(0),
        }
    }

    /// A free of an indexed block begins (`flag`: the thread's own, `None` for a thread
    /// without a table). Returns whether a scan runs: then the block must be deferred.
    #[inline(always)]
    fn enter(&self, flag: Option<&crate::sync::AtomicU64>) -> bool {
        match flag {
            Some(f) => {
                f.store(1, Ordering::Relaxed);
                if self.asymmetric.load(Ordering::Relaxed) != 0 {
                    // The scanner's membarrier orders this thread's store before its load.
                    std::sync::atomic::compiler_fence(Ordering::SeqCst);
                } else {
                    crate::sync::fence(Ordering::SeqCst);
                }
            }
            None => {
                self.orphans_in_free.fetch_add(1, Ordering::SeqCst);
                crate::sync::fence(Ordering::SeqCst);
            }
        }
        // Acquire: a free that sees a scan ended reuses the block after the scan's reads.
        self.scanning.load(Ordering::Acquire) != 0
    }

    /// The free is done: the block is freed (or deferred) and its entry cleared.
    #[inline(always)]
    fn exit(&self, flag: Option<&crate::sync::AtomicU64>) {
        match flag {
            Some(f) => f.store(0, Ordering::Release),
            None => {
                self.orphans_in_free.fetch_sub(1, Ordering::Release);
            }
        }
    }

    /// A scan begins: returns once no free that missed the flag is still in progress, or
    /// false (and no scan) if the barrier cannot be had. `flags` is called after the barrier,
    /// so a thread that claimed a table meanwhile (and may have missed the flag) is included.
    fn begin<'a, I: Iterator<Item = &'a crate::sync::AtomicU64>>(
        &self,
        flags: impl FnOnce() -> I,
    ) -> bool {
        if self.disabled.load(Ordering::Relaxed) != 0 {
            return false;
        }
        self.scanning.store(1, Ordering::Relaxed);
        if !self.heavy_barrier() {
            self.scanning.store(0, Ordering::Release);
            return false;
        }
        for f in flags() {
            wait_zero(f);
        }
        wait_zero(&self.orphans_in_free);
        true
    }

    /// The scan is over.
    fn end(&self) {
        self.scanning.store(0, Ordering::Release);
    }

    /// The scanner's half of the barrier. False if it cannot be had: the process registered
    /// for membarrier, yet the kernel refused it now (not expected). Frees in flight then had
    /// only compiler fences, so no scan is safe any more: scans are disabled for good.
    fn heavy_barrier(&self) -> bool {
        #[cfg(all(target_os = "linux", not(loom), not(miri)))]
        if self.asymmetric.load(Ordering::Acquire) != 0 {
            // SAFETY: a plain syscall with integer arguments; failure is reported, not UB.
            let r = unsafe {
                libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
            };
            if r == 0 {
                return true;
            }
            self.disabled.store(1, Ordering::Relaxed);
            return false;
        }
        crate::sync::fence(Ordering::SeqCst);
        true
    }
}

/// Which `in_free` flag a thread raises: its table's, or the shared counter.
#[derive(Clone, Copy)]
pub(crate) enum Marker<'a> {
    Own(&'a ThreadIndex),
    Orphan,
}

impl Marker<'_> {
    /// See [`Gate::enter`].
    #[inline(always)]
    pub(crate) fn enter(self) -> bool {
        match self {
            Marker::Own(t) => GATE.enter(Some(&t.in_free.0)),
            Marker::Orphan => GATE.enter(None),
        }
    }

    /// See [`Gate::exit`].
    #[inline(always)]
    pub(crate) fn exit(self) {
        match self {
            Marker::Own(t) => GATE.exit(Some(&t.in_free.0)),
            Marker::Orphan => GATE.exit(None),
        }
    }
}

/// The entry of allocation `id`, and its table's index.
///
/// # Safety
/// `id` must be the id of a live indexed block.
#[inline(always)]
unsafe fn entry_of(id: u64) -> (&'static Entry, &'static ThreadIndex) {
    let (table, entry, _) = split_id(id);
    // SAFETY: an indexed block exists, so the index is configured, and its id names a table.
    let t = unsafe { self::table(table) };
    let p = t.entries.load(Ordering::Acquire);
    // SAFETY: the table allocated its entries before publishing any id naming them; `entry`
    // is below its capacity; entries are never freed.
    (unsafe { &*p.add(entry as usize) }, t)
}

/// Clears the entry of allocation `id`: onto the owner's free list when the caller owns the
/// table (`own` is the caller's table), else onto the table's remote-free stack.
///
/// # Safety
/// `id` must be the id of a live indexed block being freed by the caller.
#[inline(always)]
pub(crate) unsafe fn clear_entry(id: u64, own: Option<usize>) {
    // SAFETY: by the caller's contract.
    let (e, t) = unsafe { entry_of(id) };
    let (table, i, _) = split_id(id);
    if own == Some(table) {
        t.release_own(i, e);
    } else {
        t.release_remote(i, e);
    }
}

/// Hides the entry of allocation `id` from scans while a realloc moves the block (restored
/// or moved on by [`move_entry`]).
///
/// # Safety
/// `id` must be the id of a live indexed block the caller is reallocating.
pub(crate) unsafe fn hide_entry(id: u64) {
    // SAFETY: by the caller's contract.
    let (e, _) = unsafe { entry_of(id) };
    e.addr.store(MOVING, Ordering::Release);
}

/// Names block `user` in the entry of `id` again (a realloc that failed).
///
/// # Safety
/// As for [`hide_entry`]; `user` is the block, unchanged.
pub(crate) unsafe fn show_entry(id: u64, user: *mut u8) {
    // SAFETY: by the caller's contract.
    let (e, _) = unsafe { entry_of(id) };
    e.addr.store(user as usize, Ordering::Release);
}

/// The id an allocation gets when a realloc moves or resizes it: the next generation.
pub(crate) fn next_id(id: u64) -> u64 {
    let (table, entry, gen) = split_id(id);
    make_id(table, entry, gen + 1)
}

/// Moves the entry of `id` to `user` with the next generation.
///
/// # Safety
/// `id` must be the id of a live indexed block the caller has just moved or resized to `user`.
pub(crate) unsafe fn move_entry(id: u64, user: *mut u8) {
    let gen = split_id(id).2;
    // SAFETY: by the caller's contract.
    let (e, _) = unsafe { entry_of(id) };
    let meta = e.meta.load(Ordering::Relaxed);
    e.meta.store(
        (meta & !GEN_MASK) | ((gen + 1) & GEN_MASK),
        Ordering::Relaxed,
    );
    e.addr.store(user as usize, Ordering::Release);
}

/// Rewrites the id and size words of a block after a realloc, and its task and span words
/// (`key`, [`EXT`] included) tagged for its new address and size.
///
/// # Safety
/// `user` is a live extended block owned by the caller and not published to anyone else yet
/// in its new form.
pub(crate) unsafe fn rewrite_after_realloc(
    user: *mut u8,
    id: u64,
    old_size_word: u64,
    new_size: usize,
    key: super::header::Key,
) {
    let align = 1usize << ((old_size_word >> ALIGN_SHIFT) & 0x3F);
    let reallocs = reallocs_of(old_size_word) + 1;
    let (task, span) = super::header::tagged(key, user, new_size);
    // SAFETY: by the caller's contract.
    unsafe {
        word(user, 32).store(id, Ordering::Relaxed);
        word(user, 24).store(size_word(new_size, align, reallocs), Ordering::Relaxed);
        word(user, 16).store(task, Ordering::Relaxed);
        word(user, 8).store(span, Ordering::Relaxed);
    }
}

/// Whether `id` names a live entry of the index whose block is `user`: false for an id word
/// that is not one (a foreign or reused header: its table or entry out of range, or its entry
/// unallocated) and for a block freed since (its entry cleared or reused). Reads only the
/// index's own memory, bounds-checked.
pub(crate) fn names(id: u64, user: *mut u8) -> bool {
    let (table, entry, _) = split_id(id);
    if table >= TABLE_COUNT.load(Ordering::Relaxed)
        || u64::from(entry) >= CAPACITY.load(Ordering::Relaxed)
    {
        return false;
    }
    let tables = TABLES.load(Ordering::Acquire);
    if tables.is_null() {
        return false;
    }
    // SAFETY: `table` is below the count of indexes the mapping holds (never unmapped).
    let t = unsafe { &*tables.add(table) };
    let p = t.entries.load(Ordering::Acquire);
    if p.is_null() {
        return false;
    }
    // SAFETY: a table's entries, once allocated, hold `CAPACITY` entries and are never freed;
    // `entry` is below it.
    let e = unsafe { &*p.add(entry as usize) };
    e.addr.load(Ordering::Acquire) == user as usize
}

/// Frees a deferred extended block through the allocator `this` points to (see
/// [`defer`]).
pub(crate) type ReleaseFn = unsafe fn(*const (), *mut u8);

/// The layout the caller of a deferred block's free gave (from its size word).
///
/// # Safety
/// `user` is an extended block handed to [`defer`].
pub(crate) unsafe fn deferred_layout(user: *mut u8) -> Layout {
    // SAFETY: by the caller's contract the size word is the block's (DEFERRED set, size and
    // alignment kept).
    unsafe {
        let sw = word(user, 24).load(Ordering::Relaxed);
        let align = 1usize << ((sw >> ALIGN_SHIFT) & 0x3F);
        Layout::from_size_align_unchecked((sw & SIZE_MASK) as usize, align)
    }
}

/// Defers the free of extended block `user` until the running scan ends.
///
/// # Safety
/// `user` is a live extended block of the allocator `this` points to, which its caller is
/// freeing; that allocator lives for the rest of the process (the global allocator does), and
/// `release(this, user)` frees the block through it.
pub(crate) unsafe fn defer(this: *const (), release: ReleaseFn, user: *mut u8) {
    // SAFETY: `user` is a live extended block (the caller's contract) until we hand it over.
    unsafe {
        let sw = word(user, 24);
        sw.store(sw.load(Ordering::Relaxed) | DEFERRED, Ordering::Relaxed);
        // A scanner that reads any of the words written below then sees DEFERRED.
        std::sync::atomic::fence(Ordering::Release);
        word(user, 8).store(this as u64, Ordering::Relaxed);
        word(user, 32).store(release as usize as u64, Ordering::Relaxed);
        let link = word(user, 16);
        let mut head = DEFERRED_HEAD.load(Ordering::Relaxed);
        loop {
            link.store(head as u64, Ordering::Relaxed);
            match DEFERRED_HEAD.compare_exchange_weak(
                head,
                user,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

/// Releases every deferred block (outside a scan). Returns how many.
pub(crate) fn drain_deferred() -> u64 {
    if DEFERRED_HEAD.load(Ordering::Relaxed).is_null() {
        return 0;
    }
    let mut p = DEFERRED_HEAD.swap(ptr::null_mut(), Ordering::Acquire);
    let mut n = 0;
    while !p.is_null() {
        // SAFETY: blocks on the stack are extended blocks handed over by `defer`, whose words
        // hold the link, the allocator and its release function; nobody else touches them.
        unsafe {
            let next = word(p, 16).load(Ordering::Relaxed) as *mut u8;
            let this = word(p, 8).load(Ordering::Relaxed) as *const ();
            let f: ReleaseFn = std::mem::transmute::<usize, ReleaseFn>(
                word(p, 32).load(Ordering::Relaxed) as usize,
            );
            f(this, p);
            p = next;
        }
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// The scanner's side of the handshake.

// Not under Miri, which has no membarrier: both sides use `fence(SeqCst)` there, which Miri's
// weak-memory emulation then checks.
#[cfg(all(target_os = "linux", not(loom), not(miri)))]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
#[cfg(all(target_os = "linux", not(loom), not(miri)))]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Bytes of the live index outside the blocks: entries handed out (the touched part of each
/// table's entries) and their sites. The extended headers are inside the blocks and not
/// counted here.
pub(crate) fn index_bytes(high: usize) -> u64 {
    tables(high)
        .iter()
        .map(|t| {
            let per_entry = std::mem::size_of::<Entry>() as u64
                + if t.sites.load(Ordering::Relaxed).is_null() {
                    0
                } else {
                    8
                };
            t.bump.load(Ordering::Relaxed) * per_entry
        })
        .sum()
}

/// Registers for asymmetric fences (at start, before any indexed block exists).
fn register_membarrier() {
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    {
        // SAFETY: a plain syscall with integer arguments; failure is reported, not UB.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
                0,
            )
        };
        if r == 0 {
            GATE.asymmetric.store(1, Ordering::Release);
        }
    }
}

fn wait_zero(a: &crate::sync::AtomicU64) {
    let mut spins = 0u32;
    while a.load(Ordering::Acquire) != 0 {
        spins = spins.saturating_add(1);
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Starts a scan: from its return until [`end_scan`], no indexed block goes back to the inner
/// allocator. Spins (on the scanner's thread, never the application's) until frees in progress
/// are done.
pub(crate) fn begin_scan(high: impl Fn() -> usize) -> bool {
    GATE.begin(|| {
        // Read after the barrier: a thread that claimed a table just before it is included.
        tables(high()).iter().map(|t| &t.in_free.0)
    })
}

/// Ends a scan and releases what was deferred meanwhile. Returns the deferred count.
pub(crate) fn end_scan() -> u64 {
    GATE.end();
    drain_deferred()
}

/// Entries the scanner looks ahead: blocks are scattered, so each is a cache miss.
const PREFETCH_AHEAD: usize = 8;

/// A hint to load the cache line of `addr`'s header; never faults (a prefetch of any address
/// is allowed, and a non-block value is harmless).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    if addr >= 4096 && addr & 7 == 0 {
        // SAFETY: `prefetcht0` has no architectural effect besides caching; it never faults,
        // whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                addr.wrapping_sub(EXT_HEADER) as *const i8,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Scanner only: walks table `table`'s published entries and calls `f(entry index, address,
/// meta)` for the live ones.
pub(crate) fn visit(table: &ThreadIndex, mut f: impl FnMut(u32, usize, u64)) {
    let entries = table.published();
    for (i, e) in entries.iter().enumerate() {
        if let Some(ahead) = entries.get(i + PREFETCH_AHEAD) {
            prefetch(ahead.addr.load(Ordering::Relaxed));
        }
        let a = e.addr.load(Ordering::Acquire);
        if a & 7 != 0 || a < 4096 {
            continue;
        }
        f(i as u32, a, e.meta.load(Ordering::Relaxed));
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// The handshake itself (`Gate`), with loom's atomics and full fences on both sides (the
    /// membarrier variant is the same argument with the free side's fence made asymmetric):
    /// a block is "freed" by a thread that saw no scan, or "deferred" and freed by the scanner
    /// after the scan; the scanner reads it only between `begin` and `end`, and only if its
    /// entry is still live. The scanner never reads a freed block.
    #[test]
    fn a_scanned_block_is_never_freed_under_the_scanner() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let gate = Arc::new(Gate::new());
            let flag = Arc::new(crate::sync::AtomicU64::new(0));
            // The block: live (entry published) until freed; "freed" = handed back.
            let entry_live = Arc::new(AtomicBool::new(true));
            let freed = Arc::new(AtomicBool::new(false));
            let deferred = Arc::new(AtomicBool::new(false));
            let freer = {
                let (gate, flag, entry_live, freed, deferred) = (
                    gate.clone(),
                    flag.clone(),
                    entry_live.clone(),
                    freed.clone(),
                    deferred.clone(),
                );
                loom::thread::spawn(move || {
                    // As `dealloc_ext`: enter, clear the entry, exit, then free or defer.
                    let scanning = gate.enter(Some(&flag));
                    entry_live.store(false, Ordering::Release);
                    gate.exit(Some(&flag));
                    if scanning {
                        deferred.store(true, Ordering::Release);
                    } else {
                        freed.store(true, Ordering::Release);
                    }
                })
            };
            assert!(gate.begin(|| std::iter::once(&*flag)));
            if entry_live.load(Ordering::Acquire) {
                // Reading the block: it must not have gone back to the allocator.
                assert!(!freed.load(Ordering::Acquire), "read a freed block");
            }
            gate.end();
            freer.join().unwrap();
            // Deferred blocks are freed after the scan; every block is freed exactly once.
            assert!(freed.load(Ordering::Acquire) ^ deferred.load(Ordering::Acquire));
        });
    }
}
