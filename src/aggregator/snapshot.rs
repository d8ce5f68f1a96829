//! What [`Guard::snapshot`](crate::Guard::snapshot) returns: the task and span tables at one
//! moment, with sorted views.

use std::sync::Arc;
use std::time::SystemTime;

/// A tokio task as heapspan keys it: tokio's task id (current tokio draws ids from a 64-bit
/// counter and never hands one out twice in a process; see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey {
    /// tokio's task id (`tokio::task::Id` as a number).
    pub id: u64,
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// Memory figures of one task, span, name or bucket.
///
/// Bytes are the sizes callers asked for (`Layout::size()`), without heapspan's header or the
/// inner allocator's rounding. A realloc counts its growth as allocated bytes and its shrinkage
/// as freed bytes, but no allocation or free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Bytes allocated.
    pub allocated_bytes: u64,
    /// Number of allocations.
    pub allocations: u64,
    /// Bytes of this owner's allocations freed, by whichever task or thread freed them.
    pub freed_bytes: u64,
    /// Number of frees.
    pub frees: u64,
    /// Highest live value seen at a fold (every fold interval and at every snapshot): a lower
    /// bound of the true instantaneous peak.
    pub peak_bytes: u64,
}

impl MemStats {
    /// Allocated minus freed bytes, as read: the signed net of the two counts. It is not
    /// always memory, and can be negative in two cases:
    ///
    /// - the [`Buckets::untracked`] bucket: frees (and resizes) of blocks allocated before
    ///   heapspan started, whose allocations were never counted. Its live bytes are unknown;
    ///   the report shows them as `—`.
    /// - for a moment, any owner: a block allocated on one thread and freed on another right
    ///   away can have its free read before its allocation (the aggregator reads one
    ///   thread's counters after the other's; the allocation is read at the next fold, within
    ///   [`Builder::fold_interval`](crate::Builder::fold_interval)). The owner's net is then
    ///   below its true live bytes by the blocks in flight, at most the bytes such frees
    ///   release in one fold.
    ///
    /// Use [`MemStats::live_bytes_clamped`] to show memory; this signed net is what adds up
    /// (deltas, sums over owners) and what exact tests compare.
    pub fn live_bytes(&self) -> i64 {
        self.allocated_bytes as i64 - self.freed_bytes as i64
    }

    /// [`MemStats::live_bytes`] as memory: never below zero. A negative net (see there: frees
    /// read before the allocations they free, or the untracked bucket) is shown as 0 bytes,
    /// which is what the report prints (marking the row and giving the net beside it).
    pub fn live_bytes_clamped(&self) -> u64 {
        self.live_bytes().max(0) as u64
    }

    /// Allocations minus frees.
    pub fn live_allocations(&self) -> i64 {
        self.allocations as i64 - self.frees as i64
    }

    pub(crate) fn add(&mut self, o: &MemStats) {
        self.allocated_bytes = self.allocated_bytes.saturating_add(o.allocated_bytes);
        self.allocations = self.allocations.saturating_add(o.allocations);
        self.freed_bytes = self.freed_bytes.saturating_add(o.freed_bytes);
        self.frees = self.frees.saturating_add(o.frees);
    }

    pub(crate) fn note_peak(&mut self) {
        let live = self.live_bytes();
        if live > 0 && live as u64 > self.peak_bytes {
            self.peak_bytes = live as u64;
        }
    }
}

/// How heapspan learned a task's name, location, start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskSource {
    /// Only allocations were seen (`tokio::task::try_id()`): no name, start or end.
    Observed,
    /// heapspan's wrapper future ([`crate::spawn`], [`crate::instrument`]).
    Wrapper,
    /// tokio's `runtime.spawn` tracing span (`--cfg tokio_unstable`).
    SpawnSpan,
}

