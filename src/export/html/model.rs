//! The view model of the HTML view: what the page shows, built either from a running
//! heapspan's windows ([`super::run`]) or from an OTLP JSON file ([`super::otlp`]), then drawn
//! by one function ([`super::render::page`]).

use super::{CHART_SERIES, GRAPH_EDGES, GRAPH_NODES, SERIES_NAMES_KEPT};
use crate::export::names as n;
use crate::graph::EdgeKind;

/// Everything the page shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct View {
    pub(crate) header: Header,
    /// Live bytes per task name ([`n::TOKIO_TASK_NAME`]) over time.
    pub(crate) tasks: Series,
    /// Live bytes per span name ([`n::SPAN_NAME`], `target::name`) over time.
    pub(crate) spans: Series,
    /// Which findings these are (the last window's, or every one the file reports).
    pub(crate) findings_caption: String,
    /// Highest score first.
    pub(crate) findings: Vec<FindingView>,
}

/// The run at a glance.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Header {
    /// `service.name`.
    pub(crate) service: String,
    /// Where the figures come from, in words.
    pub(crate) source: String,
    /// Start and end of the run (first window's start, last window's end), Unix milliseconds.
    pub(crate) start_ms: Option<i64>,
    pub(crate) end_ms: Option<i64>,
    /// Windows cut.
    pub(crate) windows: u64,
    /// The process's figures at the end ([`crate::Snapshot::total`]).
    pub(crate) live: Option<i64>,
    pub(crate) peak: Option<u64>,
    pub(crate) allocated: Option<u64>,
    pub(crate) freed: Option<u64>,
    pub(crate) allocations: Option<u64>,
    /// heapspan's own memory ([`n::TRACKER_MEMORY`]).
    pub(crate) tracker_bytes: Option<u64>,
    /// What heapspan dropped, per reason ([`n::TRACKER_DROPPED`]), every reason it reports.
    pub(crate) dropped: Vec<(String, u64)>,
    /// Whether every figure is exact ([`n::WINDOW_EXACT`]).
    pub(crate) exact: Option<bool>,
    /// Anything the reader should know about the figures (lines left unread, bounds hit).
    pub(crate) notes: Vec<String>,
}

/// One time series table: at each point, the largest names' live bytes and the rest added up.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Series {
    /// Oldest first.
    pub(crate) points: Vec<Point>,
}

/// The live bytes of the names at one moment (a window's end, a metrics export).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Point {
    /// Unix milliseconds.
    pub(crate) at_ms: i64,
    /// The [`SERIES_NAMES_KEPT`] names with the most live bytes, most first.
    pub(crate) named: Vec<(String, i64)>,
    /// The other names' live bytes, added up.
    pub(crate) other: i64,
}

impl Point {
    /// The point of `figures` (name, live bytes) at `at_ms`: the [`SERIES_NAMES_KEPT`] largest
    /// by name (ties by name), the rest (and a name [`n::OTHER`] of the exporter's cap) added
    /// up in `other`. Names given twice are added up (span groups of one name).
    pub(crate) fn of<'a>(at_ms: i64, figures: impl IntoIterator<Item = (&'a str, i64)>) -> Point {
        let mut by_name: std::collections::BTreeMap<&str, i64> = Default::default();
        let mut other = 0i64;
        for (name, live) in figures {
            if name == n::OTHER {
                other = other.saturating_add(live);
            } else {
                let v = by_name.entry(name).or_insert(0);
                *v = v.saturating_add(live);
            }
        }
        let mut named: Vec<(&str, i64)> = by_name.into_iter().collect();
        named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (_, v) in named.iter().skip(SERIES_NAMES_KEPT) {
            other = other.saturating_add(*v);
        }
        named.truncate(SERIES_NAMES_KEPT);
        Point {
            at_ms,
            named: named.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            other,
        }
    }

    fn get(&self, name: &str) -> Option<i64> {
        self.named.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) name: String,
    /// Per point of the series; `None` where the name was not among the point's largest (its
    /// bytes are in that point's `other`).
    pub(crate) values: Vec<Option<i64>>,
    /// The `other` line: every name not drawn, added up.
    pub(crate) is_other: bool,
}

impl Line {
    /// The largest value.
    pub(crate) fn peak(&self) -> i64 {
        self.values.iter().flatten().copied().max().unwrap_or(0)
    }

    /// The value at the last point (`None`: not among the largest there).
    pub(crate) fn last(&self) -> Option<i64> {
        self.values.last().copied().flatten()
    }
}

