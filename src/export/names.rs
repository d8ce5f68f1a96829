//! Every name heapspan puts on the wire: metric names with their units, span names and attribute
//! keys (the telemetry contract). Dashboards, alerts, the tests and the docs use these constants;
//! a name changes only with a changelog entry.
//!
//! Rules (OpenTelemetry's): lowercase dot-separated namespaces, snake_case inside a segment,
//! units in the `unit` field (UCUM), never in the name, no `_total` suffix. Integer attributes
//! are `i64`.
//!
//! ```
//! use heapspan::export::names;
//! assert_eq!(names::TASK_MEMORY_LIVE, "heapspan.task.memory.live");
//! assert_eq!(names::UNIT_BYTES, "By");
//! assert!(names::METRICS.iter().all(|m| !m.name.ends_with("_total")));
//! ```

/// UCUM unit for bytes.
pub const UNIT_BYTES: &str = "By";
/// Unit of allocation counts.
pub const UNIT_ALLOCATIONS: &str = "{allocation}";
/// Unit of dropped events.
pub const UNIT_EVENTS: &str = "{event}";
/// Unit of graph edges.
pub const UNIT_EDGES: &str = "{edge}";
/// Unit of findings.
pub const UNIT_FINDINGS: &str = "{finding}";
/// Unit of seconds.
pub const UNIT_SECONDS: &str = "s";
/// Unit of tasks.
pub const UNIT_TASKS: &str = "{task}";
/// Unit of polls.
pub const UNIT_POLLS: &str = "{poll}";
/// Unit of graph nodes.
pub const UNIT_NODES: &str = "{node}";
/// Unit of runtime worker threads.
pub const UNIT_WORKERS: &str = "{worker}";
/// Unit of worker parks.
pub const UNIT_PARKS: &str = "{park}";
/// Unit of frees.
pub const UNIT_FREES: &str = "{free}";

// ---- Metrics per task name ----

/// Counter, [`UNIT_BYTES`], attribute [`TOKIO_TASK_NAME`]: bytes allocated by tasks of a name.
pub const TASK_MEMORY_ALLOCATED: &str = "heapspan.task.memory.allocated";
/// Counter, [`UNIT_BYTES`], attribute [`TOKIO_TASK_NAME`]: bytes of those tasks' allocations
/// freed (by whichever task freed them).
pub const TASK_MEMORY_FREED: &str = "heapspan.task.memory.freed";
/// UpDownCounter, [`UNIT_BYTES`], attribute [`TOKIO_TASK_NAME`]: allocated minus freed.
pub const TASK_MEMORY_LIVE: &str = "heapspan.task.memory.live";
/// Gauge, [`UNIT_BYTES`], attribute [`TOKIO_TASK_NAME`]: the largest peak of a single task of
/// that name (observed at folds: a lower bound of the true peak).
pub const TASK_MEMORY_PEAK: &str = "heapspan.task.memory.peak";
/// Counter, [`UNIT_ALLOCATIONS`], attribute [`TOKIO_TASK_NAME`]: number of allocations.
pub const TASK_ALLOCATIONS: &str = "heapspan.task.allocations";

// ---- The hand-off matrix (`alloc.cross_task_free`) ----
//
// One series per cell: the allocating task name ([`TOKIO_TASK_NAME`]) and the freeing one
// ([`FREE_TASK_NAME`]), [`NO_TASK`] on either side for code outside any task; frees by the
// allocating task itself are in no cell. Cells beyond
// [`ExportConfig::max_handoff_cells`](crate::export::ExportConfig::max_handoff_cells) are added
// up under [`OTHER`] on both sides (so are pairs a thread's bounded table had no cell left for:
// [`DROP_REASON_HANDOFF_OVERFLOW`]). See [`HandOffs`](crate::HandOffs).

/// Counter, [`UNIT_BYTES`], attributes [`TOKIO_TASK_NAME`] (allocating) and
/// [`FREE_TASK_NAME`] (freeing): bytes of blocks freed while a task other than the allocating
/// one (or no task) was current.
pub const TASK_MEMORY_HANDED_OFF: &str = "heapspan.task.memory.handed_off";
/// Counter, [`UNIT_FREES`], attributes [`TOKIO_TASK_NAME`], [`FREE_TASK_NAME`]: number of
/// those frees.
pub const TASK_HANDOFFS: &str = "heapspan.task.handoffs";

// ---- Metrics per span name (and group) ----
//
// One series per span group: [`SPAN_NAME`], and [`SPAN_GROUP`] for spans with values of the
// group fields (a span name without any has the one series it had before groups; `sum by
// (heapspan.span.name)` gives the name's figures). Each group counts against
// `ExportConfig::max_span_names`.

/// Counter, [`UNIT_BYTES`], attributes [`SPAN_NAME`] and [`SPAN_GROUP`] (when the spans have
/// group fields): bytes allocated inside spans of a name (and group).
pub const SPAN_MEMORY_ALLOCATED: &str = "heapspan.span.memory.allocated";
/// Counter, [`UNIT_BYTES`], attributes [`SPAN_NAME`], [`SPAN_GROUP`]: bytes of those
/// allocations freed.
pub const SPAN_MEMORY_FREED: &str = "heapspan.span.memory.freed";
/// UpDownCounter, [`UNIT_BYTES`], attributes [`SPAN_NAME`], [`SPAN_GROUP`]: allocated minus
/// freed.
pub const SPAN_MEMORY_LIVE: &str = "heapspan.span.memory.live";
/// Counter, [`UNIT_ALLOCATIONS`], attributes [`SPAN_NAME`], [`SPAN_GROUP`]: number of
/// allocations.
pub const SPAN_ALLOCATIONS: &str = "heapspan.span.allocations";

