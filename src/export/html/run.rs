//! The HTML view of a running heapspan, written when its guard stops: a bounded history of
//! the windows (live bytes per task and span name), the last window's findings and the danger
//! surfaces of their roots, kept on the window stage's thread (never on the allocation path).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::model::{
    float_text, sort_findings, EdgeView, FindingView, GraphView, Header, NodeView, Point, Series,
    View,
};
use super::{FINDING_GRAPHS, GRAPH_NODES, HISTORY_WINDOWS, MAX_FINDINGS};
use crate::findings::{EvidenceValue, Finding, FindingId};
use crate::graph::live::LiveGraph;
use crate::windows::Window;
use crate::{Dropped, MemStats};

/// Nodes of a surface walked at most to count what is left out ("+N more").
const COUNT_BUDGET: usize = 10 * GRAPH_NODES;
/// Characters of a code location kept on a node.
const MAX_SITE_CHARS: usize = 160;

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The figures of the latest window.
#[derive(Debug)]
struct Last {
    at: SystemTime,
    total: MemStats,
    tracker_bytes: u64,
    dropped: Dropped,
    exact: bool,
}

/// What the view keeps of the windows: at most [`HISTORY_WINDOWS`] points per table, the last
/// window's findings (at most [`MAX_FINDINGS`]) and the surfaces of the first
/// [`FINDING_GRAPHS`] of them.
#[derive(Debug)]
pub(crate) struct Recorder {
    service: String,
    min_score: f64,
    start: Option<SystemTime>,
    windows: u64,
    last: Option<Last>,
    tasks: VecDeque<Point>,
    spans: VecDeque<Point>,
    /// The last window's reportable findings, highest score first.
    findings: Vec<FindingView>,
    /// Surfaces by finding, from the latest window that had a graph.
    graphs: HashMap<FindingId, GraphView>,
    ids: Vec<FindingId>,
    /// A window had a graph (the live index is on).
    saw_graph: bool,
}

fn push_bounded(q: &mut VecDeque<Point>, p: Point) {
    if q.len() == HISTORY_WINDOWS {
        q.pop_front();
    }
    q.push_back(p);
}

/// A finding as the view shows it (its graph comes later).
pub(crate) fn finding_view(f: &Finding) -> FindingView {
    FindingView {
        id: f.id.to_string(),
        kind: f.kind.as_str().to_owned(),
        severity: f.severity.as_str().to_owned(),
        score: f.score,
        confidence: f.confidence,
        verdict: f.verdict.as_str().to_owned(),
        bytes: f.bytes,
        allocations: f.allocations,
        windows: u64::from(f.windows),
        from_graph: f.from_graph,
        task: f.task_name.clone(),
        span: f.span_name.clone(),
        location: f.location_str(),
        holder: f.holder.as_ref().map(|h| h.to_string()),
        holder_class: f.holder.as_ref().map(|h| h.class().to_owned()),
        summary: f.summary.clone(),
        evidence: f
            .evidence
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    EvidenceValue::Int(i) => i.to_string(),
                    EvidenceValue::Float(x) => float_text(*x),
                    EvidenceValue::Text(t) => t.clone(),
                };
                ((*k).to_owned(), v)
            })
            .collect(),
        roots: f.roots.iter().map(|r| r.0).collect(),
        graph: None,
        graph_missing: None,
    }
}

