#![doc = include_str!("../README.md")]
//!
//! # Safety and correctness
//!
//! ## The allocator
//!
//! - **Headers.** Every block handed out has a 16-byte header right below the returned
//!   pointer (for alignments above 16, the header sits in the last 16 bytes of an
//!   `align`-sized prefix): the task word (the task's name index and tokio id) and the span
//!   word (the span's group index, its name and group field values, and its instance). The inner allocator always sees
//!   `size + offset` with alignment `max(align, 8)`, derived the same way on `alloc`,
//!   `realloc` and `dealloc`, so it is always called with the layout it handed the block out
//!   with. The header is written from the very first allocation, also before start, so any
//!   pointer we are asked to free has one.
//! - **Invalid frees are recognised before anything is trusted.** Both header words carry a
//!   16-bit tag, a keyed hash of the rest of the words, the user pointer and the allocation's
//!   size (the key is the address of one of heapspan's statics, different in every process
//!   under ASLR). `dealloc` and `realloc` read the two words below the pointer, recompute the
//!   tag from them, the pointer and the size of the layout they were given, and use nothing
//!   of the header unless it matches; a free that does not match goes to a cold path that
//!   never forwards it to the inner allocator and records it in a fixed array (no allocation)
//!   for the `dealloc.invalid` finding ([`InvalidFreeAction`] chooses whether the process
//!   then goes on or aborts once the report is written). A valid free leaves a tombstone (the
//!   words with their tag bits inverted) in the block's first 16 bytes.
//!   - *Detected always* (every mode, also before start): a free or realloc of a pointer
//!     heapspan never handed out (C's `malloc`, a stack or static address), of a block
//!     already freed whose header the inner allocator has reused (glibc's tcache writes both
//!     words), and of a block with another size than it was allocated with: each is taken for
//!     valid with a probability of 2⁻¹⁶ at most (a random header, measured in
//!     `header::tests`). A second free is named as one (with who allocated the block) when
//!     its tombstone survived.
//!   - *Only with the live index*: the place of the first free of a double free (each thread
//!     table remembers its last 64 indexed frees; unknown when tables disagree on a reused
//!     address), a double free of an indexed block whose header survived (its
//!     index entry no longer names it), and a wrong layout told apart from a foreign pointer
//!     (a live indexed block's own size word).
//!   - *Cannot be detected*: a second free of a block that was handed out again in between
//!     (the header is the new owner's, valid: that free releases the new owner's block, as
//!     without heapspan), a free with another alignment of 16 or less and the same size (the
//!     inner layout is the same, so nothing goes wrong), and a pointer less than 16 bytes
//!     above the start of a mapping (reading its header would fault: heapspan reads 16 bytes
//!     below any pointer it is given, as glibc reads its own chunk header there).
//! - **FFI custody writes one header bit, only where it may.** [`custody::handover`] (an
//!   `unsafe fn`: the caller promises a live block of the global allocator of the size given)
//!   sets a block's custody flag only while heapspan runs (its start proved the allocator is
//!   the global one) and only when the block's header checks for that size; the flag is
//!   cleared only through the passport that set it, whose block cannot have been freed since
//!   (the free of a flagged block is never forwarded). The custody registry is a map behind one
//!   mutex taken by the custody calls and the window stage, never by the allocator, so no
//!   allocation ever waits for it; what it allocates is charged to the `heapspan` bucket.
//! - **No lock, no syscall, no allocation on the common path.** An operation updates a counter
//!   in a table owned by the current thread (a relaxed load and store of a cache line nobody
//!   else writes). The tables are one anonymous mapping made at start and never unmapped: a
//!   table is atomics only and all-zero when fresh, so a page becomes resident only when a
//!   thread that claimed its table writes to it. The uncommon paths take no lock of heapspan's
//!   and never wait for another thread's progress: they use atomic read-modify-writes, and
//!   take queue memory from the *system* allocator (never the global one, so they cannot
//!   recurse; glibc's malloc takes its arena lock there, as the inner allocator does anyway).
//! - **The hand-off matrix costs a free one comparison.** Every counted free compares the id
//!   bits of the block's task word with the current tokio task's id (`tokio::task::try_id()`,
//!   one call into tokio, as an allocation makes); only when they differ does it take the
//!   cold path, which looks up the freeing task's name and adds the free to a cell of the
//!   *freeing thread's own table* (64 cells claimed once each, written with plain stores, no
//!   lock, no allocation; a pair with no cell left goes to the table's `other → other` cell,
//!   counted, so the totals stay exact). A thread without a table borrows one for the call, as
//!   for any operation; with none to borrow, the free is added to shared overflow counters
//!   (atomic adds). Nothing of it runs in pass-through mode.
//! - **Re-entrancy.** Besides `tokio::task::try_id()` (which allocation and free skip while
//!   heapspan's own code runs on the thread), the one step that calls out is a thread's claim
//!   of its table (registering the thread-exit hook). The table is set before that call, so an allocation
//!   made inside it is recorded in it (no table operation is in progress then) and charged to
//!   the `heapspan` bucket; it can never recurse. Code of heapspan that may allocate (the
//!   layer, the aggregator, snapshots, export, event sends) runs in an `InternalScope`: its
//!   allocations are charged to the `heapspan` bucket.
//! - **Thread exit.** The thread-local that holds a thread's state has no destructor, so it
//!   stays readable while the thread exits. A second thread-local's destructor gives the table
//!   back to the pool; frees that run in later destructors *borrow* a free table for the one
//!   operation (claimed with a compare-and-swap, given back with a release store), so they are
//!   still recorded.
//! - **Exactness, with no operation dropped.** Counters in thread tables are cumulative; the
//!   aggregator remembers, per slot tenancy (a seqlock sequence number), what it applied, and
//!   applies only the difference. A tenancy that is evicted (the thread met more task × span
//!   keys than its probe window holds) hands its final counters to the aggregator through the
//!   thread's queue before the slot is reused. The queue is single-producer, single-consumer
//!   and unbounded: when the aggregator falls behind, the producer links a new 16 KiB chunk
//!   taken from the system allocator, and the consumer hands chunks it has read back (one kept
//!   for reuse, the others freed). A thread for which no table is free at all (more live
//!   threads than [`Builder::max_threads`]) pushes each operation as a node onto a lock-free
//!   stack that the aggregator takes whole. Lifecycle events (task starts and ends, span
//!   creations and closes) go into the sending thread's queue too, behind its operations, or,
//!   for tokio's spawn spans and threads without a table, through std's unbounded channel; the
//!   aggregator tolerates an end read before its start and an allocation read before its
//!   owner's start. So nothing is lost to a slow or
//!   stalled aggregator, a churn of tasks and spans, frees on other threads, or task
//!   migration. These protocols are model-checked with loom on the real code (the tables'
//!   record/evict/read, the queue across chunk boundaries, the fallback stack, the scan
//!   handshake: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`).
//! - **Bounded, and conservative at the bound.** Queue memory (chunks and nodes) counts
//!   against [`Builder::max_queue_bytes`] (256 MiB by default). At the bound a *new
//!   allocation* that would need queue memory is not attributed: its header gets the overflow
//!   key, it is counted in [`Buckets::overflow`] (shared counters), and its later free, under
//!   that key, is counted there too, so no owner's live bytes drift and the buckets still add
//!   up to [`Snapshot::total`]. Frees and reallocs of blocks already attributed are still
//!   recorded, beyond the bound (a 64-byte entry per free or realloc that evicts a slot, or a
//!   40-byte node per operation of a thread without a table). From the first
//!   overflow on, [`Snapshot::is_exact`] is false, the report marks owners' figures as lower
//!   bounds, and the export counts `heapspan.tracker.dropped{heapspan.drop.reason="overflow_allocation"}`.
//!   Only if the system allocator refuses heapspan a chunk or a node for a free or a realloc
//!   (the process is out of memory) is that operation lost, and counted
//!   ([`Dropped::lost_operations`]).
//! - **Memory bounded by what is live, not by history.** The names of a block's task and span
//!   travel in its header, so a free is charged to the right names even when heapspan has
//!   long forgotten the task or span instance itself: per-name figures are exact with no
//!   record per ended owner. Records of single tasks and span instances are kept for a bounded
//!   set (running tasks and open spans, the most recent ended ones, tasks with no visible end
//!   until they have been idle for [`Builder::idle_task_eviction`]); see [`aggregator`].
//!   [`Snapshot::tracker_bytes`] is what heapspan holds, resident: the tables' resident pages
//!   (`mincore`), queue memory, the live index's entries, and heapspan's own live heap blocks.
//! - **Task identity.** Tasks are keyed by tokio's task id, which current tokio draws from a
//!   64-bit counter and never reuses within a process. A task's name is put in its
//!   allocations' headers while heapspan's wrapper polls it (or tokio's `runtime.spawn` span is
//!   entered around its poll), and only for the task it belongs to: a task polled inside
//!   another's poll gets no name from it.
//! - **Never hurting the host.** No path panics on a full queue, a poisoned lock (recovered), or
//!   a missing table; counting is skipped entirely until heapspan is started.
//!
//! ## The live index and the heap scan
//!
//! With [`Builder::live_index`] on, indexed blocks carry a 32-byte header (flagged in the span
//! word, so a free knows which layout it has) and a 16-byte entry in their thread's index:
//! 48 bytes per live indexed allocation. A thread takes entries from its own free list, then
//! from a stack of entries other threads freed (pushed with a CAS, taken whole with a swap:
//! no ABA), then from a bump pointer. Besides the owner, only the thread that frees or
//! reallocates a block writes its entry.
//!
//! [`Guard::graph`] reads the contents of indexed blocks *in this process*. The argument that
//! it never reads memory that went back to the allocator:
//!
//! 1. A free of an indexed block raises its thread's `in_free` flag, then reads the `scanning`
//!    flag; it clears the block's entry, lowers `in_free` (release), and only then frees the
//!    block, or, if it saw a scan, *defers* it on a lock-free stack. A realloc hides the
//!    entry the same way before the inner realloc may free the old block (or, during a scan,
//!    copies and defers the old block).
//! 2. The scanner raises `scanning`, then waits until every `in_free` flag is down (acquire),
//!    including those of tables claimed up to its barrier (it reads the table count after it).
//!    Between the two sides' store and load there is a full barrier: `fence(SeqCst)` on both,
//!    or, where Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` is available, a
//!    compiler fence on the free side and the membarrier on the scanner's (the asymmetric
//!    fence of liburcu and folly). So a free either sees the scan and defers, or finished
//!    (entry cleared) before the scanner looks at entries.
//! 3. The scanner then reads only blocks named by live entries. None of them can be released
//!    until it lowers `scanning`; frees meanwhile are deferred and released after the scan
//!    (by the scanner, through the allocator that deferred them: the `#[global_allocator]`
//!    static, which lives for the whole process).
//! 4. A deferred block keeps its size word, with a `DEFERRED` bit set (then a release fence)
//!    before its other header words are reused for the stack link; the scanner re-reads the
//!    size word after an acquire fence and drops a block it finds changed, so its bounds never
//!    come from a reused word.
//! 5. Contents are read as aligned, pointer-sized words while the application may write them:
//!    a value is *evidence* (it may be stale, torn across words, or an integer that looks like
//!    an address), never dereferenced, and every edge carries a confidence. On x86-64 and
//!    AArch64 each word is one load in inline assembly, whose result is a fixed integer even
//!    where the block holds bytes never written (padding, spare capacity: reading those as an
//!    integer from Rust is undefined); elsewhere a volatile load. This is the same argument
//!    conservative garbage collectors make; strictly, Rust's memory model calls a racing
//!    non-atomic access undefined, and heapspan relies on what the hardware does for aligned
//!    word loads, like every in-process heap scanner.
//!
//! If the kernel refuses a membarrier after registering for it, scans are disabled for good
//! (a free in flight may have had only a compiler fence). A panic inside a scan still ends it.
//! The handshake is model-checked with loom (a missing fence fails the model); the scan runs
//! under concurrent frees, reallocs and cross-task frees in `tests/graph_scan_stress.rs`, and
//! the graph code (no `unsafe`), the allocator's tables, and the allocator itself as a test
//! program's global allocator run under Miri (`integration-tests/miri.sh`; the latter under
//! Tree Borrows, since Stacked Borrows rejects every allocator that hands out part of its
//! block, rust-lang/miri#2104). Frees are never blocked: a scan only defers
//! them, for its copy phase ([`graph::live::ScanStats::pause`]). Blocks deferred by a free
//! that was still in flight when the guard dropped are not released (a bounded leak at
//! shutdown). After `fork`, a child must not take graphs (a parent's scan may have been
//! interrupted mid-handshake).
//!
//! # Feature flags and cfgs
//!
//! - `http` (default): OTLP over HTTP/protobuf to a plain `http://` endpoint, with heapspan's
//!   own blocking client on its export thread. Without any transport, heapspan still writes
//!   OTLP JSON lines to a file and records into providers the application passes in (see
//!   [`export`]).
//! - `grpc`: OTLP over gRPC (tonic), on a current-thread runtime owned by the export thread.
//! - `tracing-opentelemetry`: the application's own spans get `heapspan.memory.*` and
//!   `heapspan.allocations` attributes when they close.
//! - `tokio-metrics`: tokio runtime metrics (`tokio.*`) beside heapspan's.
//! - `--cfg tokio_unstable`: heapspan turns on tokio's `tracing` feature and names every task
//!   from tokio's `runtime.spawn` span (name, spawn location, start and end), with no change to
//!   user code.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rustdoc::broken_intra_doc_links)]

