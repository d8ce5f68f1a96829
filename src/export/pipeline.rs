//! The export thread: every metric interval it takes a snapshot, turns the per-name figures
//! into instrument updates and exports what heapspan's reader collected; for each window the
//! window stage ([`crate::windows`]) hands over, it emits the `heapspan.window` spans (with the
//! live index on, each task's share of the relation graph: [`super::graph`]), the
//! `heapspan.finding` spans and the `heapspan.findings` counter. It encodes; the cutting, the
//! graph and the judging happen in the window stage.
//!
//! Everything runs on one named thread (`heapspan-export`) that counts its allocations to the
//! `heapspan` bucket, has no tracing subscriber, and calls exporters inside OpenTelemetry's
//! suppression scope. heapspan's own providers have no background thread: metrics go through a
//! [`ManualReader`] collected here, spans through a bounded queue drained here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, Gauge, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::config::Resolved;
use super::graph::{DotFiles, GraphWindow};
use super::names as n;
use super::sink::{ExportFailed, Sink};
use crate::aggregator::{self, Shared};
use crate::alloc::InternalScope;
use crate::error::Result;
use crate::findings::{EvidenceValue, Finding, Severity};
use crate::graph::EdgeKind;
use crate::windows::{Control, TaskWindow, Window};
use crate::{MemStats, Snapshot, TaskKey};

/// Spans per export request at most.
const SPANS_PER_REQUEST: usize = 512;
/// Span bytes per export request at most, by [`span_wire_bytes`] (an upper bound of their
/// protobuf encoding): the rest of 4 MiB, the default gRPC receive limit of collectors, is
/// left for the resource, the scopes and the framing.
const REQUEST_SPAN_BYTES: usize = 3 << 20;
/// Events per span heapspan's own tracer provider keeps (the SDK's default, 128, would drop
/// edge events silently).
const MAX_EVENTS_PER_SPAN: u32 = 1024;
/// `heapspan.edge` events per span with heapspan's own provider; a task's events beyond it go
/// on `heapspan.window.edges` child spans of at most this many each.
const EDGE_EVENTS_PER_SPAN: usize = 1000;
/// The same with the application's provider, whose limits heapspan cannot read: the SDK's
/// default limit.
const FOREIGN_EDGE_EVENTS_PER_SPAN: usize = 128;
/// `heapspan.edge` events per window, all tasks together (a few hundred bytes each on the
/// wire).
const MAX_EDGE_EVENTS_PER_WINDOW: usize = 50_000;
const _: () = assert!(EDGE_EVENTS_PER_SPAN <= MAX_EVENTS_PER_SPAN as usize);
/// At most one warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How often the export thread checks for the stop flag while it waits for a window.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// Tasks whose latest window span a finding can still hang from (the most recent kept).
const MAX_TASK_SPANS: usize = 10_000;

/// The running export thread; [`ExportHandle::shutdown`] flushes and stops it.
#[derive(Debug)]
pub(crate) struct ExportHandle {
    /// heapspan's own tracer provider (when it owns one), lent to the application.
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    // In a mutex only so that the guard stays `Sync`.
    done: Mutex<std::sync::mpsc::Receiver<()>>,
    shutdown_timeout: Duration,
}

impl ExportHandle {
    /// Asks the thread for a last snapshot and export, and waits for it at most the configured
    /// shutdown timeout (then leaves it behind: a stuck collector never blocks the process).
    pub(crate) fn shutdown(mut self, deadline: Instant) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            // At least a tenth of the timeout for the last export, whatever the window stage
            // took of the deadline.
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(self.shutdown_timeout / 10);
            if done.recv_timeout(wait).is_ok() {
                let _ = t.join();
            }
        }
    }
}

/// A [`ManualReader`] the export thread keeps a handle to.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Span processor of heapspan's own tracer provider: ended spans wait in a bounded queue for
/// the export thread; when it is full they are dropped and counted.
#[derive(Debug)]
struct QueueProcessor {
    queue: Arc<SpanQueue>,
}

