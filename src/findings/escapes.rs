//! Allocations that outlive their task (`task.escaped_allocation`), and frees of a task's
//! allocations by other tasks (`alloc.cross_task_free`, from the hand-off matrix).
//!
//! Per task name whose tasks' ends heapspan sees (the wrapper, `tokio_unstable`): the
//! *residue* is the name's live bytes minus those of its running tasks, what its ended tasks
//! left. It counts as escaped once it has stayed at least [`FindingsConfig::escape_min_bytes`]
//! for `escape_grace_windows` windows (the smallest figure of those windows is the one
//! reported). With the relation graph, the ended tasks' live allocations are classified by
//! what points at them: memory of a running task (transferred: info), memory no running task
//! allocated (retained: low), nothing on the heap (unowned: medium); an allocation pointed at
//! only by other survivors gets the class of the survivor it hangs from. Without the graph the
//! holder is unknown and the finding is low.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{human, Draft, EvidenceValue, FindingsConfig, Holder, Input, Kind, Severity, Verdict};
use crate::export::names as n;
use crate::graph::{AllocId, EdgeKind};
use crate::{TaskKey, TaskStats};

#[derive(Default)]
pub(crate) struct State {
    /// Per task name, its residue at the last windows (newest last).
    residue: HashMap<String, VecDeque<u64>>,
}

/// A survivor's class while classifying.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Class {
    Unowned,
    Transferred(String),
    Retained(Option<String>),
}

impl State {
    pub(crate) fn run(&mut self, cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
        let snap = input.snap;
        // The window's hand-off matrix (since start in the first window).
        let handoffs = match input.prev {
            Some(prev) => snap.handoffs.since(&prev.handoffs),
            None => snap.handoffs.clone(),
        };
        // Running tasks' live bytes per name, and the ended ones' keys.
        let mut running: HashMap<String, i64> = HashMap::new();
        let mut ended: HashMap<String, Vec<&TaskStats>> = HashMap::new();
        for t in &snap.tasks {
            let name = t.display_name();
            if t.ended.is_none() {
                *running.entry(name).or_default() += t.mem.live_bytes();
            } else {
                ended.entry(name).or_default().push(t);
            }
        }
        let keep = cfg.escape_grace_windows as usize + 1;
        let mut seen = HashSet::new();
        for nm in &snap.task_names {
            if nm.ended == 0 {
                // No end seen for any task of the name: nothing is known to have escaped.
                continue;
            }
            let residue =
                (nm.mem.live_bytes() - running.get(&nm.name).copied().unwrap_or(0)).max(0) as u64;
            seen.insert(nm.name.clone());
            let series = self.residue.entry(nm.name.clone()).or_default();
            series.push_back(residue);
            while series.len() > keep {
                series.pop_front();
            }
            if series.len() < keep {
                continue;
            }
            let lasting = series.iter().copied().min().unwrap_or(0);
            if lasting < cfg.escape_min_bytes {
                continue;
            }
            let tasks = ended.get(&nm.name).map(Vec::as_slice).unwrap_or(&[]);
            let location = tasks.iter().find_map(|t| t.location.clone());
            let keys: Vec<TaskKey> = tasks.iter().rev().take(8).map(|t| t.key).collect();
            match input.graph {
                Some(g) => {
                    for Escaped {
                        class,
                        bytes,
                        allocations,
                        roots,
                    } in classify(input, &nm.name, g)
                    {
                        if bytes < cfg.escape_min_bytes {
                            continue;
                        }
                        // "Nothing points to it" is only as good as the graph: an owner may be
                        // among the nodes it left out, or in the unread part of a node.
                        let unseen = unseen_nodes(g);
                        let (severity, holder, what) = match class {
                            Class::Unowned if unseen > 0 => (
                                Severity::Low,
                                Holder::Nothing,
                                "that nothing the graph read points to (it left nodes out or \
                                 unread: an owner may be among them)",
                            ),
                            Class::Unowned => {
                                (Severity::Medium, Holder::Nothing, "that nothing points to")
                            }
                            Class::Transferred(t) => (
                                Severity::Info,
                                Holder::Task(t),
                                "now held by a running task",
                            ),
                            Class::Retained(t) => (
                                Severity::Low,
                                Holder::Container { allocated_by: t },
                                "held by a container no running task owns",
                            ),
                        };
                        let mut d = Draft::new(
                            Kind::EscapedAllocation,
                            severity,
                            if severity == Severity::Info {
                                Verdict::Diagnostic
                            } else {
                                Verdict::Probable
                            },
                            format!(
                                "tasks named {} ended and left {} in {} allocations {what} \
                                 (holder: {holder})",
                                nm.name,
                                human(bytes),
                                allocations
                            ),
                        );
                        d.confidence = 0.8;
                        d.bytes = bytes;
                        d.allocations = allocations;
                        d.from_graph = true;
                        d.task_name = Some(nm.name.clone());
                        d.tasks = keys.clone();
                        d.location = location.clone();
                        d.ev(n::FINDING_TASKS, nm.ended);
                        d.ev(n::FINDING_THRESHOLD, cfg.escape_min_bytes);
                        if holder == Holder::Nothing && unseen > 0 {
                            d.confidence = 0.5;
                            d.ev(n::FINDING_GRAPH_UNSEEN_NODES, unseen);
                        }
                        d.holder = Some(holder);
                        d.roots = roots;
                        handoff_evidence(&mut d, &handoffs, &nm.name);
                        out.push(d);
                    }
                }
                None => {
                    let mut d = Draft::new(
                        Kind::EscapedAllocation,
                        Severity::Low,
                        Verdict::Probable,
                        format!(
                            "tasks named {} ended and left {} still allocated for {} window(s) \
                             (who holds it is unknown: the live index is off)",
                            nm.name,
                            human(lasting),
                            keep - 1
                        ),
                    );
                    d.confidence = 0.4;
                    d.bytes = lasting;
                    d.task_name = Some(nm.name.clone());
                    d.tasks = keys;
                    d.location = location;
                    d.holder = Some(Holder::Unknown);
                    d.ev(n::FINDING_TASKS, nm.ended);
                    d.ev(n::FINDING_THRESHOLD, cfg.escape_min_bytes);
                    handoff_evidence(&mut d, &handoffs, &nm.name);
                    out.push(d);
                }
            }
        }
        self.residue.retain(|k, _| seen.contains(k));
        cross_task_frees(cfg, input, &handoffs, out);
    }
}

