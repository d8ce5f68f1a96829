//! The shared fallback for operations of a thread that has no table it can use (every table of
//! the pool is claimed by a live thread): a lock-free stack of one node per operation, each
//! node taken from the system allocator (never through the global allocator).
//!
//! A producer pushes with a compare-and-swap loop; the consumer (the aggregator) takes the
//! whole stack with one swap, so no node is ever popped singly (no ABA). Order does not
//! matter: the aggregator adds counters up. Rare by design (threads beyond
//! [`Builder::max_threads`](crate::Builder::max_threads)), and never lossy: node memory
//! counts against the queue bound, where an allocation is refused (the caller sends it to
//! the overflow bucket) and a free or realloc is still recorded.

use super::header::Key;
use super::slots::Op;
use crate::sync::{AtomicPtr, Ordering};

#[derive(Debug)]
struct Node {
    next: AtomicPtr<Node>,
    key: Key,
    op: Op,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Fallback {
    head: AtomicPtr<Node>,
}

impl Fallback {
    pub(crate) fn new() -> Self {
        Fallback {
            head: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Any thread: records `op` under `key`. False only when an allocation's node is refused
    /// (at the queue bound, or by the system allocator); a free or realloc that cannot get a
    /// node is counted as lost.
    pub(crate) fn push(&self, key: Key, op: Op) -> bool {
        let beyond = !matches!(op, Op::Alloc(_));
        let bytes = std::mem::size_of::<Node>();
        if !super::budget::take(bytes, beyond) {
            return false;
        }
        let n = crate::sync::alloc_value(Node {
            next: AtomicPtr::new(std::ptr::null_mut()),
            key,
            op,
        });
        if n.is_null() {
            super::budget::give_back(bytes);
            if beyond {
                super::budget::LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return true;
            }
            return false;
        }
        let mut h = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `n` is ours until the compare-and-swap publishes it.
            unsafe { &*n }.next.store(h, Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(h, n, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => h = now,
            }
        }
    }

    /// Single consumer (the aggregator): takes every operation pushed so far.
    pub(crate) fn drain(&self, mut f: impl FnMut(Key, Op)) {
        let mut p = self.head.swap(std::ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: `p` was published by a push (release, acquired by the swap) and is now
            // ours alone: the swap took the whole stack.
            let (next, key, op) = unsafe { ((*p).next.load(Ordering::Relaxed), (*p).key, (*p).op) };
            // SAFETY: `p` came from `alloc_value` in `push`; nobody else holds it; a node
            // needs no drop.
            unsafe { crate::sync::free(p) };
            super::budget::give_back(std::mem::size_of::<Node>());
            f(key, op);
            p = next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_drained_once() {
        let q = Fallback::new();
        for i in 0..1000u64 {
            assert!(q.push(Key { task: i, span: 0 }, Op::Free(i)));
        }
        let mut sum = 0;
        q.drain(|_, op| {
            if let Op::Free(n) = op {
                sum += n;
            }
        });
        assert_eq!(sum, (0..1000).sum::<u64>());
        let mut again = 0;
        q.drain(|_, _| again += 1);
        assert_eq!(again, 0);
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn two_producers_one_consumer_lose_nothing() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let q = Arc::new(Fallback::new());
            let hs: Vec<_> = (0..2u64)
                .map(|t| {
                    let q = q.clone();
                    loom::thread::spawn(move || {
                        assert!(q.push(Key { task: t, span: 0 }, Op::Free(t + 1)));
                    })
                })
                .collect();
            let mut sum = 0;
            let mut add = |_, op| {
                if let Op::Free(n) = op {
                    sum += n
                }
            };
            q.drain(&mut add);
            for h in hs {
                h.join().unwrap();
            }
            q.drain(&mut add);
            assert_eq!(sum, 3);
        });
    }
}
