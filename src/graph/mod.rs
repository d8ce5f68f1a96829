//! Relation graph: ownership edges among live allocations.
//!
//! This module is the allocator-independent half of the graph: given a list of live
//! allocations ([`Node`]s) and a way to read their contents as pointer-sized words
//! ([`WordSource`]), [`build`] infers how they relate and returns a [`Graph`]. Everything here
//! is pure and deterministic, so it runs under Miri with synthetic heaps; the live index and
//! the safe heap scan that feed it belong to the allocator.
//!
//! The graph is *inferred*, not proven: a word equal to an allocation's address is evidence of
//! a pointer, not proof (it may be a stale value, an integer that happens to match, or a racing
//! read). Every [`Edge`] therefore carries a [`confidence`](Edge::confidence) in `0..=1` and a
//! [`Capability`] in the vocabulary of Place Capability Graphs.
//!
//! # Detectors
//!
//! | kind | evidence | capability |
//! |---|---|---|
//! | [`owns`](EdgeKind::Owns) | a word equal to the start of exactly one owner's target | exclusive |
//! | [`shares`](EdgeKind::Shares) | start pointers from two or more owners, no refcount header | shared |
//! | [`arc_clone`](EdgeKind::ArcClone) / [`rc_clone`](EdgeKind::RcClone) | start pointers into a block whose first two words look like `strong, weak` counts (the flavour proven by holders in two tasks or by the allocation site, else read as `arc_clone`) | shared |
//! | [`slice`](EdgeKind::Slice) | a word pointing strictly inside another node | borrow |
//! | [`clone`](EdgeKind::Clone) | same size and equal leading bytes, from the earliest (the original) | borrow |
//! | [`contains`](EdgeKind::Contains) | an [`Annotation`]: explicit members, or temporal locality | exclusive |
//! | [`evolution`](EdgeKind::Evolution) | [`Node::realloc_from`]: the allocator saw a realloc | exclusive |
//!
//! See [`EdgeKind`] for each detector's confidence rule. Cycles are the strongly connected
//! components of the ownership edges ([`EdgeKind::is_ownership`]); [`Graph::retained`] is each
//! node's retained size from the dominator tree of the ownership edges.
//!
//! # Cost
//!
//! One pass over the scanned words with a range index lookup per word (a subtraction and a
//! compare reject non-pointer words; candidates take a bucket lookup, no hashing), sorts of the
//! hits and of clone candidates, an iterative Tarjan SCC and a Lengauer–Tarjan dominator tree:
//! `O(W + n log n + E log n)` for `W` scanned words, `n` nodes, `E` edges, with no recursion.
//!
//! # Testing
//!
//! No `unsafe` here. The unit tests build heaps of known shape in plain buffers and score
//! every detector's precision and recall, and read real `Box`, `Vec<String>`, `Arc` and `Rc`
//! objects in place to check the std layouts assumed above. They run under Miri with no
//! `MIRIFLAGS`: `cargo +nightly miri test --lib graph`. Benchmarks: `cargo bench --bench graph`.
//!
//! # Example
//!
//! ```
//! use heapspan::graph::{build, AllocId, EdgeKind, FlatHeap, GraphConfig, Node};
//!
//! // A fake heap: a 16-byte "Box" at 0x1000 pointing at a 32-byte buffer at 0x1010.
//! let mut heap = FlatHeap::new(0x1000, 6);
//! heap.write(0x1000, 0x1010);
//! heap.write(0x1008, 7);
//! let nodes = [Node::new(AllocId(1), 0x1000, 16), Node::new(AllocId(2), 0x1010, 32)];
//! let graph = build(&nodes, &heap, &[], &GraphConfig::default());
//! assert_eq!(graph.edges.len(), 1);
//! assert_eq!(graph.edges[0].kind, EdgeKind::Owns);
//! assert_eq!((graph.edges[0].from, graph.edges[0].to), (AllocId(1), AllocId(2)));
//! assert_eq!(graph.retained_of(AllocId(1)), Some(48));
//! ```

mod detect;
mod dot;
mod index;
pub mod live;
mod scc;
mod sort;
#[cfg(test)]
mod tests;

use std::fmt;

pub use dot::{to_dot, DotOptions, HIGHLIGHT_NODES};
pub use scc::retained_sizes;

