//! The test application of the HTML view: a run with planted problems that writes its HTML
//! report at the end (`Builder::html_report`) and an OTLP JSON file (`ExportConfig::file`)
//! the same view can be rendered from.
//!
//! - the `planted` task grows one buffer by [`STEP`] bytes per window, [`STEPS`] times, and
//!   holds it (exactly [`PLANTED`] bytes: `reserve_exact`) until after heapspan stopped;
//! - the `cycler` task links two `Rc`s (64 KiB payload each) into a cycle in its `link_peers`
//!   span and drops its handles: a `refcount.unreachable_cycle` finding whose danger surface
//!   is the two members and their payloads (the live index is on);
//! - a task named [`TRICKY`] (markup characters: names are user input) holds [`TRICKY_BYTES`].
//!
//! Arguments: the HTML report's path, the OTLP JSON file's path. Windows are cut by hand, one
//! per growth step (and the last one when the guard is dropped). Prints `PLANTED <bytes>` and
//! `DONE` at the end.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Bytes the `planted` task adds per window.
pub const STEP: usize = 1 << 20;
/// Growth steps (windows cut by hand).
pub const STEPS: usize = 3;
/// Bytes the `planted` task holds at the end.
pub const PLANTED: usize = STEP * STEPS;
/// The name of a task with markup in it.
pub const TRICKY: &str = "tricky <b>&\"quoted\"</b>";
/// Bytes it holds.
pub const TRICKY_BYTES: usize = 256 << 10;

struct Peer {
    payload: Vec<u8>,
    next: RefCell<Option<Rc<Peer>>>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [html, otlp] = &args[..] else {
        eprintln!("usage: html_app <report.html> <otlp.jsonl>");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .html_report(html)
        .export(
            heapspan::export::ExportConfig::default()
                .file(otlp)
                .service_name("html-view-app")
                // Windows are cut by hand; metrics go out often, for the file's time series.
                .window(Duration::from_secs(3600))
                .metric_export_interval(Duration::from_millis(100))
                .tokio_runtime(rt.handle().clone()),
        )
        .start()
        .expect("heapspan starts");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("no other subscriber");

    let (grow, mut grows) = mpsc::channel::<oneshot::Sender<()>>(1);
    let (stop_planted, stopped_planted) = oneshot::channel::<()>();
    let (stop_tricky, stopped_tricky) = oneshot::channel::<()>();
    rt.block_on(async {
        heapspan::spawn("cycler", async {
            tracing::info_span!("link_peers").in_scope(|| {
                let a = Rc::new(Peer {
                    payload: vec![1; 64 << 10],
                    next: RefCell::new(None),
                });
                let b = Rc::new(Peer {
                    payload: vec![2; 64 << 10],
                    next: RefCell::new(Some(a.clone())),
                });
                *a.next.borrow_mut() = Some(b.clone());
                black_box(a.payload.len() + b.payload.len())
            })
        })
        .await
        .expect("cycler");
        let (tricky_ready, ready) = oneshot::channel();
        heapspan::spawn(TRICKY, async move {
            let held = black_box(vec![3u8; TRICKY_BYTES]);
            let _ = tricky_ready.send(());
            let _ = stopped_tricky.await;
            drop(held);
        });
        ready.await.expect("tricky holds");
        heapspan::spawn("planted", async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(done) = grows.recv().await {
                buf.reserve_exact(STEP);
                buf.resize(buf.len() + STEP, 7);
                let _ = done.send(());
            }
            let _ = stopped_planted.await;
            drop(black_box(buf));
        });
        for _ in 0..STEPS {
            let (done, grown) = oneshot::channel();
            grow.send(done).await.expect("planted grows");
            grown.await.expect("planted grew");
            // A metric export or two between windows (the file's time series).
            tokio::time::sleep(Duration::from_millis(250)).await;
            guard.cut_window();
        }
    });
    drop(grow);
    // The last window (with the tasks still holding), the HTML report, the file's last lines.
    drop(guard);
    let _ = stop_planted.send(());
    let _ = stop_tricky.send(());
    drop(rt);
    println!("PLANTED {PLANTED}");
    println!("DONE");
}
