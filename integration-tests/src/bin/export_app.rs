//! The test application of the export tests: a `holder` task that holds exactly
//! [`HOLD`] bytes while the app runs, a `churn` task that allocates and frees as fast as it can
//! for `APP_MILLIS` and reports how many iterations it did (its throughput), and a user span
//! `request` that allocates [`REQUEST_BYTES`] and frees half of them.
//!
//! Configuration comes from the environment (`OTEL_*`, `HEAPSPAN_*`), as in a real deployment;
//! `APP_EXPORT=0` turns export off (the baseline of the throughput comparison),
//! `APP_USER_SPANS=1` exports the app's own spans too (with their memory attributes),
//! `APP_RUNTIME=current` uses a current-thread runtime, `APP_LEAK=1` plants an escaped
//! allocation (a `leaker` task leaks [`LEAK`] bytes that nothing points to, then ends). Prints `HOLDING <bytes>` when the hold
//! starts, `DONE iterations=<n>` at the end, and `ERROR: <message>` (exit code 2) if heapspan
//! refuses its configuration.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Bytes the `holder` task holds.
pub const HOLD: usize = 3 << 20;
/// Bytes the `leaker` task leaks with `APP_LEAK=1`.
pub const LEAK: usize = 1 << 20;
/// Bytes allocated inside the `request` span.
pub const REQUEST_BYTES: usize = 100_000;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let millis = env_u64("APP_MILLIS", 1500);
    let rt = if std::env::var("APP_RUNTIME").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("runtime");
    // The runtime's metrics go beside heapspan's (feature `tokio-metrics`).
    let mut export = heapspan::export::ExportConfig::default().tokio_runtime(rt.handle().clone());
    if std::env::var("APP_EXPORT").as_deref() == Ok("0") {
        export = export.enabled(false);
    }
    let guard = match heapspan::Builder::from_env().and_then(|b| b.export(export).start()) {
        Ok(g) => g,
        Err(e) => {
            println!("ERROR: {e}");
            std::process::exit(2);
        }
    };
    // `APP_USER_SPANS=1`: the app's own spans go out too, through tracing-opentelemetry with
    // heapspan's tracer provider, below which heapspan's layer adds their memory.
    let otel = (std::env::var("APP_USER_SPANS").as_deref() == Ok("1"))
        .then(|| guard.tracer_provider())
        .flatten()
        .map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer().with_tracer(p.tracer("export-app"))
        });
    let subscriber = tracing_subscriber::registry()
        .with(heapspan::layer())
        .with(otel);
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");

    println!("HOLDING {HOLD}");
    let iterations = rt.block_on(async move {
        if std::env::var("APP_LEAK").as_deref() == Ok("1") {
            heapspan::spawn("leaker", async {
                let leaked: &'static mut [u8] = Box::leak(vec![9u8; LEAK].into_boxed_slice());
                black_box(leaked.len())
            })
            .await
            .expect("leaker");
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let holder = heapspan::spawn("holder", async move {
            let v = vec![7u8; HOLD];
            let _ = rx.await;
            drop(black_box(v));
        });
        let request = heapspan::spawn("requests", async move {
            let span = tracing::info_span!("request", route = "/checkout");
            let kept = {
                let _e = span.enter();
                let a = black_box(vec![1u8; REQUEST_BYTES / 2]);
                let b = black_box(vec![2u8; REQUEST_BYTES / 2]);
                drop(a);
                b
            };
            drop(span);
            // Hold what the span allocated until the end of the run.
            tokio::time::sleep(Duration::from_millis(millis)).await;
            drop(kept);
        });
        let churn = heapspan::spawn("churn", async move {
            let deadline = Instant::now() + Duration::from_millis(millis);
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                for i in 0..64 {
                    let v: Vec<u8> = Vec::with_capacity(64 + i * 8);
                    black_box(&v);
                }
                n += 64;
                tokio::task::yield_now().await;
            }
            n
        });
        let n = churn.await.expect("churn");
        request.await.expect("requests");
        // Let a window and a metric export see the held bytes after the churn stopped.
        tokio::time::sleep(Duration::from_millis(env_u64("APP_HOLD_AFTER_MILLIS", 0))).await;
        let _ = tx.send(());
        holder.await.expect("holder");
        n
    });
    drop(rt);
    println!("DONE iterations={iterations}");
    drop(guard);
}
