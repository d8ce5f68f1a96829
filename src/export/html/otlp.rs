//! The HTML view of a run captured in an OTLP JSON file (heapspan's file sink: one
//! `ExportMetricsServiceRequest` or `ExportTraceServiceRequest` per line, the protobuf JSON
//! mapping): the live-bytes metrics give the time series, the `heapspan.process.window` spans
//! the run's figures, the `heapspan.finding` spans the findings, and the `heapspan.edge` events
//! of the window spans the graph around each finding's roots
//! ([`names::FINDING_ROOTS`](crate::export::names::FINDING_ROOTS)).
//!
//! The file is read three times, line by line (a long run's file is never held whole): the
//! figures and findings first, then which windows have edges at the findings' roots, then the
//! edges of the window chosen for each finding. A line that does not parse (a run killed
//! while writing its last one) is counted and said on the page.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::Path;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::model::{
    edge_kind, float_text, sort_findings, EdgeView, FindingView, GraphView, Header, NodeView,
    Point, Series, View,
};
use super::{GRAPH_NODES, HISTORY_WINDOWS, MAX_FINDINGS};
use crate::error::{Error, Result};
use crate::export::names as n;

/// The attributes of a finding span that are not its kind's evidence.
const FINDING_CORE: [&str; 18] = [
    n::FINDING_KIND,
    n::FINDING_SEVERITY,
    n::FINDING_SCORE,
    n::FINDING_CONFIDENCE,
    n::FINDING_VERDICT,
    n::FINDING_BYTES,
    n::FINDING_ALLOCATIONS,
    n::FINDING_ID,
    n::FINDING_WINDOWS,
    n::FINDING_SUMMARY,
    n::FINDING_FROM_GRAPH,
    n::FINDING_HOLDER,
    n::FINDING_HOLDER_CLASS,
    n::FINDING_ROOTS,
    n::TOKIO_TASK_NAME,
    n::SPAN_NAME,
    n::CODE_FILE_PATH,
    n::CODE_LINE_NUMBER,
];

fn value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(attrs: &[KeyValue], key: &str) -> Option<String> {
    match value(attrs, key)? {
        Any::StringValue(s) => Some(s.clone()),
        other => Some(any_text(other)),
    }
}

fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match value(attrs, key)? {
        Any::IntValue(i) => Some(*i),
        Any::DoubleValue(x) => Some(*x as i64),
        Any::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn float(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match value(attrs, key)? {
        Any::DoubleValue(x) => Some(*x),
        Any::IntValue(i) => Some(*i as f64),
        Any::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn boolean(attrs: &[KeyValue], key: &str) -> Option<bool> {
    match value(attrs, key)? {
        Any::BoolValue(b) => Some(*b),
        Any::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// An attribute value as text (floats as the findings print them).
fn any_text(v: &Any) -> String {
    match v {
        Any::StringValue(s) => s.clone(),
        Any::BoolValue(b) => b.to_string(),
        Any::IntValue(i) => i.to_string(),
        Any::DoubleValue(x) => float_text(*x),
        Any::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|v| v.value.as_ref())
            .map(any_text)
            .collect::<Vec<_>>()
            .join(", "),
        Any::KvlistValue(l) => l
            .values
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    kv.value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map(any_text)
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Any::BytesValue(b) => format!("{} bytes", b.len()),
        Any::StringValueStrindex(i) => format!("string #{i}"),
    }
}

/// Allocation ids (i64 on the wire, the same 64 bits) of an array attribute.
fn ids(attrs: &[KeyValue], key: &str) -> Vec<u64> {
    match value(attrs, key) {
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match v.value {
                Some(Any::IntValue(i)) => Some(i as u64),
                _ => None,
            })
            .collect(),
        Some(Any::IntValue(i)) => vec![*i as u64],
        _ => Vec::new(),
    }
}

/// One line of the file, parsed.
enum Line {
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Unread,
}

fn parse(line: &str) -> Option<Line> {
    let t = line.trim();
    if t.is_empty() {
        return None;
    }
    Some(if t.contains("\"resourceSpans\"") {
        serde_json::from_str(t).map_or(Line::Unread, Line::Traces)
    } else if t.contains("\"resourceMetrics\"") {
        serde_json::from_str(t).map_or(Line::Unread, Line::Metrics)
    } else {
        Line::Unread
    })
}

/// Each line of the file at `path`.
fn each_line(path: &Path, mut f: impl FnMut(Line)) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| read_err(path, e.to_string()))?;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| read_err(path, e.to_string()))?;
        if let Some(l) = parse(&line) {
            f(l);
        }
    }
    Ok(())
}

