//! A cloneable handle on a running heapspan: the report, snapshots and findings from anywhere
//! in the process (a debug route, an admin thread), while the [`Guard`](crate::Guard) lives in
//! `main`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::aggregator::{self, Aggregator};
use crate::alloc::InternalScope;
use crate::export::report::{self, ReportOptions};
use crate::findings::Finding;
use crate::windows::Control;
use crate::Snapshot;

/// A cheap, cloneable view of a running heapspan, from
/// [`Guard::handle`](crate::Guard::handle): `Clone + Send + Sync + 'static`, so it goes into a
/// web framework's state or a `static`, and answers from any thread while the guard keeps
/// heapspan running.
///
/// It does not keep heapspan running: once the [`Guard`](crate::Guard) is dropped (or while
/// it is dropping, from the moment its last window and export are done),
/// [`Handle::report`] returns [`Handle::STOPPED_REPORT`], [`Handle::snapshot`] `None` and
/// [`Handle::findings`] an empty list; [`Handle::is_running`] tells which. A handle holds
/// no memory of heapspan's tables (it refers to them weakly).
///
/// Each call takes the aggregator's lock for a snapshot (three folds of every thread's
/// counters: well under a millisecond in a small service, more with hundreds of thousands of
/// tasks or spans held). From async code, call it through `tokio::task::spawn_blocking` so a
/// worker thread is not held meanwhile, as `examples/debug_route.rs` does. What the calls
/// allocate is charged to the `heapspan` bucket, not to the calling task or span.
///
/// ```
/// #[global_allocator]
/// static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
///
/// fn main() -> Result<(), heapspan::Error> {
///     let guard = heapspan::builder().start()?;
///     let handle = guard.handle();
///     // From another thread, while the guard lives here.
///     let report = std::thread::spawn(move || handle.report(5)).join().unwrap();
///     assert!(report.contains("Tasks by live bytes"));
///
///     let handle = guard.handle();
///     drop(guard);
///     assert!(!handle.is_running());
///     assert_eq!(handle.report(5), heapspan::Handle::STOPPED_REPORT);
///     assert!(handle.snapshot().is_none());
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Weak<Mutex<Aggregator>>,
    control: Option<Weak<Control>>,
    /// The guard's stop flag: set once its window stage and export have shut down, before
    /// the last fold and the allocator's return to pass-through.
    stopped: Arc<AtomicBool>,
}

impl Handle {
    /// What [`Handle::report`] returns once heapspan has stopped.
    pub const STOPPED_REPORT: &'static str =
        "heapspan stopped: its Guard was dropped, and no figures are kept after that \
         (take the report before dropping the Guard)\n";

    pub(crate) fn new(
        shared: &Arc<Mutex<Aggregator>>,
        control: Option<&Arc<Control>>,
        stopped: &Arc<AtomicBool>,
    ) -> Self {
        Handle {
            shared: Arc::downgrade(shared),
            control: control.map(Arc::downgrade),
            stopped: stopped.clone(),
        }
    }

    /// True while the guard keeps heapspan running.
    pub fn is_running(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && self.shared.strong_count() > 0
    }

    /// Folds everything recorded so far and returns the tables, as
    /// [`Guard::snapshot`](crate::Guard::snapshot) does; `None` once heapspan has stopped.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let _scope = InternalScope::enter();
        let shared = self.shared.upgrade()?;
        let mut agg = aggregator::lock(&shared);
        // Checked under the lock: the guard sets the flag before it takes the lock for its
        // last fold and returns the allocator to pass-through, so a snapshot that sees it
        // clear here is one of a running heapspan.
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        Some(agg.snapshot())
    }

    /// The danger findings of the latest window, as [`Guard::findings`](crate::Guard::findings)
    /// returns them; empty once heapspan has stopped (and before the first window).
    pub fn findings(&self) -> Vec<Finding> {
        if self.stopped.load(Ordering::Acquire) {
            return Vec::new();
        }
        let _scope = InternalScope::enter();
        self.control
            .as_ref()
            .and_then(Weak::upgrade)
            .map(|c| c.findings())
            .unwrap_or_default()
    }

    /// The terminal report, the same as [`Guard::report`](crate::Guard::report): the findings
    /// of the latest window, then the top `n` tasks and spans. Once heapspan has stopped,
    /// [`Handle::STOPPED_REPORT`].
    pub fn report(&self, n: usize) -> String {
        self.report_with(&ReportOptions::new().rows(n))
    }

    /// [`Handle::report`] with [`ReportOptions`] (for example ended tasks that hold nothing,
    /// which the report leaves out by default).
    pub fn report_with(&self, opts: &ReportOptions) -> String {
        let Some(snap) = self.snapshot() else {
            return Self::STOPPED_REPORT.to_owned();
        };
        let findings = self.findings();
        let _scope = InternalScope::enter();
        report::render_with(&snap, &findings, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_clone_send_sync_and_static() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Handle>();
    }

    #[test]
    fn a_handle_of_a_stopped_heapspan_says_so() {
        // No aggregator behind it (its tables are gone), and the stop flag set: what a handle
        // sees after its guard was dropped.
        let h = Handle {
            shared: Weak::new(),
            control: None,
            stopped: Arc::new(AtomicBool::new(true)),
        };
        assert!(!h.is_running());
        assert!(h.snapshot().is_none());
        assert!(h.findings().is_empty());
        assert_eq!(h.report(10), Handle::STOPPED_REPORT);
        assert!(h.report(10).starts_with("heapspan stopped"));
    }
}
