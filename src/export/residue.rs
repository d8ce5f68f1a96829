//! `heapspan.span.residue` spans: what a sampled application span instance still held a
//! window after it closed ([`crate::aggregator::residue`]), as a child of that span in the
//! application's trace, linked to the window it was read in. They are exported with
//! heapspan's spans: they join the application's trace where both reach the same backend.

use std::time::SystemTime;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use super::names as n;
use crate::aggregator::residue::Residue;

/// Emits the residue span of each instance read that still holds bytes, from its close to
/// `read_at`; `window` is the read window's `heapspan.process.window` span. Returns how many
/// were emitted.
pub(crate) fn emit(
    tracer: &SdkTracer,
    residues: &[Residue],
    read_at: SystemTime,
    window: &SpanContext,
) -> usize {
    let mut sent = 0;
    for r in residues.iter().filter(|r| r.mem.live_bytes() > 0) {
        // The application's span, in this process (not a remote parent), known by its ids.
        let parent = SpanContext::new(
            TraceId::from(r.ids.trace_id),
            SpanId::from(r.ids.span_id),
            TraceFlags::new(r.ids.flags),
            false,
            TraceState::default(),
        );
        let attrs = vec![
            KeyValue::new(n::SPAN_NAME, format!("{}::{}", r.target, r.name)),
            KeyValue::new(n::MEMORY_RESIDUE, r.mem.live_bytes()),
            KeyValue::new(n::ALLOCATIONS_RESIDUE, r.mem.live_allocations()),
            KeyValue::new(n::MEMORY_LIVE, r.live_at_close),
        ];
        let mut span = tracer
            .span_builder(n::SPAN_RESIDUE_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(r.closed.min(read_at))
            .with_attributes(attrs)
            .with_links(vec![Link::with_context(window.clone())])
            .start_with_context(tracer, &Context::new().with_remote_span_context(parent));
        span.end_with_timestamp(read_at);
        sent += 1;
    }
    sent
}
