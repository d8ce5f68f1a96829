//! Attribution keys: which task and which span an allocation belongs to.
//!
//! Every allocation carries a 16-byte header of two words:
//! - the **task word**: the tokio task id (`tokio::task::try_id()`), or one of the reserved
//!   buckets below;
//! - the **span word**: the heapspan span id of the innermost entered span (low 48 bits; 0 for
//!   none) and the task's generation (high 16 bits).
//!
//! Task ids are documented by tokio as reusable once a task has ended, so a task is keyed by id
//! *and* generation: each time heapspan sees a task start (through the wrapper, tokio's
//! `runtime.spawn` span with `--cfg tokio_unstable`, or a runtime hook) it notes the id in a
//! small table; a start of an id already noted bumps the generation. Current tokio draws ids
//! from a 64-bit counter, so generations above zero do not occur in practice.

use crate::sync::statics::{AtomicU64, Ordering};

/// Task word of allocations made outside any tokio task (plain threads, `main` before or
/// outside the runtime).
pub(crate) const TASK_NONE: u64 = 0;
/// Task word of allocations made by heapspan itself (its threads, the layer, the aggregator).
pub(crate) const TASK_HEAPSPAN: u64 = u64::MAX;
/// Task word of allocations made while heapspan was not running (before start, after stop).
pub(crate) const TASK_UNTRACKED: u64 = u64::MAX - 1;

/// Bits of the span word that hold the span id.
pub(crate) const SPAN_BITS: u32 = 48;
pub(crate) const SPAN_MASK: u64 = (1 << SPAN_BITS) - 1;

/// A tokio task id as a `u64`: tokio's `Id` hashes as its inner `NonZeroU64`, so a hasher that
/// keeps the written value recovers it exactly, with no unsafe and no allocation.
#[inline]
pub(crate) fn task_id_u64(id: tokio::task::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    #[derive(Default)]
    struct Keep(u64);
    impl Hasher for Keep {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 << 8) | u64::from(*b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut h = Keep::default();
    id.hash(&mut h);
    h.finish()
}

const GEN_SLOTS: usize = 4096;
/// Ids up to this many bits take part in generations (tokio's counter stays far below).
const ID_BITS: u32 = 47;
const ENDED: u64 = 1 << 16;
/// Generations have 15 bits (they share the span word with the extended-header flag).
const GEN_MASK: u64 = 0x7FFF;
/// Per id hash: `id << 17 | ended << 16 | generation` of the most recent task start seen there.
static GENERATIONS: [AtomicU64; GEN_SLOTS] = [const { AtomicU64::new(0) }; GEN_SLOTS];
/// Bumped whenever a generation above zero is handed out, so threads refresh their cache.
pub(crate) static GEN_EPOCH: AtomicU64 = AtomicU64::new(0);

fn gen_slot(id: u64) -> &'static AtomicU64 {
    &GENERATIONS[(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % GEN_SLOTS]
}

/// Note the start of task `id` (idempotent while the task runs); returns its generation.
/// A start of an id whose previous task was seen to end is a reuse: the generation goes up.
pub(crate) fn task_started(id: u64) -> u16 {
    if id >> ID_BITS != 0 {
        return 0;
    }
    let slot = gen_slot(id);
    let mut cur = slot.load(Ordering::Acquire);
    loop {
        let same = cur >> 17 == id && cur != 0;
        if same && cur & ENDED == 0 {
            return (cur & GEN_MASK) as u16;
        }
        let gen = if same {
            // 15 bits: the span word's top bit flags the extended header.
            (((cur & GEN_MASK) as u16) + 1) & GEN_MASK as u16
        } else {
            0
        };
        match slot.compare_exchange_weak(
            cur,
            id << 17 | u64::from(gen),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                if gen != 0 {
                    GEN_EPOCH.fetch_add(1, Ordering::Release);
                }
                return gen;
            }
            Err(now) => cur = now,
        }
    }
}

/// Note the end of task `id` of generation `gen` (idempotent).
pub(crate) fn task_ended(id: u64, gen: u16) {
    if id >> ID_BITS != 0 {
        return;
    }
    let slot = gen_slot(id);
    let live = id << 17 | u64::from(gen);
    let _ = slot.compare_exchange(live, live | ENDED, Ordering::AcqRel, Ordering::Relaxed);
}

/// The current generation of task `id` (0 unless a reuse was seen).
#[inline]
pub(crate) fn generation(id: u64) -> u16 {
    let v = gen_slot(id).load(Ordering::Acquire);
    if v >> 17 == id {
        (v & GEN_MASK) as u16
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_count_restarts_of_one_id() {
        let id = 0xABCD_1234;
        assert_eq!(task_started(id), 0);
        assert_eq!(generation(id), 0);
        // A second start signal for the same running task (wrapper and spawn span) is no reuse.
        assert_eq!(task_started(id), 0);
        task_ended(id, 0);
        assert_eq!(task_started(id), 1);
        assert_eq!(generation(id), 1);
        assert_eq!(generation(id + 1), 0);
    }

    #[tokio::test]
    async fn task_ids_convert_exactly() {
        let h = tokio::spawn(async { task_id_u64(tokio::task::id()) });
        let expect = h.id().to_string().parse::<u64>().unwrap();
        assert_eq!(h.await.unwrap(), expect);
    }
}