impl Series {
    /// The chart's lines: the [`CHART_SERIES`] names with the highest peak (ties by name), in
    /// that order, then `other` (every other name, added up, and each point's own `other`)
    /// when it is ever above zero.
    pub(crate) fn lines(&self) -> Vec<Line> {
        let mut peaks: std::collections::BTreeMap<&str, i64> = Default::default();
        for p in &self.points {
            for (name, v) in &p.named {
                let e = peaks.entry(name.as_str()).or_insert(i64::MIN);
                *e = (*e).max(*v);
            }
        }
        let mut ranked: Vec<(&str, i64)> = peaks.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked.truncate(CHART_SERIES);
        let drawn: Vec<&str> = ranked.iter().map(|(k, _)| *k).collect();
        let mut lines: Vec<Line> = drawn
            .iter()
            .map(|name| Line {
                name: (*name).to_owned(),
                values: self.points.iter().map(|p| p.get(name)).collect(),
                is_other: false,
            })
            .collect();
        let other: Vec<Option<i64>> = self
            .points
            .iter()
            .map(|p| {
                let rest: i64 = p
                    .named
                    .iter()
                    .filter(|(k, _)| !drawn.contains(&k.as_str()))
                    .map(|(_, v)| *v)
                    .sum();
                Some(p.other.saturating_add(rest))
            })
            .collect();
        if other.iter().flatten().any(|v| *v > 0) {
            lines.push(Line {
                name: n::OTHER.to_owned(),
                values: other,
                is_other: true,
            });
        }
        lines
    }

    /// At most `max` points, spread evenly over the series (the first and the last kept): a
    /// long file's run, drawn whole.
    pub(crate) fn thin(&mut self, max: usize) {
        let len = self.points.len();
        if len <= max || max < 2 {
            return;
        }
        let keep: Vec<usize> = (0..max).map(|i| i * (len - 1) / (max - 1)).collect();
        let mut k = 0;
        let mut i = 0;
        self.points.retain(|_| {
            let kept = k < keep.len() && keep[k] == i;
            if kept {
                k += 1;
            }
            i += 1;
            kept
        });
    }
}

/// A finding with its evidence, as the page shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FindingView {
    /// [`n::FINDING_ID`].
    pub(crate) id: String,
    pub(crate) kind: String,
    /// Lowercase, as on the wire.
    pub(crate) severity: String,
    pub(crate) score: f64,
    pub(crate) confidence: f64,
    pub(crate) verdict: String,
    pub(crate) bytes: u64,
    pub(crate) allocations: u64,
    pub(crate) windows: u64,
    pub(crate) from_graph: bool,
    pub(crate) task: Option<String>,
    pub(crate) span: Option<String>,
    /// `file:line`.
    pub(crate) location: Option<String>,
    pub(crate) holder: Option<String>,
    pub(crate) holder_class: Option<String>,
    pub(crate) summary: String,
    /// The kind's evidence: attribute name, value as text.
    pub(crate) evidence: Vec<(String, String)>,
    /// Allocation ids of the roots of its danger surface.
    pub(crate) roots: Vec<u64>,
    /// The relation graph around the roots, when known.
    pub(crate) graph: Option<GraphView>,
    /// Why there is no graph, when there is none and the finding has roots.
    pub(crate) graph_missing: Option<String>,
}

/// The order of the findings table: score, then severity, bytes, id.
pub(crate) fn sort_findings(f: &mut [FindingView]) {
    f.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(severity_rank(&b.severity).cmp(&severity_rank(&a.severity)))
            .then(b.bytes.cmp(&a.bytes))
            .then(a.id.cmp(&b.id))
    });
}

/// `info` 0 … `critical` 4 (unknown: 0).
pub(crate) fn severity_rank(s: &str) -> u8 {
    crate::findings::Severity::ALL
        .iter()
        .position(|x| x.as_str() == s)
        .map_or(0, |p| p as u8)
}

/// A float of the findings (scores, evidence ratios), as the terminal report prints evidence.
pub(crate) fn float_text(x: f64) -> String {
    format!("{x:.3}")
}

