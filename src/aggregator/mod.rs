//! The background aggregator: folds the per-thread counters and the lifecycle events into task
//! and span tables, keeps them bounded, and answers snapshots.
//!
//! # Fold
//! Every `fold_interval`, and as soon as a thread's retired ring is an eighth full (checked
//! every 5 ms), the aggregator
//! drains the event queue, reads every thread's slot table and the fallback queue, turns
//! cumulative counters into exact deltas (`Applied`), applies each delta to the allocating
//! task and span, then records peaks.
//!
//! # Eviction
//! Ended tasks and closed spans stay individually for the most recent
//! `ended_task_retention` / `closed_span_retention` of them; older ones are summarised into
//! their name's totals. A summarised task or span that still holds memory keeps being charged
//! for its frees through a small key → name map (one entry per such owner, dropped once it holds
//! nothing), so per-name totals stay exact. Tasks whose end heapspan cannot see (no wrapper, no `tokio_unstable`) are
//! summarised once they hold nothing and have been idle for `idle_task_eviction`.

pub(crate) mod events;
pub mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::alloc::key::{SPAN_BITS, SPAN_MASK, TASK_HEAPSPAN, TASK_NONE, TASK_UNTRACKED};
use crate::alloc::slots::{Applied, Counters, Key, Op};
use crate::alloc::Pool;
use crate::sync::statics::Ordering;
use events::Event;
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
}

#[derive(Debug)]
struct TaskRec {
    /// Index of the name its live bytes are counted under (its display name) in `task_levels`.
    level: usize,
    name: Option<String>,
    location: Option<Location>,
    source: TaskSource,
    mem: MemStats,
    started: Option<Instant>,
    ended: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl TaskRec {
    fn new(level: usize) -> Self {
        TaskRec {
            level,
            name: None,
            location: None,
            source: TaskSource::Observed,
            mem: MemStats::default(),
            started: None,
            ended: None,
            first: None,
            last: None,
        }
    }

    fn display_name(&self) -> String {
        display_name(self.name.as_deref(), self.location.as_ref())
    }
}

#[derive(Debug)]
struct SpanRec {
    meta: Option<&'static tracing_core::Metadata<'static>>,
    /// Index of its name in `span_levels`, once its metadata is known.
    level: Option<usize>,
    parent: u64,
    mem: MemStats,
    opened: Option<Instant>,
    closed: Option<Instant>,
}

type SpanName = (&'static str, &'static str);

/// A running live total and its peak.
#[derive(Debug, Default, Clone, Copy)]
struct Level {
    live: i64,
    peak: u64,
}

impl Level {
    fn add(&mut self, d: i64) {
        self.live = self.live.saturating_add(d);
    }

    fn note_peak(&mut self) {
        if self.live > 0 {
            self.peak = self.peak.max(self.live as u64);
        }
    }
}

fn live_delta(d: &Counters) -> i64 {
    d.alloc_bytes as i64 - d.free_bytes as i64
}

/// Running live totals per name, with their peaks; names are indexed so that the per-delta
/// path touches a vector, not a hash map.
#[derive(Debug)]
struct Levels<K> {
    ix: FastMap<K, usize>,
    levels: Vec<Level>,
    touched: Vec<usize>,
}

impl<K: std::hash::Hash + Eq + Clone> Levels<K> {
    fn new() -> Self {
        Levels {
            ix: FastMap::default(),
            levels: Vec::new(),
            touched: Vec::new(),
        }
    }

    fn index(&mut self, k: &K) -> usize {
        if let Some(&i) = self.ix.get(k) {
            return i;
        }
        self.levels.push(Level::default());
        self.ix.insert(k.clone(), self.levels.len() - 1);
        self.levels.len() - 1
    }

    fn add(&mut self, i: usize, d: i64) {
        self.levels[i].add(d);
        self.touched.push(i);
    }

    /// Peaks are observed once per fold, when all of its deltas are in.
    fn note_peaks(&mut self) {
        for i in self.touched.drain(..) {
            self.levels[i].note_peak();
        }
    }

    fn peak(&self, k: &K) -> u64 {
        self.ix.get(k).map_or(0, |&i| self.levels[i].peak)
    }

