//! The shared fallback for operations that cannot use a thread's own table: frees that run
//! after the thread's locals were torn down, threads beyond the pool's capacity, and
//! allocations made re-entrantly while heapspan itself is inside the allocator.
//!
//! A bounded multi-producer, single-consumer queue (Dmitry Vyukov's array queue): a producer
//! claims a cell with one compare-and-swap and publishes it with a release store; when full,
//! the operation is counted as dropped. Lock-free, allocation-free, rare.

use super::slots::{Key, Op};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
const CAP: usize = 4096;
#[cfg(loom)]
const CAP: usize = 2;

/// Bytes of the queue, for the tracker-memory figure.
pub(crate) const QUEUE_BYTES: usize = CAP * 40;

#[derive(Debug)]
struct Cell {
    seq: AtomicUsize,
    task: AtomicU64,
    span: AtomicU64,
    op: AtomicU64,
    bytes: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct OrphanQueue {
    cells: Box<[Cell]>,
    enqueue: AtomicUsize,
    dequeue: AtomicUsize,
    /// Operations lost because the queue was full.
    pub(crate) dropped: AtomicU64,
}

fn encode(op: Op) -> (u64, u64) {
    match op {
        Op::Alloc(n) => (0, n),
        Op::Free(n) => (1, n),
        Op::Grow(n) => (2, n),
        Op::Shrink(n) => (3, n),
    }
}

fn decode(code: u64, n: u64) -> Op {
    match code {
        0 => Op::Alloc(n),
        1 => Op::Free(n),
        2 => Op::Grow(n),
        _ => Op::Shrink(n),
    }
}

impl OrphanQueue {
    pub(crate) fn new() -> Self {
        OrphanQueue {
            cells: (0..CAP)
                .map(|i| Cell {
                    seq: AtomicUsize::new(i),
                    task: AtomicU64::new(0),
                    span: AtomicU64::new(0),
                    op: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
                .collect(),
            enqueue: AtomicUsize::new(0),
            dequeue: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Any thread: enqueue one operation, or count it as dropped when full.
    pub(crate) fn push(&self, key: Key, op: Op) {
        let mut pos = self.enqueue.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos % CAP];
            let seq = cell.seq.load(Ordering::Acquire);
            let dif = seq as isize - pos as isize;
            if dif == 0 {
                match self.enqueue.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let (code, n) = encode(op);
                        cell.task.store(key.task, Ordering::Relaxed);
                        cell.span.store(key.span, Ordering::Relaxed);
                        cell.op.store(code, Ordering::Relaxed);
                        cell.bytes.store(n, Ordering::Relaxed);
                        cell.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return;
                    }
                    Err(actual) => pos = actual,
                }
            } else if dif < 0 {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            } else {
                pos = self.enqueue.load(Ordering::Relaxed);
            }
        }
    }

    /// Single consumer (the aggregator): take every published operation.
    pub(crate) fn drain(&self, mut f: impl FnMut(Key, Op)) {
        let mut pos = self.dequeue.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos % CAP];
            let seq = cell.seq.load(Ordering::Acquire);
            if seq != pos.wrapping_add(1) {
                break;
            }
            let key = Key {
                task: cell.task.load(Ordering::Relaxed),
                span: cell.span.load(Ordering::Relaxed),
            };
            let op = decode(
                cell.op.load(Ordering::Relaxed),
                cell.bytes.load(Ordering::Relaxed),
            );
            cell.seq.store(pos.wrapping_add(CAP), Ordering::Release);
            pos = pos.wrapping_add(1);
            f(key, op);
        }
        self.dequeue.store(pos, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full_is_counted() {
        let q = OrphanQueue::new();
        for i in 0..(CAP as u64 + 5) {
            q.push(Key { task: i, span: 0 }, Op::Free(i));
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 5);
        let mut seen = Vec::new();
        q.drain(|k, op| seen.push((k.task, op)));
        assert_eq!(seen.len(), CAP);
        assert_eq!(seen[7], (7, Op::Free(7)));
        q.push(Key { task: 1, span: 2 }, Op::Grow(3));
        let mut again = Vec::new();
        q.drain(|k, op| again.push((k, op)));
        assert_eq!(again, vec![(Key { task: 1, span: 2 }, Op::Grow(3))]);
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn two_producers_one_consumer_lose_nothing_that_fits() {
        // A preemption bound keeps the model finite and fast; bugs in protocols like these
        // show up within two preemptions (loom's documentation recommends 2-3).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let q = Arc::new(OrphanQueue::new());
            let hs: Vec<_> = (0..2u64)
                .map(|t| {
                    let q = q.clone();
                    loom::thread::spawn(move || q.push(Key { task: t, span: 0 }, Op::Alloc(t + 1)))
                })
                .collect();
            let mut sum = 0;
            q.drain(|_, op| {
                if let Op::Alloc(n) = op {
                    sum += n
                }
            });
            for h in hs {
                h.join().unwrap();
            }
            q.drain(|_, op| {
                if let Op::Alloc(n) = op {
                    sum += n
                }
            });
            assert_eq!(sum, 3);
        });
    }
}
