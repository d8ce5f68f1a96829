//! Tests of the whole build: synthetic heaps of known shape with their true edges, random
//! non-pointer data, and real Rust heap objects read through a [`WordSource`] over live memory.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A realistic non-pointer word: small integers, pairs of u32, text, floats, timestamps,
    /// hashes.
    fn data_word(&mut self) -> usize {
        let w = match self.below(7) {
            0 => self.below(1000),
            1 => (self.below(100_000) << 32) | self.below(1 << 32),
            2 => {
                let mut b = [0u8; 8];
                for c in &mut b {
                    *c =
                        b"abcdefghijklmnopqrstuvwxyz ETAOIN-_/.0123456789"[self.below(47) as usize];
                }
                u64::from_le_bytes(b)
            }
            3 => ((self.below(2_000_000) as f64 - 1e6) / 7.0).to_bits(),
            4 => 1_700_000_000_000_000_000 + self.below(1 << 40),
            5 => {
                (self.below(1000) as f32).to_bits() as u64
                    | ((self.below(50) as f32).to_bits() as u64) << 32
            }
            _ => self.next(),
        };
        w as usize
    }
}

/// A fake heap with its true edges.
struct Synth {
    image: Vec<usize>,
    cursor: usize,
    nodes: Vec<Node>,
    truth: BTreeSet<(AllocId, AllocId, EdgeKind)>,
    annotations: Vec<Annotation>,
    time: u64,
    rng: Rng,
}

/// Sites of the synthetic `Rc::new` calls (the other refcounted blocks are `Arc`s).
const RC_SITE: u64 = 33;
const RC_CYCLE_SITE: u64 = 41;
const BASE: usize = 0x5555_5555_0000;

impl Synth {
    fn new(seed: u64) -> Self {
        Synth {
            image: Vec::new(),
            cursor: BASE,
            nodes: Vec::new(),
            truth: BTreeSet::new(),
            annotations: Vec::new(),
            time: 1_000_000,
            rng: Rng(seed),
        }
    }

