//! The 16-byte header in front of every block: the attribution key it holds, and the tag that
//! lets a free recognise a block of this allocator before it trusts anything in it.
//!
//! Every allocation carries two words right below the pointer handed out (more room for
//! alignments above 16; the live index's extended header adds two more, see
//! [`index`](super::index)):
//!
//! | word | bits (high to low) |
//! |---|---|
//! | task word (`user − 16`) | tag (9) · task name index (12) · tokio task id (43); or a reserved bucket |
//! | span word (`user − 8`) | [`EXT`] (1) · [`CUSTODY`] (1) · tag (7) · span group (15) · span instance (40; 0 = none) |
//!
//! The names travel in the header so that a free can always be charged to the *name* of the
//! task and span that allocated the block, even long after heapspan forgot the task or span
//! instance itself: per-name figures need no record per ended owner.
//!
//! # The tag
//!
//! The 16 tag bits are a keyed hash ([`tag`]) of the rest of both words, the user pointer and
//! the size the block was allocated with. The key is the address of a static of this crate,
//! so it differs from process to process under ASLR and never changes within one. A free (and
//! a realloc) recomputes the tag from the words it reads, the pointer it was given and the
//! size of the layout it was given, and goes on only if it matches ([`check`]): a
//! pointer heapspan never handed out, a block whose header the inner allocator has reused
//! after a first free, or a free with another size are each taken for a valid block with a
//! probability of 2⁻¹⁶ at most. A valid free leaves a *tombstone* in the block's first 16
//! bytes (the words with their tag bits inverted, [`write_tombstone`]): when the header was
//! overwritten but the tombstone survived, a second free of the block is recognised as one,
//! with the task and span that allocated it.

use std::alloc::Layout;

/// Header bytes in front of every allocation with an alignment of 16 or less.
pub const HEADER_BYTES: usize = 16;

/// Bits of the task word that hold the tokio task id.
pub(crate) const ID_BITS: u32 = 43;
pub(crate) const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// Task ids at or above this are not representable (at 100,000 tasks a second, tokio's
/// counter reaches it after 2.7 years); their allocations count as outside any task.
pub(crate) const ID_LIMIT: u64 = ID_MASK - 15;
/// The highest task name index (12 bits): the layer's names past it share it, as `other`.
pub(crate) const NAME_MAX: u16 = 0xFFF;
/// Where both words keep their tag bits.
const TAG_SHIFT: u32 = 55;
/// The task word's tag bits (the top 9).
pub(crate) const TASK_TAG: u64 = !0 << TAG_SHIFT;
/// The span word's tag bits (7, below [`CUSTODY`]).
pub(crate) const SPAN_TAG: u64 = 0x7F << TAG_SHIFT;
/// The task word without its tag: the reserved buckets are the highest values of it.
const TASK_LOGICAL: u64 = !TASK_TAG;

/// Task word of allocations made outside any tokio task (plain threads, `main` before or
/// outside the runtime).
pub(crate) const TASK_NONE: u64 = 0;
/// Task word of allocations made by heapspan itself (its threads, the layer, the aggregator).
pub(crate) const TASK_HEAPSPAN: u64 = TASK_LOGICAL;
/// Task word of allocations made while heapspan was not running (before start, after stop).
pub(crate) const TASK_UNTRACKED: u64 = TASK_LOGICAL - 1;
/// Task word of allocations that could not be attributed because a hard bound was reached
/// (the overflow bucket).
pub(crate) const TASK_OVERFLOW: u64 = TASK_LOGICAL - 2;

/// Span-word flag: the block has the extended (32-byte) header of the live index.
pub(crate) const EXT: u64 = 1 << 63;
/// Span-word flag: the block is in foreign custody ([`crate::custody`]): a free of it from
/// Rust is reported and not forwarded (foreign code may still use it).
pub(crate) const CUSTODY: u64 = 1 << 62;
/// Bits of the span word that hold the span instance (at 100,000 spans a second the counter
/// wraps after 4 months; instance 0, "no span", is then skipped).
pub(crate) const SPAN_BITS: u32 = 40;
pub(crate) const SPAN_MASK: u64 = (1 << SPAN_BITS) - 1;
/// Span groups have 15 bits (above them: the tag, [`CUSTODY`] and [`EXT`]).
pub(crate) const GROUP_MAX: u16 = 0x7FFF;