const WORD: usize = std::mem::size_of::<usize>();
/// [`Node::span`] is a span word: the span's name group in the bits from here up, the
/// instance below (the allocator's layout; checked in `graph::live`'s tests).
pub(crate) const SPAN_GROUP_SHIFT: u32 = 40;
/// The factor on the score of a refcounted block's edges whose `Arc`/`Rc` flavour is a
/// reading, not proven (see [`EdgeKind`]).
const UNPROVEN_FLAVOUR: f32 = 0.8;

/// Node indices are `u32`: a hard cap far beyond any sane [`GraphConfig::max_nodes`].
const MAX_NODES_PER_BUILD: usize = u32::MAX as usize - 1;

/// Default [`GraphConfig::max_nodes`]: 2 Mi nodes per build.
pub const DEFAULT_MAX_NODES: usize = 2 << 20;
/// Default [`GraphConfig::max_scan_bytes_per_node`]: the first 16 MiB of each allocation,
/// enough for the table of a hash map of a million 16-byte entries (a table cut short hides
/// the pointers of its last entries, whose targets would look unowned). Bigger nodes are
/// counted in [`Skipped::truncated_nodes`] and exported on the window spans.
pub const DEFAULT_MAX_SCAN_BYTES_PER_NODE: usize = 16 << 20;
/// Default [`GraphConfig::clone_window_ns`]: 100 ms.
pub const DEFAULT_CLONE_WINDOW_NS: u64 = 100_000_000;
/// Default [`GraphConfig::clone_prefix_bytes`]: 64 bytes, as in the `clone.storm` finding.
pub const DEFAULT_CLONE_PREFIX_BYTES: usize = 64;
/// Default [`GraphConfig::clone_min_bytes`]: 16 bytes.
pub const DEFAULT_CLONE_MIN_BYTES: usize = 16;
/// Default [`GraphConfig::contains_window_ns`]: 1 ms.
pub const DEFAULT_CONTAINS_WINDOW_NS: u64 = 1_000_000;
/// Default [`GraphConfig::max_inferred_members`]: 1024 per annotated container.
pub const DEFAULT_MAX_INFERRED_MEMBERS: usize = 1024;
/// Default [`GraphConfig::max_refcount`]: counts above 2^24 are not taken for refcounts.
pub const DEFAULT_MAX_REFCOUNT: usize = 1 << 24;

/// A stable allocation id, assigned by the live index. Never a bare address: ids are what
/// leaves the process (telemetry.md, Privacy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AllocId(pub u64);

impl fmt::Display for AllocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One live allocation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    /// Stable id.
    pub id: AllocId,
    /// Address of the first byte the user got.
    pub addr: usize,
    /// Requested size in bytes.
    pub size: usize,
    /// Tokio task current when it was allocated (0: none).
    pub task: u64,
    /// Tracing span current when it was allocated (0: none).
    pub span: u64,
    /// Allocation time, nanoseconds (any monotonic origin shared by all nodes).
    pub alloc_time_ns: u64,
    /// Hash of the allocating code location (0: unknown).
    pub site: u64,
    /// The allocation this one was reallocated from, if the allocator saw a realloc.
    pub realloc_from: Option<AllocId>,
    /// Sampling weight: how many bytes each byte of this node stands for (1.0 in full mode).
    pub weight: f64,
}

impl Node {
    /// A node with no task, span, time or site, and weight 1.
    pub fn new(id: AllocId, addr: usize, size: usize) -> Self {
        Node {
            id,
            addr,
            size,
            task: 0,
            span: 0,
            alloc_time_ns: 0,
            site: 0,
            realloc_from: None,
            weight: 1.0,
        }
    }

    /// `size × weight`, rounded: the bytes this node stands for.
    pub fn weighted_size(&self) -> u64 {
        weighted(self.size as u64, self.weight)
    }
}

fn weighted(bytes: u64, weight: f64) -> u64 {
    if weight == 1.0 || !weight.is_finite() || weight <= 0.0 {
        bytes
    } else {
        (bytes as f64 * weight).round() as u64
    }
}