    /// Allocates `size` bytes (16-byte granularity with a 16-byte header gap, like a real
    /// allocator) and returns the node index.
    fn alloc(&mut self, size: usize, task: u64, site: u64) -> usize {
        let addr = self.cursor;
        self.cursor += size.next_multiple_of(16) + 16;
        self.image.resize((self.cursor - BASE) / WORD, 0);
        let id = AllocId(self.nodes.len() as u64 + 1);
        let mut node = Node::new(id, addr, size);
        node.task = task;
        node.site = site;
        node.alloc_time_ns = self.time;
        self.time += 100;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn addr(&self, i: usize) -> usize {
        self.nodes[i].addr
    }

    fn id(&self, i: usize) -> AllocId {
        self.nodes[i].id
    }

    /// Writes word `k` of node `i`.
    fn set(&mut self, i: usize, k: usize, w: usize) {
        assert!(k < self.nodes[i].size / WORD);
        let a = (self.addr(i) - BASE) / WORD + k;
        self.image[a] = w;
    }

    fn fill_data(&mut self, i: usize) {
        for k in 0..self.nodes[i].size / WORD {
            let w = self.rng.data_word();
            self.set(i, k, w);
        }
    }

    fn expect(&mut self, from: usize, to: usize, kind: EdgeKind) {
        let (f, t) = (self.id(from), self.id(to));
        self.truth.insert((f, t, kind));
    }

    fn text(s: &str) -> usize {
        let mut b = [b' '; 8];
        b[..s.len().min(8)].copy_from_slice(&s.as_bytes()[..s.len().min(8)]);
        u64::from_le_bytes(b) as usize
    }

    /// A complete binary tree of 32-byte boxes `[left, right, value, text]`; returns the root.
    fn tree(&mut self, depth: u32, task: u64) -> usize {
        let count = (1usize << depth) - 1;
        let first = self.nodes.len();
        for _ in 0..count {
            self.alloc(32, task, 11);
        }
        for k in 0..count {
            let i = first + k;
            for (slot, child) in [(0, 2 * k + 1), (1, 2 * k + 2)] {
                if child < count {
                    let c = first + child;
                    self.set(i, slot, self.addr(c));
                    self.expect(i, c, EdgeKind::Owns);
                }
            }
            let salt = first << 16; // unique per tree: equal leaves of two trees are clones
            self.set(i, 2, salt | k);
            self.set(i, 3, Self::text(&format!("node{k:04}")));
        }
        first
    }

    /// A `Vec<String>` with its owner struct `[ptr, cap, len]`.
    fn vec_of_strings(&mut self, n: usize, task: u64) {
        let owner = self.alloc(24, task, 21);
        let buf = self.alloc(24 * n, task, 22);
        self.set(owner, 0, self.addr(buf));
        self.set(owner, 1, n);
        self.set(owner, 2, n);
        self.expect(owner, buf, EdgeKind::Owns);
        for s in 0..n {
            let len = 5 + s * 7 % 40;
            let string = self.alloc(len, task, 23);
            for k in 0..len / WORD {
                // The low byte varies with the node, so strings of two vectors differ.
                let w = Self::text(&format!("s{s:03}w{k:03}")) ^ (string & 0xff);
                self.set(string, k, w);
            }
            self.set(buf, 3 * s, self.addr(string));
            self.set(buf, 3 * s + 1, len);
            self.set(buf, 3 * s + 2, len);
            self.expect(buf, string, EdgeKind::Owns);
        }
    }

    /// An `ArcInner` `[strong, weak, value..]` held by one owner per task in `tasks`.
    fn arc_shared(&mut self, tasks: &[u64], kind: EdgeKind) {
        let site = if kind == EdgeKind::RcClone {
            RC_SITE
        } else {
            31
        };
        let block = self.alloc(48, 100 + tasks[0], site);
        self.set(block, 0, tasks.len());
        self.set(block, 1, 1);
        for k in 2..6 {
            let w = self.rng.data_word();
            self.set(block, k, w);
        }
        // The block is allocated by the holders' task when they are all in one.
        if tasks.iter().all(|&t| t == tasks[0]) {
            self.nodes[block].task = tasks[0];
        }
        for (n, &task) in tasks.iter().enumerate() {
            let owner = self.alloc(24, task, 32);
            self.set(owner, 0, self.addr(block));
            self.set(owner, 1, n * 1000 + 17);
            self.set(owner, 2, Self::text(&format!("own{n}")));
            self.expect(owner, block, kind);
        }
    }

    /// Two `RcBox`es `[strong, weak, borrow flag, next, value]` pointing at each other.
    fn rc_cycle(&mut self, task: u64) -> (usize, usize) {
        let a = self.alloc(40, task, RC_CYCLE_SITE);
        let b = self.alloc(40, task, RC_CYCLE_SITE);
        for (x, y, v) in [(a, b, 1), (b, a, 2)] {
            self.set(x, 0, 1);
            self.set(x, 1, 1);
            self.set(x, 2, 0);
            self.set(x, 3, self.addr(y));
            self.set(x, 4, v);
            self.expect(x, y, EdgeKind::RcClone);
        }
        (a, b)
    }

    /// A block without refcount header held by two owners (leaked or raw pointers).
    fn shared_raw(&mut self, tasks: [u64; 2]) {
        let target = self.alloc(64, tasks[0], 35);
        self.fill_data(target);
        for (o, task) in tasks.into_iter().enumerate() {
            let owner = self.alloc(16, task, 36);
            self.set(owner, 0, self.addr(target));
            self.set(owner, 1, 0xffff_0000_0000_0000 | o);
            self.expect(owner, target, EdgeKind::Shares);
        }
    }

    /// A `Vec<u32>` with its owner, and `n` `&[u32]` views `[ptr, len]` into it.
    fn slices(&mut self, n: usize, task: u64) {
        let owner = self.alloc(24, task, 51);
        let buf = self.alloc(400, task, 52);
        self.set(owner, 0, self.addr(buf));
        self.set(owner, 1, 100);
        self.set(owner, 2, 100);
        self.expect(owner, buf, EdgeKind::Owns);
        for k in 0..50 {
            self.set(buf, k, ((2 * k + 1) << 32) | (2 * k) | (buf << 16));
        }
        for s in 0..n {
            let view = self.alloc(16, task, 53);
            self.set(view, 0, self.addr(buf) + 40 * s + 8);
            self.set(view, 1, 10);
            self.expect(view, buf, EdgeKind::Slice);
        }
    }

    /// A data buffer and `n` clones of it; and `n` zeroed buffers from one site (no clones).
    fn clones(&mut self, n: usize, task: u64) {
        let original = self.alloc(256, task, 61);
        self.fill_data(original);
        let contents: Vec<usize> = (0..32)
            .map(|k| self.image[(self.addr(original) - BASE) / WORD + k])
            .collect();
        for _ in 0..n {
            let c = self.alloc(256, task, 61);
            for (k, &w) in contents.iter().enumerate() {
                self.set(c, k, w);
            }
            self.expect(original, c, EdgeKind::Clone);
        }
        for _ in 0..n {
            self.alloc(256, task, 62); // zeroed: `vec![0u8; 256]`
        }
    }

    /// A hash table with annotated members, and one whose members are inferred.
    fn maps(&mut self, task: u64, inferred_task: u64) {
        let table = self.alloc(512, task, 71);
        for k in 0..64 {
            let w = if k < 8 {
                0x8080_8080_8080_8080
            } else {
                self.rng.next() as usize
            };
            self.set(table, k, w);
        }
        let mut members = Vec::new();
        for m in 0..8 {
            let member = self.alloc(32, task, 72);
            self.fill_data(member);
            self.set(member, 0, m);
            members.push(self.id(member));
            self.expect(table, member, EdgeKind::Contains);
        }
        self.annotations.push(Annotation {
            container: self.id(table),
            members,
        });
        self.time += 10_000_000; // well past the contains window
        let table = self.alloc(256, inferred_task, 73);
        self.fill_data(table);
        for _ in 0..4 {
            let member = self.alloc(64, inferred_task, 74);
            self.fill_data(member);
            self.expect(table, member, EdgeKind::Contains);
        }
        self.annotations.push(Annotation {
            container: self.id(table),
            members: Vec::new(),
        });
        self.time += 10_000_000;
    }

    /// `n` buffers the allocator saw reallocated from (freed) ids.
    fn reallocs(&mut self, n: usize, task: u64) {
        for r in 0..n {
            let buf = self.alloc(128, task, 81);
            self.fill_data(buf);
            let from = AllocId(1_000_000 + r as u64);
            self.nodes[buf].realloc_from = Some(from);
            self.truth.insert((from, self.id(buf), EdgeKind::Evolution));
        }
    }

    /// `n` nodes of realistic non-pointer data with the sizes used above.
    fn noise(&mut self, n: usize, task: u64) -> Vec<usize> {
        const SIZES: [usize; 9] = [16, 24, 32, 40, 48, 240, 256, 400, 512];
        (0..n)
            .map(|_| {
                let size = SIZES[self.rng.below(SIZES.len() as u64) as usize];
                let i = self.alloc(size, task, 91);
                self.fill_data(i);
                i
            })
            .collect()
    }

    fn heap(&self) -> FlatHeap {
        FlatHeap::from_words(BASE, self.image.clone())
    }

    /// The graph, with the `Rc` blocks' flavour proven by their sites (as the live graph does
    /// from `Rc::new` on the allocation stack).
    fn build(&self) -> Graph {
        let mut g = build(
            &self.nodes,
            &self.heap(),
            &self.annotations,
            &GraphConfig::default(),
        );
        g.set_refcount_kinds(|n| {
            [RC_SITE, RC_CYCLE_SITE]
                .contains(&n.site)
                .then_some(EdgeKind::RcClone)
        });
        g
    }
}

/// Precision and recall per kind of `graph` against `truth`.
fn score(
    graph: &Graph,
    truth: &BTreeSet<(AllocId, AllocId, EdgeKind)>,
) -> BTreeMap<EdgeKind, (f64, f64, usize, usize)> {
    let found: BTreeSet<_> = graph.edges.iter().map(|e| (e.from, e.to, e.kind)).collect();
    let mut out = BTreeMap::new();
    for kind in EdgeKind::ALL {
        let f: BTreeSet<_> = found.iter().filter(|e| e.2 == kind).collect();
        let t: BTreeSet<_> = truth.iter().filter(|e| e.2 == kind).collect();
        let tp = f.intersection(&t).count() as f64;
        let precision = if f.is_empty() {
            1.0
        } else {
            tp / f.len() as f64
        };
        let recall = if t.is_empty() {
            1.0
        } else {
            tp / t.len() as f64
        };
        out.insert(kind, (precision, recall, f.len(), t.len()));
    }
    out
}

fn every_shape(noise: usize) -> (Synth, Vec<usize>, (usize, usize)) {
    every_shape_times(1, noise)
}

/// Every shape `reps` times (tasks differ per repetition), then `noise` data nodes.
fn every_shape_times(reps: u64, noise: usize) -> (Synth, Vec<usize>, (usize, usize)) {
    let mut s = Synth::new(7);
    let mut cycle = (0, 0);
    for r in 0..reps {
        let t = 100 * r;
        s.tree(if cfg!(miri) { 4 } else { 7 }, t + 1);
        s.vec_of_strings(10, t + 2);
        s.arc_shared(&[t + 4, t + 5, t + 6], EdgeKind::ArcClone);
        let c = s.rc_cycle(t + 7);
        if r == 0 {
            cycle = c;
        }
        s.arc_shared(&[t + 8, t + 8], EdgeKind::RcClone);
        s.shared_raw([t + 15, t + 16]);
        s.slices(5, t + 9);
        s.clones(10, t + 10);
        s.maps(t + 11, t + 12);
        s.reallocs(3, t + 13);
    }
    let noise = s.noise(noise, 14);
    (s, noise, cycle)
}

#[test]
fn every_kind_has_precision_and_recall_of_at_least_95_percent() {
    let (s, _, _) = if cfg!(miri) {
        every_shape_times(1, 20)
    } else {
        every_shape_times(20, 2000)
    };
    let graph = s.build();
    let scores = score(&graph, &s.truth);
    for (kind, (precision, recall, found, expected)) in &scores {
        eprintln!("{kind}: precision {precision:.3} recall {recall:.3} ({found} found, {expected} expected)");
        assert!(
            *precision >= 0.95 && *recall >= 0.95,
            "{kind}: precision {precision:.3} recall {recall:.3} ({found} found, {expected} expected)\n{scores:#?}"
        );
    }
    // Every kind was exercised.
    assert!(scores.values().all(|s| s.3 > 0), "{scores:#?}");
}

#[test]
fn confidences_follow_the_documented_rules() {
    let (s, _, _) = every_shape(0);
    let graph = s.build();
    let conf = |kind| -> Vec<f32> { graph.edges_of(kind).map(|e| e.confidence).collect() };
    // Arc: 3 heap pointers, strong 3, three tasks.
    assert!(conf(EdgeKind::ArcClone).iter().all(|&c| c == 0.95));
    // Rc, proven by the site: the cycle (one pointer each, 0.6) and the 2-owner block (0.95).
    let mut rc = conf(EdgeKind::RcClone);
    rc.sort_by(f32::total_cmp);
    assert_eq!(rc.len(), 4);
    assert!(
        (rc[0] - 0.6).abs() < 1e-6 && (rc[3] - 0.95).abs() < 1e-6,
        "{rc:?}"
    );
    // Slices have a length next to the pointer.
    assert!(conf(EdgeKind::Slice).iter().all(|&c| c == 0.85));
    // Clones: same site, 256 > 64 prefix bytes: 0.7.
    assert!(conf(EdgeKind::Clone)
        .iter()
        .all(|&c| (c - 0.7).abs() < 1e-6));
    // The 10 zeroed buffers, and the first table (its first 64 bytes are control bytes).
    assert_eq!(graph.stats.uniform_prefixes, 11);
    // Contains: 8 annotated at 1.0, 4 inferred at 0.4.
    let mut contains = conf(EdgeKind::Contains);
    contains.sort_by(f32::total_cmp);
    assert_eq!(contains, [[0.4; 4].as_slice(), &[1.0; 8]].concat());
    for e in &graph.edges {
        assert_eq!(e.capability, e.kind.capability());
        assert!((0.0..=1.0).contains(&e.confidence));
    }
}

#[test]
fn random_data_makes_no_pointer_edges() {
    // Realistic non-pointer words (small integers, text, floats, timestamps, u32 pairs,
    // hashes) never look like heap pointers: text and floats have high bits set, small
    // integers are below any heap, and a uniform 64-bit word lands in a heap of S bytes with
    // probability S / 2^64 (2^-34 for a 1 GiB heap). The noise is mixed with a real heap
    // shape so there are targets to hit.
    let (s, noise, _) = every_shape(if cfg!(miri) { 30 } else { 5000 });
    let graph = s.build();
    let noise: BTreeSet<AllocId> = noise.iter().map(|&i| s.id(i)).collect();
    let from_noise: Vec<&Edge> = graph
        .edges
        .iter()
        .filter(|e| noise.contains(&e.from) || noise.contains(&e.to))
        .collect();
    assert!(from_noise.is_empty(), "{from_noise:?}");
}

#[test]
fn cycles_roots_and_retained_sizes() {
    let (s, _, (a, b)) = every_shape(0);
    let graph = s.build();
    assert_eq!(graph.cycles, vec![vec![s.id(a), s.id(b)]]);
    // The cycle has no outside owner: its smallest id is a root and retains both.
    assert!(graph.roots.contains(&s.id(a)));
    assert_eq!(graph.retained_of(s.id(a)), Some(80));
    assert_eq!(graph.retained_of(s.id(b)), Some(40));
    // The tree's root retains the whole tree.
    let depth = if cfg!(miri) { 4 } else { 7 };
    assert_eq!(graph.retained_of(s.id(0)), Some(32 * ((1 << depth) - 1)));
    // An Arc block held by three owners is retained by none of them.
    let arc = graph.edges_of(EdgeKind::ArcClone).next().unwrap();
    assert_eq!(graph.retained_of(arc.from), Some(24));
    // Closures: the tree root reaches the whole tree; a budget truncates.
    let tree = graph.ownership_closure(s.id(0), usize::MAX).unwrap();
    assert_eq!(tree.nodes.len(), (1 << depth) - 1);
    assert_eq!(tree.bytes, 32 * ((1 << depth) - 1));
    assert!(!tree.truncated);
    let small = graph.ownership_closure(s.id(0), 3).unwrap();
    assert_eq!((small.nodes.len(), small.truncated), (3, true));
    assert_eq!(small.nodes[0], s.id(0));
    assert!(graph.ownership_closure(AllocId(u64::MAX), 10).is_none());
    // Refcounts of the blocks taken for ArcInner/RcBox: the Arc, the 2-owner Rc, the cycle.
    let counts: Vec<(usize, usize, usize)> = graph
        .refcounts
        .iter()
        .map(|r| (r.strong, r.weak, r.heap_pointers))
        .collect();
    assert_eq!(counts, [(3, 1, 3), (1, 1, 1), (1, 1, 1), (2, 1, 2)]);
    // With only one holder as root, that holder retains the block.
    let only = retained_sizes(&graph, &[arc.from]);
    assert_eq!(only[graph.index_of(arc.from).unwrap()], 24 + 48);
    assert_eq!(only[graph.index_of(s.id(0)).unwrap()], 0);
}

/// Retained sizes against a brute force (remove a node, count what becomes unreachable) on
/// random pointer graphs.
#[test]
fn retained_sizes_match_brute_force() {
    let mut rng = Rng(99);
    for round in 0..if cfg!(miri) { 2 } else { 30 } {
        let n = 5 + round % 20;
        let mut s = Synth::new(round as u64);
        for _ in 0..n {
            s.alloc(64, 1, round as u64 * 1000 + rng.below(1 << 20));
        }
        for i in 0..n {
            for k in 0..1 + rng.below(3) as usize {
                if rng.below(3) > 0 {
                    let t = rng.below(n as u64) as usize;
                    if t != i {
                        s.set(i, k, s.addr(t));
                    }
                }
            }
            s.set(i, 7, 0xfff0_0000_0000_0000 | i); // not clones
        }
        let graph = s.build();
        let own: Vec<(usize, usize)> = graph
            .edges
            .iter()
            .filter(|e| e.kind.is_ownership())
            .map(|e| {
                (
                    graph.index_of(e.from).unwrap(),
                    graph.index_of(e.to).unwrap(),
                )
            })
            .collect();
        let roots: Vec<usize> = graph
            .roots
            .iter()
            .map(|&r| graph.index_of(r).unwrap())
            .collect();
        let reach = |removed: Option<usize>| -> Vec<bool> {
            let mut seen = vec![false; n];
            let mut stack: Vec<usize> = roots
                .iter()
                .copied()
                .filter(|&r| Some(r) != removed)
                .collect();
            while let Some(v) = stack.pop() {
                if seen[v] {
                    continue;
                }
                seen[v] = true;
                for &(f, t) in &own {
                    if f == v && Some(t) != removed && !seen[t] {
                        stack.push(t);
                    }
                }
            }
            seen
        };
        let all = reach(None);
        assert!(all.iter().all(|&r| r), "default roots reach every node");
        for v in 0..n {
            let without = reach(Some(v));
            let expected: u64 = (0..n).filter(|&u| all[u] && !without[u]).map(|_| 64).sum();
            assert_eq!(graph.retained[v], expected, "round {round} node {v}");
        }
    }
}

#[test]
fn caps_are_reported() {
    let (s, _, _) = every_shape(0);
    let mut nodes = s.nodes.clone();
    let mut unreadable = Node::new(AllocId(9_999_999), 0x10, 64);
    unreadable.task = 1;
    nodes.push(unreadable);
    let cfg = GraphConfig {
        max_nodes: nodes.len() - 1,
        max_scan_bytes_per_node: 256,
        ..GraphConfig::default()
    };
    let graph = build(&nodes, &s.heap(), &s.annotations, &cfg);
    assert_eq!(graph.nodes.len(), nodes.len() - 1);
    assert_eq!(graph.skipped.nodes, 1);
    assert_eq!(graph.skipped.bytes, 64);
    // Two 400- and 512-byte nodes are truncated to 256 bytes.
    assert_eq!(graph.skipped.truncated_nodes, 2);
    assert_eq!(graph.skipped.truncated_bytes, 144 + 256);

    let cfg = GraphConfig::default();
    let graph = build(&nodes, &s.heap(), &s.annotations, &cfg);
    assert_eq!(graph.skipped.unreadable, 1);
    let bad = [Annotation {
        container: AllocId(12_345_678),
        members: vec![],
    }];
    let graph = build(&nodes, &s.heap(), &bad, &cfg);
    assert_eq!(graph.skipped.unresolved_annotations, 1);
}

#[test]
fn top_k_and_dot() {
    let (s, _, _) = every_shape(0);
    let graph = s.build();
    let top = graph.top_edges(3);
    assert_eq!(top.len(), 3);
    let max = graph.edges.iter().map(|e| e.bytes).max().unwrap();
    assert_eq!(top[0].bytes, max);
    assert!(top.windows(2).all(|w| w[0].bytes >= w[1].bytes));
    assert!(graph.top_edges(0).is_empty());
    assert_eq!(graph.top_edges(usize::MAX).len(), graph.edges.len());
    // Per task window: the Vec<String> of task 2 has 11 edges; the Arc holders of tasks 4..6.
    let task2 = graph.top_edges_for_task(2, 100);
    assert_eq!(task2.len(), 11);
    assert!(task2.windows(2).all(|w| w[0].bytes >= w[1].bytes));
    assert_eq!(graph.top_edges_for_task(5, 100).len(), 1);
    assert_eq!(graph.top_edges_for_task(2, 4).len(), 4);

    let dot = to_dot(&graph, &DotOptions::default());
    assert!(dot.starts_with("digraph heapspan {"));
    assert!(dot.contains("owns 0.95"));
    assert!(dot.contains("arc_clone 0.95"));
    assert!(dot.contains("(freed)"), "evolution sources are freed");
    assert!(dot.contains("color=red"), "cycle members are red");
    assert!(!dot.contains("0x"), "no raw addresses by default");
    let with = to_dot(
        &graph,
        &DotOptions {
            show_addresses: true,
            max_edges: 5,
            ..DotOptions::default()
        },
    );
    assert!(with.contains("0x5555"));
    assert_eq!(with.matches(" -> ").count(), 5);
}

#[test]
fn dot_highlights_the_danger_surface_of_its_roots_whatever_the_cap() {
    let (s, _, _) = every_shape(0);
    let graph = s.build();
    // The root with the largest ownership closure.
    let (root, closure) = graph
        .nodes
        .iter()
        .map(|n| (n.id, graph.ownership_closure(n.id, 1000).unwrap()))
        .max_by_key(|(_, c)| c.nodes.len())
        .unwrap();
    assert!(closure.nodes.len() >= 3, "{closure:?}");
    let dot = to_dot(
        &graph,
        &DotOptions {
            max_edges: 0,
            highlight: vec![root],
            ..DotOptions::default()
        },
    );
    assert!(dot.contains(&format!(
        "danger surface of 1 root(s): {} nodes",
        closure.nodes.len()
    )));
    for id in &closure.nodes {
        let line = dot
            .lines()
            .find(|l| l.starts_with(&format!("  n{} [", id.0)))
            .unwrap_or_else(|| panic!("surface node {id} drawn:\n{dot}"));
        assert!(line.contains("fillcolor"), "{line}");
        assert_eq!(line.contains("peripheries=2"), *id == root, "{line}");
    }
    // Every ownership edge inside the surface is drawn (thick), though the cap is 0.
    let inside = graph
        .edges
        .iter()
        .filter(|e| e.kind.is_ownership())
        .filter(|e| closure.nodes.contains(&e.from) && closure.nodes.contains(&e.to))
        .count();
    assert!(inside >= 2);
    assert_eq!(dot.matches("penwidth=2.5").count(), inside);
    assert_eq!(dot.matches(" -> ").count(), inside);
}

#[test]
fn kind_and_capability_values_match_the_telemetry_contract() {
    let kinds: Vec<&str> = EdgeKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "owns",
            "contains",
            "shares",
            "slice",
            "clone",
            "evolution",
            "arc_clone",
            "rc_clone"
        ]
    );
    assert!(crate::export::names::EDGE_KIND.starts_with("heapspan.edge."));
    assert_eq!(
        [
            Capability::Exclusive,
            Capability::Shared,
            Capability::Borrow
        ]
        .map(Capability::as_str),
        ["exclusive", "shared", "borrow"]
    );
}

