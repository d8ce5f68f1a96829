//! Danger findings: the claims a user acts on ("the span `handle_request` leaks about 1 KiB
//! per request"), judged once per window from what the window stage hands over (the snapshot,
//! the previous one, and the relation graph when the live index is on).
//!
//! One file per family: `escapes` (allocations that outlive their task, frees after a task's
//! end), `growth` (span residue and task memory that keep growing), `stalls` (tasks
//! suspended or stalled while holding memory, large futures), `cycles` (unreachable `Rc`/`Arc`
//! cycles), `clones` (clone storms), `churn` (temporary allocations at high rates), `invalid`
//! (the invalid frees the allocator caught), `custody` (pointers handed to foreign code).
//!
//! Each detector returns drafts; the `Engine` gives each its stable id (kind, code location,
//! task or span name, holder), merges it with the same problem found in earlier windows (one
//! finding per problem, with counts, never one per window), scores it
//! (`base(kind) × verdict`, plus 0.05 for each window it was found in again, at most 0.15) and
//! forgets what was not found again. Nothing here runs on the allocation path.

mod churn;
mod clones;
pub mod config;
mod custody;
mod cycles;
mod escapes;
mod growth;
pub(crate) mod invalid;
mod kind;
mod stalls;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::SystemTime;

pub use config::*;
pub use kind::{EvidenceValue, Finding, FindingId, Holder, Kind, Severity, Verdict};

use crate::graph::live::LiveGraph;
use crate::graph::AllocId;
use crate::{Location, Snapshot, TaskKey};

/// Findings kept at once; beyond it the lowest scored are forgotten.
const MAX_ACTIVE: usize = 1000;
/// Root allocations a finding names at most (the largest).
pub(crate) const MAX_ROOTS: usize = 64;

/// What one window hands to the detectors.
pub(crate) struct Input<'a> {
    /// The snapshot at the window's end.
    pub(crate) snap: &'a Snapshot,
    /// The previous window's snapshot (`None` for the first window).
    pub(crate) prev: Option<&'a Snapshot>,
    /// The window's start.
    pub(crate) start: SystemTime,
    /// The relation graph of the window, when the live index is on.
    pub(crate) graph: Option<&'a LiveGraph>,
    /// The invalid frees the allocator caught since the last window, and how many it lost.
    pub(crate) invalid: &'a [invalid::InvalidFree],
    pub(crate) invalid_lost: u64,
    /// The custody rules broken since the last window ([`crate::custody`]).
    pub(crate) custody: &'a [crate::custody::Violation],
}

impl Input<'_> {
    /// The window's length in seconds (at least 1 ms).
    pub(crate) fn seconds(&self) -> f64 {
        self.snap
            .taken_at
            .duration_since(self.start)
            .map_or(0.0, |d| d.as_secs_f64())
            .max(0.001)
    }
}

/// A detector's claim before it is merged with earlier windows.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub(crate) kind: Kind,
    pub(crate) severity: Severity,
    pub(crate) verdict: Verdict,
    pub(crate) confidence: f64,
    pub(crate) bytes: u64,
    pub(crate) allocations: u64,
    pub(crate) task_name: Option<String>,
    pub(crate) tasks: Vec<TaskKey>,
    pub(crate) span_name: Option<String>,
    pub(crate) location: Option<Location>,
    pub(crate) holder: Option<Holder>,
    pub(crate) summary: String,
    pub(crate) evidence: Vec<(&'static str, EvidenceValue)>,
    pub(crate) from_graph: bool,
    pub(crate) roots: Vec<AllocId>,
    /// More parts of the id, for kinds whose problems differ in more than code location,
    /// task, span and holder (`ffi.custody`: the case and the boundary).
    pub(crate) distinct: Vec<&'static str>,
}

impl Draft {
    pub(crate) fn new(kind: Kind, severity: Severity, verdict: Verdict, summary: String) -> Self {
        Draft {
            kind,
            severity,
            verdict,
            confidence: 0.5,
            bytes: 0,
            allocations: 0,
            task_name: None,
            tasks: Vec::new(),
            span_name: None,
            location: None,
            holder: None,
            summary,
            evidence: Vec::new(),
            from_graph: false,
            roots: Vec::new(),
            distinct: Vec::new(),
        }
    }

    fn id(&self) -> FindingId {
        let loc = self
            .location
            .as_ref()
            .map(|l| format!("{}:{}", l.file, l.line))
            .unwrap_or_default();
        let holder = self
            .holder
            .as_ref()
            .map(|h| match h {
                // The class and who: an allocation's size changes from window to window.
                Holder::Allocation { location, .. } => {
                    format!("allocation {}", location.as_deref().unwrap_or(""))
                }
                h => h.to_string(),
            })
            .unwrap_or_default();
        let mut parts = vec![
            loc.as_str(),
            self.task_name.as_deref().unwrap_or(""),
            self.span_name.as_deref().unwrap_or(""),
            &holder,
        ];
        parts.extend(self.distinct.iter().copied());
        kind::finding_id(self.kind, &parts)
    }

    pub(crate) fn ev(&mut self, key: &'static str, v: impl Into<EvidenceValue>) -> &mut Self {
        self.evidence.push((key, v.into()));
        self
    }
}