// ---- Other metrics ----

/// Histogram, [`UNIT_BYTES`], buckets [`ALLOCATION_SIZE_BUCKETS`], cumulative: sizes of
/// single allocations since start (built by heapspan, not the SDK: see
/// `src/export/histogram.rs`).
pub const ALLOCATION_SIZE: &str = "heapspan.allocation.size";
/// Explicit bucket bounds of [`ALLOCATION_SIZE`]: 16 B to 16 MiB, powers of 4.
pub const ALLOCATION_SIZE_BUCKETS: [f64; 11] = [
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];
/// Gauge, [`UNIT_EDGES`], attribute [`EDGE_KIND`]: edges of the live graph per kind, recorded
/// every window a graph is taken (only with the live index on: see [`GRAPH_METRICS`]).
pub const GRAPH_EDGES: &str = "heapspan.graph.edges";
/// Gauge, [`UNIT_NODES`], no attributes: nodes (live indexed allocations) of the latest
/// window's relation graph, every task together (only with the live index on: see
/// [`GRAPH_METRICS`]). The same name as the window span attribute [`GRAPH_NODES`], which holds
/// one task's share.
pub const GRAPH_NODES_METRIC: &str = "heapspan.graph.nodes";
/// Gauge, [`UNIT_SECONDS`], no attributes: how long the latest window's scan of the live index
/// deferred frees (its copy phase, [`ScanStats::pause`](crate::graph::live::ScanStats::pause)).
/// No application thread waits for it: a free of an indexed block during the copy returns at
/// once and its block goes back to the allocator when the copy ends, so this is how long such
/// memory stays held. Only with the live index on (see [`GRAPH_METRICS`]).
pub const GRAPH_SCAN_PAUSE: &str = "heapspan.graph.scan.pause";
/// Counter, [`UNIT_FINDINGS`], attributes [`FINDING_KIND`], [`FINDING_SEVERITY`]: findings reported (new ones, and again when one changes severity).
pub const FINDINGS: &str = "heapspan.findings";
/// Gauge, [`UNIT_BYTES`], no attributes: heapspan's own memory, resident
/// ([`Snapshot::tracker_bytes`](crate::Snapshot::tracker_bytes)): its heap blocks (the
/// snapshot's `heapspan` bucket) and its thread tables, queues and live index.
pub const TRACKER_MEMORY: &str = "heapspan.tracker.memory";
/// Counter, [`UNIT_EVENTS`], attribute [`DROP_REASON`]: what heapspan could not record or
/// export (bounded queues were full, an export failed).
pub const TRACKER_DROPPED: &str = "heapspan.tracker.dropped";

// ---- tokio (feature `tokio-metrics`) ----

/// Gauge, [`UNIT_TASKS`]: tasks alive in the runtime.
pub const TOKIO_RUNTIME_TASKS_ALIVE: &str = "tokio.runtime.tasks.alive";
/// Gauge, [`UNIT_WORKERS`]: worker threads of the runtime.
pub const TOKIO_RUNTIME_WORKERS: &str = "tokio.runtime.workers";
/// Counter, [`UNIT_SECONDS`]: time the workers spent busy, summed over workers.
pub const TOKIO_RUNTIME_WORKER_BUSY_DURATION: &str = "tokio.runtime.worker.busy.duration";
/// Counter, [`UNIT_POLLS`]: task polls by the workers, summed (only with
/// `--cfg tokio_unstable`).
pub const TOKIO_RUNTIME_WORKER_POLLS: &str = "tokio.runtime.worker.polls";
/// Counter, [`UNIT_PARKS`]: times the workers parked, summed over workers.
pub const TOKIO_RUNTIME_WORKER_PARKS: &str = "tokio.runtime.worker.parks";
/// Counter, [`UNIT_POLLS`], attribute [`TOKIO_TASK_NAME`]: polls of tasks wrapped by
/// heapspan ([`crate::spawn`], [`crate::instrument`]).
pub const TOKIO_TASK_POLLS: &str = "tokio.task.polls";
/// Counter, [`UNIT_SECONDS`], attribute [`TOKIO_TASK_NAME`]: time spent polling tasks wrapped
/// by heapspan.
pub const TOKIO_TASK_POLL_DURATION: &str = "tokio.task.poll.duration";
/// Gauge, [`UNIT_TASKS`]: tasks in the global (injection) queue.
pub const TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH: &str = "tokio.runtime.global_queue.depth";

// ---- Spans ----

