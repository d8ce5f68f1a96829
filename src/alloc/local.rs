//! The thread-local state: the thread's table (claimed on its first operation, given back at
//! its exit), the re-entrancy flags, the attribution context, and the sampler.

use std::cell::Cell;
use std::ptr;

use super::header::{self, Key, TASK_HEAPSPAN, TASK_NONE};
use super::slots::{Hint, ThreadState, ACTIVE, FREE};
use super::span_stack::{SpanStack, TaskName};
use super::state::{self, Pool};
use crate::sync::statics::Ordering;

/// `Local::state` of a thread whose table was given back at its exit (it borrows one per
/// operation from then on). Real tables are above it (it is the tables' alignment).
pub(crate) const ORPHAN: *const ThreadState = ptr::dangling();
/// `Local::state` of a thread that found no free table when it tried to claim one: it tries
/// again at its next operation (below [`ORPHAN`], so no table test mistakes it for a table).
const NO_TABLE: *const ThreadState = ptr::without_provenance(1);

pub(crate) struct Local {
    /// This thread's table: null until claimed, [`NO_TABLE`] while none was free, [`ORPHAN`]
    /// once given back at the thread's exit.
    pub(crate) state: Cell<*const ThreadState>,
    /// Claiming a table (the one step that calls out: registering the exit hook).
    pub(crate) busy: Cell<bool>,
    /// `internal > 0 || busy`, kept up to date so the hot path reads one cell.
    pub(crate) heapspan_own: Cell<bool>,
    /// Depth of heapspan code on this thread (its threads hold it for life).
    internal: Cell<u32>,
    /// Slot used last, in this thread's own table (a hint for the next lookup).
    pub(crate) hint: Hint,
    /// The table this thread had or borrowed last (where a borrow looks first).
    last_table: Cell<usize>,
    /// Entered user spans.
    pub(crate) spans: SpanStack,
    /// The name of the task being polled.
    pub(crate) task_name: TaskName,
    /// Byte countdown of the sampled live index.
    pub(crate) sampler: super::sampler::Sampler,
}

thread_local! {
    // No destructor: it stays readable while the thread exits, after other locals are gone.
    static LOCAL: Local = const {
        Local {
            state: Cell::new(ptr::null()),
            busy: Cell::new(false),
            heapspan_own: Cell::new(false),
            internal: Cell::new(0),
            hint: Hint::new(),
            last_table: Cell::new(0),
            spans: SpanStack::new(),
            task_name: TaskName::new(),
            sampler: super::sampler::Sampler::new(),
        }
    };
    // Its destructor hands the thread's table back to the pool when the thread exits.
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit };
}

/// This thread's `Local`, without a closure per access.
#[inline(always)]
pub(crate) fn local() -> &'static Local {
    let p: *const Local = LOCAL.with(ptr::from_ref);
    // SAFETY: `LOCAL` has a `const` initialiser and no destructor, so its storage is valid from
    // the thread's start to its very end. `Local` holds `Cell`s and is not `Sync`, so the
    // reference cannot leave this thread, and no code of this thread runs after its end.
    unsafe { &*p }
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        release_thread();
    }
}

/// Gives this thread's table back to the pool; from now on its operations borrow a free table
/// one at a time (what a thread's exit does, after which more frees may still come).
fn release_thread() {
    let _ = LOCAL.try_with(|l| {
        let st = l.state.replace(ORPHAN);
        if !st.is_null() && st != ORPHAN {
            // SAFETY: a non-sentinel `state` points into the leaked pool.
            unsafe { (*st).status.store(FREE, Ordering::Release) };
        }
    });
}

/// For tests: does to the calling thread what its exit does to heapspan's thread-local state,
/// so that a test can free memory "after the thread's locals are gone" deterministically.
#[doc(hidden)]
pub fn simulate_thread_exit() {
    release_thread();
}

