//! Export settings: what code sets wins, then the standard `OTEL_*` variables and heapspan's
//! `HEAPSPAN_*` ones (the table of [`crate::env`]), then the `DEFAULT_*` constants.
//!
//! ```
//! use std::time::Duration;
//! use heapspan::export::{ExportConfig, Protocol};
//!
//! let config = ExportConfig::default()
//!     .endpoint("http://127.0.0.1:4318")
//!     .protocol(Protocol::HttpProtobuf)
//!     .window(Duration::from_secs(5))
//!     .service_name("checkout")
//!     .resource_attribute("deployment.environment.name", "staging");
//! let resolved = config.resolve_with(|_| None).unwrap();
//! assert_eq!(resolved.traces_url().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
//!
//! let err = ExportConfig::default().endpoint("localhost:4318").resolve_with(|_| None);
//! assert!(err.unwrap_err().to_string().contains("an http:// URL"));
//!
//! // heapspan's exporters have no TLS: `https://` is refused at start, with what to do instead.
//! let err = ExportConfig::default().endpoint("https://collector:4318").resolve_with(|_| None);
//! assert!(err.unwrap_err().to_string().contains("ExportConfig::tracer_provider"));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use crate::env::{self, Signal};
use crate::error::{Error, Result};

/// Default for [`ExportConfig::window`]: one `heapspan.window` span per task every 10 s.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Default for [`ExportConfig::metric_export_interval`]: 10 s, like the window (the
/// OpenTelemetry SDK's own default is 60 s; memory wants the window's resolution).
pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Default for [`ExportConfig::timeout`]: 10 s per export request (the OTLP default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ExportConfig::shutdown_timeout`]: how long dropping the guard waits for the
/// last export.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// Default for [`ExportConfig::max_task_names`] and [`ExportConfig::max_span_names`]: series per
/// instrument, well below the SDK's cardinality limit of 2000.
pub const DEFAULT_MAX_NAMES: usize = 500;
/// Default for [`ExportConfig::max_handoff_cells`]: cells of the hand-off matrix exported as
/// their own series (pairs of allocating and freeing task names). A service hands off between
/// a few dozen pairs; the rest of a larger matrix is added up under `other → other`.
pub const DEFAULT_MAX_HANDOFF_CELLS: usize = 100;
/// Default for [`ExportConfig::span_queue_capacity`]: spans waiting for export; beyond it they
/// are dropped and counted.
pub const DEFAULT_SPAN_QUEUE_CAPACITY: usize = 8192;
/// Default for [`ExportConfig::graph_top_edges`]: `heapspan.edge` events per task per window.
pub const DEFAULT_GRAPH_TOP_EDGES: usize = 100;
/// Largest accepted [`ExportConfig::graph_top_edges`].
pub const MAX_GRAPH_TOP_EDGES: usize = 10_000;
/// Default for [`ExportConfig::max_window_spans`]: `heapspan.window` spans per window at most
/// (the tasks that moved or hold the most bytes first).
pub const DEFAULT_MAX_WINDOW_SPANS: usize = 200;
/// Largest accepted [`ExportConfig::max_window_spans`].
pub const MAX_WINDOW_SPANS: usize = 100_000;
/// Default for [`ExportConfig::idle_holder_interval`]: a task that holds memory but did
/// nothing gets a window span every 6th window (once a minute with the default window).
pub const DEFAULT_IDLE_HOLDER_INTERVAL: u32 = 6;
/// Default for [`ExportConfig::max_residue_spans`]: `heapspan.span.residue` spans per window at
/// most.
pub const DEFAULT_MAX_RESIDUE_SPANS: usize = 50;
/// Largest accepted [`ExportConfig::max_residue_spans`].
pub const MAX_RESIDUE_SPANS: usize = 10_000;
/// Default OTLP/HTTP endpoint when only the protocol is set.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Default OTLP/gRPC endpoint when only the protocol is set.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf` (default; feature `http`).
    #[default]
    HttpProtobuf,
    /// `grpc` (feature `grpc`).
    Grpc,
}

impl Protocol {
    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

pub(crate) const PROTOCOL_EXPECTED: &str = if cfg!(all(feature = "http", feature = "grpc")) {
    "http/protobuf or grpc"
} else if cfg!(feature = "grpc") {
    "grpc (http/protobuf needs heapspan's `http` feature)"
} else if cfg!(feature = "http") {
    "http/protobuf (grpc needs heapspan's `grpc` feature)"
} else {
    "nothing: enable heapspan's `http` or `grpc` feature"
};

pub(crate) fn protocol_supported(p: Protocol) -> bool {
    match p {
        Protocol::HttpProtobuf => cfg!(feature = "http"),
        Protocol::Grpc => cfg!(feature = "grpc"),
    }
}

/// Export settings. Every setter wins over the environment; unset ones come from it, then from
/// the `DEFAULT_*` constants. Export is on when an endpoint, a file or a DOT directory is
/// configured (in code or in the environment), or when the application passes its own
/// providers.
#[derive(Clone, Debug, Default)]
pub struct ExportConfig {
    pub(crate) enabled: Option<bool>,
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) file: Option<PathBuf>,
    pub(crate) window: Option<Duration>,
    pub(crate) metric_interval: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) service_name: Option<String>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) max_task_names: Option<usize>,
    pub(crate) max_span_names: Option<usize>,
    pub(crate) max_handoff_cells: Option<usize>,
    pub(crate) span_queue_capacity: Option<usize>,
    pub(crate) graph_top_edges: Option<usize>,
    pub(crate) graph_dot_dir: Option<PathBuf>,
    pub(crate) max_window_spans: Option<usize>,
    pub(crate) idle_holder_interval: Option<u32>,
    pub(crate) max_residue_spans: Option<usize>,
    pub(crate) meter_provider: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    pub(crate) tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    #[cfg(feature = "tokio-metrics")]
    pub(crate) tokio_runtime: Option<tokio::runtime::Handle>,
}

