//! The window stage: once per window (and at the last one) it takes a snapshot, cuts each
//! task's window ([`cut`]), takes the relation graph when the live index is on, judges the
//! danger findings ([`crate::findings`]) and hands the window to the export, which only encodes
//! it.
//!
//! It runs on its own thread (`heapspan-windows`), whether export is on or not (the findings
//! feed [`Guard::findings`](crate::Guard::findings) and the report too). A window goes to the
//! export through a bounded channel without waiting: when the export is that far behind (8
//! windows), the window's spans are dropped and counted (`export_queue_full`), its findings
//! still judged and kept. [`Guard::cut_window`](crate::Guard::cut_window) cuts one now, for
//! tests and tools that want windows of their own pace.

pub(crate) mod cut;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub(crate) use cut::{Bounds, TaskWindow};

use crate::aggregator::residue::ResidueRound;
use crate::aggregator::{self, Shared};
use crate::error::Result;
use crate::findings::invalid::{InvalidFree, Owner};
use crate::findings::{Engine, Finding, FindingsConfig, Input, Judged};
use crate::graph::live::{CaptureConfig, LiveGraph};
use crate::{MemStats, Snapshot};

/// What else takes each window, on the stage's thread, before the export gets it (the HTML
/// view's history): wired by the builder, so that this stage knows nothing of what it feeds.
pub(crate) type Observer = Box<dyn FnMut(&Window) + Send>;

/// Windows the export may be behind before one is dropped.
const EXPORT_BACKLOG: usize = 8;
/// How often the stage looks for invalid frees waiting (a window is cut at once for them).
const INVALID_CHECK: Duration = Duration::from_millis(50);

/// One window, as the export encodes it.
#[derive(Debug)]
pub(crate) struct Window {
    /// Counts from 1.
    pub(crate) seq: u64,
    /// When the window started (the previous window's end).
    pub(crate) start: SystemTime,
    /// The snapshot at its end.
    pub(crate) snapshot: Snapshot,
    /// The task windows due, highest score first (at most [`Bounds::max_spans`]).
    pub(crate) tasks: Vec<TaskWindow>,
    /// Tasks due a window span that did not get one (over [`Bounds::max_spans`]).
    pub(crate) omitted_tasks: u64,
    /// Tasks that hold memory and did nothing, waiting for their turn
    /// ([`Bounds::idle_every`]).
    pub(crate) idle_tasks: u64,
    /// The process's figures ([`Snapshot::total`]) at the window's start.
    pub(crate) total_at_start: MemStats,
    /// The span instances sampled in the previous window, read now.
    pub(crate) residues: ResidueRound,
    /// The relation graph, when the live index is on.
    pub(crate) graph: Option<LiveGraph>,
    /// The findings judged on it.
    pub(crate) findings: Judged,
    /// The invalid frees reported with it: [`crate::alloc::invalid::mark_reported`] with this
    /// once the window is written.
    pub(crate) invalid_upto: u64,
}

/// Settings of the stage.
pub(crate) struct Settings {
    /// Window length.
    pub(crate) window: Duration,
    /// The bound of the last window's work at shutdown.
    pub(crate) shutdown_timeout: Duration,
    /// Set when the live index is on: a graph every window.
    pub(crate) capture: Option<CaptureConfig>,
    pub(crate) findings: FindingsConfig,
    /// Window spans per window, and how often an idle holder gets one.
    pub(crate) bounds: Bounds,
}

