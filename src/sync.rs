//! The atomics the lock-free parts use, behind one facade so `--cfg loom` can swap in loom's
//! model-checked versions (sharded-slab's pattern), and heapspan's raw allocations of its own
//! queue memory.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// `const`-constructible atomics for statics: loom's atomics are not `const`, and statics are
/// never exercised under loom (the models build their own instances).
pub(crate) mod statics {
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
}

/// A value on cache lines of its own (128 bytes: two lines, against adjacent-line prefetch).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct CacheLine<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A new `T` straight from the system allocator (never through the global allocator, so it
/// cannot re-enter heapspan): all-zero bytes; under loom, `init()` (loom's atomics cannot be
/// zeroed). Null if the system allocator refuses.
///
/// # Safety
/// All-zero bytes must be a valid `T` equal to `init()`.
pub(crate) unsafe fn alloc_zeroed<T>(init: fn() -> T) -> *mut T {
    const { assert!(std::mem::size_of::<T>() != 0, "no zero-sized allocations") };
    #[cfg(loom)]
    {
        Box::into_raw(Box::new(init()))
    }
    #[cfg(not(loom))]
    {
        let _ = init;
        let layout = std::alloc::Layout::new::<T>();
        // SAFETY: `T` is not zero-sized (asserted at compile time above); all-zero is a valid
        // `T` by the caller's contract.
        unsafe { std::alloc::GlobalAlloc::alloc_zeroed(&std::alloc::System, layout).cast() }
    }
}

/// `v`, moved into memory straight from the system allocator (under loom, a `Box`); null (and
/// `v` dropped) if the system allocator refuses.
pub(crate) fn alloc_value<T>(v: T) -> *mut T {
    const { assert!(std::mem::size_of::<T>() != 0, "no zero-sized allocations") };
    #[cfg(loom)]
    {
        Box::into_raw(Box::new(v))
    }
    #[cfg(not(loom))]
    {
        let layout = std::alloc::Layout::new::<T>();
        // SAFETY: `T` is not zero-sized (asserted at compile time above).
        let p: *mut T =
            unsafe { std::alloc::GlobalAlloc::alloc(&std::alloc::System, layout) }.cast();
        if !p.is_null() {
            // SAFETY: `p` is fresh memory with `T`'s layout.
            unsafe { p.write(v) };
        }
        p
    }
}

/// Frees what [`alloc_zeroed`] or [`alloc_value`] returned.
///
/// # Safety
/// `p` came from [`alloc_zeroed::<T>`] or [`alloc_value::<T>`] and is not used afterwards;
/// `T` needs no drop.
pub(crate) unsafe fn free<T>(p: *mut T) {
    #[cfg(loom)]
    // SAFETY: `p` came from `Box::into_raw` in `alloc_zeroed`.
    drop(unsafe { Box::from_raw(p) });
    #[cfg(not(loom))]
    // SAFETY: `p` was allocated by `System` with this layout.
    unsafe {
        std::alloc::GlobalAlloc::dealloc(
            &std::alloc::System,
            p.cast(),
            std::alloc::Layout::new::<T>(),
        )
    };
}