/// The surfaces of `findings`' roots in `live` (taken in window `seq`): for each, its
/// ownership closure ([`Graph::ownership_closure_of`](crate::graph::Graph::ownership_closure_of),
/// the closure the DOT output highlights), the first [`GRAPH_NODES`] nodes of it and the
/// edges among them. One pass over the graph's edges for all of them.
pub(crate) fn surfaces(
    live: &LiveGraph,
    findings: &[&Finding],
    seq: u64,
) -> HashMap<FindingId, GraphView> {
    let g = &live.graph;
    let closures: Vec<(&Finding, crate::graph::Closure)> = findings
        .iter()
        .filter(|f| !f.roots.is_empty())
        .map(|f| (*f, g.ownership_closure_of(&f.roots, COUNT_BUDGET)))
        .filter(|(_, c)| !c.nodes.is_empty())
        .collect();
    let drawn: HashSet<crate::graph::AllocId> = closures
        .iter()
        .flat_map(|(_, c)| c.nodes.iter().take(GRAPH_NODES).copied())
        .collect();
    let edges: Vec<EdgeView> = g
        .edges
        .iter()
        .filter(|e| drawn.contains(&e.from) && drawn.contains(&e.to))
        .map(|e| EdgeView {
            from: e.from.0,
            to: e.to.0,
            kind: e.kind.as_str().to_owned(),
            confidence: (f64::from(e.confidence.clamp(0.0, 1.0)) * 100.0).round() / 100.0,
            bytes: e.bytes,
        })
        .collect();
    let taken = live
        .taken_at
        .map(|t| format!(", taken at {}", super::render::utc(unix_ms(t))))
        .unwrap_or_default();
    let source = format!("From the relation graph of window {seq}{taken}.");
    let mut out = HashMap::new();
    for (f, c) in closures {
        let kept = c.nodes.len().min(GRAPH_NODES);
        let nodes: Vec<NodeView> = c.nodes[..kept]
            .iter()
            .filter_map(|id| g.index_of(*id).map(|i| (*id, i)))
            .map(|(id, i)| {
                let node = &g.nodes[i];
                NodeView {
                    id: id.0,
                    bytes: Some(node.weighted_size()),
                    task: live.task_name_of(i),
                    span: live
                        .span_name_of(i)
                        .map(|(t, n)| crate::layer::names::label(t, n)),
                    site: live.site_location(node.site).map(|l| {
                        let s = if l.line == 0 { l.file } else { l.to_string() };
                        super::escape::clip(&s, MAX_SITE_CHARS)
                    }),
                    root: f.roots.contains(&id),
                }
            })
            .collect();
        let ids: HashSet<u64> = nodes.iter().map(|n| n.id).collect();
        let mut view = GraphView::bounded(
            nodes,
            edges
                .iter()
                .filter(|e| ids.contains(&e.from) && ids.contains(&e.to))
                .cloned(),
            true,
            source.clone(),
        );
        view.more = (c.nodes.len() - kept) as u64;
        view.more_at_least = c.truncated;
        out.insert(f.id, view);
    }
    out
}

impl Recorder {
    /// A recorder for service `service`, keeping findings at or above `min_score` (the
    /// reporting score of [`FindingsConfig`](crate::findings::FindingsConfig)).
    pub(crate) fn new(service: String, min_score: f64) -> Self {
        Recorder {
            service,
            min_score,
            start: None,
            windows: 0,
            last: None,
            tasks: VecDeque::new(),
            spans: VecDeque::new(),
            findings: Vec::new(),
            graphs: HashMap::new(),
            ids: Vec::new(),
            saw_graph: false,
        }
    }

    /// Takes what the view needs of window `w`.
    pub(crate) fn record(&mut self, w: &Window) {
        let snap = &w.snapshot;
        self.start.get_or_insert(w.start);
        self.windows = w.seq;
        let at = unix_ms(snap.taken_at);
        push_bounded(
            &mut self.tasks,
            Point::of(
                at,
                snap.task_names
                    .iter()
                    .map(|t| (t.name.as_str(), t.mem.live_bytes())),
            ),
        );
        let spans: Vec<(String, i64)> = snap
            .span_names
            .iter()
            .map(|s| {
                (
                    crate::layer::names::label(s.target, s.name),
                    s.mem.live_bytes(),
                )
            })
            .collect();
        push_bounded(
            &mut self.spans,
            Point::of(at, spans.iter().map(|(k, v)| (k.as_str(), *v))),
        );
        self.last = Some(Last {
            at: snap.taken_at,
            total: snap.total,
            tracker_bytes: snap.tracker_bytes,
            dropped: snap.dropped,
            exact: snap.is_exact(),
        });
        let reportable: Vec<&Finding> = w
            .findings
            .current
            .iter()
            .filter(|f| f.score >= self.min_score)
            .take(MAX_FINDINGS)
            .collect();
        self.ids = reportable.iter().map(|f| f.id).collect();
        let with_graph: Vec<&Finding> = reportable
            .iter()
            .copied()
            .filter(|f| !f.roots.is_empty())
            .take(FINDING_GRAPHS)
            .collect();
        match &w.graph {
            Some(live) => {
                self.saw_graph = true;
                self.graphs = surfaces(live, &with_graph, w.seq);
            }
            // No graph this window (a slow capture skipped at shutdown): the surfaces of the
            // latest one stay, for the findings still found.
            None => {
                let ids: HashSet<FindingId> = with_graph.iter().map(|f| f.id).collect();
                self.graphs.retain(|id, _| ids.contains(id));
            }
        }
        self.findings = reportable.into_iter().map(finding_view).collect();
    }

