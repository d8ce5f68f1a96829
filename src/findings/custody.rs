//! `ffi.custody`: the rules of [`crate::custody`] broken (a pointer not given back by its
//! deadline or its task's end, freed by Rust in foreign custody, reclaimed twice…), one
//! finding per problem (case, boundary, handover site, task, span), kept for the rest of the
//! run: a broken rule is an event, not a state a later window could find again.
//!
//! Each problem's bytes are the danger surfaces of its pointers when they were found: with the
//! relation graph, the ownership closure of the block each pointer names (the blocks reachable
//! from it, which foreign code can reach too), the blocks being the finding's roots; else, or
//! for a block the graph does not have (not sampled), the block's own size.

use std::collections::HashMap;
use std::panic::Location;

use super::{human, Draft, FindingsConfig, Input, Kind, Severity, Verdict, MAX_ROOTS};
use crate::alloc::header::Key;
use crate::custody::{Case, Term, Violation};
use crate::export::names as n;
use crate::graph::live::LiveGraph;
use crate::graph::AllocId;
use crate::{TaskKey, TaskStats};

/// Distinct problems kept (beyond it, only known ones grow).
const MAX_KEPT: usize = 256;
/// Nodes walked at most per problem and window for its danger surface.
const MAX_WALK: usize = 100_000;

/// What tells one problem from another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Id {
    case: Case,
    term: Option<Term>,
    boundary: Option<&'static str>,
    /// The handover's call site (for `not_handed`, the call's).
    location: &'static Location<'static>,
    task: Option<String>,
    span: Option<String>,
}

/// One problem, with what its pointers add up to.
#[derive(Clone, Debug, Default)]
struct Problem {
    pointers: u64,
    /// Of them, still in foreign custody when found (`not_reclaimed`).
    in_custody: u64,
    bytes: u64,
    allocations: u64,
    from_graph: bool,
    roots: Vec<AllocId>,
    tasks: Vec<TaskKey>,
    /// The latest call that broke the rule.
    call: Option<&'static Location<'static>>,
    /// `freed_in_custody`: who freed it, and whether by a realloc.
    freed_by: Option<(String, Option<String>)>,
    realloc: bool,
}

#[derive(Default)]
pub(crate) struct State {
    kept: HashMap<Id, Problem>,
    order: Vec<Id>,
}

impl State {
    /// Takes this window's violations and drafts a finding for every problem seen in the run.
    pub(crate) fn run(&mut self, cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
        if !input.custody.is_empty() {
            self.take(input);
        }
        for id in &self.order {
            out.push(draft(cfg, id, &self.kept[id]));
        }
    }

    fn take(&mut self, input: &Input<'_>) {
        let mut groups: Vec<(Id, Vec<&Violation>)> = Vec::new();
        let mut at: HashMap<Id, usize> = HashMap::new();
        let tasks: HashMap<u64, &TaskStats> =
            input.snap.tasks.iter().map(|t| (t.key.id, t)).collect();
        for v in input.custody {
            let (task, span) = names(&tasks, v.key);
            let id = Id {
                case: v.case,
                term: v.term,
                boundary: v.boundary,
                location: v.location,
                task,
                span,
            };
            let k = *at.entry(id.clone()).or_insert_with(|| {
                groups.push((id, Vec::new()));
                groups.len() - 1
            });
            groups[k].1.push(v);
        }
        let nodes = input.graph.map(Nodes::new);
        for (id, vs) in groups {
            if !self.kept.contains_key(&id) {
                if self.kept.len() >= MAX_KEPT {
                    continue;
                }
                self.order.push(id.clone());
            }
            let p = self.kept.entry(id).or_default();
            let s = surface(input.graph.zip(nodes.as_ref()), &vs);
            p.pointers += vs.len() as u64;
            p.in_custody += vs.iter().filter(|v| v.in_custody).count() as u64;
            p.bytes = p.bytes.saturating_add(s.bytes);
            p.allocations = p.allocations.saturating_add(s.allocations);
            p.from_graph |= !s.roots.is_empty();
            let room = MAX_ROOTS.saturating_sub(p.roots.len());
            p.roots.extend(s.roots.into_iter().take(room));
            for v in &vs {
                let id = v.key.task_id();
                if id != 0 && p.tasks.len() < 8 && !p.tasks.iter().any(|t| t.id == id) {
                    p.tasks.push(TaskKey { id });
                }
            }
            let last = vs.last().copied();
            if let Some(c) = last.and_then(|v| v.by) {
                p.call = Some(c);
            }
            if let Some(v) = last.filter(|v| v.freed_by.is_some()) {
                p.freed_by = v.freed_by.map(|k| {
                    let (task, span) = names(&tasks, k);
                    (task.unwrap_or_else(|| "no task".to_owned()), span)
                });
                p.realloc = v.realloc;
            }
        }
    }
}

