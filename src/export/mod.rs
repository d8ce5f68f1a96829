//! Getting the tables out: OTLP metrics and spans, the embedded OTLP JSON file, the terminal
//! report.
//!
//! # What is exported
//!
//! Names, units and attributes are the constants of [`names`] (the telemetry contract).
//!
//! - **Metrics** every [`ExportConfig::metric_export_interval`] (default
//!   [`DEFAULT_METRIC_EXPORT_INTERVAL`]), cumulative: per task name and per span name,
//!   allocated, freed and live bytes and allocations; per task name the peak of its live bytes
//!   (all its tasks together; for `other`, the largest of the names it gathers); heapspan's own
//!   memory ([`names::TRACKER_MEMORY`]) and what it dropped
//!   ([`names::TRACKER_DROPPED`], per reason).
//! - **Cardinality**: at most [`ExportConfig::max_task_names`] task names and
//!   [`ExportConfig::max_span_names`] span names get their own series (default
//!   [`DEFAULT_MAX_NAMES`], below the SDK's limit of 2000 series per instrument). A name keeps
//!   its series once it has one; each collection offers the free slots to new names largest
//!   (by allocated bytes) first; the rest are added up under [`names::OTHER`]. Totals stay
//!   exact: counters and the live up-down counter only ever receive deltas, always under the
//!   series the name was given.
//! - **Window spans** ([`names::WINDOW_SPAN`]) every [`ExportConfig::window`] (default
//!   [`DEFAULT_WINDOW`]): one per task that allocated or freed during the window, and a final
//!   one when a task ends (ending at the task's end). `heapspan.memory.allocated`/`.freed` and
//!   `heapspan.allocations` are the window's deltas, `.live` the task's live bytes at the end of
//!   the window, `.peak` its peak so far. A task idle for a whole window gets a span only if it
//!   still holds memory (the 500 largest such tasks per window: a task sitting on a leak stays
//!   visible). A task
//!   that ends and is summarised by the aggregator (beyond `ended_task_retention`) between two
//!   windows gets no final span.
//! - The allocation-size histogram ([`names::ALLOCATION_SIZE`], explicit buckets 16 B to
//!   16 MiB, powers of 4, cumulative) with heapspan's other metrics. heapspan counts sizes in
//!   its per-thread tables and encodes this one metric itself (the SDK takes histogram data
//!   only one recording at a time); it is not exported through providers the application
//!   passes in.
//!
//! # Where it goes
//!
//! With an endpoint ([`ExportConfig::endpoint`] or `OTEL_EXPORTER_OTLP_ENDPOINT`): OTLP over
//! HTTP/protobuf (feature `http`, default) or gRPC (feature `grpc`). With no endpoint and a
//! file ([`ExportConfig::file`] or `HEAPSPAN_OTLP_FILE`): one OTLP JSON object per line (the
//! protobuf JSON mapping, as the collector's `otlpjsonfile` receiver reads it). The
//! application may pass its own meter and tracer providers instead
//! ([`ExportConfig::meter_provider`], [`ExportConfig::tracer_provider`]).
//!
//! # Never hurting the host
//!
//! Export runs on one thread, `heapspan-export`, whose allocations are charged to the
//! `heapspan` bucket, with no tracing subscriber and OpenTelemetry's suppression scope around
//! every exporter call. heapspan's own providers have no background threads (a manual metric
//! reader and a bounded span queue, both drained by that thread). A collector that is down,
//! slow or restarting costs the application nothing: a request waits at most
//! [`ExportConfig::timeout`] on heapspan's thread, and a failed request is retried 3 times
//! (backing off from 100 ms to 1.6 s, opentelemetry-otlp's recommended policy), so a short
//! restart loses nothing; span batches that still fail are dropped and counted
//! ([`names::DROP_REASON_EXPORT_FAILED`]); metrics are cumulative, so the next successful
//! export catches up; a warning goes to stderr at most once a minute. Dropping the guard
//! exports a last time and waits at most [`ExportConfig::shutdown_timeout`]. OTLP/HTTP uses
//! heapspan's own blocking `std::net` client (plain `http://`; for TLS pass your own
//! providers). gRPC (tonic) runs on a current-thread tokio runtime owned and driven by the
//! export thread.

pub mod config;
pub(crate) mod histogram;
#[cfg(feature = "http")]
pub(crate) mod http_client;
pub mod names;
pub(crate) mod pipeline;
pub mod report;
#[cfg(feature = "tokio-metrics")]
pub(crate) mod runtime;
pub(crate) mod sink;
#[cfg(feature = "tokio-metrics")]
pub(crate) mod task_polls;
#[cfg(feature = "tracing-opentelemetry")]
pub(crate) mod user_spans;

pub use config::{
    ExportConfig, Protocol, Resolved, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT,
    DEFAULT_MAX_NAMES, DEFAULT_METRIC_EXPORT_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_SPAN_QUEUE_CAPACITY, DEFAULT_TIMEOUT, DEFAULT_WINDOW,
};
