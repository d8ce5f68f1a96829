//! The detectors: one scan over the words of every node, then classification of the hits.
//!
//! The scan reads each node once into a reused buffer and looks every word up in the
//! [`AddrIndex`]: a word equal to another node's start is a *start hit*, a word strictly inside
//! another node an *interior hit*. For clone detection it also hashes the first
//! [`GraphConfig::clone_prefix_bytes`] of each candidate, together with its size, into one
//! group key. Nothing is hashed per word beyond that prefix.
//!
//! Start hits become `Owns`, `Shares` or `ArcClone` depending on how many owners a target has
//! and on its first two words (a possible `strong, weak` refcount header, read again only for
//! targets with two or more pointers or in a cycle; `RcClone` comes from the allocation site,
//! [`Graph::set_refcount_kinds`](super::Graph::set_refcount_kinds)); interior hits become
//! `Slice` (none from a holder that also has a start hit into the same block); clone
//! candidates are sorted by `(group key, time)`, the earliest of each group being the
//! original; annotations give `Contains`; [`Node::realloc_from`] gives `Evolution`.

use super::index::AddrIndex;
use super::scc::{self, Csr};
use super::sort::radix_sort_by_key;
use super::{
    weighted, AllocId, Annotation, BuildStats, Edge, EdgeKind, GraphConfig, Node, Refcount,
    Skipped, WordSource, WORD,
};

/// A pointer word found by the scan (16 bytes: there may be millions).
#[derive(Clone, Copy, Debug)]
struct Hit {
    /// `to << 32 | from`: sorts by target, then owner.
    key: u64,
    /// Smallest offset into the target among the merged words (saturated at `u32::MAX`).
    offset: u32,
    /// Number of words merged into this hit (saturating).
    words: u16,
    /// A neighbouring word is a plausible length or capacity.
    len_next: bool,
}

impl Hit {
    fn from(&self) -> u32 {
        self.key as u32
    }
    fn to(&self) -> u32 {
        (self.key >> 32) as u32
    }
}

/// A clone candidate: `(group key, allocation time, node)`. The group key hashes the size and
/// the prefix; its lowest bit says every compared word is below 2^16
/// (default-like contents).
type CloneCandidate = (u64, u64, u32);

struct Scan {
    start: Vec<Hit>,
    interior: Vec<Hit>,
    clones: Vec<CloneCandidate>,
}

/// Output of [`detect`].
pub(crate) struct Detected {
    pub(crate) edges: Vec<Edge>,
    pub(crate) cycles: Vec<Vec<AllocId>>,
    pub(crate) component: Vec<u32>,
    pub(crate) ownership: Csr,
    pub(crate) stats: BuildStats,
    pub(crate) refcounts: Vec<Refcount>,
}

