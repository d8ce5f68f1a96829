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
        for Unreachable {
            members,
            set_aside,
            surplus,
        } in unreachable(g)
        {
            let key = hash_ids(&members);
            let windows = self.seen.get(&key).copied().unwrap_or(0) + 1;
            next.insert(key, windows);
            if windows < cfg.cycle_confirm_windows {
                continue;
            }
            out.push(draft(cfg, g, &members, windows, set_aside, surplus));
        }
        self.seen = next;
    }
}

/// A cycle nothing outside holds: its members, and what the claim rests on beyond exact counts.
pub(crate) struct Unreachable {
    pub(crate) members: Vec<AllocId>,
    /// Pointer words from outside into refcounted members whose counts the members already
    /// meet: taken for stale words (left in reused blocks) or borrows, not handles.
    pub(crate) set_aside: u64,
    /// Pointer words inside beyond the counts (stale copies), or a member read as refcounted
    /// only with surplus words ([`Refcount::surplus`](crate::graph::Refcount::surplus)).
    pub(crate) surplus: u64,
}

/// The cycles of `g` that nothing outside them holds, members sorted by id.
///
/// Only a counted reference (an `Rc`/`Arc`/`Weak` handle) keeps a cycle alive, and every such
/// handle is in a count: so a cycle is unreachable when each refcounted member's
/// `strong + weak − 1` references are all found as pointer words in members, held by as many
/// members (several words in one member count once: a stale copy beside a handle, as an async
/// state machine keeps them, would otherwise hide a handle on a stack). A word from
/// outside into a member with no refcount (a `Box` the cycle's `Rc` points back to, say) is
/// an owner: the cycle is held. Words from outside into a refcounted member are set aside
/// only when that member's count is met exactly, by that many members holding one word each
/// (a stale copy inside a member would otherwise make room for a real handle outside); the
/// counts then suggest, not prove, that the outside words are stale. Otherwise the cycle is
/// held.
pub(crate) fn unreachable(g: &LiveGraph) -> Vec<Unreachable> {
    let graph = &g.graph;
    let mut found = Vec::new();
    'cycles: for members in &graph.cycles {
        let set: HashSet<AllocId> = members.iter().copied().collect();
        if !members.iter().any(|&m| graph.refcount_of(m).is_some()) {
            continue;
        }
        // Per member: pointer words into its start from members, the members they come
        // from, and words from anywhere else.
        let mut words: HashMap<AllocId, Words> = HashMap::new();
        for e in graph.edges.iter().filter(|e| set.contains(&e.to)) {
            if !points_at_start(e.kind) && e.kind != EdgeKind::Slice {
                continue;
            }
            let w = words.entry(e.to).or_default();
            if !set.contains(&e.from) {
                w.outside += u64::from(e.evidence);
            } else if points_at_start(e.kind) {
                w.inside += u64::from(e.evidence);
                w.holders += 1;
            }
        }
        let (mut set_aside, mut surplus) = (0, 0);
        for &m in members {
            let w = words.get(&m).copied().unwrap_or_default();
            let Some(r) = graph.refcount_of(m) else {
                if w.outside > 0 {
                    continue 'cycles; // an owner outside
                }
                continue;
            };
            let refs = (r.strong + r.weak.saturating_sub(1)) as u64;
            // Each count needs a holder of its own: two words of one block (a handle and a
            // stale copy of it, as an async state machine leaves them) would otherwise stand in
            // for a handle on a stack or in an unindexed block.
            let met = r.strong > 0
                && if w.outside == 0 {
                    w.inside >= refs && w.holders >= refs
                } else {
                    w.inside == refs && w.holders == refs
                };
            if !met {
                continue 'cycles;
            }
            set_aside += w.outside;
            surplus += w.inside - refs + r.surplus as u64;
        }
        found.push(Unreachable {
            members: members.clone(),
            set_aside,
            surplus,
        });
    }
    found
}