/// Where a task was spawned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Source file.
    pub file: String,
    /// Line.
    pub line: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStats {
    /// Id and generation.
    pub key: TaskKey,
    /// The name given at spawn, if any.
    pub name: Option<String>,
    /// The spawn location, if known.
    pub location: Option<Location>,
    /// For a task with neither name nor location (one heapspan did not see spawned: a
    /// server's connection task, a `spawn_blocking` job, on stable tokio): the span its first
    /// allocation in a span was made in, as `target::name {group}`.
    pub first_span: Option<String>,
    /// How the name and lifecycle were learned.
    pub source: TaskSource,
    /// Memory figures.
    pub mem: MemStats,
    /// When the task started (first poll through the wrapper, spawn with tokio_unstable).
    pub started: Option<SystemTime>,
    /// When the task ended, if it did.
    pub ended: Option<SystemTime>,
    /// First fold that saw an allocation or free of this task.
    pub first_activity: Option<SystemTime>,
    /// Last fold that saw one.
    pub last_activity: Option<SystemTime>,
    /// The size of the task's future in bytes, when known: the wrapper's
    /// ([`crate::spawn`], [`crate::instrument`]) or tokio's spawn span's `size.bytes`
    /// (`tokio_unstable`).
    pub future_size: Option<u64>,
    /// When it was last polled (to the fold interval), for tasks of the wrapper that are still
    /// running; `None` when unknown (see `task.stalled`).
    pub last_poll: Option<SystemTime>,
}

impl TaskStats {
    /// The task's display name: its name, else its spawn location, else the span it first
    /// allocated in (`unnamed (in app::request {http.route=/leak})`), else `unnamed`. The
    /// task-name metrics count every task with no name under `unnamed`.
    pub fn display_name(&self) -> String {
        match (&self.first_span, self.name.as_deref(), &self.location) {
            (Some(span), None, None) => format!("unnamed (in {span})"),
            _ => display_name(self.name.as_deref(), self.location.as_ref()),
        }
    }
}

pub(crate) fn display_name(name: Option<&str>, location: Option<&Location>) -> String {
    match (name, location) {
        (Some(n), _) if !n.is_empty() => n.to_owned(),
        (_, Some(l)) => l.to_string(),
        _ => "unnamed".to_owned(),
    }
}

/// The group of a span within its name: the values of the group fields
/// ([`Builder::span_group_fields`](crate::Builder::span_group_fields)) it had, or `other` for
/// values beyond [`Builder::max_span_groups_per_name`](crate::Builder::max_span_groups_per_name).
///
/// Shown as `http.route=/leak, otel.name=GET /leak` (fields in the configured order; empty for
/// a span with none of them, `other` beyond the bound): the value of the
/// [`heapspan.span.group`](crate::export::names::SPAN_GROUP) metric attribute, and in the
/// report as `request {http.route=/leak}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpanGroup {
    fields: Arc<[(&'static str, Box<str>)]>,
    other: bool,
}

impl SpanGroup {
    pub(crate) fn with_fields(fields: Vec<(&'static str, Box<str>)>) -> Self {
        SpanGroup {
            fields: fields.into(),
            other: false,
        }
    }

    pub(crate) fn other() -> Self {
        SpanGroup {
            fields: Arc::from(Vec::new()),
            other: true,
        }
    }

    /// The group fields the spans had, with their values, in the configured order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.fields.iter().map(|(k, v)| (*k, &**v))
    }

    /// The value of group field `name`, if the group has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// True for the group of a name's spans beyond the bound: their values are not kept.
    pub fn is_other(&self) -> bool {
        self.other
    }

    /// True for the spans with none of the group fields (the name alone).
    pub fn is_empty(&self) -> bool {
        !self.other && self.fields.is_empty()
    }
}

/// Two lists of `(field, value)` are the same, in the same order.
pub(crate) fn same_fields<'a, 'b, 'c, 'd>(
    a: impl Iterator<Item = (&'a str, &'b str)>,
    mut b: impl Iterator<Item = (&'c str, &'d str)>,
) -> bool {
    for x in a {
        match b.next() {
            Some(y) if x.0 == y.0 && x.1 == y.1 => {}
            _ => return false,
        }
    }
    b.next().is_none()
}

impl std::fmt::Display for SpanGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.other {
            return f.write_str(crate::export::names::OTHER);
        }
        for (i, (k, v)) in self.fields().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// One span instance.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanStats {
    /// heapspan's id of the span (unique for the process; not tracing's reusable id).
    pub id: u64,
    /// The span's name (`None` if the allocation was seen before the span's creation event).
    pub name: Option<&'static str>,
    /// The span's target.
    pub target: Option<&'static str>,
    /// Its group: the values of the group fields it had (as of its last recorded one).
    pub group: SpanGroup,
    /// heapspan id of the parent span (0 for a root).
    pub parent: u64,
    /// Memory figures.
    pub mem: MemStats,
    /// When it was created.
    pub opened: Option<SystemTime>,
    /// When it closed, if it did.
    pub closed: Option<SystemTime>,
}

