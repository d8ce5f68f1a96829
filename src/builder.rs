//! Configuration and the running guard.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::aggregator::run::HOLD;
use crate::aggregator::{self, events, Aggregator, Limits, Shared};
use crate::alloc::{self, InternalScope};
use crate::env;
use crate::error::{Error, Result};
use crate::export::html::run::EndOfRun;
use crate::export::pipeline::{self, ExportHandle};
use crate::export::ExportConfig;
use crate::findings::{Finding, FindingsConfig};
use crate::graph::live::{CaptureConfig, IndexMode, LiveGraph};
use crate::layer::groups::{
    self, DEFAULT_MAX_SPAN_GROUPS_PER_NAME, DEFAULT_SPAN_GROUP_FIELDS, MAX_SPAN_GROUPS_PER_NAME,
    MAX_SPAN_GROUP_FIELDS,
};
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

/// Configures and starts heapspan.
///
/// [`Builder::start`] reads the environment (the `HEAPSPAN_*` and `OTEL_*` variables of
/// [`crate::env`]) for every setting not set here: **values set in code win over the
/// environment**, which wins over the `DEFAULT_*` constants. [`crate::builder()`],
/// `Builder::default()` and [`Builder::from_env`] are the same builder. A malformed variable
/// makes `start` fail with [`Error::InvalidConfig`], naming the variable and the values it
/// accepts, before anything is started:
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
/// // With HEAPSPAN_FOLD_INTERVAL_MS=soon in the environment:
/// # std::env::set_var(heapspan::env::HEAPSPAN_FOLD_INTERVAL_MS, "soon");
/// let err = heapspan::builder().start().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid value \"soon\" for HEAPSPAN_FOLD_INTERVAL_MS: expected a whole number of \
///      milliseconds from 1 to 60000"
/// );
/// // Set in code, the variable is not read.
/// let guard = heapspan::builder()
///     .fold_interval(std::time::Duration::from_millis(20))
///     .start()
///     .unwrap();
/// # drop(guard);
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    // `None`: not set in code, read from the environment at start.
    fold_interval: Option<Duration>,
    max_threads: Option<usize>,
    live_index: Option<IndexMode>,
    capture_sites: Option<bool>,
    on_invalid_free: Option<InvalidFreeAction>,
    html_report: Option<PathBuf>,
    ended_task_retention: usize,
    closed_span_retention: usize,
    idle_task_eviction: Duration,
    index_capacity: usize,
    max_queue_bytes: usize,
    capture: CaptureConfig,
    export: ExportConfig,
    findings: FindingsConfig,
    span_group_fields: Vec<String>,
    max_span_groups_per_name: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            fold_interval: None,
            max_threads: None,
            live_index: None,
            capture_sites: None,
            on_invalid_free: None,
            html_report: None,
            ended_task_retention: DEFAULT_ENDED_TASK_RETENTION,
            closed_span_retention: DEFAULT_CLOSED_SPAN_RETENTION,
            idle_task_eviction: DEFAULT_IDLE_TASK_EVICTION,
            index_capacity: DEFAULT_INDEX_CAPACITY,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            capture: CaptureConfig::default(),
            export: ExportConfig::default(),
            findings: FindingsConfig::default(),
            span_group_fields: DEFAULT_SPAN_GROUP_FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            max_span_groups_per_name: DEFAULT_MAX_SPAN_GROUPS_PER_NAME,
        }
    }
}

/// The settings after the environment and the defaults were applied.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub(crate) fold_interval: Duration,
    pub(crate) max_threads: usize,
    pub(crate) live_index: IndexMode,
    pub(crate) capture_sites: bool,
    pub(crate) on_invalid_free: InvalidFreeAction,
    pub(crate) findings: FindingsConfig,
    pub(crate) html_report: Option<PathBuf>,
}

/// What heapspan does after it reported an invalid free ([`Builder::on_invalid_free`]).
///
/// Either way the free is **not** given to the inner allocator (see the crate's "Safety and
/// correctness": a second free of a block the inner allocator already holds is what corrupts
/// its lists), and a `dealloc.invalid` finding is recorded without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidFreeAction {
    /// Report it and carry on (the default): the block is quarantined (never handed back),
    /// the finding goes out with the next window, which is cut early for it.
    #[default]
    Report,
    /// Report it, wait until the report is written (the window cut, its finding exported;
    /// at most 10 s), then abort the process: for tests and CI of programs that must not
    /// have one.
    Abort,
}

