//! The hand-off matrix as the aggregator keeps it: the threads' hand-off cells folded into one
//! table per pair of allocating and freeing task names, cumulative since start, bounded.

use std::collections::HashMap;

use super::snapshot::{sort_cells, HandOff, HandOffs};
use super::FastMap;
use crate::alloc::handoff::{
    CellReading, Seen, Side, SHARED_OVERFLOW_BYTES, SHARED_OVERFLOW_FREES, SIDE_NONE, SIDE_OTHER,
};
use crate::alloc::slots::ThreadState;
use crate::sync::statics::Ordering;

/// Pairs the aggregator keeps apart; beyond them, new pairs are counted in the `other → other`
/// cell (at most 4096 name indices per side make far more pairs possible than any service
/// hands off between).
pub(crate) const MAX_PAIRS: usize = 4096;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Matrix {
    /// Per thread table: what has been applied of its cells.
    seen: Vec<Seen>,
    /// Per pair `(from << 16) | to`: bytes and frees since start.
    cells: FastMap<u32, (u64, u64)>,
    /// Frees counted in the overflow cell: a thread's, the shared one, or this table's bound.
    overflow_frees: u64,
    /// The shared overflow figures as of the last fold.
    shared_seen: (u64, u64),
}

impl Matrix {
    /// Folds what every table's cells (and the shared overflow figures) counted since the last
    /// fold.
    pub(crate) fn fold(&mut self, tables: &[ThreadState]) {
        if self.seen.len() < tables.len() {
            self.seen.resize_with(tables.len(), Seen::default);
        }
        for (st, seen) in tables.iter().zip(&mut self.seen) {
            st.handoffs().read(|r: CellReading| {
                let (bytes, frees) = seen.delta(&r);
                if bytes != 0 || frees != 0 {
                    add(&mut self.cells, &mut self.overflow_frees, &r, bytes, frees);
                }
            });
        }
        let shared = (
            SHARED_OVERFLOW_BYTES.load(Ordering::Relaxed),
            SHARED_OVERFLOW_FREES.load(Ordering::Relaxed),
        );
        let (bytes, frees) = (
            shared.0.saturating_sub(self.shared_seen.0),
            shared.1.saturating_sub(self.shared_seen.1),
        );
        self.shared_seen = shared;
        if bytes != 0 || frees != 0 {
            let r = CellReading {
                index: usize::MAX,
                from: SIDE_OTHER,
                to: SIDE_OTHER,
                bytes,
                frees,
            };
            add(&mut self.cells, &mut self.overflow_frees, &r, bytes, frees);
        }
    }

    /// The matrix with names: `name` gives a task name index's display name. Cells whose
    /// names coincide (a name index past the layer's bound is `other` too) are merged.
    pub(crate) fn snapshot(&self, mut name: impl FnMut(u16) -> String) -> HandOffs {
        let mut label = |s: Side| match s {
            SIDE_NONE => HandOffs::NO_TASK.to_owned(),
            SIDE_OTHER => crate::layer::names::OTHER.to_owned(),
            n => name(n),
        };
        let mut merged: HashMap<(String, String), (u64, u64)> = HashMap::new();
        for (&k, &(bytes, frees)) in &self.cells {
            let e = merged
                .entry((label((k >> 16) as Side), label(k as Side)))
                .or_default();
            e.0 = e.0.saturating_add(bytes);
            e.1 = e.1.saturating_add(frees);
        }
        let mut cells: Vec<HandOff> = merged
            .into_iter()
            .map(|((allocated_by, freed_by), (bytes, frees))| HandOff {
                allocated_by,
                freed_by,
                bytes,
                frees,
            })
            .collect();
        sort_cells(&mut cells);
        HandOffs {
            cells,
            overflow_frees: self.overflow_frees,
        }
    }
}

/// Adds a delta of `r`'s pair to `cells` (or, when the pair is new and the table at its
/// bound, to the overflow cell), counting overflow frees.
fn add(
    cells: &mut FastMap<u32, (u64, u64)>,
    overflow_frees: &mut u64,
    r: &CellReading,
    bytes: u64,
    frees: u64,
) {
    let other = (u32::from(SIDE_OTHER) << 16) | u32::from(SIDE_OTHER);
    let mut k = (u32::from(r.from) << 16) | u32::from(r.to);
    if k == other || (cells.len() >= MAX_PAIRS && !cells.contains_key(&k)) {
        k = other;
        *overflow_frees = overflow_frees.saturating_add(frees);
    }
    let e = cells.entry(k).or_default();
    e.0 = e.0.saturating_add(bytes);
    e.1 = e.1.saturating_add(frees);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::alloc::handoff::CELLS;

    fn name(n: u16) -> String {
        format!("t{n}")
    }

    #[test]
    fn tables_fold_into_named_cells_once_each() {
        let tables = [*crate::alloc::slots::fresh(), *crate::alloc::slots::fresh()];
        tables[0].handoffs().record(1, 2, 100);
        tables[1].handoffs().record(1, 2, 50);
        tables[1].handoffs().record(SIDE_NONE, 1, 8);
        tables[1].handoffs().record(2, SIDE_NONE, 3);
        let mut m = Matrix::default();
        m.fold(&tables);
        m.fold(&tables);
        let h = m.snapshot(name);
        let cell = |a: &str, b: &str| h.cell(a, b).map(|c| (c.bytes, c.frees));
        assert_eq!(cell("t1", "t2"), Some((150, 2)));
        assert_eq!(cell(HandOffs::NO_TASK, "t1"), Some((8, 1)));
        assert_eq!(cell("t2", HandOffs::NO_TASK), Some((3, 1)));
        assert_eq!(h.cells.len(), 3);
        assert_eq!((h.bytes(), h.frees(), h.overflow_frees), (161, 4, 0));
        assert_eq!(h.cells[0].allocated_by, "t1", "most bytes first");
        // Only what is new since the last fold is added.
        tables[0].handoffs().record(1, 2, 1);
        m.fold(&tables);
        let later = m.snapshot(name);
        assert_eq!(later.cell("t1", "t2").map(|c| c.bytes), Some(151));
        let window = later.since(&h);
        assert_eq!(window.cells.len(), 1);
        assert_eq!((window.bytes(), window.frees()), (1, 1));
    }

    #[test]
    fn overflow_cells_of_threads_and_of_the_bound_keep_the_total_exact() {
        let tables = [*crate::alloc::slots::fresh()];
        let pairs = CELLS as u16 + 10;
        for p in 0..pairs {
            tables[0].handoffs().record(p, 0, 10);
        }
        let mut m = Matrix::default();
        m.fold(&tables);
        let h = m.snapshot(name);
        assert_eq!(h.frees(), u64::from(pairs));
        assert_eq!(h.bytes(), 10 * u64::from(pairs));
        assert_eq!(h.overflow_frees, 10);
        assert_eq!(h.cell("other", "other").map(|c| c.frees), Some(10));
        // The process-wide bound: pairs past it go to the same cell.
        let mut m = Matrix::default();
        let mut overflow = 0;
        for p in 0..(MAX_PAIRS as u16 + 5) {
            let r = CellReading {
                index: 0,
                from: p,
                to: 1,
                bytes: 2,
                frees: 1,
            };
            add(&mut m.cells, &mut m.overflow_frees, &r, 2, 1);
            overflow = m.overflow_frees;
        }
        assert_eq!(overflow, 5);
        assert_eq!(m.cells.len(), MAX_PAIRS + 1);
        let h = m.snapshot(name);
        assert_eq!(h.frees(), MAX_PAIRS as u64 + 5);
    }
}