    fn len(&self) -> usize {
        self.levels.len()
    }
}

/// A summarised task or span that still held memory: where its later deltas go, until what it
/// holds reaches zero (then it is forgotten).
#[derive(Debug)]
struct Evicted<N> {
    name: N,
    live_bytes: i64,
    live_allocations: i64,
}

impl<N> Evicted<N> {
    fn new(name: N, mem: &MemStats) -> Self {
        Evicted {
            name,
            live_bytes: mem.live_bytes(),
            live_allocations: mem.live_allocations(),
        }
    }

    /// Applies a delta; true once it holds nothing any more.
    fn apply(&mut self, d: &Counters) -> bool {
        self.live_bytes = self.live_bytes.saturating_add(live_delta(d));
        self.live_allocations = self
            .live_allocations
            .saturating_add(d.allocs as i64 - d.frees as i64);
        self.live_bytes == 0 && self.live_allocations == 0
    }
}

#[derive(Debug, Default)]
struct Summary {
    count: u64,
    ended: u64,
    mem: MemStats,
}

/// The tables. Lives behind a mutex shared by the aggregator thread and snapshot callers.
#[derive(Debug)]
pub(crate) struct Aggregator {
    pool: &'static Pool,
    events: Receiver<Event>,
    limits: Limits,
    epoch: (Instant, SystemTime),
    applied: Vec<Applied>,
    tasks: FastMap<TaskKey, TaskRec>,
    ended_tasks: VecDeque<TaskKey>,
    task_summaries: FastMap<String, Summary>,
    evicted_tasks: FastMap<TaskKey, Evicted<String>>,
    spans: FastMap<u64, SpanRec>,
    closed_spans: VecDeque<u64>,
    span_summaries: FastMap<SpanName, Summary>,
    evicted_spans: FastMap<u64, Evicted<SpanName>>,
    no_span: MemStats,
    buckets: Buckets,
    total: MemStats,
    /// Size histogram of allocations that went through the fallback queue.
    orphan_sizes: SizeHistogram,
    /// Realloc growth that went through the fallback queue.
    orphan_grown: u64,
    /// Size histogram as of the last fold (thread tables plus fallback).
    sizes: SizeHistogram,
    touched_tasks: Vec<TaskKey>,
    touched_spans: Vec<u64>,
    /// Reused buffers of the fold.
    scratch_deltas: Vec<(Key, Counters)>,
    scratch_orphans: Vec<(Key, Op)>,
    /// Live bytes and peak per task name and per span name, over all instances (held or
    /// summarised), kept up to date delta by delta so that name-level peaks are real peaks.
    task_levels: Levels<String>,
    span_levels: Levels<SpanName>,
    /// Index of `unnamed` in `task_levels` (where tasks start before their name is known).
    unnamed: usize,
    last_eviction: Instant,
    last_idle_scan: Instant,
}

const UNKNOWN_SPAN: SpanName = ("", "(unknown span)");

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

impl Aggregator {
    pub(crate) fn new(pool: &'static Pool, events: Receiver<Event>, limits: Limits) -> Self {
        let mut task_levels = Levels::new();
        let unnamed = task_levels.index(&display_name(None, None));
        Aggregator {
            applied: (0..pool.threads.len())
                .map(|_| Applied::default())
                .collect(),
            pool,
            events,
            limits,
            epoch: (Instant::now(), SystemTime::now()),
            tasks: FastMap::default(),
            ended_tasks: VecDeque::new(),
            task_summaries: FastMap::default(),
            evicted_tasks: FastMap::default(),
            spans: FastMap::default(),
            closed_spans: VecDeque::new(),
            span_summaries: FastMap::default(),
            evicted_spans: FastMap::default(),
            no_span: MemStats::default(),
            buckets: Buckets::default(),
            total: MemStats::default(),
            orphan_sizes: SizeHistogram::default(),
            sizes: SizeHistogram::default(),
            orphan_grown: 0,
            touched_tasks: Vec::new(),
            touched_spans: Vec::new(),
            scratch_deltas: Vec::with_capacity(
                crate::alloc::slots::SLOTS + crate::alloc::slots::RING,
            ),
            scratch_orphans: Vec::with_capacity(1024),
            task_levels,
            span_levels: Levels::new(),
            unnamed,
            last_eviction: Instant::now(),
            last_idle_scan: Instant::now(),
        }
    }