pub mod aggregator;
pub mod alloc;
mod builder;
pub mod custody;
pub mod env;
mod error;
pub mod export;
pub mod findings;
pub mod graph;
mod handle;
pub mod layer;
mod sync;
mod thread;
mod windows;

pub use aggregator::snapshot::{
    Buckets, Dropped, HandOff, HandOffs, Location, MemStats, SizeHistogram, Snapshot, SortBy,
    SpanGroup, SpanGroupStats, SpanNameStats, SpanStats, TaskKey, TaskNameStats, TaskSource,
    TaskStats,
};
pub use alloc::Allocator;
pub use builder::{
    AggregatorHold, Builder, Guard, InvalidFreeAction, DEFAULT_CLOSED_SPAN_RETENTION,
    DEFAULT_ENDED_TASK_RETENTION, DEFAULT_FOLD_INTERVAL, DEFAULT_IDLE_TASK_EVICTION,
    DEFAULT_INDEX_CAPACITY, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_THREADS,
    DEFAULT_SAMPLE_MEAN_BYTES,
};
pub use error::{Error, Result};
pub use graph::live::{CaptureConfig, IndexMode, LiveGraph};
pub use handle::Handle;
pub use layer::groups::{
    DEFAULT_MAX_SPAN_GROUPS_PER_NAME, DEFAULT_SPAN_GROUP_FIELDS, MAX_SPAN_GROUPS_PER_NAME,
    MAX_SPAN_GROUP_FIELDS, MAX_SPAN_GROUP_VALUE_BYTES,
};
pub use layer::task::{instrument, spawn, Instrumented, TaskName};
pub use layer::MemoryLayer;

