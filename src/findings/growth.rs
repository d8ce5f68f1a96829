//! Memory that keeps growing: a span name's residue (`span.residue_growth`, a per-request
//! leak) and a running task's live bytes (`task.memory_growth`).
//!
//! A span name's *residue* is its live bytes minus those of its open instances: what closed
//! instances left behind. Each window appends one point per series; a series is tested once it
//! has `warmup_windows + growth_windows + 1` points (the first windows, where caches and pools
//! fill, are skipped), on its last K + 1 points: at least `growth_positive_fraction` of the K
//! deltas positive, a positive Theil–Sen slope (the median of the pairwise slopes, robust to a
//! few jumps), and at least `growth_min_bytes` of growth. A cache that fills and plateaus
//! stops giving positive deltas; a saw-tooth batcher falls below the fraction.

use std::collections::{HashMap, VecDeque};

use super::{human, Draft, FindingsConfig, Holder, Input, Kind, Severity, Verdict};
use crate::export::names as n;
use crate::TaskKey;

/// One series: the last points, and how many were ever appended.
#[derive(Default)]
struct Series {
    points: VecDeque<i64>,
    seen: usize,
}

impl Series {
    fn push(&mut self, v: i64, keep: usize) {
        self.points.push_back(v);
        self.seen += 1;
        while self.points.len() > keep {
            self.points.pop_front();
        }
    }
}

/// What a growth test found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Growth {
    pub(crate) bytes: u64,
    pub(crate) slope: f64,
    pub(crate) positive: f64,
}

/// The growth test on the last K + 1 points.
fn test(s: &Series, cfg: &FindingsConfig) -> Option<Growth> {
    let k = cfg.growth_windows;
    if s.seen < cfg.warmup_windows + k + 1 || s.points.len() < k + 1 {
        return None;
    }
    let pts: Vec<i64> = s
        .points
        .iter()
        .skip(s.points.len() - (k + 1))
        .copied()
        .collect();
    let positive = pts.windows(2).filter(|w| w[1] > w[0]).count() as f64 / k as f64;
    let grown = pts[k].saturating_sub(pts[0]);
    // Compared as u64: a threshold past i64::MAX (growth findings off) must not wrap.
    let enough = u64::try_from(grown).is_ok_and(|g| g >= cfg.growth_min_bytes);
    if positive < cfg.growth_positive_fraction || !enough {
        return None;
    }
    let slope = theil_sen(&pts);
    (slope > 0.0).then_some(Growth {
        bytes: grown as u64,
        slope,
        positive,
    })
}

