//! The relation graph on the wire: each task's share of a window's graph (its figures and its
//! `heapspan.edge` events), and the DOT files for humans. Driven by [`super::pipeline`] once per
//! window, on the export thread.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::Event;
use opentelemetry::{KeyValue, StringValue, Value};

use super::names as n;
use crate::alloc::header::SPAN_MASK;
use crate::graph::live::LiveGraph;
use crate::graph::{AllocId, DotOptions, Edge};
use crate::Snapshot;

/// DOT files kept per process: older ones it wrote are deleted (about 3 hours at the default
/// 10 s window; a file of 500 edges is well under 100 KiB).
pub(crate) const DOT_FILES_KEPT: usize = 1000;

/// One task's share of a window's graph.
#[derive(Debug, Default)]
struct TaskShare {
    /// Nodes allocated by the task.
    nodes: u64,
    /// Edges with an end allocated by the task.
    edges: u64,
    /// Indices (into the graph's edges) of its top edges, most bytes first.
    top: Vec<usize>,
    /// Their bytes, summed (the order in which tasks draw on the window's event budget).
    top_bytes: u64,
}

/// A window's graph, split by task: what goes on each task's window span.
#[derive(Debug)]
pub(crate) struct GraphWindow<'g> {
    live: &'g LiveGraph,
    tasks: HashMap<u64, TaskShare>,
    /// `target::name` of the spans the exported edges' ends were allocated in, by span uid.
    span_names: HashMap<u64, StringValue>,
    /// Code locations of the exported edges' ends, by site (when sites are captured).
    sites: HashMap<u64, StringValue>,
}

/// The order of [`Graph::top_edges_for_task`](crate::graph::Graph::top_edges_for_task): most
/// bytes first, ties by `from`, `to`, kind (a total order: one edge per `(from, to, kind)`).
fn by_bytes(a: &Edge, b: &Edge) -> Ordering {
    b.bytes
        .cmp(&a.bytes)
        .then(a.from.cmp(&b.from))
        .then(a.to.cmp(&b.to))
        .then(a.kind.cmp(&b.kind))
}

/// Characters of a code location kept on an edge event: demangled generic names can run to
/// kilobytes, and a thousand events share one span and one request.
const MAX_LOCATION_CHARS: usize = 256;

