//! A service-shaped program for the hand-off matrix (`tests/handoff_matrix.rs`): producer
//! tasks allocate buffers of planted sizes and hand most of them off; heapspan writes its
//! OTLP JSON file (`HEAPSPAN_OTLP_FILE`), where the test reads the matrix's metrics.
//!
//! `APP_MODE=service` (the default), [`PRODUCERS`] tasks named `producer`, each:
//! - sends a [`TO_CONSUMER`]-byte buffer over a channel to the task named `consumer`, which
//!   frees it;
//! - frees a [`SELF_FREED`]-byte buffer itself (no hand-off);
//! - every second producer sends a [`TO_THREAD`]-byte buffer to a plain `std` thread, which
//!   frees it outside any task.
//!
//! `APP_MODE=names`: [`NAMED`] tasks, each with a name of its own (`p0`, `p1`, …), send one
//! [`TO_CONSUMER`]-byte buffer to the plain thread: more pairs than the thread's table has
//! cells (64) and than the export's cap (`APP_MAX_CELLS`, default 10). (The thread does
//! nothing else, so its table holds these pairs only; tokio's own hand-offs on the worker
//! threads, such as a task's cell freed while that task is current, stay in theirs.)
//!
//! The channels are `std` sync channels with room for every message, made by `main` before
//! heapspan starts: a send or receive allocates nothing, and their buffers are not counted,
//! so the planted buffers are the only blocks the producers hand off (tokio's own, such as a
//! task's cell allocated outside any task and freed while that task is current, make cells
//! of their own). The runtime is dropped before the last snapshot, so that nothing is freed
//! between it and the last export. Prints the snapshot's matrix (`cell <allocated_by> ->
//! <freed_by> bytes=… frees=…`, `overflow frees=…`) and `DONE`.

use std::sync::mpsc::{sync_channel, TryRecvError};

use heapspan_integration_tests::handoff::{NAMED, PRODUCERS, SELF_FREED, TO_CONSUMER, TO_THREAD};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

fn buffer(len: usize, seed: usize) -> Vec<u8> {
    vec![seed as u8; len]
}

fn main() {
    let mode = std::env::var("APP_MODE").unwrap_or_else(|_| "service".to_owned());
    let max_cells: usize = std::env::var("APP_MAX_CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Static names, made (and leaked) before heapspan starts: no name is freed by a task.
    let names: Vec<&'static str> = (0..NAMED)
        .map(|i| &*Box::leak(format!("p{i}").into_boxed_str()))
        .collect();
    // The channels' buffers too: no task allocates them.
    let by_name = mode == "names";
    let tasks = if by_name { NAMED } else { PRODUCERS };
    let (to_consumer, consumed) = sync_channel::<Vec<u8>>(tasks);
    let (to_thread, thread_rx) = sync_channel::<Vec<u8>>(tasks);
    let export = heapspan::export::ExportConfig::default().max_handoff_cells(max_cells);
    let guard = heapspan::Builder::from_env()
        .and_then(|b| b.export(export).start())
        .expect("heapspan starts");
    let thread = std::thread::spawn(move || {
        let mut freed = 0;
        for b in thread_rx {
            freed += b.len();
        }
        freed
    });
    let consumer_bytes = rt.block_on(async move {
        let consumer = heapspan::spawn("consumer", async move {
            let mut freed = 0;
            loop {
                match consumed.try_recv() {
                    Ok(b) => freed += b.len(),
                    Err(TryRecvError::Empty) => tokio::task::yield_now().await,
                    Err(TryRecvError::Disconnected) => return freed,
                }
            }
        });
        let mut producers = Vec::with_capacity(tasks);
        for (i, &name) in names.iter().cycle().take(tasks).enumerate() {
            let (to_consumer, to_thread) = (to_consumer.clone(), to_thread.clone());
            let work = async move {
                if by_name {
                    to_thread
                        .try_send(buffer(TO_CONSUMER, i))
                        .expect("room for every message");
                } else {
                    to_consumer
                        .try_send(buffer(TO_CONSUMER, i))
                        .expect("room for every message");
                    let own = buffer(SELF_FREED, i);
                    tokio::task::yield_now().await;
                    drop(std::hint::black_box(own));
                    if i % 2 == 0 {
                        to_thread
                            .try_send(buffer(TO_THREAD, i))
                            .expect("room for every message");
                    }
                }
            };
            producers.push(if by_name {
                heapspan::spawn(name, work)
            } else {
                heapspan::spawn("producer", work)
            });
        }
        for p in producers {
            p.await.expect("producer");
        }
        drop((to_consumer, to_thread));
        consumer.await.expect("consumer")
    });
    let thread_bytes = thread.join().expect("thread");
    // The runtime's threads end first: what they free on their way out is in the snapshot,
    // and nothing is freed between the snapshot and the last export.
    drop(rt);
    let snap = guard.snapshot();
    for c in &snap.handoffs.cells {
        println!(
            "cell {} -> {} bytes={} frees={}",
            c.allocated_by, c.freed_by, c.bytes, c.frees
        );
    }
    println!("overflow frees={}", snap.handoffs.overflow_frees);
    println!("DONE consumer={consumer_bytes} thread={thread_bytes}");
    drop(guard);
}
