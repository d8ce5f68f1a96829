//! Regression test: a thread's first allocation after start is indexed.
//!
//! `Allocator::alloc_indexed` (src/alloc/mod.rs) indexes an allocation only when the thread
//! already has its table (`l.state` is a claimed `ThreadState`); a thread claims its table in
//! `record_cold`, which runs *after* that decision, when the allocation is counted. So the first
//! allocation of every thread that has not allocated since heapspan started is counted but
//! never indexed: it is missing from every graph, although `IndexMode::Full` promises every
//! allocation made while heapspan runs. The threads concerned are all those alive at start:
//! with `#[tokio::main]` and heapspan started inside `main`, each worker's first allocation
//! (often a long-lived one) is invisible to the graph. tests/graph_fixtures.rs starts heapspan
//! before its runtimes for this reason.
//!
//! The fix (in place): in `alloc_indexed`, when `l.state` is null and the thread is not inside
//! heapspan, claim the table first (as `record_cold` does, under `set_busy`), then reserve the
//! entry.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::sync::mpsc;

use heapspan::IndexMode;

#[test]
fn the_first_allocation_of_a_thread_born_before_start_is_indexed() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (block_tx, block_rx) = mpsc::channel::<usize>();
    // Born, and done allocating for its own start, before heapspan starts.
    let thread = std::thread::spawn(move || {
        go_rx.recv().expect("go");
        let first = Box::new([0xA5A5_0000_0000_0001u64; 4]);
        let second = Box::new([0xA5A5_0000_0000_0002u64; 4]);
        block_tx
            .send(std::ptr::from_ref(&*first) as usize)
            .expect("sent");
        block_tx
            .send(std::ptr::from_ref(&*second) as usize)
            .expect("sent");
        // Kept alive until the graph is taken.
        go_rx.recv().expect("go");
        drop((first, second));
    });
    let guard = heapspan::builder()
        .live_index(IndexMode::Full)
        .start()
        .expect("heapspan starts");
    go_tx.send(()).expect("go");
    let first = block_rx.recv().expect("first");
    let second = block_rx.recv().expect("second");
    let g = guard.graph().expect("the live index is on");
    go_tx.send(()).expect("go");
    thread.join().expect("joined");
    assert!(
        g.node_at(second).is_some(),
        "the thread's second allocation is indexed"
    );
    assert!(
        g.node_at(first).is_some(),
        "the first allocation after start of a thread born before it is missing from the graph"
    );
}
