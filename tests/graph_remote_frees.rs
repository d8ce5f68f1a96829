//! Entries of blocks freed on another thread go back to their table without any scan: a
//! thread whose allocations are all freed elsewhere (tokio's work stealing, channels) keeps
//! indexing, and its table does not grow.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::sync::mpsc;

#[test]
fn blocks_freed_elsewhere_return_their_entries() {
    const ROUNDS: usize = 200;
    const BATCH: usize = 10_000;
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .index_capacity(64 * 1024)
        .start()
        .unwrap();
    let (tx, rx) = mpsc::sync_channel::<Vec<Box<u64>>>(1);
    let freer = std::thread::spawn(move || {
        for batch in rx {
            drop(batch);
        }
    });
    // 2M allocations on this thread, all freed on the other one, no capture in between: with a
    // 64 Ki-entry table, only entries coming back let this go on being indexed.
    for r in 0..ROUNDS {
        let batch: Vec<Box<u64>> = (0..BATCH)
            .map(|i| Box::new((r * BATCH + i) as u64))
            .collect();
        tx.send(batch).unwrap();
    }
    drop(tx);
    freer.join().unwrap();
    let kept: Vec<Box<u64>> = (0..10).map(Box::new).collect();
    let g = guard.graph().expect("index on");
    let indexed = kept
        .iter()
        .filter(|b| g.node_at(&***b as *const u64 as usize).is_some())
        .count();
    assert_eq!(indexed, kept.len(), "{:?}", g.scan);
    assert_eq!(g.scan.unindexed, 0, "{:?}", g.scan);
}
