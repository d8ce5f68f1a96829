//! The relation graph of this process's live heap: the allocator's live index, scanned safely,
//! fed to [`build_owned`](super::build_owned).
//!
//! Enable the live index with [`Builder::live_index`](crate::Builder::live_index), then take a
//! graph with [`Guard::graph`](crate::Guard::graph). With export on, heapspan takes one every
//! window and puts its edges on the window spans (see [`crate::export`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{AllocId, Annotation, DotOptions, Graph, GraphConfig, Node};
pub use crate::alloc::sites::{location as site_location, SiteLocation};

/// Which allocations the live index records ([`Builder::live_index`](crate::Builder::live_index)).
///
/// The exact per-task and per-span counters do not depend on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexMode {
    /// No index, no graph (the default): 16 bytes of header per allocation.
    #[default]
    Off,
    /// Every allocation made in a task or span while heapspan runs is indexed: 48 bytes per
    /// live allocation (a 32-byte header and a 16-byte index entry). For development and
    /// staging.
    Full,
    /// Allocations are sampled by bytes with a Poisson process of mean gap `mean_bytes`: an
    /// allocation of `s` bytes is indexed with probability `1 − exp(−s / mean_bytes)` and its
    /// node carries the weight `1 / p` that makes byte totals unbiased. For production.
    Sampled {
        /// Mean bytes between samples (default
        /// [`DEFAULT_SAMPLE_MEAN_BYTES`](crate::DEFAULT_SAMPLE_MEAN_BYTES)).
        mean_bytes: u64,
    },
}

/// What one scan of the live index read and left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Live indexed allocations found.
    pub indexed: u64,
    /// Of them, nodes whose contents were copied (the rest is in [`Graph::skipped`]).
    pub scanned_nodes: u64,
    /// Heap bytes copied.
    pub scanned_bytes: u64,
    /// Nodes left out because the scan reached its byte budget
    /// ([`CaptureConfig::max_scan_bytes`]) or the node cap; also counted in
    /// [`Skipped::nodes`](super::Skipped::nodes).
    pub over_budget_nodes: u64,
    /// Allocations freed during the scan (their frees were deferred until it ended).
    pub deferred_frees: u64,
    /// Allocations not indexed since start because a thread's index was full.
    pub unindexed: u64,
    /// How long frees were deferred (the copy phase).
    pub pause: Duration,
    /// The whole capture: scan and graph build.
    pub duration: Duration,
}

/// A relation graph of the live indexed allocations at one moment.
#[derive(Clone, Debug, Default)]
pub struct LiveGraph {
    /// The graph: nodes, edges, cycles, retained sizes. Node `task` is the tokio task id, node
    /// `span` heapspan's span id.
    pub graph: Graph,
    /// When the scan ran.
    pub taken_at: Option<SystemTime>,
    /// The scan's figures.
    pub scan: ScanStats,
    /// Per node of `graph` (same order): the allocating task's name index (0: unnamed); empty
    /// for graphs not taken from the live index.
    pub(crate) task_names: Vec<u16>,
}

impl LiveGraph {
    /// The name of the task that allocated node `i` (`None` when unknown: no task, or a graph
    /// not taken from the live index).
    pub(crate) fn task_name_of(&self, i: usize) -> Option<String> {
        let n = *self.task_names.get(i)?;
        (self.graph.nodes.get(i)?.task != 0).then(|| crate::layer::names::task_name(n))
    }

    /// The `(target, name)` of the span current when node `i` was allocated (`None`: no span).
    pub(crate) fn span_name_of(&self, i: usize) -> Option<(&'static str, &'static str)> {
        let word = self.graph.nodes.get(i)?.span;
        let group = (word >> crate::alloc::header::SPAN_BITS) as u16;
        (word != 0 && group != 0).then(|| crate::layer::names::span_name(group))
    }

    /// The code location of allocation site `site` (`None`: unknown, or sites off).
    pub(crate) fn site_location(&self, site: u64) -> Option<crate::Location> {
        if site == 0 {
            return None;
        }
        // A file and line when debug info has them, else the function's name.
        site_location(site).map(|l| match (l.file, l.line) {
            (Some(file), Some(line)) => crate::Location { file, line },
            _ => crate::Location {
                file: l.function,
                line: 0,
            },
        })
    }

    /// The node whose allocation contains `addr` (for tests and debuggers; addresses never
    /// leave the process).
    pub fn node_at(&self, addr: usize) -> Option<&Node> {
        self.graph
            .nodes
            .iter()
            .find(|n| addr >= n.addr && addr < n.addr + n.size.max(1))
    }