impl From<i64> for EvidenceValue {
    fn from(v: i64) -> Self {
        EvidenceValue::Int(v)
    }
}
impl From<u64> for EvidenceValue {
    fn from(v: u64) -> Self {
        EvidenceValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for EvidenceValue {
    fn from(v: usize) -> Self {
        EvidenceValue::from(v as u64)
    }
}
impl From<f64> for EvidenceValue {
    fn from(v: f64) -> Self {
        EvidenceValue::Float(v)
    }
}
impl From<String> for EvidenceValue {
    fn from(v: String) -> Self {
        EvidenceValue::Text(v)
    }
}
impl From<&str> for EvidenceValue {
    fn from(v: &str) -> Self {
        EvidenceValue::Text(v.to_owned())
    }
}

/// What a window's analysis produced.
#[derive(Clone, Debug, Default)]
pub(crate) struct Judged {
    /// Every finding found this window, highest score first.
    pub(crate) current: Vec<Finding>,
    /// Ids of those that are new or changed (severity, or bytes by more than 10 %) and at or
    /// above the reporting score: the ones the export emits a span for.
    pub(crate) emit: Vec<FindingId>,
    /// Findings that are new at their severity (reportable ones): the counter's increments.
    pub(crate) counted: Vec<(Kind, Severity)>,
    /// The roots of the reportable findings' danger surfaces (what the DOT output
    /// highlights).
    pub(crate) surface_roots: Vec<AllocId>,
}

/// The detectors' state across windows.
pub(crate) struct Engine {
    cfg: FindingsConfig,
    active: HashMap<FindingId, Finding>,
    escapes: escapes::State,
    growth: growth::State,
    cycles: cycles::State,
    invalid: invalid::State,
    custody: custody::State,
}

impl Engine {
    pub(crate) fn new(cfg: FindingsConfig) -> Self {
        Engine {
            cfg,
            active: HashMap::new(),
            escapes: escapes::State::default(),
            growth: growth::State::default(),
            cycles: cycles::State::default(),
            invalid: invalid::State::default(),
            custody: custody::State::default(),
        }
    }

    /// Runs every detector on one window and merges the drafts with earlier windows.
    pub(crate) fn judge(&mut self, input: &Input<'_>) -> Judged {
        if !self.cfg.enabled {
            return Judged::default();
        }
        let cfg = &self.cfg;
        let mut drafts = Vec::new();
        self.escapes.run(cfg, input, &mut drafts);
        self.growth.run(cfg, input, &mut drafts);
        stalls::run(cfg, input, &mut drafts);
        self.cycles.run(cfg, input, &mut drafts);
        clones::run(cfg, input, &mut drafts);
        churn::run(cfg, input, &mut drafts);
        self.invalid
            .run(input.invalid, input.invalid_lost, &mut drafts);
        self.custody.run(cfg, input, &mut drafts);
        growth::explain_task_growth(&mut drafts);
        self.merge(drafts, input.snap.taken_at)
    }

    fn merge(&mut self, drafts: Vec<Draft>, now: SystemTime) -> Judged {
        let mut out = Judged::default();
        let mut next: HashMap<FindingId, Finding> = HashMap::with_capacity(drafts.len());
        for d in drafts {
            let id = d.id();
            if let Some(f) = next.get_mut(&id) {
                // Two drafts of one problem in a window: add them up.
                f.bytes += d.bytes;
                f.allocations += d.allocations;
                let room = MAX_ROOTS.saturating_sub(f.roots.len());
                f.roots.extend(d.roots.into_iter().take(room));
                continue;
            }
            let prev = self.active.get(&id);
            let windows = prev.map_or(1, |p| p.windows + 1);
            let bonus = 0.05 * f64::from(windows.saturating_sub(1).min(3));
            let score = (d.kind.base() * d.verdict.factor() + bonus).clamp(0.0, 1.0);
            let changed = prev.is_none_or(|p| {
                p.severity != d.severity
                    || differs(p.bytes, d.bytes)
                    || p.score < self.cfg.min_score
            });
            let f = Finding {
                id,
                kind: d.kind,
                severity: d.severity,
                score,
                confidence: d.confidence.clamp(0.0, 1.0),
                verdict: d.verdict,
                bytes: d.bytes,
                allocations: d.allocations,
                task_name: d.task_name,
                tasks: d.tasks,
                span_name: d.span_name,
                location: d.location,
                holder: d.holder,
                summary: d.summary,
                evidence: d.evidence,
                from_graph: d.from_graph,
                roots: d.roots,
                first_seen: prev.map_or(now, |p| p.first_seen),
                last_seen: now,
                windows,
            };
            if f.score >= self.cfg.min_score {
                if changed {
                    out.emit.push(id);
                }
                if prev.is_none_or(|p| p.severity != f.severity || p.score < self.cfg.min_score) {
                    out.counted.push((f.kind, f.severity));
                }
            }
            next.insert(id, f);
        }
        let mut current: Vec<Finding> = next.values().cloned().collect();
        current.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.bytes.cmp(&a.bytes))
                .then(a.id.cmp(&b.id))
        });
        if current.len() > MAX_ACTIVE {
            for f in current.drain(MAX_ACTIVE..) {
                next.remove(&f.id);
                out.emit.retain(|&i| i != f.id);
            }
        }
        out.surface_roots = current
            .iter()
            .filter(|f| f.score >= self.cfg.min_score)
            .flat_map(|f| f.roots.iter().copied())
            .collect();
        out.current = current;
        self.active = next;
        out
    }
}

/// Bytes that moved by more than 10 %.
fn differs(a: u64, b: u64) -> bool {
    a.abs_diff(b) * 10 > a.max(b)
}

/// `n` bytes in the report's units.
pub(crate) fn human(n: u64) -> String {
    crate::export::report::human_bytes(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Severity one step up, for a lot of memory.
pub(crate) fn raise(s: Severity) -> Severity {
    match s {
        Severity::Info => Severity::Low,
        Severity::Low => Severity::Medium,
        Severity::Medium => Severity::High,
        Severity::High | Severity::Critical => Severity::Critical,
    }
}