/// Shares: a block without refcount header pointed at by two owners.
#[test]
fn two_owners_without_header_share() {
    let mut s = Synth::new(1);
    s.shared_raw([1, 2]);
    let graph = s.build();
    let scores = score(&graph, &s.truth);
    assert_eq!(scores[&EdgeKind::Shares], (1.0, 1.0, 2, 2));
    assert!(graph
        .edges
        .iter()
        .all(|e| e.bytes == 32 && e.confidence == 0.6));
}

mod live {
    //! Real heap objects read through a [`WordSource`] over live memory: checks the std layout
    //! assumptions (`Vec`/`String` pointer to the buffer start, `Arc`/`Rc` pointer to the
    //! `ArcInner`/`RcBox` start two words before the value, counts first).

    use std::cell::RefCell;
    use std::marker::PhantomData;
    use std::rc::Rc;
    use std::sync::Arc;

    use super::super::*;

    /// Live allocations registered by pointer, read in place.
    struct LiveMem<'a> {
        regions: Vec<(*const u8, usize)>,
        nodes: Vec<Node>,
        _objects: PhantomData<&'a ()>,
    }

    impl<'a> LiveMem<'a> {
        fn new() -> Self {
            LiveMem {
                regions: Vec::new(),
                nodes: Vec::new(),
                _objects: PhantomData,
            }
        }

        /// Registers an allocation. The caller guarantees (test code) that `ptr` points at a
        /// live, fully initialised allocation of `size` bytes with provenance over all of it,
        /// alive for `'a`.
        fn add(&mut self, ptr: *const u8, size: usize, task: u64) -> AllocId {
            let id = AllocId(self.nodes.len() as u64 + 1);
            let mut node = Node::new(id, ptr.addr(), size);
            node.task = task;
            self.regions.push((ptr, size));
            self.nodes.push(node);
            id
        }
    }

    impl WordSource for LiveMem<'_> {
        fn read_words(&self, node: &Node, out: &mut Vec<usize>) -> bool {
            let Some(&(ptr, size)) = self.regions.iter().find(|r| r.0.addr() == node.addr) else {
                return false;
            };
            for k in 0..size / WORD {
                // SAFETY: `ptr` was registered by `add` from a live allocation of `size` bytes,
                // derived with provenance over all of it, every byte initialised, and kept
                // alive and unmutated while `self` exists (the test holds the objects until
                // after the build). `(k + 1) * WORD <= size`, so the read is in bounds;
                // `read_unaligned` needs no alignment.
                let w = unsafe { ptr.add(k * WORD).cast::<usize>().read_unaligned() };
                out.push(w);
            }
            true
        }
    }

    struct TreeNode {
        left: Option<Box<TreeNode>>,
        right: Option<Box<TreeNode>>,
        value: usize,
    }

    struct Holder {
        _arc: Arc<[usize; 2]>,
        tag: usize,
    }

    struct RcNode {
        next: RefCell<Option<Rc<RcNode>>>,
        value: usize,
    }

    fn leaf(value: usize) -> Box<TreeNode> {
        Box::new(TreeNode {
            left: None,
            right: None,
            value,
        })
    }

    fn bytes_of<T>(r: &T) -> *const u8 {
        (r as *const T).cast()
    }

    #[test]
    fn std_layouts_give_the_expected_edges() {
        // A tree of boxes.
        let tree = Box::new(TreeNode {
            left: Some(leaf(1)),
            right: Some(leaf(2)),
            value: 0,
        });
        // A Vec<String> with exact capacities (every byte initialised).
        let strings: Vec<String> = ["alpha", "bravo charlie", "delta echo foxtrot golf"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(strings.capacity(), strings.len());
        // An Arc held by three boxes, in three tasks.
        let shared = Arc::new([7usize, 8]);
        let holders: Vec<Box<Holder>> = (0..3)
            .map(|tag| {
                Box::new(Holder {
                    _arc: Arc::clone(&shared),
                    tag,
                })
            })
            .collect();
        // An Rc 2-cycle.
        let a = Rc::new(RcNode {
            next: RefCell::new(None),
            value: 1,
        });
        let b = Rc::new(RcNode {
            next: RefCell::new(Some(Rc::clone(&a))),
            value: 2,
        });
        *a.next.borrow_mut() = Some(Rc::clone(&b));
        assert_eq!(tree.value + holders[2].tag + a.value + b.value, 5);

        let header = 2 * WORD; // strong, weak
        let mut mem = LiveMem::new();
        let root = mem.add(bytes_of(&*tree), size_of::<TreeNode>(), 1);
        let left = mem.add(
            bytes_of(&**tree.left.as_ref().unwrap()),
            size_of::<TreeNode>(),
            1,
        );
        let right = mem.add(
            bytes_of(&**tree.right.as_ref().unwrap()),
            size_of::<TreeNode>(),
            1,
        );
        let buf = mem.add(
            strings.as_ptr().cast(),
            size_of::<String>() * strings.capacity(),
            1,
        );
        let string_ids: Vec<AllocId> = strings
            .iter()
            .map(|s| {
                assert_eq!(s.capacity(), s.len());
                mem.add(s.as_ptr(), s.capacity(), 1)
            })
            .collect();
        // `Arc::as_ptr` points at the value; the allocation starts two words earlier.
        let arc_start = Arc::as_ptr(&shared).cast::<u8>().wrapping_sub(header);
        let arc = mem.add(arc_start, header + size_of::<[usize; 2]>(), 10);
        let holder_ids: Vec<AllocId> = holders
            .iter()
            .enumerate()
            .map(|(t, h)| mem.add(bytes_of(&**h), size_of::<Holder>(), 20 + t as u64))
            .collect();
        let rc_size = header + size_of::<RcNode>();
        let ra = mem.add(Rc::as_ptr(&a).cast::<u8>().wrapping_sub(header), rc_size, 3);
        let rb = mem.add(Rc::as_ptr(&b).cast::<u8>().wrapping_sub(header), rc_size, 3);

        // The layout assumptions, checked directly.
        let mut words = Vec::new();
        assert!(mem.read_words(&mem.nodes[(arc.0 - 1) as usize], &mut words));
        assert_eq!(&words[..2], &[4, 1], "ArcInner starts with strong, weak");
        words.clear();
        assert!(mem.read_words(&mem.nodes[(holder_ids[0].0 - 1) as usize], &mut words));
        assert!(
            words.contains(&arc_start.addr()),
            "an Arc stores the ArcInner's start, 2 words before Arc::as_ptr"
        );

        drop(shared); // now the three holders are the only strong references
        let graph = build(&mem.nodes, &mem, &[], &GraphConfig::default());
        let has = |from: AllocId, to: AllocId, kind: EdgeKind| {
            graph
                .edges
                .iter()
                .any(|e| e.from == from && e.to == to && e.kind == kind)
        };
        assert!(has(root, left, EdgeKind::Owns));
        assert!(has(root, right, EdgeKind::Owns));
        for &s in &string_ids {
            assert!(has(buf, s, EdgeKind::Owns), "Vec<String> buffer owns {s}");
        }
        for &h in &holder_ids {
            let e = graph
                .edges
                .iter()
                .find(|e| e.from == h && e.to == arc)
                .unwrap();
            assert_eq!(e.kind, EdgeKind::ArcClone);
            assert_eq!(e.confidence, 0.95, "3 heap pointers = strong count 3");
            assert!(e.cross_task);
        }
        // One task, no site: the layouts are identical, so the reading is the likelier `Arc`,
        // unproven, at 0.8 × the score (0.6 for one in-cycle pointer).
        for (from, to) in [(ra, rb), (rb, ra)] {
            let e = graph
                .edges
                .iter()
                .find(|e| e.from == from && e.to == to)
                .unwrap();
            assert_eq!(e.kind, EdgeKind::ArcClone);
            assert!((e.confidence - 0.48).abs() < 1e-6, "{e:?}");
            assert!(!graph.refcount_of(to).unwrap().kind_proven);
        }
        let mut cycle = vec![ra, rb];
        cycle.sort();
        assert_eq!(graph.cycles, vec![cycle]);
        let kinds: Vec<EdgeKind> = graph.edges.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds.len(),
            2 + 3 + 3 + 2,
            "no stray edges: {:?}",
            graph.edges
        );

        // Break the cycle so nothing leaks.
        drop(mem);
        a.next.borrow_mut().take();
    }
}

