//! Stalled consumer: heapspan's aggregator is held still (`Guard::hold_aggregator`, as a
//! starved background thread would be) while 50,000 named tasks on a 2-worker runtime make
//! about 4.3 million operations under 350,000 distinct keys (each task, and each of its six
//! span instances); then the hold is dropped. Every figure is still exact and nothing was
//! dropped: heapspan's queues held everything until the aggregator came back.

mod load;

use std::hint::black_box;

use tracing::info_span;

use load::{assert_lossless, four, sub4, yield_once};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const TASKS: usize = 50_000;
const SPANS: usize = 6;
const ALLOCS: usize = 8;
/// Of each span's allocations, the first `KEPT` outlive it (returned by the task); the others
/// are freed inside the span.
const KEPT: usize = 2;
/// Bytes of the task's own `Vec<Box<[u8]>>` of kept blocks (allocated outside its spans).
const KEPT_VEC_BYTES: u64 = (SPANS * KEPT * std::mem::size_of::<Box<[u8]>>()) as u64;

fn size(t: usize, s: usize, k: usize) -> usize {
    8 + (t * 13 + s * 31 + k * 7) % 250
}

/// Task `t`: six spans, each allocating eight blocks and freeing six of them, with a yield
/// (a new poll, maybe on the other worker) between spans. Returns the kept blocks.
async fn task(t: usize) -> Vec<Box<[u8]>> {
    let mut kept: Vec<Box<[u8]>> = Vec::with_capacity(SPANS * KEPT);
    for s in 0..SPANS {
        let span = info_span!("stall_span");
        {
            let _e = span.enter();
            for k in 0..ALLOCS {
                let b = vec![k as u8; size(t, s, k)].into_boxed_slice();
                if k < KEPT {
                    kept.push(b);
                } else {
                    drop(black_box(b));
                }
            }
        }
        drop(span);
        yield_once().await;
    }
    kept
}

fn run(rt: &tokio::runtime::Runtime, name: &'static str, n: usize) -> Vec<Vec<Box<[u8]>>> {
    rt.block_on(async move {
        let handles: Vec<_> = (0..n).map(|t| heapspan::spawn(name, task(t))).collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    })
}

/// `[allocations, allocated bytes, frees, freed bytes]` of the spans of `n` tasks.
fn expected_spans(n: usize) -> [u64; 4] {
    let mut e = [0u64; 4];
    for t in 0..n {
        for s in 0..SPANS {
            for k in 0..ALLOCS {
                let b = size(t, s, k) as u64;
                e[0] += 1;
                e[1] += b;
                if k >= KEPT {
                    e[2] += 1;
                    e[3] += b;
                }
            }
        }
    }
    e
}

#[test]
fn a_held_aggregator_loses_nothing_of_millions_of_operations() {
    let guard = heapspan::init().expect("heapspan starts with its layer");
    let rt = load::runtime_with_warm_registry(2);
    // The same workload, small and under another task name, first: the span's callsite
    // registers (once per process) outside the measured tasks.
    drop(run(&rt, "stall-warmup", 100));
    let s0 = guard.snapshot();
    let n = TASKS as u64;

    let hold = guard.hold_aggregator();
    let kept = run(&rt, "stall-task", TASKS);
    // No snapshot while held (it would fold): the hold ends first.
    drop(hold);
    let s1 = guard.snapshot();

    let want = expected_spans(TASKS);
    let kept_bytes = want[1] - want[3];
    let span0 = s0
        .span_name("stall_span")
        .map(|s| (four(&s.mem), s.instances, s.closed));
    let (m0, i0, c0) = span0.unwrap_or(([0; 4], 0, 0));
    let span1 = s1.span_name("stall_span").cloned();
    let task1 = s1.task_name("stall-task").cloned();
    eprintln!(
        "stalled: {TASKS} tasks x {SPANS} spans ({} distinct keys), about {} operations while \
         held; span name {span1:?}; task name {task1:?}; dropped {:?}",
        n * (SPANS as u64 + 1),
        n * (1 + (SPANS * (2 * ALLOCS - KEPT)) as u64) + 2 * n,
        s1.dropped
    );
    assert_lossless(&s1, "after the hold");
    let span1 = span1.expect("the span name is known");
    assert_eq!(
        (span1.instances - i0, span1.closed - c0),
        (SPANS as u64 * n, SPANS as u64 * n),
        "stall_span: every instance seen and closed"
    );
    assert_eq!(
        sub4(four(&span1.mem), m0),
        want,
        "stall_span: [allocations, allocated, frees, freed] exactly as made"
    );
    assert_eq!(
        span1.mem.live_bytes(),
        kept_bytes as i64,
        "stall_span: live = the kept blocks"
    );
    let task1 = task1.expect("the task name is known");
    assert_eq!(
        (task1.tasks, task1.ended),
        (n, n),
        "stall-task: all named, all ended"
    );
    assert_eq!(
        four(&task1.mem),
        [want[0] + n, want[1] + n * KEPT_VEC_BYTES, want[2], want[3]],
        "stall-task: its spans' figures plus one vector of kept blocks per task"
    );
    assert_eq!(
        task1.mem.live_bytes(),
        (kept_bytes + n * KEPT_VEC_BYTES) as i64,
        "stall-task: live = the kept blocks and their vectors"
    );

    drop(kept);
    let s2 = guard.snapshot();
    assert_lossless(&s2, "after the kept blocks are freed");
    let span2 = s2.span_name("stall_span").unwrap();
    assert_eq!(
        sub4(four(&span2.mem), m0),
        [want[0], want[1], want[0], want[1]],
        "stall_span: every block freed once"
    );
    assert_eq!(span2.mem.live_bytes(), 0);
    let task2 = s2.task_name("stall-task").unwrap();
    assert_eq!(task2.mem.live_bytes(), 0, "stall-task: nothing live");
    assert_eq!(task2.mem.frees, want[0] + n);
    drop(rt);
}