/// All tasks of one name (those held individually and those already forgotten), added up.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskNameStats {
    /// The name (see [`TaskStats::display_name`]).
    pub name: String,
    /// Tasks seen with this name.
    pub tasks: u64,
    /// Of those, how many ended.
    pub ended: u64,
    /// Sums of the tasks' figures; `peak_bytes` is the peak of the name's total live bytes (all
    /// its tasks together), observed at folds.
    pub mem: MemStats,
    /// The largest peak of a single task of this name (observed at folds): what
    /// `heapspan.task.memory.peak` exports.
    pub task_peak_bytes: u64,
}

/// All spans of one name and target, added up.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanNameStats {
    /// Span name.
    pub name: &'static str,
    /// Span target.
    pub target: &'static str,
    /// Instances seen.
    pub instances: u64,
    /// Of those, how many closed.
    pub closed: u64,
    /// Sums of the instances' figures; `peak_bytes` is the peak of the name's total live bytes
    /// (all its instances together), observed at folds.
    pub mem: MemStats,
}

/// All spans of one name, target and [`SpanGroup`], added up: the span-name figures split by
/// the group fields (the groups of a name add up to its [`SpanNameStats`], peaks excepted).
#[derive(Clone, Debug, PartialEq)]
pub struct SpanGroupStats {
    /// Span name.
    pub name: &'static str,
    /// Span target.
    pub target: &'static str,
    /// The group within the name.
    pub group: SpanGroup,
    /// Instances that were in this group when they were created or moved to it (a group field
    /// recorded later moves an instance from its name's plain group to the group of its
    /// values).
    pub instances: u64,
    /// Of those, how many closed.
    pub closed: u64,
    /// Sums of the figures of the allocations made while instances were in this group;
    /// `peak_bytes` is the peak of the group's total live bytes, observed at folds.
    pub mem: MemStats,
}

impl SpanGroupStats {
    /// `target::name {group}` (just `target::name` for spans with none of the group fields),
    /// as the report shows it.
    pub fn label(&self) -> String {
        if self.group.is_empty() {
            format!("{}::{}", self.target, self.name)
        } else {
            format!("{}::{} {{{}}}", self.target, self.name, self.group)
        }
    }
}

/// Memory that belongs to no task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Outside any tokio task: `main`, plain `std::thread`s, code before the runtime starts.
    pub unattributed: MemStats,
    /// heapspan's own heap blocks: what its threads, its layer and its snapshots allocate
    /// through the global allocator. Part of heapspan's own memory, not all of it: the one
    /// figure for that is [`Snapshot::tracker_bytes`], which adds the thread tables, queue
    /// chunks and live index heapspan maps outside the heap. Kept as a bucket so that the
    /// buckets and the owners add up to [`Snapshot::total`].
    pub heapspan: MemStats,
    /// Blocks allocated while heapspan was not running (before start): only their frees and
    /// resizes after start are counted, so this bucket's [`MemStats::live_bytes`] is not memory
    /// (negative when such blocks are freed) and its live bytes are unknown; `freed_bytes`
    /// and `frees` say how much of the memory allocated before start went away since.
    pub untracked: MemStats,
    /// Allocations heapspan could not attribute because a hard bound was reached (its queues
    /// reached [`Builder::max_queue_bytes`](crate::Builder::max_queue_bytes), or the system
    /// allocator refused heapspan memory). Exact in itself: these blocks' frees are counted
    /// here too, so no owner's figures drift; but every owner's figures are then lower bounds
    /// ([`Snapshot::is_exact`]).
    pub overflow: MemStats,
}

/// What heapspan could not attribute exactly; each is counted, never waited for. With the first
/// two at zero every figure of the snapshot is exact ([`Snapshot::is_exact`]); the third only
/// says that some spans nested too deep went to their deepest tracked ancestor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Allocations that went to [`Buckets::overflow`] instead of their task and span, because
    /// heapspan's queues had reached [`Builder::max_queue_bytes`](crate::Builder::max_queue_bytes)
    /// (or the system allocator refused heapspan memory). Their frees follow them there.
    pub overflow_allocations: u64,
    /// Frees or reallocs that could not be recorded at all: only when the system allocator
    /// refused heapspan a 16 KiB queue chunk or a 40-byte fallback node (the process is out
    /// of memory). Owners' live figures are then upper bounds.
    pub lost_operations: u64,
    /// Span enters nested deeper than heapspan tracks (their allocations go to the deepest
    /// tracked span).
    pub span_stack_overflow: u64,
}

