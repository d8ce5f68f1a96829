//! The `heapspan.process.window` span: one per window for the whole process, the root of the
//! window's trace (its task window spans are children, their findings under them). It carries
//! the process's figures for the window and what the volume bounds held back, so that the
//! window adds up even when not every task got a span.

use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use super::names as n;
use super::pipeline::{i64_of, unix_nanos};
use crate::windows::Window;

/// Emits the root span of window `w` and returns its context (the parent of the window's
/// spans). `residues`: whether the residue sample is on (its figures are added then).
pub(crate) fn emit(tracer: &SdkTracer, w: &Window, residues: bool) -> SpanContext {
    let snap = &w.snapshot;
    let end = snap.taken_at.max(w.start);
    let (total, prev) = (&snap.total, &w.total_at_start);
    let mut attrs = vec![
        KeyValue::new(n::WINDOW_START, unix_nanos(w.start)),
        KeyValue::new(n::WINDOW_END, unix_nanos(end)),
        KeyValue::new(
            n::MEMORY_ALLOCATED,
            i64_of(total.allocated_bytes.saturating_sub(prev.allocated_bytes)),
        ),
        KeyValue::new(
            n::MEMORY_FREED,
            i64_of(total.freed_bytes.saturating_sub(prev.freed_bytes)),
        ),
        KeyValue::new(n::MEMORY_LIVE, total.live_bytes()),
        KeyValue::new(n::MEMORY_PEAK, i64_of(total.peak_bytes)),
        KeyValue::new(
            n::ALLOCATIONS,
            i64_of(total.allocations.saturating_sub(prev.allocations)),
        ),
        KeyValue::new(n::WINDOW_EXACT, snap.is_exact()),
        KeyValue::new(n::WINDOW_TASKS, i64_of(w.tasks.len() as u64)),
        KeyValue::new(n::WINDOW_TASKS_OMITTED, i64_of(w.omitted_tasks)),
        KeyValue::new(n::WINDOW_TASKS_IDLE, i64_of(w.idle_tasks)),
    ];
    if residues {
        let r = &w.residues;
        let bytes: i64 = r
            .residues
            .iter()
            .map(|x| x.mem.live_bytes().max(0))
            .fold(0i64, i64::saturating_add);
        attrs.push(KeyValue::new(
            n::SPAN_RESIDUE_INSTANCES,
            i64_of(r.residues.len() as u64),
        ));
        attrs.push(KeyValue::new(
            n::SPAN_RESIDUE_CANDIDATES,
            i64_of(r.candidates),
        ));
        attrs.push(KeyValue::new(n::SPAN_RESIDUE_BYTES, bytes));
    }
    // An explicit, unsuppressed root context: the SDK drops spans started inside the
    // suppression scope.
    let mut span = tracer
        .span_builder(n::PROCESS_WINDOW_SPAN)
        .with_kind(SpanKind::Internal)
        .with_start_time(w.start.min(end))
        .with_attributes(attrs)
        .start_with_context(tracer, &Context::new());
    let cx = span.span_context().clone();
    span.end_with_timestamp(end);
    cx
}