/// One span per window for the whole process, the root of the window's trace: the
/// window's [`WINDOW_SPAN`]s are its children (and the [`FINDING_SPAN`]s under them), so one
/// trace holds one window. Attributes: [`WINDOW_START`], [`WINDOW_END`], [`WINDOW_EXACT`],
/// the process's figures ([`MEMORY_ALLOCATED`], [`MEMORY_FREED`], [`ALLOCATIONS`] during the
/// window, [`MEMORY_LIVE`] at its end, [`MEMORY_PEAK`] so far: every task and bucket
/// together), [`WINDOW_TASKS`], [`WINDOW_TASKS_OMITTED`], [`WINDOW_TASKS_IDLE`], and with the
/// residue sample on, [`SPAN_RESIDUE_INSTANCES`], [`SPAN_RESIDUE_CANDIDATES`],
/// [`SPAN_RESIDUE_BYTES`].
pub const PROCESS_WINDOW_SPAN: &str = "heapspan.process.window";
/// One span per task per window, and a final one when the task ends (at most
/// [`ExportConfig::max_window_spans`](crate::export::ExportConfig::max_window_spans) a window):
/// a child of the window's [`PROCESS_WINDOW_SPAN`], linked to the task's previous window span
/// when heapspan still knows it.
pub const WINDOW_SPAN: &str = "heapspan.window";
/// Span events on a window span (or on its [`WINDOW_EDGES_SPAN`] children): the task's top
/// edges of the live graph by bytes. Attributes: [`EDGE_KIND`], [`EDGE_CONFIDENCE`],
/// [`EDGE_CAPABILITY`], [`EDGE_FROM`], [`EDGE_TO`], [`EDGE_FROM_SIZE`], [`EDGE_TO_SIZE`],
/// [`EDGE_CROSS_TASK`], [`EDGE_BYTES`], [`EDGE_FROM_SPAN`], [`EDGE_TO_SPAN`],
/// [`EDGE_FROM_LOCATION`], [`EDGE_TO_LOCATION`].
pub const EDGE_EVENT: &str = "heapspan.edge";
/// Child spans of a window span carrying its [`EDGE_EVENT`]s when they are too many for one
/// span (at most 1000 events each). Attributes: [`TOKIO_TASK_NAME`], [`TOKIO_TASK_ID`].
pub const WINDOW_EDGES_SPAN: &str = "heapspan.window.edges";
/// One span per finding, when it is first found and when its severity or bytes change (by
/// more than 10 %): a child of the window span of its task in the window it was found in
/// (else of that window's [`PROCESS_WINDOW_SPAN`]), with links to the window spans of the
/// tasks involved. Status Error for high and critical, unset otherwise. Attributes:
/// [`FINDING_KIND`], [`FINDING_SEVERITY`], [`FINDING_SCORE`], [`FINDING_CONFIDENCE`],
/// [`FINDING_VERDICT`], [`FINDING_BYTES`], [`FINDING_ALLOCATIONS`], [`FINDING_ID`],
/// [`FINDING_WINDOWS`], [`FINDING_SUMMARY`], [`FINDING_FROM_GRAPH`], [`TOKIO_TASK_NAME`] and
/// [`SPAN_NAME`] where it has them, [`CODE_FILE_PATH`]/[`CODE_LINE_NUMBER`] (the allocating
/// site with sites on, else the spawn location), [`FINDING_HOLDER`] and
/// [`FINDING_HOLDER_CLASS`] where the kind has a holder, [`FINDING_ROOTS`] where it has roots
/// (with the live index), and the kind's evidence (the `heapspan.finding.*` evidence constants
/// below).
pub const FINDING_SPAN: &str = "heapspan.finding";
/// What an application's span instance left behind, read a window after it
/// closed (feature `tracing-opentelemetry`): a child of the application's span (same trace),
/// from the span's close to the read, linked to the [`PROCESS_WINDOW_SPAN`] of the window it
/// was read in. Sent only for sampled instances that still hold bytes. Attributes:
/// [`MEMORY_RESIDUE`], [`ALLOCATIONS_RESIDUE`], [`MEMORY_LIVE`] (at the close, as on the
/// application's span), [`SPAN_NAME`].
pub const SPAN_RESIDUE_SPAN: &str = "heapspan.span.residue";

// ---- Attributes ----