#[derive(Debug)]
struct SpanQueue {
    spans: Mutex<VecDeque<SpanData>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        let mut q = self.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.queue.capacity {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(span);
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

struct Instruments {
    task_allocated: Counter<u64>,
    task_freed: Counter<u64>,
    task_live: UpDownCounter<i64>,
    task_peak: Gauge<u64>,
    task_allocations: Counter<u64>,
    span_allocated: Counter<u64>,
    span_freed: Counter<u64>,
    span_live: UpDownCounter<i64>,
    span_allocations: Counter<u64>,
    handed_off: Counter<u64>,
    handoffs: Counter<u64>,
    tracker_memory: Gauge<u64>,
    tracker_dropped: Counter<u64>,
    graph_edges: Gauge<u64>,
    graph_nodes: Gauge<u64>,
    scan_pause: Gauge<f64>,
    findings: Counter<u64>,
    /// `heapspan.edge.kind` attributes, in [`EdgeKind::ALL`] order.
    edge_kinds: [[KeyValue; 1]; 8],
}

impl Instruments {
    fn new(m: &Meter) -> Self {
        Instruments {
            task_allocated: m
                .u64_counter(n::TASK_MEMORY_ALLOCATED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated by tokio tasks, per task name.")
                .build(),
            task_freed: m
                .u64_counter(n::TASK_MEMORY_FREED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes of tasks' allocations freed, per allocating task name.")
                .build(),
            task_live: m
                .i64_up_down_counter(n::TASK_MEMORY_LIVE)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated and not yet freed, per task name.")
                .build(),
            task_peak: m
                .u64_gauge(n::TASK_MEMORY_PEAK)
                .with_unit(n::UNIT_BYTES)
                .with_description("Largest live bytes of a single task of the name.")
                .build(),
            task_allocations: m
                .u64_counter(n::TASK_ALLOCATIONS)
                .with_unit(n::UNIT_ALLOCATIONS)
                .with_description("Allocations, per task name.")
                .build(),
            span_allocated: m
                .u64_counter(n::SPAN_MEMORY_ALLOCATED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated inside tracing spans, per span name.")
                .build(),
            span_freed: m
                .u64_counter(n::SPAN_MEMORY_FREED)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes of spans' allocations freed, per span name.")
                .build(),
            span_live: m
                .i64_up_down_counter(n::SPAN_MEMORY_LIVE)
                .with_unit(n::UNIT_BYTES)
                .with_description("Bytes allocated inside spans and not yet freed.")
                .build(),
            span_allocations: m
                .u64_counter(n::SPAN_ALLOCATIONS)
                .with_unit(n::UNIT_ALLOCATIONS)
                .with_description("Allocations inside spans, per span name.")
                .build(),
            handed_off: m
                .u64_counter(n::TASK_MEMORY_HANDED_OFF)
                .with_unit(n::UNIT_BYTES)
                .with_description(
                    "Bytes of blocks freed while another task than the allocating one (or no \
                     task) was current, per allocating and freeing task name.",
                )
                .build(),
            handoffs: m
                .u64_counter(n::TASK_HANDOFFS)
                .with_unit(n::UNIT_FREES)
                .with_description(
                    "Frees by another task than the allocating one (or by no task), per \
                     allocating and freeing task name.",
                )
                .build(),
            tracker_memory: m
                .u64_gauge(n::TRACKER_MEMORY)
                .with_unit(n::UNIT_BYTES)
                .with_description("heapspan's own bookkeeping memory.")
                .build(),
            tracker_dropped: m
                .u64_counter(n::TRACKER_DROPPED)
                .with_unit(n::UNIT_EVENTS)
                .with_description("What heapspan could not record or export, per reason.")
                .build(),
            graph_edges: m
                .u64_gauge(n::GRAPH_EDGES)
                .with_unit(n::UNIT_EDGES)
                .with_description("Edges of the live relation graph, per kind.")
                .build(),
            graph_nodes: m
                .u64_gauge(n::GRAPH_NODES_METRIC)
                .with_unit(n::UNIT_NODES)
                .with_description("Nodes of the live relation graph.")
                .build(),
            scan_pause: m
                .f64_gauge(n::GRAPH_SCAN_PAUSE)
                .with_unit(n::UNIT_SECONDS)
                .with_description("How long the latest scan of the live index deferred frees.")
                .build(),
            findings: m
                .u64_counter(n::FINDINGS)
                .with_unit(n::UNIT_FINDINGS)
                .with_description("Danger findings reported, per kind and severity.")
                .build(),
            edge_kinds: EdgeKind::ALL.map(|k| [KeyValue::new(n::EDGE_KIND, k.as_str())]),
        }
    }
}

/// Maps names to series attributes under a cap: a name keeps the series it was given; names
/// seen once every slot is taken go to `other`. Each round offers new names largest first.
struct NameCap {
    cap: usize,
    key: &'static str,
    assigned: HashMap<String, Vec<KeyValue>>,
    other: Vec<KeyValue>,
}

impl NameCap {
    fn new(key: &'static str, cap: usize) -> Self {
        NameCap {
            cap,
            key,
            assigned: HashMap::new(),
            other: vec![KeyValue::new(key, n::OTHER)],
        }
    }

    /// The cap of the hand-off matrix's cells: [`n::TOKIO_TASK_NAME`] (allocating) and
    /// [`n::FREE_TASK_NAME`] (freeing), both [`n::OTHER`] beyond the cap.
    fn pairs(cap: usize) -> Self {
        NameCap {
            cap,
            key: n::TOKIO_TASK_NAME,
            assigned: HashMap::new(),
            other: vec![
                KeyValue::new(n::TOKIO_TASK_NAME, n::OTHER),
                KeyValue::new(n::FREE_TASK_NAME, n::OTHER),
            ],
        }
    }

    /// The series of the hand-off cell of blocks `from` allocated and `to` freed.
    fn pair_attrs(&mut self, from: &str, to: &str) -> &[KeyValue] {
        let id = format!("{from}\u{0}{to}");
        self.attrs_with(&id, || {
            vec![
                KeyValue::new(n::TOKIO_TASK_NAME, from.to_owned()),
                KeyValue::new(n::FREE_TASK_NAME, to.to_owned()),
            ]
        })
        .0
    }

    fn attrs(&mut self, name: &str) -> (&[KeyValue], bool) {
        let key = self.key;
        self.attrs_with(name, || vec![KeyValue::new(key, name.to_owned())])
    }

    /// The series of a span group: `heapspan.span.name` and, for a group with field values
    /// (`group` not empty), `heapspan.span.group`. Each group is a series of the cap.
    fn span_attrs(&mut self, name: &str, group: &str) -> (&[KeyValue], bool) {
        if group.is_empty() {
            return self.attrs(name);
        }
        let id = format!("{name}\u{0}{group}");
        let key = self.key;
        self.attrs_with(&id, || {
            vec![
                KeyValue::new(key, name.to_owned()),
                KeyValue::new(n::SPAN_GROUP, group.to_owned()),
            ]
        })
    }

    fn attrs_with(
        &mut self,
        id: &str,
        make: impl FnOnce() -> Vec<KeyValue>,
    ) -> (&[KeyValue], bool) {
        if !self.assigned.contains_key(id) && self.assigned.len() < self.cap {
            self.assigned.insert(id.to_owned(), make());
        }
        match self.assigned.get(id) {
            Some(a) => (a, false),
            None => (&self.other, true),
        }
    }
}

/// Adds the growth from `prev` to `cur` to one name's four cumulative series.
fn add_deltas(
    [allocated, freed, allocations]: [&Counter<u64>; 3],
    live: &UpDownCounter<i64>,
    cur: &MemStats,
    prev: &MemStats,
    attrs: &[KeyValue],
) {
    let (a, f, c, l) = delta(cur, prev);
    if a > 0 {
        allocated.add(a, attrs);
    }
    if f > 0 {
        freed.add(f, attrs);
    }
    if c > 0 {
        allocations.add(c, attrs);
    }
    if l != 0 {
        live.add(l, attrs);
    }
}

fn delta(cur: &MemStats, prev: &MemStats) -> (u64, u64, u64, i64) {
    (
        cur.allocated_bytes.saturating_sub(prev.allocated_bytes),
        cur.freed_bytes.saturating_sub(prev.freed_bytes),
        cur.allocations.saturating_sub(prev.allocations),
        cur.live_bytes().saturating_sub(prev.live_bytes()),
    )
}

/// Takes the spans of the next export request off the queue: at most [`SPANS_PER_REQUEST`],
/// and at most [`REQUEST_SPAN_BYTES`] by [`span_wire_bytes`]. A span larger than that on its
/// own would be refused by a collector (and cost the spans behind it): it is dropped, and the
/// count of those returned.
fn take_batch(q: &mut VecDeque<SpanData>) -> (Vec<SpanData>, u64) {
    let mut dropped = 0;
    while q
        .front()
        .is_some_and(|s| span_wire_bytes(s) > REQUEST_SPAN_BYTES)
    {
        q.pop_front();
        dropped += 1;
    }
    let mut bytes = 0usize;
    let mut k = 0;
    for s in q.iter().take(SPANS_PER_REQUEST) {
        bytes = bytes.saturating_add(span_wire_bytes(s));
        if bytes > REQUEST_SPAN_BYTES {
            break;
        }
        k += 1;
    }
    (q.drain(..k).collect(), dropped)
}

/// An upper bound of the bytes `s` adds to an OTLP export request (protobuf): its strings and
/// values plus generous allowances for tags, lengths and fixed-size fields (ids 26 bytes, times
/// 18, flags, kind, counts; 4-byte length prefixes).
fn span_wire_bytes(s: &SpanData) -> usize {
    const SPAN: usize = 128;
    const EVENT: usize = 32;
    const LINK: usize = 64;
    let status = match &s.status {
        Status::Error { description } => description.len(),
        _ => 0,
    };
    let events: usize = s
        .events
        .iter()
        .map(|e| EVENT + e.name.len() + attrs_wire_bytes(&e.attributes))
        .sum();
    let links: usize = s
        .links
        .iter()
        .map(|l| {
            LINK + l.span_context.trace_state().header().len() + attrs_wire_bytes(&l.attributes)
        })
        .sum();
    SPAN + s.name.len()
        + s.span_context.trace_state().header().len()
        + status
        + attrs_wire_bytes(&s.attributes)
        + events
        + links
}

/// Upper bound of the protobuf bytes of attributes: per attribute its key, its value, and 24
/// bytes of tags and length prefixes (`KeyValue` and `AnyValue` messages).
fn attrs_wire_bytes(attrs: &[KeyValue]) -> usize {
    attrs
        .iter()
        .map(|kv| 24 + kv.key.as_str().len() + value_wire_bytes(&kv.value))
        .sum()
}

fn value_wire_bytes(v: &Value) -> usize {
    match v {
        Value::Bool(_) => 2,
        Value::I64(_) => 11,
        Value::F64(_) => 9,
        Value::String(s) => s.as_str().len() + 6,
        Value::Array(a) => {
            8 + match a {
                Array::Bool(v) => v.len() * 8,
                Array::I64(v) => v.len() * 16,
                Array::F64(v) => v.len() * 16,
                Array::String(v) => v.iter().map(|s| s.as_str().len() + 12).sum(),
                _ => a.to_string().len() * 4,
            }
        }
        _ => v.as_str().len() * 4 + 16,
    }
}

pub(super) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

pub(super) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Providers and sink, built and checked before heapspan starts.
pub(crate) struct Prepared(Exporter);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sink", &self.0.sink)
            .finish()
    }
}

/// The state of the export thread.
struct Exporter {
    shared: Option<Shared>,
    cfg: Resolved,
    sink: Sink,
    instruments: Instruments,
    own_meter: Option<(SdkMeterProvider, SharedReader)>,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    own_tracer: Option<SdkTracerProvider>,
    queue: Arc<SpanQueue>,
    resource: Resource,
    tasks: NameCap,
    spans: NameCap,
    handoff_cells: NameCap,
    prev_task_names: HashMap<String, MemStats>,
    /// Per hand-off cell (allocating, freeing name): bytes and frees last exported.
    prev_handoffs: HashMap<(String, String), (u64, u64)>,
    prev_handoff_overflow: u64,
    /// Per span group (name, target, field values): the figures last exported.
    prev_span_groups: HashMap<(&'static str, &'static str, crate::SpanGroup), MemStats>,
    prev_dropped: crate::Dropped,
    prev_queue_dropped: u64,
    export_failed: u64,
    prev_export_failed: u64,
    /// The windows from the window stage, and its counters.
    rx: Option<std::sync::mpsc::Receiver<Arc<Window>>>,
    control: Option<Arc<Control>>,
    /// Cuts the windows of the pipeline's unit tests.
    #[cfg(test)]
    test_windower: crate::windows::Windower,
    /// Per task, its latest window span and the window it was in (findings hang from it).
    task_spans: HashMap<TaskKey, (SpanContext, u64)>,
    last_warn: Option<Instant>,
    /// Start of the cumulative allocation-size histogram, and its latest value.
    sizes_start: SystemTime,
    sizes: Option<crate::SizeHistogram>,
    #[cfg(feature = "tokio-metrics")]
    runtime: Option<super::runtime::RuntimeMetrics>,
    #[cfg(feature = "tokio-metrics")]
    task_polls: super::task_polls::TaskPolls,
    /// `heapspan.edge` events per span (more go on child spans).
    edge_events_per_span: usize,
    /// `heapspan.edge` events per window.
    edge_event_budget: usize,
    dot: Option<DotFiles>,
    prev_dot_failed: u64,
}

/// Builds the providers and the sink, so that errors surface before heapspan starts; `None` if
/// export is off.
pub(crate) fn prepare(cfg: Resolved) -> Result<Option<Prepared>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let _scope = InternalScope::enter();
    let mut attrs: Vec<KeyValue> = cfg
        .resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !cfg.resource.iter().any(|(k, _)| k == "service.name") {
        attrs.push(KeyValue::new("service.name", "unknown_service"));
    }
    attrs.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attrs.push(KeyValue::new("telemetry.sdk.name", "opentelemetry"));
    let resource = Resource::builder_empty().with_attributes(attrs).build();
    let sink = Sink::build(&cfg, &resource)?;
    let scope = InstrumentationScope::builder(n::SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();

    let (meter, own_meter) = match &cfg.meter_provider {
        Some(p) => (p.meter_with_scope(scope.clone()), None),
        None => {
            let reader = SharedReader(Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Cumulative)
                    .build(),
            ));
            let p = SdkMeterProvider::builder()
                .with_resource(resource.clone())
                .with_reader(reader.clone())
                .build();
            (p.meter_with_scope(scope.clone()), Some((p, reader)))
        }
    };
    let queue = Arc::new(SpanQueue {
        spans: Mutex::new(VecDeque::new()),
        capacity: cfg.span_queue_capacity,
        dropped: AtomicU64::new(0),
    });
    let (tracer, own_tracer) = match &cfg.tracer_provider {
        Some(p) => (p.tracer_with_scope(scope), None),
        None => {
            let p = SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_span_processor(QueueProcessor {
                    queue: queue.clone(),
                })
                .with_max_attributes_per_span(256)
                .with_max_events_per_span(MAX_EVENTS_PER_SPAN)
                .build();
            (p.tracer_with_scope(scope), Some(p))
        }
    };
    let instruments = Instruments::new(&meter);
    #[cfg(feature = "tokio-metrics")]
    let rt_handle = cfg
        .tokio_runtime
        .clone()
        .or_else(|| tokio::runtime::Handle::try_current().ok());
    let edge_events_per_span = if own_tracer.is_some() {
        EDGE_EVENTS_PER_SPAN
    } else {
        FOREIGN_EDGE_EVENTS_PER_SPAN
    };
    let dot = cfg.graph_dot_dir.clone().map(DotFiles::new);
    #[cfg(test)]
    let bounds = crate::windows::Bounds {
        max_spans: cfg.max_window_spans,
        idle_every: cfg.idle_holder_interval,
    };
    Ok(Some(Prepared(Exporter {
        shared: None,
        tasks: NameCap::new(n::TOKIO_TASK_NAME, cfg.max_task_names),
        spans: NameCap::new(n::SPAN_NAME, cfg.max_span_names),
        handoff_cells: NameCap::pairs(cfg.max_handoff_cells),
        cfg,
        sink,
        instruments,
        own_meter,
        tracer,
        own_tracer,
        queue,
        resource,
        prev_task_names: HashMap::new(),
        prev_handoffs: HashMap::new(),
        prev_handoff_overflow: 0,
        prev_span_groups: HashMap::new(),
        prev_dropped: crate::Dropped::default(),
        prev_queue_dropped: 0,
        export_failed: 0,
        prev_export_failed: 0,
        rx: None,
        control: None,
        #[cfg(test)]
        test_windower: crate::windows::Windower::new(crate::windows::Settings {
            window: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            capture: None,
            findings: crate::findings::FindingsConfig::default(),
            bounds,
        }),
        task_spans: HashMap::new(),
        last_warn: None,
        sizes_start: SystemTime::now(),
        sizes: None,
        #[cfg(feature = "tokio-metrics")]
        runtime: super::runtime::RuntimeMetrics::new(&meter, rt_handle.as_ref()),
        #[cfg(feature = "tokio-metrics")]
        task_polls: super::task_polls::TaskPolls::new(&meter),
        edge_events_per_span,
        edge_event_budget: MAX_EDGE_EVENTS_PER_WINDOW,
        dot,
        prev_dot_failed: 0,
    })))
}

impl Prepared {
    /// Whether a graph DOT directory is set.
    pub(crate) fn writes_dot(&self) -> bool {
        self.0.dot.is_some()
    }

