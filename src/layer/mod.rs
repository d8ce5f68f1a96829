//! The tracing Layer: tells the allocator which span is current on each thread, learns task
//! names from tokio's `runtime.spawn` spans (`--cfg tokio_unstable`), and reports span
//! lifecycles to the aggregator.
//!
//! Attribution follows *entered* spans, per thread: a span entered around a poll (as
//! `Instrument` does) is current on whichever worker thread runs that poll, so attribution stays
//! right when a task migrates between threads.
//!
//! A span's allocations carry its *group*: its name and the values of the group fields it has
//! ([`Builder::span_group_fields`](crate::Builder::span_group_fields), by default `http.route`
//! and `otel.name`), read when it is created and again when one of them is recorded later
//! (`src/layer/groups.rs`).

pub(crate) mod groups;
pub(crate) mod names;
pub(crate) mod notice;
pub(crate) mod polls;
pub mod task;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{field, Dispatch, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::aggregator::events::{self, Event, Loc};
use crate::aggregator::snapshot::{Location, TaskKey, TaskSource};
use crate::alloc::{self, InternalScope};
use crate::sync::statics::Ordering;

#[doc(hidden)]
pub use notice::set_notice_grace;

/// The layer. Create it with [`crate::layer()`] (or let [`crate::init()`] install it) and add it to a
/// `tracing_subscriber::Registry`.
#[derive(Debug, Default, Clone)]
pub struct MemoryLayer {
    /// The layer sits directly on a `Registry` (see [`begin_bookkeeping`]).
    on_registry: bool,
}

impl MemoryLayer {
    /// A new layer. It attributes allocations to spans from the moment heapspan is started.
    pub fn new() -> Self {
        MemoryLayer { on_registry: false }
    }
}

/// What heapspan keeps in a span's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SpanMark {
    /// A user span with its heapspan span word (group and instance), and whether its callsite
    /// declares a group field (a value recorded later may change its group).
    User(u64, bool),
    /// tokio's `runtime.spawn` span for a task, with the task's name index: not a user span.
    Task(TaskKey, u16),
    /// tokio's own instrumentation (`runtime.resource*` spans with `tokio_unstable`):
    /// transparent, allocations stay with the enclosing user span.
    Transparent,
}

/// Fields of tokio's `runtime.spawn` span.
#[derive(Default)]
struct SpawnFields {
    id: Option<u64>,
    name: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    /// `size.bytes`: the spawned future's size (tokio 1.41 and later).
    size: Option<u64>,
}

impl field::Visit for SpawnFields {
    fn record_u64(&mut self, f: &field::Field, v: u64) {
        match f.name() {
            "task.id" => self.id = Some(v),
            "loc.line" => self.line = u32::try_from(v).ok(),
            "size.bytes" | "original_size.bytes" if self.size.is_none() => self.size = Some(v),
            _ => {}
        }
    }
    fn record_i64(&mut self, f: &field::Field, v: i64) {
        if let Ok(v) = u64::try_from(v) {
            self.record_u64(f, v);
        }
    }
    fn record_str(&mut self, f: &field::Field, v: &str) {
        match f.name() {
            "task.name" => self.name = Some(v.to_owned()),
            "loc.file" => self.file = Some(v.to_owned()),
            _ => {}
        }
    }
    fn record_debug(&mut self, f: &field::Field, v: &dyn std::fmt::Debug) {
        if f.name() == "task.name" {
            self.name = Some(format!("{v:?}"));
        }
    }
}

fn is_spawn_span(meta: &tracing_core::Metadata<'_>) -> bool {
    meta.name() == "runtime.spawn" && meta.target() == "tokio::task"
}

fn is_tokio_internal(meta: &tracing_core::Metadata<'_>) -> bool {
    meta.name().starts_with("runtime.") && meta.target().starts_with("tokio")
}

