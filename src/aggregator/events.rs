//! Lifecycle events from the layer and the task wrapper to the aggregator, never dropped and
//! never waited for.
//!
//! An event goes into the sending thread's own queue, behind the operations it recorded, when
//! the thread has a table: an owner-only append of one entry, no atomic read-modify-write,
//! nothing allocated. The events of threads without a table, and tokio's spawn-span starts
//! (their names and locations are owned strings), go through an unbounded channel (std's
//! lock-free list channel). Events of one owner may so be read out of order (a task polled
//! first on one thread and dropped on another, whose queue was read first; a task's first
//! allocation on a thread read before its start on another): the aggregator keeps an end
//! read before its start for two folds, for the start to find, and makes an owner's record
//! from its first allocation, which the start then completes. A slow aggregator costs memory
//! (the channel's is charged to the `heapspan` bucket, the queues' to the queue bound), not
//! events.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;

use super::residue::OtelIds;
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

/// One lifecycle event. Events carry no time: the aggregator stamps them with a time taken
/// once the fold has read them all (a `clock_gettime` per event would be most of a task
/// start's cost), so starts, ends, opens and closes are known to the fold interval, and never
/// stamped before they happened (what the custody check of a task's end relies on).
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
    /// Sent just before the close of an application's span that has an OpenTelemetry
    /// context: a candidate for the residue sample ([`super::residue`]).
    SpanWatch {
        id: u64,
        ids: OtelIds,
        /// Its live bytes at the close.
        live_at_close: i64,
    },
    /// A group field was recorded into the span: its span word (same instance) is `id` from
    /// now on.
    SpanRegroup {
        id: u64,
    },
    TaskStart {
        task: TaskKey,
        /// The task's name index ([`crate::layer::names`]).
        name: u16,
        location: Option<Loc>,
        source: TaskSource,
        /// The size of the task's future in bytes (0: unknown).
        future_size: u64,
    },
    TaskEnd {
        task: TaskKey,
    },
}

/// Queue-entry kinds of the events that travel in a thread's queue (first word, with
/// [`EVENT`](crate::alloc::slots::EVENT)).
const QUEUED_TASK_END: u64 = 1;
const QUEUED_SPAN_CLOSE: u64 = 2;
const QUEUED_TASK_START: u64 = 3;
const QUEUED_SPAN_NEW: u64 = 4;
const QUEUED_SPAN_WATCH: u64 = 5;
const QUEUED_SPAN_REGROUP: u64 = 6;

fn source_code(s: TaskSource) -> u64 {
    match s {
        TaskSource::Observed => 0,
        TaskSource::Wrapper => 1,
        TaskSource::SpawnSpan => 2,
    }
}

fn source_of(code: u64) -> TaskSource {
    match code {
        1 => TaskSource::Wrapper,
        2 => TaskSource::SpawnSpan,
        _ => TaskSource::Observed,
    }
}

impl Event {
    /// The event as a queue entry, if it is one of those that travel in a thread's queue.
    fn queued(&self) -> Option<crate::alloc::ring::Words> {
        use crate::alloc::slots::EVENT;
        match self {
            Event::TaskEnd { task } => Some([EVENT | QUEUED_TASK_END, task.id, 0, 0, 0, 0, 0, 0]),
            Event::SpanClose { id } => Some([EVENT | QUEUED_SPAN_CLOSE, *id, 0, 0, 0, 0, 0, 0]),
            Event::SpanWatch {
                id,
                ids,
                live_at_close,
            } => Some([
                EVENT | QUEUED_SPAN_WATCH,
                *id,
                (ids.trace_id >> 64) as u64,
                ids.trace_id as u64,
                ids.span_id,
                u64::from(ids.flags),
                *live_at_close as u64,
                0,
            ]),
            Event::SpanRegroup { id } => Some([EVENT | QUEUED_SPAN_REGROUP, *id, 0, 0, 0, 0, 0, 0]),
            Event::SpanNew { id, meta, parent } => Some([
                EVENT | QUEUED_SPAN_NEW,
                *id,
                std::ptr::from_ref(*meta) as u64,
                *parent,
                0,
                0,
                0,
                0,
            ]),
            Event::TaskStart {
                task,
                name,
                location,
                source,
                future_size,
            } => {
                // A static location (the wrapper's) fits an entry; owned strings (tokio's
                // spawn span) go through the channel.
                let loc = match location {
                    None => 0,
                    Some(Loc::Static(l)) => std::ptr::from_ref(*l) as u64,
                    Some(Loc::Owned(_)) => return None,
                };
                Some([
                    EVENT | QUEUED_TASK_START,
                    task.id,
                    u64::from(*name),
                    loc,
                    source_code(*source),
                    *future_size,
                    0,
                    0,
                ])
            }
        }
    }

