//! Getting the tables out: OTLP metrics and spans, the embedded OTLP JSON file, the terminal
//! report, the HTML view ([`html`]).
//!
//! # What is exported
//!
//! Names, units and attributes are the constants of [`names`] (the telemetry contract).
//!
//! - **Metrics** every [`ExportConfig::metric_export_interval`] (default
//!   [`DEFAULT_METRIC_EXPORT_INTERVAL`]), cumulative: per task name and per span name (per span
//!   group: [`names::SPAN_GROUP`] beside [`names::SPAN_NAME`] for spans with values of the
//!   group fields, such as `http.route`: see
//!   [`Builder::span_group_fields`](crate::Builder::span_group_fields)),
//!   allocated, freed and live bytes and allocations; per task name the peak of its live bytes
//!   (all its tasks together; for `other`, the largest of the names it gathers); heapspan's own
//!   memory ([`names::TRACKER_MEMORY`]) and what it dropped
//!   ([`names::TRACKER_DROPPED`], per reason); the hand-off matrix
//!   ([`names::TASK_MEMORY_HANDED_OFF`], [`names::TASK_HANDOFFS`]: bytes and frees of blocks
//!   one task name allocated and another task, or [`names::NO_TASK`], freed, per pair,
//!   [`names::TOKIO_TASK_NAME`] × [`names::FREE_TASK_NAME`]), at most
//!   [`ExportConfig::max_handoff_cells`] cells (default [`DEFAULT_MAX_HANDOFF_CELLS`]) with
//!   their own series, the rest added up under [`names::OTHER`] on both sides.
//! - **Cardinality**: at most [`ExportConfig::max_task_names`] task names and
//!   [`ExportConfig::max_span_names`] span names and groups get their own series (default
//!   [`DEFAULT_MAX_NAMES`], below the SDK's limit of 2000 series per instrument). A name keeps
//!   its series once it has one; each collection offers the free slots to new names largest
//!   (by allocated bytes) first; the rest are added up under [`names::OTHER`]. Totals stay
//!   exact: counters and the live up-down counter only ever receive deltas, always under the
//!   series the name was given.
//! - **Window spans** ([`names::WINDOW_SPAN`]) every [`ExportConfig::window`] (default
//!   [`DEFAULT_WINDOW`]): one per task that allocated or freed during the window, and a final
//!   one when a task ends (ending at the task's end). `heapspan.memory.allocated`/`.freed` and
//!   `heapspan.allocations` are the window's deltas, `.live` the task's live bytes at the end of
//!   the window, `.peak` its peak so far. A task that ends and is forgotten by the aggregator
//!   (beyond `ended_task_retention`) between two windows gets no final span.
//! - **Volume bounds.** At most [`ExportConfig::max_window_spans`] window spans a window
//!   (default [`DEFAULT_MAX_WINDOW_SPANS`]): the tasks due one that moved or hold the most
//!   bytes (allocated plus freed since their last window span, plus their live bytes). A
//!   running task left out keeps its window open: its next window span covers both windows,
//!   so a task's window spans still add up to its figures (and its rank grows until it gets
//!   one); an ended task left out gets no final window span. A task idle for a whole window
//!   that still holds memory gets a window span only every
//!   [`ExportConfig::idle_holder_interval`] windows (default
//!   [`DEFAULT_IDLE_HOLDER_INTERVAL`]: once a minute with the default window), with its
//!   unchanged figures: a task sitting on a leak stays visible without being re-sent every
//!   window. So a window exports at most `max_window_spans` window spans, plus their
//!   `heapspan.window.edges` children (with the graph), the window's findings, its root, and
//!   at most [`ExportConfig::max_residue_spans`] residue spans.
//! - **Trace layout: one trace per window.** Each window has a root span
//!   [`names::PROCESS_WINDOW_SPAN`] (from the window's start to its end) with the whole
//!   process's figures for the window ([`Snapshot::total`](crate::Snapshot::total): allocated,
//!   freed and allocations during it, live at its end, peak so far) and what the bounds held
//!   back: [`names::WINDOW_TASKS`] (its window spans), [`names::WINDOW_TASKS_OMITTED`] (tasks
//!   over the cap) and [`names::WINDOW_TASKS_IDLE`] (idle holders waiting for their turn). The
//!   window spans are its children; each links to its task's previous window span (while
//!   heapspan still knows it, the most recent 10 000 tasks), so a task's history is a chain of
//!   links from any of them. A finding span is a child of its task's window span in the window
//!   it was found in, else of that window's root.
//! - **The relation graph**, with the live index on
//!   ([`Builder::live_index`](crate::Builder::live_index)): every window heapspan takes the
//!   graph of the live heap ([`crate::graph::live`], with the
//!   [`Builder::capture`](crate::Builder::capture) settings) and puts each task's share of it
//!   on the task's window span (an ended task's on its final window span; tasks no longer in the
//!   tables, and allocations made outside any task, get none, but count in the gauge):
//!   - attributes [`names::GRAPH_NODES`] (the graph's nodes allocated by the task) and
//!     [`names::GRAPH_EDGES_ATTR`] (edges with an end allocated by it), 0 when it has none,
//!     and the graph's scan figures: [`names::GRAPH_SKIPPED_NODES`] (left out by the node
//!     cap), [`names::GRAPH_UNSCANNED_NODES`] (in the graph, contents unread),
//!     [`names::GRAPH_TRUNCATED_NODES`] and [`names::GRAPH_TRUNCATED_BYTES`] (nodes read only
//!     up to the per-node scan cap, and the bytes left unread),
//!     [`names::GRAPH_UNINDEXED`] (never indexed: an index table was full). A window span
//!     without them means no graph was taken that window;
//!   - [`names::EDGE_EVENT`] span events: the task's top
//!     [`ExportConfig::graph_top_edges`] edges by bytes (default [`DEFAULT_GRAPH_TOP_EDGES`];
//!     the order of [`Graph::top_edges_for_task`](crate::graph::Graph::top_edges_for_task)),
//!     never the whole graph, stamped with the capture time, with the edge's kind,
//!     confidence, capability, the allocation ids of both ends (opaque i64, never addresses),
//!     their sizes, whether it crosses tasks, its bytes, and the `target::name` of the span
//!     each end was allocated in when heapspan still holds that span (see [`names`]). heapspan's
//!     own tracer provider keeps 1024 events per span (the SDK drops events beyond its limit,
//!     128 by default, silently): up to 1000 events go on the window span, more are split into
//!     [`names::WINDOW_EDGES_SPAN`] child spans of 1000 each. With the application's tracer
//!     provider, whose limits heapspan cannot read, child spans take 128 each (the SDK's
//!     default: a provider configured below it drops the rest). A window carries at most
//!     50 000 edge events in all, the tasks with the heaviest top edges first;
//!   - the gauge [`names::GRAPH_EDGES`] (per [`names::EDGE_KIND`], every kind, zeros
//!     included: [`names::GRAPH_METRICS`]) holds the edge counts of the latest graph,
//!     [`names::GRAPH_NODES_METRIC`] its node count and [`names::GRAPH_SCAN_PAUSE`] how long
//!     its scan deferred frees;
//!   - with [`ExportConfig::graph_dot_dir`] (`HEAPSPAN_GRAPH_DOT_DIR`), each window's graph is
//!     also written as Graphviz DOT to `<dir>/heapspan-graph-<pid>-<unix-ms>.dot` for a human to
//!     look at (top 500 edges, no addresses; the newest 1000 files are kept). A file that
//!     cannot be written is counted ([`names::DROP_REASON_GRAPH_DOT_FAILED`]) and the first
//!     failure reported on stderr.
//!
//!   Taking the graph costs a scan of the live index on the export thread (see
//!   [`crate::graph::live`]); a panic in it turns graph export off for the rest of the run and
//!   leaves the rest of export running. The last window, when the guard is dropped, takes one
//!   too, unless the previous capture took more than a quarter of
//!   [`ExportConfig::shutdown_timeout`] (the guard waits that long for the last window; a scan
//!   in progress when the allocator returns to pass-through stays safe). Code locations on
//!   edge events are cut to 256 characters.
//! - **Residue** (feature `tracing-opentelemetry`): an application's span gets its memory
//!   figures when it closes (`heapspan.memory.*`), while what it returns (a response body being
//!   written) is still alive, so a 1000-byte leak per request hides under a few KB of
//!   response. So heapspan also reads what the span instance left behind later: of the
//!   application's spans that close holding memory during a window (those with a sampled
//!   OpenTelemetry context from tracing-opentelemetry's layer, version 0.34), a uniform sample
//!   of at most [`ExportConfig::max_residue_spans`] (default [`DEFAULT_MAX_RESIDUE_SPANS`]; 0
//!   turns it off) is read again at the end of the next window, one to two windows after each
//!   closed (heapspan keeps their records until then, past `closed_span_retention`). Each that
//!   still holds bytes gets a [`names::SPAN_RESIDUE_SPAN`] span: a child of the application's
//!   span in its own trace, from the close to the read, with [`names::MEMORY_RESIDUE`] (its
//!   bytes still live), [`names::ALLOCATIONS_RESIDUE`], its close-time
//!   [`names::MEMORY_LIVE`] and [`names::SPAN_NAME`], linked to the window's root. The root
//!   counts the sample ([`names::SPAN_RESIDUE_INSTANCES`] read, drawn from
//!   [`names::SPAN_RESIDUE_CANDIDATES`], [`names::SPAN_RESIDUE_BYTES`] left in all). The
//!   instances of the last window, closed less than a window before heapspan stops, are not
//!   read. In Tempo: `{ name = "heapspan.span.residue" && span.heapspan.memory.residue > 0 }`
//!   finds the requests that left memory behind.
//! - **Request size**: span batches are cut at 512 spans and at 3 MiB by an upper bound of
//!   their protobuf size, so that a request with its resource stays under 4 MiB, the default
//!   gRPC receive limit of collectors; a single span larger than that (a collector would refuse
//!   it) is dropped and counted as failed.
//! - The allocation-size histogram ([`names::ALLOCATION_SIZE`], explicit buckets 16 B to
//!   16 MiB, powers of 4, cumulative) with heapspan's other metrics. heapspan counts sizes in
//!   its per-thread tables and encodes this one metric itself (the SDK takes histogram data
//!   only one recording at a time); it is not exported through providers the application
//!   passes in.
//!
//! # Where it goes
//!
//! With an endpoint ([`ExportConfig::endpoint`] or `OTEL_EXPORTER_OTLP_ENDPOINT`, each signal's
//! own `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_*` first: see [`crate::env`]): OTLP over
//! HTTP/protobuf (feature `http`, default) or gRPC (feature `grpc`), plain `http://` only (an
//! `https://` endpoint is refused at start: heapspan's exporters have no TLS). With no endpoint and a
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
pub(crate) mod graph;
pub(crate) mod histogram;
pub mod html;
#[cfg(feature = "http")]
pub(crate) mod http_client;
pub mod names;
pub(crate) mod pipeline;
pub(crate) mod process_window;
pub mod report;
pub(crate) mod residue;
#[cfg(feature = "tokio-metrics")]
pub(crate) mod runtime;
pub(crate) mod sink;
#[cfg(feature = "tokio-metrics")]
pub(crate) mod task_polls;
#[cfg(feature = "tracing-opentelemetry")]
pub(crate) mod user_spans;

pub use config::{
    ExportConfig, Protocol, Resolved, SignalSettings, DEFAULT_GRAPH_TOP_EDGES,
    DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DEFAULT_MAX_HANDOFF_CELLS, DEFAULT_MAX_NAMES,
    DEFAULT_METRIC_EXPORT_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SPAN_QUEUE_CAPACITY,
    DEFAULT_TIMEOUT, DEFAULT_WINDOW, MAX_GRAPH_TOP_EDGES,
};
pub use config::{
    DEFAULT_IDLE_HOLDER_INTERVAL, DEFAULT_MAX_RESIDUE_SPANS, DEFAULT_MAX_WINDOW_SPANS,
    MAX_RESIDUE_SPANS, MAX_WINDOW_SPANS,
};