fn read_err(path: &Path, detail: String) -> Error {
    Error::HtmlReport {
        what: "read",
        path: path.to_owned(),
        detail,
    }
}

fn spans(req: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
}

/// A finding span, with where it sits.
struct FoundSpan {
    view: FindingView,
    trace: Vec<u8>,
    end_ns: u64,
}

/// What the first reading gathers.
#[derive(Default)]
struct Gathered {
    service: Option<String>,
    lines: u64,
    unread: u64,
    task_points: Vec<Point>,
    span_points: Vec<Point>,
    tracker: Option<(u64, u64)>,
    dropped: BTreeMap<String, (u64, u64)>,
    windows: u64,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    /// The latest window root's figures: (end, live, peak).
    last_root: Option<(u64, i64, u64)>,
    allocated: u64,
    freed: u64,
    allocations: u64,
    exact: Option<bool>,
    /// Window end by trace (each window is one trace).
    window_end: HashMap<Vec<u8>, u64>,
    findings: HashMap<String, FoundSpan>,
}

fn resource_service(attrs: &[KeyValue]) -> Option<String> {
    string(attrs, "service.name")
}

impl Gathered {
    fn metrics(&mut self, req: &ExportMetricsServiceRequest) {
        for rm in &req.resource_metrics {
            if self.service.is_none() {
                self.service = rm
                    .resource
                    .as_ref()
                    .and_then(|r| resource_service(&r.attributes));
            }
            let mut tasks: Vec<(String, i64)> = Vec::new();
            let mut spans: Vec<(String, i64)> = Vec::new();
            let mut at = [0u64; 2];
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let points = match &m.data {
                    Some(Data::Sum(s)) => &s.data_points,
                    Some(Data::Gauge(g)) => &g.data_points,
                    _ => continue,
                };
                for p in points {
                    let v = match p.value {
                        Some(Number::AsInt(i)) => i,
                        Some(Number::AsDouble(x)) => x as i64,
                        None => continue,
                    };
                    let t = p.time_unix_nano;
                    match m.name.as_str() {
                        n::TASK_MEMORY_LIVE => {
                            let name = string(&p.attributes, n::TOKIO_TASK_NAME)
                                .unwrap_or_else(|| "unnamed".to_owned());
                            tasks.push((name, v));
                            at[0] = at[0].max(t);
                        }
                        n::SPAN_MEMORY_LIVE => {
                            let name = string(&p.attributes, n::SPAN_NAME)
                                .unwrap_or_else(|| n::OTHER.to_owned());
                            spans.push((name, v));
                            at[1] = at[1].max(t);
                        }
                        n::TRACKER_MEMORY if self.tracker.is_none_or(|(t0, _)| t >= t0) => {
                            self.tracker = Some((t, v.max(0) as u64));
                        }
                        n::TRACKER_DROPPED => {
                            let reason = string(&p.attributes, n::DROP_REASON)
                                .unwrap_or_else(|| "unknown".to_owned());
                            let e = self.dropped.entry(reason).or_insert((0, 0));
                            if t >= e.0 {
                                *e = (t, v.max(0) as u64);
                            }
                        }
                        _ => {}
                    }
                }
            }
            for (points, figures, t) in [
                (&mut self.task_points, &tasks, at[0]),
                (&mut self.span_points, &spans, at[1]),
            ] {
                if !figures.is_empty() {
                    let ms = i64::try_from(t / 1_000_000).unwrap_or(i64::MAX);
                    points.push(Point::of(ms, figures.iter().map(|(k, v)| (k.as_str(), *v))));
                }
            }
        }
    }

    fn traces(&mut self, req: &ExportTraceServiceRequest) {
        if self.service.is_none() {
            self.service = req
                .resource_spans
                .iter()
                .find_map(|r| r.resource.as_ref())
                .and_then(|r| resource_service(&r.attributes));
        }
        for s in spans(req) {
            match s.name.as_str() {
                n::PROCESS_WINDOW_SPAN => self.window_root(s),
                n::FINDING_SPAN => self.finding(s),
                _ => {}
            }
        }
    }

    fn window_root(&mut self, s: &Span) {
        let a = &s.attributes;
        self.windows += 1;
        let start = int(a, n::WINDOW_START).map_or(s.start_time_unix_nano, |v| v.max(0) as u64);
        let end = int(a, n::WINDOW_END).map_or(s.end_time_unix_nano, |v| v.max(0) as u64);
        self.start_ns = Some(self.start_ns.map_or(start, |x| x.min(start)));
        self.end_ns = Some(self.end_ns.map_or(end, |x| x.max(end)));
        self.window_end.insert(s.trace_id.clone(), end);
        let pos = |k| int(a, k).unwrap_or(0).max(0) as u64;
        self.allocated = self.allocated.saturating_add(pos(n::MEMORY_ALLOCATED));
        self.freed = self.freed.saturating_add(pos(n::MEMORY_FREED));
        self.allocations = self.allocations.saturating_add(pos(n::ALLOCATIONS));
        if self.last_root.is_none_or(|(e, ..)| end >= e) {
            self.last_root = Some((
                end,
                int(a, n::MEMORY_LIVE).unwrap_or(0),
                pos(n::MEMORY_PEAK),
            ));
        }
        if let Some(x) = boolean(a, n::WINDOW_EXACT) {
            self.exact = Some(self.exact.unwrap_or(true) && x);
        }
    }

    fn finding(&mut self, s: &Span) {
        let a = &s.attributes;
        let Some(id) = string(a, n::FINDING_ID) else {
            return;
        };
        if self
            .findings
            .get(&id)
            .is_some_and(|f| f.end_ns > s.end_time_unix_nano)
        {
            return;
        }
        let location = match (string(a, n::CODE_FILE_PATH), int(a, n::CODE_LINE_NUMBER)) {
            (Some(f), Some(l)) => Some(format!("{f}:{l}")),
            (Some(f), None) => Some(f),
            _ => None,
        };
        let core: HashSet<&str> = FINDING_CORE.into_iter().collect();
        let view = FindingView {
            id: id.clone(),
            kind: string(a, n::FINDING_KIND).unwrap_or_default(),
            severity: string(a, n::FINDING_SEVERITY).unwrap_or_default(),
            score: float(a, n::FINDING_SCORE).unwrap_or(0.0),
            confidence: float(a, n::FINDING_CONFIDENCE).unwrap_or(0.0),
            verdict: string(a, n::FINDING_VERDICT).unwrap_or_default(),
            bytes: int(a, n::FINDING_BYTES).unwrap_or(0).max(0) as u64,
            allocations: int(a, n::FINDING_ALLOCATIONS).unwrap_or(0).max(0) as u64,
            windows: int(a, n::FINDING_WINDOWS).unwrap_or(0).max(0) as u64,
            from_graph: boolean(a, n::FINDING_FROM_GRAPH).unwrap_or(false),
            task: string(a, n::TOKIO_TASK_NAME),
            span: string(a, n::SPAN_NAME),
            location,
            holder: string(a, n::FINDING_HOLDER),
            holder_class: string(a, n::FINDING_HOLDER_CLASS),
            summary: string(a, n::FINDING_SUMMARY).unwrap_or_default(),
            evidence: a
                .iter()
                .filter(|kv| !core.contains(kv.key.as_str()))
                .filter_map(|kv| {
                    let v = kv.value.as_ref()?.value.as_ref()?;
                    Some((kv.key.clone(), any_text(v)))
                })
                .collect(),
            roots: ids(a, n::FINDING_ROOTS),
            graph: None,
            graph_missing: None,
        };
        self.findings.insert(
            id,
            FoundSpan {
                view,
                trace: s.trace_id.clone(),
                end_ns: s.end_time_unix_nano,
            },
        );
    }
}

