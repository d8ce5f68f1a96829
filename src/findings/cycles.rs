//! `refcount.unreachable_cycle`: `Rc`/`Arc` blocks that keep each other alive and that nothing
//! else holds.
//!
//! A candidate is a strongly connected component of the graph's ownership edges
//! ([`Graph::cycles`](crate::graph::Graph::cycles)) with at least one block taken for an
//! `RcBox`/`ArcInner` ([`Graph::refcounts`](crate::graph::Graph::refcounts)). It is unreachable
//! when every pointer found into its members comes from a member, and each refcounted member's
//! counts are all accounted for by those pointers (`strong + weak − 1` of them: a reference on
//! a stack, in a static or in an unindexed block is not seen, and leaves a count unaccounted
//! for, so the cycle is not claimed). Counts are read while the application runs, so a cycle is
//! reported only once found so in [`FindingsConfig::cycle_confirm_windows`] consecutive
//! windows, with the same members.

use std::collections::{HashMap, HashSet};

use super::{human, Draft, FindingsConfig, Holder, Input, Kind, Severity, Verdict};
use crate::export::names as n;
use crate::graph::live::LiveGraph;
use crate::graph::{AllocId, EdgeKind};
use crate::TaskKey;

#[derive(Default)]
pub(crate) struct State {
    /// Per cycle (a hash of its sorted members), the consecutive windows it was found in.
    seen: HashMap<u64, u32>,
}

impl State {
    pub(crate) fn run(&mut self, cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
        let Some(g) = input.graph else {
            // Cycles need the graph: without the live index nothing is claimed.
            self.seen.clear();
            return;
        };
        let mut next = HashMap::new();
        for members in unreachable(g) {
            let key = hash_ids(&members);
            let windows = self.seen.get(&key).copied().unwrap_or(0) + 1;
            next.insert(key, windows);
            if windows < cfg.cycle_confirm_windows {
                continue;
            }
            out.push(draft(cfg, g, &members, windows));
        }
        self.seen = next;
    }
}

/// The cycles of `g` that nothing outside them holds, each sorted by id.
pub(crate) fn unreachable(g: &LiveGraph) -> Vec<Vec<AllocId>> {
    let graph = &g.graph;
    let mut found = Vec::new();
    for members in &graph.cycles {
        let set: HashSet<AllocId> = members.iter().copied().collect();
        if !members.iter().any(|&m| graph.refcount_of(m).is_some()) {
            continue;
        }
        // Pointers into each member: from members, and from anywhere else.
        let mut inside: HashMap<AllocId, u64> = HashMap::new();
        let mut outside = false;
        for e in graph.edges.iter().filter(|e| set.contains(&e.to)) {
            if !points_at_start(e.kind) && e.kind != EdgeKind::Slice {
                continue;
            }
            if set.contains(&e.from) {
                if points_at_start(e.kind) {
                    *inside.entry(e.to).or_default() += u64::from(e.evidence);
                }
            } else {
                outside = true;
                break;
            }
        }
        if outside {
            continue;
        }
        let accounted = members.iter().all(|&m| match graph.refcount_of(m) {
            Some(r) => {
                let refs = (r.strong + r.weak.saturating_sub(1)) as u64;
                r.strong > 0 && inside.get(&m).copied().unwrap_or(0) >= refs
            }
            None => true,
        });
        if accounted {
            found.push(members.clone());
        }
    }
    found
}

/// Edge kinds found from a pointer to the target's first byte.
fn points_at_start(k: EdgeKind) -> bool {
    matches!(
        k,
        EdgeKind::Owns | EdgeKind::Shares | EdgeKind::ArcClone | EdgeKind::RcClone
    )
}

fn draft(cfg: &FindingsConfig, g: &LiveGraph, members: &[AllocId], windows: u32) -> Draft {
    let graph = &g.graph;
    let idx: Vec<usize> = members.iter().filter_map(|&m| graph.index_of(m)).collect();
    let own: u64 = idx.iter().map(|&i| graph.nodes[i].weighted_size()).sum();
    let bytes = graph.retained_of(members[0]).unwrap_or(0).max(own);
    let refcounted = members
        .iter()
        .filter(|&&m| graph.refcount_of(m).is_some())
        .count();
    let strong: usize = members
        .iter()
        .filter_map(|&m| graph.refcount_of(m))
        .map(|r| r.strong)
        .sum();
    let arc = members
        .iter()
        .filter_map(|&m| graph.refcount_of(m))
        .any(|r| r.kind == EdgeKind::ArcClone);
    // Named after the largest member: its task, span and site.
    let first = idx
        .iter()
        .copied()
        .max_by_key(|&i| (graph.nodes[i].size, std::cmp::Reverse(i)))
        .unwrap_or(0);
    let mut tasks: Vec<TaskKey> = idx
        .iter()
        .map(|&i| graph.nodes[i].task)
        .filter(|&t| t != 0)
        .map(|id| TaskKey { id })
        .collect();
    tasks.sort_by_key(|t| t.id);
    tasks.dedup();
    let severity = if bytes > cfg.cycle_critical_bytes {
        Severity::Critical
    } else {
        Severity::High
    };
    let task_name = g.task_name_of(first);
    let span_name = g.span_name_of(first).map(|(_, s)| s.to_owned());
    let mut d = Draft::new(
        Kind::UnreachableCycle,
        severity,
        Verdict::Confirmed,
        format!(
            "{} {} blocks ({} in all) hold each other in a cycle that nothing else points to: \
             every strong count is accounted for by pointers inside it{}",
            members.len(),
            if arc { "Arc" } else { "Rc" },
            human(bytes),
            match tasks.len() {
                0 => String::new(),
                1 => format!(
                    " (allocated by task {})",
                    task_name.as_deref().unwrap_or("?")
                ),
                k => format!(" (allocated by {k} tasks)"),
            }
        ),
    );
    d.confidence = 0.9;
    d.bytes = bytes;
    d.allocations = members.len() as u64;
    d.task_name = task_name;
    d.span_name = span_name;
    d.tasks = tasks;
    d.location = g.site_location(graph.nodes.get(first).map_or(0, |nd| nd.site));
    d.holder = Some(Holder::Cycle);
    d.roots = members.iter().copied().take(super::MAX_ROOTS).collect();
    d.from_graph = true;
    d.ev(n::FINDING_CYCLE_MEMBERS, members.len());
    d.ev(n::FINDING_CYCLE_REFCOUNTED, refcounted);
    d.ev(n::FINDING_CYCLE_STRONG, strong);
    d.ev(n::FINDING_CYCLE_WINDOWS, u64::from(windows));
    d
}

/// FNV-1a of the sorted member ids.
fn hash_ids(ids: &[AllocId]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.0.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