/// Reads the contents of live allocations.
///
/// The contents are *evidence, not proof*: the allocation may be written or freed while it is
/// read (the allocator-side implementation coordinates with the free path so the read itself is
/// safe, but not consistent).
pub trait WordSource {
    /// Appends `node`'s contents to `out` as `node.size / size_of::<usize>()` native-endian
    /// words read from `node.addr` (a trailing partial word is left out: it cannot hold a
    /// pointer). `out` is empty on entry. Returns `false` if the node cannot be read now
    /// (freed meanwhile, or not mapped); what was appended is then ignored.
    fn read_words(&self, node: &Node, out: &mut Vec<usize>) -> bool;
}

impl<W: WordSource + ?Sized> WordSource for &W {
    fn read_words(&self, node: &Node, out: &mut Vec<usize>) -> bool {
        (**self).read_words(node, out)
    }
}

/// A [`WordSource`] over a heap image copied into one buffer: word `k` of the image is the
/// word at address `base + k × size_of::<usize>()`. For tests, benchmarks and offline analysis
/// of heap dumps.
#[derive(Clone, Debug, Default)]
pub struct FlatHeap {
    base: usize,
    words: Vec<usize>,
}

impl FlatHeap {
    /// A zeroed image of `words` words starting at `base` (word-aligned).
    pub fn new(base: usize, words: usize) -> Self {
        debug_assert_eq!(base % WORD, 0);
        FlatHeap {
            base,
            words: vec![0; words],
        }
    }

    /// An image made of `words`, starting at `base`.
    pub fn from_words(base: usize, words: Vec<usize>) -> Self {
        FlatHeap { base, words }
    }

    /// First address of the image.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The image's words.
    pub fn words(&self) -> &[usize] {
        &self.words
    }

    /// Writes `value` at the word-aligned address `addr`.
    ///
    /// # Panics
    ///
    /// If `addr` is outside the image or not word-aligned.
    #[track_caller]
    pub fn write(&mut self, addr: usize, value: usize) {
        assert!(
            addr >= self.base && (addr - self.base).is_multiple_of(WORD),
            "bad address"
        );
        self.words[(addr - self.base) / WORD] = value;
    }

    /// Reads the word at the word-aligned address `addr`, if it is inside the image.
    pub fn read(&self, addr: usize) -> Option<usize> {
        let k = addr.checked_sub(self.base)?;
        if k % WORD != 0 {
            return None;
        }
        self.words.get(k / WORD).copied()
    }
}

impl WordSource for FlatHeap {
    fn read_words(&self, node: &Node, out: &mut Vec<usize>) -> bool {
        let Some(off) = node.addr.checked_sub(self.base) else {
            return false;
        };
        if off % WORD != 0 {
            return false;
        }
        let first = off / WORD;
        let Some(words) = self.words.get(first..first + node.size / WORD) else {
            return false;
        };
        out.extend_from_slice(words);
        true
    }
}

/// An explicit "contains" relation: the allocations making up a container whose internals hide
/// the pointers (a hash table's buckets, an arena, a slab).
///
/// With `members` empty, members are inferred by temporal locality: allocations of the
/// container's task made within [`GraphConfig::contains_window_ns`] after it that nothing else
/// in the heap points at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotation {
    /// The container.
    pub container: AllocId,
    /// Its members; empty to infer them.
    pub members: Vec<AllocId>,
}

