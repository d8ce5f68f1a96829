//! Configuration and the running guard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::aggregator::run::HOLD;
use crate::aggregator::{self, events, Aggregator, Limits, Shared};
use crate::alloc::{self, InternalScope};
use crate::error::{Error, Result};
use crate::export::pipeline::{self, ExportHandle};
use crate::export::ExportConfig;
use crate::findings::{Finding, FindingsConfig};
use crate::graph::live::{CaptureConfig, IndexMode, LiveGraph};
use crate::windows::{self, Stage};
use crate::{Handle, Snapshot};

/// How long [`Guard::cut_window`] waits for its window at most.
const CUT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default for [`Builder::fold_interval`].
pub const DEFAULT_FOLD_INTERVAL: Duration = Duration::from_millis(10);
/// Default for [`Builder::max_threads`].
pub const DEFAULT_MAX_THREADS: usize = 1024;
/// Default for [`Builder::ended_task_retention`].
pub const DEFAULT_ENDED_TASK_RETENTION: usize = 1024;
/// Default for [`Builder::closed_span_retention`].
pub const DEFAULT_CLOSED_SPAN_RETENTION: usize = 1024;
/// Default for [`Builder::idle_task_eviction`].
pub const DEFAULT_IDLE_TASK_EVICTION: Duration = Duration::from_secs(30);
/// Default mean gap of [`IndexMode::Sampled`]: 512 KiB.
pub const DEFAULT_SAMPLE_MEAN_BYTES: u64 = 512 << 10;
/// Default for [`Builder::max_queue_bytes`]: 256 MiB. The aggregator drains the queues every
/// fold (10 ms by default), where they hold a few hundred KiB even at a million operations a
/// second; the cap only matters when the aggregator thread is starved for a long time.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 256 << 20;
/// Default for [`Builder::index_capacity`]: 1 Mi live indexed allocations per thread table.
pub const DEFAULT_INDEX_CAPACITY: usize = 1 << 20;

/// Configures and starts heapspan. Values set here win over the environment
/// ([`Builder::from_env`]).
#[derive(Clone, Debug)]
pub struct Builder {
    fold_interval: Duration,
    max_threads: usize,
    ended_task_retention: usize,
    closed_span_retention: usize,
    idle_task_eviction: Duration,
    live_index: IndexMode,
    index_capacity: usize,
    max_queue_bytes: usize,
    capture_sites: bool,
    capture: CaptureConfig,
    export: ExportConfig,
    findings: FindingsConfig,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            fold_interval: DEFAULT_FOLD_INTERVAL,
            max_threads: DEFAULT_MAX_THREADS,
            ended_task_retention: DEFAULT_ENDED_TASK_RETENTION,
            closed_span_retention: DEFAULT_CLOSED_SPAN_RETENTION,
            idle_task_eviction: DEFAULT_IDLE_TASK_EVICTION,
            live_index: IndexMode::Off,
            index_capacity: DEFAULT_INDEX_CAPACITY,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            capture_sites: false,
            capture: CaptureConfig::default(),
            export: ExportConfig::default(),
            findings: FindingsConfig::default(),
        }
    }
}

fn env_u64(
    var: &'static str,
    range: std::ops::RangeInclusive<u64>,
    expected: &'static str,
) -> Result<Option<u64>> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::InvalidConfig {
            setting: var,
            value: v.to_string_lossy().into_owned(),
            expected,
        }),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(Error::InvalidConfig {
                setting: var,
                value: v,
                expected,
            }),
        },
    }
}