impl Dropped {
    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.overflow_allocations + self.lost_operations + self.span_stack_overflow
    }
}

/// One cell of the hand-off matrix: frees of blocks that tasks of one name allocated, made
/// while another task (of the other name, or of the same one), or none, was current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOff {
    /// The allocating side: a task name as [`TaskNameStats::name`] has it, or
    /// [`HandOffs::NO_TASK`] for blocks allocated outside any task; `other` for the overflow
    /// cell.
    pub allocated_by: String,
    /// The freeing side: a task name, [`HandOffs::NO_TASK`] for frees outside any task (a
    /// plain thread, `main`, `spawn_blocking` outside a task), `other` for the overflow cell.
    pub freed_by: String,
    /// Bytes freed.
    pub bytes: u64,
    /// Number of frees.
    pub frees: u64,
}

/// The hand-off matrix since start (`alloc.cross_task_free`): per pair of allocating and
/// freeing task names, the blocks freed while a task other than the one that allocated them
/// (or no task) was current.
///
/// Tasks are compared by id, names only label the cells: two tasks of one name handing off
/// count in that name's diagonal cell, a task freeing its own blocks in none. Blocks heapspan
/// allocated for itself, those allocated before start and those of the overflow bucket have
/// no allocating task and are left out, and so are frees made by heapspan's own code; a
/// realloc is no free (the block keeps its allocating task). The figures are exact: a pair
/// that finds no cell left in its thread's bounded table (64 pairs per thread, 4096 in all)
/// is counted in the `other → other` cell, with [`HandOffs::overflow_frees`] saying how many
/// were. The matrix of one window is [`HandOffs::since`] the previous snapshot's.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), heapspan::Error> {
/// let guard = heapspan::builder().start()?;
/// let block = heapspan::spawn("producer", async { vec![0u8; 1000] }).await.unwrap();
/// drop(block); // freed outside any task: `main` under `block_on`
/// let m = guard.snapshot().handoffs;
/// let cell = m.cell("producer", heapspan::HandOffs::NO_TASK).unwrap();
/// assert_eq!((cell.bytes, cell.frees), (1000, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandOffs {
    /// The cells, most bytes first.
    pub cells: Vec<HandOff>,
    /// Frees counted in the `other → other` cell because their pair found no cell (their
    /// thread's table of cells was full, or the process-wide bound was reached).
    pub overflow_frees: u64,
}

impl HandOffs {
    /// The side of code outside any tokio task, on both axes.
    pub const NO_TASK: &'static str = "no task";

    /// The cell of blocks allocated by `allocated_by` and freed by `freed_by`.
    pub fn cell(&self, allocated_by: &str, freed_by: &str) -> Option<&HandOff> {
        self.cells
            .iter()
            .find(|c| c.allocated_by == allocated_by && c.freed_by == freed_by)
    }

    /// Bytes of every cell.
    pub fn bytes(&self) -> u64 {
        self.cells.iter().map(|c| c.bytes).sum()
    }

    /// Frees of every cell.
    pub fn frees(&self) -> u64 {
        self.cells.iter().map(|c| c.frees).sum()
    }

    /// What was added since `earlier` (a snapshot's matrix taken before this one): the
    /// matrix of the time between them, cells that did not grow left out, most bytes first.
    pub fn since(&self, earlier: &HandOffs) -> HandOffs {
        let mut cells: Vec<HandOff> = self
            .cells
            .iter()
            .filter_map(|c| {
                let (b, f) = earlier
                    .cell(&c.allocated_by, &c.freed_by)
                    .map_or((0, 0), |e| (e.bytes, e.frees));
                let d = HandOff {
                    bytes: c.bytes.saturating_sub(b),
                    frees: c.frees.saturating_sub(f),
                    ..c.clone()
                };
                (d.bytes != 0 || d.frees != 0).then_some(d)
            })
            .collect();
        sort_cells(&mut cells);
        HandOffs {
            cells,
            overflow_frees: self.overflow_frees.saturating_sub(earlier.overflow_frees),
        }
    }
}

