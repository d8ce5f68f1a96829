//! `dealloc.invalid`: the invalid frees the allocator caught ([`crate::alloc::invalid`]), one
//! finding per problem (case, who allocated, who freed, layout), kept for the rest of the run:
//! an invalid free is an event, not a state a later window could find again.

use std::collections::HashMap;

use super::{Draft, Kind, Severity, Verdict};
use crate::alloc::invalid::Case;
use crate::export::names as n;

/// Distinct invalid frees kept (beyond it, only the counts of known ones grow).
const MAX_KEPT: usize = 256;

/// Who was current (or allocated): the task's display name and the span's `target::name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub(crate) task: String,
    pub(crate) span: Option<String>,
}

/// One invalid free, with names (the window stage resolves the allocator's keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct InvalidFree {
    pub(crate) case: Case,
    pub(crate) realloc: bool,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) allocated_size: Option<u64>,
    pub(crate) allocated_by: Option<Owner>,
    pub(crate) first_free_by: Option<Owner>,
    pub(crate) freed_by: Owner,
}

/// The invalid frees seen so far, with their counts.
#[derive(Default)]
pub(crate) struct State {
    seen: HashMap<InvalidFree, u64>,
    order: Vec<InvalidFree>,
    lost: u64,
}

impl State {
    /// Takes this window's invalid frees (`lost`: the allocator's count of those its queue had
    /// no room for) and drafts a finding for every one seen in the run.
    pub(crate) fn run(&mut self, new: &[InvalidFree], lost: u64, out: &mut Vec<Draft>) {
        self.lost = lost;
        for f in new {
            if let Some(c) = self.seen.get_mut(f) {
                *c += 1;
            } else if self.seen.len() < MAX_KEPT {
                self.seen.insert(f.clone(), 1);
                self.order.push(f.clone());
            } else {
                self.lost += 1;
            }
        }
        for f in &self.order {
            out.push(draft(f, self.seen[f], self.lost));
        }
    }
}

fn owner_text(o: Option<&Owner>) -> String {
    match o {
        Some(o) => match &o.span {
            Some(s) => format!("task `{}` (span `{s}`)", o.task),
            None => format!("task `{}` (no span)", o.task),
        },
        None => "an unknown place".to_owned(),
    }
}

