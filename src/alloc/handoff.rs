//! The hand-off cells of one thread table: frees of blocks that another task (or no task)
//! allocated, per (allocating task name, freeing task name), the `alloc.cross_task_free`
//! matrix.
//!
//! A free whose current task differs from the one in the block's header (ids compared, not
//! names: two tasks of one name handing off make a diagonal cell) adds its bytes and one free
//! to the cell of the pair in the freeing thread's table. The table has [`CELLS`] cells,
//! open-addressed, each claimed once for good (its key never changes, so a reader needs no
//! seqlock) and holding *cumulative* counters that only its owner writes (a relaxed load and
//! store, no read-modify-write). When no cell is free for a new pair, the free goes to the
//! table's *overflow cell* (allocating and freeing name both `other`): the matrix totals stay
//! exact, and the overflow cell's count says how many frees lost their pair.
//!
//! All atomics, valid when all-zero, like the rest of the table.

use crate::sync::{AtomicU64, Ordering};

/// Cells per table (a power of two), besides the overflow cell.
#[cfg(not(loom))]
pub(crate) const CELLS: usize = 64;
#[cfg(loom)]
pub(crate) const CELLS: usize = 2;

/// A side of a cell: a task name index (`0..=NAME_MAX`, 12 bits), or one of these.
pub(crate) type Side = u16;
/// The side of code outside any task: a plain thread, `main`, `spawn_blocking` outside a task.
pub(crate) const SIDE_NONE: Side = 0x1000;
/// Both sides of the overflow cell.
pub(crate) const SIDE_OTHER: Side = 0x1001;

/// The key word of a pair: never zero (zero marks an empty cell).
#[inline]
fn pack(from: Side, to: Side) -> u64 {
    (1 << 32) | (u64::from(from) << 16) | u64::from(to)
}

#[inline]
fn unpack(k: u64) -> (Side, Side) {
    ((k >> 16) as Side, k as Side)
}

#[inline]
fn bump(a: &AtomicU64, n: u64) {
    // Owner-only counter: plain moves, no `lock` prefix.
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// One cell: its pair (0 while empty) and cumulative figures.
#[derive(Debug)]
struct Cell {
    key: AtomicU64,
    bytes: AtomicU64,
    frees: AtomicU64,
}

impl Cell {
    #[cfg(loom)]
    fn new() -> Self {
        Cell {
            key: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }

    #[inline]
    fn add(&self, size: u64) {
        bump(&self.frees, 1);
        bump(&self.bytes, size);
    }
}

/// One cell as the aggregator reads it: its position (`CELLS` for the overflow cell), its
/// pair, and its cumulative bytes and frees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CellReading {
    pub(crate) index: usize,
    pub(crate) from: Side,
    pub(crate) to: Side,
    pub(crate) bytes: u64,
    pub(crate) frees: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HandOffs {
    cells: [Cell; CELLS],
    overflow: Cell,
}

impl HandOffs {
    /// An empty set of cells, as all-zero memory holds it.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        HandOffs {
            cells: std::array::from_fn(|_| Cell::new()),
            overflow: Cell::new(),
        }
    }

    /// Owner only (the table's owner, or a thread holding it borrowed): counts a free of
    /// `size` bytes allocated by `from` and freed by `to`. At most [`CELLS`] probes, no
    /// allocation, no read-modify-write.
    pub(crate) fn record(&self, from: Side, to: Side, size: u64) {
        let key = pack(from, to);
        let start = (u64::from(from) << 16 | u64::from(to)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> (64 - CELLS.trailing_zeros());
        for i in 0..CELLS {
            let cell = &self.cells[(start as usize + i) & (CELLS - 1)];
            let k = cell.key.load(Ordering::Relaxed);
            if k == key {
                cell.add(size);
                return;
            }
            if k == 0 {
                // A fresh cell's counters are zero: the key is published with them (a reader
                // that sees the key sees counters at least that old).
                cell.key.store(key, Ordering::Release);
                cell.add(size);
                return;
            }
        }
        self.overflow.add(size);
    }

    /// Aggregator: every claimed cell, and the overflow cell if it counted anything. The
    /// figures are cumulative (since the table was first claimed; a table keeps its cells
    /// from one owner to the next): the reader takes deltas per `index`. Of a free in flight,
    /// one figure may be read before the other; none is lost.
    pub(crate) fn read(&self, mut f: impl FnMut(CellReading)) {
        for (index, cell) in self.cells.iter().enumerate() {
            let k = cell.key.load(Ordering::Acquire);
            if k == 0 {
                continue;
            }
            let (from, to) = unpack(k);
            f(CellReading {
                index,
                from,
                to,
                bytes: cell.bytes.load(Ordering::Relaxed),
                frees: cell.frees.load(Ordering::Relaxed),
            });
        }
        let frees = self.overflow.frees.load(Ordering::Relaxed);
        let bytes = self.overflow.bytes.load(Ordering::Relaxed);
        if frees != 0 || bytes != 0 {
            f(CellReading {
                index: CELLS,
                from: SIDE_OTHER,
                to: SIDE_OTHER,
                bytes,
                frees,
            });
        }
    }
}

/// What the aggregator has applied of one table's cells: turns cumulative readings into
/// deltas, once each.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Per cell (the overflow cell last): bytes and frees already applied.
    cells: Vec<(u64, u64)>,
}