/// The task dimension: the name given at spawn, else the spawn location `file:line`, else
/// `unnamed` (see [`TaskStats::display_name`](crate::TaskStats::display_name)); names beyond the
/// cardinality cap become [`OTHER`].
pub const TOKIO_TASK_NAME: &str = "tokio.task.name";
/// The freeing side of the hand-off matrix ([`TASK_MEMORY_HANDED_OFF`], [`TASK_HANDOFFS`]): the
/// name of the task current at the free, as [`TOKIO_TASK_NAME`] names tasks, or [`NO_TASK`].
pub const FREE_TASK_NAME: &str = "heapspan.free.task.name";
/// The value of [`TOKIO_TASK_NAME`] and [`FREE_TASK_NAME`] on the hand-off matrix for code
/// outside any tokio task (`main`, plain threads, `spawn_blocking` outside a task): the
/// report's `unattributed (no task)`.
pub const NO_TASK: &str = crate::HandOffs::NO_TASK;
/// i64: tokio's task id (window spans only, never on metrics).
pub const TOKIO_TASK_ID: &str = "tokio.task.id";
/// The span dimension: `target::name` of the tracing span (the static name, whatever its
/// group); series beyond the cap become [`OTHER`] (with no [`SPAN_GROUP`]).
pub const SPAN_NAME: &str = "heapspan.span.name";
/// The span group within [`SPAN_NAME`], on the span metrics: the values of the group fields
/// the spans had ([`Builder::span_group_fields`](crate::Builder::span_group_fields), by default
/// `http.route` and `otel.name`) as `field=value` pairs joined by `, ` in the configured order,
/// e.g. `http.route=/leak`; [`OTHER`] for the values beyond
/// [`Builder::max_span_groups_per_name`](crate::Builder::max_span_groups_per_name). Absent for
/// spans with none of the fields ([`SpanGroup`](crate::SpanGroup)'s `Display`).
pub const SPAN_GROUP: &str = "heapspan.span.group";
/// Spawn location file (window spans).
pub const CODE_FILE_PATH: &str = "code.file.path";
/// i64: spawn location line (window spans).
pub const CODE_LINE_NUMBER: &str = "code.line.number";
/// i64: window start, nanoseconds since the Unix epoch.
pub const WINDOW_START: &str = "heapspan.window.start";
/// i64: window end, nanoseconds since the Unix epoch.
pub const WINDOW_END: &str = "heapspan.window.end";
/// bool: the window span's memory figures are exact; false once heapspan's queues reached
/// their bound and allocations went to the overflow bucket (the figures are lower bounds then)
/// or an operation was lost (see [`DROP_REASON_OVERFLOW_ALLOCATION`]).
pub const WINDOW_EXACT: &str = "heapspan.window.exact";
/// i64, on a [`PROCESS_WINDOW_SPAN`]: the window's [`WINDOW_SPAN`]s (its children).
pub const WINDOW_TASKS: &str = "heapspan.window.tasks";
/// i64, on a [`PROCESS_WINDOW_SPAN`]: tasks due a window span that got none, over
/// [`ExportConfig::max_window_spans`](crate::export::ExportConfig::max_window_spans): a
/// running one's figures go out with its next window span (which covers both windows), an
/// ended one's final window is not sent.
pub const WINDOW_TASKS_OMITTED: &str = "heapspan.window.tasks.omitted";
/// i64, on a [`PROCESS_WINDOW_SPAN`]: tasks that hold memory but did nothing since their last
/// window span, waiting for their turn
/// ([`ExportConfig::idle_holder_interval`](crate::export::ExportConfig::idle_holder_interval)).
pub const WINDOW_TASKS_IDLE: &str = "heapspan.window.tasks.idle";
/// i64 bytes, on a [`SPAN_RESIDUE_SPAN`]: bytes allocated in the span instance (while it was
/// the innermost entered span) still live when read, one to two windows after it closed.
pub const MEMORY_RESIDUE: &str = "heapspan.memory.residue";
/// i64, on a [`SPAN_RESIDUE_SPAN`]: allocations of the span instance still live when read.
pub const ALLOCATIONS_RESIDUE: &str = "heapspan.allocations.residue";
/// i64, on a [`PROCESS_WINDOW_SPAN`]: sampled span instances read in this window (those that
/// closed holding memory during the previous window, at most
/// [`ExportConfig::max_residue_spans`](crate::export::ExportConfig::max_residue_spans)).
pub const SPAN_RESIDUE_INSTANCES: &str = "heapspan.span.residue.instances";
/// i64, on a [`PROCESS_WINDOW_SPAN`]: span instances that closed holding memory during the
/// previous window with an OpenTelemetry context, the population the read ones were drawn
/// from (uniformly).
pub const SPAN_RESIDUE_CANDIDATES: &str = "heapspan.span.residue.candidates";
/// i64 bytes, on a [`PROCESS_WINDOW_SPAN`]: the residues of the instances read, added up.
pub const SPAN_RESIDUE_BYTES: &str = "heapspan.span.residue.bytes";
/// i64 bytes. On a window span: bytes allocated during the window. On a user span: bytes
/// allocated inside it.
pub const MEMORY_ALLOCATED: &str = "heapspan.memory.allocated";
/// i64 bytes. On a window span: bytes of the task's allocations freed during the window. On a
/// user span: bytes of its allocations freed.
pub const MEMORY_FREED: &str = "heapspan.memory.freed";
/// i64 bytes: live bytes (allocated minus freed, since the task or span began) at the end of
/// the window or when the user span closed (on a [`SPAN_RESIDUE_SPAN`] too: its close-time
/// figure beside [`MEMORY_RESIDUE`]; on a [`PROCESS_WINDOW_SPAN`], the whole process's).
pub const MEMORY_LIVE: &str = "heapspan.memory.live";
/// i64 bytes: highest live value observed so far (at folds).
pub const MEMORY_PEAK: &str = "heapspan.memory.peak";
/// i64: number of allocations inside a user span.
pub const ALLOCATIONS: &str = "heapspan.allocations";
/// i64, on a window span: nodes (live indexed allocations) of the window's graph allocated by
/// the task.
pub const GRAPH_NODES: &str = "heapspan.graph.nodes";
/// i64, on a window span: edges of the window's graph with an end allocated by the task (an
/// edge with both ends in the task counts once).
pub const GRAPH_EDGES_ATTR: &str = "heapspan.graph.edges";
/// i64, on a window span, for the whole graph (not per task): live indexed allocations left
/// out of the window's graph by its node cap
/// ([`GraphConfig::max_nodes`](crate::graph::GraphConfig::max_nodes);
/// [`Skipped::nodes`](crate::graph::Skipped::nodes)).
pub const GRAPH_SKIPPED_NODES: &str = "heapspan.graph.skipped.nodes";
/// i64, on a window span, for the whole graph: nodes in the window's graph whose contents
/// could not be read ([`Skipped::unreadable`](crate::graph::Skipped::unreadable)): edges out
/// of them are missing.
pub const GRAPH_UNSCANNED_NODES: &str = "heapspan.graph.unscanned.nodes";
/// i64, on a window span, for the whole graph: nodes bigger than the per-node scan cap
/// ([`GraphConfig::max_scan_bytes_per_node`](crate::graph::GraphConfig::max_scan_bytes_per_node);
/// [`Skipped::truncated_nodes`](crate::graph::Skipped::truncated_nodes)), read only up to it:
/// pointers in the rest are missing.
pub const GRAPH_TRUNCATED_NODES: &str = "heapspan.graph.truncated.nodes";
/// i64, on a window span, for the whole graph: the bytes of those nodes left unread
/// ([`Skipped::truncated_bytes`](crate::graph::Skipped::truncated_bytes)).
pub const GRAPH_TRUNCATED_BYTES: &str = "heapspan.graph.truncated.bytes";
/// i64, on a window span, for the whole process: allocations not indexed since start because
/// a thread's index table was full
/// ([`ScanStats::unindexed`](crate::graph::live::ScanStats::unindexed); raise
/// [`Builder::index_capacity`](crate::Builder::index_capacity)).
pub const GRAPH_UNINDEXED: &str = "heapspan.graph.unindexed";
/// Edge kind: owns, contains, shares, slice, clone, evolution, arc_clone, rc_clone
/// ([`EdgeKind::as_str`](crate::graph::EdgeKind::as_str)). On [`EDGE_EVENT`]s and on the
/// [`GRAPH_EDGES`] gauge.
pub const EDGE_KIND: &str = "heapspan.edge.kind";
/// f64 in `0..=1`: how sure the inference is ([`Edge::confidence`](crate::graph::Edge)).
pub const EDGE_CONFIDENCE: &str = "heapspan.edge.confidence";
/// exclusive, shared or borrow: what `from` may do with `to`, in the Place Capability Graph
/// vocabulary ([`Capability::as_str`](crate::graph::Capability::as_str)).
pub const EDGE_CAPABILITY: &str = "heapspan.edge.capability";
/// i64: allocation id of the edge's holder (an opaque id, never an address; ids are `u64`, put
/// on the wire with the same 64 bits, so ids from 2^63 up read as negative).
pub const EDGE_FROM: &str = "heapspan.edge.from";
/// i64: allocation id of the edge's target (see [`EDGE_FROM`]).
pub const EDGE_TO: &str = "heapspan.edge.to";
/// i64 bytes: requested size of the holder's allocation (absent when it is not live any more,
/// as for the old block of an `evolution` edge).
pub const EDGE_FROM_SIZE: &str = "heapspan.edge.from.size";
/// i64 bytes: requested size of the target's allocation.
pub const EDGE_TO_SIZE: &str = "heapspan.edge.to.size";
/// bool: the two ends were allocated by different tasks.
pub const EDGE_CROSS_TASK: &str = "heapspan.edge.cross_task";
/// i64 bytes the edge stands for (weighted when sampled): the target's size; for shared kinds
/// its share of the target; for slices the bytes from the pointer to the target's end.
pub const EDGE_BYTES: &str = "heapspan.edge.bytes";
/// `target::name` (as in [`SPAN_NAME`]) of the tracing span the holder was allocated in
/// (absent when none, or when heapspan no longer holds that span).
pub const EDGE_FROM_SPAN: &str = "heapspan.edge.from.span";
/// `target::name` of the tracing span the target was allocated in (see [`EDGE_FROM_SPAN`]).
pub const EDGE_TO_SPAN: &str = "heapspan.edge.to.span";
/// Code location of the holder's allocation (`function (file:line)`), with
/// [`Builder::capture_sites`](crate::Builder::capture_sites).
pub const EDGE_FROM_LOCATION: &str = "heapspan.edge.from.location";
/// Code location of the target's allocation (see [`EDGE_FROM_LOCATION`]).
pub const EDGE_TO_LOCATION: &str = "heapspan.edge.to.location";
/// Finding kind: one of [`crate::findings::Kind::as_str`] (`task.escaped_allocation`, …).
pub const FINDING_KIND: &str = "heapspan.finding.kind";
/// Finding severity: `info`, `low`, `medium`, `high`, `critical`.
pub const FINDING_SEVERITY: &str = "heapspan.finding.severity";
/// f64, 0..1: the ranking's score.
pub const FINDING_SCORE: &str = "heapspan.finding.score";
/// f64, 0..1: how likely the claim is true.
pub const FINDING_CONFIDENCE: &str = "heapspan.finding.confidence";
/// `confirmed`, `probable` or `diagnostic`.
pub const FINDING_VERDICT: &str = "heapspan.finding.verdict";
/// i64: the bytes concerned.
pub const FINDING_BYTES: &str = "heapspan.finding.bytes";
/// i64: the allocations concerned (0 when unknown).
pub const FINDING_ALLOCATIONS: &str = "heapspan.finding.allocations";
/// The stable id (16 hex digits): the same problem keeps it across windows.
pub const FINDING_ID: &str = "heapspan.finding.id";
/// i64: windows the finding was found in so far.
pub const FINDING_WINDOWS: &str = "heapspan.finding.windows";
/// The finding in plain words.
pub const FINDING_SUMMARY: &str = "heapspan.finding.summary";
/// bool: the relation graph (live index) backed it.
pub const FINDING_FROM_GRAPH: &str = "heapspan.finding.from_graph";
/// What keeps the memory alive, in words.
pub const FINDING_HOLDER: &str = "heapspan.finding.holder";
/// The holder's class: `unowned`, `transferred`, `retained`, `cycle`, `allocation`, `unknown`.
pub const FINDING_HOLDER_CLASS: &str = "heapspan.finding.holder.class";
/// i64 array: the allocation ids (as [`EDGE_FROM`]) of the roots of the finding's danger
/// surface ([`Finding::roots`](crate::findings::Finding::roots): escaped blocks, a cycle's
/// members, …; at most 64), present when it has any. With the [`EDGE_EVENT`]s of the window
/// spans they give the graph around the finding (the HTML view draws it from an OTLP file).
pub const FINDING_ROOTS: &str = "heapspan.finding.roots";
/// Evidence, i64: how much a series grew over the growth windows.
pub const FINDING_GROWTH_BYTES: &str = "heapspan.finding.growth.bytes";
/// Evidence, f64: the robust (Theil–Sen) slope of the series, bytes per window.
pub const FINDING_GROWTH_SLOPE: &str = "heapspan.finding.growth.slope";
/// Evidence, f64: the share of positive window deltas.
pub const FINDING_GROWTH_POSITIVE_FRACTION: &str = "heapspan.finding.growth.positive_fraction";
/// Evidence, i64: the windows of the growth test.
pub const FINDING_GROWTH_WINDOWS: &str = "heapspan.finding.growth.windows";
/// Evidence, i64: instances of the span closed during the growth windows.
pub const FINDING_INSTANCES: &str = "heapspan.finding.instances";
/// Evidence, i64: bytes left per closed instance over the growth windows.
pub const FINDING_PER_INSTANCE_BYTES: &str = "heapspan.finding.per_instance.bytes";
/// Evidence, i64: tasks concerned.
pub const FINDING_TASKS: &str = "heapspan.finding.tasks";
/// Evidence, f64: seconds since the task was last polled (or, without poll times, last
/// allocated or freed).
pub const FINDING_IDLE_SECONDS: &str = "heapspan.finding.idle.seconds";
/// Evidence: what the idle time is measured from: `poll` or `allocation`.
pub const FINDING_IDLE_BASIS: &str = "heapspan.finding.idle.basis";
/// Evidence, f64: the task's age in seconds.
pub const FINDING_AGE_SECONDS: &str = "heapspan.finding.age.seconds";
/// Evidence, i64: allocations in the cycle.
pub const FINDING_CYCLE_MEMBERS: &str = "heapspan.finding.cycle.members";
/// Evidence, i64: `Rc`/`Arc` blocks in the cycle.
pub const FINDING_CYCLE_REFCOUNTED: &str = "heapspan.finding.cycle.refcounted";
/// Evidence, i64: strong references of the cycle's `Rc`/`Arc` blocks (all from inside it).
pub const FINDING_CYCLE_STRONG: &str = "heapspan.finding.cycle.strong";
/// Evidence, i64: consecutive windows the cycle was found unreachable in, with the same members.
pub const FINDING_CYCLE_WINDOWS: &str = "heapspan.finding.cycle.windows";
/// Evidence of `refcount.unreachable_cycle`: pointer words from outside the cycle into
/// refcounted members whose counts the members meet exactly, set aside as stale words or
/// borrows (the counts suggest it; the finding is then probable and at most medium).
pub const FINDING_CYCLE_SET_ASIDE: &str = "heapspan.finding.cycle.set_aside";
/// Evidence of `refcount.unreachable_cycle`: pointer words inside the cycle beyond its
/// members' counts (stale copies; the finding is then probable and at most medium).
pub const FINDING_CYCLE_SURPLUS: &str = "heapspan.finding.cycle.surplus";
/// Evidence, i64: clone edges of the group.
pub const FINDING_CLONES: &str = "heapspan.finding.clones";
/// Evidence, i64: size of each copy.
pub const FINDING_CLONE_SIZE: &str = "heapspan.finding.clone.size";
/// Evidence, i64: the future's size in bytes.
pub const FINDING_FUTURE_SIZE: &str = "heapspan.finding.future.size";
/// Evidence, f64: allocations per second.
pub const FINDING_RATE: &str = "heapspan.finding.rate";
/// Evidence, f64: the share of the window's allocated bytes freed again in it.
pub const FINDING_FREED_FRACTION: &str = "heapspan.finding.freed_fraction";
/// Evidence of a graph-based finding whose claim rests on nothing pointing at a block: the
/// nodes the window's graph did not read in full (left out by a cap, unreadable, or cut at the
/// per-node scan cap), among which an owner may be. The finding is weakened (low, confidence
/// 0.5) when it is not 0.
pub const FINDING_GRAPH_UNSEEN_NODES: &str = "heapspan.finding.graph.unseen_nodes";
/// Evidence, i64: the threshold the figure was compared with.
pub const FINDING_THRESHOLD: &str = "heapspan.finding.threshold";
/// Evidence of `dealloc.invalid`: `double_free`, `layout_mismatch`, `in_custody` or
/// `unrecognised` (a pointer heapspan never handed out, a plain block freed with another
/// size, or a second free whose traces the inner allocator reused).
pub const FINDING_INVALID_CASE: &str = "heapspan.finding.invalid.case";
/// Evidence of `dealloc.invalid`: `free` or `realloc`.
pub const FINDING_INVALID_OP: &str = "heapspan.finding.invalid.op";
/// Evidence of `dealloc.invalid`: invalid frees lost because heapspan's fixed queue of them
/// was full (the process had more than 64 waiting at once).
pub const FINDING_INVALID_LOST: &str = "heapspan.finding.invalid.lost";
/// Evidence of `dealloc.invalid`: the task that allocated the block (`unknown` when its
/// header and traces were reused).
pub const FINDING_ALLOC_TASK: &str = "heapspan.finding.alloc.task";
/// Evidence of `dealloc.invalid`: the span current when the block was allocated.
pub const FINDING_ALLOC_SPAN: &str = "heapspan.finding.alloc.span";
/// Evidence of `dealloc.invalid` (and of `ffi.custody`'s `freed_in_custody`): the task current
/// at the invalid free.
pub const FINDING_FREE_TASK: &str = "heapspan.finding.free.task";
/// Evidence of `dealloc.invalid` (and of `ffi.custody`'s `freed_in_custody`): the span current
/// at the invalid free.
pub const FINDING_FREE_SPAN: &str = "heapspan.finding.free.span";
/// Evidence of a double free: the task current at the first free (known with the live
/// index on).
pub const FINDING_FIRST_FREE_TASK: &str = "heapspan.finding.first_free.task";
/// Evidence of a double free: the span current at the first free.
pub const FINDING_FIRST_FREE_SPAN: &str = "heapspan.finding.first_free.span";
/// Evidence of `dealloc.invalid`, i64: the size the free's layout gave.
pub const FINDING_LAYOUT_SIZE: &str = "heapspan.finding.layout.size";
/// Evidence of `dealloc.invalid`, i64: the alignment the free's layout gave.
pub const FINDING_LAYOUT_ALIGN: &str = "heapspan.finding.layout.align";
/// Evidence of a layout mismatch, i64: the size the block was allocated with.
pub const FINDING_ALLOCATED_SIZE: &str = "heapspan.finding.allocated.size";
/// Evidence of `alloc.cross_task_free` (and of `task.escaped_allocation` when its task name's
/// blocks were handed off in the window): the name's row of the window's hand-off matrix,
/// largest first, as `freeing name = bytes B / frees` joined by `; ` (at most 8 cells, then
/// `; N more`); the freeing name is a task name or [`NO_TASK`].
pub const FINDING_HANDOFF_CELLS: &str = "heapspan.finding.handoff.cells";
/// Evidence of `ffi.custody`: the boundary the pointer was handed across (the name given to
/// [`custody::handover`](crate::custody::handover)); `unknown` for `not_handed`.
pub const FINDING_BOUNDARY: &str = "heapspan.finding.boundary";
/// Evidence of `ffi.custody`: the rule broken: `not_reclaimed`, `freed_in_custody`,
/// `reclaimed_twice`, `released_after_reclaim`, `reclaimed_after_release`, `released_twice`,
/// `handed_twice` or `not_handed` (see [`crate::custody`]).
pub const FINDING_CUSTODY_CASE: &str = "heapspan.finding.custody.case";
/// Evidence of `ffi.custody` `not_reclaimed`: the term missed: `deadline` or `task_end`.
pub const FINDING_CUSTODY_UNTIL: &str = "heapspan.finding.custody.until";
/// Evidence of `ffi.custody`, i64: the handed-over pointers concerned so far.
pub const FINDING_CUSTODY_POINTERS: &str = "heapspan.finding.custody.pointers";
/// Evidence of `ffi.custody`: the code location (`file:line`) of the call that broke the rule
/// (the second reclaim, the release after a reclaim, the second handover…), when a call did.
pub const FINDING_CUSTODY_CALL: &str = "heapspan.finding.custody.call";
/// Why something was dropped: one of the `DROP_REASON_*` values.
pub const DROP_REASON: &str = "heapspan.drop.reason";

