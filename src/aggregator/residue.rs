//! Sampling closed span instances for their residue: the bytes they allocated that are still
//! live a window after they closed.
//!
//! A span's memory figures are read when it closes (`export::user_spans`), while what it
//! returns (a response body) is often still alive; what it leaves behind for good shows only
//! later. When the application's span has an OpenTelemetry context, the close sends it
//! ([`super::events::Event::SpanWatch`]) with the bytes live at the close. Of the instances
//! that closed holding memory during one window, a uniform sample (reservoir sampling) of at
//! most `cap` is kept; their records are kept past `closed_span_retention` until they are
//! read. The window stage reads them at the end of the *next* window
//! ([`super::Aggregator::take_residues`]), one to two windows after they closed, and the
//! export sends each one left with bytes as a `heapspan.span.residue` span, a child of the
//! application's span.

use std::time::SystemTime;

use super::FastMap;
use crate::MemStats;

/// The OpenTelemetry identity of an application's span, as plain numbers (the aggregator
/// knows nothing of OpenTelemetry's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OtelIds {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) flags: u8,
}

/// One sampled instance, read a window after it closed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Residue {
    /// heapspan's span id.
    pub(crate) span: u64,
    pub(crate) target: &'static str,
    pub(crate) name: &'static str,
    pub(crate) ids: OtelIds,
    /// When it closed (to the fold interval).
    pub(crate) closed: SystemTime,
    /// Its live bytes when it closed (what its span carries as `heapspan.memory.live`).
    pub(crate) live_at_close: i64,
    /// Its figures now: `live_bytes()` is the residue.
    pub(crate) mem: MemStats,
}

/// What one window's read gives.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ResidueRound {
    /// Instances that closed holding memory during the window sampled (the population).
    pub(crate) candidates: u64,
    /// The sample, read now (instances whose record was lost are left out).
    pub(crate) residues: Vec<Residue>,
}

#[derive(Clone, Copy, Debug)]
struct Sampled {
    span: u64,
    ids: OtelIds,
    live_at_close: i64,
}

/// The sampler's state: this window's reservoir and the previous window's sample.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    /// Instances per window at most (0: off).
    cap: usize,
    rng: u64,
    /// Candidates offered this window.
    seen: u64,
    current: Vec<Sampled>,
    /// Last window's sample and how many it was drawn from.
    waiting: Vec<Sampled>,
    waiting_seen: u64,
    /// Span ids in `current` or `waiting` (their records are kept).
    held: FastMap<u64, ()>,
    /// Of those, the ones the retention would have forgotten: forgotten once released.
    deferred: FastMap<u64, ()>,
}

impl Sampler {
    pub(crate) fn new(cap: usize) -> Self {
        // Any non-zero seed will do: the sample only needs to be uniform, not secret.
        let seed = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Sampler {
            cap,
            rng: (0x9E37_79B9_7F4A_7C15 ^ u64::from(seed)) | 1,
            ..Sampler::default()
        }
    }

    /// Whether instances are sampled at all.
    pub(crate) fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// xorshift64*: a draw in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// Offers an instance that closed holding `live_at_close` bytes; returns the id of the
    /// one it replaced, whose record the caller may then forget ([`Sampler::release`]).
    pub(crate) fn offer(&mut self, span: u64, ids: OtelIds, live_at_close: i64) -> Option<u64> {
        if self.cap == 0 || live_at_close <= 0 || self.held.contains_key(&span) {
            return None;
        }
        self.seen = self.seen.saturating_add(1);
        let s = Sampled {
            span,
            ids,
            live_at_close,
        };
        if self.current.len() < self.cap {
            self.held.insert(span, ());
            self.current.push(s);
            return None;
        }
        // Algorithm R: the n-th candidate replaces a random one with probability cap / n.
        let j = self.below(self.seen);
        let slot = self.current.get_mut(usize::try_from(j).ok()?)?;
        let old = std::mem::replace(slot, s);
        self.held.insert(span, ());
        self.held.remove(&old.span);
        Some(old.span)
    }

    /// Whether the record of `span` must be kept (it is sampled); if so, remembers that the
    /// retention wanted it gone.
    pub(crate) fn keeps(&mut self, span: u64) -> bool {
        if self.held.contains_key(&span) {
            self.deferred.insert(span, ());
            true
        } else {
            false
        }
    }