/// Pointer words into one cycle member.
#[derive(Clone, Copy, Default)]
struct Words {
    inside: u64,
    holders: u64,
    outside: u64,
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
    surplus: u64,
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
    // Exact counts confirm the claim; words set aside or beyond the counts only suggest it:
    // probable, and no higher than medium.
    let exact = set_aside == 0 && surplus == 0;
    let severity = if !exact {
        Severity::Medium
    } else if bytes > cfg.cycle_critical_bytes {
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
            if exact {
                String::new()
            } else {
                format!(
                    "; {set_aside} pointer word(s) from outside were set aside and {surplus} \
                     inside are beyond the counts: the counts suggest they are stale (left in \
                     a reused block) or borrows, not handles"
                )
            }
        ),
    );
    if exact {
        d.confidence = 0.9;
    } else {
        d.verdict = Verdict::Probable;
        d.confidence = 0.6;
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
    d.ev(n::FINDING_CYCLE_SURPLUS, surplus);
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
        let d = draft(
            &FindingsConfig::default(),
            &g,
            &found[0].members,
            2,
            1,
            found[0].surplus,
        );
        assert_eq!(d.verdict, Verdict::Probable, "resting on the counts alone");
        assert_eq!(d.severity, Severity::Medium, "no higher than medium");
        assert!(d.summary.contains("suggest"), "{}", d.summary);
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

    #[test]
    fn a_stale_copy_inside_a_member_does_not_stand_in_for_a_handle_on_a_stack() {
        // As a tokio task's cell and a oneshot channel it awaits: the first box's strong count
        // is 2, the second box holds its pointer twice (the receiver and a stale copy in the
        // state machine), and the other handle (the sender) is on a stack, seen by no scan.
        let mut g = cycle_with_outside_word(false);
        let mut heap = FlatHeap::new(0x1000, 32);
        for (at, next, strong) in [(0x1000, 0x1040, 2), (0x1040, 0x1000, 1)] {
            heap.write(at, strong);
            heap.write(at + 8, 1);
            heap.write(at + 16, next);
            heap.write(at + 24, next);
        }
        g.graph = build(&g.graph.nodes, &heap, &[], &GraphConfig::default());
        assert_eq!(g.graph.cycles.len(), 1);
        assert!(
            unreachable(&g).is_empty(),
            "two words of one block are one holder: the count has room for a handle unseen"
        );
    }

    /// A healthy parent/child pair: a block outside owns the parent (no refcount: a `Box`),
    /// which holds the only `Rc` to the child, whose raw back-pointer makes the cycle. The
    /// outside owner holds it.
    #[test]
    fn an_outside_owner_of_a_member_without_a_refcount_holds_the_cycle() {
        let mut heap = FlatHeap::new(0x1000, 32);
        // Parent (no refcount header: its first words are large) at 0x1000 → child RcBox.
        heap.write(0x1000, 0x7fff_0000_0000);
        heap.write(0x1008, 0x1040);
        // Child RcBox [strong 1, weak 1, back-pointer to the parent, value] at 0x1040.
        heap.write(0x1040, 1);
        heap.write(0x1048, 1);
        heap.write(0x1050, 0x1000);
        heap.write(0x1058, 9);
        // The outside owner of the parent.
        heap.write(0x1080, 0x1000);
        heap.write(0x1088, 16);
        let nodes = vec![
            Node::new(AllocId(1), 0x1000, 16),
            Node::new(AllocId(2), 0x1040, 32),
            Node::new(AllocId(3), 0x1080, 64),
        ];
        let g = LiveGraph {
            graph: build(&nodes, &heap, &[], &GraphConfig::default()),
            ..LiveGraph::default()
        };
        assert_eq!(g.graph.cycles.len(), 1, "{:?}", g.graph.edges);
        assert!(g.graph.refcount_of(AllocId(2)).is_some());
        assert!(unreachable(&g).is_empty(), "the box's owner holds it");
    }
}
