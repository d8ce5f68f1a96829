//! `task.large_future`: a task whose future keeps a 4 KiB array across an `.await` (so the
//! array is part of the future's state) is found with the future's exact size, the
//! compiler's, as heapspan's wrapper reports it. Three such tasks run under one name and make
//! one finding; a task with a small future is not found.
//!
//! No live index is needed: the size comes with the task's start.

mod common;

use heapspan::findings::{Finding, Kind, Severity, Verdict};
use tokio::sync::{oneshot, watch};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const STATE: usize = 4096;
const TASKS: usize = 3;

use common::evidence_int as evidence;

/// A future that holds `STATE` bytes across its `.await`.
async fn big_state(seed: u8, ready: oneshot::Sender<()>, mut stop: watch::Receiver<bool>) -> u64 {
    let mut state = [seed; STATE];
    state[STATE - 1] = seed.wrapping_add(1);
    ready.send(()).unwrap();
    let _ = stop.wait_for(|s| *s).await;
    std::hint::black_box(&state)
        .iter()
        .map(|&b| u64::from(b))
        .sum()
}

/// A future with a few words of state.
async fn small_state(ready: oneshot::Sender<()>, mut stop: watch::Receiver<bool>) -> u64 {
    let n = 7u64;
    ready.send(()).unwrap();
    let _ = stop.wait_for(|s| *s).await;
    n
}

#[test]
fn a_future_of_1024_bytes_or_more_is_found_with_its_size() {
    let guard = common::start_with_manual_windows(heapspan::Builder::default());
    let rt = common::runtime(2);

    let (stop, stop_rx) = watch::channel(false);
    let (big_size, small_size, handles) = rt.block_on(async {
        let mut readies = Vec::new();
        let mut handles = Vec::new();
        let mut big_size = 0;
        for i in 0..TASKS {
            let (ready_tx, ready) = oneshot::channel();
            let fut = big_state(i as u8, ready_tx, stop_rx.clone());
            big_size = std::mem::size_of_val(&fut);
            handles.push(heapspan::spawn("big_state", fut));
            readies.push(ready);
        }
        let (ready_tx, ready) = oneshot::channel();
        let fut = small_state(ready_tx, stop_rx.clone());
        let small_size = std::mem::size_of_val(&fut);
        handles.push(heapspan::spawn("small_state", fut));
        readies.push(ready);
        for r in readies {
            r.await.unwrap();
        }
        (big_size, small_size, handles)
    });
    assert!(big_size > STATE, "the array is in the future's state");
    assert!(small_size < 1024);

    let findings = guard.cut_window();
    let large: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == Kind::LargeFuture)
        .collect();
    assert_eq!(large.len(), 1, "one finding per task name: {large:#?}");
    let f = large[0];
    assert_eq!(f.task_name.as_deref(), Some("big_state"));
    assert_eq!(f.severity, Severity::Low);
    assert_eq!(f.verdict, Verdict::Confirmed, "the compiler's size");
    assert!(f.score >= 0.5, "reported: {}", f.score);
    // Exact: the size is `size_of` of the spawned future, no tolerance.
    assert_eq!(f.bytes, big_size as u64);
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_FUTURE_SIZE),
        big_size as i64
    );
    assert_eq!(f.allocations, TASKS as u64, "the running tasks of the name");
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_TASKS),
        TASKS as i64
    );
    assert_eq!(f.tasks.len(), TASKS);
    assert!(
        f.location
            .as_ref()
            .is_some_and(|l| l.file.ends_with("findings_large_future.rs")),
        "the spawn location: {:?}",
        f.location
    );

    rt.block_on(async {
        stop.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
    });
    // Once the tasks have ended, nothing is running with a large future.
    let after = guard.cut_window();
    assert!(
        !after.iter().any(|f| f.kind == Kind::LargeFuture),
        "{after:#?}"
    );
}
