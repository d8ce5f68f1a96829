//! The 16-byte header in front of every block, and the attribution key it holds.
//!
//! Every allocation carries two words right below the pointer handed out (more room for
//! alignments above 16; the live index's extended header adds two more, see
//! [`index`](super::index)):
//!
//! | word | bits |
//! |---|---|
//! | task word (`user − 16`) | task name index (16) · tokio task id (48); or a reserved bucket |
//! | span word (`user − 8`) | [`EXT`] (1) · span group index (15) · span instance (48; 0 = none) |
//!
//! The names travel in the header so that a free can always be charged to the *name* of the
//! task and span that allocated the block, even long after heapspan forgot the task or span
//! instance itself: per-name figures need no record per ended owner.

use std::alloc::Layout;

/// Header bytes in front of every allocation with an alignment of 16 or less.
pub const HEADER_BYTES: usize = 16;

/// Bits of the task word that hold the tokio task id.
pub(crate) const ID_BITS: u32 = 48;
pub(crate) const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// Task ids at or above this are not representable (at a million tasks a second, tokio's
/// counter reaches it after eight years); their allocations count as outside any task.
const ID_LIMIT: u64 = ID_MASK - 15;

/// Task word of allocations made outside any tokio task (plain threads, `main` before or
/// outside the runtime).
pub(crate) const TASK_NONE: u64 = 0;
/// Task word of allocations made by heapspan itself (its threads, the layer, the aggregator).
pub(crate) const TASK_HEAPSPAN: u64 = u64::MAX;
/// Task word of allocations made while heapspan was not running (before start, after stop).
pub(crate) const TASK_UNTRACKED: u64 = u64::MAX - 1;
/// Task word of allocations that could not be attributed because a hard bound was reached
/// (the overflow bucket).
pub(crate) const TASK_OVERFLOW: u64 = u64::MAX - 2;

/// Span-word flag: the block has the extended (32-byte) header of the live index.
pub(crate) const EXT: u64 = 1 << 63;
/// Bits of the span word that hold the span instance.
pub(crate) const SPAN_BITS: u32 = 48;
pub(crate) const SPAN_MASK: u64 = (1 << SPAN_BITS) - 1;
/// Span groups have 15 bits (the top bit of the span word is [`EXT`]).
pub(crate) const GROUP_MAX: u16 = 0x7FFF;

/// What an allocation is attributed to: the task word and the span word of its header
/// (without [`EXT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) task: u64,
    pub(crate) span: u64,
}

impl Key {
    /// The key of a tracked task's allocation.
    #[inline(always)]
    pub(crate) fn new(task: u64, span: u64) -> Key {
        Key { task, span }
    }

    /// The reserved bucket of the task word, if it is one.
    #[inline]
    pub(crate) fn is_reserved(self) -> bool {
        self.task == TASK_NONE || self.task >= TASK_OVERFLOW
    }

    /// The tokio task id (0 for the reserved buckets).
    #[inline]
    pub(crate) fn task_id(self) -> u64 {
        if self.is_reserved() {
            0
        } else {
            self.task & ID_MASK
        }
    }

    /// The task's name index (0: unnamed).
    #[inline]
    pub(crate) fn task_name(self) -> u16 {
        if self.is_reserved() {
            0
        } else {
            (self.task >> ID_BITS) as u16
        }
    }

    /// The span word without [`EXT`]: group and instance (0: no span).
    #[inline]
    pub(crate) fn span_word(self) -> u64 {
        self.span & !EXT
    }

    /// The span's group index.
    #[inline]
    pub(crate) fn span_group(self) -> u16 {
        ((self.span & !EXT) >> SPAN_BITS) as u16
    }
}

/// The task word of task `id` named `name_hi` (`name << 48`, see [`name_hi`]).
#[inline(always)]
pub(crate) fn task_word(id: u64, name_hi: u64) -> u64 {
    if id >= ID_LIMIT {
        TASK_NONE
    } else {
        id | name_hi
    }
}

/// A task name index, shifted into its place in the task word.
#[inline]
pub(crate) fn name_hi(name: u16) -> u64 {
    u64::from(name) << ID_BITS
}

/// The span word of instance `instance` (at most 48 bits) in group `group`.
#[inline]
pub(crate) fn span_word(group: u16, instance: u64) -> u64 {
    (u64::from(group.min(GROUP_MAX)) << SPAN_BITS) | (instance & SPAN_MASK)
}

/// Where the header goes for `layout`: the inner layout and the offset of the user pointer.
#[inline(always)]
pub(crate) fn outer(layout: Layout) -> Option<(Layout, usize)> {
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
pub(crate) unsafe fn write(user: *mut u8, key: Key) {
    // SAFETY: by the caller's contract; `outer` reserves at least 16 bytes in front of `user`
    // and keeps `user` at least 8-aligned.
    unsafe {
        let h = user.sub(HEADER_BYTES).cast::<u64>();
        h.write(key.task);
        h.add(1).write(key.span);
    }
}

/// Reads the header just below `user`, [`EXT`] included.
///
/// # Safety
/// `user` must be a live pointer returned by this allocator.
#[inline]
pub(crate) unsafe fn read(user: *mut u8) -> Key {
    // SAFETY: every pointer this allocator returns has a header written by `write` (or the
    // extended header, whose last two words have the same layout).
    unsafe {
        let h = user.sub(HEADER_BYTES).cast::<u64>();
        Key {
            task: h.read(),
            span: h.add(1).read(),
        }
    }
}

/// Whether the block at `user` has the extended header (reads only the span word).
///
/// # Safety
/// `user` must be a live pointer returned by this allocator.
#[inline(always)]
pub(crate) unsafe fn is_ext(user: *mut u8) -> bool {
    // SAFETY: every block this allocator hands out has its span word at `user - 8`.
    unsafe { user.sub(8).cast::<u64>().read() & EXT != 0 }
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
    fn words_round_trip() {
        for (id, name) in [(1u64, 0u16), (42, 7), (ID_LIMIT - 1, u16::MAX)] {
            let k = Key::new(task_word(id, name_hi(name)), span_word(9, 12345) | EXT);
            assert!(!k.is_reserved());
            assert_eq!((k.task_id(), k.task_name()), (id, name));
            assert_eq!(k.span_group(), 9);
            assert_eq!(k.span_word() & SPAN_MASK, 12345);
            assert_eq!(k.span_word(), span_word(9, 12345));
        }
        assert_eq!(task_word(ID_LIMIT, name_hi(3)), TASK_NONE);
        for t in [TASK_NONE, TASK_HEAPSPAN, TASK_UNTRACKED, TASK_OVERFLOW] {
            let k = Key::new(t, 0);
            assert!(k.is_reserved());
            assert_eq!((k.task_id(), k.task_name()), (0, 0));
        }
        assert_eq!(span_word(u16::MAX, 1) >> SPAN_BITS, u64::from(GROUP_MAX));
    }
}
