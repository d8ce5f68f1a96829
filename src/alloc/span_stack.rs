//! Per-thread attribution context the layer and the task wrapper keep up to date: the stack of
//! entered user spans, and the name of the task being polled.
//!
//! Both live in the thread-local ([`super::local`](mod@super::local)) and are plain cells written only by
//! their own thread, so the allocation hot path reads them with two loads.

use std::cell::Cell;

/// Entered spans tracked per thread; deeper ones are counted (`span_stack_overflow`) and
/// their allocations go to the deepest tracked span.
pub(crate) const SPAN_STACK: usize = 32;
/// Task-name frames tracked per thread (a runtime driven inside a task's poll nests them).
const NAME_STACK: usize = 8;

/// Entered user spans, innermost last.
#[derive(Debug)]
pub(crate) struct SpanStack {
    spans: [Cell<u64>; SPAN_STACK],
    /// Spans tracked in `spans`.
    len: Cell<usize>,
    /// Spans entered while `spans` was full: not tracked, only counted.
    untracked: Cell<usize>,
    /// The innermost tracked span word (0 for none), kept up to date by push and pop.
    current: Cell<u64>,
}

impl SpanStack {
    pub(crate) const fn new() -> Self {
        SpanStack {
            spans: [const { Cell::new(0) }; SPAN_STACK],
            len: Cell::new(0),
            untracked: Cell::new(0),
            current: Cell::new(0),
        }
    }

    /// The span word allocations get now.
    #[inline(always)]
    pub(crate) fn current(&self) -> u64 {
        self.current.get()
    }

    /// Span `word` was entered. False if the stack was too deep to track it.
    pub(crate) fn push(&self, word: u64) -> bool {
        let n = self.len.get();
        if n < SPAN_STACK {
            self.spans[n].set(word);
            self.len.set(n + 1);
            self.current.set(word);
            true
        } else {
            self.untracked.set(self.untracked.get() + 1);
            false
        }
    }

    /// Span `word` was exited (spans may exit in any order). A span not among the tracked
    /// ones is one of the untracked (if any are entered); every exit of an entered span
    /// undoes exactly one enter, so the stack never gets stuck. Spans are matched by instance
    /// (the span word's low bits): a span whose group changed while it was entered here
    /// (a group field recorded on another thread) is still found.
    pub(crate) fn pop(&self, word: u64) {
        let n = self.len.get();
        if let Some(pos) = (0..n)
            .rev()
            .find(|&i| same_instance(self.spans[i].get(), word))
        {
            for i in pos..n - 1 {
                self.spans[i].set(self.spans[i + 1].get());
            }
            self.len.set(n - 1);
            self.current
                .set(if n > 1 { self.spans[n - 2].get() } else { 0 });
        } else if self.untracked.get() > 0 {
            self.untracked.set(self.untracked.get() - 1);
        }
    }

    /// Span `old` moved to another group (a group field was recorded): where it is entered on
    /// this thread, it is `new` from now on, so that its next allocations here carry `new`.
    pub(crate) fn regroup(&self, old: u64, new: u64) {
        let n = self.len.get();
        for c in &self.spans[..n] {
            if same_instance(c.get(), old) {
                c.set(new);
            }
        }
        if n > 0 {
            self.current.set(self.spans[n - 1].get());
        }
    }
}

/// Two span words of the same span instance (its group may differ).
#[inline]
fn same_instance(a: u64, b: u64) -> bool {
    (a ^ b) & super::header::SPAN_MASK == 0
}

/// The name of the task being polled on this thread, for the task it was set for: a task
/// polled inside it (a `LocalSet` driven from a task) has another id and gets no name from it.
#[derive(Debug)]
pub(crate) struct TaskName {
    /// Task id the name belongs to (0: none).
    task: Cell<u64>,
    /// Its name index, shifted into the task word (`name << 48`).
    hi: Cell<u64>,
    /// Outer frames, restored when the inner one ends.
    saved: [Cell<(u64, u64)>; NAME_STACK],
    depth: Cell<usize>,
}

