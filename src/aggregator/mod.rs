//! The background aggregator: folds the per-thread counters and the lifecycle events into task,
//! span and name tables, keeps them bounded, and answers snapshots.
//!
//! # Fold
//! Every `fold_interval`, and as soon as a thread's queue holds two chunks (checked every
//! 5 ms), the aggregator reads every thread's slot table and queue, the fallback stack and the
//! overflow counters, turning cumulative counters into exact deltas (`Applied`); then it
//! drains the lifecycle events, applies each delta, and records peaks.
//!
//! # Names and owners
//! Every delta carries the name indices of its task and span (they travel in each block's
//! header), so per-name figures are exact by construction and need no record per owner.
//! Records of single tasks and span instances are detail, kept for a bounded set:
//! - tasks: running ones (created by their start event or their first allocation) and the
//!   most recent `ended_task_retention` ended ones. A task whose end heapspan cannot see (no
//!   wrapper, no `tokio_unstable`) may still be running: its record is kept while it holds
//!   memory, and forgotten once it holds nothing and has been idle for `idle_task_eviction`
//!   (or, when more than `4 × ended_task_retention`, at least 4096, such tasks are held, at
//!   once, but for the `ended_task_retention` most recently active). So with plain
//!   `tokio::spawn`, tasks that ended holding memory keep a record each; wrap them
//!   ([`crate::spawn`]) or build with `tokio_unstable` and they cost nothing once ended;
//! - span instances: open ones and the most recent `closed_span_retention` closed ones.
//!
//! Span figures are kept per span *group* (the name and the values of the group fields, the
//! index the headers carry: [`crate::layer`](mod@crate::layer)) and per span name (the sum of
//! its groups). A span instance is keyed by its instance number, so that it keeps one record
//! when a group field recorded later moves it to another group.
//!
//! A free of a forgotten owner's block still counts for its names (and the totals); the
//! record it makes is forgotten again two folds later unless an allocation or an event makes
//! it a real one (a task's deltas come from several threads' tables, so a free may be read
//! before the allocation it frees, and the record must already count it then). A task whose
//! record was forgotten while idle (holding nothing) and that allocates again gets a fresh
//! record, counted from then on. So heapspan's memory grows with what is live and recent, not
//! with history.

pub(crate) mod events;
pub(crate) mod handoffs;
pub(crate) mod residue;
pub(crate) mod run;
pub mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::alloc::header::{
    span_word, Key, SPAN_BITS, SPAN_MASK, TASK_HEAPSPAN, TASK_NONE, TASK_OVERFLOW, TASK_UNTRACKED,
};
use crate::alloc::slots::{Applied, Counters, Op, Queued, SIZE_BUCKETS};
use crate::alloc::Pool;
use crate::layer::names;
use crate::sync::statics::Ordering;
use events::{Event, Loc};
use snapshot::*;

/// The aggregator's maps: keyed by small integers and short names it hashes on every delta,
/// with a multiply-rotate hasher (FxHash's) instead of SipHash. Keys come from heapspan itself
/// (ids it assigned, names from the code), not from an adversary.
type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// FxHash: the hasher rustc uses for its own tables.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.mix(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

/// Limits the aggregator works within (from the builder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) ended_task_retention: usize,
    pub(crate) closed_span_retention: usize,
    pub(crate) idle_task_eviction: Duration,
    /// Closed span instances sampled per window for their residue ([`residue`]; 0: none).
    pub(crate) residue_per_window: usize,
}

#[derive(Debug)]
struct TaskRec {
    /// Its name index (what its blocks' headers carry).
    name: u16,
    /// Counted among its name's tasks: it started (an event) or allocated. A record made by a
    /// free alone (read before the allocation it frees, or a late free of a forgotten task)
    /// is not, and is forgotten after two folds unless it becomes one.
    counted: bool,
    location: Option<Loc>,
    source: TaskSource,
    mem: MemStats,
    started: Option<Instant>,
    ended: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The size of its future in bytes (0: unknown): the wrapper's, else tokio's spawn span's.
    future_size: u64,
    /// The fold that last applied a delta to it.
    last_fold: u64,
    /// For a task with no name: the span group of its first allocation made in a span (0:
    /// none yet), what heapspan can tell about a task it did not see spawned.
    first_span: u16,
}

impl TaskRec {
    /// A task whose end heapspan cannot see may still be running: its record may be forgotten
    /// only while it holds nothing, so that if it comes back its fresh record never meets a
    /// free of a block it allocated before (which would take it below zero).
    fn forgettable(&self) -> bool {
        self.ended.is_none()
            && self.source == TaskSource::Observed
            && self.mem.live_bytes() == 0
            && self.mem.live_allocations() == 0
    }

    fn new(name: u16) -> Self {
        TaskRec {
            name,
            counted: false,
            location: None,
            source: TaskSource::Observed,
            mem: MemStats::default(),
            started: None,
            ended: None,
            first: None,
            last: None,
            future_size: 0,
            last_fold: 0,
            first_span: 0,
        }
    }
}

#[derive(Debug)]
struct SpanRec {
    /// `None` until its creation event is seen.
    meta: Option<&'static tracing_core::Metadata<'static>>,
    /// Its group now (its creation event's, or the last one a group field moved it to).
    group: u16,
    parent: u64,
    mem: MemStats,
    opened: Option<Instant>,
    closed: Option<Instant>,
}