    /// Graphviz DOT of the graph; nodes with a captured site are labelled with its code
    /// location (unless `opts.site_labels` already names it).
    pub fn to_dot(&self, opts: &DotOptions) -> String {
        let mut opts = opts.clone();
        // The sites of the nodes drawn: the ends of the edges `to_dot` keeps.
        let kept: Vec<super::Edge> = self
            .graph
            .edges
            .iter()
            .filter(|e| e.confidence >= opts.min_confidence)
            .copied()
            .collect();
        let sites: std::collections::BTreeSet<u64> = super::top_k_edges(&kept, opts.max_edges)
            .iter()
            .flat_map(|e| [e.from, e.to])
            .filter_map(|id| self.graph.node(id))
            .map(|n| n.site)
            .filter(|&s| s != 0 && !opts.site_labels.contains_key(&s))
            .collect();
        // Symbolizing is slow: DOT_SITES distinct sites at most.
        for site in sites.into_iter().take(DOT_SITES) {
            if let Some(l) = site_location(site) {
                opts.site_labels.insert(site, l.to_string());
            }
        }
        super::to_dot(&self.graph, &opts)
    }
}

/// Distinct sites whose stacks one capture reads for the `Rc`/`Arc` flavour at most
/// (symbolizing is slow the first time; results are cached).
const FLAVOUR_SITES: usize = 256;

/// With sites captured, labels the refcounted blocks whose allocation stack shows `Rc::new` or
/// `Arc::new` (the layouts alike, only the stack tells; see
/// [`Graph::set_refcount_kinds`](super::Graph::set_refcount_kinds)).
fn prove_refcount_kinds(graph: &mut Graph) {
    use super::EdgeKind;
    use crate::alloc::sites::{flavour, Flavour};
    let mut seen = std::collections::HashMap::new();
    graph.set_refcount_kinds(|node| {
        if node.site == 0 {
            return None;
        }
        if !seen.contains_key(&node.site) && seen.len() >= FLAVOUR_SITES {
            return None;
        }
        let f = *seen.entry(node.site).or_insert_with(|| flavour(node.site));
        f.map(|f| match f {
            Flavour::Arc => EdgeKind::ArcClone,
            Flavour::Rc => EdgeKind::RcClone,
        })
    });
}

/// Distinct sites [`LiveGraph::to_dot`] symbolizes at most.
const DOT_SITES: usize = 1000;

/// Default byte budget of one scan: 256 MiB of heap copied at most.
pub const DEFAULT_MAX_SCAN_BYTES: usize = 256 << 20;

/// Settings of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Graph settings (node cap, per-node scan cap, detector windows).
    pub graph: GraphConfig,
    /// Heap bytes copied per scan at most (default [`DEFAULT_MAX_SCAN_BYTES`]).
    pub max_scan_bytes: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            graph: GraphConfig::default(),
            max_scan_bytes: DEFAULT_MAX_SCAN_BYTES,
        }
    }
}

/// Declares that the allocation containing `container` is a container whose members are the
/// allocations containing each of `members` (for containers whose internals hide the pointers:
/// hash tables, arenas, slabs). With `members` empty, members are inferred by temporal
/// locality (see [`Annotation`]). Any address inside an allocation names it, e.g. a key's
/// address for a `HashMap`'s table. An annotation is resolved at the next capture and then
/// follows the container's allocation id; it is dropped once that allocation is gone (or if
/// `container` names no indexed allocation). At most [`MAX_ANNOTATIONS`] are kept; more are
/// ignored. Takes a short lock; never call it from inside an allocator.
pub fn annotate_container(container: *const u8, members: &[*const u8]) {
    let _scope = crate::alloc::InternalScope::enter();
    let mut a = ANNOTATIONS.lock().unwrap_or_else(|p| p.into_inner());
    if a.len() < MAX_ANNOTATIONS {
        a.push(Pending {
            container: Target::Addr(container as usize),
            members: members.iter().map(|&m| Target::Addr(m as usize)).collect(),
            explicit: !members.is_empty(),
            made: ANNOTATION_SEQ.fetch_add(1, Ordering::AcqRel),
        });
    }
}

/// Pending annotations kept at most.
pub const MAX_ANNOTATIONS: usize = 4096;

/// An annotated allocation: by address until a capture resolves it, then by id.
#[derive(Clone, Copy, Debug)]
enum Target {
    Addr(usize),
    Id(AllocId),
}

#[derive(Debug)]
struct Pending {
    container: Target,
    members: Vec<Target>,
    /// Members were given (an empty list then never means "infer them").
    explicit: bool,
    /// [`ANNOTATION_SEQ`] when it was made.
    made: u64,
}

/// Annotations made so far: a capture notes it before its scan begins, and only drops what an
/// annotation names but the scan did not see if the annotation is older than the scan (a newer
/// one may name blocks allocated after the scan began).
static ANNOTATION_SEQ: AtomicU64 = AtomicU64::new(0);

static ANNOTATIONS: Mutex<Vec<Pending>> = Mutex::new(Vec::new());
/// Held by a capture while it resolves the annotations.
static RESOLVING: Mutex<()> = Mutex::new(());