    /// Starts the export thread on the aggregator's tables (for the metrics) and the window
    /// stage's windows.
    pub(crate) fn spawn(
        self,
        shared: Shared,
        windows: std::sync::mpsc::Receiver<Arc<Window>>,
        control: Arc<Control>,
    ) -> Result<ExportHandle> {
        let mut exporter = self.0;
        exporter.shared = Some(shared);
        exporter.rx = Some(windows);
        exporter.control = Some(control);
        let tracer_provider = exporter.own_tracer.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let shutdown_timeout = exporter.cfg.shutdown_timeout;
        let thread = {
            let stop = stop.clone();
            crate::thread::spawn("heapspan-export", move || {
                exporter.run(&stop);
                let _ = done_tx.send(());
            })?
        };
        Ok(ExportHandle {
            tracer_provider,
            stop,
            thread: Some(thread),
            done: Mutex::new(done),
            shutdown_timeout,
        })
    }
}

impl Exporter {
    fn run(mut self, stop: &AtomicBool) {
        let mut next_metrics = Instant::now() + self.cfg.metric_interval;
        loop {
            let stopping = stop.load(Ordering::Acquire);
            // Windows: those waiting, and when not stopping, the next one until the metrics are
            // due (the stop flag checked every STOP_CHECK).
            loop {
                let wait = if stopping {
                    Duration::ZERO
                } else {
                    next_metrics
                        .saturating_duration_since(Instant::now())
                        .min(STOP_CHECK)
                };
                let got = match &self.rx {
                    Some(rx) if wait.is_zero() => rx.try_recv().map_err(|e| match e {
                        std::sync::mpsc::TryRecvError::Empty => None,
                        std::sync::mpsc::TryRecvError::Disconnected => Some(()),
                    }),
                    Some(rx) => rx.recv_timeout(wait).map_err(|e| match e {
                        std::sync::mpsc::RecvTimeoutError::Timeout => None,
                        std::sync::mpsc::RecvTimeoutError::Disconnected => Some(()),
                    }),
                    None => Err(Some(())),
                };
                match got {
                    Ok(w) => {
                        self.window(&w);
                        self.export_spans();
                        crate::alloc::invalid::mark_reported(w.invalid_upto);
                    }
                    Err(Some(())) => {
                        // The window stage has ended (its last window is in).
                        if !stopping {
                            std::thread::park_timeout(wait.max(STOP_CHECK));
                        }
                        break;
                    }
                    Err(None) => break,
                }
            }
            let now = Instant::now();
            if stopping || now >= next_metrics {
                let snap = match &self.shared {
                    Some(s) => aggregator::lock(s).snapshot(),
                    None => return,
                };
                self.metrics(&snap);
                self.export_metrics();
                next_metrics = now + self.cfg.metric_interval;
            }
            if stopping {
                self.shutdown();
                return;
            }
        }
    }

    fn warn(&mut self, what: &str, e: &ExportFailed) {
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_warn = Some(now);
            eprintln!(
                "heapspan: exporting {what} failed ({}); dropped spans are counted in {} and \
                 export retries every interval (this warning repeats at most once a minute)",
                e.0,
                n::TRACKER_DROPPED
            );
        }
    }

