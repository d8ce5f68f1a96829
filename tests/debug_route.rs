//! The debug route of `examples/debug_route.rs`, run from its own code: heapspan started in
//! `main`'s place, the server spawned with a `Handle`, the route fetched over loopback; the
//! report it serves has the planted `cache` task's row, and once the guard is dropped the same
//! route answers that heapspan stopped.

#[path = "../examples/debug_route.rs"]
#[allow(dead_code)]
mod debug_route;

use debug_route::{get, plant_cache, serve, CACHE_BYTES, ROUTE};

/// The row of task `name` in "Tasks by live bytes", split into words.
#[track_caller]
fn live_row(report: &str, name: &str) -> Vec<String> {
    let table = report
        .split("\nTasks by live bytes\n")
        .nth(1)
        .and_then(|r| r.split("\n\n").next())
        .unwrap_or_else(|| panic!("no task table:\n{report}"));
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{report}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_debug_route_serves_the_running_report_then_says_heapspan_stopped() {
    // A block allocated before start and freed after: the untracked bucket's only figures
    // are such frees, and it must not show them as negative memory.
    let before_start = std::hint::black_box(vec![7u8; 1 << 20]);
    let guard = heapspan::init().expect("heapspan starts");
    drop(before_start);
    let handle = guard.handle();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let release = plant_cache().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = heapspan::spawn("http-server", serve(listener, handle.clone()));

        let (status, body) = get(addr, ROUTE).await.unwrap();
        assert_eq!(status, 200, "{body}");
        // name, "#id", "debug_route.rs:line", then live: the whole table, exactly.
        let row = live_row(&body, "cache");
        assert_eq!(&row[3..5], ["256.0", "KiB"], "{row:?}");
        assert_eq!(CACHE_BYTES, 256 << 10);
        assert!(row[2].starts_with("debug_route.rs:"), "{row:?}");
        // No figure of any table is negative; the untracked bucket has no live figure.
        let tables = &body[body.find("Tasks by live bytes").unwrap()..];
        for line in tables.lines().filter(|l| l.starts_with("  ")) {
            assert!(
                !line
                    .split_whitespace()
                    .any(|w| w.starts_with('-') && w.len() > 1),
                "a negative figure: {line}\n{body}"
            );
        }
        let untracked = tables
            .lines()
            .find(|l| l.starts_with("  untracked (before start)"))
            .unwrap();
        assert_eq!(
            untracked.split_whitespace().nth(3),
            Some("—"),
            "{untracked}"
        );
        assert!(
            body.contains("untracked: of the memory allocated before heapspan started, "),
            "{body}"
        );
        // The same figures as a snapshot through the handle.
        let snap = handle.snapshot().expect("running");
        let cache = snap.task_name("cache").expect("cache");
        assert_eq!(cache.mem.live_bytes(), CACHE_BYTES as i64);
        // The total's peak is of the memory allocated since start: the 1 MiB freed from
        // before start does not hide the cache (the total's net is below zero here).
        assert!(snap.buckets.untracked.freed_bytes >= 1 << 20);
        assert!(snap.total.live_bytes() < 0, "{:?}", snap.total);
        assert!(
            snap.total.peak_bytes >= CACHE_BYTES as u64,
            "{:?}",
            snap.total
        );

        // Tasks that ended with nothing (no live bytes, no peak) are left out of the task
        // tables unless asked. (A task's end is reported when tokio drops its future, before
        // its JoinHandle is woken.)
        for _ in 0..3 {
            heapspan::spawn("idle", async {}).await.unwrap();
        }
        let (_, body) = get(addr, ROUTE).await.unwrap();
        assert!(!body.contains("idle (ended)"), "{body}");
        assert!(body.contains("ended tasks with no peak left out"), "{body}");
        let (_, all) = get(addr, &format!("{ROUTE}?empty_tasks=1&rows=50"))
            .await
            .unwrap();
        assert_eq!(all.matches("idle (ended)").count(), 6, "both tables: {all}");
        assert_eq!(get(addr, "/nowhere").await.unwrap().0, 404);

        // The guard goes; the server and its handle stay.
        drop(guard);
        assert!(!handle.is_running());
        let (status, body) = get(addr, ROUTE).await.unwrap();
        assert_eq!(status, 503);
        assert_eq!(body, heapspan::Handle::STOPPED_REPORT);
        assert!(handle.snapshot().is_none());
        assert!(handle.findings().is_empty());
        server.abort();
        drop(release);
    });
}
