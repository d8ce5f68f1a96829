//! The program the dashboards' queries run against (`tests/dashboards.rs`): it produces every
//! metric of the contract, with planted values a test can check exactly.
//!
//! - a task named [`PLANTED_TASK`] holds exactly [`PLANTED_BYTES`] (one block) until heapspan
//!   has stopped, so its live bytes in the last export are that number (it also frees a
//!   1000-byte block at once, so that every task series has a point);
//! - a span `handle` with `http.route` [`PLANTED_ROUTE`] (a span group) allocates
//!   [`PLANTED_SPAN_BYTES`] that the program keeps until heapspan has stopped, and 1000 bytes it
//!   frees at once (so its live bytes are exactly [`PLANTED_SPAN_BYTES`]);
//! - a `leaker` task leaks [`LEAK`] bytes nothing points to and ends (with the live index on,
//!   an escaped-allocation finding, and a relation graph every window);
//! - a `churn` task allocates and frees for `APP_MILLIS` (default 1200), polled often;
//! - a `producer` task hands a 4096-byte block to `main`, which frees it (a cell of the
//!   hand-off matrix);
//! - tokio-metrics watches the runtime.
//!
//! heapspan is configured from the environment (`HEAPSPAN_*`, `OTEL_*`), as in a deployment.
//! Prints `DONE` at the end, and `ERROR: <message>` (exit code 2) if heapspan refuses its
//! configuration.

use std::hint::black_box;
use std::time::{Duration, Instant};

use heapspan_integration_tests::{
    LEAK, PLANTED_BYTES, PLANTED_ROUTE, PLANTED_SPAN_BYTES, PLANTED_TASK,
};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

fn main() {
    let millis: u64 = std::env::var("APP_MILLIS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let export = heapspan::export::ExportConfig::default().tokio_runtime(rt.handle().clone());
    let guard = match heapspan::Builder::from_env().and_then(|b| b.export(export).start()) {
        Ok(g) => g,
        Err(e) => {
            println!("ERROR: {e}");
            std::process::exit(2);
        }
    };
    let subscriber = tracing_subscriber::registry().with(heapspan::layer());
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");

    let (_hold, held) = tokio::sync::oneshot::channel::<()>();
    let kept = rt.block_on(async move {
        heapspan::spawn("leaker", async {
            let leaked: &'static mut [u8] = Box::leak(vec![9u8; LEAK as usize].into_boxed_slice());
            black_box(leaked.len())
        })
        .await
        .expect("leaker");
        // A hand-off: a block the `producer` task allocated, freed outside any task.
        let handed = heapspan::spawn("producer", async { vec![7u8; 4096] })
            .await
            .expect("producer");
        drop(black_box(handed));
        // Pending until the runtime is dropped, after heapspan has stopped.
        drop(heapspan::spawn(PLANTED_TASK, async move {
            // A block freed at once (its freed bytes have a series), the planted one held.
            drop(black_box(vec![3u8; 1000]));
            let v = vec![7u8; PLANTED_BYTES as usize];
            let _ = held.await;
            drop(black_box(v));
        }));
        let handler = heapspan::spawn("handler", async {
            let span = tracing::info_span!("handle", http.route = PLANTED_ROUTE);
            let _e = span.enter();
            // A block freed inside the span too (its freed bytes have a series), the planted
            // one kept.
            drop(black_box(vec![2u8; 1000]));
            black_box(vec![1u8; PLANTED_SPAN_BYTES as usize])
        });
        let churn = heapspan::spawn("churn", async move {
            let deadline = Instant::now() + Duration::from_millis(millis);
            while Instant::now() < deadline {
                for i in 0..64 {
                    black_box(Vec::<u8>::with_capacity(32 + i * 100));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let kept = handler.await.expect("handler");
        churn.await.expect("churn");
        kept
    });
    // The last window and the last metric export see the planted bytes still held.
    drop(guard);
    drop(black_box(kept));
    drop(rt);
    println!("DONE");
}