impl ExportConfig {
    /// Turns export on or off regardless of the environment (default: on when an endpoint, a
    /// file or a provider is configured).
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = Some(on);
        self
    }

    /// The OTLP endpoint, a base URL such as `http://collector:4318` (HTTP; `/v1/traces` and
    /// `/v1/metrics` are appended) or `http://collector:4317` (gRPC). It wins over the
    /// environment: `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT` (full URLs), then
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base), see [`crate::env`]. Default: none, which writes
    /// the OTLP JSON file if one is named.
    ///
    /// Plain `http://` only: heapspan's exporters have no TLS, and an `https://` endpoint is
    /// refused at start ([`Error::InvalidConfig`]). To export over
    /// TLS, pass providers built with a TLS-capable exporter ([`ExportConfig::tracer_provider`],
    /// [`ExportConfig::meter_provider`]).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The transport of both signals (default [`Protocol::HttpProtobuf`]; wins over the
    /// environment: `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`, then
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = Some(p);
        self
    }

    /// With no endpoint, write OTLP JSON lines (the protobuf JSON mapping the collector's
    /// `otlpjsonfile` receiver reads) to this file (environment `HEAPSPAN_OTLP_FILE`; default
    /// none).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Length of a `heapspan.window` (default [`DEFAULT_WINDOW`]; environment
    /// `HEAPSPAN_WINDOW_MS`; at least 1 ms).
    pub fn window(mut self, d: Duration) -> Self {
        self.window = Some(d);
        self
    }

    /// How often metrics are collected and exported (default
    /// [`DEFAULT_METRIC_EXPORT_INTERVAL`]; environment `OTEL_METRIC_EXPORT_INTERVAL` in ms).
    pub fn metric_export_interval(mut self, d: Duration) -> Self {
        self.metric_interval = Some(d);
        self
    }

    /// Timeout of one export request (default [`DEFAULT_TIMEOUT`]; wins over the environment:
    /// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_TIMEOUT`, then `OTEL_EXPORTER_OTLP_TIMEOUT`, in ms).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// How long dropping the guard waits for the final export (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = Some(d);
        self
    }

    /// `service.name` of the resource (environment `OTEL_SERVICE_NAME`, then
    /// `OTEL_RESOURCE_ATTRIBUTES`; default `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute; wins over the same key in `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    /// Adds a header sent with every export request; wins over the same key in
    /// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_HEADERS` (or, when the signal's is unset,
    /// `OTEL_EXPORTER_OTLP_HEADERS`).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Task names exported as their own series (default [`DEFAULT_MAX_NAMES`]; at most 1999).
    /// The first names seen, largest first, keep their series; later ones are reported as
    /// [`names::OTHER`](crate::export::names::OTHER).
    pub fn max_task_names(mut self, n: usize) -> Self {
        self.max_task_names = Some(n);
        self
    }

    /// Span names exported as their own series (default [`DEFAULT_MAX_NAMES`]; at most 1999).
    pub fn max_span_names(mut self, n: usize) -> Self {
        self.max_span_names = Some(n);
        self
    }

    /// Cells of the hand-off matrix ([`Snapshot::handoffs`](crate::Snapshot::handoffs): pairs
    /// of allocating and freeing task names) exported as their own series of
    /// [`names::TASK_MEMORY_HANDED_OFF`](crate::export::names::TASK_MEMORY_HANDED_OFF) and
    /// [`names::TASK_HANDOFFS`](crate::export::names::TASK_HANDOFFS) (default
    /// [`DEFAULT_MAX_HANDOFF_CELLS`]; at most 1999). As for task names, a cell keeps its series
    /// once it has one, new cells get the free ones largest first, and the rest are added up
    /// under [`names::OTHER`](crate::export::names::OTHER) on both sides: the totals stay exact.
    pub fn max_handoff_cells(mut self, n: usize) -> Self {
        self.max_handoff_cells = Some(n);
        self
    }

    /// Spans waiting for export (default [`DEFAULT_SPAN_QUEUE_CAPACITY`]).
    pub fn span_queue_capacity(mut self, n: usize) -> Self {
        self.span_queue_capacity = Some(n);
        self
    }

    /// `heapspan.edge` events per task per window: the task's top edges of the window's
    /// relation graph by bytes (default [`DEFAULT_GRAPH_TOP_EDGES`]; environment
    /// `HEAPSPAN_GRAPH_TOP_EDGES`; 0 ..= [`MAX_GRAPH_TOP_EDGES`], 0 for none). Only with the live
    /// index on ([`Builder::live_index`](crate::Builder::live_index)); see [`crate::export`].
    pub fn graph_top_edges(mut self, k: usize) -> Self {
        self.graph_top_edges = Some(k);
        self
    }

    /// Writes each window's relation graph, for a human to look at, as Graphviz DOT to
    /// `<dir>/heapspan-graph-<pid>-<unix-ms>.dot` (environment `HEAPSPAN_GRAPH_DOT_DIR`; default none).
    /// The directory is created if missing; the top 500 edges by bytes are drawn
    /// ([`DotOptions`](crate::graph::DotOptions) defaults: no addresses); only the newest 1000
    /// files written by the process are kept. Only with the live index on
    /// ([`Builder::live_index`](crate::Builder::live_index)). A file that cannot be written is
    /// counted in `heapspan.tracker.dropped` (reason `graph_dot_failed`) and the first failure
    /// is reported on stderr. Render with `dot -Tsvg heapspan-graph-….dot > graph.svg`.
    pub fn graph_dot_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.graph_dot_dir = Some(dir.into());
        self
    }

    /// `heapspan.window` spans per window at most (default [`DEFAULT_MAX_WINDOW_SPANS`];
    /// 1 ..= [`MAX_WINDOW_SPANS`]). The tasks due a window span that moved or hold the most
    /// bytes get one (allocated plus freed bytes since their last window span, plus their live
    /// bytes); a running task left out keeps its window open, so its next window span covers
    /// both windows and a task's window spans still add up to its figures; an ended task left
    /// out gets no final window span. The `heapspan.process.window` span of the window counts
    /// them ([`names::WINDOW_TASKS_OMITTED`](crate::export::names::WINDOW_TASKS_OMITTED)).
    pub fn max_window_spans(mut self, n: usize) -> Self {
        self.max_window_spans = Some(n);
        self
    }

    /// A task that holds memory but did nothing since its last window span gets one every
    /// `n` windows, with its unchanged figures (default [`DEFAULT_IDLE_HOLDER_INTERVAL`];
    /// at least 1: every window). A task sitting on a leak stays visible without being sent
    /// every window; the tasks waiting for their turn are counted on the window's
    /// `heapspan.process.window` span
    /// ([`names::WINDOW_TASKS_IDLE`](crate::export::names::WINDOW_TASKS_IDLE)).
    pub fn idle_holder_interval(mut self, n: u32) -> Self {
        self.idle_holder_interval = Some(n);
        self
    }

    /// `heapspan.span.residue` spans per window at most (default
    /// [`DEFAULT_MAX_RESIDUE_SPANS`]; 0 ..= [`MAX_RESIDUE_SPANS`], 0 for none; feature
    /// `tracing-opentelemetry`). Of the application's spans that closed holding memory during
    /// a window, a uniform sample of at most `n` is read again at the end of the next window;
    /// each that still holds bytes then gets a `heapspan.span.residue` child span with them
    /// (see [`crate::export`], "Residue").
    pub fn max_residue_spans(mut self, n: usize) -> Self {
        self.max_residue_spans = Some(n);
        self
    }

    /// Records heapspan's metrics into the application's meter provider instead of heapspan's
    /// own: its readers export them. Endpoint and file settings then apply to spans only. This
    /// is the way to export over TLS (with [`ExportConfig::tracer_provider`]): build the
    /// providers with a TLS-capable exporter; heapspan's own exporters have none.
    pub fn meter_provider(mut self, p: opentelemetry_sdk::metrics::SdkMeterProvider) -> Self {
        self.meter_provider = Some(p);
        self
    }

    /// Creates heapspan's window spans with the application's tracer provider: its processors
    /// export them.
    pub fn tracer_provider(mut self, p: opentelemetry_sdk::trace::SdkTracerProvider) -> Self {
        self.tracer_provider = Some(p);
        self
    }

    /// The tokio runtime whose metrics are exported (feature `tokio-metrics`; default: the
    /// runtime [`Builder::start`](crate::Builder::start) is called in, if any).
    #[cfg(feature = "tokio-metrics")]
    pub fn tokio_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.tokio_runtime = Some(handle);
        self
    }

    /// Resolves against the process environment (the variables of [`crate::env`]).
    pub fn resolve(&self) -> Result<Resolved> {
        self.resolve_with(env::process)
    }

    /// Resolves against `lookup` (a lookup of environment variables, as [`crate::env`] reads
    /// them), validating every value: what is set here wins, then the environment, then the
    /// `DEFAULT_*` constants.
    pub fn resolve_with(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Resolved> {
        let lookup = &lookup;
        let bad =
            |setting: &'static str, value: String, expected: &'static str| Error::InvalidConfig {
                setting,
                value,
                expected,
            };
        if let Some(p) = self.protocol.filter(|p| !protocol_supported(*p)) {
            return Err(bad("protocol", p.as_str().into(), PROTOCOL_EXPECTED));
        }

        // The base endpoint: code, then OTEL_EXPORTER_OTLP_ENDPOINT (the signals' own variables,
        // full URLs, come in between for each signal: see `signal`).
        let base = match &self.endpoint {
            Some(e) if is_url(e) => Some(env::FromVar {
                value: e.trim().to_owned(),
                var: "endpoint",
            }),
            Some(e) => return Err(bad("endpoint", e.clone(), env::URL_EXPECTED)),
            None => env::otlp_endpoint(lookup)?,
        };
        let traces = self.signal(
            lookup,
            Signal::Traces,
            base.as_ref(),
            self.tracer_provider.is_some(),
        )?;
        let metrics = self.signal(
            lookup,
            Signal::Metrics,
            base.as_ref(),
            self.meter_provider.is_some(),
        )?;

        // File.
        let file = match &self.file {
            Some(f) => Some(f.clone()),
            None => env::otlp_file(lookup)?,
        };

        // Durations.
        let window = match self.window {
            Some(d) if d < Duration::from_millis(1) => {
                return Err(bad("window", format!("{d:?}"), "at least 1 ms"))
            }
            Some(d) => d,
            None => env::window(lookup)?.unwrap_or(DEFAULT_WINDOW),
        };
        let metric_interval = match self.metric_interval {
            Some(d) if d < Duration::from_millis(1) => {
                return Err(bad(
                    "metric_export_interval",
                    format!("{d:?}"),
                    "at least 1 ms",
                ))
            }
            Some(d) => d,
            None => env::metric_export_interval(lookup)?.unwrap_or(DEFAULT_METRIC_EXPORT_INTERVAL),
        };
        let shutdown_timeout = self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);

        // Resource: OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, then code.
        let mut resource: Vec<(String, String)> = Vec::new();
        let mut set = |k: String, v: String| {
            resource.retain(|(rk, _)| *rk != k);
            resource.push((k, v));
        };
        for (k, v) in env::resource_attributes(lookup)?.unwrap_or_default() {
            set(k, v);
        }
        if let Some(v) = env::service_name(lookup) {
            set("service.name".into(), v);
        }
        for (k, v) in &self.resource {
            if k.is_empty() {
                return Err(bad("resource_attribute", k.clone(), "a non-empty key"));
            }
            set(k.clone(), v.clone());
        }
        if let Some(n) = &self.service_name {
            set("service.name".into(), n.clone());
        }

        let cap = |setting: &'static str, v: Option<usize>| -> Result<usize> {
            match v {
                Some(n) if !(1..=1999).contains(&n) => {
                    Err(bad(setting, n.to_string(), "from 1 to 1999"))
                }
                Some(n) => Ok(n),
                None => Ok(DEFAULT_MAX_NAMES),
            }
        };
        let max_task_names = cap("max_task_names", self.max_task_names)?;
        let max_span_names = cap("max_span_names", self.max_span_names)?;
        let max_handoff_cells = match self.max_handoff_cells {
            None => DEFAULT_MAX_HANDOFF_CELLS,
            v => cap("max_handoff_cells", v)?,
        };
        let span_queue_capacity = match self.span_queue_capacity {
            Some(0) => return Err(bad("span_queue_capacity", "0".into(), "at least 1")),
            Some(n) => n,
            None => DEFAULT_SPAN_QUEUE_CAPACITY,
        };

        // Graph.
        let graph_top_edges = match self.graph_top_edges {
            Some(k) if k > MAX_GRAPH_TOP_EDGES => {
                return Err(bad(
                    "graph_top_edges",
                    k.to_string(),
                    env::TOP_EDGES_EXPECTED,
                ))
            }
            Some(k) => k,
            None => env::graph_top_edges(lookup)?.unwrap_or(DEFAULT_GRAPH_TOP_EDGES),
        };
        const DOT_DIR_EXPECTED: &str = "a directory (created if missing), not a file";
        let check_dir = |setting: &'static str, dir: PathBuf| -> Result<PathBuf> {
            if dir.as_os_str().is_empty() || dir.is_file() {
                Err(bad(setting, dir.display().to_string(), DOT_DIR_EXPECTED))
            } else {
                Ok(dir)
            }
        };
        let graph_dot_dir = match &self.graph_dot_dir {
            Some(d) => Some(check_dir("graph_dot_dir", d.clone())?),
            None => env::graph_dot_dir(lookup)?
                .map(|d| check_dir(env::HEAPSPAN_GRAPH_DOT_DIR, d))
                .transpose()?,
        };

        // Volume.
        let max_window_spans = match self.max_window_spans {
            Some(n) if !(1..=MAX_WINDOW_SPANS).contains(&n) => {
                return Err(bad(
                    "max_window_spans",
                    n.to_string(),
                    "a whole number from 1 to 100000",
                ))
            }
            Some(n) => n,
            None => DEFAULT_MAX_WINDOW_SPANS,
        };
        let idle_holder_interval = match self.idle_holder_interval {
            Some(0) => {
                return Err(bad(
                    "idle_holder_interval",
                    "0".into(),
                    "at least 1 (windows; 1 sends idle holders every window)",
                ))
            }
            Some(n) => n,
            None => DEFAULT_IDLE_HOLDER_INTERVAL,
        };
        let max_residue_spans = match self.max_residue_spans {
            Some(n) if n > MAX_RESIDUE_SPANS => {
                return Err(bad(
                    "max_residue_spans",
                    n.to_string(),
                    "a whole number from 0 to 10000",
                ))
            }
            Some(n) => n,
            None => DEFAULT_MAX_RESIDUE_SPANS,
        };

        let configured = traces.url.is_some()
            || metrics.url.is_some()
            || file.is_some()
            || graph_dot_dir.is_some()
            || self.meter_provider.is_some()
            || self.tracer_provider.is_some();
        Ok(Resolved {
            enabled: self.enabled.unwrap_or(configured),
            endpoint: base.map(|b| b.value),
            traces,
            metrics,
            file,
            window,
            metric_interval,
            shutdown_timeout,
            resource,
            max_task_names,
            max_span_names,
            max_handoff_cells,
            span_queue_capacity,
            graph_top_edges,
            graph_dot_dir,
            max_window_spans,
            idle_holder_interval,
            max_residue_spans,
            meter_provider: self.meter_provider.clone(),
            tracer_provider: self.tracer_provider.clone(),
            #[cfg(feature = "tokio-metrics")]
            tokio_runtime: self.tokio_runtime.clone(),
        })
    }

    /// One signal's protocol, URL, headers and timeout, in opentelemetry-otlp 0.33's order of
    /// priority: the value set in code, then the signal's `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_*`
    /// variable, then the generic `OTEL_EXPORTER_OTLP_*` one, then the default (its
    /// `exporter::resolve_protocol`, `resolve_timeout`, `http::resolve_http_endpoint`, and the
    /// headers' `env::var(signal_headers_var).or_else(|_| env::var(OTEL_EXPORTER_OTLP_HEADERS))`
    /// in `HttpExporterBuilder::build_client` and `TonicExporterBuilder::build_channel`). A
    /// signal the application's own provider exports (`own_provider`) may have any URL scheme:
    /// heapspan does not send it.
    fn signal(
        &self,
        lookup: &impl Fn(&str) -> Option<String>,
        signal: Signal,
        base: Option<&env::FromVar>,
        own_provider: bool,
    ) -> Result<SignalSettings> {
        let protocol = match self.protocol {
            Some(p) => p,
            None => env::otlp_protocol(lookup, signal)?.unwrap_or(if cfg!(feature = "http") {
                Protocol::HttpProtobuf
            } else {
                Protocol::Grpc
            }),
        };
        // Where the URL comes from, and whether it is a base to join the signal's path to.
        let (source, base_url) = match (&self.endpoint, base) {
            (Some(_), Some(b)) => (Some(b.clone()), true),
            _ => match env::otlp_signal_endpoint(lookup, signal)? {
                Some(full) => (Some(full), false),
                None => (base.cloned(), true),
            },
        };
        if let Some(s) = source
            .as_ref()
            .filter(|s| !own_provider && is_https(&s.value))
        {
            return Err(Error::InvalidConfig {
                setting: s.var,
                value: s.value.clone(),
                expected: HTTPS_EXPECTED,
            });
        }
        let url = source.map(|s| match protocol {
            Protocol::HttpProtobuf if base_url => {
                format!("{}/{}", s.value.trim_end_matches('/'), signal.http_path())
            }
            _ => s.value,
        });
        let mut headers = env::otlp_headers(lookup, signal)?.unwrap_or_default();
        for (k, v) in &self.headers {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(Error::InvalidConfig {
                    setting: "header",
                    value: k.clone(),
                    expected: "an HTTP header name",
                });
            }
            headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.clone()));
        }
        let timeout = match self.timeout {
            Some(d) if d.is_zero() => {
                return Err(Error::InvalidConfig {
                    setting: "timeout",
                    value: "0s".into(),
                    expected: "more than 0",
                })
            }
            Some(d) => d,
            None => env::otlp_timeout(lookup, signal)?.unwrap_or(DEFAULT_TIMEOUT),
        };
        Ok(SignalSettings {
            protocol,
            url,
            headers,
            timeout,
        })
    }
}