/// Settings of [`build`]. `Default` uses the `DEFAULT_*` constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphConfig {
    /// Nodes kept per build: the first `max_nodes` of the input (so the caller orders nodes
    /// by priority); the rest are counted in [`Skipped::nodes`]. Default
    /// [`DEFAULT_MAX_NODES`].
    pub max_nodes: usize,
    /// Bytes scanned from the start of each node; the rest of bigger nodes is counted in
    /// [`Skipped::truncated_bytes`]. Default [`DEFAULT_MAX_SCAN_BYTES_PER_NODE`].
    pub max_scan_bytes_per_node: usize,
    /// Clones are allocated at most this long after their original. Default
    /// [`DEFAULT_CLONE_WINDOW_NS`].
    pub clone_window_ns: u64,
    /// Leading bytes compared for clone detection. Default [`DEFAULT_CLONE_PREFIX_BYTES`].
    pub clone_prefix_bytes: usize,
    /// Smaller nodes are never clones. Default [`DEFAULT_CLONE_MIN_BYTES`].
    pub clone_min_bytes: usize,
    /// Inferred container members are allocated at most this long after the container.
    /// Default [`DEFAULT_CONTAINS_WINDOW_NS`].
    pub contains_window_ns: u64,
    /// Members inferred per container at most. Default [`DEFAULT_MAX_INFERRED_MEMBERS`].
    pub max_inferred_members: usize,
    /// Header words above this are not refcounts. Default [`DEFAULT_MAX_REFCOUNT`].
    pub max_refcount: usize,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            max_nodes: DEFAULT_MAX_NODES,
            max_scan_bytes_per_node: DEFAULT_MAX_SCAN_BYTES_PER_NODE,
            clone_window_ns: DEFAULT_CLONE_WINDOW_NS,
            clone_prefix_bytes: DEFAULT_CLONE_PREFIX_BYTES,
            clone_min_bytes: DEFAULT_CLONE_MIN_BYTES,
            contains_window_ns: DEFAULT_CONTAINS_WINDOW_NS,
            max_inferred_members: DEFAULT_MAX_INFERRED_MEMBERS,
            max_refcount: DEFAULT_MAX_REFCOUNT,
        }
    }
}

/// What an edge says about its target. Values of `heapspan.edge.kind`.
///
/// Confidence rules (in `0..=1`; "plausible length" means a neighbouring word `n` with
/// `1 ≤ n ≤` the bytes left in the target):
///
/// - `Owns`: 0.75, 0.95 when a neighbour of the pointer word is a plausible length or capacity
///   (`Vec`, `String`, `Box<[T]>` layouts).
/// - `Shares`: 0.6 (two or more owners, no refcount header: raw or leaked pointers).
/// - `ArcClone` / `RcClone`: the target is at least two words, its first two words `strong,
///   weak` are in `1..=max_refcount`, it has two or more pointer words `p` into it or is in a
///   cycle, `p < strong + weak`, and either `weak == 1` (no `Weak`) or the counts account for
///   the pointers exactly (`p == strong` or `p == strong + weak − 1`). Then a refcount score:
///   0.95 when the heap pointers equal the strong count, 0.8 when fewer (the rest are on the
///   stack), 0.7 when more (some are `Weak`), 0.6 for a single in-cycle pointer. A cycle
///   member with no `Weak` and one or two pointer words more than its strong count is still
///   taken for a refcounted block, at 0.5: the surplus words are taken for stale ones (left in a reused
///   block; [`Refcount::surplus`]). The layouts of `ArcInner` and `RcBox` are identical:
///   holders in two or more tasks (task 0, no task, not counted) are taken as an `Arc` (an
///   `Rc` is `!Send`; tasks of one `LocalSet` can share one, which the site then corrects),
///   an allocation site that shows `Arc::new` or `Rc::new` settles it
///   ([`Graph::set_refcount_kinds`]; the live graph does it when sites are captured).
///   Unproven, the block is read as the likelier `ArcClone` (a tokio task's state is `Send`)
///   at 0.8 × the score, and [`Refcount::kind_proven`] is false.
/// - `Slice`: 0.5, 0.85 with a plausible length next to the pointer. A holder that also
///   points at the block's start gets no `Slice` beside its start-pointer edge (a
///   `bytes::Bytes` keeps its buffer's start and a cursor into it).
/// - `Clone`: blocks of equal size and equal leading bytes are one group; the earliest is the
///   original, wherever it was allocated, and each later one a clone of it: 0.5, + 0.2 when
///   the clone's site is known, + 0.2 when the compared prefix is the whole allocation, − 0.3
///   when every compared word is a small integer (< 2^16: default-like contents), clamped to
///   `0.05..=0.95`; then halved when the clone is neither within the clone window
///   of the previous copy from its own site (or span name) nor, being the first, of the
///   original (a lone copy: below the 0.5 `clone.storm` counts). Uniform prefixes (all words
///   equal: zeroed or memset buffers) are never clones.
/// - `Contains`: 1.0 for annotated members, 0.4 for members inferred by temporal locality.
/// - `Evolution`: 1.0 (the allocator saw the realloc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EdgeKind {
    /// `from` holds the only pointer to `to`'s start.
    Owns,
    /// `to` is a member of the annotated container `from`.
    Contains,
    /// `from` is one of several holders of `to`, which has no refcount header.
    Shares,
    /// `from` points strictly inside `to`: a view.
    Slice,
    /// `to` looks like a clone of `from` (made later).
    Clone,
    /// `to` is `from` reallocated (`from` is usually freed by now).
    Evolution,
    /// `from` holds an `Arc` to `to` (an `ArcInner`).
    ArcClone,
    /// `from` holds an `Rc` to `to` (an `RcBox`).
    RcClone,
}