/// The cells of the window's hand-off matrix whose blocks tasks named `name` allocated, on an
/// escaped-allocation finding of that name: where its blocks went this window, when they were
/// handed off (the evidence that a survivor's holder may be one of those tasks).
fn handoff_evidence(d: &mut Draft, window: &crate::HandOffs, name: &str) {
    let cells: Vec<&crate::HandOff> = window
        .cells
        .iter()
        .filter(|c| c.allocated_by == name)
        .collect();
    if !cells.is_empty() {
        d.ev(n::FINDING_HANDOFF_CELLS, cells_evidence(&cells));
    }
}

/// Nodes of `g` whose pointers the graph did not read in full: left out by a cap, unreadable,
/// or read only up to the per-node cap.
fn unseen_nodes(g: &crate::graph::live::LiveGraph) -> u64 {
    let s = &g.graph.skipped;
    s.nodes + s.unreadable + s.truncated_nodes
}

/// The live allocations of the ended tasks named `name`, by class, largest first.
fn classify(input: &Input<'_>, name: &str, g: &crate::graph::live::LiveGraph) -> Vec<Escaped> {
    let graph = &g.graph;
    let mut by_id: HashMap<u64, &TaskStats> = HashMap::new();
    for t in &input.snap.tasks {
        by_id.insert(t.key.id, t);
    }
    let running = |task: u64| by_id.get(&task).is_some_and(|t| t.ended.is_none());
    // Survivors: allocated by a task of the name that is not running, ended before the
    // window started (the grace) or no longer in the tables.
    let survivor = |i: usize| {
        let node = &graph.nodes[i];
        node.task != 0
            && g.task_name_of(i).as_deref() == Some(name)
            && match by_id.get(&node.task) {
                Some(t) => t.ended.is_some_and(|e| e <= input.start),
                None => true,
            }
    };
    let survivors: Vec<usize> = (0..graph.nodes.len()).filter(|&i| survivor(i)).collect();
    if survivors.is_empty() {
        return Vec::new();
    }
    let members: HashSet<AllocId> = survivors.iter().map(|&i| graph.nodes[i].id).collect();
    // Per survivor: the class from its holders outside the set, and its holders inside it.
    let mut class: HashMap<AllocId, Class> = HashMap::new();
    let mut inside: HashMap<AllocId, Vec<AllocId>> = HashMap::new();
    for e in &graph.edges {
        if !members.contains(&e.to) || !holds(e) {
            continue;
        }
        if members.contains(&e.from) {
            inside.entry(e.to).or_default().push(e.from);
            continue;
        }
        let Some(from) = graph.node(e.from) else {
            continue;
        };
        let from_idx = graph.index_of(e.from).unwrap_or(usize::MAX);
        let c = if from.task != 0 && running(from.task) {
            Class::Transferred(
                by_id
                    .get(&from.task)
                    .map_or_else(|| "unnamed".to_owned(), |t| t.display_name()),
            )
        } else {
            Class::Retained((from.task != 0).then(|| {
                g.task_name_of(from_idx)
                    .unwrap_or_else(|| "unnamed".to_owned())
            }))
        };
        // Transferred beats retained: a running task's memory is the likelier owner.
        let slot = class.entry(e.to).or_insert(c.clone());
        if matches!(c, Class::Transferred(_)) && !matches!(slot, Class::Transferred(_)) {
            *slot = c;
        }
    }
    // Survivors held only from inside take the class of what they hang from (a fixed point
    // over the inside edges, bounded by the set's size).
    let mut changed = true;
    let mut rounds = 0;
    while changed && rounds < 64 {
        changed = false;
        rounds += 1;
        for (to, froms) in &inside {
            if class.contains_key(to) {
                continue;
            }
            if let Some(c) = froms.iter().find_map(|f| class.get(f)).cloned() {
                class.insert(*to, c);
                changed = true;
            }
        }
    }
    // Each class's survivors as (bytes, id).
    let mut sums: HashMap<Class, Vec<(u64, AllocId)>> = HashMap::new();
    for &i in &survivors {
        let node = &graph.nodes[i];
        let c = class.get(&node.id).cloned().unwrap_or(Class::Unowned);
        sums.entry(c)
            .or_default()
            .push((node.weighted_size(), node.id));
    }
    let mut v: Vec<Escaped> = sums
        .into_iter()
        .map(|(class, mut ids)| {
            ids.sort_unstable_by(|a, b| b.cmp(a));
            Escaped {
                class,
                bytes: ids.iter().map(|&(b, _)| b).sum(),
                allocations: ids.len() as u64,
                roots: ids
                    .into_iter()
                    .take(super::MAX_ROOTS)
                    .map(|(_, id)| id)
                    .collect(),
            }
        })
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    v
}

