//! Helpers for heapspan's integration tests (real processes, real collector): the rotel OTLP
//! collector on loopback ports, an in-process OTLP/HTTP receiver that decodes with the
//! official protobuf types, and the test application; the Prometheus names of OTLP metrics
//! ([`prom`]) and the Grafana dashboards generated from the telemetry contract
//! ([`dashboards`]), with what runs their queries against real output ([`promtool`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prost::Message;

pub mod dashboards;
pub mod handoff;
pub mod keeper;
pub mod prom;
pub mod promtool;

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
        Rotel::try_start_on(log, grpc_port, http_port).expect("rotel did not listen")
    }

    /// [`Rotel::start_on`], `None` if rotel exited or did not listen within 10 s (a port taken
    /// meanwhile: its log says so).
    fn try_start_on(log: PathBuf, grpc_port: u16, http_port: u16) -> Option<Rotel> {
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
        let mut r = Rotel {
            child: Some(child),
            log,
            grpc_port,
            http_port,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let listening = [http_port, grpc_port]
                .iter()
                .all(|&p| TcpStream::connect(("127.0.0.1", p)).is_ok());
            if listening {
                return Some(r);
            }
            let exited = r
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        r.stop();
        None
    }

    /// Starts rotel on fresh ports. A port free when picked can be taken by another test
    /// before rotel binds it (rotel then exits: "Address already in use"): it is tried again
    /// on other ports, up to five times.
    pub fn start(dir: &Path) -> Rotel {
        let log = dir.join("rotel.log");
        for _ in 0..4 {
            if let Some(r) = Rotel::try_start_on(log.clone(), free_port(), free_port()) {
                return r;
            }
        }
        Rotel::start_on(log, free_port(), free_port())
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
    /// Request headers, names lowercased.
    pub headers: Vec<(String, String)>,
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

    /// The values of header `name` (lowercase) on the requests to `path` so far.
    pub fn header_values(&self, path: &str, name: &str) -> Vec<String> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .flat_map(|r| r.headers.iter().filter(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
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
        let mut headers = Vec::new();
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
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().expect("lock").push(Received {
            path,
            body,
            headers,
        });
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

/// One metric data point from rotel's detailed debug log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedPoint {
    /// Metric name.
    pub metric: String,
    /// Its unit.
    pub unit: String,
    /// Data point attributes (`key` → rendered value, e.g. `holder`).
    pub attrs: Vec<(String, String)>,
    /// The value as printed.
    pub value: f64,
}

impl LoggedPoint {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One span from rotel's detailed debug log.
#[derive(Debug, Clone, Default)]
pub struct LoggedSpan {
    /// Span name.
    pub name: String,
    /// Attributes (`key` → rendered value without the type wrapper).
    pub attrs: Vec<(String, String)>,
}

impl LoggedSpan {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The attribute `key` as an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.attr(key)?.parse().ok()
    }
}

/// `-> key: Str(value)` → (`key`, `value`).
fn logged_attr(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("-> ")?;
    let (k, v) = rest.split_once(": ")?;
    let v = match v.find('(') {
        Some(i) if v.ends_with(')') => &v[i + 1..v.len() - 1],
        _ => v,
    };
    Some((k.to_owned(), v.to_owned()))
}

/// The metric data points and the resource attributes in rotel's detailed debug log.
pub fn logged_metrics(log: &str) -> (Vec<LoggedPoint>, Vec<(String, String)>) {
    let mut points = Vec::new();
    let mut resource = Vec::new();
    let (mut metric, mut unit) = (String::new(), String::new());
    let mut attrs: Vec<(String, String)> = Vec::new();
    enum At {
        Other,
        Resource,
        Point,
    }
    let mut at = At::Other;
    for line in log.lines() {
        let t = line.trim();
        if t == "Resource attributes:" {
            at = At::Resource;
        } else if t == "Data point attributes:" {
            at = At::Point;
            attrs.clear();
        } else if let Some(n) = t.strip_prefix("-> Name: ") {
            metric = n.to_owned();
            at = At::Other;
        } else if let Some(u) = t.strip_prefix("-> Unit: ") {
            unit = u.to_owned();
        } else if t.starts_with("-> ") {
            if let Some(kv) = logged_attr(t) {
                match at {
                    At::Resource if !resource.contains(&kv) => resource.push(kv),
                    At::Point => attrs.push(kv),
                    _ => {}
                }
            }
        } else if let Some(v) = t
            .strip_prefix("Value: ")
            .or_else(|| t.strip_prefix("Count: "))
        {
            // `Value:` for sums and gauges, `Count:` for a histogram point (its count).
            if let Ok(value) = v.trim().parse() {
                points.push(LoggedPoint {
                    metric: metric.clone(),
                    unit: unit.clone(),
                    attrs: attrs.clone(),
                    value,
                });
            }
            at = At::Other;
        } else {
            at = At::Other;
        }
    }
    (points, resource)
}

/// The spans in rotel's detailed debug log.
pub fn logged_spans(log: &str) -> Vec<LoggedSpan> {
    let mut spans: Vec<LoggedSpan> = Vec::new();
    let mut in_attrs = false;
    for line in log.lines() {
        let t = line.trim();
        if t.starts_with("Span #") {
            spans.push(LoggedSpan::default());
            in_attrs = false;
        } else if let (Some(s), Some(n)) = (spans.last_mut(), t.strip_prefix("Name           : ")) {
            s.name = n.to_owned();
        } else if t == "Attributes:" {
            in_attrs = !spans.is_empty();
        } else if in_attrs && t.starts_with("-> ") {
            if let (Some(s), Some(kv)) = (spans.last_mut(), logged_attr(t)) {
                s.attrs.push(kv);
            }
        } else {
            in_attrs = false;
        }
    }
    spans
}

/// The spans of an OTLP JSON file (heapspan's `HEAPSPAN_OTLP_FILE`), attributes rendered as
/// text.
pub fn file_spans(path: &Path) -> Vec<LoggedSpan> {
    let mut spans = Vec::new();
    for v in json_lines(path) {
        let Some(rs) = v["resourceSpans"].as_array() else {
            continue;
        };
        for s in rs
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        {
            let mut span = LoggedSpan {
                name: s["name"].as_str().unwrap_or_default().to_owned(),
                attrs: Vec::new(),
            };
            for kv in s["attributes"].as_array().cloned().unwrap_or_default() {
                let v = &kv["value"];
                let text = v["stringValue"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| v["intValue"].as_str().map(str::to_owned))
                    .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
                    .or_else(|| v["doubleValue"].as_f64().map(|x| x.to_string()))
                    .or_else(|| v["boolValue"].as_bool().map(|b| b.to_string()))
                    .unwrap_or_default();
                span.attrs
                    .push((kv["key"].as_str().unwrap_or_default().to_owned(), text));
            }
            spans.push(span);
        }
    }
    spans
}

/// The data points of the sums and gauges named `metric` in an OTLP JSON file, in file order
/// (for cumulative sums, the last point of an attribute set is its total), attributes
/// rendered as text; the value is the point's integer (or its float, truncated).
pub fn file_points(path: &Path, metric: &str) -> Vec<LoggedPoint> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    let mut points = Vec::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains("\"resourceMetrics\"")) {
        let Ok(req) = serde_json::from_str::<ExportMetricsServiceRequest>(line) else {
            continue;
        };
        for m in req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == metric)
        {
            let dps = match &m.data {
                Some(Data::Sum(s)) => &s.data_points,
                Some(Data::Gauge(g)) => &g.data_points,
                _ => continue,
            };
            for p in dps {
                let attrs = p
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Value::StringValue(s)) => s.clone(),
                            Some(Value::IntValue(i)) => i.to_string(),
                            Some(Value::BoolValue(b)) => b.to_string(),
                            Some(Value::DoubleValue(d)) => d.to_string(),
                            _ => String::new(),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect();
                let value = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => continue,
                };
                points.push(LoggedPoint {
                    metric: m.name.clone(),
                    unit: m.unit.clone(),
                    attrs,
                    value,
                });
            }
        }
    }
    points
}

