//! Shared helpers for the allocator scenario tests (one binary per scenario: the global
//! allocator is process-wide).
#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;

use heapspan::{Guard, Snapshot};

static GUARD: OnceLock<Guard> = OnceLock::new();

/// Starts heapspan once for this test binary, with the layer in a global registry.
pub fn start() -> &'static Guard {
    GUARD.get_or_init(|| heapspan::init().expect("heapspan starts"))
}

pub fn snapshot() -> Snapshot {
    start().snapshot()
}

/// A multi-thread runtime with `workers` workers.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts `builder` with windows cut by hand ([`Guard::cut_window`]; the timer would cut one
/// an hour), and installs the layer in a global registry: the setup of the findings scenarios.
pub fn start_with_manual_windows(builder: heapspan::Builder) -> Guard {
    use tracing_subscriber::layer::SubscriberExt;
    let guard = builder
        .export(
            heapspan::export::ExportConfig::default().window(std::time::Duration::from_secs(3600)),
        )
        .start()
        .expect("heapspan starts");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("no other subscriber");
    guard
}

/// Evidence `key` of finding `f` (panics naming it when missing).
pub fn evidence<'a>(
    f: &'a heapspan::findings::Finding,
    key: &str,
) -> &'a heapspan::findings::EvidenceValue {
    f.evidence
        .iter()
        .find_map(|(k, v)| (*k == key).then_some(v))
        .unwrap_or_else(|| panic!("evidence {key} in {f:?}"))
}

/// Integer evidence `key` of finding `f`.
pub fn evidence_int(f: &heapspan::findings::Finding, key: &str) -> i64 {
    match evidence(f, key) {
        heapspan::findings::EvidenceValue::Int(i) => *i,
        v => panic!("evidence {key} is not an integer: {v:?}"),
    }
}

/// Float evidence `key` of finding `f`.
pub fn evidence_float(f: &heapspan::findings::Finding, key: &str) -> f64 {
    match evidence(f, key) {
        heapspan::findings::EvidenceValue::Float(x) => *x,
        v => panic!("evidence {key} is not a float: {v:?}"),
    }
}
