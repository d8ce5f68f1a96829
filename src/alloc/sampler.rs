//! The sampled live index's draw: a Poisson process over allocated bytes, per thread (in the
//! thread-local), and the weight a sampled allocation stands for.

use std::cell::Cell;
use std::ptr;

use crate::sync::statics::{AtomicU64, Ordering};

/// Mean gap of the sampled mode, bytes (set at start).
pub(crate) static SAMPLE_MEAN: AtomicU64 = AtomicU64::new(512 << 10);

/// Per-thread sampling state (in the thread-local).
#[derive(Debug)]
pub(crate) struct Sampler {
    left: Cell<i64>,
    rng: Cell<u64>,
}

impl Sampler {
    pub(crate) const fn new() -> Self {
        Sampler {
            left: Cell::new(0),
            rng: Cell::new(0),
        }
    }

    /// Whether an allocation of `size` bytes is sampled (Poisson process over bytes).
    #[inline(always)]
    pub(crate) fn hit(&self, size: usize) -> bool {
        let left = self.left.get() - size as i64;
        if left >= 0 {
            self.left.set(left);
            return false;
        }
        self.cross(left)
    }

    #[cold]
    #[inline(never)]
    fn cross(&self, left: i64) -> bool {
        let seed = ptr::from_ref(self) as usize;
        let mean = SAMPLE_MEAN.load(Ordering::Relaxed) as f64;
        if self.rng.get() == 0 {
            // First use on this thread: no sample is owed yet; draw the first gap.
            self.rng
                .set((seed as u64 ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1);
            let gap = self.gap(mean);
            let left = left + gap;
            self.left.set(left.max(0));
            if left >= 0 {
                return false;
            }
            self.left.set(self.gap(mean));
            return true;
        }
        self.left.set(self.gap(mean));
        true
    }

    fn gap(&self, mean: f64) -> i64 {
        // xorshift64*, then an exponential draw: -mean * ln(u), u in (0, 1].
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (-mean * u.ln()).min(i64::MAX as f64 / 2.0) as i64
    }
}

/// The weight of a sampled allocation of `size` bytes: `1 / p`, `p = 1 − exp(−size / mean)`.
pub(crate) fn sample_weight(size: usize, mean: u64) -> f64 {
    let p = -(-(size as f64) / mean as f64).exp_m1();
    if p > 0.0 {
        1.0 / p
    } else {
        1.0
    }
}