/// The last value of each attribute set of the cumulative sum `metric` in an OTLP JSON file:
/// the totals of its series at the last export.
pub fn file_totals(path: &Path, metric: &str) -> Vec<LoggedPoint> {
    let mut last: Vec<LoggedPoint> = Vec::new();
    for p in file_points(path, metric) {
        match last.iter_mut().find(|l| l.attrs == p.attrs) {
            Some(l) => *l = p,
            None => last.push(p),
        }
    }
    last
}

/// Polls `f` every 100 ms until it returns `Some`, at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes the test app's `holder` task holds (see `src/bin/export_app.rs`).
pub const HOLD: i64 = 3 << 20;
/// Bytes the test app's `leaker` task leaks with `APP_LEAK=1`.
pub const LEAK: i64 = 1 << 20;
/// Bytes the test app allocates inside its `request` span (half freed inside it).
pub const REQUEST_BYTES: i64 = 100_000;
/// The `heapspan.span.name` of the test app's `request` span.
pub const REQUEST_SPAN: &str = "export_app::request";

/// The task of `src/bin/dashboard_app.rs` that holds [`PLANTED_BYTES`] to the end.
pub const PLANTED_TASK: &str = "planted";
/// Bytes the planted task holds (one block).
pub const PLANTED_BYTES: i64 = 2_500_000;
/// The `http.route` of `dashboard_app`'s `handle` span (its span group).
pub const PLANTED_ROUTE: &str = "/planted";
/// Bytes allocated inside `dashboard_app`'s `handle` span and kept to the end (one block).
pub const PLANTED_SPAN_BYTES: i64 = 300_000;
/// The `heapspan.span.name` of `dashboard_app`'s `handle` span.
pub const PLANTED_SPAN: &str = "dashboard_app::handle";