impl Builder {
    /// Defaults, overridden by `HEAPSPAN_*` environment variables:
    /// `HEAPSPAN_FOLD_INTERVAL_MS`, `HEAPSPAN_MAX_THREADS`, `HEAPSPAN_LIVE_INDEX` (`off`,
    /// `full`, `sampled`), `HEAPSPAN_SAMPLE_MEAN_BYTES` (with `sampled`) and
    /// `HEAPSPAN_CAPTURE_SITES` (`0` or `1`), and the findings' `HEAPSPAN_FINDINGS` (`on`,
    /// `off`) and `HEAPSPAN_GROWTH_WINDOWS` ([`FindingsConfig`]). A malformed value is an error
    /// that names the variable and the accepted values.
    pub fn from_env() -> Result<Self> {
        let mut b = Builder::default();
        if let Some(ms) = env_u64(
            "HEAPSPAN_FOLD_INTERVAL_MS",
            1..=60_000,
            "a whole number of milliseconds from 1 to 60000",
        )? {
            b.fold_interval = Duration::from_millis(ms);
        }
        if let Some(n) = env_u64(
            "HEAPSPAN_MAX_THREADS",
            1..=65_536,
            "a whole number from 1 to 65536",
        )? {
            b.max_threads = n as usize;
        }
        match std::env::var("HEAPSPAN_LIVE_INDEX") {
            Err(std::env::VarError::NotPresent) => {}
            Ok(v) if v.trim().eq_ignore_ascii_case("off") => b.live_index = IndexMode::Off,
            Ok(v) if v.trim().eq_ignore_ascii_case("full") => b.live_index = IndexMode::Full,
            Ok(v) if v.trim().eq_ignore_ascii_case("sampled") => {
                b.live_index = IndexMode::Sampled {
                    mean_bytes: DEFAULT_SAMPLE_MEAN_BYTES,
                }
            }
            Ok(v) => {
                return Err(Error::InvalidConfig {
                    setting: "HEAPSPAN_LIVE_INDEX",
                    value: v,
                    expected: "off, full or sampled",
                })
            }
            Err(std::env::VarError::NotUnicode(v)) => {
                return Err(Error::InvalidConfig {
                    setting: "HEAPSPAN_LIVE_INDEX",
                    value: v.to_string_lossy().into_owned(),
                    expected: "off, full or sampled",
                })
            }
        }
        if let Some(n) = env_u64("HEAPSPAN_CAPTURE_SITES", 0..=1, "0 or 1")? {
            b.capture_sites = n == 1;
        }
        if let Some(n) = env_u64(
            "HEAPSPAN_SAMPLE_MEAN_BYTES",
            1..=(1 << 40),
            "a whole number of bytes from 1 to 1099511627776",
        )? {
            if let IndexMode::Sampled { mean_bytes } = &mut b.live_index {
                *mean_bytes = n;
            }
        }
        b.findings = b.findings.apply_env(|k| std::env::var(k).ok())?;
        Ok(b)
    }

    /// How often the aggregator folds per-thread counters into the tables (default
    /// [`DEFAULT_FOLD_INTERVAL`], 10 ms; allowed 1 ms ..= 60 s). Peaks are observed at folds.
    pub fn fold_interval(mut self, d: Duration) -> Self {
        self.fold_interval = d;
        self
    }