/// Most bytes first, then by names (a stable order for equal cells).
pub(crate) fn sort_cells(cells: &mut [HandOff]) {
    cells.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.allocated_by.cmp(&b.allocated_by))
            .then_with(|| a.freed_by.cmp(&b.freed_by))
    });
}

/// Sizes of single allocations since start: explicit buckets with upper bounds
/// [`SizeHistogram::BOUNDS`] (16 B to 16 MiB, powers of 4) and one bucket above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeHistogram {
    /// Allocations per bucket: `counts[i]` counts sizes in `(BOUNDS[i-1], BOUNDS[i]]`; the last
    /// one sizes above 16 MiB.
    pub counts: [u64; 12],
    /// Sum of the sizes, bytes.
    pub sum: u64,
}

impl SizeHistogram {
    /// Upper bounds of the buckets, bytes.
    pub const BOUNDS: [u64; 11] = [
        16,
        64,
        256,
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
        16 << 20,
    ];

    /// Number of allocations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The tables at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was taken.
    pub taken_at: SystemTime,
    /// Tasks held individually (running ones, and recently ended ones).
    pub tasks: Vec<TaskStats>,
    /// Per task name, including tasks no longer held individually.
    pub task_names: Vec<TaskNameStats>,
    /// Span instances held individually (open ones, and recently closed ones).
    pub spans: Vec<SpanStats>,
    /// Per span name, including instances no longer held individually.
    pub span_names: Vec<SpanNameStats>,
    /// Per span name and [`SpanGroup`] (the span names split by the group fields), including
    /// instances no longer held individually.
    pub span_groups: Vec<SpanGroupStats>,
    /// Allocations made outside any span, in a task or not (a cut across tasks and the
    /// `unattributed` bucket: the span names and this add up to the task names and that
    /// bucket).
    pub no_span: MemStats,
    /// Memory outside tasks.
    pub buckets: Buckets,
    /// Sum over every task (held or forgotten) and every bucket: the process total since
    /// start. Its `peak_bytes` is the peak of the memory allocated since start (the
    /// [`Buckets::untracked`] bucket left out: it has no live figure); the report's TOTAL row
    /// leaves that bucket out of every column.
    pub total: MemStats,
    /// Sizes of single allocations (every allocation counted in [`Snapshot::total`], reallocs
    /// excepted).
    pub allocation_sizes: SizeHistogram,
    /// What could not be recorded.
    pub dropped: Dropped,
    /// The hand-off matrix since start: frees by another task than the allocating one.
    pub handoffs: HandOffs,
    /// heapspan's own memory right now, resident, bytes: the one figure for what heapspan
    /// costs. It is its heap blocks (the [`Buckets::heapspan`] bucket's live bytes) plus what
    /// it maps outside the heap: the thread tables' resident pages, the queue chunks and
    /// fallback nodes, and the live index's entries. Exported as
    /// [`heapspan.tracker.memory`](crate::export::names::TRACKER_MEMORY); the report prints
    /// it with that split.
    pub tracker_bytes: u64,
}

/// What to sort by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SortBy {
    /// Live bytes.
    Live,
    /// Peak bytes.
    Peak,
    /// Allocated bytes.
    Allocated,
}

fn metric(m: &MemStats, by: SortBy) -> i64 {
    match by {
        SortBy::Live => m.live_bytes(),
        SortBy::Peak => m.peak_bytes as i64,
        SortBy::Allocated => m.allocated_bytes as i64,
    }
}

impl Snapshot {
    /// The `n` tasks with the most of `by`, largest first.
    pub fn top_tasks(&self, by: SortBy, n: usize) -> Vec<&TaskStats> {
        top(&self.tasks, n, |t| metric(&t.mem, by))
    }

    /// The `n` span instances with the most of `by`, largest first.
    pub fn top_spans(&self, by: SortBy, n: usize) -> Vec<&SpanStats> {
        top(&self.spans, n, |s| metric(&s.mem, by))
    }

    /// The `n` task names with the most of `by`, largest first.
    pub fn top_task_names(&self, by: SortBy, n: usize) -> Vec<&TaskNameStats> {
        top(&self.task_names, n, |s| metric(&s.mem, by))
    }

