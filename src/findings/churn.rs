//! `alloc.temporary_churn`: a span name whose allocations are made and freed again at a high
//! rate within the window. A performance hint, never a problem: info, diagnostic.
//!
//! From the snapshot's span-name figures: allocations this window at
//! [`FindingsConfig::churn_allocations_per_sec`] or more, and at least 99 % of them matched by
//! frees in the same window.

use std::collections::HashMap;

use super::{human, Draft, FindingsConfig, Input, Kind, Severity, Verdict};
use crate::export::names as n;

/// The share of the window's allocations freed again that makes them temporary.
const FREED_FRACTION: f64 = 0.99;

pub(crate) fn run(cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
    let Some(prev) = input.prev else { return };
    let before: HashMap<(&str, &str), (u64, u64, u64)> = prev
        .span_names
        .iter()
        .map(|s| {
            (
                (s.target, s.name),
                (s.mem.allocations, s.mem.frees, s.mem.allocated_bytes),
            )
        })
        .collect();
    let secs = input.seconds();
    for s in &input.snap.span_names {
        let (a0, f0, b0) = before
            .get(&(s.target, s.name))
            .copied()
            .unwrap_or((0, 0, 0));
        let allocs = s.mem.allocations.saturating_sub(a0);
        let frees = s.mem.frees.saturating_sub(f0);
        let rate = allocs as f64 / secs;
        if allocs == 0 || rate < cfg.churn_allocations_per_sec {
            continue;
        }
        let freed = frees as f64 / allocs as f64;
        if freed < FREED_FRACTION {
            continue;
        }
        let bytes = s.mem.allocated_bytes.saturating_sub(b0);
        // `target::name`, as every finding names a span (two targets may share a name).
        let label = format!("{}::{}", s.target, s.name);
        let mut d = Draft::new(
            Kind::TemporaryChurn,
            Severity::Info,
            Verdict::Diagnostic,
            format!(
                "span {} allocates {:.0} times a second ({} this window) and frees nearly all \
                 of it again: temporary allocations a reused buffer could avoid",
                label,
                rate,
                human(bytes)
            ),
        );
        d.confidence = 0.9;
        d.bytes = bytes;
        d.allocations = allocs;
        d.span_name = Some(label);
        d.ev(n::FINDING_RATE, rate);
        d.ev(n::FINDING_FREED_FRACTION, freed.min(1.0));
        d.ev(n::FINDING_THRESHOLD, cfg.churn_allocations_per_sec);
        out.push(d);
    }
}
