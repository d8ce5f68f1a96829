//! heapspan's report on a debug route of a running service: `GET /debug/heapspan`.
//!
//! ```text
//! cargo run --example debug_route              # serves, fetches its own route once, prints it, exits
//! cargo run --example debug_route -- --serve   # keeps serving until Ctrl-C
//! curl http://127.0.0.1:3000/debug/heapspan    # (with --serve; DEBUG_ROUTE_ADDR sets the address)
//! curl 'http://127.0.0.1:3000/debug/heapspan?rows=20&empty_tasks=1'
//! ```
//!
//! The [`heapspan::Guard`] stays in `main`; the server gets a [`heapspan::Handle`] (cloneable,
//! `Send + Sync`), which renders the same report as `Guard::report` from the request handler.
//! The report takes the aggregator's lock for a snapshot, so the handler runs it through
//! `spawn_blocking` rather than on a worker thread. Once the guard is dropped the handle
//! answers [`heapspan::Handle::STOPPED_REPORT`], served here as `503 Service Unavailable`.
//!
//! The service is a plain tokio `TcpListener` with a minimal HTTP/1.1 answer (one request per
//! connection), so the example needs no web framework; with axum the handler is the same
//! `spawn_blocking(move || handle.report(rows))` over a `Handle` kept in the router's state.
//! The report names tasks, spans and code locations: serve it on loopback or behind the
//! service's own access control.
//!
//! It plants one task to look for: `cache`, which holds a 256 KiB table. The connection tasks
//! (`http-conn`) end holding nothing, and the report leaves them out of its task tables unless
//! asked (`?empty_tasks=1`).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// The debug route.
pub(crate) const ROUTE: &str = "/debug/heapspan";
/// What the planted `cache` task holds.
pub(crate) const CACHE_BYTES: usize = 256 << 10;
/// Rows per table of the report unless `?rows=` says otherwise.
const ROWS: usize = 10;
/// The most of a request head the server reads.
const MAX_HEAD: usize = 8 << 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = heapspan::init()?;
    let serve_on = std::env::args().skip(1).any(|a| a == "--serve");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _cache = plant_cache().await;
        let addr = if serve_on {
            std::env::var("DEBUG_ROUTE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        } else {
            "127.0.0.1:0".to_owned()
        };
        let listener = TcpListener::bind(&addr).await?;
        let addr = listener.local_addr()?;
        let server = heapspan::spawn("http-server", serve(listener, guard.handle()));
        if serve_on {
            eprintln!("serving the report on http://{addr}{ROUTE} (Ctrl-C stops)");
            tokio::signal::ctrl_c().await?;
        } else {
            let (status, body) = get(addr, ROUTE).await?;
            if status != 200 {
                return Err(format!("GET {ROUTE}: status {status}: {body}").into());
            }
            print!("{body}");
        }
        server.abort();
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    drop(rt);
    drop(guard);
    Ok(())
}

/// Spawns the `cache` task, which holds a [`CACHE_BYTES`] table until the returned sender is
/// dropped, and returns once it holds it.
pub(crate) async fn plant_cache() -> oneshot::Sender<()> {
    let (holding, held) = oneshot::channel::<()>();
    let (release, released) = oneshot::channel::<()>();
    heapspan::spawn("cache", async move {
        let table = std::hint::black_box(vec![1u8; CACHE_BYTES]);
        let _ = holding.send(());
        let _ = released.await;
        drop(table);
    });
    let _ = held.await;
    release
}

/// Accepts connections until the task is aborted; each is served by an `http-conn` task.
pub(crate) async fn serve(listener: TcpListener, handle: heapspan::Handle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        heapspan::spawn("http-conn", connection(stream, handle.clone()));
    }
}

/// One request, one answer, then the connection closes.
async fn connection(mut stream: TcpStream, handle: heapspan::Handle) {
    let (status, body) = match read_head(&mut stream).await {
        Some(head) => answer(&head, handle).await,
        None => (400, "bad request\n".to_owned()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request line and headers (up to the blank line), or `None` if the peer closed first
/// or sent more than [`MAX_HEAD`] bytes of them.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// The route table: `GET /debug/heapspan[?rows=N&empty_tasks=1]` and `GET /`.
async fn answer(head: &str, handle: heapspan::Handle) -> (u16, String) {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return (400, "bad request\n".to_owned());
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", ROUTE) => {
            let mut opts = heapspan::export::report::ReportOptions::new().rows(ROWS);
            for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                match (k, v.parse::<usize>()) {
                    ("rows", Ok(n)) => opts = opts.rows(n.min(1000)),
                    ("empty_tasks", Ok(n)) => opts = opts.empty_tasks(n != 0),
                    _ => {}
                }
            }
            // A snapshot takes the aggregator's lock: off the async workers.
            let report = tokio::task::spawn_blocking(move || handle.report_with(&opts)).await;
            match report {
                Ok(r) if r == heapspan::Handle::STOPPED_REPORT => (503, r),
                Ok(r) => (200, r),
                Err(e) => (503, format!("the report failed: {e}\n")),
            }
        }
        ("GET", "/") => (200, format!("hello; the memory report is at {ROUTE}\n")),
        ("GET", _) => (404, "not found\n".to_owned()),
        _ => (405, "only GET\n".to_owned()),
    }
}

/// `GET path` on `addr` over a fresh connection: the status and the body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/1.1 answer");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}
