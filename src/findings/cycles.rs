//! `refcount.unreachable_cycle`: `Rc`/`Arc` blocks that keep each other alive and that nothing
//! else holds.
//!
//! A candidate is a strongly connected component of the graph's ownership edges
//! ([`Graph::cycles`](crate::graph::Graph::cycles)) with at least one block taken for an
//! `RcBox`/`ArcInner` ([`Graph::refcounts`](crate::graph::Graph::refcounts)). Only a counted
//! handle keeps a cycle alive, so it is unreachable when each refcounted member's counts are
//! all accounted for by pointers from members (`strong + weak − 1` of them: a reference on a
//! stack, in a static or in an unindexed block is not seen, and leaves a count unaccounted
//! for, so the cycle is not claimed). Pointer words from outside into members whose counts are
//! already accounted for cannot be handles (stale words in reused blocks, borrows): they are
//! set aside, named in the evidence, and make the finding probable instead of confirmed.
//! Counts are read while the application runs, so a cycle is reported only once found so in
//! [`FindingsConfig::cycle_confirm_windows`] consecutive windows, with the same members.

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
        for Unreachable { members, set_aside } in unreachable(g) {
            let key = hash_ids(&members);
            let windows = self.seen.get(&key).copied().unwrap_or(0) + 1;
            next.insert(key, windows);
            if windows < cfg.cycle_confirm_windows {
                continue;
            }
            out.push(draft(cfg, g, &members, windows, set_aside));
        }
        self.seen = next;
    }
}

/// A cycle nothing outside holds: its members, and the pointer words from outside it that the
/// counts prove are not references (stale words in reused blocks, or borrows).
pub(crate) struct Unreachable {
    pub(crate) members: Vec<AllocId>,
    pub(crate) set_aside: u64,
}