/// Asserts what every collector run of the test app must show: every metric of the contract
/// with its unit, the holder's live bytes, window spans of the app's tasks (with the holder's
/// final window), and the resource attributes. Returns the points and spans for more checks.
#[track_caller]
pub fn assert_contract(
    log: &str,
    resource: &[(&str, &str)],
) -> (Vec<LoggedPoint>, Vec<LoggedSpan>) {
    use heapspan::export::names as n;
    let (points, res) = logged_metrics(log);
    for m in n::METRICS {
        let p = points
            .iter()
            .find(|p| p.metric == m.name)
            .unwrap_or_else(|| panic!("metric {} missing from the collector's log", m.name));
        assert_eq!(p.unit, m.unit, "unit of {}", m.name);
    }
    // The user's `request` span, exported through tracing-opentelemetry with heapspan's tracer
    // provider, carries its memory: REQUEST_BYTES in two blocks, half freed inside. The
    // OpenTelemetry layer's own bookkeeping inside the span adds a few hundred bytes:
    // tolerance 1 KiB.
    let spans = logged_spans(log);
    let request = spans
        .iter()
        .find(|s| s.name == "request")
        .expect("the user's request span reached the collector");
    let allocated = request
        .int(n::MEMORY_ALLOCATED)
        .expect("heapspan.memory.allocated");
    assert!(
        (REQUEST_BYTES..=REQUEST_BYTES + 1024).contains(&allocated),
        "{allocated}"
    );
    assert_eq!(request.int(n::MEMORY_FREED), Some(REQUEST_BYTES / 2));
    assert_eq!(
        request.int(n::MEMORY_LIVE),
        Some(allocated - REQUEST_BYTES / 2)
    );
    // Live bytes of `holder`: the app holds HOLD bytes in that task and allocates nothing else
    // there, so the largest value seen is exactly HOLD (tolerance 0), and the last one, after
    // the task ended, is 0.
    let holder: Vec<f64> = points
        .iter()
        .filter(|p| p.metric == n::TASK_MEMORY_LIVE && p.attr(n::TOKIO_TASK_NAME) == Some("holder"))
        .map(|p| p.value)
        .collect();
    assert!(!holder.is_empty(), "no live series for holder");
    assert_eq!(holder.iter().cloned().fold(f64::MIN, f64::max), HOLD as f64);
    assert_eq!(*holder.last().unwrap(), 0.0, "holder's last live value");
    for reason in [
        n::DROP_REASON_OVERFLOW_ALLOCATION,
        n::DROP_REASON_LOST_OPERATION,
        n::DROP_REASON_EXPORT_FAILED,
    ] {
        assert!(
            points
                .iter()
                .any(|p| p.metric == n::TRACKER_DROPPED && p.attr(n::DROP_REASON) == Some(reason)),
            "no {} series for reason {reason}",
            n::TRACKER_DROPPED
        );
    }
    assert!(points
        .iter()
        .any(|p| p.metric == n::TRACKER_MEMORY && p.value > 0.0));
    // tokio-metrics' runtime figures beside heapspan's: the app's runtime has 2 workers (or 1
    // for the current-thread flavour) and the three tasks.
    let workers: Vec<f64> = points
        .iter()
        .filter(|p| p.metric == n::TOKIO_RUNTIME_WORKERS)
        .map(|p| p.value)
        .collect();
    assert!(
        !workers.is_empty() && workers.iter().all(|w| *w == 1.0 || *w == 2.0),
        "{workers:?}"
    );
    for m in [
        n::TOKIO_RUNTIME_TASKS_ALIVE,
        n::TOKIO_RUNTIME_WORKER_BUSY_DURATION,
        n::TOKIO_RUNTIME_WORKER_PARKS,
        n::TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH,
    ] {
        assert!(points.iter().any(|p| p.metric == m), "{m} missing");
    }
    assert!(
        points
            .iter()
            .any(|p| p.metric == n::TOKIO_RUNTIME_TASKS_ALIVE && p.value >= 3.0),
        "the app's three tasks were never seen alive"
    );

    let spans = logged_spans(log);
    let windows: Vec<&LoggedSpan> = spans.iter().filter(|s| s.name == n::WINDOW_SPAN).collect();
    for task in ["holder", "churn", "requests"] {
        assert!(
            windows
                .iter()
                .any(|s| s.attr(n::TOKIO_TASK_NAME) == Some(task)),
            "no window span of task {task}"
        );
    }
    let holder_final = windows
        .iter()
        .rfind(|s| s.attr(n::TOKIO_TASK_NAME) == Some("holder"))
        .expect("holder windows");
    assert_eq!(
        holder_final.int(n::MEMORY_LIVE),
        Some(0),
        "{holder_final:?}"
    );
    assert!(holder_final.int(n::TOKIO_TASK_ID).is_some());
    assert_eq!(
        holder_final.attr(n::CODE_FILE_PATH),
        Some("integration-tests/src/bin/export_app.rs")
    );
    let total_allocated: i64 = windows
        .iter()
        .filter(|s| s.attr(n::TOKIO_TASK_NAME) == Some("holder"))
        .filter_map(|s| s.int(n::MEMORY_ALLOCATED))
        .sum();
    assert_eq!(
        total_allocated, HOLD,
        "the holder's windows add up to what it allocated"
    );
    for (k, v) in resource {
        assert!(
            res.iter().any(|(rk, rv)| rk == k && rv == v),
            "resource attribute {k}={v} missing: {res:?}"
        );
    }
    (points, spans)
}