impl Local {
    /// This thread's own table, if it has one.
    #[inline(always)]
    pub(crate) fn table(&self) -> Option<&'static ThreadState> {
        let st = self.state.get();
        if st as usize > ORPHAN as usize {
            // SAFETY: a non-sentinel `state` points into the leaked pool, and this thread owns
            // that table (claimed with a CAS, given back only by this thread's exit hook,
            // after which `state` is the sentinel).
            Some(unsafe { &*st })
        } else {
            None
        }
    }

    /// Whether this thread should try to claim a table of its own now: it never had one, or
    /// none was free when it last tried, and it is not claiming one already.
    #[inline]
    pub(crate) fn may_claim(&self) -> bool {
        let st = self.state.get();
        (st.is_null() || st == NO_TABLE) && !self.busy.get()
    }

    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.set(busy);
        self.heapspan_own.set(busy || self.internal.get() > 0);
    }

    fn set_internal(&self, internal: u32) {
        self.internal.set(internal);
        self.heapspan_own.set(self.busy.get() || internal > 0);
    }

    /// The task word an allocation on this thread gets now (outside heapspan's own code).
    #[inline(always)]
    pub(crate) fn task_word(&self) -> u64 {
        let Some(id) = tokio::task::try_id() else {
            return TASK_NONE;
        };
        let id = super::key::task_id_u64(id);
        header::task_word(id, self.task_name.hi_for(id))
    }

    /// The task word of the task of id `id` ([`Local::current_task_id`]'s: 0 for none), named
    /// as this thread knows it: [`Local::task_word`] for an id asked for already (the freeing
    /// side of a hand-off).
    #[inline]
    pub(crate) fn task_word_of(&self, id: u64) -> u64 {
        if id == 0 {
            TASK_NONE
        } else {
            header::task_word(id, self.task_name.hi_for(id))
        }
    }

    /// The tokio task current on this thread: its id, 0 outside any task or for an id a
    /// header cannot hold (as [`header::task_word`] counts it). What a free compares with the
    /// id bits of the block's task word ([`super::record::maybe_handoff`]).
    #[inline(always)]
    pub(crate) fn current_task_id() -> u64 {
        match tokio::task::try_id() {
            Some(id) => {
                let id = super::key::task_id_u64(id);
                if id >= header::ID_LIMIT {
                    0
                } else {
                    id
                }
            }
            None => 0,
        }
    }

    /// The key an allocation made now on this thread gets.
    #[inline(always)]
    pub(crate) fn alloc_key(&self) -> Key {
        if self.heapspan_own.get() {
            Key::new(TASK_HEAPSPAN, 0)
        } else {
            Key::new(self.task_word(), self.spans.current())
        }
    }

    /// Claims a table for this thread outside any operation (the indexed path needs it before
    /// recording); the sentinel if none is free.
    #[cold]
    #[inline(never)]
    pub(crate) fn claim_now(&self) -> *const ThreadState {
        let Some(pool) = state::pool() else {
            return ptr::null();
        };
        self.set_busy(true);
        let st = self.claim(pool);
        self.set_busy(false);
        st
    }

    /// Claims a free table of the pool for good (the thread's own).
    #[cold]
    pub(crate) fn claim(&self, pool: &'static Pool) -> *const ThreadState {
        let Some(st) = take_table(pool, self.last_table.get()) else {
            self.state.set(NO_TABLE);
            return NO_TABLE;
        };
        self.last_table.set(st.id());
        self.state.set(st);
        // Registering the exit hook may allocate (glibc's TLS destructor list does so with its
        // own allocator; other platforms' std may use the global one): the table is already
        // set, so such an allocation is recorded in it (no table operation is in progress).
        let _ = RELEASE.try_with(|_| ());
        st
    }

    /// Runs `f` on a table borrowed for this one call (a thread without a table of its own);
    /// `None` if every table of the pool is claimed.
    #[cold]
    pub(crate) fn with_borrowed<R>(&self, f: impl FnOnce(&ThreadState, &Hint) -> R) -> Option<R> {
        let pool = state::pool()?;
        let st = take_table(pool, self.last_table.get())?;
        self.last_table.set(st.id());
        // A hint for this call only: the thread's own hint must keep pointing into its own
        // table (or nowhere).
        let hint = Hint::new();
        let r = f(st, &hint);
        // Hands the table (and what was written to it) to its next claimer.
        st.status.store(FREE, Ordering::Release);
        Some(r)
    }
}