impl SpanRec {
    fn new(group: u16) -> Self {
        SpanRec {
            meta: None,
            group,
            parent: 0,
            mem: MemStats::default(),
            opened: None,
            closed: None,
        }
    }
}

/// The figures of one task name or span name: exact, whatever became of its owners.
#[derive(Debug, Default, Clone, Copy)]
struct NameAcc {
    /// Sums over every owner of the name; `peak_bytes` is the peak of the name's total.
    mem: MemStats,
    /// Owners seen (task records created / span instances opened) and of those, ended.
    owners: u64,
    ended: u64,
    /// The largest peak of a single owner (tasks only).
    owner_peak: u64,
    touched: bool,
}

/// Per-name figures, indexed by the name index of the headers.
#[derive(Debug, Default)]
struct Names {
    accs: Vec<NameAcc>,
    touched: Vec<u16>,
}

impl Names {
    fn get(&mut self, n: u16) -> &mut NameAcc {
        let i = usize::from(n);
        if i >= self.accs.len() {
            self.accs.resize(i + 1, NameAcc::default());
        }
        let a = &mut self.accs[i];
        if !a.touched {
            a.touched = true;
            self.touched.push(n);
        }
        a
    }

    fn note_peaks(&mut self) {
        for n in self.touched.drain(..) {
            let a = &mut self.accs[usize::from(n)];
            a.mem.note_peak();
            a.touched = false;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u16, &NameAcc)> {
        self.accs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.owners > 0 || a.mem != MemStats::default())
            .map(|(i, a)| (i as u16, a))
    }
}

fn add_counters(m: &mut MemStats, d: &Counters) {
    m.add(&MemStats {
        allocated_bytes: d.alloc_bytes,
        allocations: d.allocs,
        freed_bytes: d.free_bytes,
        frees: d.frees,
        peak_bytes: 0,
    });
}

fn op_counters(op: Op) -> Counters {
    let mut c = Counters::default();
    match op {
        Op::Alloc(n) => {
            c.alloc_bytes = n;
            c.allocs = 1;
        }
        Op::Free(n) => {
            c.free_bytes = n;
            c.frees = 1;
        }
        Op::Grow(n) => c.alloc_bytes = n,
        Op::Shrink(n) => c.free_bytes = n,
    }
    c
}

/// One entry of a thread's queue or table: a tenancy's new delta goes to `deltas`, an event to
/// `events`.
fn take(
    q: Queued,
    applied: &mut Applied,
    deltas: &mut Vec<(Key, Counters)>,
    events: &mut Vec<crate::alloc::ring::Words>,
) {
    match q {
        Queued::Tenancy(r) => {
            if let Some(d) = applied.delta(&r) {
                deltas.push((r.key, d));
            }
        }
        Queued::Event(w) => events.push(w),
    }
}

/// Gives a table's memory back once it holds far fewer entries than it has room for.
fn shrink<V>(m: &mut FastMap<u64, V>) {
    if m.capacity() > 4 * m.len().max(1024) {
        m.shrink_to(2 * m.len());
    }
}

/// A delta that attributes memory (an allocation or a growth): only these create records.
fn attributes(d: &Counters) -> bool {
    d.allocs > 0 || d.alloc_bytes > 0
}

/// The tables. Lives behind a mutex shared by the aggregator thread and snapshot callers.
#[derive(Debug)]
pub(crate) struct Aggregator {
    pool: &'static Pool,
    events: Receiver<Event>,
    limits: Limits,
    epoch: (Instant, SystemTime),
    /// Per thread table: what has been applied of it (grown as tables are claimed).
    applied: Vec<Applied>,
    tasks: FastMap<u64, TaskRec>,
    /// Ended tasks, oldest first, with the fold that saw the end.
    ended_tasks: VecDeque<(u64, u64)>,
    /// Span instances, by instance number (the span word's low bits).
    spans: FastMap<u64, SpanRec>,
    /// Closed spans, oldest first, with the fold that saw the close.
    closed_spans: VecDeque<(u64, u64)>,
    /// Span records made by a delta before their creation event, with the fold that made
    /// them: forgotten after two folds without one (a late delta of a forgotten instance).
    pending_spans: VecDeque<(u64, u64)>,
    /// The same for task records made by a free alone.
    pending_tasks: VecDeque<(u64, u64)>,
    /// Tasks with no visible end that came to hold nothing, with the fold they did, oldest
    /// first (some may have allocated again since): the ones forgotten first when such tasks
    /// crowd the table.
    quiet_tasks: VecDeque<(u64, u64)>,
    task_names: Names,
    /// Per span name, indexed by the name's base group.
    span_names: Names,
    /// Per span group, indexed by group.
    span_groups: Names,
    /// The base group of each group, as far as looked up (`u16::MAX`: not yet).
    group_bases: Vec<u16>,
    /// Name and field values of each group, as far as looked up.
    group_info: Vec<Option<(names::SpanName, SpanGroup)>>,
    /// Display names of task name indices, as far as looked up.
    task_name_strings: Vec<Option<String>>,
    no_span: MemStats,
    buckets: Buckets,
    total: MemStats,
    /// Size histogram and realloc growth of operations that went through the fallback.
    fallback_sizes: [u64; SIZE_BUCKETS],
    fallback_grown: u64,
    /// The overflow counters as of the last fold.
    overflow_seen: (u64, u64),
    /// Size histogram as of the last fold.
    sizes: SizeHistogram,
    touched_tasks: Vec<u64>,
    touched_spans: Vec<u64>,
    /// Reused buffers of the fold.
    scratch: Vec<(Key, Counters)>,
    scratch_events: Vec<crate::alloc::ring::Words>,
    /// The channel's events of a fold (reused).
    scratch_channel: Vec<Event>,
    /// Ends read before their start (a task first polled on one thread and dropped on
    /// another, whose queue was read first), with the fold that read them: kept two folds for
    /// the start to find.
    early_task_ends: FastMap<u64, u64>,
    early_span_closes: FastMap<u64, u64>,
    /// Group changes read before their span's creation, by instance: (new span word, fold).
    early_span_regroups: FastMap<u64, (u64, u64)>,
    folds: u64,
    last_eviction: Instant,
    last_idle_scan: Instant,
    /// Closed instances sampled for their residue.
    residue: residue::Sampler,
    /// The hand-off matrix.
    handoffs: handoffs::Matrix,
}

