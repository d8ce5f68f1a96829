//! Memory attributes on the application's own spans (feature `tracing-opentelemetry`).
//!
//! When a user span closes, heapspan's layer calls [`on_user_span_close`], which records
//! `heapspan.memory.allocated`, `.freed`, `.live`, `.peak` and `heapspan.allocations` (all
//! `i64`) on it through the dispatcher, as if the span had declared them: every layer's
//! `on_record` sees them, so tracing-opentelemetry's layer adds them to the OpenTelemetry span
//! before it ends it in its own `on_close`. For that, heapspan's layer must be *below* the
//! OpenTelemetry layer in the stack (`registry().with(heapspan::layer()).with(otel_layer)`):
//! inner layers' `on_close` runs first.
//!
//! # What the values mean
//!
//! The figures of this span instance alone (allocations made while it was the innermost
//! entered span; its children have their own) at its close: the aggregator's last fold plus
//! what the closing thread recorded for the span since (read from the thread's own table
//! without waiting for a fold). What the span did on *other* threads since the last fold
//! (every `fold_interval`, 10 ms by default) is not included yet; a span that stays on one
//! thread, or whose last poll ran on the closing thread, is exact. `freed` counts bytes of the
//! span's allocations freed by anyone so far, `live` is allocated minus freed, `peak` the
//! highest live value seen at a fold or at the close. The user's thread never waits: if the
//! aggregator is folding at that very moment, the close waits for it at most 1 ms (yielding),
//! then records no attributes; while a snapshot copies the tables it does not wait at all.
//!
//! # What the span left behind: `heapspan.span.residue`
//!
//! `live` at the close counts what the span returns too (a response body still being
//! written), so a small leak per request drowns in it. With export on (and
//! [`ExportConfig::max_residue_spans`](crate::export::ExportConfig::max_residue_spans) above 0),
//! a span that closes holding memory is also offered to the residue sample: its OpenTelemetry
//! context is read from tracing-opentelemetry's layer (which needs that layer at version 0.34,
//! the one heapspan is built against), and a uniform sample of the window's such spans is read
//! again at the end of the next window. Each that still holds bytes gets a
//! `heapspan.span.residue` span, a child of it in its trace, with `heapspan.memory.residue`
//! (bytes it allocated still live then), `heapspan.allocations.residue` and its close-time
//! `heapspan.memory.live` (see [`crate::export`], "Residue").

use std::sync::{OnceLock, Weak};

use tracing_core::callsite::Callsite;
use tracing_core::field::Value;
use tracing_core::span::{Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Kind, Level, Metadata};
use tracing_subscriber::registry::LookupSpan;

use super::names;
use crate::aggregator::residue::OtelIds;
use crate::aggregator::{Aggregator, Shared};
use crate::alloc::InternalScope;
use crate::MemStats;

/// How long a span's close waits at most for a fold in progress before it gives up on the
/// memory attributes (the wait happens only when a close meets a fold).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

static SHARED: OnceLock<Weak<std::sync::Mutex<Aggregator>>> = OnceLock::new();

/// Makes the aggregator's tables reachable from the layer (heapspan starts once per process).
pub(crate) fn register(shared: &Shared) {
    let _ = SHARED.set(std::sync::Arc::downgrade(shared));
}

struct MemoryFields;
static CALLSITE: MemoryFields = MemoryFields;
static FIELDS: [&str; 5] = [
    names::MEMORY_ALLOCATED,
    names::MEMORY_FREED,
    names::MEMORY_LIVE,
    names::MEMORY_PEAK,
    names::ALLOCATIONS,
];
static META: Metadata<'static> = tracing_core::metadata! {
    name: "heapspan.memory",
    target: "heapspan",
    level: Level::TRACE,
    fields: &FIELDS,
    callsite: &CALLSITE,
    kind: Kind::SPAN,
};

