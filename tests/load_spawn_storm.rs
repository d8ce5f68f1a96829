//! Spawn storm, plain `tokio::spawn`: 100,000 short tasks on a 2-worker runtime, about nine
//! allocations each, a share of them freed by another task. Every task's figures are exact,
//! nothing is dropped, everything comes back to the baseline, and heapspan's totals equal an
//! independent count made by the inner allocator.

mod load;

use std::collections::HashMap;

use load::storm::{self, ALLOCS_PER_TASK};
use load::{assert_lossless, four, quiescent_point};

#[global_allocator]
static ALLOC: heapspan::Allocator<load::Counting> = heapspan::Allocator::new(load::Counting);

const N: usize = 100_000;

#[test]
fn spawn_storm_of_plain_tasks_is_exact_and_matches_the_inner_allocator() {
    let guard = heapspan::builder().start().expect("heapspan starts");
    let map_bytes = storm::map_table_bytes();
    // The nine allocations as computed here are what the inner allocator sees them to be.
    for i in [0, 1, 7, 19, 23, 99_999] {
        let ((), allocs, bytes) = load::measure_here(|| storm::task_body_sync(i));
        assert_eq!(
            (allocs, bytes),
            (ALLOCS_PER_TASK, storm::task_bytes(i, map_bytes)),
            "task {i}'s allocations as computed"
        );
    }

    // A small storm first: lazy set-up happens before the comparison opens.
    storm::warm_up(None);

    // Allocated before the comparison opens and freed after it closes.
    let mb = storm::Mailbox::new(storm::parcels(N));
    let batch = Vec::with_capacity(storm::parcels(N));

    // Comparison point 1: no runtime exists, heapspan's aggregator is held (see
    // `quiescent_point`): nothing runs but this thread.
    let (s1, c1, a1) = quiescent_point(&guard);
    drop(a1);

    let threads = load::thread_count();
    let rt = load::runtime(2);
    let out = storm::run(&rt, N, None, &mb, batch);
    assert_eq!(
        out.received,
        storm::parcels(N),
        "every parcel reached the consumer"
    );

    // All tasks have completed and the consumer has freed every parcel (its completion was
    // awaited): every task's figures are final.
    let snap = guard.snapshot();
    let by_id: HashMap<u64, &heapspan::TaskStats> =
        snap.tasks.iter().map(|t| (t.key.id, t)).collect();
    // Plain `tokio::spawn` tasks have no visible end: heapspan keeps a record of each while
    // it holds memory, and forgets records of tasks that hold nothing once too many of them
    // are idle (it keeps the `ended_task_retention` most recent: see the aggregator's docs).
    // Every record it still has must be exact; the forgotten ones held nothing, and their
    // figures are in the totals compared with the counting allocator below.
    let mut wrong = Vec::new();
    let mut held = 0usize;
    for (i, id) in out.ids.iter().enumerate() {
        let want = storm::task_bytes(i, map_bytes);
        let Some(got) = by_id.get(id).map(|t| t.mem) else {
            continue;
        };
        held += 1;
        let exact = got.allocated_bytes == want
            && got.allocations == ALLOCS_PER_TASK
            && got.freed_bytes == want
            && got.frees == ALLOCS_PER_TASK
            && got.peak_bytes <= want;
        if !exact {
            wrong.push((i, want, got));
        }
    }
    // Printed only when something is off: anything printed here, between the two comparison
    // points, would grow the test harness's capture buffer (a block outside heapspan's
    // bucket that stays live, so the baseline check would see it).
    if !wrong.is_empty() || !snap.is_exact() || snap.dropped.total() != 0 {
        eprintln!(
            "storm of {N}: {} tasks with figures other than their own; dropped {:?}; first: {:?}",
            wrong.len(),
            snap.dropped,
            &wrong[..wrong.len().min(3)]
        );
    }
    assert_lossless(&snap, "after the storm");
    assert!(
        wrong.is_empty(),
        "{} of {N} tasks have figures other than their own nine allocations, all freed \
         (index, expected bytes, figures), first ones: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // The records kept: at least the `ended_task_retention` most recently active of the tasks
    // with no visible end (the storm's, and the runtime's other plain tasks).
    let unended = snap.tasks.iter().filter(|t| t.ended.is_none()).count();
    assert!(
        unended >= heapspan::DEFAULT_ENDED_TASK_RETENTION,
        "the most recent idle tasks are still held individually: {unended} ({held} of the \
         storm's {N})"
    );
    let consumer = by_id.get(&out.consumer).map(|t| t.mem).unwrap_or_default();
    assert_eq!(
        four(&consumer),
        [0; 4],
        "the consumer allocated nothing; what it freed is charged to the tasks that allocated it"
    );
    drop(by_id);
    drop(snap);

    let spawner = out.spawner;
    let received = out.received;
    let batch = out.batch;
    drop(out.ids);
    // Waits until the workers' threads are gone (their exit frees what tasks left in
    // thread-locals): after this nothing but this thread runs.
    load::drop_runtime_and_join(rt, threads);

    // Comparison point 2.
    let (s2, a2) = load::assert_second_point(&guard, &s1, c1, "storm of plain tasks");
    let sp = s2.task_by_id_u64(spawner);
    assert_eq!(
        sp.map(|t| t.mem.live_bytes()).unwrap_or(0),
        0,
        "the spawner's blocks (tokio's task cells among them) are all freed: {sp:?}"
    );
    assert_eq!(received, storm::parcels(N));
    drop((s1, s2, a2, mb, batch));
}

trait ById {
    fn task_by_id_u64(&self, id: u64) -> Option<&heapspan::TaskStats>;
}

impl ById for heapspan::Snapshot {
    fn task_by_id_u64(&self, id: u64) -> Option<&heapspan::TaskStats> {
        self.tasks.iter().find(|t| t.key.id == id)
    }
}