/// Clone traps: default-like contents (small integers only) get low confidence, span keys
/// count less than sites, and equal contents of another size are not clones. Equal contents
/// from another site are a copy of the earlier block (the original of a `.clone()` was made
/// elsewhere).
#[test]
fn clone_confidence_for_default_like_contents_and_span_keys() {
    let mut s = Synth::new(3);
    let mut ids = Vec::new();
    for (size, site, span) in [(64, 0, 5), (64, 0, 5), (64, 9, 0), (72, 0, 5)] {
        let i = s.alloc(size, 1, site);
        s.nodes[i].span = span;
        for k in 0..8 {
            s.set(i, k, k + 1); // [1, 2, .., 8]: default-like
        }
        ids.push(s.id(i));
    }
    let graph = s.build();
    let clones: Vec<&Edge> = graph.edges_of(EdgeKind::Clone).collect();
    assert_eq!(clones.len(), 2, "{clones:?}");
    assert_eq!((clones[0].from, clones[0].to), (ids[0], ids[1]));
    // 0.5, no site bonus, + 0.2 (64 bytes: whole contents compared), − 0.3 (small integers).
    assert!((clones[0].confidence - 0.4).abs() < 1e-6);
    assert_eq!((clones[1].from, clones[1].to), (ids[0], ids[2]));
    // The same, + 0.2 for the site.
    assert!((clones[1].confidence - 0.6).abs() < 1e-6);
}