/// The cycles of `g` that nothing outside them holds, members sorted by id.
///
/// Only a counted reference (an `Rc`/`Arc`/`Weak` handle) keeps a cycle alive, and every such
/// handle is in a count: so a cycle is unreachable when each refcounted member's
/// `strong + weak − 1` references are all found as pointer words in members. When words from
/// outside point into the cycle, each count must be met exactly, by that many members holding
/// one word each; then the outside words cannot be handles and are set aside (lowering the
/// finding's confidence). Otherwise words from outside leave the cycle held.
pub(crate) fn unreachable(g: &LiveGraph) -> Vec<Unreachable> {
    let graph = &g.graph;
    let mut found = Vec::new();
    for members in &graph.cycles {
        let set: HashSet<AllocId> = members.iter().copied().collect();
        if !members.iter().any(|&m| graph.refcount_of(m).is_some()) {
            continue;
        }
        // Per member: pointer words into its start from members, and the members they come
        // from; words from anywhere else.
        let mut inside: HashMap<AllocId, (u64, u64)> = HashMap::new();
        let mut outside: u64 = 0;
        for e in graph.edges.iter().filter(|e| set.contains(&e.to)) {
            if !points_at_start(e.kind) && e.kind != EdgeKind::Slice {
                continue;
            }
            if !set.contains(&e.from) {
                outside += u64::from(e.evidence);
            } else if points_at_start(e.kind) {
                let s = inside.entry(e.to).or_default();
                s.0 += u64::from(e.evidence);
                s.1 += 1;
            }
        }
        // With words from outside, the counts must be met exactly, one word per holding
        // member: a stale copy inside a member would otherwise make room for a real handle
        // outside.
        let accounted = members.iter().all(|&m| match graph.refcount_of(m) {
            Some(r) => {
                let refs = (r.strong + r.weak.saturating_sub(1)) as u64;
                let (words, holders) = inside.get(&m).copied().unwrap_or((0, 0));
                r.strong > 0
                    && if outside == 0 {
                        words >= refs
                    } else {
                        words == refs && holders == refs
                    }
            }
            None => true,
        });
        if accounted {
            found.push(Unreachable {
                members: members.clone(),
                set_aside: outside,
            });
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

fn draft(
    cfg: &FindingsConfig,
    g: &LiveGraph,
    members: &[AllocId],
    windows: u32,
    set_aside: u64,
) -> Draft {
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
    // The flavour, where a member's holders in two tasks or its allocation site prove it.
    let proven: Vec<EdgeKind> = members
        .iter()
        .filter_map(|&m| graph.refcount_of(m))
        .filter(|r| r.kind_proven)
        .map(|r| r.kind)
        .collect();
    let flavour = if proven.contains(&EdgeKind::ArcClone) {
        "Arc"
    } else if !proven.is_empty() {
        "Rc"
    } else {
        "Rc/Arc"
    };
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
    // `target::name`, as every finding names a span.
    let span_name = g.span_name_of(first).map(|(t, s)| format!("{t}::{s}"));
    let mut d = Draft::new(
        Kind::UnreachableCycle,
        severity,
        Verdict::Confirmed,
        format!(
            "{} {} blocks ({} in all) hold each other in a cycle that nothing else points to: \
             every strong count is accounted for by pointers inside it{}{}",
            members.len(),
            flavour,
            human(bytes),
            match tasks.len() {
                0 => String::new(),
                1 => format!(
                    " (allocated by task {})",
                    task_name.as_deref().unwrap_or("?")
                ),
                k => format!(" (allocated by {k} tasks)"),
            },
            if set_aside > 0 {
                format!(
                    "; {set_aside} pointer word(s) from outside were set aside: the counts \
                     prove they are not references (stale words in a reused block, or borrows)"
                )
            } else {
                String::new()
            }
        ),
    );
    // Words set aside rest on the counts alone: probable, not confirmed.
    if set_aside > 0 {
        d.verdict = Verdict::Probable;
        d.confidence = 0.7;
    } else {
        d.confidence = 0.9;
    }
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
    d.ev(n::FINDING_CYCLE_SET_ASIDE, set_aside);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{build, FlatHeap, GraphConfig, Node};

    /// Two `RcBox`es `[strong 1, weak 1, next, value]` pointing at each other, and a 64-byte
    /// block of another task whose word 3 points at the first: `stale` is a word left in a
    /// reused block (the counts have no room for it); without it, the block holds nothing.
    fn cycle_with_outside_word(stale: bool) -> LiveGraph {
        let mut heap = FlatHeap::new(0x1000, 32);
        for (at, next, v) in [(0x1000, 0x1040, 1), (0x1040, 0x1000, 2)] {
            heap.write(at, 1);
            heap.write(at + 8, 1);
            heap.write(at + 16, next);
            heap.write(at + 24, v);
        }
        if stale {
            heap.write(0x1080 + 24, 0x1000);
        }
        let mut nodes = vec![
            Node::new(AllocId(1), 0x1000, 32),
            Node::new(AllocId(2), 0x1040, 32),
            Node::new(AllocId(3), 0x1080, 64),
        ];
        nodes[0].task = 5;
        nodes[1].task = 5;
        nodes[2].task = 6;
        LiveGraph {
            graph: build(&nodes, &heap, &[], &GraphConfig::default()),
            ..LiveGraph::default()
        }
    }

    #[test]
    fn an_outside_word_the_counts_have_no_room_for_is_set_aside() {
        let clean = unreachable(&cycle_with_outside_word(false));
        assert_eq!(clean.len(), 1);
        assert_eq!(clean[0].members, [AllocId(1), AllocId(2)]);
        assert_eq!(clean[0].set_aside, 0);

        let g = cycle_with_outside_word(true);
        let found = unreachable(&g);
        assert_eq!(found.len(), 1, "a stale word does not hold the cycle");
        assert_eq!(found[0].set_aside, 1);
        let d = draft(&FindingsConfig::default(), &g, &found[0].members, 2, 1);
        assert_eq!(d.verdict, Verdict::Probable, "resting on the counts alone");
        assert!(d.summary.contains("set aside"), "{}", d.summary);
    }

    #[test]
    fn an_outside_reference_the_counts_have_room_for_holds_the_cycle() {
        // The first box's strong count is 2: the outside word is a real `Rc`.
        let mut g = cycle_with_outside_word(true);
        let mut heap = FlatHeap::new(0x1000, 32);
        for (at, next, v, strong) in [(0x1000, 0x1040, 1, 2), (0x1040, 0x1000, 2, 1)] {
            heap.write(at, strong);
            heap.write(at + 8, 1);
            heap.write(at + 16, next);
            heap.write(at + 24, v);
        }
        heap.write(0x1080 + 24, 0x1000);
        g.graph = build(&g.graph.nodes, &heap, &[], &GraphConfig::default());
        assert!(unreachable(&g).is_empty());
    }

    #[test]
    fn a_stale_copy_inside_a_member_does_not_make_room_for_an_outside_handle() {
        // The first box's strong count is 2; the second box holds its pointer twice (a real
        // handle and a stale copy), and a block outside holds the other real handle.
        let mut g = cycle_with_outside_word(true);
        let mut heap = FlatHeap::new(0x1000, 32);
        for (at, next, strong) in [(0x1000, 0x1040, 2), (0x1040, 0x1000, 1)] {
            heap.write(at, strong);
            heap.write(at + 8, 1);
            heap.write(at + 16, next);
            heap.write(at + 24, next);
        }
        heap.write(0x1080 + 24, 0x1000);
        g.graph = build(&g.graph.nodes, &heap, &[], &GraphConfig::default());
        assert_eq!(g.graph.cycles.len(), 1);
        assert!(unreachable(&g).is_empty(), "held by the outside handle");
    }
}
