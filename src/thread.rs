//! Spawning heapspan's own threads: named, their allocations charged to the `heapspan` bucket,
//! and with no tracing subscriber (no telemetry about telemetry).

use std::thread::JoinHandle;

use crate::alloc;
use crate::error::{Error, Result};

/// Starts one of heapspan's own threads.
pub(crate) fn spawn(
    name: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            alloc::mark_internal_thread();
            let _no =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            f();
        })
        .map_err(|source| Error::Thread {
            thread: name,
            source,
        })
}