impl Seen {
    /// The part of `r` not applied yet, `(bytes, frees)`, now recorded as applied.
    pub(crate) fn delta(&mut self, r: &CellReading) -> (u64, u64) {
        if self.cells.is_empty() {
            self.cells = vec![(0, 0); CELLS + 1];
        }
        let seen = &mut self.cells[r.index];
        let d = (
            r.bytes.saturating_sub(seen.0),
            r.frees.saturating_sub(seen.1),
        );
        *seen = (seen.0.max(r.bytes), seen.1.max(r.frees));
        d
    }
}

/// Frees of threads that could use no table (every table claimed by a live thread): counted
/// in the overflow cell's figures, here, with an atomic add (the rare path the shared fallback
/// of the counters takes too).
pub(crate) static SHARED_OVERFLOW_BYTES: crate::sync::statics::AtomicU64 =
    crate::sync::statics::AtomicU64::new(0);
/// Their count.
pub(crate) static SHARED_OVERFLOW_FREES: crate::sync::statics::AtomicU64 =
    crate::sync::statics::AtomicU64::new(0);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn fresh() -> Box<HandOffs> {
        // SAFETY: atomics only, valid (and empty) when all-zero: what the pool's zeroed
        // mapping relies on for the whole table.
        unsafe { Box::<HandOffs>::new_zeroed().assume_init() }
    }

    fn collect(h: &HandOffs, seen: &mut Seen) -> Vec<(Side, Side, u64, u64)> {
        let mut v = Vec::new();
        h.read(|r| {
            let (b, f) = seen.delta(&r);
            if f != 0 || b != 0 {
                v.push((r.from, r.to, b, f));
            }
        });
        v.sort_unstable();
        v
    }

    #[test]
    fn pairs_keep_their_own_cell_and_add_up() {
        let h = fresh();
        h.record(3, 7, 100);
        h.record(3, 7, 28);
        h.record(7, 3, 5);
        h.record(SIDE_NONE, 3, 64);
        h.record(3, SIDE_NONE, 1);
        // A pair and its mirror are two cells; a name handing off to itself is one too.
        h.record(3, 3, 9);
        let mut seen = Seen::default();
        assert_eq!(
            collect(&h, &mut seen),
            [
                (3, 3, 9, 1),
                (3, 7, 128, 2),
                (3, SIDE_NONE, 1, 1),
                (7, 3, 5, 1),
                (SIDE_NONE, 3, 64, 1),
            ]
        );
        // Read again: nothing new. Then only what came since.
        assert_eq!(collect(&h, &mut seen), []);
        h.record(3, 7, 1000);
        assert_eq!(collect(&h, &mut seen), [(3, 7, 1000, 1)]);
    }

    #[test]
    fn a_full_table_sends_new_pairs_to_the_overflow_cell_and_the_totals_stay_exact() {
        let h = fresh();
        let pairs = 3 * CELLS as u16;
        let mut want = 0u64;
        for round in 1..=2u64 {
            for p in 0..pairs {
                h.record(p, p + 1, round * u64::from(p));
                want += round * u64::from(p);
            }
        }
        let mut seen = Seen::default();
        let got = collect(&h, &mut seen);
        let (cells, overflow): (Vec<&(Side, Side, u64, u64)>, Vec<_>) = got
            .iter()
            .partition(|c| (c.0, c.1) != (SIDE_OTHER, SIDE_OTHER));
        assert_eq!(cells.len(), CELLS, "every cell claimed, none twice");
        assert!(cells.iter().all(|c| c.3 == 2), "{cells:?}");
        let frees: u64 = got.iter().map(|c| c.3).sum();
        let bytes: u64 = got.iter().map(|c| c.2).sum();
        assert_eq!(frees, 2 * u64::from(pairs));
        assert_eq!(bytes, want);
        assert_eq!(
            overflow,
            [&(
                SIDE_OTHER,
                SIDE_OTHER,
                want - cells.iter().map(|c| c.2).sum::<u64>(),
                2 * (u64::from(pairs) - CELLS as u64)
            )]
        );
        // The pairs that have a cell keep it once the table is full.
        let (from, to) = (cells[0].0, cells[0].1);
        h.record(from, to, 7);
        assert_eq!(collect(&h, &mut seen), [(from, to, 7, 1)]);
    }

    #[test]
    fn keys_round_trip_and_are_never_empty() {
        for (a, b) in [
            (0, 0),
            (0xFFF, SIDE_NONE),
            (SIDE_OTHER, SIDE_OTHER),
            (SIDE_NONE, 0),
        ] {
            assert_ne!(pack(a, b), 0);
            assert_eq!(unpack(pack(a, b)), (a, b));
        }
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The owner claims both cells (and then overflows) while the aggregator reads: a cell
    /// read while being claimed is never taken for another pair, and every free is applied
    /// exactly once.
    #[test]
    fn a_reader_meeting_cells_being_claimed_applies_each_free_once() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let h = Arc::new(HandOffs::new());
            let owner = {
                let h = h.clone();
                loom::thread::spawn(move || {
                    h.record(1, 2, 10);
                    h.record(3, 4, 20);
                    h.record(5, 6, 40);
                })
            };
            let mut seen = Seen::default();
            let mut total = [(0u64, 0u64); 3];
            let mut add = |r: CellReading| {
                let (b, f) = seen.delta(&r);
                let i = match (r.from, r.to) {
                    (1, 2) => 0,
                    (3, 4) => 1,
                    (SIDE_OTHER, SIDE_OTHER) => 2,
                    other => panic!("no such pair: {other:?}"),
                };
                total[i].0 += b;
                total[i].1 += f;
            };
            h.read(&mut add);
            owner.join().unwrap();
            h.read(&mut add);
            assert_eq!(total, [(10, 1), (20, 1), (40, 1)]);
        });
    }
}