/// One `heapspan.edge` event, with the task of the window span it is on.
struct EdgeRec {
    edge: EdgeView,
    from_size: Option<u64>,
    to_size: Option<u64>,
    from_span: Option<String>,
    to_span: Option<String>,
    from_site: Option<String>,
    to_site: Option<String>,
    /// The task of the window span, when both ends are its (the edge does not cross tasks).
    task: Option<String>,
}

/// The edge events of the window spans (and their `heapspan.window.edges` children) of `req`,
/// with their trace.
fn edges(req: &ExportTraceServiceRequest) -> impl Iterator<Item = (&Vec<u8>, EdgeRec)> {
    spans(req)
        .filter(|s| s.name == n::WINDOW_SPAN || s.name == n::WINDOW_EDGES_SPAN)
        .flat_map(|s| {
            let task = string(&s.attributes, n::TOKIO_TASK_NAME);
            s.events
                .iter()
                .filter(|e| e.name == n::EDGE_EVENT)
                .filter_map(move |e| {
                    let a = &e.attributes;
                    let size = |k| int(a, k).map(|v| v.max(0) as u64);
                    let cross = boolean(a, n::EDGE_CROSS_TASK).unwrap_or(true);
                    Some((
                        &s.trace_id,
                        EdgeRec {
                            edge: EdgeView {
                                from: int(a, n::EDGE_FROM)? as u64,
                                to: int(a, n::EDGE_TO)? as u64,
                                kind: string(a, n::EDGE_KIND).unwrap_or_default(),
                                confidence: float(a, n::EDGE_CONFIDENCE).unwrap_or(0.0),
                                bytes: size(n::EDGE_BYTES).unwrap_or(0),
                            },
                            from_size: size(n::EDGE_FROM_SIZE),
                            to_size: size(n::EDGE_TO_SIZE),
                            from_span: string(a, n::EDGE_FROM_SPAN),
                            to_span: string(a, n::EDGE_TO_SPAN),
                            from_site: string(a, n::EDGE_FROM_LOCATION),
                            to_site: string(a, n::EDGE_TO_LOCATION),
                            task: if cross { None } else { task.clone() },
                        },
                    ))
                })
        })
}