/// The builder: the `DEFAULT_*` values, overridden by the `HEAPSPAN_*` and `OTEL_*`
/// environment (the table of [`env`](mod@env)), overridden by what you set on it. The environment is
/// read by [`Builder::start`], where a malformed variable is an [`Error::InvalidConfig`] that
/// names it ([`Builder::from_env`] checks it at once).
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
/// // HEAPSPAN_LIVE_INDEX=full in the environment turns the live index on...
/// # std::env::set_var(heapspan::env::HEAPSPAN_LIVE_INDEX, "full");
/// let guard = heapspan::builder().start()?;
/// assert!(guard.graph().is_some());
/// // ...unless the code says otherwise: `builder().live_index(IndexMode::Off)` wins.
/// # Ok::<(), heapspan::Error>(())
/// ```
pub fn builder() -> Builder {
    Builder::default()
}

/// The tracing layer that attributes allocations to spans. Add it to your subscriber, then
/// start heapspan with [`builder()`].
///
/// heapspan says so on stderr, once, when the two do not meet: when this layer has seen
/// spans for 10 s and heapspan was never started (or was stopped: its [`Guard`] was dropped),
/// and when heapspan runs while the application's subscriber lacks this layer (checked at
/// [`Builder::start`], [`Guard::snapshot`], [`Guard::cut_window`] and when the guard is
/// dropped).
pub fn layer() -> MemoryLayer {
    MemoryLayer::new()
}