/// Takes a free table of `pool` (first at `near`, then among those claimed before, then a
/// fresh one): claimed with a CAS, so it is the caller's alone until it stores `FREE`.
pub(crate) fn take_table(pool: &'static Pool, near: usize) -> Option<&'static ThreadState> {
    let all = pool.all();
    let try_take = |i: usize| -> Option<&'static ThreadState> {
        let t = &all[i];
        (t.status.load(Ordering::Relaxed) == FREE
            && t.status
                .compare_exchange(FREE, ACTIVE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        .then_some(t)
    };
    let high = pool.claimed().len();
    let found = (near < high)
        .then(|| try_take(near).map(|t| (near, t)))
        .flatten()
        .or_else(|| (0..high).find_map(|i| try_take(i).map(|t| (i, t))))
        .or_else(|| (high..all.len()).find_map(|i| try_take(i).map(|t| (i, t))));
    let (i, st) = found?;
    st.set_id(i);
    // Readers (the aggregator, the scanner) take `..high`.
    pool.high.fetch_max(i as u64 + 1, Ordering::AcqRel);
    Some(st)
}

/// Queues lifecycle event `w` behind the calling thread's recorded operations, in its own
/// table; false if the thread has none (the caller sends it another way). Never called from
/// inside the allocator.
pub(crate) fn push_event(w: super::ring::Words) -> bool {
    local().table().is_some_and(|st| st.push_event(w))
}

/// The calling thread's own table, if it has one.
pub(crate) fn current_table() -> Option<&'static ThreadState> {
    local().table()
}

/// The calling thread's table (its index in the pool) and the attribution key an allocation
/// in span `span` would get right now; `None` if the thread has no table.
pub(crate) fn current_key_for_span(span: u64) -> Option<(usize, Key)> {
    let l = local();
    let st = l.table()?;
    Some((st.id(), Key::new(l.task_word(), span)))
}

// ---------------------------------------------------------------------------------------------
// Hooks for the layer, the task wrapper and heapspan's own code.

/// While alive, allocations on this thread go to the `heapspan` bucket.
#[derive(Debug)]
pub(crate) struct InternalScope(());

impl InternalScope {
    pub(crate) fn enter() -> Self {
        let _ = LOCAL.try_with(|l| l.set_internal(l.internal.get().saturating_add(1)));
        InternalScope(())
    }
}

impl Drop for InternalScope {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| l.set_internal(l.internal.get().saturating_sub(1)));
    }
}

/// Marks the calling thread as heapspan's own for the rest of its life.
pub(crate) fn mark_internal_thread() {
    std::mem::forget(InternalScope::enter());
}

/// The layer entered the span with span word `word` on this thread. Returns false if the
/// stack was too deep to track it.
pub(crate) fn push_span(word: u64) -> bool {
    local().spans.push(word)
}

/// The layer exited the span with span word `word` on this thread.
pub(crate) fn pop_span(word: u64) {
    local().spans.pop(word)
}

/// Span `old` is span word `new` from now on (its group changed): where it is entered on this
/// thread, its next allocations carry `new`.
pub(crate) fn regroup_span(old: u64, new: u64) {
    local().spans.regroup(old, new)
}

/// Task `id` with name index `name` starts a poll (or its drop) on this thread: its
/// allocations carry the name until [`exit_task_name`].
pub(crate) fn enter_task_name(id: u64, name: u16) {
    local().task_name.enter(id, header::name_hi(name));
}

/// The poll begun by the matching [`enter_task_name`] ends.
pub(crate) fn exit_task_name() {
    local().task_name.exit();
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use crate::alloc::header::Key;
    use crate::alloc::slots::{Applied, Op, Queued};

    /// Two threads without a table of their own each borrow the pool's one table for an
    /// operation (the claim and the release of `with_borrowed`, and the table's real record),
    /// while the aggregator reads it: the table is never written by two threads at once, and
    /// every byte is applied exactly once.
    #[test]
    fn borrowed_tables_serialize_their_users_and_lose_nothing() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let tables: &'static [ThreadState] = Box::leak(Box::new([ThreadState::new()]));
            let pool: &'static Pool = Box::leak(Box::new(Pool::of(tables)));
            let users: Vec<_> = (1..=2u64)
                .map(|t| {
                    loom::thread::spawn(move || loop {
                        if let Some(st) = take_table(pool, 0) {
                            let hint = Hint::new();
                            assert!(st.record(Key::new(t, 0), Op::Alloc(10 * t), &hint));
                            st.status.store(FREE, Ordering::Release);
                            break;
                        }
                        loom::thread::yield_now();
                    })
                })
                .collect();
            let mut applied = Applied::default();
            let mut total = 0u64;
            let mut add = |q: Queued| {
                if let Queued::Tenancy(r) = q {
                    total += applied.delta(&r).map_or(0, |d| d.alloc_bytes);
                }
            };
            tables[0].read(&mut add);
            for u in users {
                u.join().unwrap();
            }
            tables[0].read(&mut add);
            assert_eq!(total, 30, "each byte applied exactly once");
        });
    }
}
