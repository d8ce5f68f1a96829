//! The spawn storm workload, shared by `load_spawn_storm.rs` (plain `tokio::spawn`) and
//! `load_spawn_storm_named.rs` (`heapspan::spawn`).
//!
//! One spawner task spawns `n` short tasks and awaits them all. Task `i` makes nine
//! allocations whose sizes are a function of `i` (so the expected figures are computed here,
//! not measured): a string written with `write!` into a buffer sized for it, a `Vec<u64>` of
//! 8..=31 items, a `HashMap<u64, String>` holding four clones of the string, a parcel of
//! bytes, and a scratch buffer. The parcel (and, for one task in four, the `Vec<u64>`) goes to
//! a consumer task through a mailbox and is freed there: a cross-task free, charged back to
//! task `i`. Everything else task `i` frees itself. Between its allocations it yields by
//! waking itself, so tasks move between the two workers.
//!
//! Nothing else allocates inside these tasks: the mailbox's queue is allocated up front with
//! room for every parcel (posting never grows it), waking the consumer (`Notify`) and
//! scheduling allocate nothing, and [`super::YieldOnce`] wakes the task directly (tokio's
//! `yield_now` would push its waker onto a per-worker list that grows now and then). The
//! consumer allocates nothing either: it swaps the queue with a second buffer of the same
//! capacity and clears it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{measure_here, task_id_u64, yield_once};

/// Allocations task `i` makes.
pub const ALLOCS_PER_TASK: u64 = 9;

pub fn str_len(i: usize) -> usize {
    12 + i % 20
}
pub fn words_len(i: usize) -> usize {
    8 + i % 24
}
pub fn parcel_len(i: usize) -> usize {
    16 + (i * 7) % 200
}
pub fn scratch_len(i: usize) -> usize {
    24 + i % 40
}

/// Whether task `i` also sends its `Vec<u64>` to the consumer.
pub fn sends_words(i: usize) -> bool {
    i.is_multiple_of(4)
}

/// Parcels the consumer receives from `n` tasks.
pub fn parcels(n: usize) -> usize {
    n + (0..n).filter(|&i| sends_words(i)).count()
}

/// Bytes of the table of a `HashMap<u64, String>::with_capacity(4)`: the standard library's
/// business (hashbrown's layout), so measured once with the counting inner allocator on this
/// thread instead of assumed.
pub fn map_table_bytes() -> u64 {
    let (m, allocs, bytes) = measure_here(|| {
        let m: HashMap<u64, String> = HashMap::with_capacity(4);
        black_box(m)
    });
    assert_eq!(
        allocs, 1,
        "an empty map with room for 4 allocates its table once"
    );
    drop(m);
    bytes
}

/// Bytes task `i` allocates (all of them freed by the end, by it or by the consumer).
pub fn task_bytes(i: usize, map_bytes: u64) -> u64 {
    let s = str_len(i) as u64;
    // The string, its four clones (a clone's capacity is its length), the words, the map's
    // table, the parcel, the scratch buffer.
    5 * s + 8 * words_len(i) as u64 + map_bytes + parcel_len(i) as u64 + scratch_len(i) as u64
}

/// What the consumer gets.
pub enum Parcel {
    Bytes(#[allow(dead_code)] Vec<u8>),
    Words(#[allow(dead_code)] Vec<u64>),
}

/// A queue with room for every parcel of the run, and a wake-up.
pub struct Mailbox {
    q: Mutex<Vec<Parcel>>,
    notify: Notify,
}

impl Mailbox {
    /// Allocated by the caller, outside the measured tasks.
    pub fn new(capacity: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            q: Mutex::new(Vec::with_capacity(capacity)),
            notify: Notify::new(),
        })
    }

    fn post(&self, p: Parcel) {
        let mut q = self.q.lock().unwrap();
        assert!(q.len() < q.capacity(), "the mailbox never grows");
        q.push(p);
        drop(q);
        self.notify.notify_one();
    }
}

/// The nine allocations of task `i`, as the tasks make them but synchronously and with the
/// parcels dropped here: checks `task_bytes` against the counting inner allocator.
pub fn task_body_sync(i: usize) {
    let len = str_len(i);
    let mut s = String::with_capacity(len);
    write!(s, "{i:0>len$}").unwrap();
    let n = words_len(i);
    let mut words: Vec<u64> = Vec::with_capacity(n);
    words.extend((0..n as u64).map(|k| k ^ i as u64));
    let mut map: HashMap<u64, String> = HashMap::with_capacity(4);
    for k in 0..4 {
        map.insert(k, s.clone());
    }
    let parcel = vec![i as u8; parcel_len(i)];
    let scratch = vec![0u8; scratch_len(i)];
    black_box((&s, &words, &map, &parcel, &scratch));
}