/// `s` cut to `max` characters (on a character boundary), marked with "…" when cut.
fn clip(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Allocation ids on the wire: the id's 64 bits as an i64 (lossless; ids are opaque).
fn id_value(id: AllocId) -> i64 {
    id.0 as i64
}

/// `0..=1` as f64, rounded to 6 decimals: what an f32 confidence holds, without the f32 noise
/// (0.95f32 goes out as 0.95, not 0.949999988079071).
fn confidence(c: f32) -> f64 {
    if c.is_finite() {
        (f64::from(c.clamp(0.0, 1.0)) * 1e6).round() / 1e6
    } else {
        0.0
    }
}

impl<'g> GraphWindow<'g> {
    /// Splits `live` among `tasks` (the ids of the tasks that get a window span): node and
    /// edge counts, and up to `k` top edges each by bytes, `budget` edges in all (tasks whose
    /// top edges hold the most bytes draw on it first; the rest get fewer or none). `snap`
    /// names the spans. One pass over the nodes and one over the edges (a lookup per end),
    /// then a selection per task.
    pub(crate) fn new(
        live: &'g LiveGraph,
        snap: &Snapshot,
        tasks: impl IntoIterator<Item = u64>,
        k: usize,
        budget: usize,
    ) -> Self {
        let g = &live.graph;
        let mut shares: HashMap<u64, TaskShare> = tasks
            .into_iter()
            .map(|t| (t, TaskShare::default()))
            .collect();
        for node in &g.nodes {
            if let Some(s) = shares.get_mut(&node.task) {
                s.nodes = s.nodes.saturating_add(1);
            }
        }
        let task_of = |id: AllocId| g.node(id).map(|n| n.task);
        for (i, e) in g.edges.iter().enumerate() {
            let from = task_of(e.from);
            let to = task_of(e.to).filter(|&t| Some(t) != from);
            for t in [from, to].into_iter().flatten() {
                if let Some(s) = shares.get_mut(&t) {
                    s.edges = s.edges.saturating_add(1);
                    if k > 0 {
                        s.top.push(i);
                    }
                }
            }
        }
        let order = |a: &usize, b: &usize| by_bytes(&g.edges[*a], &g.edges[*b]);
        for s in shares.values_mut() {
            if s.top.len() > k {
                if k == 0 {
                    s.top = Vec::new();
                } else {
                    s.top.select_nth_unstable_by(k - 1, order);
                    s.top.truncate(k);
                    s.top.shrink_to_fit();
                }
            }
            s.top.sort_unstable_by(order);
            s.top_bytes = s
                .top
                .iter()
                .fold(0u64, |acc, &i| acc.saturating_add(g.edges[i].bytes));
        }
        // The window's event budget: the tasks with the heaviest top edges first.
        let mut draw: Vec<(u64, u64)> = shares
            .iter()
            .filter(|(_, s)| !s.top.is_empty())
            .map(|(&t, s)| (s.top_bytes, t))
            .collect();
        draw.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut left = budget;
        for (_, t) in draw {
            if let Some(s) = shares.get_mut(&t) {
                s.top.truncate(left);
                left -= s.top.len();
            }
        }
        // Span names of the exported edges' ends, by span instance (a span whose group changed
        // has blocks under both its words).
        let mut span_names = HashMap::new();
        let mut wanted: Vec<u64> = shares
            .values()
            .flat_map(|s| &s.top)
            .flat_map(|&i| [g.edges[i].from, g.edges[i].to])
            .filter_map(|id| g.node(id))
            .map(|n| n.span & SPAN_MASK)
            .filter(|&s| s != 0)
            .collect();
        if !wanted.is_empty() {
            wanted.sort_unstable();
            wanted.dedup();
            for s in &snap.spans {
                if wanted.binary_search(&(s.id & SPAN_MASK)).is_err() {
                    continue;
                }
                let Some(name) = s.name else { continue };
                let label = match s.target {
                    Some(target) => format!("{target}::{name}"),
                    None => name.to_owned(),
                };
                span_names.insert(s.id & SPAN_MASK, StringValue::from(label));
            }
        }
        // Code locations of the exported edges' ends (symbolized once, then cached).
        let mut sites = HashMap::new();
        for site in shares
            .values()
            .flat_map(|s| &s.top)
            .flat_map(|&i| [g.edges[i].from, g.edges[i].to])
            .filter_map(|id| g.node(id))
            .map(|n| n.site)
            .filter(|&s| s != 0)
        {
            if let std::collections::hash_map::Entry::Vacant(v) = sites.entry(site) {
                if let Some(l) = crate::graph::live::site_location(site) {
                    v.insert(StringValue::from(clip(l.to_string(), MAX_LOCATION_CHARS)));
                }
            }
        }
        GraphWindow {
            live,
            tasks: shares,
            span_names,
            sites,
        }
    }

    /// The window span attributes of `task`: its node and edge counts (0 when it has none) and
    /// the graph's scan figures.
    pub(crate) fn push_task_attributes(&self, task: u64, attrs: &mut Vec<KeyValue>) {
        let share = self.tasks.get(&task);
        let g = &self.live.graph;
        attrs.push(KeyValue::new(
            n::GRAPH_NODES,
            i64_of(share.map_or(0, |s| s.nodes)),
        ));
        attrs.push(KeyValue::new(
            n::GRAPH_EDGES_ATTR,
            i64_of(share.map_or(0, |s| s.edges)),
        ));
        attrs.push(KeyValue::new(
            n::GRAPH_SKIPPED_NODES,
            i64_of(g.skipped.nodes),
        ));
        attrs.push(KeyValue::new(
            n::GRAPH_UNSCANNED_NODES,
            i64_of(g.skipped.unreadable),
        ));
        attrs.push(KeyValue::new(
            n::GRAPH_TRUNCATED_NODES,
            i64_of(g.skipped.truncated_nodes),
        ));
        attrs.push(KeyValue::new(
            n::GRAPH_TRUNCATED_BYTES,
            i64_of(g.skipped.truncated_bytes),
        ));
        attrs.push(KeyValue::new(
            n::GRAPH_UNINDEXED,
            i64_of(self.live.scan.unindexed),
        ));
    }

    /// The edges whose events go on `task`'s window span, most bytes first (indices for
    /// [`GraphWindow::event`]).
    pub(crate) fn top_edges(&self, task: u64) -> &[usize] {
        self.tasks.get(&task).map_or(&[], |s| &s.top)
    }

    /// The `heapspan.edge` event of edge `i`, stamped `at`.
    pub(crate) fn event(&self, i: usize, at: SystemTime) -> Event {
        let g = &self.live.graph;
        let e = &g.edges[i];
        let (from, to) = (g.node(e.from), g.node(e.to));
        let mut a = Vec::with_capacity(11);
        a.push(KeyValue::new(n::EDGE_KIND, e.kind.as_str()));
        a.push(KeyValue::new(n::EDGE_CONFIDENCE, confidence(e.confidence)));
        a.push(KeyValue::new(n::EDGE_CAPABILITY, e.capability.as_str()));
        a.push(KeyValue::new(n::EDGE_FROM, id_value(e.from)));
        a.push(KeyValue::new(n::EDGE_TO, id_value(e.to)));
        if let Some(f) = from {
            a.push(KeyValue::new(n::EDGE_FROM_SIZE, i64_of(f.size as u64)));
        }
        if let Some(t) = to {
            a.push(KeyValue::new(n::EDGE_TO_SIZE, i64_of(t.size as u64)));
        }
        a.push(KeyValue::new(n::EDGE_CROSS_TASK, e.cross_task));
        a.push(KeyValue::new(n::EDGE_BYTES, i64_of(e.bytes)));
        for (key, node) in [(n::EDGE_FROM_SPAN, from), (n::EDGE_TO_SPAN, to)] {
            if let Some(name) = node.and_then(|n| self.span_names.get(&(n.span & SPAN_MASK))) {
                a.push(KeyValue::new(key, Value::String(name.clone())));
            }
        }
        for (key, node) in [(n::EDGE_FROM_LOCATION, from), (n::EDGE_TO_LOCATION, to)] {
            if let Some(l) = node.and_then(|n| self.sites.get(&n.site)) {
                a.push(KeyValue::new(key, Value::String(l.clone())));
            }
        }
        Event::new(n::EDGE_EVENT, at, a, 0)
    }
}

/// Writes each window's graph to `<dir>/heapspan-graph-<pid>-<unix-ms>.dot`, keeping the newest
/// [`DOT_FILES_KEPT`] it wrote.
#[derive(Debug)]
pub(crate) struct DotFiles {
    dir: PathBuf,
    written: VecDeque<PathBuf>,
    /// Files kept ([`DOT_FILES_KEPT`]).
    keep: usize,
    /// Files that could not be written.
    pub(crate) failed: u64,
    warned: bool,
}

impl DotFiles {
    pub(crate) fn new(dir: PathBuf) -> Self {
        DotFiles {
            dir,
            written: VecDeque::new(),
            keep: DOT_FILES_KEPT,
            failed: 0,
            warned: false,
        }
    }

    /// The file a graph taken at `at` goes to.
    pub(crate) fn path(dir: &Path, at: SystemTime) -> PathBuf {
        let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        dir.join(format!("heapspan-graph-{}-{ms}.dot", std::process::id()))
    }

    /// Writes `live` (taken at `at`); a failure is counted, and the first one reported on
    /// stderr.
    /// The danger surfaces of `highlight` (the window's findings' roots) are highlighted.
    pub(crate) fn write(&mut self, live: &LiveGraph, at: SystemTime, highlight: &[AllocId]) {
        let path = Self::path(&self.dir, at);
        match self.try_write(live, &path, highlight) {
            Ok(()) => {
                if self.written.back() != Some(&path) {
                    self.written.push_back(path);
                }
                while self.written.len() > self.keep {
                    if let Some(old) = self.written.pop_front() {
                        let _ = std::fs::remove_file(old);
                    }
                }
            }
            Err(e) => {
                self.failed = self.failed.saturating_add(1);
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "heapspan: writing the relation graph to {} failed ({e}); further \
                         failures are counted in {} (reason {}) without a warning",
                        path.display(),
                        n::TRACKER_DROPPED,
                        n::DROP_REASON_GRAPH_DOT_FAILED,
                    );
                }
            }
        }
    }

    /// Writes a hidden temporary file and renames it, so that a reader never sees half a
    /// graph.
    fn try_write(
        &self,
        live: &LiveGraph,
        path: &Path,
        highlight: &[AllocId],
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let tmp = self.dir.join(format!(
            ".{}.tmp",
            name.as_deref().unwrap_or("heapspan-graph")
        ));
        let dot = live.to_dot(&DotOptions {
            highlight: highlight.to_vec(),
            ..DotOptions::default()
        });
        let r = std::fs::write(&tmp, dot).and_then(|()| std::fs::rename(&tmp, path));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::graph::live::ScanStats;
    use crate::graph::{build, EdgeKind, FlatHeap, GraphConfig, Node};
    use crate::{Buckets, Dropped, MemStats, SizeHistogram, SpanStats};

    #[test]
    fn long_locations_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("short".into(), 8), "short");
        assert_eq!(clip("exactly8".into(), 8), "exactly8");
        assert_eq!(clip("ééééééééé".into(), 8), "éééééééé…");
        let long = "generic<".repeat(1000);
        assert_eq!(
            clip(long, MAX_LOCATION_CHARS).chars().count(),
            MAX_LOCATION_CHARS + 1
        );
    }

    /// A node of `task`, allocated in span `span`.
    fn node(id: u64, addr: usize, size: usize, task: u64, span: u64) -> Node {
        Node {
            task,
            span,
            ..Node::new(AllocId(id), addr, size)
        }
    }

    /// Five allocations: task 7's #1 (span 100, 16 B) owns its #2 (32 B) with a length next to
    /// the pointer (confidence 0.95); task 9's #3 (span 200, 16 B) owns task 7's #4 (span 300,
    /// 64 B) with no length (0.75); task 11's #5 points nowhere. The scan reports 5 unindexed
    /// allocations.
    pub(crate) fn small_graph(taken_at: SystemTime) -> LiveGraph {
        let mut heap = FlatHeap::new(0x1000, 18);
        heap.write(0x1000, 0x1010);
        heap.write(0x1008, 4);
        heap.write(0x1030, 0x1040);
        let nodes = [
            node(1, 0x1000, 16, 7, 100),
            node(2, 0x1010, 32, 7, 0),
            node(3, 0x1030, 16, 9, 200),
            node(4, 0x1040, 64, 7, 300),
            node(5, 0x1080, 16, 11, 0),
        ];
        let mut graph = build(&nodes, &heap, &[], &GraphConfig::default());
        // As a scan reports a node read only up to the per-node cap.
        graph.skipped.truncated_nodes = 1;
        graph.skipped.truncated_bytes = 4096;
        LiveGraph {
            graph,
            taken_at: Some(taken_at),
            scan: ScanStats {
                unindexed: 5,
                ..ScanStats::default()
            },
            task_names: Vec::new(),
        }
    }

    /// Per `(task, n)`: a container of `n` pointers (span `span`) owning `n` 16-byte blocks
    /// (span `span`), all allocated by `task`. Ids count from 1 in layout order: a container,
    /// then its blocks.
    pub(crate) fn fan_out(tasks: &[(u64, usize)], span: u64) -> LiveGraph {
        const BASE: usize = 0x10_0000;
        let words: usize = tasks.iter().map(|&(_, n)| 3 * n).sum();
        let mut heap = FlatHeap::new(BASE, words);
        let mut nodes = Vec::new();
        let mut addr = BASE;
        let mut id = 1;
        for &(task, n) in tasks {
            let container = addr;
            nodes.push(node(id, container, 8 * n, task, span));
            id += 1;
            addr += 8 * n;
            for k in 0..n {
                heap.write(container + 8 * k, addr);
                nodes.push(node(id, addr, 16, task, span));
                id += 1;
                addr += 16;
            }
        }
        LiveGraph {
            graph: build(&nodes, &heap, &[], &GraphConfig::default()),
            taken_at: None,
            scan: ScanStats::default(),
            task_names: Vec::new(),
        }
    }

    /// A snapshot at `taken_at` holding `tasks` and `spans`, nothing else.
    pub(crate) fn snapshot(
        taken_at: SystemTime,
        tasks: Vec<crate::TaskStats>,
        spans: Vec<SpanStats>,
    ) -> Snapshot {
        Snapshot {
            taken_at,
            tasks,
            task_names: Vec::new(),
            spans,
            span_names: Vec::new(),
            span_groups: Vec::new(),
            no_span: MemStats::default(),
            buckets: Buckets::default(),
            total: MemStats::default(),
            allocation_sizes: SizeHistogram::default(),
            dropped: Dropped::default(),
            handoffs: crate::HandOffs::default(),
            tracker_bytes: 0,
        }
    }

    /// A span instance named `target::name`.
    pub(crate) fn span(id: u64, target: &'static str, name: &'static str) -> SpanStats {
        SpanStats {
            id,
            name: Some(name),
            target: Some(target),
            group: crate::SpanGroup::default(),
            parent: 0,
            mem: MemStats::default(),
            opened: None,
            closed: None,
        }
    }

    #[test]
    fn the_top_k_per_task_is_the_graphs_top_k_for_that_task() {
        // Two tasks, each a container of 40 pointers to blocks of varied sizes (some equal,
        // so ties are broken by ids), and a few cross-task pointers.
        const BASE: usize = 0x20_0000;
        let mut heap = FlatHeap::new(BASE, 1 << 14);
        let mut nodes = Vec::new();
        let mut addr = BASE;
        let mut id = 1;
        let mut containers = Vec::new();
        for task in [3u64, 5] {
            let container = addr;
            containers.push(container);
            nodes.push(node(id, container, 8 * 40, task, 0));
            id += 1;
            addr += 8 * 40;
            for k in 0..40usize {
                let size = 16 + 8 * ((k * 7 + task as usize) % 11);
                heap.write(container + 8 * k, addr);
                nodes.push(node(id, addr, size, task, 0));
                id += 1;
                addr += size;
            }
        }
        // The second container's last slot points at the first one's first block instead.
        heap.write(containers[1] + 8 * 39, containers[0] + 8 * 40);
        let live = LiveGraph {
            graph: build(&nodes, &heap, &[], &GraphConfig::default()),
            taken_at: None,
            scan: ScanStats::default(),
            task_names: Vec::new(),
        };
        let snap = snapshot(SystemTime::UNIX_EPOCH, Vec::new(), Vec::new());
        for k in [1, 5, 17, 40, 100] {
            let w = GraphWindow::new(&live, &snap, [3, 5], k, usize::MAX);
            for task in [3u64, 5] {
                let want: Vec<(AllocId, AllocId, EdgeKind)> = live
                    .graph
                    .top_edges_for_task(task, k)
                    .iter()
                    .map(|e| (e.from, e.to, e.kind))
                    .collect();
                let got: Vec<(AllocId, AllocId, EdgeKind)> = w
                    .top_edges(task)
                    .iter()
                    .map(|&i| live.graph.edges[i])
                    .map(|e| (e.from, e.to, e.kind))
                    .collect();
                assert_eq!(got, want, "task {task}, k {k}");
            }
        }
    }

    /// The `heapspan.edge` attributes of [`small_graph`]'s edge: #1 (span `app::request`)
    /// owns #2 (no span), with a length next to the pointer.
    pub(crate) fn owns_1_2_event() -> [(&'static str, Value); 10] {
        [
            (n::EDGE_KIND, Value::from("owns")),
            (n::EDGE_CONFIDENCE, Value::F64(0.95)),
            (n::EDGE_CAPABILITY, Value::from("exclusive")),
            (n::EDGE_FROM, Value::I64(1)),
            (n::EDGE_TO, Value::I64(2)),
            (n::EDGE_FROM_SIZE, Value::I64(16)),
            (n::EDGE_TO_SIZE, Value::I64(32)),
            (n::EDGE_CROSS_TASK, Value::Bool(false)),
            (n::EDGE_BYTES, Value::I64(32)),
            (n::EDGE_FROM_SPAN, Value::from("app::request")),
        ]
    }

    fn attrs(e: &Event) -> HashMap<&str, Value> {
        e.attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect()
    }

    #[test]
    fn each_task_gets_its_nodes_edges_and_top_edges_in_the_graphs_order() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let live = small_graph(t0);
        let g = &live.graph;
        let edges: Vec<_> = g
            .edges
            .iter()
            .map(|e| {
                (
                    e.from.0,
                    e.to.0,
                    e.kind,
                    e.confidence,
                    e.bytes,
                    e.cross_task,
                )
            })
            .collect();
        assert_eq!(
            edges,
            [
                (1, 2, EdgeKind::Owns, 0.95, 32, false),
                (3, 4, EdgeKind::Owns, 0.75, 64, true)
            ]
        );
        let snap = snapshot(t0, Vec::new(), vec![span(100, "app", "request")]);
        let w = GraphWindow::new(&live, &snap, [7, 9, 13], 10, usize::MAX);
        let mut a = Vec::new();
        w.push_task_attributes(7, &mut a);
        assert_eq!(
            a,
            [
                KeyValue::new(n::GRAPH_NODES, 3),
                KeyValue::new(n::GRAPH_EDGES_ATTR, 2),
                KeyValue::new(n::GRAPH_SKIPPED_NODES, 0),
                KeyValue::new(n::GRAPH_UNSCANNED_NODES, 0),
                KeyValue::new(n::GRAPH_TRUNCATED_NODES, 1),
                KeyValue::new(n::GRAPH_TRUNCATED_BYTES, 4096),
                KeyValue::new(n::GRAPH_UNINDEXED, 5),
            ]
        );
        // A task with no node still says so: the graph was taken and holds nothing of it.
        a.clear();
        w.push_task_attributes(13, &mut a);
        assert_eq!(
            a[..2],
            [
                KeyValue::new(n::GRAPH_NODES, 0),
                KeyValue::new(n::GRAPH_EDGES_ATTR, 0)
            ]
        );
        for task in [7, 9, 11, 13] {
            let ours: Vec<&Edge> = w.top_edges(task).iter().map(|&i| &g.edges[i]).collect();
            let graphs = if task == 11 {
                Vec::new()
            } else {
                g.top_edges_for_task(task, 10)
            };
            assert_eq!(ours, graphs, "task {task}");
        }
        // Task 11 has a node but no window span: not split out.
        assert!(w.top_edges(11).is_empty());

        let e = w.event(w.top_edges(7)[1], t0);
        assert_eq!(e.name, n::EDGE_EVENT);
        assert_eq!(e.timestamp, t0);
        assert_eq!(attrs(&e), HashMap::from(owns_1_2_event()));
    }

    #[test]
    fn the_window_budget_goes_to_the_heaviest_tasks_first() {
        // Task 1: 4 blocks of 16 B; task 2: 6 blocks; task 3: 2 blocks. Top 3 each: task 2 and
        // task 1 tie at 48 B (task 1 first by id), task 3 has 32 B.
        let live = fan_out(&[(1, 4), (2, 6), (3, 2)], 0);
        let snap = snapshot(SystemTime::UNIX_EPOCH, Vec::new(), Vec::new());
        let w = GraphWindow::new(&live, &snap, [1, 2, 3], 3, 5);
        assert_eq!(
            [
                w.top_edges(1).len(),
                w.top_edges(2).len(),
                w.top_edges(3).len()
            ],
            [3, 2, 0]
        );
        // Counts are not cut by the budget.
        let mut a = Vec::new();
        w.push_task_attributes(3, &mut a);
        assert_eq!(a[1], KeyValue::new(n::GRAPH_EDGES_ATTR, 2));
        // k = 0: counts only.
        let w = GraphWindow::new(&live, &snap, [1, 2, 3], 0, 5);
        assert!(w.top_edges(2).is_empty());
    }

    #[test]
    fn ids_and_confidences_on_the_wire() {
        assert_eq!(id_value(AllocId(7)), 7);
        assert_eq!(id_value(AllocId(u64::MAX)), -1, "the same 64 bits");
        assert_eq!(confidence(0.95), 0.95);
        assert_eq!(confidence(0.6 * 0.95), 0.57);
        assert_eq!(confidence(1.5), 1.0);
        assert_eq!(confidence(f32::NAN), 0.0);
    }

    #[test]
    fn dot_files_keep_the_newest_and_leave_no_temporary_file() {
        let dir = scratch("dot_retention");
        let live = small_graph(SystemTime::UNIX_EPOCH);
        let mut files = DotFiles::new(dir.clone());
        files.keep = 2;
        let at = |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        for ms in [1000, 2000, 2000, 3000] {
            files.write(&live, at(ms), &[]);
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [2000, 3000].map(|ms| format!("heapspan-graph-{}-{ms}.dot", std::process::id()))
        );
        assert_eq!(files.failed, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh directory for one test.
    #[track_caller]
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("heapspan-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
