//! What export costs at the default window: CPU of heapspan's own threads (aggregator and
//! export, read from `/proc/self/task/*/stat`) per second of wall time, and heapspan's memory,
//! with 1,000 live tasks (1,000 task names, above the default cap of 500) and 10,000 span names,
//! exporting to the embedded OTLP JSON file.
//!
//! `cargo bench --bench export` measures for `HEAPSPAN_BENCH_SECS` (default 35 s: three
//! windows of the default 10 s); under `cargo test --benches` it runs a 3 s smoke version with
//! a 1 s window. `HEAPSPAN_BENCH_INDEX=full` runs it with the live index full (the relation
//! graph taken every window, and the findings that need it). After the CPU figures it cuts
//! five windows by hand ([`Guard::cut_window`](heapspan::Guard::cut_window): snapshot, graph
//! when the index is on, findings, hand-off to the export) and reports their median wall
//! time: the analysis cost of one window. The load: every task wakes once a second, opens a span (cycling through its
//! own 10 span names), allocates two blocks, keeps one of them for a while and frees the other.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::callsite::{Callsite, Identifier};
use tracing::field::FieldSet;
use tracing::metadata::{Kind, Level, Metadata};
use tracing::subscriber::Interest;
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const TASKS: usize = 1_000;
const SPANS_PER_TASK: usize = 10;

/// A callsite for one leaked, dynamically named span metadata.
struct Site(std::sync::OnceLock<&'static Metadata<'static>>);

impl Callsite for Site {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        self.0.get().expect("set at creation")
    }
}

fn span_meta(i: usize) -> &'static Metadata<'static> {
    let site: &'static Site = Box::leak(Box::new(Site(std::sync::OnceLock::new())));
    let name: &'static str = Box::leak(format!("span-{i:05}").into_boxed_str());
    let meta: &'static Metadata<'static> = Box::leak(Box::new(Metadata::new(
        name,
        "bench",
        Level::INFO,
        None,
        None,
        None,
        FieldSet::new(&[], Identifier(site)),
        Kind::SPAN,
    )));
    let _ = site.0.set(meta);
    meta
}

/// utime + stime of heapspan's threads (names start with `heapspan-`), in seconds.
fn heapspan_cpu() -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("heapspan-") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3; utime, stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        out.push((comm.to_owned(), (ticks(14) + ticks(15)) / 100.0));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let secs: u64 = if measuring {
        std::env::var("HEAPSPAN_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(35)
    } else {
        3
    };
    let window = if measuring {
        heapspan::export::DEFAULT_WINDOW
    } else {
        Duration::from_secs(1)
    };
    let file = std::env::temp_dir().join(format!("heapspan-bench-{}.jsonl", std::process::id()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let full = std::env::var("HEAPSPAN_BENCH_INDEX").is_ok_and(|v| v == "full");
    let guard = heapspan::builder()
        .live_index(if full {
            heapspan::IndexMode::Full
        } else {
            heapspan::IndexMode::Off
        })
        .export(
            heapspan::export::ExportConfig::default()
                .file(&file)
                .window(window)
                .metric_export_interval(window),
        )
        .start()
        .expect("start heapspan");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("subscriber");
    let metas: Arc<Vec<&'static Metadata<'static>>> =
        Arc::new((0..TASKS * SPANS_PER_TASK).map(span_meta).collect());

    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let metas = metas.clone();
            let stop = stop.clone();
            rt.spawn(heapspan::instrument(format!("worker-{i:04}"), async move {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                let mut n = 0usize;
                // Spread the wake-ups over the second.
                tokio::time::sleep(Duration::from_millis((i as u64 * 997) % 1000)).await;
                while !stop.load(Ordering::Relaxed) {
                    let meta = metas[i * SPANS_PER_TASK + n % SPANS_PER_TASK];
                    let span = tracing::Span::new(meta, &meta.fields().value_set(&[]));
                    {
                        let _e = span.enter();
                        let a = black_box(vec![0u8; 64 + n % 512]);
                        let b = black_box(vec![1u8; 256]);
                        drop(a);
                        kept.push(b);
                        if kept.len() > 8 {
                            kept.remove(0);
                        }
                    }
                    drop(span);
                    n += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }))
        })
        .collect();

    // Let every span name appear once before measuring.
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    let c0 = heapspan_cpu();
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.elapsed().as_secs_f64();
    let c1 = heapspan_cpu();
    let snap = guard.snapshot();

    println!(
        "export bench: {TASKS} live tasks, {} span names, window {window:?}, live index {}, \
         {wall:.1} s",
        snap.span_names.len(),
        if full { "full" } else { "off" }
    );
    let mut total = 0.0;
    for (name, end) in &c1 {
        let start = c0.iter().find(|(n, _)| n == name).map_or(0.0, |(_, s)| *s);
        let share = (end - start) / wall * 100.0;
        total += share;
        println!("  thread {name:<16} {share:6.3} % of one core");
    }
    println!("  heapspan threads   {total:6.3} % of one core");
    println!(
        "  heapspan.tracker.memory {:.1} MiB; heapspan bucket live {:.1} MiB (export state \
         included)",
        snap.tracker_bytes as f64 / (1 << 20) as f64,
        snap.buckets.heapspan.live_bytes() as f64 / (1 << 20) as f64,
    );
    let written = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "  OTLP JSON written: {:.1} MiB",
        written as f64 / (1 << 20) as f64
    );
    let mut cuts: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(guard.cut_window());
            t.elapsed()
        })
        .collect();
    cuts.sort();
    println!(
        "  a window's analysis (snapshot, graph, findings): median {:.1} ms of 5 (min {:.1}, \
         max {:.1})",
        cuts[2].as_secs_f64() * 1e3,
        cuts[0].as_secs_f64() * 1e3,
        cuts[4].as_secs_f64() * 1e3
    );
    assert!(written > 0, "nothing exported");
    assert!(snap.tasks.len() >= TASKS, "{} tasks", snap.tasks.len());

    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for h in handles {
            let _ = h.await;
        }
    });
    drop(guard);
    let _ = std::fs::remove_file(&file);
}