/// The danger surface of a finding: its roots and what they own, bounded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct GraphView {
    /// At most [`GRAPH_NODES`], the roots first, then breadth-first.
    pub(crate) nodes: Vec<NodeView>,
    /// Edges between those nodes, at most [`GRAPH_EDGES`] (most bytes first).
    pub(crate) edges: Vec<EdgeView>,
    /// Nodes of the surface left out by the bound.
    pub(crate) more: u64,
    /// `more` is a lower bound (the walk stopped counting).
    pub(crate) more_at_least: bool,
    /// Edges between the drawn nodes left out by the bound.
    pub(crate) more_edges: u64,
    /// Where the graph comes from, in words (the window it was taken in).
    pub(crate) source: String,
}

/// One allocation.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct NodeView {
    pub(crate) id: u64,
    /// Its size in bytes, when known.
    pub(crate) bytes: Option<u64>,
    pub(crate) task: Option<String>,
    pub(crate) span: Option<String>,
    /// Where it was allocated (with sites on).
    pub(crate) site: Option<String>,
    pub(crate) root: bool,
}

/// One edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct EdgeView {
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// [`EdgeKind::as_str`].
    pub(crate) kind: String,
    pub(crate) confidence: f64,
    pub(crate) bytes: u64,
}

impl EdgeView {
    /// The kind, when it is one heapspan knows.
    pub(crate) fn edge_kind(&self) -> Option<EdgeKind> {
        edge_kind(&self.kind)
    }
}

/// The [`EdgeKind`] named `s` on the wire.
pub(crate) fn edge_kind(s: &str) -> Option<EdgeKind> {
    EdgeKind::ALL.into_iter().find(|k| k.as_str() == s)
}