std::thread_local! {
    /// The layer's `enabled` opened a bookkeeping scope on this thread (see
    /// [`begin_bookkeeping`]).
    static BOOKKEEPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// tokio is about to make one of its own spans (`tokio_unstable`): until the layer hears of it
/// (`on_new_span`) the subscriber allocates its bookkeeping for it (tracing-subscriber's
/// registry grows its slab of span data, and keeps the pages). That is not the user's span's
/// memory: no span is current meanwhile (unless the thread's span stack is past its tracked
/// depth), so it is charged to the task outside any span.
///
/// Only when the layer sits directly on the `Registry`: then nothing is asked after the
/// layer's `enabled`, so the span is made and `on_new_span` closes the scope. With a layer in
/// between (a global filter under heapspan's layer), that layer could still disable the span
/// and leave the scope open, so the layer does not open it, and the bookkeeping is charged to
/// the span current at the spawn as any allocation there is.
fn begin_bookkeeping() {
    end_bookkeeping();
    // Word 0: no span. Beyond the tracked depth the push is counted and the pop undoes it.
    let _ = alloc::push_span(0);
    BOOKKEEPING.with(|b| b.set(true));
}

/// Closes the scope [`begin_bookkeeping`] opened, if any: on the span's creation (and, should a
/// span ever not be made after all, on any later callback of the layer on this thread).
fn end_bookkeeping() {
    if BOOKKEEPING.with(|b| b.replace(false)) {
        alloc::pop_span(0);
    }
}

impl<S> Layer<S> for MemoryLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, _subscriber: &Dispatch) {
        notice::layer_registered();
    }

    fn on_layer(&mut self, _: &mut S) {
        notice::layer_registered();
        // `S` is the subscriber under this layer; `type_name` needs no `'static` bound.
        self.on_registry =
            std::any::type_name::<S>() == std::any::type_name::<tracing_subscriber::Registry>();
    }

    fn register_callsite(
        &self,
        meta: &'static tracing_core::Metadata<'static>,
    ) -> tracing_core::subscriber::Interest {
        // tokio's own spans: asked about each time, so that `enabled` can open the
        // bookkeeping scope just before each is made.
        if self.on_registry && meta.is_span() && is_tokio_internal(meta) {
            tracing_core::subscriber::Interest::sometimes()
        } else {
            tracing_core::subscriber::Interest::always()
        }
    }

    fn enabled(&self, meta: &tracing_core::Metadata<'_>, _: Context<'_, S>) -> bool {
        if self.on_registry && meta.is_span() && is_tokio_internal(meta) {
            begin_bookkeeping();
        }
        true
    }

    fn on_event(&self, _: &tracing_core::Event<'_>, _: Context<'_, S>) {
        end_bookkeeping();
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        end_bookkeeping();
        notice::span_seen();
        let _scope = InternalScope::enter();
        let Some(span) = ctx.span(id) else { return };
        let meta = attrs.metadata();
        let mark = if is_spawn_span(meta) {
            let mut f = SpawnFields::default();
            attrs.record(&mut f);
            let Some(task_id) = f.id else { return };
            let task = TaskKey { id: task_id };
            let location = f
                .file
                .zip(f.line)
                .map(|(file, line)| Location { file, line });
            let name = f.name.filter(|n| !n.is_empty());
            let display =
                crate::aggregator::snapshot::display_name(name.as_deref(), location.as_ref());
            let name = names::task_index(&display);
            events::send(Event::TaskStart {
                task,
                name,
                location: location.map(Loc::Owned),
                source: TaskSource::SpawnSpan,
                future_size: f.size.unwrap_or(0),
            });
            SpanMark::Task(task, name)
        } else if is_tokio_internal(meta) {
            SpanMark::Transparent
        } else {
            let (base, grouped) = names::span_index(meta);
            let group = if grouped {
                groups::of_new_span(base, attrs)
            } else {
                base
            };
            let sid = crate::alloc::header::span_word(group, alloc::next_span_instance());
            let parent = span
                .parent()
                .and_then(|p| match p.extensions().get::<SpanMark>() {
                    Some(SpanMark::User(pid, _)) => Some(*pid),
                    _ => None,
                })
                .unwrap_or(0);
            if events::enabled() {
                events::send(Event::SpanNew {
                    id: sid,
                    meta,
                    parent,
                });
            }
            SpanMark::User(sid, grouped)
        };
        span.extensions_mut().insert(mark);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        end_bookkeeping();
        // A record of no group field (most are: a status, a latency) costs a look at the
        // field names, one into a span of a callsite without a group field a look at its mark:
        // no lock of heapspan's, no allocation. A group field's value takes the group table's
        // lock (and allocates once per new group), in the heapspan bucket.
        if !groups::config().is_some_and(|c| c.touches(values)) {
            return;
        }
        let Some(SpanMark::User(word, true)) = mark(&ctx, id) else {
            return;
        };
        let _scope = InternalScope::enter();
        let Some(new) = groups::regroup(word, values) else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        if let Some(m) = span.extensions_mut().get_mut::<SpanMark>() {
            *m = SpanMark::User(new, true);
        }
        // Entered on this thread (a middleware records the route inside the request span):
        // its next allocations here go to the new group. Threads where it is entered now keep
        // the old word until they exit it (exits match by instance).
        alloc::regroup_span(word, new);
        if events::enabled() {
            events::send(Event::SpanRegroup { id: new });
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        end_bookkeeping();
        match mark(&ctx, id) {
            Some(SpanMark::User(sid, _)) => {
                let tracked = alloc::push_span(sid);
                if !tracked {
                    events::SPAN_STACK_OVERFLOW.fetch_add(1, Ordering::Relaxed);
                }
            }
            // tokio enters the spawn span around every poll of its task.
            Some(SpanMark::Task(task, name)) => alloc::enter_task_name(task.id, name),
            _ => {}
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        end_bookkeeping();
        match mark(&ctx, id) {
            Some(SpanMark::User(sid, _)) => alloc::pop_span(sid),
            Some(SpanMark::Task(..)) => alloc::exit_task_name(),
            _ => {}
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        end_bookkeeping();
        let _scope = InternalScope::enter();
        match mark(&ctx, &id) {
            Some(SpanMark::User(sid, _)) => {
                #[cfg(feature = "tracing-opentelemetry")]
                if let Some(span) = ctx.span(&id) {
                    crate::export::user_spans::on_user_span_close(&id, span.metadata(), sid, |a| {
                        Some(a.span_mem_now(sid))
                    });
                }
                events::send(Event::SpanClose { id: sid });
            }
            Some(SpanMark::Task(task, _)) => events::send(Event::TaskEnd { task }),
            Some(SpanMark::Transparent) | None => {}
        }
    }
}

fn mark<S>(ctx: &Context<'_, S>, id: &Id) -> Option<SpanMark>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // Reading extensions does not allocate: no internal scope needed on this path.
    ctx.span(id)?.extensions().get::<SpanMark>().copied()
}
