//! The environment: every `HEAPSPAN_*` and `OTEL_*` variable heapspan reads, as a constant, and
//! its parser.
//!
//! heapspan reads these when it starts ([`Builder::start`], [`crate::init`]), for every setting
//! the code did not set: **values set in code win over the environment**, and the environment
//! wins over the `DEFAULT_*` constants. [`crate::builder()`], `Builder::default()` and
//! [`Builder::from_env`] all read it (`from_env` also checks it at once). A variable that is set
//! but empty counts as unset (the OpenTelemetry rule). A malformed value stops the start with
//! [`Error::InvalidConfig`] naming the variable and what it accepts, for example
//! `invalid value "soon" for HEAPSPAN_FOLD_INTERVAL_MS: expected a whole number of milliseconds
//! from 1 to 60000`; a variable that a value set in code overrides is not read at all.
//!
//! | variable | what it sets | default | accepted values |
//! |---|---|---|---|
//! | `HEAPSPAN_FOLD_INTERVAL_MS` | [`Builder::fold_interval`]: how often per-thread counters are folded into the tables | `10` | whole milliseconds, 1 to 60000 |
//! | `HEAPSPAN_MAX_THREADS` | [`Builder::max_threads`]: threads with their own counter table | `1024` | 1 to 65536 |
//! | `HEAPSPAN_LIVE_INDEX` | [`Builder::live_index`]: the live index behind the relation graph | `off` | `off`, `full`, `sampled` |
//! | `HEAPSPAN_SAMPLE_MEAN_BYTES` | with `HEAPSPAN_LIVE_INDEX=sampled`: mean bytes between samples | `524288` (512 KiB) | 1 to 1099511627776 |
//! | `HEAPSPAN_CAPTURE_SITES` | [`Builder::capture_sites`]: code location of every indexed allocation | `off` | `on`/`off`, `1`/`0`, `true`/`false` |
//! | `HEAPSPAN_ON_INVALID_FREE` | [`Builder::on_invalid_free`]: what an invalid free (a second free, a foreign pointer, a wrong layout) does after it is reported | `report` | `report`, `abort` |
//! | `HEAPSPAN_FINDINGS` | [`FindingsConfig::enabled`]: whether findings are judged | `on` | `on`/`off`, `1`/`0`, `true`/`false` |
//! | `HEAPSPAN_GROWTH_WINDOWS` | [`FindingsConfig::growth_windows`]: K, the windows of a growth test | `6` | 2 to 1000 |
//! | `HEAPSPAN_WINDOW_MS` | [`ExportConfig::window`]: the window of findings, window spans and graphs | `10000` | whole milliseconds, at least 1 |
//! | `HEAPSPAN_OTLP_FILE` | [`ExportConfig::file`]: OTLP JSON lines written here when no endpoint is set | none | a file path |
//! | `HEAPSPAN_GRAPH_TOP_EDGES` | [`ExportConfig::graph_top_edges`]: `heapspan.edge` events per task window | `100` | 0 to 10000 |
//! | `HEAPSPAN_GRAPH_DOT_DIR` | [`ExportConfig::graph_dot_dir`]: each window's graph written as DOT here | none | a directory (created if missing) |
//! | `HEAPSPAN_HTML_REPORT` | [`Builder::html_report`]: the HTML view written here when the guard stops | none (off) | a file path (its directory created if missing) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | [`ExportConfig::endpoint`]: base URL of the collector (`/v1/traces`, `/v1/metrics` appended for HTTP); turns export on | none | `http://host[:port][/path]` (no `https://`: see below) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full URL of the traces (used as given) | from `OTEL_EXPORTER_OTLP_ENDPOINT` | as `OTEL_EXPORTER_OTLP_ENDPOINT` |
//! | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | full URL of the metrics (used as given) | from `OTEL_EXPORTER_OTLP_ENDPOINT` | as `OTEL_EXPORTER_OTLP_ENDPOINT` |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | [`ExportConfig::protocol`] of both signals | `http/protobuf` (`grpc` when only the `grpc` feature is on) | `http/protobuf` (feature `http`), `grpc` (feature `grpc`) |
//! | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` | the protocol of the traces | `OTEL_EXPORTER_OTLP_PROTOCOL` | as `OTEL_EXPORTER_OTLP_PROTOCOL` |
//! | `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` | the protocol of the metrics | `OTEL_EXPORTER_OTLP_PROTOCOL` | as `OTEL_EXPORTER_OTLP_PROTOCOL` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` | request headers of both signals ([`ExportConfig::header`] wins per key) | none | `key=value` pairs separated by commas, values percent-encoded |
//! | `OTEL_EXPORTER_OTLP_TRACES_HEADERS` | the headers of the traces (instead of `OTEL_EXPORTER_OTLP_HEADERS`, not merged with it) | `OTEL_EXPORTER_OTLP_HEADERS` | as `OTEL_EXPORTER_OTLP_HEADERS` |
//! | `OTEL_EXPORTER_OTLP_METRICS_HEADERS` | the headers of the metrics (instead of `OTEL_EXPORTER_OTLP_HEADERS`, not merged with it) | `OTEL_EXPORTER_OTLP_HEADERS` | as `OTEL_EXPORTER_OTLP_HEADERS` |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` | [`ExportConfig::timeout`] of one export request, both signals | `10000` | whole milliseconds, at least 1 |
//! | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` | the timeout of a traces request | `OTEL_EXPORTER_OTLP_TIMEOUT` | as `OTEL_EXPORTER_OTLP_TIMEOUT` |
//! | `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT` | the timeout of a metrics request | `OTEL_EXPORTER_OTLP_TIMEOUT` | as `OTEL_EXPORTER_OTLP_TIMEOUT` |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | [`ExportConfig::metric_export_interval`] | `10000` | whole milliseconds, at least 1 |
//! | `OTEL_SERVICE_NAME` | [`ExportConfig::service_name`]: `service.name` of the resource | `unknown_service` | any text |
//! | `OTEL_RESOURCE_ATTRIBUTES` | resource attributes ([`ExportConfig::resource_attribute`] wins per key, `OTEL_SERVICE_NAME` over its `service.name`) | none | `key=value` pairs separated by commas, values percent-encoded |
//!
//! # The OTLP variables: which one wins
//!
//! Endpoint, protocol, headers and timeout are resolved per signal (traces, metrics) the way
//! opentelemetry-otlp 0.33 resolves them: the value set in code ([`ExportConfig`]), then the
//! signal's own `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_*` variable, then the generic
//! `OTEL_EXPORTER_OTLP_*` one, then the default. A signal-specific endpoint is the full URL; the
//! generic one (and [`ExportConfig::endpoint`]) is a base to which HTTP appends `/v1/traces` or
//! `/v1/metrics`. So `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` with
//! `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf` sends traces over gRPC and metrics over
//! HTTP.
//!
//! heapspan's exporters have no TLS: an `https://` endpoint for a signal heapspan exports itself
//! is refused at start. To export over TLS, build your own OpenTelemetry providers with a
//! TLS-capable exporter (for example opentelemetry-otlp with its `reqwest-rustls` or `tls-ring`
//! feature) and pass them with [`ExportConfig::tracer_provider`] and
//! [`ExportConfig::meter_provider`]; heapspan then records into them and does not use the
//! endpoint for those signals.
//!
//! heapspan reads no other `OTEL_*` variable: compression, certificates,
//! `OTEL_EXPORTER_OTLP_INSECURE` and the SDK's sampler and batch variables do not apply to its
//! exporters.
//!
//! [`Builder::start`]: crate::Builder::start
//! [`Builder::from_env`]: crate::Builder::from_env
//! [`Builder::fold_interval`]: crate::Builder::fold_interval
//! [`Builder::max_threads`]: crate::Builder::max_threads
//! [`Builder::live_index`]: crate::Builder::live_index
//! [`Builder::capture_sites`]: crate::Builder::capture_sites
//! [`Builder::on_invalid_free`]: crate::Builder::on_invalid_free
//! [`Builder::html_report`]: crate::Builder::html_report
//! [`FindingsConfig::enabled`]: crate::findings::FindingsConfig::enabled
//! [`FindingsConfig::growth_windows`]: crate::findings::FindingsConfig::growth_windows
//! [`ExportConfig`]: crate::export::ExportConfig
//! [`ExportConfig::window`]: crate::export::ExportConfig::window
//! [`ExportConfig::file`]: crate::export::ExportConfig::file
//! [`ExportConfig::graph_top_edges`]: crate::export::ExportConfig::graph_top_edges
//! [`ExportConfig::graph_dot_dir`]: crate::export::ExportConfig::graph_dot_dir
//! [`ExportConfig::endpoint`]: crate::export::ExportConfig::endpoint
//! [`ExportConfig::protocol`]: crate::export::ExportConfig::protocol
//! [`ExportConfig::header`]: crate::export::ExportConfig::header
//! [`ExportConfig::timeout`]: crate::export::ExportConfig::timeout
//! [`ExportConfig::metric_export_interval`]: crate::export::ExportConfig::metric_export_interval
//! [`ExportConfig::service_name`]: crate::export::ExportConfig::service_name
//! [`ExportConfig::resource_attribute`]: crate::export::ExportConfig::resource_attribute
//! [`ExportConfig::tracer_provider`]: crate::export::ExportConfig::tracer_provider
//! [`ExportConfig::meter_provider`]: crate::export::ExportConfig::meter_provider
//! [`Error::InvalidConfig`]: crate::Error::InvalidConfig
//!
//! Every parser here takes the lookup as an argument (`impl Fn(&str) -> Option<String>`, as
//! opentelemetry-otlp's do), so that tests inject one; heapspan itself passes the process
//! environment. [`ExportConfig::resolve_with`](crate::export::ExportConfig::resolve_with) is the
//! public door for the export settings:
//!
//! ```
//! use heapspan::env;
//! use heapspan::export::ExportConfig;
//!
//! let lookup = |name: &str| match name {
//!     env::OTEL_EXPORTER_OTLP_ENDPOINT => Some("http://collector:4318".to_owned()),
//!     env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT => Some("http://traces:4318/in".to_owned()),
//!     _ => None,
//! };
//! let resolved = ExportConfig::default().resolve_with(lookup).unwrap();
//! assert_eq!(resolved.traces_url().as_deref(), Some("http://traces:4318/in"));
//! assert_eq!(resolved.metrics_url().as_deref(), Some("http://collector:4318/v1/metrics"));
//!
//! let bad = |name: &str| (name == env::HEAPSPAN_WINDOW_MS).then(|| "soon".to_owned());
//! let err = ExportConfig::default().resolve_with(bad).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "invalid value \"soon\" for HEAPSPAN_WINDOW_MS: expected a whole number of milliseconds, \
//!      at least 1"
//! );
//! ```

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::export::config::{protocol_supported, Protocol, PROTOCOL_EXPECTED};
use crate::graph::live::IndexMode;
use crate::DEFAULT_SAMPLE_MEAN_BYTES;