impl Builder {
    /// The same builder as [`crate::builder()`], with the environment checked now: a malformed
    /// `HEAPSPAN_*` or `OTEL_*` variable is an error here rather than at [`Builder::start`]
    /// (which reads the environment again, for the settings the code did not set).
    pub fn from_env() -> Result<Self> {
        let b = Builder::default();
        b.check_env()?;
        Ok(b)
    }

    /// Resolves every setting against the process environment, starting nothing.
    pub(crate) fn check_env(&self) -> Result<()> {
        self.settings_with(env::process)?;
        self.export.resolve()?;
        Ok(())
    }

    /// The settings: code, then `lookup` (the environment), then the `DEFAULT_*` constants,
    /// validated. A variable is read only for a setting the code did not set.
    pub(crate) fn settings_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let lookup = &lookup;
        let fold_interval = match self.fold_interval {
            Some(d) => d,
            None => env::fold_interval(lookup)?.unwrap_or(DEFAULT_FOLD_INTERVAL),
        };
        let max_threads = match self.max_threads {
            Some(n) => n,
            None => env::max_threads(lookup)?.unwrap_or(DEFAULT_MAX_THREADS),
        };
        let live_index = match self.live_index {
            Some(m) => m,
            None => {
                // Checked even when the mode is not `sampled`, so a typo does not go unnoticed.
                let mean = env::sample_mean_bytes(lookup)?;
                match env::live_index(lookup)? {
                    Some(IndexMode::Sampled { mean_bytes }) => IndexMode::Sampled {
                        mean_bytes: mean.unwrap_or(mean_bytes),
                    },
                    Some(m) => m,
                    None => IndexMode::Off,
                }
            }
        };
        let capture_sites = match self.capture_sites {
            Some(on) => on,
            None => env::capture_sites(lookup)?.unwrap_or(false),
        };
        let on_invalid_free = match self.on_invalid_free {
            Some(a) => a,
            None => env::on_invalid_free(lookup)?.unwrap_or_default(),
        };
        let html_report = match &self.html_report {
            Some(p) => Some(p.clone()),
            None => env::html_report(lookup)?,
        };
        let settings = Settings {
            fold_interval,
            max_threads,
            live_index,
            capture_sites,
            on_invalid_free,
            findings: self.findings.clone().apply_env(lookup)?,
            html_report,
        };
        self.validate(&settings)?;
        Ok(settings)
    }

    /// How often the aggregator folds per-thread counters into the tables (default
    /// [`DEFAULT_FOLD_INTERVAL`], 10 ms; allowed 1 ms ..= 60 s; environment
    /// `HEAPSPAN_FOLD_INTERVAL_MS`). Peaks are observed at folds.
    pub fn fold_interval(mut self, d: Duration) -> Self {
        self.fold_interval = Some(d);
        self
    }

    /// What an invalid free does once it is reported (default [`InvalidFreeAction::Report`];
    /// environment `HEAPSPAN_ON_INVALID_FREE`, `report` or `abort`). An invalid free is a free
    /// (or realloc) of a block this allocator did not hand out, of one already freed, or with
    /// a layout other than the allocation's: it is never forwarded to the inner allocator.
    pub fn on_invalid_free(mut self, action: InvalidFreeAction) -> Self {
        self.on_invalid_free = Some(action);
        self
    }

    /// How many threads get their own counter table (default [`DEFAULT_MAX_THREADS`]; tables of
    /// exited threads are reused; environment `HEAPSPAN_MAX_THREADS`). A thread beyond it borrows a free table for each
    /// operation, or, when every table is claimed by a live thread, goes through a slower
    /// lock-free fallback (one node per operation); nothing is dropped either way. The tables
    /// are one mapping of about 21 KiB of address space each, resident only once used.
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = Some(n);
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

    /// The live index behind the relation graph (default [`IndexMode::Off`]; environment
    /// `HEAPSPAN_LIVE_INDEX` and `HEAPSPAN_SAMPLE_MEAN_BYTES`); see [`crate::graph::live`].
    pub fn live_index(mut self, mode: IndexMode) -> Self {
        self.live_index = Some(mode);
        self
    }

    /// Writes the HTML view of the run to `path` when the [`Guard`] is dropped: live bytes
    /// over time per task and span name, the last window's findings with their evidence, and
    /// the relation graph around each finding's roots (with the live index on), in one
    /// self-contained page (see [`export::html`](crate::export::html)). Default: none (off);
    /// environment `HEAPSPAN_HTML_REPORT`. The directory is created if missing; a path that
    /// is a directory is refused at start. heapspan keeps a bounded history of its windows
    /// for it ([`export::html::HISTORY_WINDOWS`](crate::export::html::HISTORY_WINDOWS)),
    /// off the allocation path.
    pub fn html_report(mut self, path: impl Into<PathBuf>) -> Self {
        self.html_report = Some(path.into());
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

    /// Record the code location of every indexed allocation (default off; environment
    /// `HEAPSPAN_CAPTURE_SITES`): a stack walk per
    /// indexed allocation, about a microsecond or more, and 8 bytes per entry. In sampled
    /// mode that is one walk per sample; in full mode one per allocation (development only).
    /// Nodes then carry a [`site`](crate::graph::Node::site) that
    /// [`graph::live::site_location`](crate::graph::live::site_location) symbolizes, the
    /// `clone` detector matches on it, and DOT labels and `heapspan.edge` events show it. Unix
    /// only (elsewhere the setting is ignored).
    pub fn capture_sites(mut self, on: bool) -> Self {
        self.capture_sites = Some(on);
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
    /// `DEFAULT_*` of [`crate::findings`]; `HEAPSPAN_FINDINGS` and `HEAPSPAN_GROWTH_WINDOWS`
    /// apply to the settings `config` did not set). Findings are judged once per window
    /// ([`ExportConfig::window`]), whether export is on or not; read them with
    /// [`Guard::findings`], in [`Guard::report`], and as `heapspan.finding` spans.
    pub fn findings(mut self, config: FindingsConfig) -> Self {
        self.findings = config;
        self
    }

    /// The fields that split a span name into groups (default
    /// [`DEFAULT_SPAN_GROUP_FIELDS`]: `http.route` and `otel.name`; at most
    /// [`MAX_SPAN_GROUP_FIELDS`]; none turns grouping off).
    ///
    /// A span whose callsite declares one of them is counted under its name *and* the values
    /// of those it has, at creation and again when one is recorded later
    /// (`span.record("http.route", route)`, from then on): tower-http's `TraceLayer` names
    /// every span `request`, and with `http.route` in its span (axum's `MatchedPath` in
    /// `make_span_with`, or recorded by a middleware) each route gets a row of its own in
    /// [`Snapshot::span_groups`](crate::Snapshot::span_groups), the report, and the span
    /// metrics' [`heapspan.span.group`](crate::export::names::SPAN_GROUP) attribute. Values are
    /// cut at [`MAX_SPAN_GROUP_VALUE_BYTES`](crate::MAX_SPAN_GROUP_VALUE_BYTES); a name gets
    /// at most [`Builder::max_span_groups_per_name`] groups, the rest share `other`. Choose
    /// bounded fields (a route template, a method), not a URI or an id.
    ///
    /// Spans of callsites without any of the fields cost nothing more; a span with one takes
    /// a short lock in the layer when it is created or the field is recorded (never in the
    /// allocator).
    pub fn span_group_fields<I>(mut self, fields: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.span_group_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Groups with field values per span name (default [`DEFAULT_MAX_SPAN_GROUPS_PER_NAME`];
    /// allowed 1 ..= [`MAX_SPAN_GROUPS_PER_NAME`]): the first values seen get a group each,
    /// later ones share the name's `other` group (`request {other}`). All names share 32,766
    /// groups.
    pub fn max_span_groups_per_name(mut self, n: usize) -> Self {
        self.max_span_groups_per_name = n;
        self
    }

    fn index_start(&self, s: &Settings) -> alloc::IndexStart {
        use alloc::state::Mode;
        let (mode, sample_mean) = match s.live_index {
            IndexMode::Off => (Mode::Counting, DEFAULT_SAMPLE_MEAN_BYTES),
            IndexMode::Full => (Mode::Indexed, DEFAULT_SAMPLE_MEAN_BYTES),
            IndexMode::Sampled { mean_bytes } => (Mode::Sampled, mean_bytes),
        };
        alloc::IndexStart {
            mode,
            sample_mean,
            capacity: self.index_capacity,
            sites: s.capture_sites,
        }
    }

    fn validate(&self, s: &Settings) -> Result<()> {
        let bad = |setting, value: String, expected| {
            Err(Error::InvalidConfig {
                setting,
                value,
                expected,
            })
        };
        if s.fold_interval < Duration::from_millis(1) || s.fold_interval > Duration::from_secs(60) {
            return bad(
                "fold_interval",
                format!("{:?}", s.fold_interval),
                "from 1 ms to 60 s",
            );
        }
        if !(1..=65_536).contains(&s.max_threads) {
            return bad("max_threads", s.max_threads.to_string(), "from 1 to 65536");
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
        if let IndexMode::Sampled { mean_bytes } = s.live_index {
            if !(1..=(1 << 40)).contains(&mean_bytes) {
                return bad(
                    "live_index(Sampled { mean_bytes })",
                    mean_bytes.to_string(),
                    "from 1 to 1099511627776 bytes",
                );
            }
        }
        if self.span_group_fields.len() > MAX_SPAN_GROUP_FIELDS
            || self.span_group_fields.iter().any(|f| f.is_empty())
        {
            return bad(
                "span_group_fields",
                format!("{:?}", self.span_group_fields),
                "at most 8 non-empty field names",
            );
        }
        if !(1..=MAX_SPAN_GROUPS_PER_NAME).contains(&self.max_span_groups_per_name) {
            return bad(
                "max_span_groups_per_name",
                self.max_span_groups_per_name.to_string(),
                "from 1 to 4096",
            );
        }
        if let Some(p) = &s.html_report {
            if p.as_os_str().is_empty() || p.is_dir() {
                return bad(
                    if self.html_report.is_some() {
                        "html_report"
                    } else {
                        env::HEAPSPAN_HTML_REPORT
                    },
                    p.display().to_string(),
                    "a file path (not a directory)",
                );
            }
        }
        s.findings.validate()
    }

    /// Starts counting and the aggregator thread, with the settings of this builder and, for
    /// those it does not set, of the environment ([`crate::env`]). Add [`crate::layer()`] to
    /// your subscriber for span attribution and task names.
    ///
    /// Settings are checked before anything starts: a bad value leaves heapspan startable.
    /// heapspan runs once per process: a second `start` (or one after [`crate::init`]) fails
    /// with [`Error::AlreadyStarted`].
    pub fn start(self) -> Result<Guard> {
        let _scope = InternalScope::enter();
        let settings = self.settings_with(env::process)?;
        // Export settings and exporters are checked before anything starts, so that a bad
        // setting leaves heapspan startable.
        let resolved = self.export.resolve()?;
        let window_settings = windows::Settings {
            window: resolved.window,
            shutdown_timeout: resolved.shutdown_timeout,
            // With the live index on, the window stage takes a graph every window.
            capture: (settings.live_index != IndexMode::Off).then(|| self.capture.clone()),
            findings: settings.findings.clone(),
            bounds: windows::Bounds {
                max_spans: resolved.max_window_spans,
                idle_every: resolved.idle_holder_interval,
            },
        };
        // Residues are sampled only when spans are exported and the application's spans can
        // be read (feature `tracing-opentelemetry`).
        let residue_per_window = if resolved.enabled && cfg!(feature = "tracing-opentelemetry") {
            resolved.max_residue_spans
        } else {
            0
        };
        let shutdown_timeout = resolved.shutdown_timeout;
        let html = settings.html_report.clone().map(|path| {
            let service = resolved
                .resource
                .iter()
                .find(|(k, _)| k == "service.name")
                .map_or_else(|| "unknown_service".to_owned(), |(_, v)| v.clone());
            EndOfRun::new(path, service, settings.findings.min_score)
        });
        let export = pipeline::prepare(resolved)?;
        if export.as_ref().is_some_and(|e| e.writes_dot()) && settings.live_index == IndexMode::Off
        {
            eprintln!(
                "heapspan: a graph DOT directory is set, but the live index is off \
                 (Builder::live_index): no graph will be written"
            );
        }
        #[cfg(feature = "tracing-opentelemetry")]
        if export.is_none() {
            eprintln!(
                "heapspan: feature tracing-opentelemetry is on, but heapspan exports no traces \
                 (no OTLP endpoint, no file): Guard::tracer_provider() is None, so spans given \
                 its tracer go nowhere; set OTEL_EXPORTER_OTLP_ENDPOINT, ExportConfig::file, or \
                 bring your own provider (ExportConfig::tracer_provider)"
            );
        }
        let rx = events::open().ok_or(Error::AlreadyStarted)?;
        groups::configure(&self.span_group_fields, self.max_span_groups_per_name);
        alloc::budget::set_max(self.max_queue_bytes);
        let pool = alloc::start(settings.max_threads, self.index_start(&settings))
            .map_err(|()| Error::AlreadyStarted)?;
        alloc::invalid::ABORT.store(
            settings.on_invalid_free == InvalidFreeAction::Abort,
            std::sync::atomic::Ordering::Relaxed,
        );
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
            residue_per_window,
        };
        let shared: Shared = Arc::new(Mutex::new(Aggregator::new(pool, rx, limits)));
        #[cfg(feature = "tracing-opentelemetry")]
        crate::export::user_spans::register(&shared);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = aggregator::run::spawn(shared.clone(), stop.clone(), settings.fold_interval)
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
        let observer = html.as_ref().map(EndOfRun::observer);
        let stage = match Stage::spawn(shared.clone(), window_settings, tx, observer) {
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
        crate::layer::notice::started();
        crate::layer::notice::check_layer(true);
        Ok(Guard {
            shared,
            capture: self.capture,
            stop,
            thread: Some(thread),
            windows: Some(stage),
            export,
            html,
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

/// Keeps heapspan running; dropping it cuts a last window, writes the HTML report (with
/// [`Builder::html_report`]), flushes the export, stops the aggregator after a last fold, and
/// returns the allocator to pass-through (heapspan cannot be started again).
#[must_use = "heapspan stops when the guard is dropped"]
#[derive(Debug)]
pub struct Guard {
    shared: Shared,
    capture: CaptureConfig,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    windows: Option<Stage>,
    export: Option<ExportHandle>,
    /// The HTML view, written once the last window is in.
    html: Option<EndOfRun>,
    shutdown_timeout: Duration,
}

impl Guard {
    /// Folds everything recorded so far and returns the tables.
    pub fn snapshot(&self) -> Snapshot {
        crate::layer::notice::check_layer(false);
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
        crate::layer::notice::check_layer(false);
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
        crate::layer::notice::check_layer(false);
        crate::layer::notice::stopped();
        // The last window first (its spans go to the export), then the export's last flush,
        // within one shutdown timeout in all.
        let deadline = Instant::now() + self.shutdown_timeout;
        if let Some(w) = self.windows.take() {
            w.shutdown(deadline);
        }
        if let Some(h) = self.html.take() {
            h.write(deadline);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let s = crate::builder().settings_with(vars(&[])).unwrap();
        assert_eq!(
            s,
            Settings {
                fold_interval: DEFAULT_FOLD_INTERVAL,
                max_threads: DEFAULT_MAX_THREADS,
                live_index: IndexMode::Off,
                capture_sites: false,
                on_invalid_free: InvalidFreeAction::Report,
                findings: FindingsConfig::default(),
                html_report: None,
            }
        );
    }

    #[test]
    fn the_invalid_free_action_comes_from_the_environment_unless_set_in_code() {
        let abort = vars(&[(HEAPSPAN_ON_INVALID_FREE, "abort")]);
        let s = crate::builder().settings_with(&abort).unwrap();
        assert_eq!(s.on_invalid_free, InvalidFreeAction::Abort);
        let s = crate::builder()
            .on_invalid_free(InvalidFreeAction::Report)
            .settings_with(&abort)
            .unwrap();
        assert_eq!(s.on_invalid_free, InvalidFreeAction::Report);
        let e = crate::builder()
            .settings_with(vars(&[(HEAPSPAN_ON_INVALID_FREE, "crash")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"crash\" for HEAPSPAN_ON_INVALID_FREE: expected report or abort"
        );
    }

    #[test]
    fn the_environment_overrides_the_defaults() {
        let env = vars(&[
            (HEAPSPAN_FOLD_INTERVAL_MS, "25"),
            (HEAPSPAN_MAX_THREADS, "64"),
            (HEAPSPAN_LIVE_INDEX, "sampled"),
            (HEAPSPAN_SAMPLE_MEAN_BYTES, "4096"),
            (HEAPSPAN_CAPTURE_SITES, "1"),
            (HEAPSPAN_FINDINGS, "off"),
            (HEAPSPAN_GROWTH_WINDOWS, "4"),
        ]);
        let s = crate::builder().settings_with(&env).unwrap();
        assert_eq!(s.fold_interval, Duration::from_millis(25));
        assert_eq!(s.max_threads, 64);
        assert_eq!(s.live_index, IndexMode::Sampled { mean_bytes: 4096 });
        assert!(s.capture_sites);
        assert!(!s.findings.enabled);
        assert_eq!(s.findings.growth_windows, 4);
        // `HEAPSPAN_LIVE_INDEX=full` alone (the issue's case on the "already have a
        // subscriber" path).
        let s = crate::builder()
            .settings_with(vars(&[(HEAPSPAN_LIVE_INDEX, "full")]))
            .unwrap();
        assert_eq!(s.live_index, IndexMode::Full);
    }

    #[test]
    fn values_set_in_code_win_and_their_variables_are_not_read() {
        let env = vars(&[
            (HEAPSPAN_FOLD_INTERVAL_MS, "soon"),
            (HEAPSPAN_MAX_THREADS, "64"),
            (HEAPSPAN_LIVE_INDEX, "full"),
            (HEAPSPAN_SAMPLE_MEAN_BYTES, "junk"),
            (HEAPSPAN_CAPTURE_SITES, "on"),
            (HEAPSPAN_FINDINGS, "off"),
            (HEAPSPAN_GROWTH_WINDOWS, "4"),
        ]);
        let s = crate::builder()
            .fold_interval(Duration::from_millis(20))
            .max_threads(8)
            .live_index(IndexMode::Off)
            .capture_sites(false)
            .findings(FindingsConfig::default().enabled(true))
            .settings_with(&env)
            .unwrap();
        assert_eq!(s.fold_interval, Duration::from_millis(20));
        assert_eq!(s.max_threads, 8);
        assert_eq!(s.live_index, IndexMode::Off);
        assert!(!s.capture_sites);
        assert!(s.findings.enabled, "set in code");
        assert_eq!(
            s.findings.growth_windows, 4,
            "not set in code: from the environment"
        );
    }

    #[test]
    fn the_html_report_path_comes_from_code_then_the_environment_and_is_not_a_directory() {
        let env = vars(&[(HEAPSPAN_HTML_REPORT, "from-env.html")]);
        let s = crate::builder().settings_with(&env).unwrap();
        assert_eq!(s.html_report, Some(PathBuf::from("from-env.html")));
        let s = crate::builder()
            .html_report("from-code.html")
            .settings_with(&env)
            .unwrap();
        assert_eq!(s.html_report, Some(PathBuf::from("from-code.html")));
        let dir = std::env::temp_dir();
        let e = crate::builder()
            .html_report(&dir)
            .settings_with(vars(&[]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid value {:?} for html_report: expected a file path (not a directory)",
                dir.display().to_string()
            )
        );
        let e = crate::builder()
            .settings_with(vars(&[(HEAPSPAN_HTML_REPORT, dir.to_str().unwrap())]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("for HEAPSPAN_HTML_REPORT: expected a file path"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_variable_fails_naming_it_and_what_it_accepts() {
        let e = crate::builder()
            .settings_with(vars(&[(HEAPSPAN_FOLD_INTERVAL_MS, "soon")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"soon\" for HEAPSPAN_FOLD_INTERVAL_MS: expected a whole number of \
             milliseconds from 1 to 60000"
        );
        // The sample mean is checked even without `sampled`: a typo is not silent.
        let e = crate::builder()
            .settings_with(vars(&[
                (HEAPSPAN_LIVE_INDEX, "full"),
                (HEAPSPAN_SAMPLE_MEAN_BYTES, "512k"),
            ]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("for HEAPSPAN_SAMPLE_MEAN_BYTES: expected"),
            "{e}"
        );
        let e = crate::builder()
            .settings_with(vars(&[(HEAPSPAN_LIVE_INDEX, "ful")]))
            .unwrap_err();
        assert!(e
            .to_string()
            .contains("HEAPSPAN_LIVE_INDEX: expected off, full or sampled"));
        // Code values are still validated under their builder names.
        let e = crate::builder()
            .fold_interval(Duration::ZERO)
            .settings_with(vars(&[]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("for fold_interval: expected from 1 ms to 60 s"),
            "{e}"
        );
    }
}