impl TaskName {
    pub(crate) const fn new() -> Self {
        TaskName {
            task: Cell::new(0),
            hi: Cell::new(0),
            saved: [const { Cell::new((0, 0)) }; NAME_STACK],
            depth: Cell::new(0),
        }
    }

    /// The name bits of task `id`'s task word: its name if it is the task named here, else 0
    /// (unnamed).
    #[inline(always)]
    pub(crate) fn hi_for(&self, id: u64) -> u64 {
        if self.task.get() == id {
            self.hi.get()
        } else {
            0
        }
    }

    /// Task `id` named `hi` starts a poll (or its drop) on this thread.
    pub(crate) fn enter(&self, id: u64, hi: u64) {
        let d = self.depth.get();
        if d < NAME_STACK {
            self.saved[d].set((self.task.get(), self.hi.get()));
        }
        self.depth.set(d + 1);
        self.task.set(id);
        self.hi.set(hi);
    }

    /// The poll begun by the matching [`TaskName::enter`] ends.
    pub(crate) fn exit(&self) {
        let d = self.depth.get();
        if d == 0 {
            return;
        }
        self.depth.set(d - 1);
        let (task, hi) = if d - 1 < NAME_STACK {
            self.saved[d - 1].get()
        } else {
            (0, 0)
        };
        self.task.set(task);
        self.hi.set(hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_pop_out_of_order_and_beyond_capacity() {
        let s = SpanStack::new();
        assert!(s.push(1) && s.push(2) && s.push(3));
        s.pop(2);
        assert_eq!(s.current(), 3);
        s.pop(3);
        assert_eq!(s.current(), 1);
        s.pop(1);
        assert_eq!(s.current(), 0);
        // Twice the capacity nested, then exited outermost first: the stack must come back
        // to empty and track spans again.
        let n = 2 * SPAN_STACK as u64;
        for w in 1..=n {
            assert_eq!(s.push(w), w <= SPAN_STACK as u64);
        }
        assert_eq!(s.current(), SPAN_STACK as u64);
        for w in 1..=n {
            s.pop(w);
        }
        assert_eq!(s.current(), 0);
        assert!(s.push(7), "tracked again");
        assert_eq!(s.current(), 7);
        s.pop(7);
        // A span exited that was never entered here changes nothing.
        s.pop(99);
        assert!(s.push(8));
        assert_eq!(s.current(), 8);
    }

    #[test]
    fn a_regrouped_span_is_current_with_its_new_word_and_pops_by_either() {
        use crate::alloc::header::span_word;
        let s = SpanStack::new();
        let (outer, inner) = (span_word(1, 10), span_word(2, 11));
        assert!(s.push(outer) && s.push(inner));
        s.regroup(inner, span_word(5, 11));
        assert_eq!(
            s.current(),
            span_word(5, 11),
            "allocations get the new group"
        );
        s.regroup(outer, span_word(6, 10));
        assert_eq!(
            s.current(),
            span_word(5, 11),
            "an outer span moves in place"
        );
        // An exit with the old word (a thread that read the span's mark before the change)
        // still finds it.
        s.pop(inner);
        assert_eq!(s.current(), span_word(6, 10));
        s.pop(span_word(6, 10));
        assert_eq!(s.current(), 0);
    }

    #[test]
    fn task_names_nest_and_apply_to_their_own_task_only() {
        let n = TaskName::new();
        n.enter(7, 1 << 48);
        assert_eq!(n.hi_for(7), 1 << 48);
        assert_eq!(
            n.hi_for(8),
            0,
            "another task polled inside gets no name from it"
        );
        n.enter(8, 2 << 48);
        assert_eq!(n.hi_for(8), 2 << 48);
        n.exit();
        assert_eq!(n.hi_for(7), 1 << 48);
        n.exit();
        assert_eq!(n.hi_for(7), 0);
    }
}