    /// The view of what was recorded.
    pub(crate) fn view(&self) -> View {
        let mut findings = self.findings.clone();
        for (f, id) in findings.iter_mut().zip(&self.ids) {
            if f.roots.is_empty() {
                continue;
            }
            f.graph = self.graphs.get(id).cloned();
            if f.graph.is_none() {
                f.graph_missing = Some(
                    if !self.saw_graph {
                        "No relation graph: the live index is off (Builder::live_index)."
                    } else {
                        "No relation graph drawn: its roots are not in the latest graph, or it \
                         is beyond the findings that get one."
                    }
                    .to_owned(),
                );
            }
        }
        sort_findings(&mut findings);
        let last = self.last.as_ref();
        let d = last.map(|l| l.dropped).unwrap_or_default();
        let mut notes = Vec::new();
        if self.windows as usize > HISTORY_WINDOWS {
            notes.push(format!(
                "The charts show the last {HISTORY_WINDOWS} of {} windows.",
                self.windows
            ));
        }
        View {
            header: Header {
                service: self.service.clone(),
                source: "Written by heapspan when its guard stopped".to_owned(),
                start_ms: self.start.map(unix_ms),
                end_ms: last.map(|l| unix_ms(l.at)),
                windows: self.windows,
                live: last.map(|l| l.total.live_bytes()),
                peak: last.map(|l| l.total.peak_bytes),
                allocated: last.map(|l| l.total.allocated_bytes),
                freed: last.map(|l| l.total.freed_bytes),
                allocations: last.map(|l| l.total.allocations),
                tracker_bytes: last.map(|l| l.tracker_bytes),
                dropped: vec![
                    (
                        crate::export::names::DROP_REASON_OVERFLOW_ALLOCATION.to_owned(),
                        d.overflow_allocations,
                    ),
                    (
                        crate::export::names::DROP_REASON_LOST_OPERATION.to_owned(),
                        d.lost_operations,
                    ),
                    (
                        crate::export::names::DROP_REASON_SPAN_STACK_OVERFLOW.to_owned(),
                        d.span_stack_overflow,
                    ),
                ],
                exact: last.map(|l| l.exact),
                notes,
            },
            tasks: Series {
                points: self.tasks.iter().cloned().collect(),
            },
            spans: Series {
                points: self.spans.iter().cloned().collect(),
            },
            findings_caption: "The findings of the last window at or above the reporting \
                               score (what Guard::findings and the terminal report show), \
                               highest score first."
                .to_owned(),
            findings,
        }
    }
}

/// The end-of-run report: the recorder the window stage feeds, and where the page goes.
#[derive(Debug)]
pub(crate) struct EndOfRun {
    path: PathBuf,
    recorder: Arc<Mutex<Recorder>>,
}

impl EndOfRun {
    pub(crate) fn new(path: PathBuf, service: String, min_score: f64) -> Self {
        EndOfRun {
            path,
            recorder: Arc::new(Mutex::new(Recorder::new(service, min_score))),
        }
    }

    /// What the window stage calls with each window.
    pub(crate) fn observer(&self) -> crate::windows::Observer {
        let r = self.recorder.clone();
        Box::new(move |w: &Window| {
            r.lock().unwrap_or_else(|p| p.into_inner()).record(w);
        })
    }

    /// Renders the page and writes it (a failure is reported on stderr: the guard is
    /// stopping, there is nobody to return it to). Waits for the window stage to finish
    /// recording until `deadline` at most (the guard's shutdown bound), then gives up, saying
    /// so: a stuck stage never holds the process's exit.
    pub(crate) fn write(self, deadline: Instant) {
        let view = loop {
            match self.recorder.try_lock() {
                Ok(r) => break Some(r.view()),
                Err(TryLockError::Poisoned(p)) => break Some(p.into_inner().view()),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::WouldBlock) => break None,
            }
        };
        let Some(view) = view else {
            eprintln!(
                "heapspan: the HTML report was not written to {}: the window stage was still \
                 recording when the shutdown timeout ran out",
                self.path.display()
            );
            return;
        };
        if let Err(e) = write_page(&self.path, &super::render::page(&view)) {
            eprintln!(
                "heapspan: writing the HTML report to {} failed: {e}",
                self.path.display()
            );
        }
    }
}