/// [`DROP_REASON`]: allocations that went to the overflow bucket (a hard bound was reached):
/// every task and span figure is a lower bound from then on.
pub const DROP_REASON_OVERFLOW_ALLOCATION: &str = "overflow_allocation";
/// [`DROP_REASON`]: frees or reallocs heapspan could not record (out of memory).
pub const DROP_REASON_LOST_OPERATION: &str = "lost_operation";
/// [`DROP_REASON`]: spans nested deeper than heapspan tracks.
pub const DROP_REASON_SPAN_STACK_OVERFLOW: &str = "span_stack_overflow";
/// [`DROP_REASON`]: frees counted in the `other → other` cell of the hand-off matrix because
/// their pair found no cell (the freeing thread's table of 64 pairs was full, or the 4096
/// pairs the aggregator keeps apart were reached): their bytes are in the totals, their pair
/// is lost.
pub const DROP_REASON_HANDOFF_OVERFLOW: &str = "handoff_overflow";
/// [`DROP_REASON`]: heapspan's span export queue was full (spans dropped).
pub const DROP_REASON_EXPORT_QUEUE_FULL: &str = "export_queue_full";
/// [`DROP_REASON`]: an export request failed (its spans are dropped; metrics are cumulative
/// and catch up with the next successful export).
pub const DROP_REASON_EXPORT_FAILED: &str = "export_failed";
/// [`DROP_REASON`]: a window's graph could not be written to the DOT directory
/// ([`ExportConfig::graph_dot_dir`](crate::export::ExportConfig::graph_dot_dir)).
pub const DROP_REASON_GRAPH_DOT_FAILED: &str = "graph_dot_failed";