impl EdgeKind {
    /// All kinds, in declaration order.
    pub const ALL: [EdgeKind; 8] = [
        EdgeKind::Owns,
        EdgeKind::Contains,
        EdgeKind::Shares,
        EdgeKind::Slice,
        EdgeKind::Clone,
        EdgeKind::Evolution,
        EdgeKind::ArcClone,
        EdgeKind::RcClone,
    ];

    /// The `heapspan.edge.kind` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Owns => "owns",
            EdgeKind::Contains => "contains",
            EdgeKind::Shares => "shares",
            EdgeKind::Slice => "slice",
            EdgeKind::Clone => "clone",
            EdgeKind::Evolution => "evolution",
            EdgeKind::ArcClone => "arc_clone",
            EdgeKind::RcClone => "rc_clone",
        }
    }

    /// The capability `from` has over `to`:
    ///
    /// - exclusive: `Owns`, `Contains`, and `Evolution` (a realloc moves the whole buffer: the
    ///   new block takes over the old one's exclusive capability);
    /// - shared: `Shares`, `ArcClone`, `RcClone`;
    /// - borrow: `Slice` (a view), and `Clone` (`Clone::clone(&self)` reads the original
    ///   through a shared borrow; the edge grants no ownership: the clone's holder owns it,
    ///   which the edges into the clone show).
    pub const fn capability(self) -> Capability {
        match self {
            EdgeKind::Owns | EdgeKind::Contains | EdgeKind::Evolution => Capability::Exclusive,
            EdgeKind::Shares | EdgeKind::ArcClone | EdgeKind::RcClone => Capability::Shared,
            EdgeKind::Slice | EdgeKind::Clone => Capability::Borrow,
        }
    }

    /// Whether the edge keeps its target alive: `Owns`, `Contains`, `Shares`, `ArcClone`,
    /// `RcClone`. Cycles and retained sizes are computed over these.
    pub const fn is_ownership(self) -> bool {
        matches!(
            self,
            EdgeKind::Owns
                | EdgeKind::Contains
                | EdgeKind::Shares
                | EdgeKind::ArcClone
                | EdgeKind::RcClone
        )
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Place Capability Graph vocabulary for an edge. Values of `heapspan.edge.capability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Sole owner: may read, write, move, drop.
    Exclusive,
    /// One of several owners (reference counted or aliased): read, and drop one share.
    Shared,
    /// A view or derivation that owns nothing.
    Borrow,
}

impl Capability {
    /// The `heapspan.edge.capability` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Exclusive => "exclusive",
            Capability::Shared => "shared",
            Capability::Borrow => "borrow",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inferred relation between two allocations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edge {
    /// Holder, container, original or older block.
    pub from: AllocId,
    /// Target.
    pub to: AllocId,
    /// Relation.
    pub kind: EdgeKind,
    /// How sure, `0..=1` (see [`EdgeKind`] for the rules).
    pub confidence: f32,
    /// What `from` may do with `to`.
    pub capability: Capability,
    /// `from` and `to` were allocated by different tasks (false when either end is unknown).
    pub cross_task: bool,
    /// Bytes the edge stands for (weighted): the target's size; for shared kinds the target's
    /// size divided by its holders (strong count when known); for slices the bytes from the
    /// pointer to the target's end.
    pub bytes: u64,
    /// Words (pointers) supporting the edge; 1 for kinds that are not from the scan.
    pub evidence: u32,
}

/// What a build left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Nodes beyond [`GraphConfig::max_nodes`] (not in the graph at all).
    pub nodes: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Nodes whose [`WordSource::read_words`] failed (in the graph, not scanned).
    pub unreadable: u64,
    /// Nodes scanned only up to [`GraphConfig::max_scan_bytes_per_node`].
    pub truncated_nodes: u64,
    /// Bytes left unscanned in them.
    pub truncated_bytes: u64,
    /// Nodes overlapping an earlier node's range (a stale node list): not pointer targets.
    pub overlapping: u64,
    /// Annotations (or members) naming an id that is not in the graph.
    pub unresolved_annotations: u64,
}

/// The counts read from a block taken for an `ArcInner` or `RcBox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refcount {
    /// The block.
    pub id: AllocId,
    /// First word: the strong count.
    pub strong: usize,
    /// Second word: the weak count (1 + the `Weak`s while any strong reference lives).
    pub weak: usize,
    /// Pointer words to the block's start found in the heap.
    pub heap_pointers: usize,
    /// Of them, the words beyond `strong + weak − 1`: no count has room for them, which
    /// suggests stale words (left in a freed-and-reused block), not references. Only a cycle member with no `Weak`
    /// is taken for a refcounted block with a surplus, of at most two words.
    pub surplus: usize,
    /// `ArcClone` or `RcClone`: what the edges into it are labelled.
    pub kind: EdgeKind,
    /// Whether `kind` is proven (holders in two tasks, or the allocation site), not the
    /// likelier reading (`ArcClone` in one task).
    pub kind_proven: bool,
}

/// The ownership closure of a node: see [`Graph::ownership_closure`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// The nodes reached, the root first, breadth-first.
    pub nodes: Vec<AllocId>,
    /// Their weighted bytes.
    pub bytes: u64,
    /// The walk stopped at its node budget.
    pub truncated: bool,
}