/// [`Builder::fold_interval`](crate::Builder::fold_interval), in milliseconds.
pub const HEAPSPAN_FOLD_INTERVAL_MS: &str = "HEAPSPAN_FOLD_INTERVAL_MS";
/// [`Builder::max_threads`](crate::Builder::max_threads).
pub const HEAPSPAN_MAX_THREADS: &str = "HEAPSPAN_MAX_THREADS";
/// [`Builder::live_index`](crate::Builder::live_index): `off`, `full` or `sampled`.
pub const HEAPSPAN_LIVE_INDEX: &str = "HEAPSPAN_LIVE_INDEX";
/// The mean gap of `HEAPSPAN_LIVE_INDEX=sampled`, in bytes.
pub const HEAPSPAN_SAMPLE_MEAN_BYTES: &str = "HEAPSPAN_SAMPLE_MEAN_BYTES";
/// [`Builder::capture_sites`](crate::Builder::capture_sites).
pub const HEAPSPAN_CAPTURE_SITES: &str = "HEAPSPAN_CAPTURE_SITES";
/// [`Builder::on_invalid_free`](crate::Builder::on_invalid_free): `report` or `abort`.
pub const HEAPSPAN_ON_INVALID_FREE: &str = "HEAPSPAN_ON_INVALID_FREE";
/// [`FindingsConfig::enabled`](crate::findings::FindingsConfig::enabled).
pub const HEAPSPAN_FINDINGS: &str = "HEAPSPAN_FINDINGS";
/// [`FindingsConfig::growth_windows`](crate::findings::FindingsConfig::growth_windows).
pub const HEAPSPAN_GROWTH_WINDOWS: &str = "HEAPSPAN_GROWTH_WINDOWS";
/// [`ExportConfig::window`](crate::export::ExportConfig::window), in milliseconds.
pub const HEAPSPAN_WINDOW_MS: &str = "HEAPSPAN_WINDOW_MS";
/// [`ExportConfig::file`](crate::export::ExportConfig::file).
pub const HEAPSPAN_OTLP_FILE: &str = "HEAPSPAN_OTLP_FILE";
/// [`ExportConfig::graph_top_edges`](crate::export::ExportConfig::graph_top_edges).
pub const HEAPSPAN_GRAPH_TOP_EDGES: &str = "HEAPSPAN_GRAPH_TOP_EDGES";
/// [`ExportConfig::graph_dot_dir`](crate::export::ExportConfig::graph_dot_dir).
pub const HEAPSPAN_GRAPH_DOT_DIR: &str = "HEAPSPAN_GRAPH_DOT_DIR";
/// [`Builder::html_report`](crate::Builder::html_report).
pub const HEAPSPAN_HTML_REPORT: &str = "HEAPSPAN_HTML_REPORT";
/// The collector's base URL, both signals.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The full URL of the traces.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The full URL of the metrics.
pub const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// The protocol, both signals.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The protocol of the traces.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// The protocol of the metrics.
pub const OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// Request headers, both signals.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Request headers of the traces.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// Request headers of the metrics.
pub const OTEL_EXPORTER_OTLP_METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
/// Request timeout in milliseconds, both signals.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Request timeout of the traces, in milliseconds.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// Request timeout of the metrics, in milliseconds.
pub const OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
/// [`ExportConfig::metric_export_interval`](crate::export::ExportConfig::metric_export_interval),
/// in milliseconds.
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// `service.name` of the resource.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Resource attributes.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Every variable heapspan reads, in the order of the module's table.
pub const ALL: &[&str] = &[
    HEAPSPAN_FOLD_INTERVAL_MS,
    HEAPSPAN_MAX_THREADS,
    HEAPSPAN_LIVE_INDEX,
    HEAPSPAN_SAMPLE_MEAN_BYTES,
    HEAPSPAN_CAPTURE_SITES,
    HEAPSPAN_ON_INVALID_FREE,
    HEAPSPAN_FINDINGS,
    HEAPSPAN_GROWTH_WINDOWS,
    HEAPSPAN_WINDOW_MS,
    HEAPSPAN_OTLP_FILE,
    HEAPSPAN_GRAPH_TOP_EDGES,
    HEAPSPAN_GRAPH_DOT_DIR,
    HEAPSPAN_HTML_REPORT,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
];