/// Resolves the annotations against `nodes`. A container or member the scan did not see is
/// dropped only when the annotation is older than the scan (`scan_seq`, see
/// [`ANNOTATION_SEQ`]) and the scan saw every indexed allocation (`complete`: nothing left
/// out by its caps); otherwise it stays pending. The registry's lock is held only to take the
/// pending list and to put the survivors back, never while resolving.
fn resolve_annotations(nodes: &[Node], scan_seq: u64, complete: bool) -> Vec<Annotation> {
    // Captures resolve one at a time (a second one must not find the list taken out); the
    // registry's own lock, which `annotate_container` takes, stays short.
    let _one = RESOLVING.lock().unwrap_or_else(|p| p.into_inner());
    let mut pending = {
        let mut a = ANNOTATIONS.lock().unwrap_or_else(|p| p.into_inner());
        if a.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut *a)
    };
    let mut by_addr: Vec<(usize, usize, AllocId)> = nodes
        .iter()
        .map(|n| (n.addr, n.size.max(1), n.id))
        .collect();
    by_addr.sort_unstable_by_key(|r| r.0);
    let mut ids: Vec<AllocId> = nodes.iter().map(|n| n.id).collect();
    ids.sort_unstable();
    let find = |t: Target| -> Option<AllocId> {
        match t {
            Target::Id(id) => ids.binary_search(&id).is_ok().then_some(id),
            Target::Addr(a) => {
                let k = by_addr.partition_point(|r| r.0 <= a);
                let (start, len, id) = *by_addr.get(k.checked_sub(1)?)?;
                (a < start + len).then_some(id)
            }
        }
    };
    let mut out = Vec::new();
    pending.retain_mut(|p| {
        // Not seeing it proves it gone only for an older annotation and a complete scan.
        let gone_if_unseen = p.made < scan_seq && complete;
        let Some(container) = find(p.container) else {
            return !gone_if_unseen;
        };
        p.container = Target::Id(container);
        let mut members = Vec::with_capacity(p.members.len());
        p.members.retain_mut(|m| match find(*m) {
            Some(id) => {
                *m = Target::Id(id);
                members.push(id);
                true
            }
            None => !gone_if_unseen,
        });
        if p.explicit && members.is_empty() {
            // Its members are all gone (or not seen yet): no edges rather than inferred ones.
            return !gone_if_unseen || !p.members.is_empty();
        }
        out.push(Annotation { container, members });
        true
    });
    // Back, before those made meanwhile, within the cap.
    let mut a = ANNOTATIONS.lock().unwrap_or_else(|p| p.into_inner());
    let newer = std::mem::take(&mut *a);
    pending.extend(newer);
    pending.truncate(MAX_ANNOTATIONS);
    *a = pending;
    out
}

/// Scans the live index and builds its graph; `None` when the index is off.
pub(crate) fn capture(cfg: &CaptureConfig) -> Option<LiveGraph> {
    let began = Instant::now();
    let taken_at = SystemTime::now();
    let scan_seq = ANNOTATION_SEQ.load(Ordering::Acquire);
    let scanned = crate::alloc::scan::scan(crate::alloc::scan::Caps {
        max_nodes: cfg.graph.max_nodes,
        max_bytes_per_node: cfg.graph.max_scan_bytes_per_node,
        max_bytes: cfg.max_scan_bytes,
    })?;
    let annotations = resolve_annotations(&scanned.nodes, scan_seq, scanned.over_budget_nodes == 0);
    let scan = ScanStats {
        indexed: scanned.indexed,
        scanned_nodes: scanned.nodes.len() as u64,
        scanned_bytes: scanned.scanned_bytes,
        over_budget_nodes: scanned.over_budget_nodes,
        deferred_frees: scanned.deferred_frees,
        unindexed: scanned.unindexed,
        pause: scanned.pause,
        duration: Duration::ZERO,
    };
    let mut task_names = scanned.task_names;
    let mut graph = super::build_owned(scanned.nodes, &scanned.heap, &annotations, &cfg.graph);
    task_names.truncate(graph.nodes.len());
    // Nodes the scan's budget left out are skipped nodes like those past the node cap.
    graph.skipped.nodes += scanned.over_budget_nodes;
    graph.skipped.bytes += scanned.over_budget_bytes;
    prove_refcount_kinds(&mut graph);
    // The scan copied big nodes only up to the per-node cap (the build never saw the rest).
    graph.skipped.truncated_nodes += scanned.truncated_nodes;
    graph.skipped.truncated_bytes += scanned.truncated_bytes;
    Some(LiveGraph {
        graph,
        taken_at: Some(taken_at),
        scan: ScanStats {
            duration: began.elapsed(),
            ..scan
        },
        task_names,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_graph_reads_span_words_as_the_allocator_writes_them() {
        assert_eq!(
            super::super::SPAN_GROUP_SHIFT,
            crate::alloc::header::SPAN_BITS
        );
    }
}
