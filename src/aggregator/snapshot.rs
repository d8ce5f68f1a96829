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
    /// Allocated minus freed bytes. Negative only for the `untracked` bucket (memory allocated
    /// before heapspan started and freed after).
    pub fn live_bytes(&self) -> i64 {
        self.allocated_bytes as i64 - self.freed_bytes as i64
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
    /// The task's metric dimension: its name, else its spawn location, else `unnamed`.
    pub fn display_name(&self) -> String {
        display_name(self.name.as_deref(), self.location.as_ref())
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
    /// heapspan's own threads and bookkeeping.
    pub heapspan: MemStats,
    /// Allocated while heapspan was not running (only frees after start are counted).
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
    /// Allocations inside a task but outside any span.
    pub no_span: MemStats,
    /// Memory outside tasks.
    pub buckets: Buckets,
    /// Sum over every task (held or forgotten) and every bucket: the process total since
    /// start.
    pub total: MemStats,
    /// Sizes of single allocations (every allocation counted in [`Snapshot::total`], reallocs
    /// excepted).
    pub allocation_sizes: SizeHistogram,
    /// What could not be recorded.
    pub dropped: Dropped,
    /// heapspan's own bookkeeping memory right now (tables, queues, per-thread state), bytes.
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

    /// The per-name figures of spans named `name` (any target).
    pub fn span_name(&self, name: &str) -> Option<&SpanNameStats> {
        self.span_names.iter().find(|t| t.name == name)
    }

    /// The span instances named `name`.
    pub fn spans_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SpanStats> + 'a {
        self.spans.iter().filter(move |s| s.name == Some(name))
    }
}

fn top<T>(items: &[T], n: usize, key: impl Fn(&T) -> i64) -> Vec<&T> {
    let mut v: Vec<&T> = items.iter().collect();
    v.sort_by_key(|t| std::cmp::Reverse(key(t)));
    v.truncate(n);
    v
}