/// The one-line setup: starts heapspan with settings from the environment ([`env`](mod@env)) and
/// installs a global subscriber made of a registry and heapspan's layer.
///
/// When a global subscriber is already set, `init()` fails with
/// [`Error::SubscriberAlreadySet`] *before starting anything*: add [`layer()`] to your
/// subscriber and call `heapspan::builder().start()` instead (heapspan runs once per process,
/// and that start is still available). A malformed variable fails it too, with nothing
/// installed.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
/// use tracing_subscriber::layer::SubscriberExt;
///
/// // The application already has a subscriber...
/// tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
/// // ...so `init()` cannot install its own: it says so and starts nothing,
/// let err = heapspan::init().unwrap_err();
/// assert!(matches!(err, heapspan::Error::SubscriberAlreadySet));
/// // and the start it advises works.
/// let guard = heapspan::builder().start()?;
/// # drop(guard);
/// # Ok::<(), heapspan::Error>(())
/// ```
pub fn init() -> Result<Guard> {
    use tracing_subscriber::layer::SubscriberExt;
    let builder = Builder::from_env()?;
    // The subscriber first: with another global one already set, nothing is started and the
    // advice of `SubscriberAlreadySet` (`builder().start()`) can be followed.
    let subscriber = tracing_subscriber::registry().with(layer());
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::SubscriberAlreadySet)?;
    builder.start()
}