/// Counters of a build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Words read and looked up.
    pub words_scanned: u64,
    /// Words equal to the start of another node.
    pub start_pointers: u64,
    /// Words pointing strictly inside another node.
    pub interior_pointers: u64,
    /// Clone candidates skipped for a uniform (zeroed, memset) prefix.
    pub uniform_prefixes: u64,
}

/// The relation graph of one build.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The nodes, in input order (the first [`GraphConfig::max_nodes`]).
    pub nodes: Vec<Node>,
    /// Edges, grouped by detector: start-pointer kinds (`Owns`, `Shares`, `ArcClone`,
    /// `RcClone`) by `(to, from)`, then `Slice` by `(to, from)`, `Contains` by `(from, to)`,
    /// `Clone`, `Evolution`. At most one edge per `(from, to, kind)`. An `Evolution` edge's
    /// `from` is usually not a node any more (the realloc freed it).
    pub edges: Vec<Edge>,
    /// Strongly connected components of two or more nodes over the ownership edges, each
    /// sorted by id, sorted by their first id.
    pub cycles: Vec<Vec<AllocId>>,
    /// Per node (same order as `nodes`): weighted bytes reachable from the roots only through
    /// it, itself included (its subtree in the dominator tree of the ownership edges). 0 for
    /// nodes no root reaches.
    pub retained: Vec<u64>,
    /// The roots retained sizes are computed from: nodes with no ownership edge into them, and
    /// the smallest id of each cycle nothing outside it owns.
    pub roots: Vec<AllocId>,
    /// What the caps left out.
    pub skipped: Skipped,
    /// Counters.
    pub stats: BuildStats,
    /// The blocks taken for `ArcInner`/`RcBox`es, sorted by id: their counts next to the heap
    /// pointers found (for `refcount.unreachable_cycle`: a cycle whose members' strong counts
    /// are all accounted for by pointers from inside it is unreachable).
    pub refcounts: Vec<Refcount>,
    /// `(id, node index)` sorted by id.
    by_id: Vec<(AllocId, u32)>,
    /// Ownership edges by node index.
    ownership: scc::Csr,
}