/// One class of an ended task name's surviving allocations.
struct Escaped {
    class: Class,
    bytes: u64,
    allocations: u64,
    /// The largest of them.
    roots: Vec<AllocId>,
}

/// Least confidence of a `slice` edge that holds its target: a length or capacity next to the
/// word (0.85 in the graph's rules). A bare word pointing inside a block is most often a stale
/// one (uninitialised or reused memory): the larger an escaped block, the likelier one falls
/// inside it, and a 256 KiB leak would pass for retained by whatever block the word is in.
const MIN_SLICE_CONFIDENCE: f32 = 0.8;

/// Edges that keep their target alive: the ownership kinds, and slices that carry a length.
fn holds(e: &crate::graph::Edge) -> bool {
    e.kind.is_ownership() || (e.kind == EdgeKind::Slice && e.confidence >= MIN_SLICE_CONFIDENCE)
}

/// Most freeing names a hand-off finding lists in its evidence.
const MAX_EVIDENCE_CELLS: usize = 8;

/// `alloc.cross_task_free`: per task name, the bytes of its tasks' blocks freed this window by
/// another task, or outside any task: the row of the name in the window's hand-off matrix
/// ([`crate::HandOffs`], counted in the free path, so frees while the allocating task still
/// runs are in too). Normal message passing, never a problem by itself: info, diagnostic,
/// from [`FindingsConfig::cross_task_min_bytes`] a window. Its evidence is the row's cells,
/// largest first ([`n::FINDING_HANDOFF_CELLS`]). Blocks allocated outside any task, and the
/// overflow cell, make no finding (no task name to report); when the window has overflow
/// frees, each row is a lower bound and says so (confidence 0.8 instead of 1.0).
fn cross_task_frees(
    cfg: &FindingsConfig,
    input: &Input<'_>,
    window: &crate::HandOffs,
    out: &mut Vec<Draft>,
) {
    let mut rows: Vec<(&str, Vec<&crate::HandOff>)> = Vec::new();
    for c in &window.cells {
        if c.allocated_by == crate::HandOffs::NO_TASK || c.allocated_by == n::OTHER {
            continue;
        }
        match rows.iter_mut().find(|(name, _)| *name == c.allocated_by) {
            Some((_, cells)) => cells.push(c),
            None => rows.push((&c.allocated_by, vec![c])),
        }
    }
    for (name, cells) in rows {
        let bytes: u64 = cells.iter().map(|c| c.bytes).sum();
        let frees: u64 = cells.iter().map(|c| c.frees).sum();
        if bytes < cfg.cross_task_min_bytes {
            continue;
        }
        let to: Vec<&str> = cells.iter().map(|c| c.freed_by.as_str()).collect();
        // Frees whose pair found no cell this window are in `other → other`: any row may miss
        // some of them.
        let lost = window.overflow_frees;
        let mut d = Draft::new(
            Kind::CrossTaskFree,
            Severity::Info,
            Verdict::Diagnostic,
            format!(
                "{}{} allocated by tasks named {name} was freed this window by {} (handed                  off){}",
                if lost > 0 { "at least " } else { "" },
                human(bytes),
                match to.as_slice() {
                    [one] => (*one).to_owned(),
                    [first, rest @ ..] => format!("{first} and {} more", rest.len()),
                    [] => String::new(),
                },
                if lost > 0 {
                    format!(
                        "; {lost} hand-off(s) of this window found no cell of the matrix and                          count under other"
                    )
                } else {
                    String::new()
                }
            ),
        );
        // Counted in the free path: exact, unless pairs overflowed the matrix this window.
        d.confidence = if lost > 0 { 0.8 } else { 1.0 };
        d.bytes = bytes;
        d.allocations = frees;
        d.task_name = Some(name.to_owned());
        let tasks: Vec<&TaskStats> = input.snap.tasks_named(name).collect();
        d.location = tasks.iter().find_map(|t| t.location.clone());
        d.tasks = tasks.iter().rev().take(8).map(|t| t.key).collect();
        d.ev(n::FINDING_HANDOFF_CELLS, cells_evidence(&cells));
        d.ev(
            n::FINDING_THRESHOLD,
            EvidenceValue::from(cfg.cross_task_min_bytes),
        );
        out.push(d);
    }
}

/// The evidence text of hand-off cells (one row of the matrix, largest first): `freeing name
/// = bytes B / frees`, joined by `; `, the first [`MAX_EVIDENCE_CELLS`] and a count of the rest.
fn cells_evidence(cells: &[&crate::HandOff]) -> String {
    let mut s = String::new();
    for c in cells.iter().take(MAX_EVIDENCE_CELLS) {
        if !s.is_empty() {
            s.push_str("; ");
        }
        s.push_str(&format!("{} = {} B / {}", c.freed_by, c.bytes, c.frees));
    }
    if cells.len() > MAX_EVIDENCE_CELLS {
        s.push_str(&format!("; {} more", cells.len() - MAX_EVIDENCE_CELLS));
    }
    s
}