    /// The event a queue entry holds.
    pub(crate) fn from_queued(w: crate::alloc::ring::Words) -> Option<Event> {
        match w[0] & !crate::alloc::slots::EVENT {
            QUEUED_TASK_END => Some(Event::TaskEnd {
                task: TaskKey { id: w[1] },
            }),
            QUEUED_SPAN_CLOSE => Some(Event::SpanClose { id: w[1] }),
            QUEUED_SPAN_WATCH => Some(Event::SpanWatch {
                id: w[1],
                ids: OtelIds {
                    trace_id: (u128::from(w[2]) << 64) | u128::from(w[3]),
                    span_id: w[4],
                    flags: w[5] as u8,
                },
                live_at_close: w[6] as i64,
            }),
            QUEUED_SPAN_REGROUP => Some(Event::SpanRegroup { id: w[1] }),
            QUEUED_SPAN_NEW => Some(Event::SpanNew {
                id: w[1],
                // SAFETY: `queued` wrote this word from a `&'static Metadata<'static>` of this
                // process, and the queue gives back exactly the words it was given; a
                // reference to a static is valid for the rest of the process.
                meta: unsafe { &*(w[2] as *const tracing_core::Metadata<'static>) },
                parent: w[3],
            }),
            QUEUED_TASK_START => Some(Event::TaskStart {
                task: TaskKey { id: w[1] },
                name: w[2] as u16,
                location: (w[3] != 0).then(|| {
                    // SAFETY: as above, from a `&'static Location<'static>`.
                    Loc::Static(unsafe { &*(w[3] as *const std::panic::Location<'static>) })
                }),
                source: source_of(w[4]),
                future_size: w[5],
            }),
            _ => None,
        }
    }
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

/// Sends without ever blocking or dropping: into the calling thread's queue, or (spawn-span
/// starts, threads without a table) through the channel, whose memory (a block per 31 events)
/// is heapspan's, whichever task sends.
pub(crate) fn send(e: Event) {
    if let Some(tx) = SENDER.get() {
        if e.queued().is_some_and(crate::alloc::push_event) {
            return;
        }
        let _own = crate::alloc::InternalScope::enter();
        // Fails only once the aggregator is gone (heapspan stopped): nothing wants it then.
        let _ = tx.send(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_watch_survives_the_queue_words() {
        let e = Event::SpanWatch {
            id: 0xABCD_0000_0000_0042,
            ids: OtelIds {
                trace_id: 0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10,
                span_id: 0xFFEE_DDCC_BBAA_9988,
                flags: 1,
            },
            live_at_close: 4096,
        };
        let w = e.queued().expect("travels in a thread's queue");
        match Event::from_queued(w) {
            Some(Event::SpanWatch {
                id,
                ids,
                live_at_close,
            }) => {
                assert_eq!(id, 0xABCD_0000_0000_0042);
                assert_eq!(ids.trace_id, 0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10);
                assert_eq!(ids.span_id, 0xFFEE_DDCC_BBAA_9988);
                assert_eq!(ids.flags, 1);
                assert_eq!(live_at_close, 4096);
            }
            other => panic!("{other:?}"),
        }
    }
}