    /// Turns the snapshot's per-name tables into instrument updates.
    fn metrics(&mut self, snap: &Snapshot) {
        self.sizes = Some(snap.allocation_sizes);
        let ins = &self.instruments;
        // Tasks: largest first so that the cap keeps the biggest names.
        let mut names: Vec<&crate::TaskNameStats> = snap.task_names.iter().collect();
        names.sort_by_key(|t| std::cmp::Reverse(t.mem.allocated_bytes));
        let mut other_peak = None::<u64>;
        for t in names {
            let prev = self
                .prev_task_names
                .get(&t.name)
                .copied()
                .unwrap_or_default();
            let (attrs, is_other) = self.tasks.attrs(&t.name);
            add_deltas(
                [&ins.task_allocated, &ins.task_freed, &ins.task_allocations],
                &ins.task_live,
                &t.mem,
                &prev,
                attrs,
            );
            // The gauge is the largest peak of a single task of the name (the stored
            // previous figures carry it in `peak_bytes`).
            let cur = MemStats {
                peak_bytes: t.task_peak_bytes,
                ..t.mem
            };
            if is_other {
                other_peak = Some(other_peak.unwrap_or(0).max(t.task_peak_bytes));
            } else if t.task_peak_bytes != prev.peak_bytes || prev == MemStats::default() {
                ins.task_peak.record(t.task_peak_bytes, attrs);
            }
            if prev != cur {
                self.prev_task_names.insert(t.name.clone(), cur);
            }
        }
        if let Some(p) = other_peak {
            ins.task_peak.record(p, &self.tasks.other);
        }
        // Spans, per group: `heapspan.span.name`, and `heapspan.span.group` for a group with
        // field values (a name without any has one series, as before groups).
        let mut sgroups: Vec<&crate::SpanGroupStats> = snap.span_groups.iter().collect();
        sgroups.sort_by_key(|s| std::cmp::Reverse(s.mem.allocated_bytes));
        let mut label = String::new();
        for s in sgroups {
            let key = (s.target, s.name, s.group.clone());
            let prev = self.prev_span_groups.get(&key).copied().unwrap_or_default();
            if prev == s.mem {
                continue;
            }
            label.clear();
            label.push_str(s.target);
            label.push_str("::");
            label.push_str(s.name);
            let group = if s.group.is_empty() {
                String::new()
            } else {
                s.group.to_string()
            };
            let (attrs, _) = self.spans.span_attrs(&label, &group);
            add_deltas(
                [&ins.span_allocated, &ins.span_freed, &ins.span_allocations],
                &ins.span_live,
                &s.mem,
                &prev,
                attrs,
            );
            self.prev_span_groups.insert(key, s.mem);
        }
        // The hand-off matrix, its cells largest first (the cap keeps the biggest).
        for c in &snap.handoffs.cells {
            let key = (c.allocated_by.clone(), c.freed_by.clone());
            let prev = self.prev_handoffs.get(&key).copied().unwrap_or_default();
            let (bytes, frees) = (
                c.bytes.saturating_sub(prev.0),
                c.frees.saturating_sub(prev.1),
            );
            if bytes == 0 && frees == 0 {
                continue;
            }
            let attrs = self.handoff_cells.pair_attrs(&c.allocated_by, &c.freed_by);
            if bytes > 0 {
                ins.handed_off.add(bytes, attrs);
            }
            if frees > 0 {
                ins.handoffs.add(frees, attrs);
            }
            self.prev_handoffs.insert(key, (c.bytes, c.frees));
        }
        // Self metrics.
        ins.tracker_memory.record(snap.tracker_bytes, &[]);
        let d = snap.dropped;
        let p = self.prev_dropped;
        // Spans the queue had no room for, and windows the window stage could not hand over.
        let queue_dropped = self.queue.dropped.load(Ordering::Relaxed)
            + self
                .control
                .as_ref()
                .map_or(0, |c| c.dropped.load(Ordering::Relaxed));
        let dot_failed = self.dot.as_ref().map_or(0, |d| d.failed);
        for (reason, cur, prev) in [
            (
                n::DROP_REASON_OVERFLOW_ALLOCATION,
                d.overflow_allocations,
                p.overflow_allocations,
            ),
            (
                n::DROP_REASON_LOST_OPERATION,
                d.lost_operations,
                p.lost_operations,
            ),
            (
                n::DROP_REASON_SPAN_STACK_OVERFLOW,
                d.span_stack_overflow,
                p.span_stack_overflow,
            ),
            (
                n::DROP_REASON_HANDOFF_OVERFLOW,
                snap.handoffs.overflow_frees,
                self.prev_handoff_overflow,
            ),
            (
                n::DROP_REASON_EXPORT_QUEUE_FULL,
                queue_dropped,
                self.prev_queue_dropped,
            ),
            (
                n::DROP_REASON_EXPORT_FAILED,
                self.export_failed,
                self.prev_export_failed,
            ),
            (
                n::DROP_REASON_GRAPH_DOT_FAILED,
                dot_failed,
                self.prev_dot_failed,
            ),
        ] {
            // Every reason gets a series (zero until something is dropped), so dashboards can
            // rely on it.
            ins.tracker_dropped.add(
                cur.saturating_sub(prev),
                &[KeyValue::new(n::DROP_REASON, reason)],
            );
        }
        self.prev_dropped = d;
        self.prev_handoff_overflow = snap.handoffs.overflow_frees;
        self.prev_queue_dropped = queue_dropped;
        self.prev_export_failed = self.export_failed;
        self.prev_dot_failed = dot_failed;
        #[cfg(feature = "tokio-metrics")]
        if let Some(rt) = &mut self.runtime {
            rt.record();
        }
        #[cfg(feature = "tokio-metrics")]
        self.task_polls.record();
    }

    fn export_metrics(&mut self) {
        let Some((_, reader)) = &self.own_meter else {
            return;
        };
        if !self.sink.takes_metrics() {
            return;
        }
        let mut rm = ResourceMetrics::default();
        if reader.collect(&mut rm).is_err() {
            return;
        }
        let _suppress = Context::enter_telemetry_suppressed_scope();
        if let Err(e) = self.sink.export_metrics(&rm) {
            self.warn("metrics", &e);
        }
        if let Some(h) = self.sizes {
            let req =
                super::histogram::request(&self.resource, self.sizes_start, SystemTime::now(), &h);
            if let Err(e) = self.sink.export_raw_metrics(&req) {
                self.warn("metrics", &e);
            }
        }
    }

    /// Encodes one window: a `heapspan.window` span per task window (with the live index on,
    /// each with its share of the graph), the graph gauges and DOT file, a `heapspan.finding`
    /// span per new or changed finding, and the findings counter.
    fn window(&mut self, w: &Window) {
        let snap = &w.snapshot;
        let graph = w.graph.as_ref();
        // Each task's share of the graph goes on its window span (an ended task's on its final
        // one); the graph's totals go to the gauges and, if asked, to a DOT file.
        let split = graph.map(|g| {
            GraphWindow::new(
                g,
                snap,
                w.tasks.iter().map(|t| t.task.key.id),
                self.cfg.graph_top_edges,
                self.edge_event_budget,
            )
        });
        let taken_at = graph.and_then(|g| g.taken_at).unwrap_or(snap.taken_at);
        // One trace per window: the process's root span, the task windows its children.
        let root = super::process_window::emit(&self.tracer, w, self.residue_on());
        let parent = Context::new().with_remote_span_context(root.clone());
        for tw in &w.tasks {
            let prev = self.task_spans.get(&tw.task.key).map(|(cx, _)| cx.clone());
            let cx = self.window_span(
                tw,
                snap.is_exact(),
                split.as_ref().map(|s| (s, taken_at)),
                &parent,
                prev,
            );
            self.task_spans.insert(tw.task.key, (cx, w.seq));
        }
        if let Some(g) = graph {
            let ins = &self.instruments;
            for (attrs, count) in ins.edge_kinds.iter().zip(g.graph.count_by_kind()) {
                ins.graph_edges.record(count as u64, attrs);
            }
            ins.graph_nodes.record(g.graph.nodes.len() as u64, &[]);
            ins.scan_pause.record(g.scan.pause.as_secs_f64(), &[]);
            if let Some(dot) = &mut self.dot {
                // The danger surfaces of the window's reportable findings.
                dot.write(g, taken_at, &w.findings.surface_roots);
            }
        }
        for id in &w.findings.emit {
            if let Some(f) = w.findings.current.iter().find(|f| f.id == *id) {
                self.finding_span(f, w, &root);
            }
        }
        super::residue::emit(&self.tracer, &w.residues.residues, snap.taken_at, &root);
        for (kind, severity) in &w.findings.counted {
            self.instruments.findings.add(
                1,
                &[
                    KeyValue::new(n::FINDING_KIND, kind.as_str()),
                    KeyValue::new(n::FINDING_SEVERITY, severity.as_str()),
                ],
            );
        }
        // Forget the spans of tasks the snapshot no longer has, then the oldest beyond the cap.
        let live: std::collections::HashSet<TaskKey> = snap.tasks.iter().map(|t| t.key).collect();
        self.task_spans.retain(|k, _| live.contains(k));
        if self.task_spans.len() > MAX_TASK_SPANS {
            let mut by_age: Vec<(u64, TaskKey)> =
                self.task_spans.iter().map(|(k, (_, s))| (*s, *k)).collect();
            by_age.sort_unstable();
            for (_, k) in &by_age[..by_age.len() - MAX_TASK_SPANS] {
                self.task_spans.remove(k);
            }
        }
    }

