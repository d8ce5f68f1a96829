//! The aggregator's own loop: a fold every `fold_interval`, early when a thread's queue grows,
//! on the `heapspan-aggregator` thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{lock, Shared};
use crate::alloc;
use crate::error::Result;

/// How often the aggregator checks whether a thread's queue is growing (it folds early then).
const PRESSURE_CHECK: Duration = Duration::from_millis(5);
/// The same, right after a fold that a filling ring triggered.
const PRESSURE_CHECK_BUSY: Duration = Duration::from_millis(1);

/// Set while a test holds the aggregator still ([`crate::Guard::hold_aggregator`]).
pub(crate) static HOLD: AtomicBool = AtomicBool::new(false);

/// Starts the aggregator thread; it runs until `stop` is set (and the thread unparked).
pub(crate) fn spawn(
    shared: Shared,
    stop: Arc<AtomicBool>,
    fold_interval: Duration,
) -> Result<JoinHandle<()>> {
    crate::thread::spawn("heapspan-aggregator", move || {
        run(&shared, &stop, fold_interval)
    })
}

fn run(shared: &Shared, stop: &AtomicBool, fold_interval: Duration) {
    let (pool, began) = {
        let a = lock(shared);
        // The allocator's clock counts from the aggregator's epoch, so that a millisecond
        // stamp (an index entry's, a poll's) maps back to wall time.
        (a.pool(), a.epoch.0)
    };
    // Checks come every PRESSURE_CHECK, and every PRESSURE_CHECK_BUSY while queues keep
    // growing (key churn): nothing is lost either way, early folds keep the queues' memory
    // small.
    let mut check = PRESSURE_CHECK;
    while !stop.load(Ordering::Acquire) {
        alloc::index::NOW_MS.store(began.elapsed().as_millis() as u64, Ordering::Relaxed);
        let held = {
            let mut a = lock(shared);
            let held = HOLD.load(Ordering::Acquire);
            if !held {
                a.fold();
            }
            held
        };
        if held {
            // Held still by a test: no fold, and no busy wait on full queues.
            std::thread::park_timeout(PRESSURE_CHECK);
            continue;
        }
        alloc::scan::drain_if_idle();
        // Sleep until the next fold, waking early when a queue grows.
        let deadline = Instant::now() + fold_interval;
        let mut pressed = false;
        loop {
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::Acquire) {
                break;
            }
            if pool.under_pressure() {
                pressed = true;
                break;
            }
            std::thread::park_timeout((deadline - now).min(check));
        }
        check = if pressed {
            PRESSURE_CHECK_BUSY
        } else {
            PRESSURE_CHECK
        };
    }
}