    fn wall(&self, t: Instant) -> SystemTime {
        self.epoch.1 + t.saturating_duration_since(self.epoch.0)
    }

    /// The figures of span instance `id` now: as of the last fold, plus what the calling
    /// thread recorded for it since (read from its table without applying it). Allocations
    /// the span made on other threads since the last fold are not included.
    #[allow(dead_code)] // used by the tracing-opentelemetry feature
    pub(crate) fn span_mem_now(&self, id: u64) -> MemStats {
        let mut mem = self.spans.get(&id).map(|s| s.mem).unwrap_or_default();
        if let Some((thread, key)) = crate::alloc::current_key_for_span(id) {
            if let (Some(st), Some(applied)) =
                (self.pool.threads.get(thread), self.applied.get(thread))
            {
                st.peek(key, |r| add_counters(&mut mem, &applied.pending(&r)));
            }
        }
        mem.note_peak();
        mem
    }

    /// The pool this aggregator reads.
    pub(crate) fn pool(&self) -> &'static Pool {
        self.pool
    }

    /// One fold: events, per-thread deltas, fallback queue, peaks, eviction.
    pub(crate) fn fold(&mut self) {
        let now = Instant::now();
        while let Ok(e) = self.events.try_recv() {
            self.on_event(e);
        }
        let high = self.pool.high.load(Ordering::Acquire) as usize;
        let pool = self.pool;
        let mut sizes = SizeHistogram::default();
        let mut grown = 0u64;
        for (i, st) in pool.threads[..high].iter().enumerate() {
            // Read in the same pass as the slots: at a quiet moment the histogram's count
            // equals the allocations folded; under concurrent allocation they may differ by
            // the operations in flight.
            // (The scratch vector is reused so that the fold itself allocates nothing while it
            // reads its own thread's table, once it has grown to its working size.)
            st.add_sizes(&mut sizes.counts, &mut grown);
            let mut deltas = std::mem::take(&mut self.scratch_deltas);
            let applied = &mut self.applied[i];
            st.read(|r| {
                if let Some(d) = applied.delta(&r) {
                    deltas.push((r.key, d));
                }
            });
            for (k, d) in deltas.drain(..) {
                self.apply(k, &d, now);
            }
            self.scratch_deltas = deltas;
        }
        let mut orphans = std::mem::take(&mut self.scratch_orphans);
        pool.orphans.drain(|k, op| orphans.push((k, op)));
        for (k, op) in orphans.drain(..) {
            match op {
                Op::Alloc(n) => {
                    self.orphan_sizes.counts[crate::alloc::slots::size_bucket(n)] += 1;
                }
                // Growth through the fallback queue: not a single allocation's size.
                Op::Grow(n) => self.orphan_grown += n,
                _ => {}
            }
            self.apply(k, &op_counters(op), now);
        }
        self.scratch_orphans = orphans;
        for (c, o) in sizes.counts.iter_mut().zip(self.orphan_sizes.counts) {
            *c += o;
        }
        // Allocated bytes count realloc growth too; the histogram's sum is the sizes of
        // single allocations only.
        sizes.sum = self
            .total
            .allocated_bytes
            .saturating_sub(grown)
            .saturating_sub(self.orphan_grown);
        self.sizes = sizes;
        // Events sent while the tables were read (a task's start, a span's creation) name the
        // deltas just applied before peaks are taken, so that no `unnamed` total peaks on
        // bytes that belong to a name.
        while let Ok(e) = self.events.try_recv() {
            self.on_event(e);
        }
        for k in std::mem::take(&mut self.touched_tasks) {
            if let Some(t) = self.tasks.get_mut(&k) {
                t.mem.note_peak();
            }
        }
        for s in std::mem::take(&mut self.touched_spans) {
            if let Some(r) = self.spans.get_mut(&s) {
                r.mem.note_peak();
            }
        }
        self.no_span.note_peak();
        self.total.note_peak();
        self.task_levels.note_peaks();
        self.span_levels.note_peaks();
        self.buckets.unattributed.note_peak();
        self.buckets.heapspan.note_peak();
        if now.duration_since(self.last_eviction) >= Duration::from_millis(100) {
            self.evict(now);
            self.last_eviction = now;
        }
    }