/// The value task and span names beyond the cardinality cap are reported under.
pub const OTHER: &str = "other";

/// The instrumentation scope of heapspan's metrics and spans.
pub const SCOPE: &str = "heapspan";

/// A metric of the contract: name, instrument kind and unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricName {
    /// The name.
    pub name: &'static str,
    /// `counter`, `updowncounter`, `gauge` or `histogram`.
    pub instrument: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
}

const fn m(name: &'static str, instrument: &'static str, unit: &'static str) -> MetricName {
    MetricName {
        name,
        instrument,
        unit,
    }
}

/// The metrics heapspan exports whenever export is on (reserved names excluded), for tests and
/// dashboards.
pub const METRICS: &[MetricName] = &[
    m(TASK_MEMORY_ALLOCATED, "counter", UNIT_BYTES),
    m(TASK_MEMORY_FREED, "counter", UNIT_BYTES),
    m(TASK_MEMORY_LIVE, "updowncounter", UNIT_BYTES),
    m(TASK_MEMORY_PEAK, "gauge", UNIT_BYTES),
    m(TASK_ALLOCATIONS, "counter", UNIT_ALLOCATIONS),
    m(SPAN_MEMORY_ALLOCATED, "counter", UNIT_BYTES),
    m(SPAN_MEMORY_FREED, "counter", UNIT_BYTES),
    m(SPAN_MEMORY_LIVE, "updowncounter", UNIT_BYTES),
    m(SPAN_ALLOCATIONS, "counter", UNIT_ALLOCATIONS),
    m(TASK_MEMORY_HANDED_OFF, "counter", UNIT_BYTES),
    m(TASK_HANDOFFS, "counter", UNIT_FREES),
    m(ALLOCATION_SIZE, "histogram", UNIT_BYTES),
    m(TRACKER_MEMORY, "gauge", UNIT_BYTES),
    m(TRACKER_DROPPED, "counter", UNIT_EVENTS),
];