impl Graph {
    /// Labels refcounted blocks by evidence the layouts lack: `kind_of(node)` answers
    /// `Some(ArcClone)` or `Some(RcClone)` for a block whose flavour it knows (the live graph
    /// reads it off the allocation site: `Rc::new` or `Arc::new` on the stack), `None`
    /// otherwise. The site wins over holders in two tasks (`Rc`s shared by the tasks of one
    /// `LocalSet`). The edges into a block whose flavour was a reading get that kind and their
    /// full score back (the 0.8 factor of an unproven reading goes).
    pub fn set_refcount_kinds(&mut self, mut kind_of: impl FnMut(&Node) -> Option<EdgeKind>) {
        // (block, kind, whether its edges carry the unproven factor)
        let mut proven: Vec<(AllocId, EdgeKind, bool)> = Vec::new();
        for k in 0..self.refcounts.len() {
            let r = self.refcounts[k];
            let Some(node) = self.node(r.id) else {
                continue;
            };
            if let Some(kind @ (EdgeKind::ArcClone | EdgeKind::RcClone)) = kind_of(node) {
                self.refcounts[k].kind = kind;
                self.refcounts[k].kind_proven = true;
                proven.push((r.id, kind, !r.kind_proven));
            }
        }
        if proven.is_empty() {
            return;
        }
        // `refcounts` is sorted by id.
        for e in &mut self.edges {
            if !matches!(e.kind, EdgeKind::ArcClone | EdgeKind::RcClone) {
                continue;
            }
            if let Ok(k) = proven.binary_search_by_key(&e.to, |&(id, ..)| id) {
                let (_, kind, unproven) = proven[k];
                e.kind = kind;
                if unproven {
                    e.confidence = (e.confidence / UNPROVEN_FLAVOUR).min(0.95);
                }
            }
        }
    }

    /// Index of the node with this id.
    pub fn index_of(&self, id: AllocId) -> Option<usize> {
        self.by_id
            .binary_search_by_key(&id, |&(i, _)| i)
            .ok()
            .map(|k| self.by_id[k].1 as usize)
    }

    /// The node with this id.
    pub fn node(&self, id: AllocId) -> Option<&Node> {
        self.index_of(id).map(|i| &self.nodes[i])
    }

    /// The retained size of the node with this id.
    pub fn retained_of(&self, id: AllocId) -> Option<u64> {
        self.index_of(id).map(|i| self.retained[i])
    }

    /// The ownership closure of `root` (findings.md: its danger surface): the nodes reachable
    /// from it over ownership edges ([`EdgeKind::is_ownership`]), itself included,
    /// breadth-first, at most `max_nodes` of them. `None` if `root` is not a node. Costs
    /// `O(visited nodes + their edges)`, not `O(graph)`.
    pub fn ownership_closure(&self, root: AllocId, max_nodes: usize) -> Option<Closure> {
        self.index_of(root)?;
        Some(self.ownership_closure_of(&[root], max_nodes))
    }

    /// The union of the ownership closures of `roots` (those that are nodes), each node once,
    /// the roots first, at most `max_nodes` nodes.
    pub fn ownership_closure_of(&self, roots: &[AllocId], max_nodes: usize) -> Closure {
        let mut seen = std::collections::HashSet::new();
        let mut order = Vec::new();
        let mut truncated = false;
        for &r in roots {
            let Some(i) = self.index_of(r) else { continue };
            if order.len() >= max_nodes.max(1) {
                truncated = true;
                break;
            }
            if seen.insert(i as u32) {
                order.push(i as u32);
            }
        }
        let mut next = 0;
        'walk: while next < order.len() {
            let v = order[next];
            next += 1;
            for &t in self.ownership.out(v) {
                if seen.contains(&t) {
                    continue;
                }
                if order.len() >= max_nodes {
                    truncated = true;
                    break 'walk;
                }
                seen.insert(t);
                order.push(t);
            }
        }
        Closure {
            bytes: order
                .iter()
                .map(|&i| self.nodes[i as usize].weighted_size())
                .sum(),
            nodes: order.iter().map(|&i| self.nodes[i as usize].id).collect(),
            truncated,
        }
    }

    /// The `ArcInner`/`RcBox` counts of block `id`, if the graph took it for one.
    pub fn refcount_of(&self, id: AllocId) -> Option<&Refcount> {
        self.refcounts
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|k| &self.refcounts[k])
    }

    /// Edges of one kind.
    pub fn edges_of(&self, kind: EdgeKind) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.kind == kind)
    }

    /// Edge counts per kind, in [`EdgeKind::ALL`] order (the `heapspan.graph.edges` gauge).
    pub fn count_by_kind(&self) -> [usize; 8] {
        let mut counts = [0; 8];
        for e in &self.edges {
            counts[e.kind as usize] += 1;
        }
        counts
    }

    /// The `k` edges with the most bytes, most first (ties by `from`, `to`, kind): what goes
    /// out as `heapspan.edge` events (telemetry.md: top-K, never the whole graph).
    pub fn top_edges(&self, k: usize) -> Vec<&Edge> {
        top_k_edges(&self.edges, k)
    }

    /// The `k` edges with the most bytes among those with an end allocated by `task`: the
    /// `heapspan.edge` events of that task's window span.
    pub fn top_edges_for_task(&self, task: u64, k: usize) -> Vec<&Edge> {
        let of_task = |id: AllocId| self.node(id).is_some_and(|n| n.task == task);
        top_k(
            self.edges
                .iter()
                .filter(|e| of_task(e.from) || of_task(e.to)),
            k,
        )
    }
}

