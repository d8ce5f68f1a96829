//! Lifecycle events from the layer and the task wrapper to the aggregator: a bounded queue,
//! `try_send` only; a full queue drops the event and counts it.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Instant;

use super::snapshot::{Location, TaskKey, TaskSource};
use crate::sync::statics::{AtomicU64, Ordering};

/// One lifecycle event.
#[derive(Debug)]
pub(crate) enum Event {
    SpanNew {
        id: u64,
        meta: &'static tracing_core::Metadata<'static>,
        parent: u64,
        at: Instant,
    },
    SpanClose {
        id: u64,
        at: Instant,
    },
    TaskStart {
        task: TaskKey,
        name: Option<String>,
        location: Option<Location>,
        source: TaskSource,
        at: Instant,
    },
    TaskEnd {
        task: TaskKey,
        at: Instant,
    },
}

static SENDER: OnceLock<SyncSender<Event>> = OnceLock::new();
pub(crate) static DROPPED_EVENTS: AtomicU64 = AtomicU64::new(0);
pub(crate) static SPAN_STACK_OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// Creates the queue; `None` if it already exists (heapspan was started before).
pub(crate) fn open(capacity: usize) -> Option<Receiver<Event>> {
    let (tx, rx) = sync_channel(capacity);
    SENDER.set(tx).ok().map(|()| rx)
}

/// True once heapspan has started (events are wanted).
pub(crate) fn enabled() -> bool {
    SENDER.get().is_some()
}

/// Sends without ever blocking; a full queue counts a drop.
pub(crate) fn send(e: Event) {
    if let Some(tx) = SENDER.get() {
        if let Err(TrySendError::Full(_)) = tx.try_send(e) {
            DROPPED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}
