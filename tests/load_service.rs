//! Service-shaped load: 16 named worker tasks on a 2-worker runtime serve "requests" as fast as
//! they can for 2 seconds (a time budget, checked between requests). Each request opens three
//! nested span instances, `request` ⊃ `handler` ⊃ `db` (the first two entered around every
//! poll with `.instrument()`, `db` with `.entered()`), yields between its allocations so that
//! its polls move between the workers, and stores a row in a shared cache where it replaces,
//! and frees, a row that another request (usually of another task) allocated: cross-task
//! frees. Exact per span name and per task name, nothing dropped.

mod load;

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info_span, Instrument};

use load::{assert_lossless, four, sub4, yield_once};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const WORKERS: usize = 16;
const BUDGET: Duration = Duration::from_secs(2);
const SLOTS: usize = 4096;

/// The shared cache: a request's row replaces the one in its slot.
static CACHE: [Mutex<Option<Box<[u8]>>>; SLOTS] = [const { Mutex::new(None) }; SLOTS];

fn req_len(t: usize, j: usize) -> usize {
    64 + (j + t) % 64
}
fn handler_len(t: usize, j: usize) -> usize {
    32 + (3 * j + t) % 32
}
fn words_len(t: usize, j: usize) -> usize {
    4 + (j + 2 * t) % 12
}
fn row_len(t: usize, j: usize) -> usize {
    40 + (7 * j + t) % 90
}
fn slot(t: usize, j: usize) -> usize {
    (t * 7919 + j * 104_729) % SLOTS
}

/// What a worker did, by span name: `[allocations, bytes]`.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    requests: u64,
    request: [u64; 2],
    handler: [u64; 2],
    db: [u64; 2],
}

impl Tally {
    fn add(&mut self, t: usize, j: usize) {
        self.requests += 1;
        self.request[0] += 1;
        self.request[1] += req_len(t, j) as u64;
        self.handler[0] += 1;
        self.handler[1] += handler_len(t, j) as u64;
        self.db[0] += 2;
        self.db[1] += (8 * words_len(t, j) + row_len(t, j)) as u64;
    }

    fn merge(&mut self, o: &Tally) {
        self.requests += o.requests;
        for (a, b) in [
            (&mut self.request, &o.request),
            (&mut self.handler, &o.handler),
            (&mut self.db, &o.db),
        ] {
            a[0] += b[0];
            a[1] += b[1];
        }
    }
}

async fn handler(t: usize, j: usize) {
    let len = handler_len(t, j);
    let mut s = String::with_capacity(len);
    write!(s, "{j:>len$}").unwrap();
    assert!(s.len() == len && s.capacity() == len);
    yield_once().await;
    {
        let _db = info_span!("db").entered();
        let n = words_len(t, j);
        let mut words: Vec<u64> = Vec::with_capacity(n);
        words.extend((0..n as u64).map(|k| k * j as u64));
        let row = vec![t as u8; row_len(t, j)].into_boxed_slice();
        // The previous row of this slot was allocated by another request's `db` span: its
        // free is charged there, not here.
        let old = CACHE[slot(t, j)].lock().unwrap().replace(row);
        drop(old);
        drop(black_box(words));
    }
    yield_once().await;
    drop(black_box(s));
}

async fn request(t: usize, j: usize) {
    let buf = vec![t as u8; req_len(t, j)];
    yield_once().await;
    handler(t, j).instrument(info_span!("handler")).await;
    drop(black_box(buf));
}

/// Serves requests until `deadline` (checked between requests) or `max` of them.
async fn worker(t: usize, deadline: Instant, max: usize) -> Tally {
    let mut tally = Tally::default();
    let mut j = 0;
    while j < max && Instant::now() < deadline {
        request(t, j).instrument(info_span!("request")).await;
        tally.add(t, j);
        j += 1;
    }
    tally
}

fn serve(rt: &tokio::runtime::Runtime, deadline: Instant, max: usize) -> Tally {
    rt.block_on(async {
        let handles: Vec<_> = (0..WORKERS)
            .map(|t| heapspan::spawn("svc-worker", worker(t, deadline, max)))
            .collect();
        let mut all = Tally::default();
        for h in handles {
            all.merge(&h.await.unwrap());
        }
        all
    })
}

fn cached_bytes() -> u64 {
    CACHE
        .iter()
        .map(|c| c.lock().unwrap().as_ref().map_or(0, |r| r.len() as u64))
        .sum()
}

fn clear_cache() {
    for c in &CACHE {
        drop(c.lock().unwrap().take());
    }
}

#[track_caller]
fn span_delta(a: &heapspan::Snapshot, b: &heapspan::Snapshot, name: &str) -> ([u64; 4], u64, u64) {
    let get = |s: &heapspan::Snapshot| {
        s.span_name(name)
            .map(|n| (four(&n.mem), n.instances, n.closed))
            .unwrap_or(([0; 4], 0, 0))
    };
    let (ma, ia, ca) = get(a);
    let (mb, ib, cb) = get(b);
    (sub4(mb, ma), ib - ia, cb - ca)
}

