//! Allocations that outlive their task (`task.escaped_allocation`), and frees of a task's
//! allocations after it ended (`alloc.cross_task_free`).
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
                    out.push(d);
                }
            }
        }
        self.residue.retain(|k, _| seen.contains(k));
        cross_task_frees(cfg, input, out);
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

/// `alloc.cross_task_free`: per task name, bytes of its tasks' allocations freed this window
/// after those tasks had ended (so while another task, or none, ran). A lower bound of the
/// hand-offs (frees by another task while the allocating one still runs are not seen without a
/// check on the free path), and never a problem by itself: info, diagnostic.
///
/// When every task of the name that ended in the window is still in the tables, the name's
/// frees this window minus those of its tasks that were running at the window's start (or
/// started in it) are the frees after an end: exact, tasks forgotten earlier included. When
/// some of them were forgotten already (more tasks ended than
/// [`crate::Builder::ended_task_retention`] keeps), their own frees would pass for hand-offs:
/// then only the tasks that ended before the window and are still in the tables count, from
/// their own figures.
fn cross_task_frees(cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
    let Some(prev) = input.prev else {
        return;
    };
    // At the window's start: each name's (freed bytes, frees, ended tasks), each task's
    // (freed bytes, frees).
    let names_before: HashMap<&str, (u64, u64, u64)> = prev
        .task_names
        .iter()
        .map(|t| (t.name.as_str(), (t.mem.freed_bytes, t.mem.frees, t.ended)))
        .collect();
    let tasks_before: HashMap<u64, (u64, u64)> = prev
        .tasks
        .iter()
        .map(|t| (t.key.id, (t.mem.freed_bytes, t.mem.frees)))
        .collect();
    /// One name's tasks this window.
    #[derive(Default)]
    struct Tasks<'a> {
        /// Frees (bytes, count) of the tasks that ran in the window: their own, probably.
        own: (u64, u64),
        /// Of those, the ones that ended in the window.
        ended_in_window: u64,
        /// Frees (bytes, count) of the tasks that ended before it, and those tasks.
        after_end: (u64, u64),
        ended_before: Vec<&'a TaskStats>,
    }
    let mut by_name: HashMap<String, Tasks<'_>> = HashMap::new();
    for t in &input.snap.tasks {
        let ended_before = t.ended.is_some_and(|e| e <= input.start);
        let (bytes0, frees0) = match tasks_before.get(&t.key.id) {
            Some(&b) => b,
            // Ended before the window yet not in its first snapshot: nothing to compare with.
            None if ended_before => continue,
            // Started in the window.
            None => (0, 0),
        };
        let delta = (
            t.mem.freed_bytes.saturating_sub(bytes0),
            t.mem.frees.saturating_sub(frees0),
        );
        let e = by_name.entry(t.display_name()).or_default();
        if ended_before {
            e.after_end.0 += delta.0;
            e.after_end.1 += delta.1;
            if delta.0 > 0 {
                e.ended_before.push(t);
            }
        } else {
            e.own.0 += delta.0;
            e.own.1 += delta.1;
            e.ended_in_window += u64::from(t.ended.is_some());
        }
    }
    for nm in &input.snap.task_names {
        if nm.ended == 0 {
            continue;
        }
        let tasks = by_name.remove(&nm.name).unwrap_or_default();
        let (bytes0, frees0, ended0) = names_before
            .get(nm.name.as_str())
            .copied()
            .unwrap_or((0, 0, 0));
        let all_kept = nm.ended.saturating_sub(ended0) == tasks.ended_in_window;
        let (bytes, frees) = if all_kept {
            (
                nm.mem
                    .freed_bytes
                    .saturating_sub(bytes0)
                    .saturating_sub(tasks.own.0),
                nm.mem
                    .frees
                    .saturating_sub(frees0)
                    .saturating_sub(tasks.own.1),
            )
        } else {
            tasks.after_end
        };
        if bytes < cfg.cross_task_min_bytes {
            continue;
        }
        let mut d = Draft::new(
            Kind::CrossTaskFree,
            Severity::Info,
            Verdict::Diagnostic,
            format!(
                "{} allocated by tasks named {} was freed this window after those tasks ended \
                 (handed off to other tasks)",
                human(bytes),
                nm.name
            ),
        );
        d.confidence = if all_kept { 0.9 } else { 0.7 };
        d.bytes = bytes;
        d.allocations = frees;
        d.task_name = Some(nm.name.clone());
        d.location = tasks.ended_before.iter().find_map(|t| t.location.clone());
        d.tasks = tasks
            .ended_before
            .iter()
            .rev()
            .take(8)
            .map(|t| t.key)
            .collect();
        d.ev(
            n::FINDING_THRESHOLD,
            EvidenceValue::from(cfg.cross_task_min_bytes),
        );
        out.push(d);
    }
}