    /// Emits the `heapspan.finding` span of `f`, found in window `w`: a child of its first
    /// task's window span of this window (else of the window's `root`), linked to the window
    /// spans of every task involved.
    fn finding_span(&self, f: &Finding, w: &Window, root: &SpanContext) {
        let mut attrs = Vec::with_capacity(20 + f.evidence.len());
        attrs.push(KeyValue::new(n::FINDING_KIND, f.kind.as_str()));
        attrs.push(KeyValue::new(n::FINDING_SEVERITY, f.severity.as_str()));
        attrs.push(KeyValue::new(n::FINDING_SCORE, f.score));
        attrs.push(KeyValue::new(n::FINDING_CONFIDENCE, f.confidence));
        attrs.push(KeyValue::new(n::FINDING_VERDICT, f.verdict.as_str()));
        attrs.push(KeyValue::new(n::FINDING_BYTES, i64_of(f.bytes)));
        attrs.push(KeyValue::new(n::FINDING_ALLOCATIONS, i64_of(f.allocations)));
        attrs.push(KeyValue::new(n::FINDING_ID, f.id.to_string()));
        attrs.push(KeyValue::new(n::FINDING_WINDOWS, i64::from(f.windows)));
        attrs.push(KeyValue::new(n::FINDING_SUMMARY, f.summary.clone()));
        attrs.push(KeyValue::new(n::FINDING_FROM_GRAPH, f.from_graph));
        if let Some(t) = &f.task_name {
            attrs.push(KeyValue::new(n::TOKIO_TASK_NAME, t.clone()));
        }
        if let Some(s) = &f.span_name {
            attrs.push(KeyValue::new(n::SPAN_NAME, s.clone()));
        }
        if let Some(l) = &f.location {
            attrs.push(KeyValue::new(n::CODE_FILE_PATH, l.file.clone()));
            attrs.push(KeyValue::new(n::CODE_LINE_NUMBER, i64::from(l.line)));
        }
        if let Some(h) = &f.holder {
            attrs.push(KeyValue::new(n::FINDING_HOLDER, h.to_string()));
            attrs.push(KeyValue::new(n::FINDING_HOLDER_CLASS, h.class()));
        }
        if !f.roots.is_empty() {
            // The same 64 bits as the edge events' ids.
            let ids = f.roots.iter().map(|r| r.0 as i64).collect();
            attrs.push(KeyValue::new(
                n::FINDING_ROOTS,
                Value::Array(Array::I64(ids)),
            ));
        }
        for (key, v) in &f.evidence {
            attrs.push(KeyValue::new(
                *key,
                match v {
                    EvidenceValue::Int(i) => Value::I64(*i),
                    EvidenceValue::Float(x) => Value::F64(*x),
                    EvidenceValue::Text(t) => Value::from(t.clone()),
                },
            ));
        }
        let spans: Vec<&(SpanContext, u64)> = f
            .tasks
            .iter()
            .filter_map(|k| self.task_spans.get(k))
            .collect();
        let parent = spans
            .iter()
            .find(|(_, seq)| *seq == w.seq)
            .map_or(root, |(cx, _)| cx);
        let parent = Context::new().with_remote_span_context(parent.clone());
        let links = spans
            .iter()
            .map(|(cx, _)| Link::with_context(cx.clone()))
            .collect();
        let end = w.snapshot.taken_at;
        let mut span = self
            .tracer
            .span_builder(n::FINDING_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(w.start.min(end))
            .with_attributes(attrs)
            .with_links(links)
            .start_with_context(&self.tracer, &parent);
        if f.severity >= Severity::High {
            span.set_status(Status::error(f.summary.clone()));
        }
        span.end_with_timestamp(end);
    }

    /// Whether the residue sample is on (its figures go on the window's root span).
    fn residue_on(&self) -> bool {
        cfg!(feature = "tracing-opentelemetry") && self.cfg.max_residue_spans > 0
    }

    /// Emits `t`'s window span, a child of the window's root (`parent`) linked to the task's
    /// previous window span (`prev`); with a graph, its share of it: figures as attributes and
    /// top edges as events, on the span itself or, when they are more than a span takes, on
    /// `heapspan.window.edges` children.
    fn window_span(
        &self,
        tw: &TaskWindow,
        exact: bool,
        graph: Option<(&GraphWindow<'_>, SystemTime)>,
        parent: &Context,
        prev: Option<SpanContext>,
    ) -> SpanContext {
        let (t, end) = (&tw.task, tw.end);
        let (a, f, c, _) = delta(&t.mem, &tw.at_start);
        let mut attrs = Vec::with_capacity(20);
        attrs.push(KeyValue::new(n::TOKIO_TASK_NAME, t.display_name()));
        attrs.push(KeyValue::new(n::TOKIO_TASK_ID, i64_of(t.key.id)));
        if let Some(l) = &t.location {
            attrs.push(KeyValue::new(n::CODE_FILE_PATH, l.file.clone()));
            attrs.push(KeyValue::new(n::CODE_LINE_NUMBER, i64::from(l.line)));
        }
        attrs.push(KeyValue::new(n::WINDOW_START, unix_nanos(tw.start)));
        attrs.push(KeyValue::new(n::WINDOW_END, unix_nanos(end)));
        attrs.push(KeyValue::new(n::MEMORY_ALLOCATED, i64_of(a)));
        attrs.push(KeyValue::new(n::MEMORY_FREED, i64_of(f)));
        attrs.push(KeyValue::new(n::MEMORY_LIVE, t.mem.live_bytes()));
        attrs.push(KeyValue::new(n::MEMORY_PEAK, i64_of(t.mem.peak_bytes)));
        attrs.push(KeyValue::new(n::ALLOCATIONS, i64_of(c)));
        attrs.push(KeyValue::new(n::WINDOW_EXACT, exact));
        let mut edges: &[usize] = &[];
        let mut events_at = end;
        if let Some((g, taken_at)) = graph {
            g.push_task_attributes(t.key.id, &mut attrs);
            edges = g.top_edges(t.key.id);
            // Events inside the span: the capture time, within the window.
            events_at = taken_at.max(tw.start).min(end);
        }
        let per_span = self.edge_events_per_span.max(1);
        let on_window = edges.len() <= per_span;
        let mut builder = self
            .tracer
            .span_builder(n::WINDOW_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(tw.start)
            .with_attributes(attrs);
        if let Some((g, _)) = graph.filter(|_| on_window && !edges.is_empty()) {
            builder = builder.with_events(edges.iter().map(|&i| g.event(i, events_at)).collect());
        }
        if let Some(prev) = prev {
            builder = builder.with_links(vec![Link::with_context(prev)]);
        }
        // An explicit, unsuppressed parent context: the SDK drops spans started inside the
        // suppression scope.
        let mut span = builder.start_with_context(&self.tracer, parent);
        if let Some((g, _)) = graph.filter(|_| !on_window) {
            let parent = Context::new().with_remote_span_context(span.span_context().clone());
            for chunk in edges.chunks(per_span) {
                let mut child = self
                    .tracer
                    .span_builder(n::WINDOW_EDGES_SPAN)
                    .with_kind(SpanKind::Internal)
                    .with_start_time(tw.start)
                    .with_attributes([
                        KeyValue::new(n::TOKIO_TASK_NAME, t.display_name()),
                        KeyValue::new(n::TOKIO_TASK_ID, i64_of(t.key.id)),
                    ])
                    .with_events(chunk.iter().map(|&i| g.event(i, events_at)).collect())
                    .start_with_context(&self.tracer, &parent);
                child.end_with_timestamp(end);
            }
        }
        let cx = span.span_context().clone();
        span.end_with_timestamp(end);
        cx
    }

    fn export_spans(&mut self) {
        if self.own_tracer.is_none() {
            return;
        }
        let _suppress = Context::enter_telemetry_suppressed_scope();
        loop {
            let (batch, oversized) = {
                let mut q = self.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
                take_batch(&mut q)
            };
            self.export_failed = self.export_failed.saturating_add(oversized);
            if batch.is_empty() {
                if oversized > 0 {
                    continue;
                }
                return;
            }
            let len = batch.len() as u64;
            if let Err(e) = self.sink.export_spans(batch) {
                self.export_failed = self.export_failed.saturating_add(len);
                self.warn("spans", &e);
                // The collector is down: drop the rest of this window's spans too (counted)
                // rather than waiting a timeout per request.
                let mut q = self.queue.spans.lock().unwrap_or_else(|p| p.into_inner());
                self.export_failed = self.export_failed.saturating_add(q.len() as u64);
                q.clear();
                return;
            }
        }
    }

    fn shutdown(&mut self) {
        let t = self.cfg.shutdown_timeout;
        let _suppress = Context::enter_telemetry_suppressed_scope();
        self.sink.shutdown(t);
        if let Some((p, _)) = &self.own_meter {
            let _ = p.shutdown_with_timeout(t);
        }
        if let Some(p) = &self.own_tracer {
            let _ = p.shutdown_with_timeout(t);
        }
        let _ = &self.resource;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The volume bounds, the trace layout and the residue spans.
    mod volume;

    #[test]
    fn names_beyond_the_cap_share_the_other_series_and_keep_their_slot() {
        let mut cap = NameCap::new(n::TOKIO_TASK_NAME, 2);
        assert_eq!(
            cap.attrs("a"),
            (&[KeyValue::new(n::TOKIO_TASK_NAME, "a")][..], false)
        );
        assert!(!cap.attrs("b").1);
        let (other, is_other) = cap.attrs("c");
        assert!(is_other);
        assert_eq!(other, &[KeyValue::new(n::TOKIO_TASK_NAME, n::OTHER)][..]);
        // A name keeps the series it was given, so deltas always go where they went before.
        assert!(!cap.attrs("a").1);
        assert!(cap.attrs("c").1);
        assert_eq!(cap.assigned.len(), 2);
    }

    #[test]
    fn deltas_are_exact_and_saturating() {
        let prev = MemStats {
            allocated_bytes: 100,
            allocations: 2,
            freed_bytes: 40,
            frees: 1,
            peak_bytes: 60,
        };
        let cur = MemStats {
            allocated_bytes: 150,
            allocations: 3,
            freed_bytes: 140,
            frees: 3,
            peak_bytes: 60,
        };
        assert_eq!(delta(&cur, &prev), (50, 100, 1, -50));
        assert_eq!(delta(&prev, &cur), (0, 0, 0, 50));
    }

    use std::path::Path;

    use opentelemetry::trace::Event;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};

    use super::super::config::ExportConfig;
    use super::super::graph::tests::{fan_out, scratch, small_graph, snapshot, span};
    use crate::graph::{to_dot, DotOptions};
    use crate::{TaskSource, TaskStats};

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + T0 + Duration::from_millis(ms)
    }

    /// An exporter with heapspan's own providers and nowhere to send to (spans stay in its
    /// queue), whose previous window ended at `at(0)`.
    #[track_caller]
    fn exporter(cfg: ExportConfig) -> Exporter {
        let cfg = cfg.enabled(true).resolve_with(|_| None).unwrap();
        let mut e = prepare(cfg).unwrap().unwrap().0;
        e.test_windower.restart_at(at(0));
        e
    }

    impl Exporter {
        /// Cuts the window ending at `snap` (with `graph`) and encodes it.
        fn windows_with(
            &mut self,
            snap: &Snapshot,
            stopping: bool,
            graph: Option<&crate::LiveGraph>,
        ) {
            let w = self
                .test_windower
                .window_with(snap.clone(), stopping, graph.cloned());
            self.window(&w);
        }
    }

    /// A task that allocated `live` bytes, ended at `ended` if given.
    fn task(id: u64, name: &str, live: u64, ended: Option<SystemTime>) -> TaskStats {
        TaskStats {
            key: TaskKey { id },
            name: Some(name.to_owned()),
            location: None,
            first_span: None,
            source: TaskSource::Wrapper,
            mem: MemStats {
                allocated_bytes: live,
                allocations: 1,
                ..MemStats::default()
            },
            started: Some(at(0)),
            ended,
            first_activity: Some(at(0)),
            last_activity: Some(at(0)),
            future_size: None,
            last_poll: None,
        }
    }

    fn queued(e: &Exporter) -> Vec<SpanData> {
        let mut q = e.queue.spans.lock().unwrap();
        q.drain(..).collect()
    }

    fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        kvs.iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[track_caller]
    fn window(spans: &[SpanData], task: i64) -> &SpanData {
        spans
            .iter()
            .find(|s| {
                s.name == n::WINDOW_SPAN
                    && attr(&s.attributes, n::TOKIO_TASK_ID) == Some(&Value::I64(task))
            })
            .unwrap_or_else(|| panic!("no window span of task {task}"))
    }

    /// The window spans among `spans`.
    fn windows(spans: &[SpanData]) -> Vec<&SpanData> {
        spans.iter().filter(|s| s.name == n::WINDOW_SPAN).collect()
    }

    /// The window's root span among `spans` (there is one).
    #[track_caller]
    fn root(spans: &[SpanData]) -> &SpanData {
        let roots: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == n::PROCESS_WINDOW_SPAN)
            .collect();
        assert_eq!(roots.len(), 1, "one root per window");
        roots[0]
    }

    fn edge_ends(events: &[Event]) -> Vec<(i64, i64)> {
        events
            .iter()
            .map(|e| {
                let id = |k| match attr(&e.attributes, k) {
                    Some(Value::I64(v)) => *v,
                    other => panic!("{k}: {other:?}"),
                };
                (id(n::EDGE_FROM), id(n::EDGE_TO))
            })
            .collect()
    }

    /// The latest value of each data point of an u64 gauge, by the value of `key`.
    fn gauge(e: &Exporter, name: &str, key: &str) -> HashMap<String, u64> {
        let (_, reader) = e.own_meter.as_ref().unwrap();
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).unwrap();
        let mut out = HashMap::new();
        for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
            if m.name() != name {
                continue;
            }
            match m.data() {
                AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                    for p in g.data_points() {
                        let k = p.attributes().find(|kv| kv.key.as_str() == key);
                        out.insert(
                            k.map(|kv| kv.value.to_string()).unwrap_or_default(),
                            p.value(),
                        );
                    }
                }
                AggregatedMetrics::U64(MetricData::Sum(s)) => {
                    for p in s.data_points() {
                        let k = p.attributes().find(|kv| kv.key.as_str() == key);
                        out.insert(
                            k.map(|kv| kv.value.to_string()).unwrap_or_default(),
                            p.value(),
                        );
                    }
                }
                _ => panic!("{name} is not an u64 gauge or counter"),
            }
        }
        out
    }

    #[test]
    fn window_spans_carry_each_tasks_share_of_the_graph() {
        let mut e = exporter(ExportConfig::default());
        // Task 7 runs; task 9 ended at 4 s (its final window); task 11 has a node but is not in
        // the snapshot (no span). The graph was taken at 9 s, the snapshot at 10 s.
        let live = small_graph(at(9000));
        let snap = snapshot(
            at(10_000),
            vec![
                task(7, "worker", 4096, None),
                task(9, "loader", 512, Some(at(4000))),
            ],
            vec![span(100, "app", "request"), span(300, "app", "cache")],
        );
        e.windows_with(&snap, false, Some(&live));
        let spans = queued(&e);
        assert_eq!(
            spans.len(),
            3,
            "one window span per task in the snapshot and the window's root, no children"
        );

        let w7 = window(&spans, 7);
        for (key, v) in [
            (n::GRAPH_NODES, 3),
            (n::GRAPH_EDGES_ATTR, 2),
            (n::GRAPH_SKIPPED_NODES, 0),
            (n::GRAPH_UNSCANNED_NODES, 0),
            (n::GRAPH_TRUNCATED_NODES, 1),
            (n::GRAPH_TRUNCATED_BYTES, 4096),
            (n::GRAPH_UNINDEXED, 5),
        ] {
            assert_eq!(attr(&w7.attributes, key), Some(&Value::I64(v)), "{key}");
        }
        assert_eq!(w7.events.dropped_count, 0);
        assert_eq!(edge_ends(&w7.events), [(3, 4), (1, 2)], "most bytes first");
        let by_key = |ev: &Event| -> HashMap<String, Value> {
            ev.attributes
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.clone()))
                .collect()
        };
        let expected = |pairs: &[(&str, Value)]| -> HashMap<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        // #3 (task 9, span 200 unknown to the snapshot) owns #4 (task 7, span app::cache).
        assert_eq!(
            by_key(&w7.events[0]),
            expected(&[
                (n::EDGE_KIND, Value::from("owns")),
                (n::EDGE_CONFIDENCE, Value::F64(0.75)),
                (n::EDGE_CAPABILITY, Value::from("exclusive")),
                (n::EDGE_FROM, Value::I64(3)),
                (n::EDGE_TO, Value::I64(4)),
                (n::EDGE_FROM_SIZE, Value::I64(16)),
                (n::EDGE_TO_SIZE, Value::I64(64)),
                (n::EDGE_CROSS_TASK, Value::Bool(true)),
                (n::EDGE_BYTES, Value::I64(64)),
                (n::EDGE_TO_SPAN, Value::from("app::cache")),
            ])
        );
        // #1 (span app::request) owns #2 (no span), a length next to the pointer.
        assert_eq!(
            by_key(&w7.events[1]),
            expected(&crate::export::graph::tests::owns_1_2_event())
        );
        assert!(w7
            .events
            .iter()
            .all(|ev| ev.name == n::EDGE_EVENT && ev.timestamp == at(9000)));

        // The ended task's final window carries its edge, stamped within the window.
        let w9 = window(&spans, 9);
        assert_eq!(w9.end_time, at(4000));
        assert_eq!(attr(&w9.attributes, n::GRAPH_NODES), Some(&Value::I64(1)));
        assert_eq!(
            attr(&w9.attributes, n::GRAPH_EDGES_ATTR),
            Some(&Value::I64(1))
        );
        assert_eq!(edge_ends(&w9.events), [(3, 4)]);
        assert_eq!(w9.events[0].timestamp, at(4000));

        // The gauge: every kind gets a point.
        let edges = gauge(&e, n::GRAPH_EDGES, n::EDGE_KIND);
        assert_eq!(edges.len(), 8);
        assert_eq!(edges["owns"], 2);
        assert!(
            edges.iter().all(|(k, &v)| k == "owns" || v == 0),
            "{edges:?}"
        );

        // The next window with no graph: no graph attributes, no events.
        let snap = snapshot(at(20_000), vec![task(7, "worker", 8192, None)], Vec::new());
        e.windows_with(&snap, false, None);
        let spans = queued(&e);
        let w7 = window(&spans, 7);
        assert_eq!(attr(&w7.attributes, n::GRAPH_NODES), None);
        assert!(w7.events.is_empty());
    }

    #[test]
    fn many_edges_go_on_child_spans_of_at_most_1000_events_none_dropped() {
        let k = 2500;
        let mut e = exporter(ExportConfig::default().graph_top_edges(k));
        let live = fan_out(&[(7, k)], 0);
        let snap = snapshot(at(10_000), vec![task(7, "worker", 4096, None)], Vec::new());
        e.windows_with(&snap, false, Some(&live));
        let spans = queued(&e);
        let w = window(&spans, 7);
        assert!(w.events.is_empty(), "all on the children");
        assert_eq!(
            attr(&w.attributes, n::GRAPH_EDGES_ATTR),
            Some(&Value::I64(k as i64))
        );
        let children: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == n::WINDOW_EDGES_SPAN)
            .collect();
        let sizes: Vec<usize> = children.iter().map(|c| c.events.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        for c in &children {
            assert_eq!(c.parent_span_id, w.span_context.span_id());
            assert!(!c.parent_span_is_remote);
            assert_eq!(c.span_context.trace_id(), w.span_context.trace_id());
            assert_eq!(c.events.dropped_count, 0);
            assert_eq!((c.start_time, c.end_time), (w.start_time, w.end_time));
            assert_eq!(attr(&c.attributes, n::TOKIO_TASK_ID), Some(&Value::I64(7)));
        }
        // In order: equal bytes, so by target id (the container is #1, its blocks #2..).
        let ends: Vec<(i64, i64)> = children.iter().flat_map(|c| edge_ends(&c.events)).collect();
        let expected: Vec<(i64, i64)> = (2..=k as i64 + 1).map(|to| (1, to)).collect();
        assert_eq!(ends, expected);

        // The default k: 100 events on the window span itself.
        let mut e = exporter(ExportConfig::default());
        e.windows_with(&snap, false, Some(&live));
        let spans = queued(&e);
        assert_eq!(spans.len(), 2, "the window span and the window's root");
        let w = window(&spans, 7);
        assert_eq!(w.events.len(), crate::export::DEFAULT_GRAPH_TOP_EDGES);
        assert_eq!(w.parent_span_id, root(&spans).span_context.span_id());
    }

    #[test]
    fn with_the_applications_provider_child_spans_stay_within_the_sdk_default_limit() {
        // The application's provider keeps the SDK's default 128 events per span; heapspan
        // cannot read its limits, so it puts at most 128 on each span.
        let queue = Arc::new(SpanQueue {
            spans: Mutex::new(VecDeque::new()),
            capacity: 1000,
            dropped: AtomicU64::new(0),
        });
        let app = SdkTracerProvider::builder()
            .with_span_processor(QueueProcessor {
                queue: queue.clone(),
            })
            .build();
        let mut e = exporter(
            ExportConfig::default()
                .tracer_provider(app)
                .graph_top_edges(300),
        );
        let live = fan_out(&[(7, 300)], 0);
        let snap = snapshot(at(10_000), vec![task(7, "worker", 4096, None)], Vec::new());
        e.windows_with(&snap, false, Some(&live));
        let spans: Vec<SpanData> = queue.spans.lock().unwrap().drain(..).collect();
        let mut sizes: Vec<(usize, u32)> = spans
            .iter()
            .filter(|s| s.name == n::WINDOW_EDGES_SPAN)
            .map(|c| (c.events.len(), c.events.dropped_count))
            .collect();
        sizes.sort();
        assert_eq!(sizes, [(44, 0), (128, 0), (128, 0)]);
    }

    #[test]
    #[cfg(feature = "http")]
    fn export_requests_stay_under_4_mib() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
        use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
        use prost::Message as _;

        // 80 tasks × 300 edges, both ends in a span with a long name: about 11 MB of spans.
        const TARGET: &str = "a_rather_long_module_path::with_several::levels_of_nesting::and_more";
        let tasks: Vec<(u64, usize)> = (1..=80).map(|t| (t, 300)).collect();
        let live = fan_out(&tasks, 42);
        let snap = snapshot(
            at(10_000),
            (1..=80).map(|t| task(t, "worker", 4096, None)).collect(),
            vec![span(42, TARGET, "handle_the_incoming_request")],
        );
        let mut e = exporter(ExportConfig::default().graph_top_edges(300));
        e.windows_with(&snap, false, Some(&live));
        let resource = ResourceAttributesWithSchema::from(&e.resource);
        let mut q = std::mem::take(&mut *e.queue.spans.lock().unwrap());
        assert_eq!(q.len(), 81, "80 window spans and the window's root");
        let (mut requests, mut total) = (0, 0);
        while !q.is_empty() {
            let (batch, oversized) = take_batch(&mut q);
            assert_eq!(oversized, 0);
            let estimate: usize = batch.iter().map(span_wire_bytes).sum();
            let req = ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(batch, &resource),
            };
            let bytes = req.encoded_len();
            assert!(bytes < 4 << 20, "request of {bytes} bytes");
            assert!(
                estimate >= bytes,
                "the estimate {estimate} is an upper bound of {bytes}"
            );
            assert!(
                estimate < 2 * bytes,
                "and not a loose one: {estimate} for {bytes}"
            );
            requests += 1;
            total += bytes;
        }
        assert!(
            total > 8 << 20,
            "the window was big enough to need splitting: {total}"
        );
        assert!(requests >= 3, "{requests} requests");
    }

    #[test]
    fn the_window_budget_bounds_edge_events() {
        let mut e = exporter(ExportConfig::default());
        e.edge_event_budget = 150;
        let live = fan_out(&[(1, 100), (2, 100)], 0);
        let snap = snapshot(
            at(10_000),
            vec![task(1, "a", 1, None), task(2, "b", 1, None)],
            Vec::new(),
        );
        e.windows_with(&snap, false, Some(&live));
        let spans = queued(&e);
        let mut events: Vec<usize> = windows(&spans).iter().map(|s| s.events.len()).collect();
        events.sort();
        assert_eq!(events, [50, 100]);
    }

    #[track_caller]
    fn dot_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn each_windows_graph_is_written_as_dot() {
        let dir = scratch("dot_windows");
        let out = dir.join("graphs");
        let mut e = exporter(ExportConfig::default().graph_dot_dir(&out));
        let live = small_graph(at(9000));
        let snap = snapshot(at(10_000), vec![task(7, "worker", 1, None)], Vec::new());
        e.windows_with(&snap, false, Some(&live));
        let name = format!(
            "heapspan-graph-{}-{}.dot",
            std::process::id(),
            (T0 + Duration::from_secs(9)).as_millis()
        );
        assert_eq!(dot_files(&out), std::slice::from_ref(&name));
        assert_eq!(
            std::fs::read_to_string(out.join(&name)).unwrap(),
            to_dot(&live.graph, &DotOptions::default())
        );
        // No graph this window: no file.
        e.windows_with(&snapshot(at(20_000), Vec::new(), Vec::new()), false, None);
        assert_eq!(dot_files(&out).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The points of f64 gauge `name` (the latest value of each).
    fn f64_gauge(e: &Exporter, name: &str) -> Vec<f64> {
        let (_, reader) = e.own_meter.as_ref().unwrap();
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).unwrap();
        let mut out = Vec::new();
        for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
            if m.name() == name {
                match m.data() {
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        out.extend(g.data_points().map(|p| p.value()));
                    }
                    _ => panic!("{name} is not an f64 gauge"),
                }
            }
        }
        out
    }

    #[test]
    fn each_graph_sets_the_node_gauge_and_the_scan_pause() {
        let mut e = exporter(ExportConfig::default());
        let mut live = small_graph(at(9000));
        live.scan.pause = Duration::from_micros(1250);
        let snap = snapshot(at(10_000), vec![task(7, "worker", 4096, None)], Vec::new());
        e.windows_with(&snap, false, Some(&live));
        // small_graph has five nodes; the gauges have no attributes.
        assert_eq!(
            gauge(&e, n::GRAPH_NODES_METRIC, "none"),
            [(String::new(), 5)].into()
        );
        assert_eq!(f64_gauge(&e, n::GRAPH_SCAN_PAUSE), [0.00125]);
        // The next graph replaces both values.
        let mut live = fan_out(&[(7, 3)], 100);
        live.scan.pause = Duration::from_millis(2);
        let snap = snapshot(at(20_000), vec![task(7, "worker", 4096, None)], Vec::new());
        e.windows_with(&snap, false, Some(&live));
        assert_eq!(
            gauge(&e, n::GRAPH_NODES_METRIC, "none"),
            [(String::new(), 4)].into()
        );
        assert_eq!(f64_gauge(&e, n::GRAPH_SCAN_PAUSE), [0.002]);
        // A window without a graph leaves them as they were.
        let snap = snapshot(at(30_000), vec![task(7, "worker", 4096, None)], Vec::new());
        e.windows_with(&snap, false, None);
        assert_eq!(
            gauge(&e, n::GRAPH_NODES_METRIC, "none"),
            [(String::new(), 4)].into()
        );
    }

    #[test]
    fn a_dot_directory_that_cannot_be_written_is_counted_not_fatal() {
        let dir = scratch("dot_failing");
        let out = dir.join("graphs");
        let mut e = exporter(ExportConfig::default().graph_dot_dir(&out));
        // The directory becomes a file after the settings were checked.
        std::fs::write(&out, b"not a directory").unwrap();
        for ms in [10_000, 20_000] {
            let snap = snapshot(at(ms), vec![task(7, "worker", ms, None)], Vec::new());
            e.windows_with(&snap, false, Some(&small_graph(at(ms - 1000))));
        }
        assert_eq!(
            windows(&queued(&e)).len(),
            2,
            "the window spans still go out"
        );
        e.metrics(&snapshot(at(20_000), Vec::new(), Vec::new()));
        let dropped = gauge(&e, n::TRACKER_DROPPED, n::DROP_REASON);
        assert_eq!(dropped[n::DROP_REASON_GRAPH_DOT_FAILED], 2);
        assert_eq!(dropped[n::DROP_REASON_EXPORT_FAILED], 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The points of u64 counter `name`: (`heapspan.span.name`, `heapspan.span.group`, value).
    fn span_points(e: &Exporter, name: &str) -> Vec<(String, Option<String>, u64)> {
        let (_, reader) = e.own_meter.as_ref().unwrap();
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).unwrap();
        let mut out = Vec::new();
        for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
            if m.name() != name {
                continue;
            }
            let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() else {
                panic!("{name} is not an u64 counter");
            };
            for p in s.data_points() {
                let get = |key: &str| {
                    p.attributes()
                        .find(|kv| kv.key.as_str() == key)
                        .map(|kv| kv.value.to_string())
                };
                out.push((get(n::SPAN_NAME).unwrap(), get(n::SPAN_GROUP), p.value()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn span_metrics_have_a_series_per_group_under_the_name_cap() {
        let mut e = exporter(ExportConfig::default().max_span_names(3));
        let group =
            |name: &'static str, group: crate::SpanGroup, bytes: u64| crate::SpanGroupStats {
                name,
                target: "app",
                group,
                instances: 1,
                closed: 1,
                mem: MemStats {
                    allocated_bytes: bytes,
                    allocations: 1,
                    ..MemStats::default()
                },
            };
        let route = |r: &str| crate::SpanGroup::with_fields(vec![("http.route", r.into())]);
        let mut snap = snapshot(at(10_000), Vec::new(), Vec::new());
        snap.span_groups = vec![
            group("request", route("/leak"), 5000),
            group("request", crate::SpanGroup::default(), 300),
            group("request", crate::SpanGroup::other(), 200),
            group("parse", crate::SpanGroup::default(), 100),
        ];
        e.metrics(&snap);
        let s = |x: &str| x.to_owned();
        assert_eq!(
            span_points(&e, n::SPAN_MEMORY_ALLOCATED),
            vec![
                (s("app::request"), None, 300),
                (s("app::request"), Some(s("http.route=/leak")), 5000),
                (s("app::request"), Some(s(n::OTHER)), 200),
                // The fourth series is beyond the cap of 3: `other`, with no group.
                (s(n::OTHER), None, 100),
            ]
        );
        // The next collection adds the deltas to the series each group was given.
        snap.span_groups[0].mem.allocated_bytes = 6000;
        e.metrics(&snap);
        assert!(span_points(&e, n::SPAN_MEMORY_ALLOCATED).contains(&(
            s("app::request"),
            Some(s("http.route=/leak")),
            6000
        )));
    }

    #[test]
    fn the_guard_can_live_in_a_static() {
        fn sync_send<T: Sync + Send>() {}
        sync_send::<super::ExportHandle>();
        sync_send::<crate::Guard>();
    }
}