impl GraphView {
    /// A surface of `nodes` (the roots first, then breadth-first, as many as the walk found)
    /// and `edges` (any among them): the first [`GRAPH_NODES`] nodes are kept, the edges
    /// between kept nodes (at most [`GRAPH_EDGES`], most bytes first, ties by ends and kind);
    /// `counted_all` says whether `nodes` is the whole surface.
    pub(crate) fn bounded(
        mut nodes: Vec<NodeView>,
        edges: impl IntoIterator<Item = EdgeView>,
        counted_all: bool,
        source: String,
    ) -> GraphView {
        let more = nodes.len().saturating_sub(GRAPH_NODES) as u64;
        nodes.truncate(GRAPH_NODES);
        let kept: std::collections::HashSet<u64> = nodes.iter().map(|n| n.id).collect();
        let mut edges: Vec<EdgeView> = edges
            .into_iter()
            .filter(|e| kept.contains(&e.from) && kept.contains(&e.to))
            .collect();
        edges.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then(a.from.cmp(&b.from))
                .then(a.to.cmp(&b.to))
                .then(a.kind.cmp(&b.kind))
        });
        edges.dedup_by(|a, b| a.from == b.from && a.to == b.to && a.kind == b.kind);
        let more_edges = edges.len().saturating_sub(GRAPH_EDGES) as u64;
        edges.truncate(GRAPH_EDGES);
        GraphView {
            nodes,
            edges,
            more,
            more_at_least: !counted_all,
            more_edges,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_keeps_the_largest_names_and_adds_up_the_rest() {
        let names: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
        let figures = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as i64 * 10))
            .chain([(n::OTHER, 5), ("t29", 1)]);
        let p = Point::of(7, figures);
        assert_eq!(p.at_ms, 7);
        assert_eq!(p.named.len(), SERIES_NAMES_KEPT);
        assert_eq!(
            p.named[0],
            ("t29".to_owned(), 291),
            "a name given twice adds up"
        );
        assert_eq!(p.named[SERIES_NAMES_KEPT - 1], ("t10".to_owned(), 100));
        // t00..t09 (0 + 10 + … + 90 = 450) and the exporter's own `other` (5).
        assert_eq!(p.other, 455);
    }

    fn series(points: &[&[(&str, i64)]]) -> Series {
        Series {
            points: points
                .iter()
                .enumerate()
                .map(|(i, f)| Point::of(i as i64 * 1000, f.iter().copied()))
                .collect(),
        }
    }

    #[test]
    fn the_chart_draws_the_highest_peaks_and_sums_the_rest_as_other() {
        let mut figures: Vec<(String, i64)> = (0..12).map(|i| (format!("n{i:02}"), i)).collect();
        figures.push(("big".into(), 1000));
        let first: Vec<(&str, i64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        // In the second point `big` is gone (freed and forgotten) and `late` appears.
        let mut second = first.clone();
        second.retain(|(k, _)| *k != "big");
        second.push(("late", 500));
        let s = series(&[&first, &second]);
        let lines = s.lines();
        assert_eq!(lines.len(), CHART_SERIES + 1);
        assert_eq!(lines[0].name, "big");
        assert_eq!(lines[0].values, [Some(1000), None]);
        assert_eq!(lines[1].name, "late");
        assert_eq!(lines[1].values, [None, Some(500)]);
        let other = lines.last().unwrap();
        assert!(other.is_other);
        assert_eq!(other.name, n::OTHER);
        // Drawn: big, late, n11 … n04 (8 more); the rest (n00..n03 = 0+1+2+3) is `other`.
        assert_eq!(other.values, [Some(6), Some(6)]);
        // Every point adds up: the drawn values and `other` are the point's total.
        for (i, p) in s.points.iter().enumerate() {
            let total: i64 = p.named.iter().map(|(_, v)| v).sum::<i64>() + p.other;
            let drawn: i64 = lines.iter().filter_map(|l| l.values[i]).sum();
            assert_eq!(drawn, total, "point {i}");
        }
        assert_eq!(lines[0].peak(), 1000);
        assert_eq!(lines[0].last(), None);
        assert_eq!(lines[1].last(), Some(500));
    }

    #[test]
    fn no_other_line_when_every_name_is_drawn() {
        let s = series(&[&[("a", 1), ("b", 2)], &[("a", 3)]]);
        let lines = s.lines();
        assert_eq!(
            lines.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn thinning_keeps_the_ends_and_spreads_the_rest() {
        let mut s = Series {
            points: (0..1000)
                .map(|i| Point {
                    at_ms: i,
                    ..Point::default()
                })
                .collect(),
        };
        s.thin(10);
        let at: Vec<i64> = s.points.iter().map(|p| p.at_ms).collect();
        assert_eq!(at, [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]);
        s.thin(100);
        assert_eq!(s.points.len(), 10, "fewer than the bound: unchanged");
    }

    fn node(id: u64) -> NodeView {
        NodeView {
            id,
            ..NodeView::default()
        }
    }

    fn edge(from: u64, to: u64, bytes: u64) -> EdgeView {
        EdgeView {
            from,
            to,
            kind: "owns".into(),
            confidence: 0.9,
            bytes,
        }
    }

    #[test]
    fn a_surface_is_bounded_and_says_how_much_it_left_out() {
        let nodes: Vec<NodeView> = (1..=GRAPH_NODES as u64 + 7).map(node).collect();
        // A chain 1 → 2 → … and a duplicate edge.
        let mut edges: Vec<EdgeView> = (1..GRAPH_NODES as u64 + 7)
            .map(|i| edge(i, i + 1, i))
            .collect();
        edges.push(edge(1, 2, 1));
        let g = GraphView::bounded(nodes, edges, true, String::new());
        assert_eq!(g.nodes.len(), GRAPH_NODES);
        assert_eq!(g.more, 7);
        assert!(!g.more_at_least);
        // Edges only between kept nodes, each once.
        assert_eq!(g.edges.len(), GRAPH_NODES - 1);
        assert!(g.edges.iter().all(|e| e.to <= GRAPH_NODES as u64));
        assert_eq!(g.more_edges, 0);
        // The edge bound: a star of many edges between kept nodes.
        let nodes: Vec<NodeView> = (1..=40).map(node).collect();
        let edges = (1..=40u64).flat_map(|a| (1..=40u64).map(move |b| edge(a, b, a * 100 + b)));
        let g = GraphView::bounded(nodes, edges, false, String::new());
        assert_eq!(g.edges.len(), GRAPH_EDGES);
        assert_eq!(g.more_edges, 1600 - GRAPH_EDGES as u64);
        assert_eq!(
            (g.edges[0].from, g.edges[0].to),
            (40, 40),
            "most bytes first"
        );
        assert!(g.more_at_least);
    }

    #[test]
    fn findings_sort_by_score_then_severity() {
        let f = |id: &str, score: f64, severity: &str| FindingView {
            id: id.into(),
            score,
            severity: severity.into(),
            ..FindingView::default()
        };
        let mut v = vec![
            f("a", 0.5, "medium"),
            f("b", 0.9, "low"),
            f("c", 0.5, "critical"),
        ];
        sort_findings(&mut v);
        assert_eq!(
            v.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        assert_eq!(severity_rank("critical"), 4);
        assert_eq!(severity_rank("nonsense"), 0);
        assert_eq!(edge_kind("rc_clone"), Some(EdgeKind::RcClone));
        assert_eq!(edge_kind("teleports"), None);
    }
}
