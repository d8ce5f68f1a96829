use std::collections::HashMap;
#[global_allocator]
static A: heapspan::Allocator = heapspan::Allocator::system();

fn main() {
    let guard = heapspan::init().unwrap();
    let wrapped = std::env::args().nth(1).as_deref() == Some("wrapped");
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u64>>();
        let sink = tokio::spawn(async move {
            let mut k = 0usize;
            while let Some(v) = rx.recv().await {
                k += v.len();
            }
            k
        });
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let tx = tx.clone();
                let f = async move {
                    let s = format!("task-{i}");
                    let v: Vec<u64> = (0..(8 + i % 24) as u64).collect();
                    let mut m: HashMap<u64, String> = HashMap::new();
                    for k in 0..4 {
                        m.insert(k, s.clone());
                    }
                    let _ = tx.send(v.clone());
                    std::hint::black_box((&s, &v, &m));
                };
                if wrapped {
                    tokio::spawn(heapspan::instrument("storm", f))
                } else {
                    tokio::spawn(f)
                }
            })
            .collect();
        drop(tx);
        for h in hs {
            h.await.unwrap();
        }
        sink.await.unwrap()
    });
    let el = t0.elapsed();
    let s = guard.snapshot();
    let named = s
        .task_name("storm")
        .map(|t| (t.tasks, t.ended, t.mem.live_bytes()));
    let un = s
        .task_name("unnamed")
        .map(|t| (t.tasks, t.mem.live_bytes(), t.mem.allocations));
    println!("{el:?} dropped={:?} exact={} named={named:?} unnamed={un:?} tracker={} total_live={} heapspan_live={} tasks_held={}",
        s.dropped, s.is_exact(), s.tracker_bytes, s.total.live_bytes(), s.buckets.heapspan.live_bytes(), s.tasks.len());
}