    /// How many threads get their own counter table (default [`DEFAULT_MAX_THREADS`]; tables of
    /// exited threads are reused). A thread beyond it borrows a free table for each
    /// operation, or, when every table is claimed by a live thread, goes through a slower
    /// lock-free fallback (one node per operation); nothing is dropped either way. The tables
    /// are one mapping of about 17 KiB of address space each, resident only once used.
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n;
        self
    }

    /// Ended tasks kept individually (default [`DEFAULT_ENDED_TASK_RETENTION`]); older ones
    /// are forgotten, their figures staying in their name's (exact: the name travels in each
    /// block's header).
    pub fn ended_task_retention(mut self, n: usize) -> Self {
        self.ended_task_retention = n;
        self
    }

    /// Closed spans kept individually (default [`DEFAULT_CLOSED_SPAN_RETENTION`]).
    pub fn closed_span_retention(mut self, n: usize) -> Self {
        self.closed_span_retention = n;
        self
    }

    /// Tasks with no visible end (no wrapper, no `tokio_unstable`) that hold nothing are
    /// forgotten (their figures stay in their name's) after this long without activity
    /// (default [`DEFAULT_IDLE_TASK_EVICTION`]); when more than `4 × ended_task_retention`
    /// (at least 4096) such tasks are held, those that came to hold nothing longest ago go at
    /// once, down to `ended_task_retention`.
    pub fn idle_task_eviction(mut self, d: Duration) -> Self {
        self.idle_task_eviction = d;
        self
    }

    /// The live index behind the relation graph (default [`IndexMode::Off`]); see
    /// [`crate::graph::live`].
    pub fn live_index(mut self, mode: IndexMode) -> Self {
        self.live_index = mode;
        self
    }

    /// Live indexed allocations per thread table (default [`DEFAULT_INDEX_CAPACITY`]; allowed
    /// 1024 ..= 16 Mi). Each takes 16 bytes of address space, touched only when used; a
    /// thread's allocations beyond it are not indexed (counted in
    /// [`ScanStats::unindexed`](crate::graph::live::ScanStats::unindexed)).
    pub fn index_capacity(mut self, n: usize) -> Self {
        self.index_capacity = n;
        self
    }

    /// The hard bound on the memory heapspan's operation queues may hold while the aggregator
    /// has not drained them (default [`DEFAULT_MAX_QUEUE_BYTES`]; allowed 1 MiB ..= 64 GiB).
    ///
    /// Below it nothing is ever dropped: a thread's queue grows by 16 KiB chunks taken from the
    /// system allocator. At the bound heapspan fails conservatively: a new allocation that
    /// would need a queue entry goes to [`Buckets::overflow`](crate::Buckets::overflow)
    /// (counted, with its later free) instead of its task and span, and
    /// [`Snapshot::is_exact`](crate::Snapshot::is_exact) turns false; frees and reallocs of
    /// blocks already attributed, and task and span events, are still recorded (so no owner's
    /// live bytes drift and no event is lost), past the bound if need be: a 64-byte entry per
    /// event and per free or realloc that evicts a slot (in 16 KiB chunks), or a 40-byte node
    /// on a thread without a table. The unbounded event channel (tokio's spawn-span starts,
    /// events of threads without a table) is not counted here: its memory is in the
    /// `heapspan` bucket and [`Snapshot::tracker_bytes`](crate::Snapshot::tracker_bytes).
    pub fn max_queue_bytes(mut self, n: usize) -> Self {
        self.max_queue_bytes = n;
        self
    }

    /// Record the code location of every indexed allocation (default off): a stack walk per
    /// indexed allocation, about a microsecond or more, and 8 bytes per entry. In sampled
    /// mode that is one walk per sample; in full mode one per allocation (development only).
    /// Nodes then carry a [`site`](crate::graph::Node::site) that
    /// [`graph::live::site_location`](crate::graph::live::site_location) symbolizes, the
    /// `clone` detector matches on it, and DOT labels and `heapspan.edge` events show it. Unix
    /// only (elsewhere the setting is ignored).
    pub fn capture_sites(mut self, on: bool) -> Self {
        self.capture_sites = on;
        self
    }

    /// Caps and detector settings of the graphs heapspan takes (default
    /// [`CaptureConfig::default`]).
    pub fn capture(mut self, config: CaptureConfig) -> Self {
        self.capture = config;
        self
    }

    /// OTLP export settings (default [`ExportConfig::default`]: export is on when an endpoint
    /// or a file is configured here or in the environment; see [`crate::export`]). Validated,
    /// together with the `OTEL_*` and `HEAPSPAN_*` export variables, by [`Builder::start`].
    pub fn export(mut self, config: ExportConfig) -> Self {
        self.export = config;
        self
    }

    /// Thresholds of the danger findings (default [`FindingsConfig::default`]: every
    /// `DEFAULT_*` of [`crate::findings`]). Findings are judged once per window
    /// ([`ExportConfig::window`]), whether export is on or not; read them with
    /// [`Guard::findings`], in [`Guard::report`], and as `heapspan.finding` spans.
    pub fn findings(mut self, config: FindingsConfig) -> Self {
        self.findings = config;
        self
    }

    fn index_start(&self) -> alloc::IndexStart {
        use alloc::state::Mode;
        let (mode, sample_mean) = match self.live_index {
            IndexMode::Off => (Mode::Counting, DEFAULT_SAMPLE_MEAN_BYTES),
            IndexMode::Full => (Mode::Indexed, DEFAULT_SAMPLE_MEAN_BYTES),
            IndexMode::Sampled { mean_bytes } => (Mode::Sampled, mean_bytes),
        };
        alloc::IndexStart {
            mode,
            sample_mean,
            capacity: self.index_capacity,
            sites: self.capture_sites,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |setting, value: String, expected| {
            Err(Error::InvalidConfig {
                setting,
                value,
                expected,
            })
        };
        if self.fold_interval < Duration::from_millis(1)
            || self.fold_interval > Duration::from_secs(60)
        {
            return bad(
                "fold_interval",
                format!("{:?}", self.fold_interval),
                "from 1 ms to 60 s",
            );
        }
        if !(1..=65_536).contains(&self.max_threads) {
            return bad(
                "max_threads",
                self.max_threads.to_string(),
                "from 1 to 65536",
            );
        }
        if !(1024..=alloc::index::MAX_ENTRIES).contains(&self.index_capacity) {
            return bad(
                "index_capacity",
                self.index_capacity.to_string(),
                "from 1024 to 16777216",
            );
        }
        if !((1 << 20)..=(64 << 30)).contains(&self.max_queue_bytes) {
            return bad(
                "max_queue_bytes",
                self.max_queue_bytes.to_string(),
                "from 1048576 (1 MiB) to 68719476736 (64 GiB) bytes",
            );
        }
        if let IndexMode::Sampled { mean_bytes } = self.live_index {
            if !(1..=(1 << 40)).contains(&mean_bytes) {
                return bad(
                    "live_index(Sampled { mean_bytes })",
                    mean_bytes.to_string(),
                    "from 1 to 1099511627776 bytes",
                );
            }
        }
        self.findings.validate()
    }

    /// Starts counting and the aggregator thread. Add [`crate::layer()`] to your subscriber for
    /// span attribution and task names.
    pub fn start(self) -> Result<Guard> {
        self.validate()?;
        let _scope = InternalScope::enter();
        // Export settings and exporters are checked before anything starts, so that a bad
        // setting leaves heapspan startable.
        let resolved = self.export.resolve()?;
        let window_settings = windows::Settings {
            window: resolved.window,
            shutdown_timeout: resolved.shutdown_timeout,
            // With the live index on, the window stage takes a graph every window.
            capture: (self.live_index != IndexMode::Off).then(|| self.capture.clone()),
            findings: self.findings.clone(),
        };
        let shutdown_timeout = resolved.shutdown_timeout;
        let export = pipeline::prepare(resolved)?;
        if export.as_ref().is_some_and(|e| e.writes_dot()) && self.live_index == IndexMode::Off {
            eprintln!(
                "heapspan: a graph DOT directory is set, but the live index is off \
                 (Builder::live_index): no graph will be written"
            );
        }
        let rx = events::open().ok_or(Error::AlreadyStarted)?;
        alloc::budget::set_max(self.max_queue_bytes);
        let pool = alloc::start(self.max_threads, self.index_start())
            .map_err(|()| Error::AlreadyStarted)?;
        // Any allocation now claims this thread's table; none means we are not the allocator.
        drop(std::hint::black_box(Box::new(0u64)));
        if pool.high.load(Ordering::Acquire) == 0 {
            alloc::stop();
            return Err(Error::AllocatorNotInstalled);
        }
        let limits = Limits {
            ended_task_retention: self.ended_task_retention,
            closed_span_retention: self.closed_span_retention,
            idle_task_eviction: self.idle_task_eviction,
        };
        let shared: Shared = Arc::new(Mutex::new(Aggregator::new(pool, rx, limits)));
        #[cfg(feature = "tracing-opentelemetry")]
        crate::export::user_spans::register(&shared);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = aggregator::run::spawn(shared.clone(), stop.clone(), self.fold_interval)
            .inspect_err(|_| alloc::stop())?;
        let stop_aggregator = |thread: JoinHandle<()>| {
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
            // Nobody will fold the tables: back to pass-through.
            alloc::stop();
        };
        // The window stage feeds the export; both run from here on.
        let (tx, win_rx) = match export {
            Some(_) => {
                let (tx, rx) = windows::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let stage = match Stage::spawn(shared.clone(), window_settings, tx) {
            Ok(s) => s,
            Err(e) => {
                stop_aggregator(thread);
                return Err(e);
            }
        };
        let export = match export
            .zip(win_rx)
            .map(|(e, rx)| e.spawn(shared.clone(), rx, stage.control.clone()))
            .transpose()
        {
            Ok(e) => e,
            Err(e) => {
                stage.shutdown(Instant::now() + shutdown_timeout);
                stop_aggregator(thread);
                return Err(e);
            }
        };
        Ok(Guard {
            shared,
            capture: self.capture,
            stop,
            thread: Some(thread),
            windows: Some(stage),
            export,
            shutdown_timeout,
        })
    }
}

/// Releases the aggregator when dropped (see [`Guard::hold_aggregator`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct AggregatorHold(());

impl Drop for AggregatorHold {
    fn drop(&mut self) {
        HOLD.store(false, Ordering::Release);
    }
}

/// Keeps heapspan running; dropping it flushes the export, stops the aggregator after a last
/// fold, and returns the allocator to pass-through (heapspan cannot be started again).
#[must_use = "heapspan stops when the guard is dropped"]
#[derive(Debug)]
pub struct Guard {
    shared: Shared,
    capture: CaptureConfig,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    windows: Option<Stage>,
    export: Option<ExportHandle>,
    shutdown_timeout: Duration,
}

impl Guard {
    /// Folds everything recorded so far and returns the tables.
    pub fn snapshot(&self) -> Snapshot {
        let _scope = InternalScope::enter();
        aggregator::lock(&self.shared).snapshot()
    }

    /// Scans the live index now and returns its relation graph; `None` when the live index
    /// is off ([`Builder::live_index`]). Frees of indexed allocations made during the copy
    /// phase are deferred (never blocked) until it ends.
    pub fn graph(&self) -> Option<LiveGraph> {
        self.graph_with(&self.capture)
    }

    /// [`Guard::graph`] with other caps and detector settings than the builder's.
    pub fn graph_with(&self, config: &CaptureConfig) -> Option<LiveGraph> {
        let _scope = InternalScope::enter();
        crate::graph::live::capture(config)
    }

    /// The danger findings of the latest window, highest score first (hints below the
    /// reporting score included: filter on [`Finding::score`] or [`Finding::severity`]). See
    /// [`crate::findings`].
    pub fn findings(&self) -> Vec<Finding> {
        let _scope = InternalScope::enter();
        self.windows
            .as_ref()
            .map(|w| w.control.findings())
            .unwrap_or_default()
    }

    /// Cuts a window now (as the window timer would: task windows, the graph with the live
    /// index on, the findings, and their export) and returns its findings. For tests and
    /// tools that pace windows themselves; waits for the window at most a minute (then returns
    /// the latest findings).
    pub fn cut_window(&self) -> Vec<Finding> {
        let _scope = InternalScope::enter();
        let Some(w) = &self.windows else {
            return Vec::new();
        };
        w.control
            .cut(CUT_TIMEOUT)
            .unwrap_or_else(|| w.control.findings())
    }

    /// heapspan's own OpenTelemetry tracer provider, when it exports to a collector or a file
    /// with providers of its own: give its tracer to your spans (for example
    /// `tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service"))`) and they go
    /// out beside heapspan's, through its bounded queue and exporter thread (no SDK thread).
    pub fn tracer_provider(&self) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
        self.export.as_ref().and_then(|e| e.tracer_provider.clone())
    }

    /// For heapspan's own tests: holds the aggregator thread still (no fold starts until the
    /// hold is dropped; one in progress has finished when this returns), as a starved
    /// background thread would be. [`Guard::snapshot`] still folds.
    #[doc(hidden)]
    pub fn hold_aggregator(&self) -> AggregatorHold {
        HOLD.store(true, Ordering::Release);
        // The aggregator checks the flag under the lock: once we have had it, no fold runs.
        drop(aggregator::lock(&self.shared));
        AggregatorHold(())
    }

    /// The shared tables, for heapspan's exporters.
    #[allow(dead_code)]
    pub(crate) fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// A cloneable `Send + Sync` handle for the report, snapshots and findings from anywhere
    /// (a debug route, an admin thread) while this guard keeps heapspan running; after the
    /// guard is dropped it answers that heapspan stopped. See [`Handle`].
    pub fn handle(&self) -> Handle {
        Handle::new(
            &self.shared,
            self.windows.as_ref().map(|w| &w.control),
            &self.stop,
        )
    }

    /// The terminal report: the findings of the latest window, then the top `n` tasks and
    /// spans (what the quickstart prints; what the figures mean:
    /// [`export::report::render`](crate::export::report::render)).
    pub fn report(&self, n: usize) -> String {
        let snap = self.snapshot();
        let findings = self.findings();
        let _scope = InternalScope::enter();
        crate::export::report::render_with_findings(&snap, &findings, n)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _scope = InternalScope::enter();
        // The last window first (its spans go to the export), then the export's last flush,
        // within one shutdown timeout in all.
        let deadline = Instant::now() + self.shutdown_timeout;
        if let Some(w) = self.windows.take() {
            w.shutdown(deadline);
        }
        if let Some(e) = self.export.take() {
            e.shutdown(deadline);
        }
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        aggregator::lock(&self.shared).fold();
        // Blocks a scan deferred whose frees came in after it ended.
        alloc::scan::drain_if_idle();
        // Nobody folds the tables from now on: back to pass-through.
        alloc::stop();
    }
}