/// The graph's nodes by address, to find the block a pointer names.
struct Nodes(Vec<(usize, usize, AllocId)>);

impl Nodes {
    fn new(g: &LiveGraph) -> Nodes {
        let mut v: Vec<_> = g
            .graph
            .nodes
            .iter()
            .map(|n| (n.addr, n.size.max(1), n.id))
            .collect();
        v.sort_unstable_by_key(|r| r.0);
        Nodes(v)
    }

    /// The node whose block contains `addr`.
    fn at(&self, addr: usize) -> Option<AllocId> {
        let k = self.0.partition_point(|r| r.0 <= addr);
        let (start, len, id) = *self.0.get(k.checked_sub(1)?)?;
        (addr < start + len).then_some(id)
    }
}

/// The danger surface of some pointers.
struct Surface {
    bytes: u64,
    allocations: u64,
    roots: Vec<AllocId>,
}

/// The union of the ownership closures of the blocks `vs` name in the graph, plus the own
/// size of each block the graph does not have.
fn surface(graph: Option<(&LiveGraph, &Nodes)>, vs: &[&Violation]) -> Surface {
    let mut roots = Vec::new();
    let mut bytes = 0u64;
    let mut allocations = 0u64;
    for v in vs {
        match graph.and_then(|(_, nodes)| nodes.at(v.addr)) {
            Some(id) if roots.contains(&id) => {}
            Some(id) => roots.push(id),
            None if v.size > 0 => {
                bytes = bytes.saturating_add(v.size as u64);
                allocations += 1;
            }
            None => {}
        }
    }
    if let (Some((g, _)), false) = (graph, roots.is_empty()) {
        let c = g.graph.ownership_closure_of(&roots, MAX_WALK);
        bytes = bytes.saturating_add(c.bytes);
        allocations += c.nodes.len() as u64;
    }
    Surface {
        bytes,
        allocations,
        roots,
    }
}

/// The task's display name (from the snapshot's `tasks` while heapspan holds the task, else
/// from the name index the key carries) and the span's `target::name` of an attribution key.
fn names(tasks: &HashMap<u64, &TaskStats>, k: Key) -> (Option<String>, Option<String>) {
    let id = k.task_id();
    let task = (id != 0).then(|| {
        tasks.get(&id).map_or_else(
            || crate::layer::names::task_name(k.task_name()),
            |t| t.display_name(),
        )
    });
    (task, crate::layer::names::span_label(k))
}

fn place(l: &Location<'_>) -> String {
    format!("{}:{}", l.file(), l.line())
}