/// Task `i`.
pub async fn storm_task(i: usize, mb: Arc<Mailbox>) {
    let len = str_len(i);
    let mut s = String::with_capacity(len);
    write!(s, "{i:0>len$}").unwrap();
    assert!(s.len() == len && s.capacity() == len);
    yield_once().await;
    let n = words_len(i);
    let mut words: Vec<u64> = Vec::with_capacity(n);
    words.extend((0..n as u64).map(|k| k ^ i as u64));
    let mut map: HashMap<u64, String> = HashMap::with_capacity(4);
    for k in 0..4 {
        map.insert(k, s.clone());
    }
    yield_once().await;
    let parcel = vec![i as u8; parcel_len(i)];
    let scratch = vec![0u8; scratch_len(i)];
    black_box(&scratch);
    drop(scratch);
    mb.post(Parcel::Bytes(parcel));
    if sends_words(i) {
        mb.post(Parcel::Words(words));
    } else {
        drop(black_box(words));
    }
    yield_once().await;
    drop(black_box(map));
    drop(s);
}

/// Receives `expected` parcels and frees them; gives its buffer back (it was allocated by the
/// caller and is freed by the caller).
pub async fn consume(
    mb: Arc<Mailbox>,
    expected: usize,
    mut batch: Vec<Parcel>,
) -> (usize, Vec<Parcel>) {
    let mut got = 0;
    while got < expected {
        mb.notify.notified().await;
        {
            let mut q = mb.q.lock().unwrap();
            std::mem::swap(&mut *q, &mut batch);
        }
        got += batch.len();
        batch.clear(); // the cross-task frees
    }
    (got, batch)
}

/// What a storm run reports.
pub struct Outcome {
    /// Task ids (`TaskKey::id`), by index.
    pub ids: Vec<u64>,
    pub consumer: u64,
    pub spawner: u64,
    pub received: usize,
    /// The consumer's buffer, handed back (free it where it does not disturb a comparison).
    pub batch: Vec<Parcel>,
}

/// Runs a storm of `n` tasks on `rt`; `named` wraps every task with `heapspan::spawn` /
/// `heapspan::instrument` under `names` = (tasks, consumer, spawner). `mb` and `batch` must
/// have room for `parcels(n)`.
pub fn run(
    rt: &tokio::runtime::Runtime,
    n: usize,
    named: Option<(&'static str, &'static str, &'static str)>,
    mb: &Arc<Mailbox>,
    batch: Vec<Parcel>,
) -> Outcome {
    let expected = parcels(n);
    let mb = mb.clone();
    let spawner = async move {
        let cfut = consume(mb.clone(), expected, batch);
        let consumer = match named {
            Some((_, c, _)) => heapspan::spawn(c, cfut),
            None => tokio::spawn(cfut),
        };
        let consumer_id = task_id_u64(consumer.id());
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let fut = storm_task(i, mb.clone());
            handles.push(match named {
                Some((t, _, _)) => heapspan::spawn(t, fut),
                None => tokio::spawn(fut),
            });
        }
        let ids: Vec<u64> = handles.iter().map(|h| task_id_u64(h.id())).collect();
        for h in handles {
            h.await.unwrap();
        }
        let (received, batch) = consumer.await.unwrap();
        (ids, consumer_id, received, batch)
    };
    let h = match named {
        Some((_, _, s)) => rt.spawn(heapspan::instrument(s, spawner)),
        None => rt.spawn(spawner),
    };
    let spawner_id = task_id_u64(h.id());
    let (ids, consumer, received, batch) = rt.block_on(h).unwrap();
    Outcome {
        ids,
        consumer,
        spawner: spawner_id,
        received,
        batch,
    }
}

/// A small storm of 1000 tasks on a runtime of its own, before a comparison opens: whatever
/// tokio, std or heapspan set up lazily, once per process or per thread, is set up by then.
///
/// The runtime's threads are gone when it returns (their exit frees what tasks left in
/// thread-locals, which must not happen inside the comparison).
pub fn warm_up(named: Option<(&'static str, &'static str, &'static str)>) {
    let threads = super::thread_count();
    let rt = super::runtime(2);
    let mb = Mailbox::new(parcels(1000));
    let out = run(&rt, 1000, named, &mb, Vec::with_capacity(parcels(1000)));
    assert_eq!(out.received, parcels(1000));
    super::drop_runtime_and_join(rt, threads);
}