    /// The `n` span names with the most of `by`, largest first.
    pub fn top_span_names(&self, by: SortBy, n: usize) -> Vec<&SpanNameStats> {
        top(&self.span_names, n, |s| metric(&s.mem, by))
    }

    /// The `n` span groups with the most of `by`, largest first.
    pub fn top_span_groups(&self, by: SortBy, n: usize) -> Vec<&SpanGroupStats> {
        top(&self.span_groups, n, |s| metric(&s.mem, by))
    }

    /// The groups of spans named `name` (any target).
    pub fn span_groups_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a SpanGroupStats> + 'a {
        self.span_groups.iter().filter(move |g| g.name == name)
    }

    /// The group of spans named `name` (any target) whose group fields are exactly `fields`
    /// (in the configured order; `&[]` for the spans with none of them), for example
    /// `snap.span_group("request", &[("http.route", "/leak")])`.
    pub fn span_group(&self, name: &str, fields: &[(&str, &str)]) -> Option<&SpanGroupStats> {
        self.span_groups
            .iter()
            .filter(|g| g.name == name)
            .find(|g| !g.group.is_other() && same_fields(g.group.fields(), fields.iter().copied()))
    }

    /// The task with this key, if held individually.
    pub fn task(&self, key: TaskKey) -> Option<&TaskStats> {
        self.tasks.iter().find(|t| t.key == key)
    }

    /// The task with this tokio id, if held individually.
    pub fn task_by_id(&self, id: tokio::task::Id) -> Option<&TaskStats> {
        let id = crate::alloc::key::task_id_u64(id);
        self.tasks.iter().find(|t| t.key.id == id)
    }

    /// True when every figure is exact: nothing went to the overflow bucket and no operation
    /// was lost. When false, task and span figures are bounds, and the report and the export
    /// say so: after an overflow they are lower bounds (some allocations are in the overflow
    /// bucket instead); after a lost free, live figures are upper bounds.
    pub fn is_exact(&self) -> bool {
        self.dropped.overflow_allocations == 0 && self.dropped.lost_operations == 0
    }

    /// The tasks with this display name.
    pub fn tasks_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TaskStats> + 'a {
        self.tasks.iter().filter(move |t| t.display_name() == name)
    }

    /// The per-name figures of tasks named `name`.
    pub fn task_name(&self, name: &str) -> Option<&TaskNameStats> {
        self.task_names.iter().find(|t| t.name == name)
    }

    /// The per-name figures of one span name: `query` is `target::name` as the report and
    /// the findings print it (`my_app::db::apply`), or a bare name (`apply`) that only one
    /// target uses.
    ///
    /// `None` when no span name matches, and when a bare name is used by several targets
    /// (`get::apply` and `set::apply`): the answer would depend on which was met first, so
    /// ask for `target::name`, [`Snapshot::span_name_in`], or look through
    /// [`Snapshot::span_names`] for every target of the name. A `target::name` match wins
    /// over a bare span name that happens to contain `::`.
    pub fn span_name(&self, query: &str) -> Option<&SpanNameStats> {
        let mut qualified = self
            .span_names
            .iter()
            .filter(|s| is_qualified(s.target, s.name, query));
        if let Some(first) = qualified.next() {
            return qualified.next().is_none().then_some(first);
        }
        let mut bare = self.span_names.iter().filter(|s| s.name == query);
        let first = bare.next()?;
        bare.next().is_none().then_some(first)
    }

    /// The per-name figures of the span name `name` of target `target`.
    pub fn span_name_in(&self, target: &str, name: &str) -> Option<&SpanNameStats> {
        self.span_names
            .iter()
            .find(|s| s.target == target && s.name == name)
    }

    /// The span instances held individually that are named `query`: `target::name`, or a bare
    /// name, which matches the instances of every target (tell them apart by
    /// [`SpanStats::target`]).
    pub fn spans_named<'a>(&'a self, query: &'a str) -> impl Iterator<Item = &'a SpanStats> + 'a {
        self.spans.iter().filter(move |s| match (s.target, s.name) {
            (Some(t), Some(n)) => n == query || is_qualified(t, n, query),
            (None, Some(n)) => n == query,
            _ => false,
        })
    }
}