    /// Whether the record of `span`, no longer sampled, is to be forgotten now (the retention
    /// wanted it gone while it was held).
    pub(crate) fn release(&mut self, span: u64) -> bool {
        !self.held.contains_key(&span) && self.deferred.remove(&span).is_some()
    }

    /// Ends a window: returns last window's sample and how many it was drawn from, and makes
    /// this window's the one to read next. `last`: nothing is read after this one, so this
    /// window's sample (closed less than a window ago) is dropped.
    pub(crate) fn rotate(&mut self, last: bool) -> (Vec<(u64, OtelIds, i64)>, u64) {
        let read = std::mem::take(&mut self.waiting);
        let seen = self.waiting_seen;
        if last {
            self.current.clear();
            self.seen = 0;
        }
        self.waiting = std::mem::take(&mut self.current);
        self.waiting_seen = std::mem::take(&mut self.seen);
        for s in &read {
            self.held.remove(&s.span);
        }
        if last {
            self.held.clear();
        }
        (
            read.into_iter()
                .map(|s| (s.span, s.ids, s.live_at_close))
                .collect(),
            seen,
        )
    }

    /// The records `rotate(true)` stopped holding whose forgetting was deferred.
    pub(crate) fn drain_deferred(&mut self) -> Vec<u64> {
        let held = &self.held;
        let out: Vec<u64> = self
            .deferred
            .keys()
            .copied()
            .filter(|k| !held.contains_key(k))
            .collect();
        for k in &out {
            self.deferred.remove(k);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: OtelIds = OtelIds {
        trace_id: 7,
        span_id: 9,
        flags: 1,
    };

    #[test]
    fn at_most_cap_instances_a_window_none_without_memory() {
        let mut s = Sampler::new(3);
        assert_eq!(
            s.offer(1, IDS, 0),
            None,
            "nothing live at the close: no residue"
        );
        let mut replaced = 0;
        for span in 10..1010 {
            if let Some(old) = s.offer(span, IDS, 100) {
                assert!(!s.held.contains_key(&old));
                replaced += 1;
            }
        }
        assert!(replaced > 0, "later candidates get their chance");
        assert_eq!(s.current.len(), 3);
        assert_eq!(s.held.len(), 3);
        // Nothing is read at the first window's end; its sample is read at the next one.
        let (read, seen) = s.rotate(false);
        assert!(read.is_empty());
        assert_eq!(seen, 0);
        let (read, seen) = s.rotate(false);
        assert_eq!(read.len(), 3);
        assert_eq!(seen, 1000);
        assert!(s.held.is_empty());
    }

    #[test]
    fn the_sample_is_uniform_enough() {
        // 2000 windows of 10 candidates, 2 kept each: every position is kept 1/5 of the time,
        // 400 times expected. Bounds: ±100, more than 5 standard deviations (17.9) of the
        // binomial; the seed is fixed, so the test is reproducible.
        let mut s = Sampler::new(2);
        s.rng = 0x1234_5678_9ABC_DEF1;
        let mut kept = [0u32; 10];
        for _ in 0..2000 {
            for i in 0..10u64 {
                s.offer(i + 1, IDS, 1);
            }
            s.rotate(false);
            for x in &s.waiting {
                kept[usize::try_from(x.span - 1).unwrap()] += 1;
            }
        }
        for (i, k) in kept.iter().enumerate() {
            assert!((300..=500).contains(k), "position {i}: {k} of 2000");
        }
    }

    #[test]
    fn records_the_retention_wanted_gone_are_forgotten_once_read() {
        let mut s = Sampler::new(1);
        s.offer(5, IDS, 10);
        assert!(s.keeps(5), "sampled: kept past the retention");
        assert!(!s.keeps(6), "not sampled: forgotten as usual");
        assert!(!s.release(5), "still held");
        s.rotate(false);
        assert!(!s.release(5), "waiting to be read");
        let (read, _) = s.rotate(false);
        assert_eq!(read, [(5, IDS, 10)]);
        assert!(s.release(5), "read: forgotten now");
        assert!(!s.release(5));
        // The last window drops this window's sample and lets go of its records.
        s.offer(8, IDS, 10);
        assert!(s.keeps(8));
        let (read, _) = s.rotate(true);
        assert!(read.is_empty());
        assert_eq!(s.drain_deferred(), [8]);
    }
}
