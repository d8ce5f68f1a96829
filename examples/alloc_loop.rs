//! A fixed number of 64-byte alloc+free pairs, for instruction counting with callgrind
//! (`valgrind --tool=callgrind`): deterministic whatever else the machine does.
//!
//! `cargo run --release --example alloc_loop -- MODE N` with MODE `system`, `pass-through`,
//! `started`, `full` or `sampled` (the last two with the live index on). Run it with two values of N; the difference divided by the difference of N is the
//! instruction count per pair, free of start-up costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "started".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let layout = Layout::from_size_align(64, 8).unwrap();
    let index = match mode.as_str() {
        "full" => Some(heapspan::IndexMode::Full),
        "sampled" => Some(heapspan::IndexMode::Sampled {
            mean_bytes: heapspan::DEFAULT_SAMPLE_MEAN_BYTES,
        }),
        _ => None,
    };
    let _guard = (mode == "started" || index.is_some()).then(|| {
        heapspan::builder()
            .live_index(index.unwrap_or_default())
            .start()
            .unwrap()
    });
    let a: &dyn GlobalAlloc = if mode == "system" { &System } else { &ALLOC };
    for _ in 0..n {
        // SAFETY: non-zero layout, freed once with the same layout.
        unsafe {
            let p = a.alloc(black_box(layout));
            a.dealloc(black_box(p), layout);
        }
    }
}