impl Callsite for MemoryFields {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &META
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Called by the layer's `on_close` for a user span (before the span is removed), with the
/// tracing id, the span's metadata, heapspan's span word and a lookup of its figures in the
/// tables, e.g. `|a| Some(a.span_mem_now(sid))`. Waits at most `LOCK_WAIT` (1 ms), and only when
/// it meets a fold. When the residue sample is on and the span closes holding memory, it
/// offers the span to it with its OpenTelemetry context ([`watch_residue`]).
pub(crate) fn on_user_span_close(
    id: &Id,
    meta: &'static Metadata<'static>,
    sid: u64,
    lookup: impl FnOnce(&Aggregator) -> Option<MemStats>,
) {
    let _scope = InternalScope::enter();
    let Some(shared) = SHARED.get().and_then(Weak::upgrade) else {
        return;
    };
    // A fold holds the lock for tens of microseconds every `fold_interval` (longer in debug
    // builds): retry, yielding to it, for at most LOCK_WAIT; then give up on the attributes.
    let mut lookup = Some(lookup);
    let mut mem = None;
    let mut residue = false;
    let mut deadline = None;
    loop {
        match shared.try_lock() {
            Ok(a) => {
                residue = a.samples_residue();
                mem = lookup.take().and_then(|f| f(&a));
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let a = p.into_inner();
                residue = a.samples_residue();
                mem = lookup.take().and_then(|f| f(&a));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                if crate::aggregator::SNAPSHOTTING.load(std::sync::atomic::Ordering::Relaxed) {
                    break; // a snapshot copies the tables: no waiting for it
                }
                let now = std::time::Instant::now();
                if *deadline.get_or_insert(now + LOCK_WAIT) > now {
                    std::thread::yield_now();
                    continue;
                }
            }
        }
        break;
    }
    if let Some(mem) = mem {
        record_memory(id, meta, &mem);
        if residue && mem.live_bytes() > 0 {
            watch_residue(id, meta, sid, mem.live_bytes());
        }
    }
}

/// Offers a span that closes holding `live` bytes to the residue sample
/// ([`crate::aggregator::residue`]): reads its OpenTelemetry context from
/// tracing-opentelemetry's layer in the current dispatcher and, when it is valid and sampled,
/// sends it to the aggregator through the thread's queue (never waits). Without such a layer
/// (or with one of another major version than heapspan's 0.34) nothing is sent.
pub(crate) fn watch_residue(id: &Id, meta: &'static Metadata<'static>, sid: u64, live: i64) {
    use opentelemetry::trace::TraceContextExt as _;
    let ids = tracing::dispatcher::get_default(|d| {
        if !is_ours(d, id, meta) {
            return None;
        }
        // Starts tracing-opentelemetry's span if it has not yet (its builder holds the
        // attributes recorded so far, the memory fields included; later ones are set on the
        // started span): the trace id of a root span is only drawn then.
        let cx = tracing_opentelemetry::get_otel_context(id, d)?;
        let span = cx.span();
        let sc = span.span_context();
        (sc.is_valid() && sc.is_sampled()).then(|| OtelIds {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        })
    });
    if let Some(ids) = ids {
        crate::aggregator::events::send(crate::aggregator::events::Event::SpanWatch {
            id: sid,
            ids,
            live_at_close: live,
        });
    }
}

/// Whether `d` is the dispatcher holding span `id` (same id, same metadata).
fn is_ours(d: &tracing::Dispatch, id: &Id, meta: &'static Metadata<'static>) -> bool {
    d.downcast_ref::<tracing_subscriber::Registry>()
        .and_then(|r| r.span_data(id))
        .is_some_and(|s| {
            use tracing_subscriber::registry::SpanData;
            std::ptr::eq(s.metadata(), meta)
        })
}

/// Records the five memory fields on span `id` through the current dispatcher, if that
/// dispatcher is the one holding the span (same id, same metadata).
pub(crate) fn record_memory(id: &Id, meta: &'static Metadata<'static>, mem: &MemStats) {
    tracing::dispatcher::get_default(|d| {
        if !is_ours(d, id, meta) {
            return;
        }
        let vals = [
            i64_of(mem.allocated_bytes),
            i64_of(mem.freed_bytes),
            mem.live_bytes(),
            i64_of(mem.peak_bytes),
            i64_of(mem.allocations),
        ];
        let fields = META.fields();
        let mut it = fields.iter();
        let (Some(a), Some(f), Some(l), Some(p), Some(c)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return;
        };
        let values = [
            (&a, Some(&vals[0] as &dyn Value)),
            (&f, Some(&vals[1] as &dyn Value)),
            (&l, Some(&vals[2] as &dyn Value)),
            (&p, Some(&vals[3] as &dyn Value)),
            (&c, Some(&vals[4] as &dyn Value)),
        ];
        let set = fields.value_set(&values);
        d.record(id, &Record::new(&set));
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::*;

    /// Calls `record_memory` from its `on_close`, like heapspan's layer does.
    struct Closer(MemStats);
    impl<S: tracing_core::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Closer {
        fn on_close(&self, id: Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
            let meta = ctx.metadata(&id).expect("span");
            record_memory(&id, meta, &self.0);
        }
    }

    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);
    impl SpanProcessor for Collect {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(
            &self,
            _: std::time::Duration,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn memory_fields_reach_the_opentelemetry_span_as_i64() {
        let collect = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(collect.clone())
            .build();
        let mem = MemStats {
            allocated_bytes: 1000,
            allocations: 3,
            freed_bytes: 400,
            frees: 1,
            peak_bytes: 900,
        };
        let subscriber = tracing_subscriber::registry()
            .with(Closer(mem))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            span.in_scope(|| {});
        });
        let spans = collect.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let attr = |k: &str| {
            spans[0]
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.clone())
        };
        use opentelemetry::Value as V;
        assert_eq!(attr(names::MEMORY_ALLOCATED), Some(V::I64(1000)));
        assert_eq!(attr(names::MEMORY_FREED), Some(V::I64(400)));
        assert_eq!(attr(names::MEMORY_LIVE), Some(V::I64(600)));
        assert_eq!(attr(names::MEMORY_PEAK), Some(V::I64(900)));
        assert_eq!(attr(names::ALLOCATIONS), Some(V::I64(3)));
    }

    #[test]
    fn another_dispatchers_span_is_left_alone() {
        // The span lives in one subscriber; the close hook runs while another is the default:
        // nothing is recorded there (and nothing panics).
        let subscriber = tracing_subscriber::registry();
        let span_id = tracing::subscriber::with_default(subscriber, || {
            let s = tracing::info_span!("elsewhere");
            s.id()
        });
        let other = tracing_subscriber::registry();
        tracing::subscriber::with_default(other, || {
            if let Some(id) = span_id {
                record_memory(&id, &META, &MemStats::default());
            }
        });
    }
}