/// The process environment, as heapspan reads it: a value that is not UTF-8 is passed on with
/// its bad bytes replaced, so that its parser rejects it with the variable's name (rather than
/// heapspan taking it for unset).
pub(crate) fn process(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => Some(v.to_string_lossy().into_owned()),
    }
}

/// The value of `name`, `None` when unset or empty (the OpenTelemetry specification: "an
/// empty value of an environment variable [is interpreted] the same way as when the variable
/// is unset").
fn get(lookup: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

fn bad(setting: &'static str, value: String, expected: &'static str) -> Error {
    Error::InvalidConfig {
        setting,
        value,
        expected,
    }
}

/// A whole number in `range`, or the error naming `name` and `expected`.
fn number(
    lookup: impl Fn(&str) -> Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<u64>,
    expected: &'static str,
) -> Result<Option<u64>> {
    let Some(v) = get(lookup, name) else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(bad(name, v, expected)),
    }
}

const MS_AT_LEAST_1: &str = "a whole number of milliseconds, at least 1";

/// Milliseconds, at least 1.
fn millis(lookup: impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<Duration>> {
    Ok(number(lookup, name, 1..=u64::MAX, MS_AT_LEAST_1)?.map(Duration::from_millis))
}

const BOOL_EXPECTED: &str = "on or off (or 1/0, true/false)";

fn boolean(lookup: impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<bool>> {
    let Some(v) = get(lookup, name) else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => Ok(Some(true)),
        "off" | "0" | "false" => Ok(Some(false)),
        _ => Err(bad(name, v, BOOL_EXPECTED)),
    }
}

fn path(lookup: impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<PathBuf>> {
    let Some(v) = get(lookup, name) else {
        return Ok(None);
    };
    if v.contains(char::REPLACEMENT_CHARACTER) {
        return Err(bad(name, v, "a path in UTF-8"));
    }
    Ok(Some(PathBuf::from(v.trim())))
}

// ---------------------------------------------------------------------------------------------
// heapspan's own variables.

/// `HEAPSPAN_FOLD_INTERVAL_MS`.
pub(crate) fn fold_interval(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Duration>> {
    Ok(number(
        lookup,
        HEAPSPAN_FOLD_INTERVAL_MS,
        1..=60_000,
        "a whole number of milliseconds from 1 to 60000",
    )?
    .map(Duration::from_millis))
}

/// `HEAPSPAN_MAX_THREADS`.
pub(crate) fn max_threads(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    Ok(number(
        lookup,
        HEAPSPAN_MAX_THREADS,
        1..=65_536,
        "a whole number from 1 to 65536",
    )?
    .map(|n| n as usize))
}

/// `HEAPSPAN_LIVE_INDEX`; `sampled` comes with [`DEFAULT_SAMPLE_MEAN_BYTES`] (see
/// [`sample_mean_bytes`]).
pub(crate) fn live_index(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<IndexMode>> {
    let Some(v) = get(lookup, HEAPSPAN_LIVE_INDEX) else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(Some(IndexMode::Off)),
        "full" => Ok(Some(IndexMode::Full)),
        "sampled" => Ok(Some(IndexMode::Sampled {
            mean_bytes: DEFAULT_SAMPLE_MEAN_BYTES,
        })),
        _ => Err(bad(HEAPSPAN_LIVE_INDEX, v, "off, full or sampled")),
    }
}

/// `HEAPSPAN_SAMPLE_MEAN_BYTES`.
pub(crate) fn sample_mean_bytes(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<u64>> {
    number(
        lookup,
        HEAPSPAN_SAMPLE_MEAN_BYTES,
        1..=(1 << 40),
        "a whole number of bytes from 1 to 1099511627776",
    )
}

/// `HEAPSPAN_CAPTURE_SITES`.
pub(crate) fn capture_sites(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<bool>> {
    boolean(lookup, HEAPSPAN_CAPTURE_SITES)
}

/// `HEAPSPAN_ON_INVALID_FREE`.
pub(crate) fn on_invalid_free(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::InvalidFreeAction>> {
    let Some(v) = get(lookup, HEAPSPAN_ON_INVALID_FREE) else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "report" => Ok(Some(crate::InvalidFreeAction::Report)),
        "abort" => Ok(Some(crate::InvalidFreeAction::Abort)),
        _ => Err(bad(HEAPSPAN_ON_INVALID_FREE, v, "report or abort")),
    }
}

/// `HEAPSPAN_FINDINGS`.
pub(crate) fn findings(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<bool>> {
    boolean(lookup, HEAPSPAN_FINDINGS)
}

/// `HEAPSPAN_GROWTH_WINDOWS`.
pub(crate) fn growth_windows(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    Ok(number(
        lookup,
        HEAPSPAN_GROWTH_WINDOWS,
        2..=1000,
        "an integer from 2 to 1000",
    )?
    .map(|n| n as usize))
}

/// `HEAPSPAN_WINDOW_MS`.
pub(crate) fn window(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Duration>> {
    millis(lookup, HEAPSPAN_WINDOW_MS)
}

/// `HEAPSPAN_OTLP_FILE`.
pub(crate) fn otlp_file(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<PathBuf>> {
    path(lookup, HEAPSPAN_OTLP_FILE)
}

/// The accepted values of `HEAPSPAN_GRAPH_TOP_EDGES` and of its builder method.
pub(crate) const TOP_EDGES_EXPECTED: &str = "a whole number from 0 to 10000";

/// `HEAPSPAN_GRAPH_TOP_EDGES`.
pub(crate) fn graph_top_edges(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    Ok(number(
        lookup,
        HEAPSPAN_GRAPH_TOP_EDGES,
        0..=crate::export::MAX_GRAPH_TOP_EDGES as u64,
        TOP_EDGES_EXPECTED,
    )?
    .map(|n| n as usize))
}

/// `HEAPSPAN_GRAPH_DOT_DIR` (whether it names a directory is checked with the builder's value,
/// by the export settings).
pub(crate) fn graph_dot_dir(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<PathBuf>> {
    path(lookup, HEAPSPAN_GRAPH_DOT_DIR)
}

/// `HEAPSPAN_HTML_REPORT` (whether it names a directory is checked by the builder).
pub(crate) fn html_report(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<PathBuf>> {
    path(lookup, HEAPSPAN_HTML_REPORT)
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry's variables.

/// An OTLP signal: its variables come before the generic ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// The path HTTP appends to a base endpoint.
    pub(crate) fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Metrics => "v1/metrics",
        }
    }

    fn endpoint_var(self) -> &'static str {
        match self {
            Signal::Traces => OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            Signal::Metrics => OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        }
    }

    fn protocol_var(self) -> &'static str {
        match self {
            Signal::Traces => OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            Signal::Metrics => OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
        }
    }

    fn headers_var(self) -> &'static str {
        match self {
            Signal::Traces => OTEL_EXPORTER_OTLP_TRACES_HEADERS,
            Signal::Metrics => OTEL_EXPORTER_OTLP_METRICS_HEADERS,
        }
    }

    fn timeout_var(self) -> &'static str {
        match self {
            Signal::Traces => OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
            Signal::Metrics => OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
        }
    }
}

/// The accepted form of an endpoint.
pub(crate) const URL_EXPECTED: &str = "an http:// URL with a host, such as http://127.0.0.1:4318";

/// An endpoint and the variable it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FromVar {
    pub(crate) value: String,
    pub(crate) var: &'static str,
}

fn url(lookup: impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<FromVar>> {
    let Some(v) = get(lookup, name) else {
        return Ok(None);
    };
    if crate::export::config::is_url(&v) {
        Ok(Some(FromVar {
            value: v.trim().to_owned(),
            var: name,
        }))
    } else {
        Err(bad(name, v, URL_EXPECTED))
    }
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: a base URL.
pub(crate) fn otlp_endpoint(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<FromVar>> {
    url(lookup, OTEL_EXPORTER_OTLP_ENDPOINT)
}

/// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`: the signal's full URL (the generic base is
/// [`otlp_endpoint`]: joining them depends on the signal's protocol).
pub(crate) fn otlp_signal_endpoint(
    lookup: impl Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<Option<FromVar>> {
    url(lookup, signal.endpoint_var())
}

fn protocol_var(
    lookup: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Protocol>> {
    let Some(v) = get(lookup, name) else {
        return Ok(None);
    };
    let p = match v.trim() {
        "http/protobuf" => Protocol::HttpProtobuf,
        "grpc" => Protocol::Grpc,
        _ => return Err(bad(name, v, PROTOCOL_EXPECTED)),
    };
    if protocol_supported(p) {
        Ok(Some(p))
    } else {
        Err(bad(name, v, PROTOCOL_EXPECTED))
    }
}

/// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`
/// (opentelemetry-otlp 0.33's `exporter::resolve_protocol`: the signal's variable, then the
/// generic one).
pub(crate) fn otlp_protocol(
    lookup: impl Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<Option<Protocol>> {
    match protocol_var(&lookup, signal.protocol_var())? {
        Some(p) => Ok(Some(p)),
        None => protocol_var(&lookup, OTEL_EXPORTER_OTLP_PROTOCOL),
    }
}

const PAIRS_EXPECTED: &str = "comma-separated key=value pairs (values percent-encoded)";

fn pairs_var(
    lookup: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Vec<(String, String)>>> {
    let Some(v) = get(lookup, name) else {
        return Ok(None);
    };
    match parse_pairs(&v) {
        Some(p) => Ok(Some(p)),
        None => Err(bad(name, v, PAIRS_EXPECTED)),
    }
}

/// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`: the
/// signal's variable replaces the generic one, they are not merged (opentelemetry-otlp 0.33's
/// HTTP and gRPC builders: `env::var(signal_headers_var).or_else(|_|
/// env::var(OTEL_EXPORTER_OTLP_HEADERS))`).
pub(crate) fn otlp_headers(
    lookup: impl Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<Option<Vec<(String, String)>>> {
    match pairs_var(&lookup, signal.headers_var())? {
        Some(h) => Ok(Some(h)),
        None => pairs_var(&lookup, OTEL_EXPORTER_OTLP_HEADERS),
    }
}

/// `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
/// (opentelemetry-otlp 0.33's `exporter::resolve_timeout`; it skips a value it cannot parse,
/// heapspan refuses it).
pub(crate) fn otlp_timeout(
    lookup: impl Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<Option<Duration>> {
    match millis(&lookup, signal.timeout_var())? {
        Some(t) => Ok(Some(t)),
        None => millis(&lookup, OTEL_EXPORTER_OTLP_TIMEOUT),
    }
}

/// `OTEL_METRIC_EXPORT_INTERVAL`.
pub(crate) fn metric_export_interval(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Duration>> {
    millis(lookup, OTEL_METRIC_EXPORT_INTERVAL)
}

/// `OTEL_SERVICE_NAME`.
pub(crate) fn service_name(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    get(lookup, OTEL_SERVICE_NAME).map(|v| v.trim().to_owned())
}

/// `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) fn resource_attributes(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Vec<(String, String)>>> {
    pairs_var(lookup, OTEL_RESOURCE_ATTRIBUTES)
}

/// `k1=v1,k2=v2` with percent-decoded values (W3C baggage octets, as the OTel spec says).
fn parse_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let k = k.trim();
        if k.is_empty() {
            return None;
        }
        out.push((k.to_owned(), percent_decode(v.trim())?));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[track_caller]
    fn message<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(e @ Error::InvalidConfig { .. }) => e.to_string(),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    /// The names in this file's module-docs table, in order.
    fn table() -> Vec<String> {
        include_str!("env.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// `(identifier, value)` of every `pub const NAME: &str = "VALUE";` in this file.
    fn constants() -> Vec<(String, String)> {
        let src = include_str!("env.rs");
        let mut out = Vec::new();
        for l in src.lines() {
            let Some(rest) = l.strip_prefix("pub const ") else {
                continue;
            };
            let Some((ident, value)) = rest.split_once(": &str = \"") else {
                continue;
            };
            out.push((ident.to_owned(), value.trim_end_matches("\";").to_owned()));
        }
        out
    }

    #[test]
    fn the_table_lists_exactly_the_constants() {
        let table = table();
        assert_eq!(table.len(), 28, "{table:?}");
        assert_eq!(
            table.iter().collect::<BTreeSet<_>>().len(),
            table.len(),
            "a variable is in the table twice: {table:?}"
        );
        let consts = constants();
        for (ident, value) in &consts {
            assert_eq!(ident, value, "a constant's value is its name");
        }
        let names: Vec<String> = consts.into_iter().map(|(i, _)| i).collect();
        assert_eq!(
            table, names,
            "the table and the constants, in the same order"
        );
        assert_eq!(
            table,
            ALL.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "ALL is the table"
        );
        assert!(table
            .iter()
            .all(|n| n.starts_with("HEAPSPAN_") || n.starts_with("OTEL_")));
        assert!(table.iter().any(|n| n == HEAPSPAN_WINDOW_MS));
    }

    /// Every `"HEAPSPAN_…"` or `"OTEL_…"` string literal in the code of `src/` is in this file:
    /// one piece of code per variable (elsewhere the constants are used). Tests (a file's
    /// `#[cfg(test)]` module at its end, `tests.rs` files) may spell names in the messages they
    /// expect.
    #[test]
    fn no_variable_name_is_spelled_outside_this_module() {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        assert!(files.len() > 20, "found the sources: {files:?}");
        let mut offenders = Vec::new();
        for f in files {
            if f.ends_with("src/env.rs") || f.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.split("\n#[cfg(test)]").next().unwrap_or("");
            for (i, l) in code.lines().enumerate() {
                if l.contains("\"HEAPSPAN_") || l.contains("\"OTEL_") {
                    offenders.push(format!("{}:{}: {}", f.display(), i + 1, l.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "use heapspan::env's constants: {offenders:#?}"
        );
    }

    #[test]
    fn unset_and_empty_are_the_same() {
        for v in [vars(&[]), vars(&[(HEAPSPAN_FOLD_INTERVAL_MS, "")])] {
            assert_eq!(fold_interval(&v).unwrap(), None);
        }
        assert_eq!(
            fold_interval(vars(&[(HEAPSPAN_FOLD_INTERVAL_MS, "  ")])).unwrap(),
            None
        );
        assert_eq!(otlp_file(vars(&[(HEAPSPAN_OTLP_FILE, " ")])).unwrap(), None);
    }

    #[test]
    fn heapspan_variables_parse() {
        let v = vars(&[
            (HEAPSPAN_FOLD_INTERVAL_MS, " 25 "),
            (HEAPSPAN_MAX_THREADS, "16"),
            (HEAPSPAN_LIVE_INDEX, "Sampled"),
            (HEAPSPAN_SAMPLE_MEAN_BYTES, "4096"),
            (HEAPSPAN_CAPTURE_SITES, "1"),
            (HEAPSPAN_FINDINGS, "off"),
            (HEAPSPAN_GROWTH_WINDOWS, "4"),
            (HEAPSPAN_WINDOW_MS, "2000"),
            (HEAPSPAN_OTLP_FILE, "/tmp/run.jsonl"),
            (HEAPSPAN_GRAPH_TOP_EDGES, "0"),
            (HEAPSPAN_GRAPH_DOT_DIR, "graphs"),
            (HEAPSPAN_HTML_REPORT, " out/report.html "),
        ]);
        assert_eq!(fold_interval(&v).unwrap(), Some(Duration::from_millis(25)));
        assert_eq!(max_threads(&v).unwrap(), Some(16));
        assert_eq!(
            live_index(&v).unwrap(),
            Some(IndexMode::Sampled {
                mean_bytes: DEFAULT_SAMPLE_MEAN_BYTES
            })
        );
        assert_eq!(sample_mean_bytes(&v).unwrap(), Some(4096));
        assert_eq!(capture_sites(&v).unwrap(), Some(true));
        assert_eq!(findings(&v).unwrap(), Some(false));
        assert_eq!(growth_windows(&v).unwrap(), Some(4));
        assert_eq!(window(&v).unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(
            otlp_file(&v).unwrap(),
            Some(PathBuf::from("/tmp/run.jsonl"))
        );
        assert_eq!(graph_top_edges(&v).unwrap(), Some(0));
        assert_eq!(graph_dot_dir(&v).unwrap(), Some(PathBuf::from("graphs")));
        assert_eq!(
            html_report(&v).unwrap(),
            Some(PathBuf::from("out/report.html"))
        );
        for (s, on) in [
            ("on", true),
            (" TRUE ", true),
            ("1", true),
            ("Off", false),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(findings(vars(&[(HEAPSPAN_FINDINGS, s)])).unwrap(), Some(on));
        }
        assert_eq!(
            live_index(vars(&[(HEAPSPAN_LIVE_INDEX, "full")])).unwrap(),
            Some(IndexMode::Full)
        );
        assert_eq!(
            live_index(vars(&[(HEAPSPAN_LIVE_INDEX, "OFF")])).unwrap(),
            Some(IndexMode::Off)
        );
    }

    #[test]
    fn bad_heapspan_values_name_the_variable_and_what_it_accepts() {
        assert_eq!(
            message(fold_interval(vars(&[(HEAPSPAN_FOLD_INTERVAL_MS, "soon")]))),
            "invalid value \"soon\" for HEAPSPAN_FOLD_INTERVAL_MS: expected a whole number of \
             milliseconds from 1 to 60000"
        );
        assert!(
            message(fold_interval(vars(&[(HEAPSPAN_FOLD_INTERVAL_MS, "0")])))
                .contains("HEAPSPAN_FOLD_INTERVAL_MS")
        );
        assert!(
            message(fold_interval(vars(&[(HEAPSPAN_FOLD_INTERVAL_MS, "60001")])))
                .contains("from 1 to 60000")
        );
        assert_eq!(
            message(max_threads(vars(&[(HEAPSPAN_MAX_THREADS, "lots")]))),
            "invalid value \"lots\" for HEAPSPAN_MAX_THREADS: expected a whole number from 1 to \
             65536"
        );
        assert_eq!(
            message(live_index(vars(&[(HEAPSPAN_LIVE_INDEX, "yes")]))),
            "invalid value \"yes\" for HEAPSPAN_LIVE_INDEX: expected off, full or sampled"
        );
        assert!(message(sample_mean_bytes(vars(&[(
            HEAPSPAN_SAMPLE_MEAN_BYTES,
            "0"
        )])))
        .contains("HEAPSPAN_SAMPLE_MEAN_BYTES: expected a whole number of bytes"));
        assert_eq!(
            message(capture_sites(vars(&[(HEAPSPAN_CAPTURE_SITES, "2")]))),
            "invalid value \"2\" for HEAPSPAN_CAPTURE_SITES: expected on or off (or 1/0, \
             true/false)"
        );
        assert_eq!(
            message(findings(vars(&[(HEAPSPAN_FINDINGS, "maybe")]))),
            "invalid value \"maybe\" for HEAPSPAN_FINDINGS: expected on or off (or 1/0, \
             true/false)"
        );
        assert_eq!(
            message(growth_windows(vars(&[(HEAPSPAN_GROWTH_WINDOWS, "six")]))),
            "invalid value \"six\" for HEAPSPAN_GROWTH_WINDOWS: expected an integer from 2 to \
             1000"
        );
        assert_eq!(
            message(window(vars(&[(HEAPSPAN_WINDOW_MS, "0")]))),
            "invalid value \"0\" for HEAPSPAN_WINDOW_MS: expected a whole number of \
             milliseconds, at least 1"
        );
        assert_eq!(
            message(graph_top_edges(vars(&[(
                HEAPSPAN_GRAPH_TOP_EDGES,
                "10001"
            )]))),
            "invalid value \"10001\" for HEAPSPAN_GRAPH_TOP_EDGES: expected a whole number from \
             0 to 10000"
        );
        assert!(message(otlp_file(vars(&[(
            HEAPSPAN_OTLP_FILE,
            "run\u{FFFD}.jsonl"
        )])))
        .contains("HEAPSPAN_OTLP_FILE: expected a path in UTF-8"));
    }

    #[test]
    fn signal_variables_win_over_generic_ones() {
        let both = vars(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf"),
            (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "grpc"),
            (OTEL_EXPORTER_OTLP_HEADERS, "a=generic,b=2"),
            (OTEL_EXPORTER_OTLP_METRICS_HEADERS, "a=metrics"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
            (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "2000"),
        ]);
        if cfg!(feature = "grpc") {
            assert_eq!(
                otlp_protocol(&both, Signal::Traces).unwrap(),
                Some(Protocol::Grpc)
            );
        }
        if cfg!(feature = "http") {
            assert_eq!(
                otlp_protocol(&both, Signal::Metrics).unwrap(),
                Some(Protocol::HttpProtobuf)
            );
        }
        // Headers: the signal's replace the generic ones (no merge).
        assert_eq!(
            otlp_headers(&both, Signal::Metrics).unwrap(),
            Some(vec![("a".into(), "metrics".into())])
        );
        assert_eq!(
            otlp_headers(&both, Signal::Traces).unwrap(),
            Some(vec![
                ("a".into(), "generic".into()),
                ("b".into(), "2".into())
            ])
        );
        assert_eq!(
            otlp_timeout(&both, Signal::Traces).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            otlp_timeout(&both, Signal::Metrics).unwrap(),
            Some(Duration::from_secs(1))
        );
        let endpoints = vars(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://base:4318"),
            (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, " http://m:1/in "),
        ]);
        assert_eq!(
            otlp_signal_endpoint(&endpoints, Signal::Metrics).unwrap(),
            Some(FromVar {
                value: "http://m:1/in".into(),
                var: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
            })
        );
        assert_eq!(
            otlp_signal_endpoint(&endpoints, Signal::Traces).unwrap(),
            None
        );
        assert_eq!(
            otlp_endpoint(&endpoints).unwrap().map(|e| e.value),
            Some("http://base:4318".into())
        );
    }

    #[test]
    fn bad_otel_values_name_the_variable_and_what_it_accepts() {
        assert_eq!(
            message(otlp_endpoint(vars(&[(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "ftp://x"
            )]))),
            "invalid value \"ftp://x\" for OTEL_EXPORTER_OTLP_ENDPOINT: expected an http:// URL \
             with a host, such as http://127.0.0.1:4318"
        );
        assert!(message(otlp_signal_endpoint(
            vars(&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://:80")]),
            Signal::Traces
        ))
        .contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        assert!(message(otlp_protocol(
            vars(&[(OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, "http/json")]),
            Signal::Metrics
        ))
        .starts_with(
            "invalid value \"http/json\" for OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: expected"
        ));
        assert!(message(otlp_timeout(
            vars(&[(OTEL_EXPORTER_OTLP_TIMEOUT, "-1")]),
            Signal::Traces
        ))
        .contains("OTEL_EXPORTER_OTLP_TIMEOUT"));
        assert!(message(metric_export_interval(vars(&[(
            OTEL_METRIC_EXPORT_INTERVAL,
            "10s"
        )])))
        .contains("OTEL_METRIC_EXPORT_INTERVAL"));
        assert_eq!(
            message(resource_attributes(vars(&[(
                OTEL_RESOURCE_ATTRIBUTES,
                "novalue"
            )]))),
            "invalid value \"novalue\" for OTEL_RESOURCE_ATTRIBUTES: expected comma-separated \
             key=value pairs (values percent-encoded)"
        );
        assert!(message(resource_attributes(vars(&[(
            OTEL_RESOURCE_ATTRIBUTES,
            "a=%zz"
        )])))
        .contains("OTEL_RESOURCE_ATTRIBUTES"));
        assert!(message(otlp_headers(
            vars(&[(OTEL_EXPORTER_OTLP_TRACES_HEADERS, "=x")]),
            Signal::Traces
        ))
        .contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS"));
    }

    #[test]
    fn pairs_are_percent_decoded() {
        assert_eq!(
            resource_attributes(vars(&[(OTEL_RESOURCE_ATTRIBUTES, "a=1, b=two%20words,,")]))
                .unwrap(),
            Some(vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words".into())
            ])
        );
        assert_eq!(
            service_name(vars(&[(OTEL_SERVICE_NAME, " checkout ")])),
            Some("checkout".into())
        );
    }
}