/// Runs every detector over `nodes` (already capped).
pub(crate) fn detect(
    nodes: &[Node],
    by_id: &[(AllocId, u32)],
    mem: &impl WordSource,
    annotations: &[Annotation],
    cfg: &GraphConfig,
    skipped: &mut Skipped,
) -> Detected {
    let mut stats = BuildStats::default();
    let index = AddrIndex::new(nodes.iter().map(|n| (n.addr, n.size)));
    skipped.overlapping = index.overlapping;
    let scan = scan(nodes, mem, &index, cfg, skipped, &mut stats);
    drop(index);

    let start = merge_hits(scan.start);
    let mut interior = merge_hits(scan.interior);
    // A holder with a pointer to a block's start owns or shares it; its words into the same
    // block (a `bytes::Bytes` keeps a cursor, at the start for a fresh buffer, and the start
    // tagged with a low bit, an interior word) are within that relation, not a second edge.
    // Both lists are sorted by key.
    interior.retain(|h| start.binary_search_by_key(&h.key, |s| s.key).is_err());
    let mut buf = Vec::new();
    let mut pointed_at = vec![false; nodes.len()];
    for h in start.iter().chain(&interior) {
        pointed_at[h.to() as usize] = true;
    }
    let contains = contains_edges(nodes, by_id, annotations, &pointed_at, cfg, skipped);

    // Cycles are over every ownership edge; all of them come from start hits or annotations,
    // so the SCCs can be computed before the start hits are classified.
    let ownership = Csr::new(
        nodes.len(),
        start
            .iter()
            .map(|h| (h.from(), h.to()))
            .chain(contains.iter().map(|&(f, t, _)| (f, t))),
    );
    let (component, sizes) = scc::tarjan(&ownership);

    let mut edges = Vec::with_capacity(start.len() + interior.len() + contains.len());
    let mut refcounts = Vec::new();
    classify_start_hits(
        nodes,
        &start,
        mem,
        &mut buf,
        &component,
        &sizes,
        cfg,
        &mut edges,
        &mut refcounts,
    );
    refcounts.sort_unstable_by_key(|r| r.id);
    for h in &interior {
        let (from, to) = (&nodes[h.from() as usize], &nodes[h.to() as usize]);
        let room = to.size.saturating_sub(h.offset as usize) as u64;
        edges.push(edge(
            from,
            to,
            EdgeKind::Slice,
            if h.len_next { 0.85 } else { 0.5 },
            weighted(room, to.weight),
            h.words.into(),
        ));
    }
    for &(f, t, confidence) in &contains {
        let (from, to) = (&nodes[f as usize], &nodes[t as usize]);
        edges.push(edge(
            from,
            to,
            EdgeKind::Contains,
            confidence,
            to.weighted_size(),
            1,
        ));
    }
    clone_edges(nodes, scan.clones, cfg, &mut edges);
    evolution_edges(nodes, by_id, &mut edges);

    let mut slot = vec![u32::MAX; sizes.len()];
    let mut cycles: Vec<Vec<AllocId>> = Vec::new();
    for (i, &c) in component.iter().enumerate() {
        if sizes[c as usize] >= 2 {
            if slot[c as usize] == u32::MAX {
                slot[c as usize] = cycles.len() as u32;
                cycles.push(Vec::new());
            }
            cycles[slot[c as usize] as usize].push(nodes[i].id);
        }
    }
    for c in &mut cycles {
        c.sort_unstable();
    }
    cycles.sort_unstable();

    Detected {
        edges,
        cycles,
        component,
        ownership,
        stats,
        refcounts,
    }
}

fn edge(from: &Node, to: &Node, kind: EdgeKind, confidence: f32, bytes: u64, ev: u32) -> Edge {
    Edge {
        from: from.id,
        to: to.id,
        kind,
        confidence,
        capability: kind.capability(),
        cross_task: from.task != to.task,
        bytes,
        evidence: ev,
    }
}

/// Reads every node once and looks each word up.
fn scan(
    nodes: &[Node],
    mem: &impl WordSource,
    index: &AddrIndex,
    cfg: &GraphConfig,
    skipped: &mut Skipped,
    stats: &mut BuildStats,
) -> Scan {
    let n = nodes.len();
    let max_words = cfg.max_scan_bytes_per_node / WORD;
    let prefix_words = (cfg.clone_prefix_bytes / WORD).max(1);
    let mut out = Scan {
        // A typical heap has about one pointer per allocation.
        start: Vec::with_capacity(n + n / 4),
        interior: Vec::with_capacity(n / 16),
        clones: Vec::with_capacity(n),
    };
    let mut buf: Vec<usize> = Vec::with_capacity(4096);
    let mut words_scanned = 0u64;
    for (i, node) in nodes.iter().enumerate() {
        if node.size < WORD {
            continue;
        }
        buf.clear();
        if !mem.read_words(node, &mut buf) {
            skipped.unreadable += 1;
            continue;
        }
        buf.truncate(node.size / WORD);
        if buf.len() > max_words {
            skipped.truncated_nodes += 1;
            skipped.truncated_bytes += (node.size - max_words * WORD) as u64;
            buf.truncate(max_words);
        }
        let words = &buf[..];
        if node.size >= cfg.clone_min_bytes && (node.site != 0 || node.span != 0) {
            let compared = &words[..words.len().min(prefix_words)];
            if compared.windows(2).all(|w| w[0] == w[1]) {
                stats.uniform_prefixes += 1;
            } else {
                // Keyed by contents and size only: the original of a run of clones was
                // usually allocated elsewhere (`vec![..]`, a parser) than its copies
                // (`.clone()`), and must land in the same group.
                let h = mix(prefix_hash(compared), node.size as u64);
                let small = compared.iter().all(|&w| w < 1 << 16);
                out.clones
                    .push(((h & !1) | u64::from(small), node.alloc_time_ns, i as u32));
            }
        }
        words_scanned += words.len() as u64;
        for (k, &w) in words.iter().enumerate() {
            let Some((j, offset)) = index.lookup(w) else {
                continue;
            };
            if j as usize == i {
                continue; // self-reference: says nothing about other allocations
            }
            let room = nodes[j as usize].size - offset;
            let plausible = |n: Option<&usize>| n.is_some_and(|&n| n >= 1 && n <= room);
            let len_next = plausible(words.get(k + 1))
                || plausible(words.get(k + 2))
                || plausible(k.checked_sub(1).and_then(|p| words.get(p)));
            let hit = Hit {
                key: (u64::from(j) << 32) | i as u64,
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                words: 1,
                len_next,
            };
            if offset == 0 {
                out.start.push(hit);
            } else {
                out.interior.push(hit);
            }
        }
    }
    stats.words_scanned = words_scanned;
    stats.start_pointers = out.start.len() as u64;
    stats.interior_pointers = out.interior.len() as u64;
    out
}

fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
}

fn prefix_hash(words: &[usize]) -> u64 {
    words
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &w| mix(h, w as u64))
}

/// Where a copy was made: its site when it is known, else its span's name (the group in the
/// span word's high bits, [`SPAN_GROUP_SHIFT`](super::SPAN_GROUP_SHIFT): not the instance, so
/// that copies made by many requests of one route are one source).
fn clone_key(node: &Node) -> (bool, u64) {
    if node.site != 0 {
        (true, node.site)
    } else {
        (false, node.span >> super::SPAN_GROUP_SHIFT)
    }
}

/// Sorts hits by `(to, from)` and merges duplicates, in place.
fn merge_hits(mut hits: Vec<Hit>) -> Vec<Hit> {
    // Usually nearly sorted already (objects point at what was allocated next to them), so the
    // adaptive comparison sort beats a radix sort here.
    hits.sort_unstable_by_key(|h| h.key);
    hits.dedup_by(|h, kept| {
        if h.key != kept.key {
            return false;
        }
        kept.words = kept.words.saturating_add(1);
        kept.offset = kept.offset.min(h.offset);
        kept.len_next |= h.len_next;
        true
    });
    hits
}

/// Pointer words into a refcounted cycle member beyond its counts that are still read as
/// stale words (see `classify_start_hits`).
const MAX_SURPLUS: usize = 2;