/// The surface of `roots` among one window's `edges`: the ownership closure walked
/// breadth-first from the roots over the exported ownership edges (the same walk as
/// [`Graph::ownership_closure_of`](crate::graph::Graph::ownership_closure_of), which the file
/// cannot rebuild: it holds edges, not the graph), the first [`GRAPH_NODES`] nodes, and the
/// edges among them.
fn surface(roots: &[u64], edges: &[EdgeRec], source: String) -> GraphView {
    let mut out: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut info: HashMap<u64, NodeView> = HashMap::new();
    for r in edges {
        let e = &r.edge;
        if edge_kind(&e.kind).is_some_and(|k| k.is_ownership()) {
            out.entry(e.from).or_default().push(e.to);
        }
        for (id, size, span, site) in [
            (e.from, r.from_size, &r.from_span, &r.from_site),
            (e.to, r.to_size, &r.to_span, &r.to_site),
        ] {
            let n = info.entry(id).or_insert_with(|| NodeView {
                id,
                ..NodeView::default()
            });
            n.bytes = n.bytes.or(size);
            n.span = n.span.clone().or_else(|| span.clone());
            n.site = n.site.clone().or_else(|| site.clone());
            n.task = n.task.clone().or_else(|| r.task.clone());
        }
    }
    let budget = 10 * GRAPH_NODES;
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for &r in roots {
        if seen.insert(r) {
            order.push(r);
        }
    }
    let mut truncated = false;
    let mut queue: VecDeque<u64> = order.iter().copied().collect();
    'walk: while let Some(v) = queue.pop_front() {
        for &t in out.get(&v).map_or(&[][..], |v| v) {
            if seen.contains(&t) {
                continue;
            }
            if order.len() >= budget {
                truncated = true;
                break 'walk;
            }
            seen.insert(t);
            order.push(t);
            queue.push_back(t);
        }
    }
    let nodes = order
        .iter()
        .map(|id| {
            let mut n = info.get(id).cloned().unwrap_or(NodeView {
                id: *id,
                ..NodeView::default()
            });
            n.root = roots.contains(id);
            n
        })
        .collect();
    GraphView::bounded(
        nodes,
        edges.iter().map(|r| r.edge.clone()),
        !truncated,
        source,
    )
}