fn draft(cfg: &FindingsConfig, id: &Id, p: &Problem) -> Draft {
    let (severity, verdict) = match id.case {
        Case::NotReclaimed if p.bytes >= cfg.high_bytes => (Severity::High, Verdict::Confirmed),
        Case::NotReclaimed | Case::ReleasedTwice | Case::HandedTwice => {
            (Severity::Medium, Verdict::Confirmed)
        }
        Case::FreedInCustody | Case::ReclaimedTwice => (Severity::Critical, Verdict::Confirmed),
        Case::ReleasedAfterReclaim | Case::ReclaimedAfterRelease => {
            (Severity::High, Verdict::Confirmed)
        }
        Case::NotHanded => (Severity::Medium, Verdict::Probable),
    };
    let boundary = id.boundary.unwrap_or("unknown");
    let at = place(id.location);
    let call = p
        .call
        .map(|c| format!(" (at {})", place(c)))
        .unwrap_or_default();
    let what = if p.pointers == 1 {
        "a pointer".to_owned()
    } else {
        format!("{} pointers", p.pointers)
    };
    let handed = format!("{what} handed to foreign code across `{boundary}` at {at}");
    let claim = match id.case {
        Case::NotReclaimed => {
            let when = match id.term {
                Some(Term::TaskEnd) => format!(
                    "when task `{}` ended",
                    id.task.as_deref().unwrap_or("unnamed")
                ),
                _ => "at its deadline".to_owned(),
            };
            let late = p.pointers - p.in_custody.min(p.pointers);
            match (p.in_custody, late) {
                (_, 0) => format!("{handed}: still in foreign custody {when}"),
                (0, _) => format!("{handed}: given back only after {when}"),
                (c, l) => format!(
                    "{handed}: {c} still in foreign custody {when}, {l} given back after it"
                ),
            }
        }
        Case::FreedInCustody => {
            let (task, span) = p.freed_by.clone().unwrap_or_default();
            let by = match span {
                Some(s) => format!("task `{task}` (span `{s}`)"),
                None => format!("task `{task}`"),
            };
            let op = if p.realloc { "reallocated" } else { "freed" };
            format!(
                "{handed}: {op} by Rust in {by} while foreign code held it; the allocator kept \
                 the block (flagged for good)"
            )
        }
        Case::ReclaimedTwice => format!(
            "{handed}: reclaimed a second time{call}, two owners of one block (the way to a \
             double free)"
        ),
        Case::ReleasedAfterReclaim => format!(
            "{handed}: released by the foreign side{call} after Rust reclaimed it (foreign code \
             still held what Rust owned again)"
        ),
        Case::ReclaimedAfterRelease => format!(
            "{handed}: reclaimed{call} after the foreign side released it (Rust took back what \
             foreign code let go of)"
        ),
        Case::ReleasedTwice => format!("{handed}: released a second time{call}"),
        Case::HandedTwice => format!("{handed}: handed over again{call} while in custody"),
        Case::NotHanded => format!(
            "{what} reclaimed or released at {at} with no handover heapspan remembers (a \
             missing `custody::handover`, or one too long ago)"
        ),
    };
    let surface = if p.from_graph {
        format!(
            "; its danger surface: {} in {} allocations",
            human(p.bytes),
            p.allocations
        )
    } else if p.bytes > 0 {
        format!(
            "; {} handed over (the blocks alone: their danger surface needs the live index)",
            human(p.bytes)
        )
    } else {
        String::new()
    };
    let mut d = Draft::new(
        Kind::FfiCustody,
        severity,
        verdict,
        format!("{claim}{surface}"),
    );
    d.confidence = if verdict == Verdict::Confirmed {
        1.0
    } else {
        0.6
    };
    d.bytes = p.bytes;
    d.allocations = p.allocations;
    d.task_name = id.task.clone();
    d.tasks = p.tasks.clone();
    d.span_name = id.span.clone();
    d.location = Some(crate::Location {
        file: id.location.file().to_owned(),
        line: id.location.line(),
    });
    d.from_graph = p.from_graph;
    d.roots = p.roots.clone();
    d.distinct = vec![id.case.as_str(), boundary, id.term.map_or("", Term::as_str)];
    d.ev(n::FINDING_CUSTODY_CASE, id.case.as_str())
        .ev(n::FINDING_BOUNDARY, boundary)
        .ev(n::FINDING_CUSTODY_POINTERS, p.pointers);
    if let Some(t) = id.term {
        d.ev(n::FINDING_CUSTODY_UNTIL, t.as_str());
    }
    if let Some(c) = p.call {
        d.ev(n::FINDING_CUSTODY_CALL, place(c));
    }
    if let Some((task, span)) = &p.freed_by {
        d.ev(n::FINDING_FREE_TASK, task.clone())
            .ev(n::FINDING_FREE_SPAN, span.clone().unwrap_or_default());
    }
    d
}

#[cfg(test)]
mod tests;