/// Start hits, grouped by target: one owner → `Owns`; a plausible refcount header →
/// `ArcClone`/`RcClone`; several owners otherwise → `Shares`.
#[allow(clippy::too_many_arguments)]
fn classify_start_hits(
    nodes: &[Node],
    start: &[Hit],
    mem: &impl WordSource,
    buf: &mut Vec<usize>,
    component: &[u32],
    sizes: &[u32],
    cfg: &GraphConfig,
    edges: &mut Vec<Edge>,
    refcounts: &mut Vec<Refcount>,
) {
    let mut g = 0;
    while g < start.len() {
        let to = start[g].to();
        let mut end = g + 1;
        while end < start.len() && start[end].to() == to {
            end += 1;
        }
        let group = &start[g..end];
        g = end;
        let target = &nodes[to as usize];
        let owners = group.len();
        let words: usize = group.iter().map(|h| usize::from(h.words)).sum();
        let in_cycle = sizes[component[to as usize] as usize] >= 2;
        let [strong, weak] = if (words >= 2 || in_cycle) && target.size >= 2 * WORD {
            buf.clear();
            match (mem.read_words(target, buf), buf.get(..2)) {
                (true, Some(&[strong, weak])) => [strong, weak],
                _ => [0, 0],
            }
        } else {
            [0, 0]
        };
        let header = target.size >= 2 * WORD
            && (1..=cfg.max_refcount).contains(&strong)
            && (1..=cfg.max_refcount).contains(&weak)
            && (words >= 2 || in_cycle);
        // No `Weak` at all (the common case), or the counts account for the pointers
        // exactly: two small integers at the start of a shared struct rarely do.
        let exact = header
            && words < strong + weak
            && (weak == 1 || words == strong || words == strong + weak - 1);
        // In a cycle, words left behind in a freed-and-reused block (a finished future's
        // storage) can add a pointer or two that no count has: with no `Weak`, a block whose
        // strong count all but those surplus words account for is still taken for a
        // refcounted block, at a lower score, and the surplus is recorded for the cycle
        // detector (`Refcount::surplus`).
        let stale =
            header && in_cycle && weak == 1 && words > strong && words - strong <= MAX_SURPLUS;
        if exact || stale {
            let score: f32 = if stale {
                0.5
            } else if words == 1 {
                0.6
            } else if words == strong {
                0.95
            } else if words < strong {
                0.8
            } else {
                0.7
            };
            // An `Rc` is `!Send`: holders in two or more tasks make it an `Arc`. In one task
            // the layouts are identical; a tokio task's state must be `Send`, so `Arc` is the
            // likelier reading, at 0.8 × the score, until the allocation site says otherwise
            // (`Graph::set_refcount_kinds`).
            // A surplus word's holder proves nothing: it may be another task's stale block.
            // Task 0 (no task: `main`, `block_on`) is no second task.
            let cross = !stale
                && target.task != 0
                && group.iter().any(|h| {
                    let t = nodes[h.from() as usize].task;
                    t != 0 && t != target.task
                });
            let confidence = if cross {
                score
            } else {
                score * super::UNPROVEN_FLAVOUR
            };
            let kind = EdgeKind::ArcClone;
            refcounts.push(Refcount {
                id: target.id,
                strong,
                weak,
                heap_pointers: words,
                surplus: words.saturating_sub(strong + weak - 1),
                kind,
                kind_proven: cross,
            });
            let share = target.weighted_size() / strong.max(owners) as u64;
            for h in group {
                edges.push(edge(
                    &nodes[h.from() as usize],
                    target,
                    kind,
                    confidence,
                    share,
                    h.words.into(),
                ));
            }
        } else if owners >= 2 {
            let share = target.weighted_size() / owners as u64;
            for h in group {
                let from = &nodes[h.from() as usize];
                let words = h.words.into();
                edges.push(edge(from, target, EdgeKind::Shares, 0.6, share, words));
            }
        } else {
            let h = &group[0];
            let confidence = if h.len_next { 0.95 } else { 0.75 };
            let from = &nodes[h.from() as usize];
            edges.push(edge(
                from,
                target,
                EdgeKind::Owns,
                confidence,
                target.weighted_size(),
                h.words.into(),
            ));
        }
    }
}

fn lookup(by_id: &[(AllocId, u32)], id: AllocId) -> Option<u32> {
    by_id
        .binary_search_by_key(&id, |&(i, _)| i)
        .ok()
        .map(|k| by_id[k].1)
}