fn draft(f: &InvalidFree, count: u64, lost: u64) -> Draft {
    let op = if f.realloc { "realloc" } else { "free" };
    let what = format!("a {} B block", f.size);
    let (case, severity, summary) = match f.case {
        Case::DoubleFree => (
            "double_free",
            Severity::Critical,
            format!(
                "{what} allocated in {} was freed twice: first in {}, again ({op}) in {}; the \
                 second {op} was not forwarded (the block is quarantined)",
                owner_text(f.allocated_by.as_ref()),
                owner_text(f.first_free_by.as_ref()),
                owner_text(Some(&f.freed_by)),
            ),
        ),
        Case::InCustody => (
            "in_custody",
            Severity::Critical,
            format!(
                "{what} allocated in {} and handed to foreign code was freed by Rust ({op}) in \
                 {} while in foreign custody; it stays allocated",
                owner_text(f.allocated_by.as_ref()),
                owner_text(Some(&f.freed_by)),
            ),
        ),
        Case::LayoutMismatch => (
            "layout_mismatch",
            Severity::High,
            format!(
                "a block of {} B allocated in {} was given to {op} in {} as {} B (alignment \
                 {}); not forwarded",
                f.allocated_size.unwrap_or(0),
                owner_text(f.allocated_by.as_ref()),
                owner_text(Some(&f.freed_by)),
                f.size,
                f.align
            ),
        ),
        Case::Unrecognised => (
            "unrecognised",
            Severity::High,
            format!(
                "{op} in {} of {what} heapspan does not recognise: a pointer it never handed \
                 out, a block freed with another size, or a second free whose traces were \
                 reused; not forwarded",
                owner_text(Some(&f.freed_by)),
            ),
        ),
    };
    let mut d = Draft::new(Kind::DeallocInvalid, severity, Verdict::Confirmed, summary);
    d.confidence = 1.0;
    d.bytes = f.size;
    d.allocations = count;
    let named = f.allocated_by.as_ref().unwrap_or(&f.freed_by);
    d.task_name = Some(named.task.clone());
    d.span_name = named.span.clone();
    let unknown = || "unknown".to_owned();
    d.ev(n::FINDING_INVALID_CASE, case)
        .ev(n::FINDING_INVALID_OP, op)
        .ev(
            n::FINDING_ALLOC_TASK,
            f.allocated_by
                .as_ref()
                .map_or_else(unknown, |o| o.task.clone()),
        )
        .ev(
            n::FINDING_ALLOC_SPAN,
            f.allocated_by
                .as_ref()
                .and_then(|o| o.span.clone())
                .unwrap_or_default(),
        )
        .ev(n::FINDING_FREE_TASK, f.freed_by.task.clone())
        .ev(
            n::FINDING_FREE_SPAN,
            f.freed_by.span.clone().unwrap_or_default(),
        )
        .ev(n::FINDING_LAYOUT_SIZE, f.size)
        .ev(n::FINDING_LAYOUT_ALIGN, f.align);
    if let Some(first) = &f.first_free_by {
        d.ev(n::FINDING_FIRST_FREE_TASK, first.task.clone()).ev(
            n::FINDING_FIRST_FREE_SPAN,
            first.span.clone().unwrap_or_default(),
        );
    }
    if let Some(real) = f.allocated_size {
        d.ev(n::FINDING_ALLOCATED_SIZE, real);
    }
    if lost > 0 {
        d.ev(n::FINDING_INVALID_LOST, lost);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(task: &str, span: Option<&str>) -> Owner {
        Owner {
            task: task.to_owned(),
            span: span.map(str::to_owned),
        }
    }

    #[test]
    fn a_double_free_is_critical_names_both_frees_and_is_kept_with_its_count() {
        let f = InvalidFree {
            case: Case::DoubleFree,
            realloc: false,
            size: 256,
            align: 8,
            allocated_size: None,
            allocated_by: Some(owner("victim", Some("app::load"))),
            first_free_by: Some(owner("first", None)),
            freed_by: owner("second", Some("app::drop")),
        };
        let mut st = State::default();
        let mut out = Vec::new();
        st.run(&[f.clone(), f.clone()], 0, &mut out);
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(
            (d.kind, d.severity, d.verdict),
            (Kind::DeallocInvalid, Severity::Critical, Verdict::Confirmed)
        );
        assert_eq!((d.bytes, d.allocations), (256, 2));
        assert_eq!(d.task_name.as_deref(), Some("victim"));
        let ev = |k: &str| {
            d.evidence
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| format!("{v:?}"))
        };
        assert!(ev(n::FINDING_INVALID_CASE).unwrap().contains("double_free"));
        assert!(ev(n::FINDING_FIRST_FREE_TASK).unwrap().contains("first"));
        assert!(ev(n::FINDING_FREE_SPAN).unwrap().contains("app::drop"));
        // A later window with nothing new still carries it.
        let mut out = Vec::new();
        st.run(&[], 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].allocations, 2);
    }

    #[test]
    fn an_unrecognised_free_is_high_and_names_the_freeing_place() {
        let f = InvalidFree {
            case: Case::Unrecognised,
            realloc: true,
            size: 64,
            align: 16,
            allocated_size: None,
            allocated_by: None,
            first_free_by: None,
            freed_by: owner("ffi", None),
        };
        let mut out = Vec::new();
        State::default().run(&[f], 3, &mut out);
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].task_name.as_deref(), Some("ffi"));
        assert!(out[0].summary.contains("realloc"));
        assert!(out[0]
            .evidence
            .iter()
            .any(|(k, _)| *k == n::FINDING_INVALID_LOST));
    }
}
