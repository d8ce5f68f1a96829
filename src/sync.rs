//! The atomics the lock-free parts use, behind one facade so `--cfg loom` can swap in loom's
//! model-checked versions (sharded-slab's pattern).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// `const`-constructible atomics for statics: loom's atomics are not `const`, and statics are
/// never exercised under loom (the models build their own instances).
pub(crate) mod statics {
    pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};
}
