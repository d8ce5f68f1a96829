//! Helpers for heapspan's integration tests (real processes, real collector): the rotel OTLP
//! collector on loopback ports, an in-process OTLP/HTTP receiver that decodes with the
//! official protobuf types, and the test application.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prost::Message;

pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// A fresh directory under `target/itest/<name>` for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/itest").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// The rotel binary, installed into `.cache/` by `install-rotel.sh` on first use.
pub fn rotel_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(root().join("integration-tests/install-rotel.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run install-rotel.sh");
        assert!(out.status.success(), "install-rotel.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf8").trim())
    })
    .clone()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// Waits until something accepts connections on `port` (at most `limit`).
pub fn wait_port(port: u16, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A running rotel collector with `--debug-log traces --debug-log metrics` at `detailed`
/// verbosity, logging to its own file.
#[derive(Debug)]
pub struct Rotel {
    child: Option<Child>,
    /// The log file.
    pub log: PathBuf,
    /// OTLP/gRPC port.
    pub grpc_port: u16,
    /// OTLP/HTTP port.
    pub http_port: u16,
}

impl Rotel {
    /// Starts rotel on the given loopback ports, logging to `log`, and waits until it listens.
    pub fn start_on(log: PathBuf, grpc_port: u16, http_port: u16) -> Rotel {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(rotel_bin())
            .args(["--log-format", "json", "start", "--exporter", "blackhole"])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("start rotel");
        let r = Rotel {
            child: Some(child),
            log,
            grpc_port,
            http_port,
        };
        assert!(
            wait_port(http_port, Duration::from_secs(10))
                && wait_port(grpc_port, Duration::from_secs(10)),
            "rotel did not listen"
        );
        r
    }

    /// Starts rotel on fresh ports.
    pub fn start(dir: &Path) -> Rotel {
        Rotel::start_on(dir.join("rotel.log"), free_port(), free_port())
    }

    /// `http://127.0.0.1:<http port>`.
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `http://127.0.0.1:<grpc port>`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Stops it with SIGTERM (it exits within ~2 s), then waits for the last batch to be
    /// logged.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request the in-process receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path (`/v1/metrics`, `/v1/traces`).
    pub path: String,
    /// Protobuf body.
    pub body: Vec<u8>,
}

/// An in-process OTLP/HTTP receiver on a loopback port: answers every POST with 200 and keeps
/// the bodies.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its port.
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts it (a thread serving one connection at a time, HTTP/1.1 with content-length).
    pub fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || serve(s, &g));
            }
        });
        Receiver { port, got }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The metric requests so far, decoded.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.bodies("/v1/metrics")
            .iter()
            .map(|b| ExportMetricsServiceRequest::decode(b.as_slice()).expect("metrics proto"))
            .collect()
    }

    /// The trace requests so far, decoded.
    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.bodies("/v1/traces")
            .iter()
            .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).expect("trace proto"))
            .collect()
    }

    fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }
}

fn serve(s: TcpStream, got: &Mutex<Vec<Received>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().expect("lock").push(Received { path, body });
        let _ = w.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
    }
}

/// The test application `exe` (`env!("CARGO_BIN_EXE_export_app")` in a test) with a clean
/// environment (no inherited `OTEL_*`/`HEAPSPAN_*`), short windows and metric intervals.
pub fn app(exe: &str) -> Command {
    let mut c = Command::new(exe);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("HEAPSPAN_") || k.starts_with("APP_") {
            c.env_remove(k);
        }
    }
    c.env("HEAPSPAN_WINDOW_MS", "300")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "2000");
    c
}

/// Runs `cmd` to completion within `limit`, returning its output.
#[track_caller]
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn app");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("app output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("the app did not finish within {limit:?}");
        }
    }
}

/// The number after `key=` on the line starting with `prefix` in the app's stdout.
pub fn stdout_value(out: &Output, prefix: &str, key: &str) -> Option<u64> {
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .find(|l| l.starts_with(prefix))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))?
        .parse()
        .ok()
}

/// The JSON lines of a file that parse (rotel's log, the OTLP JSON file).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