/// Clone edges run from the original, allocated at its own site and long before, not from the
/// first copy: a config buffer built once and cloned per request.
#[test]
fn clone_edges_run_from_the_original_not_the_first_copy() {
    let mut s = Synth::new(5);
    let original = s.alloc(256, 1, 70);
    s.fill_data(original);
    let contents: Vec<usize> = (0..32)
        .map(|k| s.image[(s.addr(original) - BASE) / WORD + k])
        .collect();
    s.time += 10 * DEFAULT_CLONE_WINDOW_NS; // long after
    let mut copies = Vec::new();
    for _ in 0..20 {
        let c = s.alloc(256, 2, 71);
        for (k, &w) in contents.iter().enumerate() {
            s.set(c, k, w);
        }
        copies.push(s.id(c));
    }
    let graph = s.build();
    let clones: Vec<&Edge> = graph.edges_of(EdgeKind::Clone).collect();
    assert_eq!(clones.len(), copies.len(), "{clones:?}");
    for (e, &c) in clones.iter().zip(&copies) {
        assert_eq!((e.from, e.to), (s.id(original), c));
    }
    // The first copy is long after the original: (0.5 + 0.2 for the site) × 0.5 (a lone
    // copy); the rest are a burst from one site: 0.7.
    assert!(
        (clones[0].confidence - 0.35).abs() < 1e-6,
        "{:?}",
        clones[0]
    );
    assert!(clones[1..]
        .iter()
        .all(|e| (e.confidence - 0.7).abs() < 1e-6));
}