/// The `k` edges of `edges` with the most bytes, most first; ties broken by `from`, `to`,
/// kind so the choice is deterministic. `O(E + k log k)`.
pub fn top_k_edges(edges: &[Edge], k: usize) -> Vec<&Edge> {
    top_k(edges.iter(), k)
}

fn top_k<'a>(edges: impl Iterator<Item = &'a Edge>, k: usize) -> Vec<&'a Edge> {
    let mut refs: Vec<&Edge> = edges.collect();
    let order = |a: &&Edge, b: &&Edge| {
        b.bytes
            .cmp(&a.bytes)
            .then(a.from.cmp(&b.from))
            .then(a.to.cmp(&b.to))
            .then(a.kind.cmp(&b.kind))
    };
    if k < refs.len() {
        if k == 0 {
            return Vec::new();
        }
        refs.select_nth_unstable_by(k - 1, order);
        refs.truncate(k);
    }
    refs.sort_unstable_by(order);
    refs
}

/// Builds the relation graph of `nodes` (see the [module docs](self)).
///
/// `nodes` beyond [`GraphConfig::max_nodes`] are left out and counted; `annotations` add
/// `Contains` edges. Deterministic: the same input gives the same graph. The graph keeps a copy
/// of the nodes; [`build_owned`] takes them without copying.
pub fn build(
    nodes: &[Node],
    mem: &impl WordSource,
    annotations: &[Annotation],
    cfg: &GraphConfig,
) -> Graph {
    let (kept, skipped) = cap(nodes, cfg);
    build_inner(nodes[..kept].to_vec(), mem, annotations, cfg, skipped)
}

/// [`build`] on nodes the graph takes over (no copy: at 80 bytes a node, 1M nodes are 80 MB).
pub fn build_owned(
    mut nodes: Vec<Node>,
    mem: &impl WordSource,
    annotations: &[Annotation],
    cfg: &GraphConfig,
) -> Graph {
    let (kept, skipped) = cap(&nodes, cfg);
    nodes.truncate(kept);
    build_inner(nodes, mem, annotations, cfg, skipped)
}

/// How many nodes a build keeps, and what the cap leaves out.
fn cap(nodes: &[Node], cfg: &GraphConfig) -> (usize, Skipped) {
    let kept = nodes.len().min(cfg.max_nodes).min(MAX_NODES_PER_BUILD);
    let skipped = Skipped {
        nodes: (nodes.len() - kept) as u64,
        bytes: nodes[kept..].iter().map(|n| n.size as u64).sum(),
        ..Skipped::default()
    };
    (kept, skipped)
}

fn build_inner(
    nodes_vec: Vec<Node>,
    mem: &impl WordSource,
    annotations: &[Annotation],
    cfg: &GraphConfig,
    mut skipped: Skipped,
) -> Graph {
    let mut by_id: Vec<(AllocId, u32)> = nodes_vec
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id, i as u32))
        .collect();
    by_id.sort_unstable();

    let out = detect::detect(&nodes_vec, &by_id, mem, annotations, cfg, &mut skipped);
    let mut graph = Graph {
        nodes: nodes_vec,
        edges: out.edges,
        cycles: out.cycles,
        retained: Vec::new(),
        roots: Vec::new(),
        skipped,
        stats: out.stats,
        refcounts: out.refcounts,
        by_id,
        ownership: out.ownership,
    };
    let roots = scc::default_roots(&graph, &out.component);
    graph.retained = scc::retained_from(&graph, &roots);
    graph.roots = roots.iter().map(|&r| graph.nodes[r as usize].id).collect();
    graph
}