impl Aggregator {
    pub(crate) fn new(pool: &'static Pool, events: Receiver<Event>, limits: Limits) -> Self {
        Aggregator {
            pool,
            events,
            limits,
            epoch: (Instant::now(), SystemTime::now()),
            applied: Vec::new(),
            tasks: FastMap::default(),
            ended_tasks: VecDeque::new(),
            spans: FastMap::default(),
            closed_spans: VecDeque::new(),
            pending_spans: VecDeque::new(),
            pending_tasks: VecDeque::new(),
            quiet_tasks: VecDeque::new(),
            task_names: Names::default(),
            span_names: Names::default(),
            span_groups: Names::default(),
            group_bases: Vec::new(),
            group_info: Vec::new(),
            task_name_strings: Vec::new(),
            no_span: MemStats::default(),
            buckets: Buckets::default(),
            total: MemStats::default(),
            fallback_sizes: [0; SIZE_BUCKETS],
            fallback_grown: 0,
            overflow_seen: (0, 0),
            sizes: SizeHistogram::default(),
            touched_tasks: Vec::new(),
            touched_spans: Vec::new(),
            scratch: Vec::new(),
            scratch_events: Vec::new(),
            scratch_channel: Vec::new(),
            early_task_ends: FastMap::default(),
            early_span_closes: FastMap::default(),
            early_span_regroups: FastMap::default(),
            folds: 0,
            last_eviction: Instant::now(),
            last_idle_scan: Instant::now(),
            residue: residue::Sampler::new(limits.residue_per_window),
            handoffs: handoffs::Matrix::default(),
        }
    }

    fn wall(&self, t: Instant) -> SystemTime {
        self.epoch.1 + t.saturating_duration_since(self.epoch.0)
    }

    /// The figures of span instance `id` (its span word) now: as of the last fold, plus what
    /// the calling thread recorded for it since (read from its table without applying it).
    /// Allocations the span made on other threads since the last fold are not included, nor,
    /// while the aggregator is far behind (the thread's queue holds more than 4096 entries),
    /// those of its tenancies the thread retired since.
    #[allow(dead_code)] // used by the tracing-opentelemetry feature
    pub(crate) fn span_mem_now(&self, id: u64) -> MemStats {
        let mut mem = self
            .spans
            .get(&(id & SPAN_MASK))
            .map(|s| s.mem)
            .unwrap_or_default();
        if let Some((thread, key)) = crate::alloc::current_key_for_span(id) {
            if let Some(st) = self.pool.claimed().get(thread) {
                // A table claimed since the last fold has nothing applied yet.
                let applied = self.applied.get(thread);
                st.peek(key, |r| {
                    let pending = applied.map_or(r.counters, |a| a.pending(&r));
                    add_counters(&mut mem, &pending);
                });
            }
        }
        mem.note_peak();
        mem
    }