/// An `Arc` held twice within one task is an `arc_clone` (a tokio task's state is `Send`: the
/// likelier reading), unproven; a site that shows `Rc::new` makes it an `rc_clone`.
#[test]
fn an_arc_held_twice_in_one_task_is_an_arc_clone_until_a_site_says_rc() {
    let mut s = Synth::new(9);
    s.arc_shared(&[5, 5], EdgeKind::ArcClone);
    s.arc_shared(&[6, 6], EdgeKind::RcClone);
    let graph = s.build();
    let arc = graph.edges_of(EdgeKind::ArcClone).collect::<Vec<_>>();
    assert_eq!(arc.len(), 2, "{:?}", graph.edges);
    assert!(arc.iter().all(|e| (e.confidence - 0.95 * 0.8).abs() < 1e-6));
    assert!(!graph.refcount_of(arc[0].to).unwrap().kind_proven);
    let rc = graph.edges_of(EdgeKind::RcClone).collect::<Vec<_>>();
    assert_eq!(rc.len(), 2);
    assert!(rc.iter().all(|e| (e.confidence - 0.95).abs() < 1e-6));
    assert!(graph.refcount_of(rc[0].to).unwrap().kind_proven);
}

/// A word left in a freed-and-reused block (a finished future's storage) pointing at an `Rc`
/// cycle's member: the member is still read as refcounted, the word is recorded as surplus.
#[test]
fn a_stale_word_into_a_cycle_is_surplus_not_a_reference() {
    let mut s = Synth::new(11);
    let (a, b) = s.rc_cycle(3);
    let storage = s.alloc(128, 4, 80);
    s.fill_data(storage);
    s.set(storage, 5, s.addr(a));
    let graph = s.build();
    let r = graph.refcount_of(s.id(a)).expect("a is still an RcBox");
    assert_eq!((r.strong, r.weak, r.heap_pointers, r.surplus), (1, 1, 2, 1));
    assert_eq!(r.kind, EdgeKind::RcClone);
    assert_eq!(graph.refcount_of(s.id(b)).unwrap().surplus, 0);
    let into_a: Vec<&Edge> = graph.edges.iter().filter(|e| e.to == s.id(a)).collect();
    assert!(
        into_a.iter().all(|e| e.kind == EdgeKind::RcClone),
        "{into_a:?}"
    );
}

