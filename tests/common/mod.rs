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
