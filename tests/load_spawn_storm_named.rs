//! Spawn storm, wrapped tasks (`heapspan::spawn`, `heapspan::instrument`): 100,000 short
//! named tasks on a 2-worker runtime, about nine allocations each, a share of them freed by
//! another task. The name's figures are exact and every one of the 100,000 tasks is named and
//! ended; the tasks still held individually have exactly their own figures; nothing is
//! dropped; everything comes back to the baseline; and heapspan's totals equal an independent
//! count made by the inner allocator.

mod load;

use std::collections::HashMap;

use load::storm::{self, ALLOCS_PER_TASK};
use load::{assert_lossless, four, quiescent_point};

#[global_allocator]
static ALLOC: heapspan::Allocator<load::Counting> = heapspan::Allocator::new(load::Counting);

const N: usize = 100_000;
const NAMES: (&str, &str, &str) = ("storm", "storm-consumer", "storm-spawner");

#[test]
fn spawn_storm_of_named_tasks_is_exact_per_name_and_matches_the_inner_allocator() {
    let guard = heapspan::builder().start().expect("heapspan starts");
    let map_bytes = storm::map_table_bytes();
    for i in [0, 1, 7, 19, 23, 99_999] {
        let ((), allocs, bytes) = load::measure_here(|| storm::task_body_sync(i));
        assert_eq!(
            (allocs, bytes),
            (ALLOCS_PER_TASK, storm::task_bytes(i, map_bytes)),
            "task {i}'s allocations as computed"
        );
    }
    let want_bytes: u64 = (0..N).map(|i| storm::task_bytes(i, map_bytes)).sum();
    let max_task_bytes = (0..N)
        .map(|i| storm::task_bytes(i, map_bytes))
        .max()
        .unwrap();

    // A small storm first: lazy set-up happens before the comparison opens.
    storm::warm_up(Some(("warm-storm", "warm-consumer", "warm-spawner")));

    let mb = storm::Mailbox::new(storm::parcels(N));
    let batch = Vec::with_capacity(storm::parcels(N));

    // Comparison point 1: no runtime exists, the aggregator is held: only this thread runs.
    let (s1, c1, a1) = quiescent_point(&guard);
    drop(a1);

    let threads = load::thread_count();
    let rt = load::runtime(2);
    let out = storm::run(&rt, N, Some(NAMES), &mb, batch);
    assert_eq!(
        out.received,
        storm::parcels(N),
        "every parcel reached the consumer"
    );

    // Every task has ended and the consumer has freed every parcel: the figures are final.
    let snap = guard.snapshot();
    let name = snap.task_name(NAMES.0).cloned();
    let index: HashMap<u64, usize> = out.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut held = 0;
    let mut wrong = Vec::new();
    for t in snap.tasks_named(NAMES.0) {
        held += 1;
        let i = *index.get(&t.key.id).expect("a task of this storm");
        let want = storm::task_bytes(i, map_bytes);
        let m = t.mem;
        if (m.allocated_bytes, m.allocations, m.freed_bytes, m.frees)
            != (want, ALLOCS_PER_TASK, want, ALLOCS_PER_TASK)
            || m.peak_bytes > want
            || t.ended.is_none()
        {
            wrong.push((i, want, m));
        }
    }
    // Printed only when something is off: anything printed here, between the two comparison
    // points, would grow the test harness's capture buffer (a block outside heapspan's
    // bucket that stays live, so the baseline check would see it).
    if !wrong.is_empty() || !snap.is_exact() || snap.dropped.total() != 0 {
        eprintln!(
            "storm of {N} named: name {name:?}; {held} held individually, {} of them with figures \
             other than their own (first: {:?}); dropped {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(3)],
            snap.dropped
        );
    }
    assert_lossless(&snap, "after the storm");
    let name = name.expect("the storm's name is known");
    assert_eq!(name.tasks, N as u64, "all {N} tasks are named");
    assert_eq!(name.ended, N as u64, "all {N} tasks ended");
    assert_eq!(
        four(&name.mem),
        [
            ALLOCS_PER_TASK * N as u64,
            want_bytes,
            ALLOCS_PER_TASK * N as u64,
            want_bytes
        ],
        "[allocations, allocated, frees, freed] of the name: exactly the tasks' own, all freed \
         (a share by the consumer)"
    );
    assert_eq!(name.mem.live_bytes(), 0);
    assert!(
        name.task_peak_bytes <= max_task_bytes,
        "no single task's peak exceeds what it allocated: {} > {max_task_bytes}",
        name.task_peak_bytes
    );
    assert!(
        held > 0,
        "the most recent ended tasks are held individually"
    );
    assert!(
        wrong.is_empty(),
        "tasks held individually have exactly their own figures: {wrong:?}"
    );
    let consumer = snap.task_name(NAMES.1).expect("the consumer is named");
    assert_eq!((consumer.tasks, consumer.ended), (1, 1));
    assert_eq!(
        four(&consumer.mem),
        [0; 4],
        "the consumer allocated nothing; what it freed is charged to the tasks that allocated it"
    );
    drop((index, wrong, name, snap));

    let batch = out.batch;
    drop(out.ids);
    // Waits until the workers' threads are gone (their exit frees what tasks left in
    // thread-locals): after this nothing but this thread runs.
    load::drop_runtime_and_join(rt, threads);

    // Comparison point 2.
    let (s2, a2) = load::assert_second_point(&guard, &s1, c1, "storm of named tasks");
    let spawner = s2.task_name(NAMES.2).expect("the spawner is named");
    assert_eq!((spawner.tasks, spawner.ended), (1, 1));
    assert_eq!(
        spawner.mem.live_bytes(),
        0,
        "the spawner's blocks (tokio's task cells among them) are all freed: {spawner:?}"
    );
    drop((s1, s2, a2, mb, batch));
}