/// What an `https://` endpoint gets told.
const HTTPS_EXPECTED: &str = "an http:// URL: heapspan's own exporters have no TLS. To export \
     over https://, build OpenTelemetry providers with a TLS-capable exporter (opentelemetry-otlp \
     with its `reqwest-rustls` or `tls-ring` feature) and pass them to heapspan with \
     ExportConfig::tracer_provider and ExportConfig::meter_provider";

fn is_https(url: &str) -> bool {
    url.trim()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// One signal's resolved transport settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalSettings {
    /// Transport.
    pub protocol: Protocol,
    /// Where the signal is sent (HTTP: the base endpoint plus `/v1/traces` or `/v1/metrics`,
    /// or the signal's own full URL); `None` when no endpoint is configured.
    pub url: Option<String>,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// Settings after the environment and defaults were applied and every value validated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Resolved {
    /// Whether export runs.
    pub enabled: bool,
    /// Base endpoint (set in code, or `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Where and how traces go.
    pub traces: SignalSettings,
    /// Where and how metrics go.
    pub metrics: SignalSettings,
    /// OTLP JSON file (used when no endpoint is set).
    pub file: Option<PathBuf>,
    /// Window length.
    pub window: Duration,
    /// Metric export interval.
    pub metric_interval: Duration,
    /// Final export bound.
    pub shutdown_timeout: Duration,
    /// Resource attributes, `service.name` included if set.
    pub resource: Vec<(String, String)>,
    /// Task-name series cap.
    pub max_task_names: usize,
    /// Span-name series cap.
    pub max_span_names: usize,
    /// Hand-off cell series cap.
    pub max_handoff_cells: usize,
    /// Span queue capacity.
    pub span_queue_capacity: usize,
    /// `heapspan.edge` events per task per window.
    pub graph_top_edges: usize,
    /// Where each window's graph is written as DOT.
    pub graph_dot_dir: Option<PathBuf>,
    /// `heapspan.window` spans per window at most.
    pub max_window_spans: usize,
    /// Windows between the window spans of a task that holds memory and does nothing.
    pub idle_holder_interval: u32,
    /// `heapspan.span.residue` spans per window at most.
    pub max_residue_spans: usize,
    pub(crate) meter_provider: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    pub(crate) tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    #[cfg(feature = "tokio-metrics")]
    pub(crate) tokio_runtime: Option<tokio::runtime::Handle>,
}