/// A `bytes::Bytes`-like holder `[cursor, len, data, vtable]` whose cursor is the buffer's
/// start and whose data word is the start tagged with 1: one `owns` edge, no `slice` beside
/// it; a second view that only points inside is a `slice`.
#[test]
fn a_start_and_an_interior_pointer_to_one_block_make_one_edge() {
    let mut s = Synth::new(13);
    let buf = s.alloc(256, 1, 90);
    s.fill_data(buf);
    let bytes = s.alloc(32, 1, 91);
    s.set(bytes, 0, s.addr(buf));
    s.set(bytes, 1, 200);
    s.set(bytes, 2, s.addr(buf) | 1);
    s.set(bytes, 3, 0x7f00_dead_beef_0000);
    let view = s.alloc(16, 1, 92);
    s.set(view, 0, s.addr(buf) + 64);
    s.set(view, 1, 100);
    let graph = s.build();
    let into: Vec<(AllocId, EdgeKind)> = graph
        .edges
        .iter()
        .filter(|e| e.to == s.id(buf))
        .map(|e| (e.from, e.kind))
        .collect();
    assert_eq!(
        into,
        [(s.id(bytes), EdgeKind::Owns), (s.id(view), EdgeKind::Slice)]
    );
    let owns = graph
        .edges
        .iter()
        .find(|e| e.kind == EdgeKind::Owns)
        .unwrap();
    assert_eq!(
        owns.evidence, 1,
        "the start word only: the tagged word was an interior hit"
    );
}