/// What the guard and the stage share.
#[derive(Debug, Default)]
pub(crate) struct Control {
    state: Mutex<Ctl>,
    cv: Condvar,
    /// The findings of the latest window.
    findings: Mutex<Vec<Finding>>,
    /// Windows the export was too far behind to take.
    pub(crate) dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Ctl {
    /// Cuts asked for by [`Control::cut`].
    requested: u64,
    /// Cuts done (of those asked for).
    done: u64,
    stop: bool,
    /// The stage thread has ended.
    ended: bool,
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ctl> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The findings of the latest window, highest score first.
    pub(crate) fn findings(&self) -> Vec<Finding> {
        self.findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks for a window now and waits for it (at most `timeout`); its findings, or `None` if
    /// the stage did not cut it in time (or has stopped).
    pub(crate) fn cut(&self, timeout: Duration) -> Option<Vec<Finding>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        if st.stop || st.ended {
            return None;
        }
        st.requested += 1;
        let target = st.requested;
        self.cv.notify_all();
        while st.done < target {
            let now = Instant::now();
            if now >= deadline || st.ended {
                return None;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(st);
        Some(self.findings())
    }
}

/// The running stage; [`Stage::shutdown`] cuts the last window and stops it.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Stage {
    /// Starts the stage on the aggregator's tables; windows go to `observer` and then to
    /// `export`, each when it is set.
    pub(crate) fn spawn(
        shared: Shared,
        settings: Settings,
        export: Option<SyncSender<Arc<Window>>>,
        observer: Option<Observer>,
    ) -> Result<Stage> {
        let control = Arc::new(Control::default());
        let thread = {
            let control = control.clone();
            crate::thread::spawn("heapspan-windows", move || {
                let mut w = Windower::new(settings);
                w.run(&shared, &control, export, observer);
                control.lock().ended = true;
                control.cv.notify_all();
            })?
        };
        Ok(Stage {
            control,
            thread: Some(thread),
        })
    }

    /// Cuts the last window and waits for the stage to end, until `deadline` at most (then
    /// leaves it behind: a slow graph capture never blocks the process's exit).
    pub(crate) fn shutdown(mut self, deadline: Instant) {
        self.control.lock().stop = true;
        self.control.cv.notify_all();
        let mut st = self.control.lock();
        while !st.ended {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self
                .control
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(st);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The stage's state across windows.
pub(crate) struct Windower {
    settings: Settings,
    cutter: cut::Cutter,
    engine: Engine,
    prev: Option<Snapshot>,
    seq: u64,
    /// How long the last graph capture took.
    last_capture: Duration,
}

impl Windower {
    pub(crate) fn new(settings: Settings) -> Self {
        let engine = Engine::new(settings.findings.clone());
        let bounds = settings.bounds;
        Windower {
            settings,
            cutter: cut::Cutter::new(SystemTime::now(), bounds),
            engine,
            prev: None,
            seq: 0,
            last_capture: Duration::ZERO,
        }
    }

    /// Starts the next window at `start` (for tests).
    #[cfg(test)]
    pub(crate) fn restart_at(&mut self, start: SystemTime) {
        self.cutter = cut::Cutter::new(start, self.settings.bounds);
    }

    fn run(
        &mut self,
        shared: &Shared,
        control: &Control,
        export: Option<SyncSender<Arc<Window>>>,
        mut observer: Option<Observer>,
    ) {
        let mut next = Instant::now() + self.settings.window;
        loop {
            let (stopping, asked) = {
                let mut st = control.lock();
                loop {
                    if st.stop || st.requested > st.done || crate::alloc::invalid::pending() {
                        break;
                    }
                    let now = Instant::now();
                    if now >= next {
                        break;
                    }
                    st = control
                        .cv
                        .wait_timeout(st, (next - now).min(INVALID_CHECK))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                (st.stop, st.requested)
            };
            // The residues are read under the same lock, right after the snapshot's folds.
            let (snap, residues) = {
                let mut a = aggregator::lock(shared);
                let snap = a.snapshot();
                (snap, a.take_residues(stopping))
            };
            let mut w = self.window(snap, stopping);
            w.residues = residues;
            *control.findings.lock().unwrap_or_else(|p| p.into_inner()) =
                w.findings.current.clone();
            // A panic in the observer turns it off for the rest of the run (windows, findings
            // and export go on without it).
            if let Some(f) = observer.as_mut() {
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&w))).is_ok();
                if !ok {
                    observer = None;
                    eprintln!(
                        "heapspan: recording a window for the HTML report panicked; the report \
                         is off for the rest of the run"
                    );
                }
            }
            let upto = w.invalid_upto;
            if crate::alloc::invalid::ABORT.load(Ordering::Relaxed) {
                for f in &w.findings.current {
                    if matches!(
                        f.kind,
                        crate::findings::Kind::DeallocInvalid | crate::findings::Kind::FfiCustody
                    ) {
                        eprintln!("heapspan: {} {}: {}", f.severity, f.kind, f.summary);
                    }
                }
            }
            match &export {
                Some(tx) => match tx.try_send(Arc::new(w)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        control.dropped.fetch_add(1, Ordering::Relaxed);
                        crate::alloc::invalid::mark_reported(upto);
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        crate::alloc::invalid::mark_reported(upto);
                    }
                },
                None => crate::alloc::invalid::mark_reported(upto),
            }
            {
                let mut st = control.lock();
                st.done = st.done.max(asked);
                control.cv.notify_all();
            }
            if stopping {
                return;
            }
            next = Instant::now() + self.settings.window;
        }
    }

    /// Cuts the window that ends at `snap`: task windows, graph, findings.
    pub(crate) fn window(&mut self, snap: Snapshot, last: bool) -> Window {
        // At shutdown the capture is skipped when the previous one took more than a quarter of
        // `shutdown_timeout`, so that the last window still goes out in time.
        let slow = self.last_capture > self.settings.shutdown_timeout / 4;
        let graph = if last && slow {
            None
        } else {
            let began = Instant::now();
            let g = self.capture_graph();
            self.last_capture = began.elapsed();
            g
        };
        self.window_with(snap, last, graph)
    }

    /// [`Windower::window`] with the graph given.
    pub(crate) fn window_with(
        &mut self,
        snap: Snapshot,
        last: bool,
        graph: Option<LiveGraph>,
    ) -> Window {
        let start = self.cutter.last();
        let cut = self.cutter.cut(&snap, last);
        let (records, invalid_upto) = crate::alloc::invalid::drain();
        // A free of a block in custody is its passport's (`ffi.custody`), when it has one.
        let invalid: Vec<InvalidFree> = records
            .iter()
            .filter(|r| {
                r.case != crate::alloc::invalid::Case::InCustody
                    || !crate::custody::on_freed_in_custody(r.addr, r.freed_by, r.realloc)
            })
            .map(invalid_free)
            .collect();
        let custody = crate::custody::drain(&snap);
        let findings = self.engine.judge(&Input {
            snap: &snap,
            prev: self.prev.as_ref(),
            start,
            graph: graph.as_ref(),
            invalid: &invalid,
            invalid_lost: crate::alloc::invalid::lost(),
            custody: &custody,
        });
        self.seq += 1;
        let total_at_start = self.prev.as_ref().map(|p| p.total).unwrap_or_default();
        self.prev = Some(snap.clone());
        Window {
            seq: self.seq,
            start,
            snapshot: snap,
            tasks: cut.tasks,
            omitted_tasks: cut.omitted,
            idle_tasks: cut.idle,
            total_at_start,
            residues: ResidueRound::default(),
            graph,
            findings,
            invalid_upto,
        }
    }

    /// Takes the live graph when the live index is on. A panic in the capture turns graph
    /// capture off for the rest of the run (windows and findings go on without it).
    fn capture_graph(&mut self) -> Option<LiveGraph> {
        let cfg = self.settings.capture.as_ref()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::graph::live::capture(cfg)
        })) {
            Ok(g) => g,
            Err(_) => {
                self.settings.capture = None;
                eprintln!(
                    "heapspan: taking the relation graph panicked; the graph is off for the \
                     rest of the run"
                );
                None
            }
        }
    }
}