/// The metrics heapspan exports when it also takes a relation graph every window (the live
/// index is on: [`Builder::live_index`](crate::Builder::live_index)).
pub const GRAPH_METRICS: &[MetricName] = &[
    m(GRAPH_EDGES, "gauge", UNIT_EDGES),
    m(GRAPH_NODES_METRIC, "gauge", UNIT_NODES),
    m(GRAPH_SCAN_PAUSE, "gauge", UNIT_SECONDS),
];

/// The metrics of the findings (every window, with or without the live index).
pub const FINDING_METRICS: &[MetricName] = &[m(FINDINGS, "counter", UNIT_FINDINGS)];

/// The tokio metrics heapspan exports beside its own (feature `tokio-metrics`): the runtime's
/// (when heapspan has a runtime to watch: see `ExportConfig::tokio_runtime`) and the polls of
/// the tasks it wraps. [`TOKIO_UNSTABLE_METRICS`] come on top with `--cfg tokio_unstable`.
pub const TOKIO_METRICS: &[MetricName] = &[
    m(TOKIO_RUNTIME_WORKERS, "gauge", UNIT_WORKERS),
    m(TOKIO_RUNTIME_TASKS_ALIVE, "gauge", UNIT_TASKS),
    m(TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH, "gauge", UNIT_TASKS),
    m(TOKIO_RUNTIME_WORKER_BUSY_DURATION, "counter", UNIT_SECONDS),
    m(TOKIO_RUNTIME_WORKER_PARKS, "counter", UNIT_PARKS),
    m(TOKIO_TASK_POLLS, "counter", UNIT_POLLS),
    m(TOKIO_TASK_POLL_DURATION, "counter", UNIT_SECONDS),
];