/// `(container, member, confidence)` from annotations.
fn contains_edges(
    nodes: &[Node],
    by_id: &[(AllocId, u32)],
    annotations: &[Annotation],
    pointed_at: &[bool],
    cfg: &GraphConfig,
    skipped: &mut Skipped,
) -> Vec<(u32, u32, f32)> {
    let mut out = Vec::new();
    // Nodes by (task, time), built only if some annotation asks for inference.
    let mut by_time: Option<Vec<u32>> = None;
    for a in annotations {
        let Some(c) = lookup(by_id, a.container) else {
            skipped.unresolved_annotations += 1;
            continue;
        };
        if !a.members.is_empty() {
            for &m in &a.members {
                match lookup(by_id, m) {
                    Some(m) if m != c => out.push((c, m, 1.0)),
                    Some(_) => {}
                    None => skipped.unresolved_annotations += 1,
                }
            }
            continue;
        }
        let order = by_time.get_or_insert_with(|| {
            let mut v: Vec<u32> = (0..nodes.len() as u32).collect();
            v.sort_unstable_by_key(|&i| {
                let n = &nodes[i as usize];
                (n.task, n.alloc_time_ns, i)
            });
            v
        });
        let container = &nodes[c as usize];
        let deadline = container
            .alloc_time_ns
            .saturating_add(cfg.contains_window_ns);
        let first = order.partition_point(|&i| {
            let n = &nodes[i as usize];
            (n.task, n.alloc_time_ns) < (container.task, container.alloc_time_ns)
        });
        let mut inferred = 0;
        for &m in &order[first..] {
            let n = &nodes[m as usize];
            if n.task != container.task || n.alloc_time_ns > deadline {
                break;
            }
            if m == c || pointed_at[m as usize] {
                continue;
            }
            if inferred == cfg.max_inferred_members {
                break;
            }
            out.push((c, m, 0.4));
            inferred += 1;
        }
    }
    out.sort_unstable_by_key(|&(c, m, _)| (c, m));
    out.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    out
}

/// Clone candidates sorted by `(group key, time)`: in each run of equal contents the earliest
/// node is the original, whatever its site, and every later node of the same size is a clone
/// of it. The clone window is evidence, not a cut: a copy made within it of the previous copy
/// from its own site (or span name), or of the original for the first, is part of a burst; a
/// lone copy has half the confidence, below what `clone.storm` counts.
fn clone_edges(
    nodes: &[Node],
    mut cands: Vec<CloneCandidate>,
    cfg: &GraphConfig,
    edges: &mut Vec<Edge>,
) {
    radix_sort_by_key(&mut cands, |c| c.0);
    // Per clone key (site or span name) of the current group: the time of its latest copy.
    let mut latest: std::collections::HashMap<(bool, u64), u64> = std::collections::HashMap::new();
    let mut g = 0;
    while g < cands.len() {
        let group = cands[g].0;
        let mut end = g + 1;
        while end < cands.len() && cands[end].0 == group {
            end += 1;
        }
        cands[g..end].sort_unstable();
        latest.clear();
        let o = cands[g];
        let from = &nodes[o.2 as usize];
        latest.insert(clone_key(from), o.1);
        for &c in &cands[g + 1..end] {
            let to = &nodes[c.2 as usize];
            // A 64-bit group key collision between different sizes: not clones.
            if from.size != to.size {
                continue;
            }
            let key = clone_key(to);
            let since = latest.insert(key, c.1).unwrap_or(o.1);
            let burst = c.1 - since <= cfg.clone_window_ns;
            let mut confidence: f32 = 0.5;
            if key.0 {
                confidence += 0.2;
            }
            if to.size <= cfg.clone_prefix_bytes {
                confidence += 0.2;
            }
            if group & 1 == 1 {
                confidence -= 0.3;
            }
            let mut confidence = confidence.clamp(0.05, 0.95);
            // A lone copy long after the previous one from its place: half as sure, below
            // what a clone storm counts (0.5).
            if !burst {
                confidence *= 0.5;
            }
            edges.push(edge(
                from,
                to,
                EdgeKind::Clone,
                confidence,
                to.weighted_size(),
                1,
            ));
        }
        g = end;
    }
}

/// One `Evolution` edge per node the allocator saw reallocated.
fn evolution_edges(nodes: &[Node], by_id: &[(AllocId, u32)], edges: &mut Vec<Edge>) {
    for n in nodes {
        let Some(prev) = n.realloc_from else {
            continue;
        };
        if prev == n.id {
            continue;
        }
        let cross_task = lookup(by_id, prev).is_some_and(|p| nodes[p as usize].task != n.task);
        edges.push(Edge {
            from: prev,
            to: n.id,
            kind: EdgeKind::Evolution,
            confidence: 1.0,
            capability: EdgeKind::Evolution.capability(),
            cross_task,
            bytes: n.weighted_size(),
            evidence: 1,
        });
    }
}
