//! Lifecycle events from the layer and the task wrapper to the aggregator: an unbounded
//! channel (std's lock-free list channel), so no event is ever dropped. Senders never block;
//! a slow aggregator costs memory (charged to the `heapspan` bucket, and so to
//! `tracker_bytes`), not events.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;

use super::snapshot::{Location, TaskKey, TaskSource};
use crate::sync::statics::AtomicU64;

/// Where a task was spawned, as the event carries it (a static location costs no allocation).
#[derive(Debug, Clone)]
pub(crate) enum Loc {
    Static(&'static std::panic::Location<'static>),
    Owned(Location),
}

impl Loc {
    pub(crate) fn to_location(&self) -> Location {
        match self {
            Loc::Static(l) => Location {
                file: l.file().to_owned(),
                line: l.line(),
            },
            Loc::Owned(l) => l.clone(),
        }
    }
}

/// One lifecycle event. Events carry no time: the aggregator stamps them with the time of the
/// fold that takes them in (a `clock_gettime` per event would be most of a task start's cost),
/// so starts, ends, opens and closes are known to the fold interval.
#[derive(Debug)]
pub(crate) enum Event {
    SpanNew {
        /// The span word (group and instance).
        id: u64,
        meta: &'static tracing_core::Metadata<'static>,
        parent: u64,
    },
    SpanClose {
        id: u64,
    },
    TaskStart {
        task: TaskKey,
        /// The task's name index ([`crate::layer::names`]).
        name: u16,
        location: Option<Loc>,
        source: TaskSource,
    },
    TaskEnd {
        task: TaskKey,
    },
}

static SENDER: OnceLock<Sender<Event>> = OnceLock::new();
pub(crate) static SPAN_STACK_OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// Creates the channel; `None` if it already exists (heapspan was started before).
pub(crate) fn open() -> Option<Receiver<Event>> {
    let (tx, rx) = channel();
    SENDER.set(tx).ok().map(|()| rx)
}

/// True once heapspan has started (events are wanted).
pub(crate) fn enabled() -> bool {
    SENDER.get().is_some()
}

/// Sends without ever blocking or dropping. The channel's memory (a block per 31 events) is
/// heapspan's, whichever task sends.
pub(crate) fn send(e: Event) {
    if let Some(tx) = SENDER.get() {
        let _own = crate::alloc::InternalScope::enter();
        // Fails only once the aggregator is gone (heapspan stopped): nothing wants it then.
        let _ = tx.send(e);
    }
}
