//! The test application of the invalid-free tests: a task `victim` allocates a 256-byte block
//! in span `app::load`; then, by `APP_CASE`, the program misbehaves:
//! - `double_free`: task `first` frees the block (span `app::first`), task `second` frees it
//!   again (span `app::second`), both through `std::alloc::dealloc`;
//! - `foreign`: a block from C's `malloc` is freed through the global allocator;
//! - `layout`: the block is freed with a size of 128;
//! - `realloc_freed`: the block is freed, then reallocated;
//! - `stress`: `APP_THREADS` threads do `APP_ITERS` valid alloc/realloc/free rounds each, of
//!   varied sizes and alignments, freeing on other threads too.
//!
//! Configuration comes from the environment (`HEAPSPAN_LIVE_INDEX`, `HEAPSPAN_OTLP_FILE`,
//! `HEAPSPAN_ON_INVALID_FREE`). It prints `SURVIVED` after the misbehaviour, then one line
//! `FINDING <kind> <severity> <case> alloc=<task>/<span> first=<task>/<span>
//! free=<task>/<span>` per finding of kind `dealloc.invalid`, and exits 0.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::time::Duration;

use heapspan::export::names as n;
use heapspan::findings::EvidenceValue;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const L256: Layout = match Layout::from_size_align(256, 8) {
    Ok(l) => l,
    Err(_) => panic!(),
};

/// The block, as an address (so tasks can pass it around).
async fn victim() -> usize {
    async {
        // SAFETY: a non-zero layout; freed (wrongly) by the case below.
        let p = unsafe { alloc(L256) };
        assert!(!p.is_null());
        // SAFETY: 256 bytes of the new block.
        unsafe { p.write_bytes(0xAB, 256) };
        p as usize
    }
    .instrument(tracing::info_span!("load"))
    .await
}

fn text(f: &heapspan::findings::Finding, key: &str) -> String {
    f.evidence
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| match v {
            EvidenceValue::Text(t) => t.clone(),
            v => format!("{v:?}"),
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn main() {
    let case = std::env::var("APP_CASE").unwrap_or_default();
    let guard = heapspan::builder()
        .export(heapspan::export::ExportConfig::default().window(Duration::from_secs(3600)))
        .start()
        .expect("heapspan starts");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("no other subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let p = heapspan::spawn("victim", victim()).await.unwrap();
        match case.as_str() {
            "double_free" => {
                for (task, span) in [("first", "first"), ("second", "second")] {
                    let s = match span {
                        "first" => tracing::info_span!("first"),
                        _ => tracing::info_span!("second"),
                    };
                    heapspan::spawn(
                        task,
                        async move {
                            // SAFETY: none the second time: the double free under test.
                            unsafe { dealloc(p as *mut u8, L256) };
                        }
                        .instrument(s),
                    )
                    .await
                    .unwrap();
                }
            }
            "foreign" => {
                heapspan::spawn("ffi", async {
                    // SAFETY: a block of C's malloc, freed through the global allocator: the
                    // mistake under test.
                    unsafe {
                        let c = libc::malloc(64).cast::<u8>();
                        dealloc(c, Layout::from_size_align(64, 8).unwrap());
                    }
                })
                .await
                .unwrap();
                // SAFETY: the block, freed once with its layout.
                unsafe { dealloc(p as *mut u8, L256) };
            }
            "layout" => {
                heapspan::spawn("freer", async move {
                    // SAFETY: none: the wrong size is the mistake under test.
                    unsafe { dealloc(p as *mut u8, Layout::from_size_align(128, 8).unwrap()) };
                })
                .await
                .unwrap();
            }
            "realloc_freed" => {
                heapspan::spawn("freer", async move {
                    // SAFETY: none the second time: a realloc of a freed block.
                    unsafe {
                        dealloc(p as *mut u8, L256);
                        let q = realloc(p as *mut u8, L256, 512);
                        assert!(!q.is_null());
                        dealloc(q, Layout::from_size_align(512, 8).unwrap());
                    }
                })
                .await
                .unwrap();
            }
            "stress" => {
                // SAFETY: the block, freed once with its layout.
                unsafe { dealloc(p as *mut u8, L256) };
                stress();
            }
            other => panic!("unknown APP_CASE {other:?}"),
        }
    });
    println!("SURVIVED");
    let findings = guard.cut_window();
    for f in findings
        .iter()
        .filter(|f| f.kind.as_str() == "dealloc.invalid")
    {
        println!(
            "FINDING {} {} {} alloc={}/{} first={}/{} free={}/{} count={}",
            f.kind,
            f.severity,
            text(f, n::FINDING_INVALID_CASE),
            text(f, n::FINDING_ALLOC_TASK),
            text(f, n::FINDING_ALLOC_SPAN),
            text(f, n::FINDING_FIRST_FREE_TASK),
            text(f, n::FINDING_FIRST_FREE_SPAN),
            text(f, n::FINDING_FREE_TASK),
            text(f, n::FINDING_FREE_SPAN),
            f.allocations,
        );
    }
    drop(rt);
    drop(guard);
}

/// Valid alloc/realloc/free rounds on several threads, blocks freed by other threads too.
fn stress() {
    let threads: usize = std::env::var("APP_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let iters: usize = std::env::var("APP_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Box<[u8]>>>(64);
    let eater = std::thread::spawn(move || {
        let mut n = 0usize;
        while let Ok(v) = rx.recv() {
            n += v.len();
        }
        n
    });
    std::thread::scope(|s| {
        for t in 0..threads {
            let tx = tx.clone();
            s.spawn(move || {
                let mut batch = Vec::with_capacity(64);
                for i in 0..iters {
                    let size = 1 + (i * 7 + t * 13) % 700;
                    let align = 1usize << ((i + t) % 7);
                    let l = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: a non-zero layout; the block is reallocated and freed with the
                    // layouts it has.
                    unsafe {
                        let p = alloc(l);
                        assert!(!p.is_null());
                        let q = realloc(p, l, size * 2);
                        assert!(!q.is_null());
                        dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
                    }
                    batch.push(vec![(i % 251) as u8; size % 300 + 1].into_boxed_slice());
                    if batch.len() == 64 {
                        tx.send(std::mem::take(&mut batch)).unwrap();
                    }
                }
                tx.send(batch).unwrap();
            });
        }
    });
    drop(tx);
    let n = eater.join().unwrap();
    println!("STRESS blocks_freed_elsewhere={n}");
}