/// What an allocation is attributed to: the task word and the span word of its header without
/// their tag bits and [`CUSTODY`] ([`EXT`] is kept where the reader says so).
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

    /// The key without [`EXT`] (as records and evidence name a block's owner).
    #[inline]
    pub(crate) fn without_ext(self) -> Key {
        Key::new(self.task, self.span_word())
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

/// The span word of instance `instance` (at most 40 bits) in group `group`.
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

/// The key of tag bits: the address of this static, different in every process under ASLR
/// (a position-independent executable), fixed for the process's life.
static TAG_KEY: u8 = 0;

/// The tag bits of both words of a block at `user` allocated with `size` bytes, whose words
/// are `task` and `span` without their tag bits: `(task tag, span tag)`, already in place.
#[inline(always)]
pub(crate) fn tag(task: u64, span: u64, user: usize, size: usize) -> (u64, u64) {
    let key = std::ptr::addr_of!(TAG_KEY) as u64;
    // A product's top bits depend on every bit of the factor below them: one multiply mixes
    // the words, the address and the size (a change in any of them moves the top 16 bits).
    let h = (task ^ span ^ user as u64 ^ size as u64 ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h & TASK_TAG, (h << 7) & SPAN_TAG)
}

/// Both words of `key` for a block at `user` of `size` bytes, tagged.
#[inline(always)]
pub(crate) fn tagged(key: Key, user: *mut u8, size: usize) -> (u64, u64) {
    let (tt, ts) = tag(key.task, key.span, user as usize, size);
    (key.task | tt, key.span | ts)
}

/// Writes the header just below `user`, tagged for a block of `size` bytes. `key.span` may
/// carry [`EXT`] and [`CUSTODY`].
///
/// # Safety
/// `user - 16 .. user` must be writable memory of this allocation, 8-aligned.
#[inline(always)]
pub(crate) unsafe fn write(user: *mut u8, key: Key, size: usize) {
    let (t, s) = tagged(key, user, size);
    // SAFETY: by the caller's contract; `outer` reserves at least 16 bytes in front of `user`
    // and keeps `user` at least 8-aligned.
    unsafe {
        let h = user.sub(HEADER_BYTES).cast::<u64>();
        h.write(t);
        h.add(1).write(s);
    }
}

/// The two header words below `user` as they are in memory, tag bits included.
///
/// # Safety
/// `user - 16 .. user` must be readable, 8-aligned: true of any pointer this allocator handed
/// out, and read without trusting it (see [`check`]).
#[inline(always)]
pub(crate) unsafe fn read_raw(user: *mut u8) -> (u64, u64) {
    // SAFETY: by the caller's contract.
    unsafe {
        let h = user.sub(HEADER_BYTES).cast::<u64>();
        (h.read(), h.add(1).read())
    }
}

/// Header words `(t, s)` without their tag bits (flags kept): the words the tag is computed
/// over, read as a key.
#[inline(always)]
pub(crate) fn untagged(t: u64, s: u64) -> Key {
    Key {
        task: t & !TASK_TAG,
        span: s & !SPAN_TAG,
    }
}

/// The key of a block at `user` of `size` bytes whose header words are `(t, s)`, if the header
/// is one this allocator wrote for it and the block is not in custody: task and span without
/// tag bits, [`EXT`] kept. `None` sends the free to its cold side ([`super::invalid`]).
#[inline(always)]
pub(crate) fn check(t: u64, s: u64, user: *mut u8, size: usize) -> Option<Key> {
    let key = untagged(t, s);
    let (tt, ts) = tag(key.task, key.span, user as usize, size);
    // `ts` never has `CUSTODY`: a block in custody fails here, in the same test as the tag
    // (so the key returned has no `CUSTODY` either).
    (((t ^ tt) & TASK_TAG) | ((s ^ ts) & (SPAN_TAG | CUSTODY)) == 0).then_some(key)
}

/// Whether raw header words `(t, s)` are a valid tagged header of a block at `user` of `size`
/// bytes (custody or not), and its key (tag bits and [`CUSTODY`] cleared, [`EXT`] kept) if so.
#[inline(always)]
pub(crate) fn check_words(t: u64, s: u64, user: *mut u8, size: usize) -> Option<Key> {
    let key = untagged(t, s);
    let (tt, ts) = tag(key.task, key.span, user as usize, size);
    (((t ^ tt) & TASK_TAG) | ((s ^ ts) & SPAN_TAG) == 0).then_some(Key {
        task: key.task,
        span: key.span & !CUSTODY,
    })
}

/// Bytes of a block that hold its tombstone.
pub(crate) const TOMBSTONE_BYTES: usize = 16;

/// Leaves the tombstone of a valid header `(t, s)` in the first 16 bytes of the block being
/// freed (its tag bits inverted, so no live header equals it), when it is that big.
///
/// # Safety
/// `user .. user + size` is the caller's block, freed right after; `user` 8-aligned.
#[inline(always)]
pub(crate) unsafe fn write_tombstone(user: *mut u8, size: usize, t: u64, s: u64) {
    if size >= TOMBSTONE_BYTES {
        // SAFETY: by the caller's contract, 16 bytes of the block.
        unsafe {
            let p = user.cast::<u64>();
            p.write(t ^ TASK_TAG);
            p.add(1).write(s ^ SPAN_TAG);
        }
    }
}

/// The key a tombstone at `user` names, if the block was freed through this allocator with
/// `size` bytes and its first 16 bytes were not reused since.
///
/// # Safety
/// `user .. user + 16` must be readable (the caller was handed `user` with `size >= 16`).
#[inline]
pub(crate) unsafe fn read_tombstone(user: *mut u8, size: usize) -> Option<Key> {
    if size < TOMBSTONE_BYTES {
        return None;
    }
    // SAFETY: by the caller's contract.
    let (t, s) = unsafe {
        let p = user.cast::<u64>();
        (p.read_volatile(), p.add(1).read_volatile())
    };
    check_words(t ^ TASK_TAG, s ^ SPAN_TAG, user, size)
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
        for (id, name) in [(1u64, 0u16), (42, 7), (ID_LIMIT - 1, NAME_MAX)] {
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
        // The logical words stay clear of the tag bits and CUSTODY.
        let k = Key::new(
            task_word(ID_LIMIT - 1, name_hi(NAME_MAX)),
            span_word(u16::MAX, SPAN_MASK),
        );
        assert_eq!(k.task & TASK_TAG, 0);
        assert_eq!(k.span & (SPAN_TAG | CUSTODY | EXT), 0);
        for t in [TASK_HEAPSPAN, TASK_UNTRACKED, TASK_OVERFLOW] {
            assert_eq!(t & TASK_TAG, 0);
        }
    }

    #[test]
    fn a_tagged_header_is_recognised_and_any_change_is_not() {
        let mut block = [0u64; 6];
        let user = block.as_mut_ptr().wrapping_add(2).cast::<u8>();
        let key = Key::new(task_word(77, name_hi(5)), span_word(3, 999));
        // SAFETY: `user` has 16 bytes of `block` in front of it and 32 behind, 8-aligned.
        unsafe {
            write(user, key, 32);
            let (t, s) = read_raw(user);
            assert_eq!(check(t, s, user, 32), Some(key));
            // Another size: not recognised (a layout mismatch).
            assert_eq!(check(t, s, user, 40), None);
            // Another address with the same words: not recognised.
            assert_eq!(check_words(t, s, user.wrapping_add(8), 32), None);
            // Custody: the tag holds, the fast check sends it aside.
            write(user, Key::new(key.task, key.span | CUSTODY), 32);
            let (t, s) = read_raw(user);
            assert_eq!(check(t, s, user, 32), None);
            let (t, s) = read_raw(user);
            assert_eq!(check_words(t, s, user, 32), Some(key));
            // A tombstone: recognised as one, never as a live header.
            write(user, key, 32);
            let (t, s) = read_raw(user);
            write_tombstone(user, 32, t, s);
            assert_eq!(read_tombstone(user, 32), Some(key));
            assert_eq!(check_words(block[2], block[3], user, 32), None);
            // Garbage words (an inner allocator's free-list link and key) are not recognised.
            block[0] = user as u64 ^ 0x5555_0000;
            block[1] = 0x1234_5678_9abc_def0;
            assert_eq!(check(block[0], block[1], user, 32), None);
        }
    }

    #[test]
    fn random_words_are_accepted_about_once_in_65536() {
        let mut block = [0u64; 4];
        let user = block.as_mut_ptr().wrapping_add(2).cast::<u8>();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut accepted = 0;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = x;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if check_words(t, x, user, 64).is_some() {
                accepted += 1;
            }
        }
        // Expected 15.3 for a 16-bit tag.
        assert!(
            accepted < 40,
            "{accepted} of a million random headers accepted"
        );
    }
}