/// `query` is `target::name`.
fn is_qualified(target: &str, name: &str, query: &str) -> bool {
    query.len() == target.len() + 2 + name.len()
        && query.starts_with(target)
        && query[target.len()..].starts_with("::")
        && query.ends_with(name)
}

fn top<T>(items: &[T], n: usize, key: impl Fn(&T) -> i64) -> Vec<&T> {
    let mut v: Vec<&T> = items.iter().collect();
    v.sort_by_key(|t| std::cmp::Reverse(key(t)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span_name(target: &'static str, name: &'static str, bytes: u64) -> SpanNameStats {
        SpanNameStats {
            name,
            target,
            instances: 1,
            closed: 0,
            mem: MemStats {
                allocated_bytes: bytes,
                allocations: 1,
                ..MemStats::default()
            },
        }
    }

    fn snapshot(span_names: Vec<SpanNameStats>) -> Snapshot {
        Snapshot {
            taken_at: SystemTime::UNIX_EPOCH,
            tasks: Vec::new(),
            task_names: Vec::new(),
            spans: Vec::new(),
            span_names,
            span_groups: Vec::new(),
            no_span: MemStats::default(),
            buckets: Buckets::default(),
            total: MemStats::default(),
            allocation_sizes: SizeHistogram::default(),
            dropped: Dropped::default(),
            handoffs: HandOffs::default(),
            tracker_bytes: 0,
        }
    }

    #[test]
    fn a_bare_span_name_shared_by_two_targets_is_ambiguous_whatever_the_order() {
        let (get, set) = (span_name("get", "apply", 1), span_name("set", "apply", 2));
        for names in [
            vec![get.clone(), set.clone()],
            vec![set.clone(), get.clone()],
        ] {
            let s = snapshot(names);
            assert_eq!(s.span_name("apply"), None, "two targets: no answer");
            assert_eq!(s.span_name("get::apply"), Some(&get));
            assert_eq!(s.span_name("set::apply"), Some(&set));
            assert_eq!(s.span_name_in("set", "apply"), Some(&set));
            assert_eq!(s.span_name("unknown::apply"), None);
            assert_eq!(s.span_name("get::"), None);
            assert_eq!(s.span_name("::apply"), None);
        }
    }

    #[test]
    fn a_bare_span_name_of_one_target_and_target_paths_with_colons() {
        let db = span_name("my_app::db", "query", 1);
        let s = snapshot(vec![db.clone(), span_name("my_app", "db", 2)]);
        assert_eq!(
            s.span_name("query"),
            Some(&db),
            "one target: the bare name is enough"
        );
        assert_eq!(s.span_name("my_app::db::query"), Some(&db));
        assert_eq!(s.span_name("my_app::db").map(|n| n.target), Some("my_app"));
        // A target::name match wins over a bare name that contains `::`.
        let odd = span_name("x", "my_app::db", 3);
        let s = snapshot(vec![odd.clone(), span_name("my_app", "db", 2)]);
        assert_eq!(s.span_name("my_app::db").map(|n| n.target), Some("my_app"));
        assert_eq!(s.span_name("x::my_app::db"), Some(&odd));
    }

    #[test]
    fn spans_named_matches_target_and_name_or_every_target_of_a_bare_name() {
        let meta_span = |id, target, name| SpanStats {
            id,
            name: Some(name),
            target: Some(target),
            parent: 0,
            mem: MemStats::default(),
            opened: None,
            closed: None,
            group: SpanGroup::default(),
        };
        let mut s = snapshot(Vec::new());
        s.spans = vec![
            meta_span(1, "get", "apply"),
            meta_span(2, "set", "apply"),
            meta_span(3, "set", "other"),
        ];
        let ids = |q: &str| s.spans_named(q).map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(ids("apply"), [1, 2]);
        assert_eq!(ids("set::apply"), [2]);
        assert_eq!(ids("get::other"), Vec::<u64>::new());
    }

    #[test]
    fn live_bytes_are_the_signed_net_and_clamped_as_memory() {
        let m = MemStats {
            allocated_bytes: 100,
            freed_bytes: 376,
            ..MemStats::default()
        };
        assert_eq!(m.live_bytes(), -276);
        assert_eq!(m.live_bytes_clamped(), 0);
        let m = MemStats {
            allocated_bytes: 400,
            freed_bytes: 100,
            ..MemStats::default()
        };
        assert_eq!(m.live_bytes_clamped(), 300);
    }
}
