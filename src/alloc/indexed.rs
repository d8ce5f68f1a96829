//! The allocator's paths for blocks of the live index: indexed allocations (extended header and
//! entry), their frees and reallocs (the scan handshake, deferral), sampled re-draws, and
//! heapspan's own blocks, scrubbed while scans may read freed memory.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

use super::header::{self, Key, EXT, ID_MASK, TASK_HEAPSPAN};
use super::local::{local, Local};
use super::slots::Op;
use super::state::{self, Mode};
use super::{index, record, sites, Allocator};
use crate::sync::statics::Ordering;

impl<A: GlobalAlloc> Allocator<A> {
    /// An allocation the live index takes (every one in full mode, a sampled one otherwise):
    /// indexed with the extended header when the thread has a table with a free entry, else a
    /// plain counted one.
    #[inline(never)]
    pub(super) unsafe fn alloc_indexed(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let l = local();
        if l.may_claim() {
            // The thread's first operation since start: claim its table now, so that this
            // allocation is indexed too.
            l.claim_now();
        }
        let reserved = match l.table() {
            Some(st) if !l.heapspan_own.get() => index::reserve(st.id()),
            _ => None,
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
        let key = record::on_alloc(l, layout.size() as u64);
        if sites::ON.load(Ordering::Relaxed) != 0 {
            r.set_site(sites::capture());
        }
        // SAFETY: `off >= 32` bytes in front of `user` belong to the block, 8-aligned.
        unsafe { r.publish(user, layout, key.task, key.span) };
        user
    }

    /// Which `in_free` flag this thread raises, and its table (if it has one).
    #[inline(always)]
    fn marker(l: &Local) -> (index::Marker<'static>, Option<usize>) {
        match l.table() {
            // SAFETY: an indexed block is being freed, so the index is configured; the id is
            // the caller's own table.
            Some(st) => (
                index::Marker::Own(unsafe { index::table(st.id()) }),
                Some(st.id()),
            ),
            None => (index::Marker::Orphan, None),
        }
    }

    /// Frees an extended block: counted, its entry cleared, and released now or, while a scan
    /// runs, deferred until it ends.
    /// `key` is its checked header's. A block whose entry no longer names it (a second free
    /// whose header the inner allocator left intact) goes to the invalid-free path instead.
    #[inline(never)]
    pub(super) unsafe fn dealloc_ext(&self, user: *mut u8, layout: Layout, key: Key) {
        // SAFETY: the header checked, so the 32 bytes below `user` are this block's (or were,
        // and are then still readable memory of the inner allocator's).
        let id = unsafe { index::word(user, 32).load(Ordering::Relaxed) };
        if !index::names(id, user) {
            // SAFETY: forwarded caller contract (as far as the caller kept it).
            return unsafe { super::invalid::on_stale_ext(user, layout, key) };
        }
        let l = local();
        // Who frees it: one call into tokio for the evidence and the hand-off test both.
        let now = l.alloc_key();
        super::invalid::remember_free(l, user, key, now);
        if state::mode() != Mode::Off {
            record::record(l, key.without_ext(), Op::Free(layout.size() as u64));
            if record::maybe_handoff(key, now.task) {
                record::on_handoff(l, key, layout.size() as u64, now.task & ID_MASK);
            }
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
            unsafe { index::defer(ptr::from_ref(self).cast(), release_deferred::<A>, user) };
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
    pub(super) unsafe fn realloc_resample(
        &self,
        user: *mut u8,
        layout: Layout,
        new_size: usize,
        key: Key,
        to_ext: bool,
    ) -> Option<*mut u8> {
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        // The old block's inner layout (it was allocated with it, so this cannot fail).
        let (old_outer, old_off) = header::outer(layout)?;
        if key.span & EXT != 0 {
            // SAFETY: the header checked, so the id word is the block's.
            let id = unsafe { index::word(user, 32).load(Ordering::Relaxed) };
            if !index::names(id, user) {
                // A stale extended block: the ordinary realloc path reports it.
                return None;
            }
        }
        let key = key.without_ext();
        if key.task == TASK_HEAPSPAN {
            // heapspan's own blocks are never indexed (and are scrubbed when they move).
            return None;
        }
        let l = local();
        let new_user = if to_ext {
            let st = l.table().filter(|_| !l.heapspan_own.get())?;
            let r = index::reserve(st.id())?;
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
            let (new_outer, off) = header::outer(new_layout)?;
            // SAFETY: a non-zero layout.
            let base = unsafe { self.inner.alloc(new_outer) };
            if base.is_null() {
                return Some(base);
            }
            // SAFETY: as above; the new block's 16-byte header goes in front of `nu`.
            let nu = unsafe {
                let nu = base.add(off);
                ptr::copy_nonoverlapping(user, nu, layout.size().min(new_size));
                header::write(nu, key, new_size);
                nu
            };
            // SAFETY: the old block is a live extended block being replaced.
            unsafe {
                let id = index::word(user, 32).load(Ordering::Relaxed);
                self.free_ext_uncounted(l, user, layout, id);
            }
            nu
        };
        record::on_resize(key, layout.size(), new_size);
        Some(new_user)
    }

    /// A realloc of one of heapspan's own blocks while the live index is on: moved by hand so
    /// that the old block is zeroed before it is freed (see `dealloc`).
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn realloc_scrubbed(
        &self,
        user: *mut u8,
        layout: Layout,
        new_size: usize,
        key: Key,
    ) -> *mut u8 {
        let (Some((old_outer, off)), Ok(new_layout)) = (
            header::outer(layout),
            Layout::from_size_align(new_size, layout.align()),
        ) else {
            return ptr::null_mut();
        };
        let Some((new_outer, new_off)) = header::outer(new_layout) else {
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
            header::write(nu, key, new_size);
            user.write_bytes(0, layout.size());
            self.inner.dealloc(user.sub(off), old_outer);
            nu
        };
        record::on_resize(key, layout.size(), new_size);
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
    pub(super) unsafe fn realloc_ext(
        &self,
        user: *mut u8,
        layout: Layout,
        new_size: usize,
        key: Key,
    ) -> *mut u8 {
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
        // SAFETY: the header checked, so the extended header's words are the block's (or were,
        // and are then still readable memory of the inner allocator's).
        let (id, sw) = unsafe {
            (
                index::word(user, 32).load(Ordering::Relaxed),
                index::word(user, 24).load(Ordering::Relaxed),
            )
        };
        if !index::names(id, user) {
            // SAFETY: forwarded caller contract (as far as the caller kept it).
            return unsafe {
                super::invalid::on_stale_ext_realloc(self, user, layout, new_size, key)
            };
        }
        let (task, span) = (key.task, key.span & !EXT);
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
        unsafe { index::rewrite_after_realloc(new_user, new_id, sw, new_size, key) };
        // SAFETY: `id` is this block's id; the caller moves it.
        unsafe { index::move_entry(id, new_user) };
        if scanning {
            // SAFETY: the old block, no longer named by its entry, is freed by the realloc;
            // deferred until the scans that may have read it are over.
            unsafe { index::defer(ptr::from_ref(self).cast(), release_deferred::<A>, user) };
        }
        record::on_resize(Key::new(task, span), layout.size(), new_size);
        new_user
    }
}

/// Releases deferred block `user` through the allocator `this` points to (what
/// [`index::defer`] calls after the scan).
///
/// # Safety
/// `this` must point to the live `Allocator<A>` that allocated `user`; `user` an extended block
/// on the deferred stack, no longer reachable by anyone else.
unsafe fn release_deferred<A: GlobalAlloc>(this: *const (), user: *mut u8) {
    // SAFETY: by the caller's contract.
    unsafe {
        let layout = index::deferred_layout(user);
        (*this.cast::<Allocator<A>>()).release_ext(user, layout);
    }
}