/// An invalid free with names: who allocated, who freed.
fn invalid_free(r: &crate::alloc::invalid::Record) -> InvalidFree {
    InvalidFree {
        case: r.case,
        realloc: r.realloc,
        size: r.size,
        align: r.align,
        allocated_size: r.allocated_size,
        allocated_by: r.allocated_by.map(owner),
        first_free_by: r.first_free_by.map(owner),
        freed_by: owner(r.freed_by),
    }
}

/// The task and span names of an allocator key.
fn owner(k: crate::alloc::header::Key) -> Owner {
    use crate::alloc::header::{TASK_HEAPSPAN, TASK_NONE, TASK_OVERFLOW, TASK_UNTRACKED};
    let task = match k.task {
        TASK_NONE => "no task".to_owned(),
        TASK_HEAPSPAN => "heapspan".to_owned(),
        TASK_UNTRACKED => "untracked".to_owned(),
        TASK_OVERFLOW => "overflow".to_owned(),
        _ => crate::layer::names::task_name(k.task_name()),
    };
    Owner {
        task,
        span: crate::layer::names::span_label(k),
    }
}

/// The export's end of the window channel.
pub(crate) fn channel() -> (SyncSender<Arc<Window>>, Receiver<Arc<Window>>) {
    std::sync::mpsc::sync_channel(EXPORT_BACKLOG)
}