/// Reads the OTLP JSON file at `path` into the view.
pub(crate) fn read(path: &Path) -> Result<View> {
    let mut g = Gathered::default();
    each_line(path, |l| {
        g.lines += 1;
        match l {
            Line::Metrics(m) => g.metrics(&m),
            Line::Traces(t) => g.traces(&t),
            Line::Unread => g.unread += 1,
        }
    })?;
    if g.lines == g.unread {
        return Err(read_err(
            path,
            "no OTLP JSON line in it (heapspan's file sink writes one request per line: \
             ExportConfig::file, HEAPSPAN_OTLP_FILE)"
                .to_owned(),
        ));
    }
    // The findings, the highest score first, at most MAX_FINDINGS.
    let mut found: Vec<FoundSpan> = g.findings.drain().map(|(_, f)| f).collect();
    found.sort_by(|a, b| {
        b.view
            .score
            .total_cmp(&a.view.score)
            .then(a.view.id.cmp(&b.view.id))
    });
    let more_findings = found.len().saturating_sub(MAX_FINDINGS);
    found.truncate(MAX_FINDINGS);
    // Second reading: which windows have edges at each finding's roots.
    let wanted: HashMap<u64, Vec<usize>> = {
        let mut m: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, f) in found
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.view.roots.is_empty())
        {
            for r in &f.view.roots {
                m.entry(*r).or_default().push(i);
            }
        }
        m
    };
    let mut touched: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
    if !wanted.is_empty() {
        each_line(path, |l| {
            if let Line::Traces(t) = l {
                for (trace, r) in edges(&t) {
                    for id in [r.edge.from, r.edge.to] {
                        if let Some(fs) = wanted.get(&id) {
                            touched.entry(trace.clone()).or_default().extend(fs);
                        }
                    }
                }
            }
        })?;
    }
    // Per finding, its window's trace if it has edges at the roots, else the latest window
    // before it that has, else the earliest after it.
    let mut chosen: HashMap<usize, Vec<u8>> = HashMap::new();
    for (i, f) in found.iter().enumerate() {
        let best = touched
            .iter()
            .filter(|(_, fs)| fs.contains(&i))
            .map(|(trace, _)| {
                let end = g.window_end.get(trace).copied().unwrap_or(0);
                let rank = if *trace == f.trace {
                    (0, 0)
                } else if end <= f.end_ns {
                    (1, u64::MAX - end)
                } else {
                    (2, end)
                };
                (rank, trace)
            })
            .min();
        if let Some((_, t)) = best {
            chosen.insert(i, t.clone());
        }
    }
    // Third reading: the edges of the chosen windows.
    let traces: HashSet<&Vec<u8>> = chosen.values().collect();
    let mut by_trace: HashMap<Vec<u8>, Vec<EdgeRec>> = HashMap::new();
    if !traces.is_empty() {
        each_line(path, |l| {
            if let Line::Traces(t) = l {
                for (trace, r) in edges(&t) {
                    if traces.contains(trace) {
                        by_trace.entry(trace.clone()).or_default().push(r);
                    }
                }
            }
        })?;
    }
    let mut findings: Vec<FindingView> = Vec::with_capacity(found.len());
    for (i, f) in found.into_iter().enumerate() {
        let mut v = f.view;
        if !v.roots.is_empty() {
            match chosen.get(&i).and_then(|t| by_trace.get(t).map(|e| (t, e))) {
                Some((t, e)) => {
                    let end = g.window_end.get(t).copied();
                    let when = end
                        .map(|e| {
                            format!(
                                " of the window ending {}",
                                super::render::utc(i64::try_from(e / 1_000_000).unwrap_or(0))
                            )
                        })
                        .unwrap_or_default();
                    v.graph = Some(surface(
                        &v.roots,
                        e,
                        format!(
                            "From the heapspan.edge events{when} (each task's top edges by \
                             bytes: the surface may be partial)."
                        ),
                    ));
                }
                None => {
                    v.graph_missing = Some(format!(
                        "The file holds no heapspan.edge event at this finding's roots \
                         (allocation ids {}): nothing to draw.",
                        v.roots
                            .iter()
                            .map(|r| format!("#{r}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        findings.push(v);
    }
    sort_findings(&mut findings);
    let mut notes = Vec::new();
    if g.unread > 0 {
        notes.push(format!(
            "{} of {} lines of the file could not be read (not OTLP JSON, or cut short).",
            g.unread, g.lines
        ));
    }
    if more_findings > 0 {
        notes.push(format!(
            "{more_findings} more findings with lower scores are in the file, not shown."
        ));
    }
    let mut tasks = Series {
        points: g.task_points,
    };
    let mut spans = Series {
        points: g.span_points,
    };
    for s in [&mut tasks, &mut spans] {
        s.points.sort_by_key(|p| p.at_ms);
        if s.points.len() > HISTORY_WINDOWS {
            notes.push(format!(
                "A chart shows {HISTORY_WINDOWS} of the file's {} metric exports, spread over \
                 the run.",
                s.points.len()
            ));
            s.thin(HISTORY_WINDOWS);
        }
    }
    let ms = |ns: u64| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX);
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    Ok(View {
        header: Header {
            service: g.service.unwrap_or_else(|| "unknown_service".to_owned()),
            source: format!("Rendered from the OTLP JSON file {file}"),
            start_ms: g.start_ns.map(ms).or(tasks.points.first().map(|p| p.at_ms)),
            end_ms: g.end_ns.map(ms).or(tasks.points.last().map(|p| p.at_ms)),
            windows: g.windows,
            live: g.last_root.map(|(_, live, _)| live),
            peak: g.last_root.map(|(_, _, peak)| peak),
            allocated: (g.windows > 0).then_some(g.allocated),
            freed: (g.windows > 0).then_some(g.freed),
            allocations: (g.windows > 0).then_some(g.allocations),
            tracker_bytes: g.tracker.map(|(_, v)| v),
            dropped: g.dropped.into_iter().map(|(k, (_, v))| (k, v)).collect(),
            exact: g.exact,
            notes,
        },
        tasks,
        spans,
        findings_caption: "Every finding the file reports (its heapspan.finding spans, the \
                           latest figures of each) at or above the reporting score, highest \
                           score first."
            .to_owned(),
        findings,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;
    const S: u64 = 1_000_000_000;

    fn kv(key: &str, v: Value) -> Value {
        json!({ "key": key, "value": v })
    }
    fn s(v: &str) -> Value {
        json!({ "stringValue": v })
    }
    fn i(v: i64) -> Value {
        json!({ "intValue": v.to_string() })
    }
    fn f(v: f64) -> Value {
        json!({ "doubleValue": v })
    }
    fn b(v: bool) -> Value {
        json!({ "boolValue": v })
    }

    fn resource() -> Value {
        json!({ "attributes": [kv("service.name", s("svc <x>"))] })
    }

    fn point(name_key: &str, name: &str, v: i64, t: u64) -> Value {
        json!({ "attributes": [kv(name_key, s(name))], "timeUnixNano": t.to_string(), "asInt": v.to_string() })
    }

    fn metrics(t: u64, planted: i64) -> String {
        json!({ "resourceMetrics": [{ "resource": resource(), "scopeMetrics": [{ "metrics": [
            { "name": n::TASK_MEMORY_LIVE, "unit": "By", "sum": { "aggregationTemporality": 2, "dataPoints": [
                point(n::TOKIO_TASK_NAME, "planted", planted, t),
                point(n::TOKIO_TASK_NAME, n::OTHER, 100, t),
            ]}},
            { "name": n::SPAN_MEMORY_LIVE, "unit": "By", "sum": { "aggregationTemporality": 2, "dataPoints": [
                point(n::SPAN_NAME, "app::request", 1000, t),
                point(n::SPAN_NAME, "app::request", 24, t),
            ]}},
            { "name": n::TRACKER_MEMORY, "unit": "By", "gauge": { "dataPoints": [
                { "timeUnixNano": t.to_string(), "asInt": (t / S % 1000).to_string() },
            ]}},
            { "name": n::TRACKER_DROPPED, "unit": "{event}", "sum": { "aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
                point(n::DROP_REASON, "export_failed", (t / S % 10) as i64, t),
            ]}},
        ]}]}]})
        .to_string()
    }

    fn span(
        trace: &str,
        id: &str,
        name: &str,
        start: u64,
        end: u64,
        attrs: Vec<Value>,
        events: Vec<Value>,
    ) -> Value {
        json!({ "traceId": trace, "spanId": id, "name": name, "kind": 1,
                "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
                "attributes": attrs, "events": events })
    }

    fn edge(from: i64, to: i64, kind: &str, cross: bool, t: u64) -> Value {
        json!({ "timeUnixNano": t.to_string(), "name": n::EDGE_EVENT, "attributes": [
            kv(n::EDGE_KIND, s(kind)), kv(n::EDGE_CONFIDENCE, f(0.9)), kv(n::EDGE_FROM, i(from)),
            kv(n::EDGE_TO, i(to)), kv(n::EDGE_FROM_SIZE, i(48)), kv(n::EDGE_TO_SIZE, i(65_536)),
            kv(n::EDGE_CROSS_TASK, b(cross)), kv(n::EDGE_BYTES, i(64)),
            kv(n::EDGE_FROM_SPAN, s("app::link")),
        ]})
    }

    fn traces(spans: Vec<Value>) -> String {
        json!({ "resourceSpans": [{ "resource": resource(), "scopeSpans": [{ "spans": spans }] }] })
            .to_string()
    }

    fn root(trace: &str, w: u64, live: i64) -> Value {
        let (start, end) = (T0 + (w - 1) * S, T0 + w * S);
        span(
            trace,
            "00000000000000a1",
            n::PROCESS_WINDOW_SPAN,
            start,
            end,
            vec![
                kv(n::WINDOW_START, i(start as i64)),
                kv(n::WINDOW_END, i(end as i64)),
                kv(n::MEMORY_ALLOCATED, i(1000)),
                kv(n::MEMORY_FREED, i(10)),
                kv(n::ALLOCATIONS, i(3)),
                kv(n::MEMORY_LIVE, i(live)),
                kv(n::MEMORY_PEAK, i(live + 1)),
                kv(n::WINDOW_EXACT, b(true)),
            ],
            vec![],
        )
    }

    fn finding(trace: &str, w: u64, id: &str, bytes: i64, roots: &[i64]) -> Value {
        let mut attrs = vec![
            kv(n::FINDING_KIND, s("refcount.unreachable_cycle")),
            kv(n::FINDING_SEVERITY, s("high")),
            kv(n::FINDING_SCORE, f(0.95)),
            kv(n::FINDING_CONFIDENCE, f(0.9)),
            kv(n::FINDING_VERDICT, s("confirmed")),
            kv(n::FINDING_BYTES, i(bytes)),
            kv(n::FINDING_ALLOCATIONS, i(2)),
            kv(n::FINDING_ID, s(id)),
            kv(n::FINDING_WINDOWS, i(w as i64)),
            kv(n::FINDING_SUMMARY, s("a cycle")),
            kv(n::FINDING_FROM_GRAPH, b(true)),
            kv(n::TOKIO_TASK_NAME, s("cycler")),
            kv(n::CODE_FILE_PATH, s("src/main.rs")),
            kv(n::CODE_LINE_NUMBER, i(7)),
            kv(n::FINDING_HOLDER, s("the cycle itself")),
            kv(n::FINDING_HOLDER_CLASS, s("cycle")),
            kv(n::FINDING_CYCLE_MEMBERS, i(2)),
            kv(n::FINDING_RATE, f(0.5)),
        ];
        if !roots.is_empty() {
            attrs.push(kv(n::FINDING_ROOTS, json!({ "arrayValue": { "values": roots.iter().map(|r| i(*r)).collect::<Vec<_>>() } })));
        }
        span(
            trace,
            "00000000000000f1",
            n::FINDING_SPAN,
            T0 + (w - 1) * S,
            T0 + w * S,
            attrs,
            vec![],
        )
    }

    const A: &str = "0000000000000000000000000000000a";
    const B: &str = "0000000000000000000000000000000b";
    const C: &str = "0000000000000000000000000000000c";

    fn file(name: &str, lines: &[String]) -> std::path::PathBuf {
        let dir = crate::export::graph::tests::scratch(name);
        let p = dir.join("run.jsonl");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    #[test]
    fn a_file_gives_series_header_findings_and_the_surface_from_the_nearest_window_with_edges() {
        let w1 = T0 + S;
        let lines = [
            metrics(w1, 3 << 20),
            // Window 1 (trace A): the cycle's edges on the cycler's window span; a task that
            // is not the cycler's has its own edges.
            traces(vec![
                root(A, 1, 4000),
                span(
                    A,
                    "00000000000000b1",
                    n::WINDOW_SPAN,
                    T0,
                    w1,
                    vec![kv(n::TOKIO_TASK_NAME, s("cycler"))],
                    vec![
                        edge(1, 2, "rc_clone", false, w1),
                        edge(2, 1, "rc_clone", false, w1),
                        edge(1, 3, "owns", false, w1),
                        edge(2, 4, "owns", true, w1),
                        edge(3, 5, "slice", false, w1),
                    ],
                ),
                span(
                    A,
                    "00000000000000b2",
                    n::WINDOW_SPAN,
                    T0,
                    w1,
                    vec![kv(n::TOKIO_TASK_NAME, s("other"))],
                    vec![edge(90, 91, "owns", false, w1)],
                ),
                // An earlier report of the finding.
                finding(A, 1, "00000000000000aa", 1000, &[1, 2]),
            ]),
            "{\"resourceSpans\": [cut short".to_owned(),
            metrics(T0 + 2 * S, 3 << 20),
            // Window 2 (trace B): no edges; the finding's latest figures.
            traces(vec![
                root(B, 2, 5000),
                finding(B, 2, "00000000000000aa", 2048, &[1, 2]),
            ]),
            // Window 3 (trace C): a finding whose roots no edge touches, and one with none.
            traces(vec![
                root(C, 3, 6000),
                finding(C, 3, "00000000000000bb", 10, &[77]),
                finding(C, 3, "00000000000000cc", 10, &[]),
            ]),
        ];
        let v = read(&file("html_otlp", &lines)).unwrap();
        let h = &v.header;
        assert_eq!(h.service, "svc <x>");
        assert_eq!(h.windows, 3);
        assert_eq!(h.start_ms, Some((T0 / 1_000_000) as i64));
        assert_eq!(h.end_ms, Some(((T0 + 3 * S) / 1_000_000) as i64));
        assert_eq!(
            (h.live, h.peak),
            (Some(6000), Some(6001)),
            "the last window's"
        );
        assert_eq!(
            (h.allocated, h.freed, h.allocations),
            (Some(3000), Some(30), Some(9))
        );
        assert_eq!(h.tracker_bytes, Some(2), "the latest gauge point");
        assert_eq!(h.dropped, [("export_failed".to_owned(), 2)]);
        assert_eq!(h.exact, Some(true));
        assert_eq!(h.notes.len(), 1, "{:?}", h.notes);
        assert!(h.notes[0].starts_with("1 of 6 lines"), "{:?}", h.notes);

        assert_eq!(v.tasks.points.len(), 2);
        assert_eq!(v.tasks.points[0].named, [("planted".to_owned(), 3 << 20)]);
        assert_eq!(
            v.tasks.points[0].other, 100,
            "the exporter's `other` series"
        );
        assert_eq!(
            v.spans.points[1].named,
            [("app::request".to_owned(), 1024)],
            "groups add up"
        );

        let ids: Vec<&str> = v.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["00000000000000aa", "00000000000000bb", "00000000000000cc"]
        );
        let f = &v.findings[0];
        assert_eq!(f.bytes, 2048, "the latest report of the finding");
        assert_eq!(f.location.as_deref(), Some("src/main.rs:7"));
        assert_eq!(f.roots, [1, 2]);
        assert_eq!(
            f.evidence,
            [
                (n::FINDING_CYCLE_MEMBERS.to_owned(), "2".to_owned()),
                (n::FINDING_RATE.to_owned(), "0.500".to_owned())
            ],
            "every attribute that is not a core one, as the end-of-run page has it"
        );
        let g = f.graph.as_ref().expect("the surface from window 1's edges");
        let nodes: Vec<(u64, bool)> = g.nodes.iter().map(|n| (n.id, n.root)).collect();
        // The closure walks ownership edges only: #5 hangs from a slice (a borrow).
        assert_eq!(nodes, [(1, true), (2, true), (3, false), (4, false)]);
        assert_eq!(g.nodes[0].bytes, Some(48));
        assert_eq!(g.nodes[2].bytes, Some(65_536));
        assert_eq!(g.nodes[0].task.as_deref(), Some("cycler"));
        assert_eq!(
            g.nodes[3].task, None,
            "a cross-task edge does not say whose end it is"
        );
        assert_eq!(g.nodes[0].span.as_deref(), Some("app::link"));
        assert_eq!(g.edges.len(), 4);
        assert!(
            g.source.contains("window ending 2023-11-14 22:13:21 UTC"),
            "{}",
            g.source
        );
        assert!(v.findings[1]
            .graph_missing
            .as_deref()
            .unwrap()
            .contains("#77"));
        assert!(v.findings[2].graph.is_none() && v.findings[2].graph_missing.is_none());
    }

    #[test]
    fn a_file_that_is_not_heapspans_is_an_error_naming_it() {
        let p = file(
            "html_otlp_bad",
            &["not json".to_owned(), "{\"x\": 1}".to_owned()],
        );
        let e = read(&p).unwrap_err();
        assert!(matches!(e, Error::HtmlReport { what: "read", .. }));
        assert!(e.to_string().contains("no OTLP JSON line in it"), "{e}");
        let missing = p.with_file_name("missing.jsonl");
        let e = read(&missing).unwrap_err();
        assert!(
            e.to_string().starts_with("HTML report: could not read"),
            "{e}"
        );
    }
}