/// Median of the pairwise slopes of `pts` (x = index).
pub(crate) fn theil_sen(pts: &[i64]) -> f64 {
    let mut slopes = Vec::with_capacity(pts.len() * pts.len() / 2);
    for i in 0..pts.len() {
        for j in i + 1..pts.len() {
            slopes.push((pts[j] - pts[i]) as f64 / (j - i) as f64);
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len() / 2;
    if slopes.len() % 2 == 1 {
        slopes[m]
    } else {
        (slopes[m - 1] + slopes[m]) / 2.0
    }
}

#[derive(Default)]
pub(crate) struct State {
    spans: HashMap<(&'static str, &'static str), Series>,
    /// Closed instances per span name at each window (for the per-instance figure).
    closed: HashMap<(&'static str, &'static str), VecDeque<u64>>,
    tasks: HashMap<TaskKey, Series>,
}

impl State {
    pub(crate) fn run(&mut self, cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
        let keep = cfg.growth_windows + 1;
        self.spans_run(cfg, input, keep, out);
        self.tasks_run(cfg, input, keep, out);
    }

    fn spans_run(
        &mut self,
        cfg: &FindingsConfig,
        input: &Input<'_>,
        keep: usize,
        out: &mut Vec<Draft>,
    ) {
        let snap = input.snap;
        let mut open: HashMap<(&'static str, &'static str), i64> = HashMap::new();
        for s in &snap.spans {
            if let (Some(name), Some(target), None) = (s.name, s.target, s.closed) {
                *open.entry((target, name)).or_default() += s.mem.live_bytes();
            }
        }
        let mut live = HashMap::with_capacity(snap.span_names.len());
        for s in &snap.span_names {
            let key = (s.target, s.name);
            let residue = s.mem.live_bytes() - open.get(&key).copied().unwrap_or(0);
            let series = self.spans.entry(key).or_default();
            series.push(residue, keep);
            let closed = self.closed.entry(key).or_default();
            closed.push_back(s.closed);
            while closed.len() > keep {
                closed.pop_front();
            }
            live.insert(key, ());
            let Some(g) = test(series, cfg) else {
                continue;
            };
            let label = format!("{}::{}", s.target, s.name);
            let instances =
                closed.back().copied().unwrap_or(0) - closed.front().copied().unwrap_or(0);
            let per = g.bytes.checked_div(instances).unwrap_or(0);
            let severity = if g.bytes >= cfg.growth_high_bytes {
                Severity::High
            } else {
                Severity::Medium
            };
            let residue = series.points.back().copied().unwrap_or(0).max(0) as u64;
            let mut summary = format!(
                "span {label} leaves memory behind: its closed instances hold {} and that grew \
                 by {} over the last {} windows",
                human(residue),
                human(g.bytes),
                cfg.growth_windows
            );
            if per > 0 {
                summary.push_str(&format!(
                    ", about {} per instance ({instances} closed)",
                    human(per)
                ));
            }
            let mut d = Draft::new(
                Kind::SpanResidueGrowth,
                severity,
                Verdict::Probable,
                summary,
            );
            d.confidence = 0.6 + 0.3 * g.positive.min(1.0);
            d.bytes = residue;
            d.span_name = Some(label);
            if let Some(gr) = input.graph {
                d.from_graph = true;
                if let Some((loc, bytes)) = top_site_of_span(gr, s.target, s.name) {
                    d.holder = Some(Holder::Allocation {
                        bytes,
                        location: Some(loc.to_string()),
                    });
                    d.location = Some(loc);
                }
            }
            d.ev(n::FINDING_GROWTH_BYTES, g.bytes);
            d.ev(n::FINDING_GROWTH_SLOPE, g.slope);
            d.ev(n::FINDING_GROWTH_POSITIVE_FRACTION, g.positive);
            d.ev(n::FINDING_GROWTH_WINDOWS, cfg.growth_windows);
            d.ev(n::FINDING_INSTANCES, instances);
            d.ev(n::FINDING_PER_INSTANCE_BYTES, per);
            out.push(d);
        }
        self.spans.retain(|k, _| live.contains_key(k));
        self.closed.retain(|k, _| live.contains_key(k));
    }

    fn tasks_run(
        &mut self,
        cfg: &FindingsConfig,
        input: &Input<'_>,
        keep: usize,
        out: &mut Vec<Draft>,
    ) {
        let mut live = HashMap::new();
        for t in &input.snap.tasks {
            if t.ended.is_some() {
                continue;
            }
            live.insert(t.key, ());
            let series = self.tasks.entry(t.key).or_default();
            series.push(t.mem.live_bytes(), keep);
            let Some(g) = test(series, cfg) else {
                continue;
            };
            let name = t.display_name();
            let severity = if g.bytes >= cfg.growth_high_bytes {
                Severity::High
            } else {
                Severity::Medium
            };
            let mut d = Draft::new(
                Kind::TaskMemoryGrowth,
                severity,
                Verdict::Probable,
                format!(
                    "task {name} (id {}) keeps growing: it holds {} and grew by {} over the \
                     last {} windows",
                    t.key.id,
                    human(t.mem.live_bytes().max(0) as u64),
                    human(g.bytes),
                    cfg.growth_windows
                ),
            );
            d.confidence = 0.6 + 0.3 * g.positive.min(1.0);
            d.bytes = t.mem.live_bytes().max(0) as u64;
            d.allocations = t.mem.live_allocations().max(0) as u64;
            d.task_name = Some(name);
            d.tasks = vec![t.key];
            d.location = t.location.clone();
            if let Some(gr) = input.graph {
                d.from_graph = true;
                if let Some((h, id)) = largest_of_task(gr, t.key.id) {
                    d.holder = Some(h);
                    d.roots = vec![id];
                }
            }
            d.ev(n::FINDING_GROWTH_BYTES, g.bytes);
            d.ev(n::FINDING_GROWTH_SLOPE, g.slope);
            d.ev(n::FINDING_GROWTH_POSITIVE_FRACTION, g.positive);
            d.ev(n::FINDING_GROWTH_WINDOWS, cfg.growth_windows);
            out.push(d);
        }
        self.tasks.retain(|k, _| live.contains_key(k));
    }
}

/// A task's growth that the residue growth of spans found this window accounts for (the task
/// grew by no more than the growing spans' residue did) is the same leak seen from the task:
/// the span finding is the precise one, so the task's is kept as an info-level hint that
/// points at it. A task growing for a reason of its own while a span leaks, by less than the
/// span's growth, is so shown as a hint only (visible in [`crate::Guard::findings`]).
pub(crate) fn explain_task_growth(drafts: &mut [Draft]) {
    let growth = |d: &Draft| {
        d.evidence.iter().find_map(|(k, v)| match v {
            super::EvidenceValue::Int(b) if *k == n::FINDING_GROWTH_BYTES => Some(*b),
            _ => None,
        })
    };
    let spans: Vec<(String, i64)> = drafts
        .iter()
        .filter(|d| d.kind == Kind::SpanResidueGrowth)
        .filter_map(|d| Some((d.span_name.clone()?, growth(d)?)))
        .collect();
    let total: i64 = spans.iter().map(|(_, b)| b).sum();
    if total <= 0 {
        return;
    }
    let names: Vec<&str> = spans.iter().map(|(s, _)| s.as_str()).collect();
    for d in drafts
        .iter_mut()
        .filter(|d| d.kind == Kind::TaskMemoryGrowth)
    {
        if growth(d).is_some_and(|g| g <= total + total / 10) {
            d.severity = Severity::Info;
            d.verdict = Verdict::Diagnostic;
            d.summary.push_str(&format!(
                "; the residue growth of span {} accounts for it (reported there)",
                names.join(", ")
            ));
        }
    }
}

/// Distinct allocation sites of a span symbolized at most per growth finding (the largest by
/// bytes): symbolizing reads debug info.
const MAX_SYMBOLIZED_SITES: usize = 64;

/// The code location holding the most bytes among the graph's nodes of span `target::name`
/// (with sites captured), and those bytes.
///
/// A site is a hash of the whole stack, so one line of code is several sites when it is
/// reached through different callers (a task polled from the worker's run queue or from its
/// LIFO slot, say): the sites are added up per symbolized location (file and line), so that
/// the holder's bytes are the line's, not those of its most frequent stack.
fn top_site_of_span(
    g: &crate::graph::live::LiveGraph,
    target: &str,
    name: &str,
) -> Option<(crate::Location, u64)> {
    let mut by_site: HashMap<u64, u64> = HashMap::new();
    for (i, node) in g.graph.nodes.iter().enumerate() {
        if node.site == 0 {
            continue;
        }
        if g.span_name_of(i)
            .is_some_and(|(t, s)| t == target && s == name)
        {
            *by_site.entry(node.site).or_default() += node.weighted_size();
        }
    }
    let mut sites: Vec<(u64, u64)> = by_site.into_iter().collect();
    sites.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sites.truncate(MAX_SYMBOLIZED_SITES);
    let mut by_location: Vec<(crate::Location, u64)> = Vec::new();
    for (site, bytes) in sites {
        let Some(l) = g.site_location(site) else {
            continue;
        };
        match by_location.iter_mut().find(|(k, _)| *k == l) {
            Some((_, b)) => *b += bytes,
            None => by_location.push((l, bytes)),
        }
    }
    // The first of the largest (sites come largest first): deterministic.
    let mut best: Option<(crate::Location, u64)> = None;
    for (l, b) in by_location {
        if best.as_ref().is_none_or(|(_, top)| b > *top) {
            best = Some((l, b));
        }
    }
    best
}

/// The node of task `task` that keeps the most bytes alive (its retained size), as a holder.
pub(crate) fn largest_of_task(
    g: &crate::graph::live::LiveGraph,
    task: u64,
) -> Option<(Holder, crate::graph::AllocId)> {
    let graph = &g.graph;
    let (i, bytes) = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.task == task)
        .map(|(i, n)| {
            (
                i,
                graph
                    .retained
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .max(n.weighted_size()),
            )
        })
        .max_by_key(|&(_, b)| b)?;
    let node = &graph.nodes[i];
    Some((
        Holder::Allocation {
            bytes,
            location: (node.site != 0)
                .then(|| g.site_location(node.site).map(|l| l.to_string()))
                .flatten(),
        },
        node.id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_a_jump() {
        assert_eq!(theil_sen(&[0, 10, 20, 30, 40]), 10.0);
        // One outlier does not move the median much.
        let s = theil_sen(&[0, 10, 1000, 30, 40]);
        assert!((9.0..=15.0).contains(&s), "{s}");
        assert_eq!(theil_sen(&[5, 5, 5, 5]), 0.0);
    }

    fn series(points: &[i64]) -> Series {
        let mut s = Series::default();
        for &p in points {
            s.push(p, 7);
        }
        s
    }

    #[test]
    fn growth_needs_warmup_fraction_slope_and_bytes() {
        let cfg = FindingsConfig::default().growth_min_bytes(100);
        // 3 warm-up windows, then 7 points of steady growth.
        let rising = series(&[0, 0, 0, 0, 100, 200, 300, 400, 500, 600]);
        let g = test(&rising, &cfg).expect("grows");
        assert_eq!(g.bytes, 600);
        assert_eq!(g.positive, 1.0);
        // Too early: still in warm-up.
        assert_eq!(
            test(&series(&[0, 100, 200, 300, 400, 500, 600]), &cfg),
            None
        );
        // A plateau: a cache that filled.
        assert_eq!(
            test(&series(&[0, 0, 0, 0, 500, 600, 600, 600, 600, 600]), &cfg),
            None
        );
        // Saw-tooth: half the deltas negative.
        assert_eq!(
            test(&series(&[0, 0, 0, 0, 100, 0, 200, 50, 300, 100]), &cfg),
            None
        );
        // Moving the thresholds moves the verdict.
        assert_eq!(test(&rising, &cfg.clone().growth_min_bytes(601)), None);
        assert!(test(&rising, &cfg.clone().growth_windows(3)).is_some());
        assert_eq!(test(&rising, &cfg.clone().warmup_windows(4)), None);
    }
}