    fn apply(&mut self, key: Key, d: &Counters, now: Instant) {
        add_counters(&mut self.total, d);
        match key.task {
            TASK_NONE => add_counters(&mut self.buckets.unattributed, d),
            TASK_HEAPSPAN => add_counters(&mut self.buckets.heapspan, d),
            TASK_UNTRACKED => add_counters(&mut self.buckets.untracked, d),
            id => {
                let tk = TaskKey {
                    id,
                };
                if let Some(e) = self.evicted_tasks.get_mut(&tk) {
                    let s = self.task_summaries.entry(e.name.clone()).or_default();
                    add_counters(&mut s.mem, d);
                    let i = self.task_levels.index(&e.name);
                    self.task_levels.add(i, live_delta(d));
                    if e.apply(d) {
                        self.evicted_tasks.remove(&tk);
                    }
                } else {
                    let unnamed = self.unnamed;
                    let t = self
                        .tasks
                        .entry(tk)
                        .or_insert_with(|| TaskRec::new(unnamed));
                    add_counters(&mut t.mem, d);
                    self.task_levels.add(t.level, live_delta(d));
                    t.first.get_or_insert(now);
                    t.last = Some(now);
                    self.touched_tasks.push(tk);
                }
            }
        }
        if key.task == TASK_HEAPSPAN || key.task == TASK_UNTRACKED {
            return;
        }
        match key.span & SPAN_MASK {
            0 => add_counters(&mut self.no_span, d),
            sid => {
                if let Some(e) = self.evicted_spans.get_mut(&sid) {
                    let s = self.span_summaries.entry(e.name).or_default();
                    add_counters(&mut s.mem, d);
                    let i = self.span_levels.index(&e.name);
                    self.span_levels.add(i, live_delta(d));
                    if e.apply(d) {
                        self.evicted_spans.remove(&sid);
                    }
                } else {
                    let s = self.spans.entry(sid).or_insert_with(|| SpanRec {
                        meta: None,
                        level: None,
                        parent: 0,
                        mem: MemStats::default(),
                        opened: None,
                        closed: None,
                    });
                    add_counters(&mut s.mem, d);
                    if let Some(i) = s.level {
                        self.span_levels.add(i, live_delta(d));
                    }
                    self.touched_spans.push(sid);
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::SpanNew {
                id,
                meta,
                parent,
                at,
            } => {
                let s = self.spans.entry(id).or_insert_with(|| SpanRec {
                    meta: None,
                    level: None,
                    parent: 0,
                    mem: MemStats::default(),
                    opened: None,
                    closed: None,
                });
                if s.level.is_none() {
                    // Deltas seen before this event were not counted under a name yet.
                    let i = self.span_levels.index(&(meta.target(), meta.name()));
                    self.span_levels.add(i, s.mem.live_bytes());
                    s.level = Some(i);
                }
                s.meta = Some(meta);
                s.parent = parent;
                s.opened = Some(at);
            }
            Event::SpanClose { id, at } => {
                if let Some(s) = self.spans.get_mut(&id) {
                    if s.closed.is_none() {
                        s.closed = Some(at);
                        self.closed_spans.push_back(id);
                    }
                }
            }
            Event::TaskStart {
                task,
                name,
                location,
                source,
                at,
            } => {
                let unnamed = self.unnamed;
                let t = self
                    .tasks
                    .entry(task)
                    .or_insert_with(|| TaskRec::new(unnamed));
                // tokio's spawn span and heapspan's wrapper may both describe a task: a
                // non-empty name wins, then the first location.
                if name.as_deref().is_some_and(|n| !n.is_empty()) {
                    t.name = name;
                }
                if t.location.is_none() {
                    t.location = location;
                }
                if t.source == TaskSource::Observed || source == TaskSource::Wrapper {
                    t.source = source;
                }
                t.started = Some(t.started.map_or(at, |s| s.min(at)));
                // Its live bytes move to the name it now has.
                let level = self.task_levels.index(&t.display_name());
                if level != t.level {
                    let live = t.mem.live_bytes();
                    self.task_levels.add(t.level, -live);
                    self.task_levels.add(level, live);
                    t.level = level;
                }
            }
            Event::TaskEnd { task, at } => {
                if let Some(t) = self.tasks.get_mut(&task) {
                    if t.ended.is_none() {
                        t.ended = Some(at);
                        self.ended_tasks.push_back(task);
                    }
                }
            }
        }
    }

    fn evict(&mut self, now: Instant) {
        while self.ended_tasks.len() > self.limits.ended_task_retention {
            let Some(k) = self.ended_tasks.pop_front() else {
                break;
            };
            self.summarise_task(k);
        }
        // The idle scan walks every task: once a second is enough for a 30 s threshold.
        if now.duration_since(self.last_idle_scan) < Duration::from_secs(1) {
            self.evict_spans();
            return;
        }
        self.last_idle_scan = now;
        let idle: Vec<TaskKey> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.ended.is_none()
                    && t.source == TaskSource::Observed
                    && t.mem.live_bytes() == 0
                    && t.last
                        .is_some_and(|l| now.duration_since(l) >= self.limits.idle_task_eviction)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            self.summarise_task(k);
        }
        self.evict_spans();
    }

    fn evict_spans(&mut self) {
        while self.closed_spans.len() > self.limits.closed_span_retention {
            let Some(id) = self.closed_spans.pop_front() else {
                break;
            };
            if let Some(s) = self.spans.remove(&id) {
                let name = s.meta.map_or(UNKNOWN_SPAN, |m| (m.target(), m.name()));
                let sum = self.span_summaries.entry(name).or_default();
                sum.count += 1;
                sum.ended += 1;
                sum.mem.add(&s.mem);
                if s.level.is_none() {
                    // Never named (created before start, or its event was dropped): its live
                    // bytes join the unknown name's total now, so later frees balance.
                    let i = self.span_levels.index(&name);
                    self.span_levels.add(i, s.mem.live_bytes());
                }
                if s.mem.live_bytes() != 0 || s.mem.live_allocations() != 0 {
                    self.evicted_spans.insert(id, Evicted::new(name, &s.mem));
                }
            }
        }
    }

    fn summarise_task(&mut self, k: TaskKey) {
        let Some(t) = self.tasks.remove(&k) else {
            return;
        };
        let name = t.display_name();
        let sum = self.task_summaries.entry(name.clone()).or_default();
        sum.count += 1;
        sum.ended += u64::from(t.ended.is_some());
        sum.mem.add(&t.mem);
        if t.mem.live_bytes() != 0 || t.mem.live_allocations() != 0 {
            self.evicted_tasks.insert(k, Evicted::new(name, &t.mem));
        }
    }

    /// Bytes of heapspan's own bookkeeping: thread pool, fallback queue, tables (estimated
    /// from entry counts and entry sizes).
    fn tracker_bytes(&self) -> u64 {
        use std::mem::size_of;
        // Tables of threads that never claimed one stay zeroed, unresident pages: count the
        // claimed ones.
        let pool = self.pool.high.load(Ordering::Relaxed) * crate::alloc::slots::STATE_BYTES as u64
            + crate::alloc::orphans::QUEUE_BYTES as u64;
        let entry = |k: usize, v: usize| (k + v + 8) as u64;
        let tables = self.tasks.len() as u64 * entry(size_of::<TaskKey>(), size_of::<TaskRec>())
            + self.spans.len() as u64 * entry(8, size_of::<SpanRec>())
            + self.evicted_tasks.len() as u64 * entry(size_of::<TaskKey>(), 64)
            + self.evicted_spans.len() as u64 * entry(8, size_of::<Evicted<SpanName>>())
            + (self.task_summaries.len() + self.span_summaries.len()) as u64 * 96
            + (self.task_levels.len() + self.span_levels.len()) as u64 * 64
            + self
                .applied
                .iter()
                .map(|a| a.len() as u64 * 64)
                .sum::<u64>();
        pool + tables + crate::alloc::index::index_bytes(self.pool)
    }

    pub(crate) fn snapshot(&mut self) -> Snapshot {
        SNAPSHOTTING.store(true, std::sync::atomic::Ordering::Relaxed);
        let snap = self.snapshot_inner();
        SNAPSHOTTING.store(false, std::sync::atomic::Ordering::Relaxed);
        snap
    }

    fn snapshot_inner(&mut self) -> Snapshot {
        self.fold();
        let tasks: Vec<TaskStats> = self
            .tasks
            .iter()
            .map(|(k, t)| TaskStats {
                key: *k,
                name: t.name.clone(),
                location: t.location.clone(),
                source: t.source,
                mem: t.mem,
                started: t.started.map(|i| self.wall(i)),
                ended: t.ended.map(|i| self.wall(i)),
                first_activity: t.first.map(|i| self.wall(i)),
                last_activity: t.last.map(|i| self.wall(i)),
            })
            .collect();
        let mut names: HashMap<String, TaskNameStats> = HashMap::new();
        for (n, s) in &self.task_summaries {
            names.insert(
                n.clone(),
                TaskNameStats {
                    name: n.clone(),
                    tasks: s.count,
                    ended: s.ended,
                    mem: s.mem,
                    task_peak_bytes: 0,
                },
            );
        }
        for t in &tasks {
            let n = t.display_name();
            let e = names.entry(n.clone()).or_insert_with(|| TaskNameStats {
                name: n,
                tasks: 0,
                ended: 0,
                mem: MemStats::default(),
                task_peak_bytes: 0,
            });
            e.tasks += 1;
            e.ended += u64::from(t.ended.is_some());
            e.mem.add(&t.mem);
        }
        for (n, e) in names.iter_mut() {
            e.mem.peak_bytes = self.task_levels.peak(n);
        }
        let spans: Vec<SpanStats> = self
            .spans
            .iter()
            .map(|(id, s)| SpanStats {
                id: *id,
                name: s.meta.map(|m| m.name()),
                target: s.meta.map(|m| m.target()),
                parent: s.parent,
                mem: s.mem,
                opened: s.opened.map(|i| self.wall(i)),
                closed: s.closed.map(|i| self.wall(i)),
            })
            .collect();
        let mut snames: HashMap<SpanName, SpanNameStats> = HashMap::new();
        for (n, s) in &self.span_summaries {
            snames.insert(
                *n,
                SpanNameStats {
                    target: n.0,
                    name: n.1,
                    instances: s.count,
                    closed: s.ended,
                    mem: s.mem,
                },
            );
        }
        for s in &spans {
            let n = (
                s.target.unwrap_or(UNKNOWN_SPAN.0),
                s.name.unwrap_or(UNKNOWN_SPAN.1),
            );
            let e = snames.entry(n).or_insert_with(|| SpanNameStats {
                target: n.0,
                name: n.1,
                instances: 0,
                closed: 0,
                mem: MemStats::default(),
            });
            e.instances += 1;
            e.closed += u64::from(s.closed.is_some());
            e.mem.add(&s.mem);
        }
        for (n, e) in snames.iter_mut() {
            e.mem.peak_bytes = self.span_levels.peak(n);
        }
        let total = self.total;
        let sizes = self.sizes;
        let dropped = Dropped {
            overflow_allocations: 0,
            lost_operations: self
                .pool
                .orphans
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed)
                + events::DROPPED_EVENTS.load(Ordering::Relaxed),
            span_stack_overflow: events::SPAN_STACK_OVERFLOW.load(Ordering::Relaxed),
        };
        Snapshot {
            taken_at: SystemTime::now(),
            tasks,
            task_names: names.into_values().collect(),
            spans,
            span_names: snames.into_values().collect(),
            no_span: self.no_span,
            buckets: self.buckets,
            total,
            allocation_sizes: sizes,
            dropped,
            tracker_bytes: self.tracker_bytes(),
        }
    }
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