    /// The pool this aggregator reads.
    pub(crate) fn pool(&self) -> &'static Pool {
        self.pool
    }

    /// One fold: per-thread deltas, fallback, overflow, events, then the deltas applied,
    /// peaks, eviction.
    pub(crate) fn fold(&mut self) {
        let now = Instant::now();
        self.folds += 1;
        let pool = self.pool;
        let tables = pool.claimed();
        if self.applied.len() < tables.len() {
            self.applied.resize_with(tables.len(), Applied::default);
        }
        let mut sizes = SizeHistogram::default();
        let mut grown = 0u64;
        let mut deltas = std::mem::take(&mut self.scratch);
        let mut queued_events = std::mem::take(&mut self.scratch_events);
        for (st, applied) in tables.iter().zip(&mut self.applied) {
            // Read in the same pass as the slots: at a quiet moment the histogram's count
            // equals the allocations folded; under concurrent allocation they may differ by
            // the operations in flight.
            st.add_sizes(&mut sizes.counts, &mut grown);
            st.read(|q| take(q, applied, &mut deltas, &mut queued_events));
        }
        self.handoffs.fold(tables);
        // The fold allocates (these vectors, the maps) on the calling thread, whose own table
        // it reads too: an allocation made while that table is read may evict a tenancy the
        // read had not reached yet into its ring. Reading that ring again until it stays
        // empty takes those in now, so that a snapshot holds everything its caller recorded
        // before it.
        if let Some(own) = crate::alloc::current_table() {
            if let Some(i) = tables.iter().position(|t| std::ptr::eq(t, own)) {
                let applied = &mut self.applied[i];
                while own.ring_len() > 0 {
                    own.read_queued(|q| take(q, applied, &mut deltas, &mut queued_events));
                }
            }
        }
        pool.fallback.drain(|k, op| {
            match op {
                Op::Alloc(n) => {
                    self.fallback_sizes[crate::alloc::slots::size_bucket(n)] += 1;
                }
                // Growth through the fallback: not a single allocation's size.
                Op::Grow(n) => self.fallback_grown += n,
                _ => {}
            }
            deltas.push((k, op_counters(op)));
        });
        self.fold_overflow(&mut sizes);
        // Events after the tables: a span or task whose allocations were just read was
        // created before them, so its event is (normally) in by now.
        let mut channel = std::mem::take(&mut self.scratch_channel);
        channel.extend(self.events.try_iter());
        // Every event was read by now, so this stamp is at or after each of them (and at most
        // a fold later): an end is never stamped before it happened.
        let read = Instant::now();
        for e in channel.drain(..) {
            self.on_event(e, read);
        }
        self.scratch_channel = channel;
        // The threads' queued events after the channel's (starts there come first).
        for w in queued_events.drain(..) {
            if let Some(e) = Event::from_queued(w) {
                self.on_event(e, read);
            }
        }
        self.scratch_events = queued_events;
        for (k, d) in deltas.drain(..) {
            self.apply(k, &d, now);
        }
        self.scratch = deltas;
        for (c, o) in sizes.counts.iter_mut().zip(self.fallback_sizes) {
            *c += o;
        }
        // Allocated bytes count realloc growth too; the histogram's sum is the sizes of
        // single allocations only.
        sizes.sum = self
            .total
            .allocated_bytes
            .saturating_sub(grown)
            .saturating_sub(self.fallback_grown);
        self.sizes = sizes;
        self.note_peaks();
        self.forget_finished();
        if now.duration_since(self.last_eviction) >= Duration::from_millis(100) {
            self.evict(now);
            self.last_eviction = now;
        }
    }

    /// The overflow bucket's allocations, counted in shared counters by the allocator (their
    /// frees come through the tables under the overflow key).
    fn fold_overflow(&mut self, sizes: &mut SizeHistogram) {
        use crate::alloc::record::{OVERFLOW_ALLOCS, OVERFLOW_BYTES, OVERFLOW_SIZES};
        let now = (
            OVERFLOW_ALLOCS.load(Ordering::Relaxed),
            OVERFLOW_BYTES.load(Ordering::Relaxed),
        );
        let d = Counters {
            allocs: now.0 - self.overflow_seen.0,
            alloc_bytes: now.1 - self.overflow_seen.1,
            ..Counters::default()
        };
        self.overflow_seen = now;
        add_counters(&mut self.buckets.overflow, &d);
        add_counters(&mut self.total, &d);
        for (c, o) in sizes.counts.iter_mut().zip(&OVERFLOW_SIZES) {
            *c += o.load(Ordering::Relaxed);
        }
    }

    fn note_peaks(&mut self) {
        for k in std::mem::take(&mut self.touched_tasks) {
            if let Some(t) = self.tasks.get_mut(&k) {
                t.mem.note_peak();
                let a = self.task_names.get(t.name);
                a.owner_peak = a.owner_peak.max(t.mem.peak_bytes);
            }
        }
        for s in std::mem::take(&mut self.touched_spans) {
            if let Some(r) = self.spans.get_mut(&s) {
                r.mem.note_peak();
            }
        }
        self.task_names.note_peaks();
        self.span_names.note_peaks();
        self.span_groups.note_peaks();
        self.no_span.note_peak();
        // The total's peak is of the memory allocated since start: the untracked bucket (frees
        // of blocks allocated before start) has no live figure to take from it.
        let since_start = self.total.live_bytes() - self.buckets.untracked.live_bytes();
        if since_start > 0 && since_start as u64 > self.total.peak_bytes {
            self.total.peak_bytes = since_start as u64;
        }
        self.buckets.unattributed.note_peak();
        self.buckets.heapspan.note_peak();
        self.buckets.overflow.note_peak();
    }

    fn apply(&mut self, key: Key, d: &Counters, now: Instant) {
        add_counters(&mut self.total, d);
        match key.task {
            TASK_HEAPSPAN => return add_counters(&mut self.buckets.heapspan, d),
            TASK_UNTRACKED => return add_counters(&mut self.buckets.untracked, d),
            TASK_OVERFLOW => return add_counters(&mut self.buckets.overflow, d),
            TASK_NONE => add_counters(&mut self.buckets.unattributed, d),
            _ => {
                let name = key.task_name();
                add_counters(&mut self.task_names.get(name).mem, d);
                let id = key.task_id();
                // A named task's record is made by its start event, or by an allocation read
                // before it (the start was queued on another thread, or came before heapspan
                // started); any other delta of a named task without a record is a late one of
                // a forgotten task (a free, or a realloc of its block by another task) and only
                // counts for its name. An unnamed task has no events: any delta makes its
                // record (a free may be read before the allocation it frees: deltas of one task
                // come from several threads' tables), counted as a task once it allocates; it
                // is only ever forgotten while it holds nothing, so no late delta of a forgotten
                // one can come.
                let t = match self.tasks.entry(id) {
                    std::collections::hash_map::Entry::Occupied(o) => Some(o.into_mut()),
                    // A named task's allocation without a record: it started before heapspan
                    // did (no start event), or its start event is not read yet.
                    std::collections::hash_map::Entry::Vacant(v)
                        if name == names::UNNAMED || d.allocs > 0 =>
                    {
                        self.pending_tasks.push_back((id, self.folds));
                        Some(v.insert(TaskRec::new(name)))
                    }
                    std::collections::hash_map::Entry::Vacant(_) => None,
                };
                if let Some(t) = t {
                    if !t.counted && attributes(d) {
                        t.counted = true;
                        self.task_names.get(t.name).owners += 1;
                    }
                    add_counters(&mut t.mem, d);
                    if t.name == names::UNNAMED && t.first_span == 0 && d.allocs > 0 {
                        t.first_span = key.span_group();
                    }
                    t.first.get_or_insert(now);
                    t.last = Some(now);
                    t.last_fold = self.folds;
                    if t.forgettable() {
                        // A candidate for forgetting, should such tasks crowd the table.
                        self.quiet_tasks.push_back((id, self.folds));
                    }
                    self.touched_tasks.push(id);
                }
            }
        }
        let sw = key.span_word();
        if sw == 0 {
            return add_counters(&mut self.no_span, d);
        }
        let group = key.span_group();
        add_counters(&mut self.span_groups.get(group).mem, d);
        let base = self.base_of(group);
        add_counters(&mut self.span_names.get(base).mem, d);
        // A span's record is made by its creation event (sent before its first allocation);
        // an allocation read first makes a pending one, a late free of a forgotten instance
        // none (it counts for the span's group and name only).
        let inst = sw & SPAN_MASK;
        let s = match self.spans.entry(inst) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) if attributes(d) => {
                self.pending_spans.push_back((inst, self.folds));
                v.insert(SpanRec::new(group))
            }
            std::collections::hash_map::Entry::Vacant(_) => return,
        };
        add_counters(&mut s.mem, d);
        self.touched_spans.push(inst);
    }

    fn on_event(&mut self, e: Event, at: Instant) {
        match e {
            Event::SpanNew { id, meta, parent } => {
                let (inst, group) = (id & SPAN_MASK, group_of(id));
                let base = self.base_of(group);
                let s = self
                    .spans
                    .entry(inst)
                    .or_insert_with(|| SpanRec::new(group));
                if s.meta.is_none() {
                    s.group = group;
                    self.span_groups.get(group).owners += 1;
                    self.span_names.get(base).owners += 1;
                }
                s.meta = Some(meta);
                s.parent = parent;
                s.opened = Some(at);
                if let Some((w, _)) = self.early_span_regroups.remove(&inst) {
                    self.on_event(Event::SpanRegroup { id: w }, at);
                }
                if self.early_span_closes.remove(&inst).is_some() {
                    self.on_event(Event::SpanClose { id }, at);
                }
            }
            Event::SpanWatch {
                id,
                ids,
                live_at_close,
            } => {
                // Instances are keyed without their group (a regrouped span is one instance).
                let inst = id & SPAN_MASK;
                if self.spans.get(&inst).is_some_and(|s| s.meta.is_some()) {
                    if let Some(old) = self.residue.offer(inst, ids, live_at_close) {
                        if self.residue.release(old) {
                            self.spans.remove(&old);
                        }
                    }
                }
            }
            Event::SpanClose { id } => {
                let inst = id & SPAN_MASK;
                match self.spans.get_mut(&inst) {
                    Some(s) if s.meta.is_some() => {
                        if s.closed.is_none() {
                            s.closed = Some(at);
                            let group = s.group;
                            self.closed_spans.push_back((inst, self.folds));
                            self.span_groups.get(group).ended += 1;
                            let base = self.base_of(group);
                            self.span_names.get(base).ended += 1;
                        }
                    }
                    _ => {
                        self.early_span_closes.insert(inst, self.folds);
                    }
                }
            }
            Event::SpanRegroup { id } => {
                let (inst, group) = (id & SPAN_MASK, group_of(id));
                match self.spans.get_mut(&inst) {
                    Some(s) if s.meta.is_some() => {
                        let old = s.group;
                        if old != group {
                            s.group = group;
                            // The instance counts for its new group from now on (its figures
                            // so far stay with the group they were made in).
                            let ended = u64::from(s.closed.is_some());
                            let o = self.span_groups.get(old);
                            o.owners = o.owners.saturating_sub(1);
                            o.ended = o.ended.saturating_sub(ended);
                            let g = self.span_groups.get(group);
                            g.owners += 1;
                            g.ended += ended;
                        }
                    }
                    _ => {
                        self.early_span_regroups.insert(inst, (id, self.folds));
                    }
                }
            }
            Event::TaskStart {
                task,
                name,
                location,
                source,
                future_size,
            } => {
                let t = self
                    .tasks
                    .entry(task.id)
                    .or_insert_with(|| TaskRec::new(name));
                if !t.counted {
                    t.counted = true;
                    self.task_names.get(t.name).owners += 1;
                }
                // tokio's spawn span and heapspan's wrapper may both describe a task: the
                // wrapper's name wins (it is the one its polls' allocations carry), then the
                // first location.
                if t.source == TaskSource::Observed || source == TaskSource::Wrapper {
                    if t.name != name {
                        let (old, ended) = (t.name, u64::from(t.ended.is_some()));
                        t.name = name;
                        let o = self.task_names.get(old);
                        o.owners -= 1;
                        o.ended -= ended;
                        let a = self.task_names.get(name);
                        a.owners += 1;
                        a.ended += ended;
                    }
                    t.source = source;
                }
                if t.location.is_none() {
                    t.location = location;
                }
                if future_size != 0 && (t.future_size == 0 || source == TaskSource::Wrapper) {
                    t.future_size = future_size;
                }
                t.started = Some(t.started.map_or(at, |s| s.min(at)));
                if self.early_task_ends.remove(&task.id).is_some() {
                    self.on_event(Event::TaskEnd { task }, at);
                }
            }
            Event::TaskEnd { task } => match self.tasks.get_mut(&task.id) {
                Some(t) if t.counted => {
                    if t.ended.is_none() {
                        t.ended = Some(at);
                        self.ended_tasks.push_back((task.id, self.folds));
                        self.task_names.get(t.name).ended += 1;
                    }
                }
                _ => {
                    self.early_task_ends.insert(task.id, self.folds);
                }
            },
        }
    }

    /// Every fold: forgets ended tasks and closed spans beyond their retention, tasks with no
    /// visible end beyond it when they crowd the table, and records that never became an
    /// owner's; then gives sparse tables' memory back.
    fn forget_finished(&mut self) {
        // Too many tasks with no visible end (plain `tokio::spawn` without `tokio_unstable`):
        // forget those that came to hold nothing longest ago (and have not been active since),
        // down to `ended_task_retention` of them.
        let keep = self.limits.ended_task_retention;
        let mut observed = self.tasks.len().saturating_sub(self.ended_tasks.len());
        if observed > keep.saturating_mul(4).max(4096) {
            while observed > keep {
                let Some(&(id, fold)) = self.quiet_tasks.front() else {
                    break;
                };
                if fold >= self.folds {
                    break;
                }
                self.quiet_tasks.pop_front();
                if self
                    .tasks
                    .get(&id)
                    .is_some_and(|t| t.forgettable() && t.last_fold <= fold)
                {
                    self.tasks.remove(&id);
                    observed -= 1;
                }
            }
        }
        // A delta recorded before an end or a close may be read one fold after the event
        // (the fold reads the tables before it drains the events): a record is kept for two
        // folds after its end, so that such a delta still finds it.
        let settled = |fold: u64, now: u64| fold + 2 <= now;
        while self.ended_tasks.len() > self.limits.ended_task_retention {
            match self.ended_tasks.front() {
                Some(&(k, fold)) if settled(fold, self.folds) => {
                    self.ended_tasks.pop_front();
                    self.tasks.remove(&k);
                }
                _ => break,
            }
        }
        while self.closed_spans.len() > self.limits.closed_span_retention {
            match self.closed_spans.front() {
                Some(&(id, fold)) if settled(fold, self.folds) => {
                    self.closed_spans.pop_front();
                    // A sampled instance is kept until its residue is read.
                    if !self.residue.keeps(id) {
                        self.spans.remove(&id);
                    }
                }
                _ => break,
            }
        }
        while let Some(&(id, fold)) = self.pending_tasks.front() {
            if !settled(fold, self.folds) {
                break;
            }
            self.pending_tasks.pop_front();
            if self.tasks.get(&id).is_some_and(|t| !t.counted) {
                self.tasks.remove(&id);
            }
        }
        while let Some(&(sw, fold)) = self.pending_spans.front() {
            if !settled(fold, self.folds) {
                break;
            }
            self.pending_spans.pop_front();
            if self.spans.get(&sw).is_some_and(|s| s.meta.is_none()) {
                self.spans.remove(&sw);
            }
        }
        // After a burst the tables are sparse: give their memory back (cheap to check; a hash
        // map or a vector keeps its largest capacity otherwise).
        shrink(&mut self.tasks);
        shrink(&mut self.spans);
        for q in [&mut self.ended_tasks, &mut self.closed_spans] {
            if q.capacity() > 4 * q.len().max(1024) {
                q.shrink_to(2 * q.len());
            }
        }
        for q in [
            &mut self.pending_spans,
            &mut self.pending_tasks,
            &mut self.quiet_tasks,
        ] {
            if q.capacity() > 4 * q.len().max(1024) {
                q.shrink_to(2 * q.len());
            }
        }
        if self.scratch.capacity() > 4 * self.scratch.len().max(4096) {
            self.scratch.shrink_to(4096);
        }
        if self.scratch_events.capacity() > 4 * self.scratch_events.len().max(4096) {
            self.scratch_events.shrink_to(4096);
        }
        if self.scratch_channel.capacity() > 4096 {
            self.scratch_channel.shrink_to(4096);
        }
    }

    /// Every 100 ms: ends whose start never came (tasks and spans begun before heapspan
    /// started), and tasks idle too long.
    fn evict(&mut self, now: Instant) {
        let folds = self.folds;
        self.early_task_ends.retain(|_, f| *f + 2 > folds);
        self.early_span_closes.retain(|_, f| *f + 2 > folds);
        self.early_span_regroups.retain(|_, (_, f)| *f + 2 > folds);
        shrink(&mut self.early_task_ends);
        shrink(&mut self.early_span_closes);
        shrink(&mut self.early_span_regroups);
        // The idle scan walks every task: once a second is enough for a 30 s threshold.
        if now.duration_since(self.last_idle_scan) < Duration::from_secs(1) {
            return;
        }
        self.last_idle_scan = now;
        let idle = self.limits.idle_task_eviction;
        self.tasks
            .retain(|_, t| !t.forgettable() || t.last.is_none_or(|l| now.duration_since(l) < idle));
        let tasks = &self.tasks;
        self.quiet_tasks
            .retain(|(id, fold)| tasks.get(id).is_some_and(|t| t.last_fold <= *fold));
    }

    /// The base group (the name) of span group `g`: looked up once per group.
    fn base_of(&mut self, g: u16) -> u16 {
        let i = usize::from(g);
        if i >= self.group_bases.len() {
            self.group_bases.resize(i + 1, u16::MAX);
        }
        if self.group_bases[i] == u16::MAX {
            self.group_bases[i] = crate::layer::groups::base_of(g);
        }
        self.group_bases[i]
    }

    /// The `(target, name)` and field values of span group `g`: looked up once per group.
    fn group_info(&mut self, g: u16) -> (names::SpanName, SpanGroup) {
        let i = usize::from(g);
        if i >= self.group_info.len() {
            self.group_info.resize(i + 1, None);
        }
        self.group_info[i]
            .get_or_insert_with(|| match crate::layer::groups::describe(g) {
                Some((name, _, group)) => (name, group),
                None => (names::span_name(g), SpanGroup::default()),
            })
            .clone()
    }

    fn task_name_string(&mut self, n: u16) -> String {
        let i = usize::from(n);
        if i >= self.task_name_strings.len() {
            self.task_name_strings.resize(i + 1, None);
        }
        self.task_name_strings[i]
            .get_or_insert_with(|| names::task_name(n))
            .clone()
    }

    /// Bytes heapspan holds right now, resident: the thread tables' resident pages, the queue
    /// chunks and fallback nodes, the live index's entries, and every live heap block of
    /// heapspan's own (these tables, the event channel, export buffers: the `heapspan`
    /// bucket).
    fn tracker_bytes(&self) -> u64 {
        self.pool.resident_bytes()
            + crate::alloc::budget::held()
            + crate::alloc::index::index_bytes(self.pool.claimed().len())
            + self.buckets.heapspan.live_bytes().max(0) as u64
    }

    /// Whether closed instances are sampled for their residue (the span-close hook asks before
    /// it looks up a span's OpenTelemetry context).
    #[allow(dead_code)] // used by the tracing-opentelemetry feature
    pub(crate) fn samples_residue(&self) -> bool {
        self.residue.enabled()
    }

    /// Ends a residue window (call it right after the window's snapshot): the instances
    /// sampled in the previous window, with their figures now, and how many they were drawn
    /// from. `last`: heapspan stops; the instances of this window are let go unread.
    pub(crate) fn take_residues(&mut self, last: bool) -> residue::ResidueRound {
        if !self.residue.enabled() {
            return residue::ResidueRound::default();
        }
        let (read, candidates) = self.residue.rotate(last);
        let mut residues = Vec::with_capacity(read.len());
        for (span, ids, live_at_close) in read {
            if let Some(s) = self.spans.get(&span) {
                if let (Some(meta), Some(closed)) = (s.meta, s.closed) {
                    residues.push(residue::Residue {
                        span,
                        target: meta.target(),
                        name: meta.name(),
                        ids,
                        closed: self.wall(closed),
                        live_at_close,
                        mem: s.mem,
                    });
                }
            }
            if self.residue.release(span) {
                self.spans.remove(&span);
            }
        }
        if last {
            for span in self.residue.drain_deferred() {
                self.spans.remove(&span);
            }
        }
        residue::ResidueRound {
            candidates,
            residues,
        }
    }

    pub(crate) fn snapshot(&mut self) -> Snapshot {
        SNAPSHOTTING.store(true, std::sync::atomic::Ordering::Relaxed);
        let snap = self.snapshot_inner();
        SNAPSHOTTING.store(false, std::sync::atomic::Ordering::Relaxed);
        snap
    }

    fn snapshot_inner(&mut self) -> Snapshot {
        // Three folds: everything recorded before the call is in after the first; the next
        // two let the records of owners that ended in it settle (they are kept two folds for
        // a delta read late) and be forgotten as they would be in the background.
        for _ in 0..3 {
            self.fold();
        }
        // Records made by a free alone are not tasks (yet).
        let keys: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.counted)
            .map(|(k, _)| *k)
            .collect();
        let mut tasks = Vec::with_capacity(keys.len());
        for id in keys {
            let (n, fs) = (self.tasks[&id].name, self.tasks[&id].first_span);
            let name = (n != names::UNNAMED).then(|| self.task_name_string(n));
            let first_span_info = (fs != 0).then(|| self.group_info(fs));
            let t = &self.tasks[&id];
            let location = t.location.as_ref().map(Loc::to_location);
            // A task named by its location only: the location is its display name.
            let name = name.filter(|n| location.as_ref().is_none_or(|l| *n != l.to_string()));
            let first_span = first_span_info
                .filter(|_| name.is_none() && location.is_none())
                .map(|((target, span), group)| {
                    SpanGroupStats {
                        name: span,
                        target,
                        group,
                        instances: 0,
                        closed: 0,
                        mem: MemStats::default(),
                    }
                    .label()
                });
            tasks.push(TaskStats {
                key: TaskKey { id },
                name,
                location,
                first_span,
                source: t.source,
                mem: t.mem,
                started: t.started.map(|i| self.wall(i)),
                ended: t.ended.map(|i| self.wall(i)),
                first_activity: t.first.map(|i| self.wall(i)),
                last_activity: t.last.map(|i| self.wall(i)),
                future_size: (t.future_size != 0).then_some(t.future_size),
                last_poll: (t.source == TaskSource::Wrapper && t.ended.is_none())
                    .then(|| crate::layer::polls::last_poll_ms(id))
                    .flatten()
                    .map(|ms| self.epoch.1 + Duration::from_millis(ms)),
            });
        }
        let accs: Vec<(u16, NameAcc)> = self.task_names.iter().map(|(n, a)| (n, *a)).collect();
        let task_names = accs
            .into_iter()
            .map(|(n, a)| TaskNameStats {
                name: self.task_name_string(n),
                tasks: a.owners,
                ended: a.ended,
                mem: a.mem,
                task_peak_bytes: a.owner_peak,
            })
            .collect();
        let keys: Vec<(u64, u16)> = self
            .spans
            .iter()
            .filter(|(_, s)| s.meta.is_some())
            .map(|(inst, s)| (*inst, s.group))
            .collect();
        let mut spans = Vec::with_capacity(keys.len());
        for (inst, group) in keys {
            let (_, g) = self.group_info(group);
            let s = &self.spans[&inst];
            // The parent's word as it is now (its group may have changed since).
            let parent = match self.spans.get(&(s.parent & SPAN_MASK)) {
                Some(p) if s.parent != 0 => span_word(p.group, s.parent),
                _ => s.parent,
            };
            spans.push(SpanStats {
                id: span_word(s.group, inst),
                name: s.meta.map(|m| m.name()),
                target: s.meta.map(|m| m.target()),
                group: g,
                parent,
                mem: s.mem,
                opened: s.opened.map(|i| self.wall(i)),
                closed: s.closed.map(|i| self.wall(i)),
            });
        }
        let span_names = self
            .span_names
            .iter()
            .map(|(n, a)| {
                let (target, name) = names::span_name(n);
                SpanNameStats {
                    target,
                    name,
                    instances: a.owners,
                    closed: a.ended,
                    mem: a.mem,
                }
            })
            .collect();
        let accs: Vec<(u16, NameAcc)> = self.span_groups.iter().map(|(n, a)| (n, *a)).collect();
        let span_groups = accs
            .into_iter()
            .map(|(n, a)| {
                let ((target, name), group) = self.group_info(n);
                SpanGroupStats {
                    target,
                    name,
                    group,
                    instances: a.owners,
                    closed: a.ended,
                    mem: a.mem,
                }
            })
            .collect();
        let dropped = Dropped {
            overflow_allocations: self.overflow_seen.0,
            lost_operations: crate::alloc::budget::LOST.load(Ordering::Relaxed),
            span_stack_overflow: events::SPAN_STACK_OVERFLOW.load(Ordering::Relaxed),
        };
        let matrix = std::mem::take(&mut self.handoffs);
        let handoffs = matrix.snapshot(|n| self.task_name_string(n));
        self.handoffs = matrix;
        Snapshot {
            taken_at: SystemTime::now(),
            tasks,
            task_names,
            spans,
            span_names,
            span_groups,
            no_span: self.no_span,
            buckets: self.buckets,
            total: self.total,
            allocation_sizes: self.sizes,
            dropped,
            handoffs,
            tracker_bytes: self.tracker_bytes(),
        }
    }
}

/// The group of span word `w`.
fn group_of(w: u64) -> u16 {
    ((w & !crate::alloc::header::EXT) >> SPAN_BITS) as u16
}

/// Set while a snapshot copies the tables under the lock (it can take a while with large
/// tables): the span-close hook does not wait for it then.
pub(crate) static SNAPSHOTTING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Shared handle to the tables.
pub(crate) type Shared = Arc<Mutex<Aggregator>>;

/// Locks, recovering from poison: a panic elsewhere must not take the user's process down.
pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Aggregator> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}