/// The tokio metrics that exist only when the application is built with
/// `--cfg tokio_unstable` (feature `tokio-metrics`).
pub const TOKIO_UNSTABLE_METRICS: &[MetricName] =
    &[m(TOKIO_RUNTIME_WORKER_POLLS, "counter", UNIT_POLLS)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        let tokio = TOKIO_METRICS.iter().chain(TOKIO_UNSTABLE_METRICS);
        for m in METRICS
            .iter()
            .chain(GRAPH_METRICS)
            .chain(FINDING_METRICS)
            .chain(tokio)
        {
            assert!(
                m.name.starts_with("heapspan.") || m.name.starts_with("tokio."),
                "{}",
                m.name
            );
            assert!(!m.name.ends_with("_total"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{}",
                m.name
            );
            assert!(!m.name.contains("bytes"), "unit in the name: {}", m.name);
        }
    }

    #[test]
    fn size_buckets_are_powers_of_four_from_16_b_to_16_mib() {
        assert_eq!(ALLOCATION_SIZE_BUCKETS[0], 16.0);
        assert_eq!(
            *ALLOCATION_SIZE_BUCKETS.last().unwrap(),
            16.0 * 1024.0 * 1024.0
        );
        for w in ALLOCATION_SIZE_BUCKETS.windows(2) {
            assert_eq!(w[1], w[0] * 4.0);
        }
    }
}
