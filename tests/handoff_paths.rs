//! The hand-off matrix on each free path, with the live index in full (every block of a task
//! is an indexed one, freed through the indexed path): a hand-off is counted once, in its
//! cell; a realloc by another task is no free; ids are compared, not names (two tasks of one
//! name make a diagonal cell; a task freeing its own blocks makes none).

mod common;

use heapspan::{HandOffs, IndexMode};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

#[test]
fn each_free_path_counts_a_hand_off_once_in_its_cell() {
    let guard =
        common::start_with_manual_windows(heapspan::Builder::default().live_index(IndexMode::Full));
    let rt = common::runtime(2);
    let (a, b, grown, own) = rt.block_on(async {
        let a = heapspan::spawn("maker", async { vec![1u8; 1000] })
            .await
            .unwrap();
        let b = heapspan::spawn("maker", async { vec![2u8; 300] })
            .await
            .unwrap();
        let grown = heapspan::spawn("maker", async { Vec::<u8>::with_capacity(64) })
            .await
            .unwrap();
        // A task that frees its own block: no cell.
        let own = heapspan::spawn("maker", async {
            let v = vec![3u8; 5000];
            drop(std::hint::black_box(v));
            5000
        })
        .await
        .unwrap();
        (a, b, grown, own)
    });
    assert_eq!(own, 5000);
    let capacity = rt.block_on(async move {
        // Another task of the same name frees `a`: the diagonal cell. A task named otherwise
        // grows `grown` (a realloc: no free) and frees `b`, then `grown` at its end.
        heapspan::spawn("maker", async move { drop(a) })
            .await
            .unwrap();
        heapspan::spawn("taker", async move {
            let mut grown = grown;
            grown.reserve_exact(10_000);
            drop(b);
            grown.capacity()
        })
        .await
        .unwrap()
    });
    let m = guard.snapshot().handoffs;
    let cell = |from: &str, to: &str| m.cell(from, to).map(|c| (c.bytes, c.frees));
    assert_eq!(cell("maker", "maker"), Some((1000, 1)), "{m:?}");
    // `b` (300 bytes) and `grown` at the size it grew to: two frees (the growth is the
    // realloc's, charged to `maker` as allocated bytes, not a free).
    assert_eq!(
        cell("maker", "taker"),
        Some((300 + capacity as u64, 2)),
        "{m:?}"
    );
    assert!(m.cell("maker", HandOffs::NO_TASK).is_none(), "{m:?}");
    assert_eq!(m.overflow_frees, 0);
    drop(rt);
}