#[test]
fn service_load_is_exact_per_span_name_and_task_name() {
    let guard = heapspan::init().expect("heapspan starts with its layer");
    let rt = load::runtime_with_warm_registry(2);
    // A few requests first: the callsites register (once per process) and every code path
    // has run once; then the cache is emptied, so that what it holds later is this run's.
    let warm = serve(&rt, Instant::now() + Duration::from_secs(60), 20);
    assert_eq!(warm.requests, 20 * WORKERS as u64);
    clear_cache();

    let s0 = guard.snapshot();
    let started = Instant::now();
    let tally = serve(&rt, started + BUDGET, usize::MAX);
    let elapsed = started.elapsed();
    let s1 = guard.snapshot();
    let held = cached_bytes();
    eprintln!(
        "service: {} requests in {:.2?} ({:.0}/s, 3 span instances each) by {WORKERS} tasks on 2 \
         workers; {held} bytes of rows cached; dropped {:?}",
        tally.requests,
        elapsed,
        tally.requests as f64 / elapsed.as_secs_f64(),
        s1.dropped
    );
    for n in &s1.span_names {
        eprintln!(
            "  span name {}::{}: {} instances ({} closed), {:?}",
            n.target, n.name, n.instances, n.closed, n.mem
        );
    }
    eprintln!(
        "  expected: request {:?}, handler {:?}, db {:?} ([allocations, bytes]); no_span {:?}",
        tally.request, tally.handler, tally.db, s1.no_span
    );
    assert!(tally.requests > 0);
    assert_lossless(&s1, "after the load");

    let r = tally.requests;
    for (name, want) in [("request", tally.request), ("handler", tally.handler)] {
        let (d, instances, closed) = span_delta(&s0, &s1, name);
        assert_eq!(
            d,
            [want[0], want[1], want[0], want[1]],
            "{name}: [allocations, allocated, frees, freed] are exactly the requests' own, all freed"
        );
        assert_eq!(
            (instances, closed),
            (r, r),
            "{name}: one instance per request, all closed"
        );
        assert_eq!(s1.span_name(name).unwrap().mem.live_bytes(), 0, "{name}");
    }
    let (d, instances, closed) = span_delta(&s0, &s1, "db");
    assert_eq!(
        [d[0], d[1]],
        tally.db,
        "db: [allocations, allocated] are exactly the requests' own"
    );
    assert_eq!(
        (instances, closed),
        (r, r),
        "db: one instance per request, all closed"
    );
    let db = s1.span_name("db").unwrap().mem;
    assert_eq!(
        db.live_bytes(),
        held as i64,
        "db: live bytes are the rows still in the cache (every other block freed, whoever freed it)"
    );
    let w0 = s0
        .task_name("svc-worker")
        .map(|n| (four(&n.mem), n.tasks, n.ended));
    let w1 = s1.task_name("svc-worker").expect("the workers are named");
    let (m0, t0, e0) = w0.unwrap_or(([0; 4], 0, 0));
    let dw = sub4(four(&w1.mem), m0);
    assert_eq!(
        (w1.tasks - t0, w1.ended - e0),
        (WORKERS as u64, WORKERS as u64),
        "svc-worker: this run's tasks, all ended"
    );
    assert_eq!(
        [dw[0], dw[1]],
        [
            tally.request[0] + tally.handler[0] + tally.db[0],
            tally.request[1] + tally.handler[1] + tally.db[1]
        ],
        "svc-worker: [allocations, allocated] are its requests' (nothing outside the spans)"
    );
    assert_eq!(
        w1.mem.live_bytes(),
        held as i64,
        "svc-worker: what the cache holds"
    );

    // The cache is emptied by this thread: every row's free goes to the `db` span (and the
    // worker task) that allocated it.
    clear_cache();
    let s2 = guard.snapshot();
    assert_lossless(&s2, "after the cache is emptied");
    let db = s2.span_name("db").unwrap().mem;
    assert_eq!(db.live_bytes(), 0, "db: nothing live");
    let (d, _, _) = span_delta(&s0, &s2, "db");
    assert_eq!(
        d,
        [tally.db[0], tally.db[1], tally.db[0], tally.db[1]],
        "db: every block freed, none twice"
    );
    let w2 = s2.task_name("svc-worker").unwrap();
    assert_eq!(w2.mem.live_bytes(), 0, "svc-worker: nothing live");
    for name in ["request", "handler"] {
        assert_eq!(
            span_delta(&s1, &s2, name).0,
            [0; 4],
            "{name}: untouched by the cache's frees"
        );
    }
    drop(rt);
}
