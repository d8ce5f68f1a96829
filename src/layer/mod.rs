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
pub(crate) mod polls;
pub mod task;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{field, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::aggregator::events::{self, Event, Loc};
use crate::aggregator::snapshot::{Location, TaskKey, TaskSource};
use crate::alloc::{self, InternalScope};
use crate::sync::statics::Ordering;

/// The layer. Create it with [`crate::layer()`] (or let [`crate::init()`] install it) and add it to a
/// `tracing_subscriber::Registry`.
#[derive(Debug, Default, Clone)]
pub struct MemoryLayer {
    _private: (),
}

impl MemoryLayer {
    /// A new layer. It attributes allocations to spans from the moment heapspan is started.
    pub fn new() -> Self {
        MemoryLayer { _private: () }
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

impl<S> Layer<S> for MemoryLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
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
        match mark(&ctx, id) {
            Some(SpanMark::User(sid, _)) => alloc::pop_span(sid),
            Some(SpanMark::Task(..)) => alloc::exit_task_name(),
            _ => {}
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let _scope = InternalScope::enter();
        match mark(&ctx, &id) {
            Some(SpanMark::User(sid, _)) => {
                #[cfg(feature = "tracing-opentelemetry")]
                if let Some(span) = ctx.span(&id) {
                    crate::export::user_spans::on_user_span_close(&id, span.metadata(), |a| {
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