impl Resolved {
    /// Whether spans and metrics go to an OTLP endpoint (else to the file, if any).
    pub fn has_endpoint(&self) -> bool {
        self.traces.url.is_some() || self.metrics.url.is_some()
    }

    /// The URL traces are sent to (HTTP: the base endpoint plus `/v1/traces`).
    pub fn traces_url(&self) -> Option<String> {
        self.traces.url.clone()
    }

    /// The URL metrics are sent to (HTTP: the base endpoint plus `/v1/metrics`).
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics.url.clone()
    }
}

/// `http://host[:port][/path]` or `https://…`, host non-empty, no whitespace.
pub(crate) fn is_url(v: &str) -> bool {
    let v = v.trim();
    // The scheme is case-insensitive (RFC 3986).
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => (&host[..=i], host[i + 1..].strip_prefix(':')),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    !host.is_empty()
        && !v.chars().any(char::is_whitespace)
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c))
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
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

    #[track_caller]
    fn rejected(c: ExportConfig, pairs: &[(&str, &str)]) -> String {
        match c.resolve_with(vars(pairs)) {
            Err(e @ Error::InvalidConfig { .. }) => e.to_string(),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_leave_export_off() {
        let r = ExportConfig::default().resolve_with(vars(&[])).unwrap();
        assert!(!r.enabled);
        assert_eq!(r.window, DEFAULT_WINDOW);
        assert_eq!(r.metric_interval, DEFAULT_METRIC_EXPORT_INTERVAL);
        assert_eq!(r.traces.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.metrics.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.traces.url, None);
        assert_eq!(r.max_task_names, DEFAULT_MAX_NAMES);
        assert_eq!(r.max_handoff_cells, DEFAULT_MAX_HANDOFF_CELLS);
    }

    #[test]
    fn environment_configures_and_code_wins() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:9/"),
            (OTEL_SERVICE_NAME, "from-env"),
            (OTEL_RESOURCE_ATTRIBUTES, "a=1,b=two%20words,service.name=x"),
            (OTEL_METRIC_EXPORT_INTERVAL, "250"),
            (OTEL_EXPORTER_OTLP_HEADERS, "x-token=abc"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "1500"),
            (HEAPSPAN_WINDOW_MS, "2000"),
            (HEAPSPAN_OTLP_FILE, "/tmp/x.jsonl"),
        ];
        let r = ExportConfig::default().resolve_with(vars(&env)).unwrap();
        assert!(r.enabled);
        assert_eq!(
            r.traces_url().as_deref(),
            Some("http://127.0.0.1:9/v1/traces")
        );
        assert_eq!(
            r.metrics_url().as_deref(),
            Some("http://127.0.0.1:9/v1/metrics")
        );
        assert_eq!(r.window, Duration::from_millis(2000));
        assert_eq!(r.metric_interval, Duration::from_millis(250));
        assert_eq!(r.traces.timeout, Duration::from_millis(1500));
        assert_eq!(r.metrics.timeout, Duration::from_millis(1500));
        assert_eq!(r.traces.headers, vec![("x-token".into(), "abc".into())]);
        assert_eq!(r.file, Some(PathBuf::from("/tmp/x.jsonl")));
        let res: HashMap<_, _> = r.resource.iter().cloned().collect();
        assert_eq!(res["a"], "1");
        assert_eq!(res["b"], "two words");
        assert_eq!(res["service.name"], "from-env");

        let r = ExportConfig::default()
            .endpoint("http://10.0.0.1:4318")
            .window(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .header("X-Token", "code")
            .service_name("code")
            .resource_attribute("a", "code")
            .resolve_with(vars(&env))
            .unwrap();
        assert_eq!(
            r.traces_url().as_deref(),
            Some("http://10.0.0.1:4318/v1/traces")
        );
        assert_eq!(r.window, Duration::from_secs(1));
        assert_eq!(r.traces.timeout, Duration::from_secs(3));
        assert_eq!(r.metrics.headers, vec![("X-Token".into(), "code".into())]);
        let res: HashMap<_, _> = r.resource.iter().cloned().collect();
        assert_eq!(res["a"], "code");
        assert_eq!(res["service.name"], "code");
    }

    #[test]
    fn signal_endpoints_are_used_as_given() {
        let r = ExportConfig::default()
            .resolve_with(vars(&[(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://h:1/custom",
            )]))
            .unwrap();
        assert_eq!(r.traces_url().as_deref(), Some("http://h:1/custom"));
        assert_eq!(r.metrics_url(), None);
    }

    /// opentelemetry-otlp 0.33's order, per signal: code, then
    /// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_*`, then `OTEL_EXPORTER_OTLP_*`, then the default.
    #[test]
    fn signal_variables_win_over_generic_ones_and_code_over_both() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://base:4318"),
            (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "http://m:9/metrics-in"),
            (OTEL_EXPORTER_OTLP_HEADERS, "a=generic,b=generic"),
            (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "a=traces"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
            (OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, "4000"),
        ];
        let r = ExportConfig::default().resolve_with(vars(&env)).unwrap();
        assert_eq!(r.traces.url.as_deref(), Some("http://base:4318/v1/traces"));
        assert_eq!(r.metrics.url.as_deref(), Some("http://m:9/metrics-in"));
        assert_eq!(r.traces.headers, vec![("a".into(), "traces".into())]);
        assert_eq!(
            r.metrics.headers,
            vec![
                ("a".into(), "generic".into()),
                ("b".into(), "generic".into())
            ]
        );
        assert_eq!(r.traces.timeout, Duration::from_secs(1));
        assert_eq!(r.metrics.timeout, Duration::from_secs(4));

        // Code wins over both.
        let r = ExportConfig::default()
            .endpoint("http://code:4318")
            .header("a", "code")
            .timeout(Duration::from_millis(500))
            .resolve_with(vars(&env))
            .unwrap();
        assert_eq!(
            r.metrics.url.as_deref(),
            Some("http://code:4318/v1/metrics")
        );
        assert_eq!(r.traces.headers, vec![("a".into(), "code".into())]);
        assert_eq!(
            r.metrics.headers,
            vec![("b".into(), "generic".into()), ("a".into(), "code".into())]
        );
        assert_eq!(r.metrics.timeout, Duration::from_millis(500));
    }

    /// The protocol: the generic variable no longer wins over the signal's own.
    #[cfg(all(feature = "http", feature = "grpc"))]
    #[test]
    fn signal_protocol_wins_over_the_generic_one() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://base:4317"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, "http/protobuf"),
        ];
        let r = ExportConfig::default().resolve_with(vars(&env)).unwrap();
        assert_eq!(r.traces.protocol, Protocol::Grpc);
        assert_eq!(r.traces.url.as_deref(), Some("http://base:4317"));
        assert_eq!(r.metrics.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            r.metrics.url.as_deref(),
            Some("http://base:4317/v1/metrics")
        );
        let r = ExportConfig::default()
            .protocol(Protocol::HttpProtobuf)
            .resolve_with(vars(&[
                (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
                (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "grpc"),
            ]))
            .unwrap();
        assert_eq!(r.traces.protocol, Protocol::HttpProtobuf, "code wins");
        assert_eq!(r.metrics.protocol, Protocol::HttpProtobuf, "code wins");
    }

    #[cfg(feature = "http")]
    #[test]
    fn signal_protocol_is_read_before_the_generic_one() {
        // A signal variable that is set is read instead of the generic one: a generic value
        // heapspan does not take is refused only for a signal that falls back on it.
        let r = ExportConfig::default().resolve_with(vars(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
            (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf"),
            (OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, "http/protobuf"),
        ]));
        assert_eq!(r.unwrap().traces.protocol, Protocol::HttpProtobuf);
        assert!(rejected(
            ExportConfig::default(),
            &[
                (OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
                (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf"),
            ]
        )
        .starts_with("invalid value \"http/json\" for OTEL_EXPORTER_OTLP_PROTOCOL"));
    }

    #[test]
    fn https_is_refused_with_the_way_to_tls() {
        let expected = "expected an http:// URL: heapspan's own exporters have no TLS. To \
                        export over https://, build OpenTelemetry providers with a TLS-capable \
                        exporter (opentelemetry-otlp with its `reqwest-rustls` or `tls-ring` \
                        feature) and pass them to heapspan with ExportConfig::tracer_provider \
                        and ExportConfig::meter_provider";
        assert_eq!(
            rejected(
                ExportConfig::default().endpoint("https://otel.example:4318"),
                &[]
            ),
            format!("invalid value \"https://otel.example:4318\" for endpoint: {expected}")
        );
        assert_eq!(
            rejected(
                ExportConfig::default(),
                &[(OTEL_EXPORTER_OTLP_ENDPOINT, "HTTPS://otel.example")]
            ),
            format!(
                "invalid value \"HTTPS://otel.example\" for OTEL_EXPORTER_OTLP_ENDPOINT: \
                 {expected}"
            )
        );
        assert!(rejected(
            ExportConfig::default(),
            &[(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "https://m/v1/metrics")]
        )
        .contains("for OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: expected an http:// URL"));
    }

    #[test]
    fn https_is_left_to_the_applications_own_providers() {
        let https = [(OTEL_EXPORTER_OTLP_ENDPOINT, "https://otel.example:4318")];
        let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let meter = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
        // Both signals through the application's providers (whose exporters read the same
        // variable, with TLS): heapspan does not send to it, so it does not refuse it.
        let r = ExportConfig::default()
            .tracer_provider(tracer.clone())
            .meter_provider(meter.clone())
            .resolve_with(vars(&https))
            .unwrap();
        assert!(r.enabled);
        // One signal still heapspan's: refused, naming the other provider as the way out.
        assert!(
            rejected(ExportConfig::default().meter_provider(meter), &https)
                .contains("ExportConfig::tracer_provider")
        );
        assert!(
            rejected(ExportConfig::default().tracer_provider(tracer), &https)
                .contains("for OTEL_EXPORTER_OTLP_ENDPOINT")
        );
    }

    #[test]
    fn bad_values_name_the_setting_and_what_is_accepted() {
        let c = ExportConfig::default;
        assert_eq!(
            rejected(c().endpoint("localhost:4318"), &[]),
            "invalid value \"localhost:4318\" for endpoint: expected an http:// URL with a \
             host, such as http://127.0.0.1:4318"
        );
        assert!(rejected(c(), &[(OTEL_EXPORTER_OTLP_ENDPOINT, "ftp://x")])
            .starts_with("invalid value \"ftp://x\" for OTEL_EXPORTER_OTLP_ENDPOINT: expected"));
        assert!(
            rejected(c(), &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://:80")])
                .contains("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        assert!(rejected(c(), &[(OTEL_EXPORTER_OTLP_PROTOCOL, "http/json")])
            .starts_with("invalid value \"http/json\" for OTEL_EXPORTER_OTLP_PROTOCOL: expected"));
        assert_eq!(
            rejected(c().window(Duration::ZERO), &[]),
            "invalid value \"0ns\" for window: expected at least 1 ms"
        );
        assert_eq!(
            rejected(c(), &[(HEAPSPAN_WINDOW_MS, "0")]),
            "invalid value \"0\" for HEAPSPAN_WINDOW_MS: expected a whole number of \
             milliseconds, at least 1"
        );
        assert!(rejected(c(), &[(OTEL_METRIC_EXPORT_INTERVAL, "10s")])
            .contains("OTEL_METRIC_EXPORT_INTERVAL"));
        assert!(rejected(c(), &[(OTEL_EXPORTER_OTLP_TIMEOUT, "-1")])
            .contains("OTEL_EXPORTER_OTLP_TIMEOUT"));
        assert!(
            rejected(c(), &[(OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, "soon")])
                .contains("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")
        );
        assert_eq!(
            rejected(c(), &[(OTEL_RESOURCE_ATTRIBUTES, "novalue")]),
            "invalid value \"novalue\" for OTEL_RESOURCE_ATTRIBUTES: expected comma-separated \
             key=value pairs (values percent-encoded)"
        );
        assert!(rejected(c(), &[(OTEL_EXPORTER_OTLP_HEADERS, "=x")])
            .contains("OTEL_EXPORTER_OTLP_HEADERS"));
        assert!(rejected(c().max_task_names(5000), &[]).contains("max_task_names"));
        assert!(rejected(c().max_handoff_cells(0), &[]).contains("max_handoff_cells"));
        assert!(rejected(c().header("bad:name", "x"), &[]).contains("for header:"));
    }

    #[test]
    fn a_bad_variable_that_code_overrides_is_not_read() {
        let r = ExportConfig::default()
            .window(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .endpoint("http://code:4318")
            .resolve_with(vars(&[
                (HEAPSPAN_WINDOW_MS, "soon"),
                (OTEL_EXPORTER_OTLP_TIMEOUT, "soon"),
                (OTEL_EXPORTER_OTLP_ENDPOINT, "nonsense"),
                (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "https://ignored"),
            ]))
            .unwrap();
        assert_eq!(r.window, Duration::from_secs(2));
        assert_eq!(r.traces.url.as_deref(), Some("http://code:4318/v1/traces"));
    }

    #[test]
    fn graph_settings() {
        let r = ExportConfig::default().resolve_with(vars(&[])).unwrap();
        assert_eq!(r.graph_top_edges, DEFAULT_GRAPH_TOP_EDGES);
        assert_eq!(r.graph_dot_dir, None);
        let r = ExportConfig::default()
            .resolve_with(vars(&[
                (HEAPSPAN_GRAPH_TOP_EDGES, "0"),
                (HEAPSPAN_GRAPH_DOT_DIR, "/tmp/heapspan-graphs"),
            ]))
            .unwrap();
        assert_eq!(r.graph_top_edges, 0);
        assert_eq!(r.graph_dot_dir, Some(PathBuf::from("/tmp/heapspan-graphs")));
        assert!(r.enabled, "a DOT directory turns export on");
        let r = ExportConfig::default()
            .graph_top_edges(MAX_GRAPH_TOP_EDGES)
            .graph_dot_dir("graphs")
            .resolve_with(vars(&[
                (HEAPSPAN_GRAPH_TOP_EDGES, "junk"),
                (HEAPSPAN_GRAPH_DOT_DIR, "elsewhere"),
            ]))
            .unwrap();
        assert_eq!(r.graph_top_edges, MAX_GRAPH_TOP_EDGES, "code wins");
        assert_eq!(r.graph_dot_dir, Some(PathBuf::from("graphs")));
        let r = ExportConfig::default()
            .resolve_with(vars(&[(HEAPSPAN_GRAPH_DOT_DIR, " ")]))
            .unwrap();
        assert_eq!(r.graph_dot_dir, None, "empty means unset");
    }

    #[test]
    fn bad_graph_settings_name_the_setting_and_what_is_accepted() {
        let c = ExportConfig::default;
        assert_eq!(
            rejected(c(), &[(HEAPSPAN_GRAPH_TOP_EDGES, "lots")]),
            "invalid value \"lots\" for HEAPSPAN_GRAPH_TOP_EDGES: expected a whole number from \
             0 to 10000"
        );
        assert_eq!(
            rejected(c(), &[(HEAPSPAN_GRAPH_TOP_EDGES, "10001")]),
            "invalid value \"10001\" for HEAPSPAN_GRAPH_TOP_EDGES: expected a whole number from \
             0 to 10000"
        );
        assert_eq!(
            rejected(c().graph_top_edges(20_000), &[]),
            "invalid value \"20000\" for graph_top_edges: expected a whole number from 0 to 10000"
        );
        let file = std::env::temp_dir().join(format!("heapspan-dot-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let shown = file.display().to_string();
        assert_eq!(
            rejected(c(), &[(HEAPSPAN_GRAPH_DOT_DIR, shown.as_str())]),
            format!(
                "invalid value {shown:?} for HEAPSPAN_GRAPH_DOT_DIR: expected a directory \
                 (created if missing), not a file"
            )
        );
        assert!(rejected(c().graph_dot_dir(&file), &[]).contains("for graph_dot_dir:"));
        assert!(rejected(c().graph_dot_dir(""), &[]).contains("for graph_dot_dir:"));
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn volume_settings() {
        let r = ExportConfig::default().resolve_with(vars(&[])).unwrap();
        assert_eq!(r.max_window_spans, DEFAULT_MAX_WINDOW_SPANS);
        assert_eq!(r.idle_holder_interval, DEFAULT_IDLE_HOLDER_INTERVAL);
        assert_eq!(r.max_residue_spans, DEFAULT_MAX_RESIDUE_SPANS);
        let r = ExportConfig::default()
            .max_window_spans(1)
            .idle_holder_interval(1)
            .max_residue_spans(0)
            .resolve_with(vars(&[]))
            .unwrap();
        assert_eq!(
            (
                r.max_window_spans,
                r.idle_holder_interval,
                r.max_residue_spans
            ),
            (1, 1, 0)
        );
        let c = ExportConfig::default;
        assert_eq!(
            rejected(c().max_window_spans(0), &[]),
            "invalid value \"0\" for max_window_spans: expected a whole number from 1 to 100000"
        );
        assert_eq!(
            rejected(c().max_window_spans(MAX_WINDOW_SPANS + 1), &[]),
            "invalid value \"100001\" for max_window_spans: expected a whole number from 1 to \
             100000"
        );
        assert_eq!(
            rejected(c().idle_holder_interval(0), &[]),
            "invalid value \"0\" for idle_holder_interval: expected at least 1 (windows; 1 sends \
             idle holders every window)"
        );
        assert_eq!(
            rejected(c().max_residue_spans(10_001), &[]),
            "invalid value \"10001\" for max_residue_spans: expected a whole number from 0 to \
             10000"
        );
    }

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:4318",
            "https://collector.example/otlp",
            "http://[::1]:4317",
            "http://localhost",
        ] {
            assert!(is_url(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1:4318",
            "http://",
            "http://h:99999",
            "http://a b",
            "grpc://h:1",
        ] {
            assert!(!is_url(bad), "{bad}");
        }
        assert!(is_https("https://x") && is_https(" HTTPS://x") && !is_https("http://x"));
    }
}