/// Writes `html` to `path` through a temporary file beside it (a reader never sees half a
/// page), creating the directory if missing.
pub(crate) fn write_page(path: &Path, html: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "heapspan-report.html".to_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let r = std::fs::write(&tmp, html).and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregator::residue::ResidueRound;
    use crate::export::graph::tests::{fan_out, small_graph, snapshot};
    use crate::findings::{FindingId, Holder, Judged, Kind, Severity, Verdict};
    use crate::graph::AllocId;
    use crate::TaskNameStats;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn finding(id: u64, score: f64, roots: &[u64]) -> Finding {
        Finding {
            id: FindingId(id),
            kind: Kind::UnreachableCycle,
            severity: Severity::High,
            score,
            confidence: 0.9,
            verdict: Verdict::Confirmed,
            bytes: 4096,
            allocations: 2,
            task_name: Some("cycler".into()),
            tasks: Vec::new(),
            span_name: None,
            location: None,
            holder: Some(Holder::Cycle),
            summary: "a cycle".into(),
            evidence: vec![
                (
                    crate::export::names::FINDING_CYCLE_MEMBERS,
                    EvidenceValue::Int(2),
                ),
                (
                    crate::export::names::FINDING_RATE,
                    EvidenceValue::Float(0.25),
                ),
            ],
            from_graph: true,
            first_seen: at(0),
            last_seen: at(0),
            windows: 2,
            roots: roots.iter().map(|r| AllocId(*r)).collect(),
        }
    }

    /// Window `seq` ending at `at(seq)`, task names `(name, live)`, findings and a graph.
    fn window(
        seq: u64,
        names: &[(&str, i64)],
        current: Vec<Finding>,
        graph: Option<LiveGraph>,
    ) -> Window {
        let mut snap = snapshot(at(seq), Vec::new(), Vec::new());
        snap.task_names = names
            .iter()
            .map(|(name, live)| TaskNameStats {
                name: (*name).to_owned(),
                tasks: 1,
                ended: 0,
                mem: MemStats {
                    allocated_bytes: *live as u64,
                    ..MemStats::default()
                },
                task_peak_bytes: 0,
            })
            .collect();
        snap.total.allocated_bytes = 1 << 20;
        snap.total.freed_bytes = 1 << 10;
        snap.tracker_bytes = 77;
        Window {
            seq,
            start: at(seq.saturating_sub(1)),
            snapshot: snap,
            tasks: Vec::new(),
            omitted_tasks: 0,
            idle_tasks: 0,
            total_at_start: MemStats::default(),
            residues: ResidueRound::default(),
            graph,
            findings: Judged {
                current,
                ..Judged::default()
            },
            invalid_upto: 0,
        }
    }

    #[test]
    fn the_history_keeps_the_last_windows_and_the_header_the_last_figures() {
        let mut r = Recorder::new("svc".into(), 0.5);
        let total = HISTORY_WINDOWS as u64 + 40;
        for seq in 1..=total {
            r.record(&window(
                seq,
                &[("planted", 3 << 20), ("small", seq as i64)],
                Vec::new(),
                None,
            ));
        }
        let v = r.view();
        assert_eq!(v.tasks.points.len(), HISTORY_WINDOWS);
        assert_eq!(
            v.tasks.points[0].at_ms,
            unix_ms(at(41)),
            "the oldest 40 dropped"
        );
        assert_eq!(
            v.tasks.points.last().unwrap().named,
            [
                ("planted".to_owned(), 3 << 20),
                ("small".to_owned(), total as i64)
            ]
        );
        assert_eq!(v.spans.points.len(), HISTORY_WINDOWS);
        let h = &v.header;
        assert_eq!(h.service, "svc");
        assert_eq!(h.windows, total);
        assert_eq!(h.start_ms, Some(unix_ms(at(0))), "the first window's start");
        assert_eq!(h.end_ms, Some(unix_ms(at(total))));
        assert_eq!(h.live, Some((1 << 20) - (1 << 10)));
        assert_eq!(h.tracker_bytes, Some(77));
        assert_eq!(h.exact, Some(true));
        assert_eq!(h.dropped.len(), 3, "every reason, zeros included");
        assert!(h.notes[0].contains(&format!("last {HISTORY_WINDOWS} of {total} windows")));
    }

    #[test]
    fn findings_below_the_reporting_score_are_left_out_and_the_rest_get_their_surface() {
        let mut r = Recorder::new("svc".into(), 0.5);
        // small_graph: #3 (task 9) owns #4 (task 7); #1 owns #2.
        let live = small_graph(at(1));
        let w = window(
            1,
            &[],
            vec![
                finding(1, 0.9, &[3]),
                finding(2, 0.3, &[1]),
                finding(3, 0.6, &[]),
                finding(4, 0.7, &[999]),
            ],
            Some(live),
        );
        r.record(&w);
        let v = r.view();
        let ids: Vec<&str> = v.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["0000000000000001", "0000000000000004", "0000000000000003"],
            "at or above 0.5, highest score first"
        );
        let f = &v.findings[0];
        assert_eq!(f.kind, "refcount.unreachable_cycle");
        assert_eq!(f.holder_class.as_deref(), Some("cycle"));
        assert_eq!(
            f.evidence,
            [
                ("heapspan.finding.cycle.members".to_owned(), "2".to_owned()),
                ("heapspan.finding.rate".to_owned(), "0.250".to_owned())
            ]
        );
        let g = f.graph.as_ref().expect("a surface");
        let nodes: Vec<(u64, bool, Option<u64>)> =
            g.nodes.iter().map(|n| (n.id, n.root, n.bytes)).collect();
        assert_eq!(nodes, [(3, true, Some(16)), (4, false, Some(64))]);
        assert_eq!(g.edges.len(), 1);
        assert_eq!((g.edges[0].from, g.edges[0].to), (3, 4));
        assert_eq!(g.edges[0].kind, "owns");
        assert_eq!(g.edges[0].confidence, 0.75);
        assert!(g.source.contains("window 1"));
        // Roots not in the graph: no surface, and the page says why.
        assert!(v.findings[1].graph.is_none());
        assert!(v.findings[1]
            .graph_missing
            .as_deref()
            .unwrap()
            .contains("not in the latest graph"));
        // No roots: nothing to say.
        assert!(v.findings[2].graph.is_none() && v.findings[2].graph_missing.is_none());

        // A window without a graph keeps the latest surfaces of the findings still found.
        r.record(&window(2, &[], vec![finding(1, 0.9, &[3])], None));
        assert!(r.view().findings[0].graph.is_some());
        r.record(&window(3, &[], vec![finding(5, 0.9, &[3])], None));
        assert!(r.view().findings[0].graph.is_none());
    }

    #[test]
    fn a_surface_is_bounded_to_its_node_budget() {
        // One container (#1) owning 80 blocks (#2..#81).
        let live = fan_out(&[(1, 80)], 0);
        let f = finding(1, 0.9, &[1]);
        let s = surfaces(&live, &[&f], 4);
        let g = &s[&FindingId(1)];
        assert_eq!(g.nodes.len(), GRAPH_NODES);
        assert!(g.nodes[0].root && g.nodes[0].id == 1);
        assert_eq!(g.more, 81 - GRAPH_NODES as u64);
        assert!(!g.more_at_least);
        assert_eq!(
            g.edges.len(),
            GRAPH_NODES - 1,
            "the container's edges to the drawn blocks"
        );
        // Without the live index the page says so.
        let mut r = Recorder::new("svc".into(), 0.5);
        r.record(&window(1, &[], vec![f], None));
        assert!(r.view().findings[0]
            .graph_missing
            .as_deref()
            .unwrap()
            .contains("live index is off"));
    }

    #[test]
    fn the_end_of_run_page_is_written_whole() {
        let dir = crate::export::graph::tests::scratch("html_end_of_run");
        let path = dir.join("deeper/report.html");
        let end = EndOfRun::new(path.clone(), "svc".into(), 0.5);
        let mut observe = end.observer();
        observe(&window(
            1,
            &[("planted", 4096)],
            vec![finding(1, 0.9, &[3])],
            Some(small_graph(at(1))),
        ));
        // A stage still recording at the deadline: nothing is written, nothing waits.
        let held = end.recorder.clone();
        let lock = held.lock().unwrap();
        EndOfRun {
            path: path.clone(),
            recorder: held.clone(),
        }
        .write(Instant::now());
        assert!(!path.exists());
        drop(lock);
        end.write(Instant::now() + Duration::from_secs(60));
        let html = std::fs::read_to_string(&path).unwrap();
        assert!(html.contains("data-name=\"planted\" data-live=\"4096\""));
        assert!(html.contains("data-kind=\"refcount.unreachable_cycle\""));
        assert!(html.contains("<g class=\"node root\" data-id=\"3\""));
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from("report.html")],
            "no temporary file left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
