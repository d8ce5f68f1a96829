//! FFI custody: pointers handed to foreign code, followed until Rust takes them back or the
//! foreign side lets go of them (the `ffi.custody` finding).
//!
//! Mark the handover with [`handover`] (a boundary name, and optionally a
//! [deadline](Passport::deadline) or [the current task's end](Passport::until_task_end)),
//! then [`reclaim`] when Rust takes the pointer back, or [`release`] when the foreign side
//! lets go of it without giving it back (it consumed the value, copied what it needed, or gave
//! it on to something that will call back into Rust to free it). Each handed-over pointer has
//! a *passport*; the window stage reports what broke its rules as a `ffi.custody` finding
//! (case in [`FINDING_CUSTODY_CASE`](crate::export::names::FINDING_CUSTODY_CASE), boundary in
//! [`FINDING_BOUNDARY`](crate::export::names::FINDING_BOUNDARY)):
//!
//! | case | what happened | severity |
//! |---|---|---|
//! | `not_reclaimed` | still in custody at its deadline or at its task's end, or given back after it ([`FINDING_CUSTODY_UNTIL`](crate::export::names::FINDING_CUSTODY_UNTIL): `deadline` or `task_end`) | medium; high when its danger surface reaches [`FindingsConfig::high_bytes`](crate::findings::FindingsConfig::high_bytes) |
//! | `freed_in_custody` | Rust freed (or reallocated) it while foreign code held it: the allocator did not free it (the block stays allocated, flagged, for good) | critical |
//! | `reclaimed_twice` | reclaimed again (two owners: the road to a double free) | critical |
//! | `released_after_reclaim`, `reclaimed_after_release` | both ends claim to have let go of it | high |
//! | `released_twice`, `handed_twice` | released again; handed over again while in custody | medium |
//! | `not_handed` | reclaimed or released with no passport: a missing [`handover`], or one too old to remember ([`MAX_SETTLED`]) | medium, probable |
//!
//! The *danger surface* of a handed-over pointer is its ownership closure in the relation
//! graph: the allocations reachable from it, which foreign code can reach too. With the live
//! index on ([`Builder::live_index`](crate::Builder::live_index)) and the block in the window's
//! graph, a finding's [`bytes`](crate::findings::Finding::bytes) are that closure's size, its
//! [`allocations`](crate::findings::Finding::allocations) the closure's blocks, and its
//! [`roots`](crate::findings::Finding::roots) the handed-over blocks (the DOT output
//! highlights their surfaces); otherwise its bytes are the handed-over blocks' own.
//!
//! A finding is kept for the rest of the run once found (a broken rule is an event; a later
//! window cannot find it again), one per problem (case, boundary, handover site, task, span),
//! with the pointers concerned in
//! [`FINDING_CUSTODY_POINTERS`](crate::export::names::FINDING_CUSTODY_POINTERS).
//!
//! # Cost
//!
//! Nothing for a program that never calls this module: the allocator's paths do not look at
//! it (the free path checks the block's header anyway, and the custody flag is one of its
//! bits), its tables are made by the first call, and the window stage skips it with one atomic
//! load. A call takes a process-wide lock for a hash-table update (and allocates in heapspan's
//! own bucket); never call it from inside an allocator.
//!
//! # What it can and cannot see
//!
//! - A free by Rust in custody is caught only for blocks heapspan's allocator handed out
//!   while heapspan runs ([`Passport::is_guarded`]); other passports still have their
//!   deadlines and task ends judged.
//! - A task's end is seen for tasks of heapspan's wrapper ([`crate::spawn`],
//!   [`crate::instrument`]) or, with `tokio_unstable`, any task, and only while heapspan
//!   still holds the task's record ([`Builder::ended_task_retention`](crate::Builder::ended_task_retention)
//!   ended tasks); a pointer given back between the task's end and the fold that saw it is
//!   not reported late (never the other way round).
//! - A deadline is judged at the next window; a pointer given back after its deadline is
//!   reported even if no window fell in between.
//! - Handovers for the life of the process need no term: a passport with neither a deadline
//!   nor a task end is never `not_reclaimed`.
//! - At most [`MAX_IN_CUSTODY`] pointers are followed at once; handovers beyond are not
//!   ([`Passport::is_tracked`]), and `not_handed` is then no longer reported (its passport may
//!   be among those).
//!
//! # Example
//!
//! ```
//! # #[global_allocator]
//! # static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
//! use std::ptr;
//! use std::sync::atomic::{AtomicPtr, Ordering};
//! use std::time::Duration;
//!
//! use heapspan::custody;
//! use heapspan::export::names::{FINDING_BOUNDARY, FINDING_CUSTODY_CASE};
//! use heapspan::findings::{EvidenceValue, Kind, Severity};
//!
//! // The foreign side: a C library that keeps the pointer it is given (here in Rust, with the
//! // C ABI; the integration tests use a real one).
//! static KEPT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
//! extern "C" fn keeper_take(p: *mut u8, _len: usize) {
//!     KEPT.store(p, Ordering::SeqCst);
//! }
//! extern "C" fn keeper_give_back() -> *mut u8 {
//!     KEPT.swap(ptr::null_mut(), Ordering::SeqCst)
//! }
//!
//! let guard = heapspan::builder().start()?;
//!
//! // Handed over, given back, reclaimed in time: nothing to report.
//! let buf = Box::into_raw(Box::new([7u8; 4096]));
//! // SAFETY: `buf` is a live block of the global allocator holding one `[u8; 4096]`.
//! let passport = unsafe { custody::handover(buf, 1, "keeper") }.deadline(Duration::from_secs(60));
//! assert!(passport.is_guarded(), "a free by Rust while C holds it would be caught");
//! keeper_take(buf.cast(), 4096);
//! let back = keeper_give_back().cast::<[u8; 4096]>();
//! custody::reclaim(back);
//! // SAFETY: given back and reclaimed: Rust owns it again.
//! drop(unsafe { Box::from_raw(back) });
//!
//! // Handed over with a deadline that passes while C still holds it: a finding.
//! let kept = Box::into_raw(Box::new([1u8; 512]));
//! // SAFETY: as above.
//! unsafe { custody::handover(kept, 1, "keeper") }.deadline(Duration::ZERO);
//! keeper_take(kept.cast(), 512);
//!
//! let findings = guard.cut_window();
//! let f = findings.iter().find(|f| f.kind == Kind::FfiCustody).expect("the kept pointer");
//! assert_eq!(f.severity, Severity::Medium);
//! assert_eq!(f.bytes, 512, "its danger surface: the block (the live index is off)");
//! let ev = |k| f.evidence.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
//! assert_eq!(ev(FINDING_CUSTODY_CASE), Some(EvidenceValue::Text("not_reclaimed".into())));
//! assert_eq!(ev(FINDING_BOUNDARY), Some(EvidenceValue::Text("keeper".into())));
//! # Ok::<(), heapspan::Error>(())
//! ```
//!
//! A runnable program against a real C library:
//! `cargo run -p heapspan-integration-tests --example ffi_custody`.

mod passport;

use std::collections::{HashMap, VecDeque};
use std::panic::Location;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub(crate) use passport::{Case, TaskEnd, Term, Violation};
use passport::{Passport as Entry, Stamp, State, Step};

use crate::alloc::header::Key;
use crate::sync::statics::{AtomicBool, Ordering};

/// Pointers followed in custody at once at most; handovers beyond are not followed
/// ([`Passport::is_tracked`]).
pub const MAX_IN_CUSTODY: usize = 65_536;
/// Settled passports remembered at most (the most recent): a second reclaim or release of a
/// pointer settled longer ago is `not_handed` rather than `reclaimed_twice`.
pub const MAX_SETTLED: usize = 4096;
/// Violations held between two windows at most (beyond, dropped).
const MAX_PENDING: usize = 4096;

/// A handover, as [`handover`] returns it: sets the terms of the custody.
///
/// Only the address and the handover's number are in it: the passport itself is heapspan's.
/// Setting a term on a passport that has ended (the pointer was reclaimed, or handed over
/// again) does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passport {
    addr: usize,
    /// 0: not tracked.
    seq: u64,
    guarded: bool,
}

impl Passport {
    /// Custody must end (by [`reclaim`] or [`release`]) within `within` of the handover; the
    /// next window after that finds it `not_reclaimed` if not, and a reclaim or release after
    /// it is reported as late. `Duration::ZERO`: any window finds it overdue.
    pub fn deadline(self, within: Duration) -> Passport {
        if self.is_tracked() {
            with_registry(|r| r.set_deadline(&self, within));
        }
        self
    }

    /// Custody must end before the current tokio task ends (the one current at
    /// [`handover`]). Outside a task it sets nothing. Task ends are seen for tasks of
    /// heapspan's wrapper ([`crate::spawn`]) or, with `tokio_unstable`, any task.
    pub fn until_task_end(self) -> Passport {
        if self.is_tracked() {
            with_registry(|r| r.until_task_end(&self));
        }
        self
    }

    /// Whether heapspan follows this handover (false beyond [`MAX_IN_CUSTODY`] pointers, or
    /// for a null pointer).
    pub fn is_tracked(&self) -> bool {
        self.seq != 0
    }

    /// Whether a free of the block by Rust while in custody is caught (and the block kept
    /// allocated): the pointer is a block heapspan's allocator handed out, of the size given,
    /// and heapspan runs.
    pub fn is_guarded(&self) -> bool {
        self.guarded
    }
}

/// Marks `ptr`, a block of `count` values of `T`, as handed to foreign code across
/// `boundary` (a name of your choosing: the library, or its function), from now on. Returns
/// its [`Passport`], to set a deadline or a task end on.
///
/// While heapspan runs, the block's header is flagged: if Rust frees it before [`reclaim`]
/// or [`release`], the allocator does not free it (foreign code may still use it) and the
/// free is reported (`freed_in_custody`). The handover's call site is the finding's code
/// location.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: heapspan::Allocator = heapspan::Allocator::system();
/// # let _guard = heapspan::builder().start()?;
/// // A `Vec`'s buffer: `capacity` values.
/// let mut v = std::mem::ManuallyDrop::new(Vec::<u64>::with_capacity(16));
/// // SAFETY: the buffer of a vector with capacity is a live block of 16 `u64`s.
/// let p = unsafe { heapspan::custody::handover(v.as_mut_ptr(), v.capacity(), "codec") };
/// assert!(p.is_guarded());
/// heapspan::custody::reclaim(v.as_ptr());
/// # unsafe { std::mem::ManuallyDrop::drop(&mut v) };
/// # Ok::<(), heapspan::Error>(())
/// ```
///
/// # Safety
///
/// `ptr` is null, or the start of a live allocation of the global allocator of exactly
/// `count × size_of::<T>()` bytes, which the caller owns (what `Box::into_raw` of a
/// non-zero-sized value gives with `count` 1, a `Vec`'s `as_mut_ptr()` with its capacity, a
/// `CString::into_raw()` with its length including the nul). Its header is written. A block
/// of another size is followed but not guarded.
#[track_caller]
pub unsafe fn handover<T>(ptr: *const T, count: usize, boundary: &'static str) -> Passport {
    let location = Location::caller();
    let key = current_key();
    let addr = ptr as usize;
    let size = count.saturating_mul(std::mem::size_of::<T>());
    if addr == 0 {
        return Passport {
            addr,
            seq: 0,
            guarded: false,
        };
    }
    // Only a running heapspan proves its allocator is the global one (`start` checks), which
    // writing the header needs.
    let running = crate::alloc::state::mode() != crate::alloc::state::Mode::Off;
    let new = Entry::new(0, addr, size, boundary, location, key, Stamp::now());
    with_registry(|r| {
        r.handover(new, || {
            // SAFETY: by the caller's contract `ptr` is the start of a live block of the
            // global allocator, which is heapspan's (it runs), owned by the caller; a block
            // of another size is read, not written (`set_custody` checks the header first).
            running
                && size != 0
                && unsafe { crate::alloc::set_custody(ptr.cast_mut().cast(), size, true) }
        })
    })
}

/// Marks `ptr` reclaimed: the foreign side gave it back and Rust owns it again. Its custody
/// ends (and its flag is cleared: Rust may free it). A pointer reclaimed twice, or after a
/// release, or never handed over, is a finding; one reclaimed after its deadline is reported
/// late. The call site is named in the finding.
#[track_caller]
pub fn reclaim<T: ?Sized>(ptr: *const T) {
    settle(
        ptr.cast::<u8>() as usize,
        State::Reclaimed,
        Location::caller(),
    );
}

/// Marks `ptr` released by the foreign side: it let go of the pointer without giving it back
/// (it consumed the value, or handed it on to something that frees it through Rust). Its
/// custody ends (and its flag is cleared). A pointer released twice, or after a reclaim, or
/// never handed over, is a finding. The call site is named in the finding.
///
/// A callback from foreign code into Rust that frees the value is not a release of this kind
/// but a [`reclaim`] followed by the free.
#[track_caller]
pub fn release<T: ?Sized>(ptr: *const T) {
    settle(
        ptr.cast::<u8>() as usize,
        State::Released,
        Location::caller(),
    );
}

fn settle(addr: usize, to: State, by: &'static Location<'static>) {
    if addr == 0 {
        return;
    }
    let key = current_key();
    with_registry(|r| {
        r.settle(addr, to, by, key, Stamp::now(), |size| {
            // SAFETY: the registry asks only for a guarded passport ending: its block was
            // flagged live, and a flagged block is never freed (the allocator keeps it), so
            // it is still a live block of heapspan's allocator of `size` bytes, which the
            // passport's owner owns again.
            unsafe { crate::alloc::set_custody(addr as *mut u8, size, false) }
        });
    });
}

/// The allocator caught a free (or realloc) by Rust of block `addr` while its custody flag
/// was set (the window stage passes on its invalid-free record); `freed_by` was current.
/// Returns whether a passport took it (else it stays a `dealloc.invalid`).
pub(crate) fn on_freed_in_custody(addr: usize, freed_by: Key, realloc: bool) -> bool {
    if !IN_USE.load(Ordering::Acquire) {
        return false;
    }
    with_registry(|r| r.freed(addr, freed_by, realloc, SystemTime::now()))
}

/// The violations found since the last call, with the terms judged now against `snap`'s
/// task ends. Nothing, and no lock, when this module was never used.
pub(crate) fn drain(snap: &crate::Snapshot) -> Vec<Violation> {
    if !IN_USE.load(Ordering::Acquire) {
        return Vec::new();
    }
    let ends: HashMap<u64, Option<SystemTime>> =
        snap.tasks.iter().map(|t| (t.key.id, t.ended)).collect();
    let now = Stamp::now();
    with_registry(|r| {
        r.drain(now, |task| match ends.get(&task) {
            Some(None) => TaskEnd::Running,
            Some(Some(end)) => TaskEnd::Ended(*end),
            None => TaskEnd::Unknown,
        })
    })
}

/// Set by the first call: the window stage and the allocator's reports skip the registry
/// until then.
static IN_USE: AtomicBool = AtomicBool::new(false);
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Runs `f` on the registry (made by the first call), in heapspan's own scope (what it
/// allocates is heapspan's). The lock is held only around `f`, which takes no other lock and
/// calls no user code.
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let _scope = crate::alloc::InternalScope::enter();
    IN_USE.store(true, Ordering::Release);
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(r.get_or_insert_with(Registry::default))
}

/// The task and span current on this thread, as an allocation would be attributed (taken
/// before heapspan's own scope is entered).
fn current_key() -> Key {
    let l = crate::alloc::local::local();
    Key::new(l.task_word(), l.spans.current())
}

/// Every passport, by address.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    passports: HashMap<usize, Entry>,
    /// `(address, handover)` of settled passports, oldest first (stale once re-handed).
    settled: VecDeque<(usize, u64)>,
    /// Passports in custody (or freed in it).
    open: usize,
    pending: Vec<Violation>,
    seq: u64,
    /// Handovers not followed (at [`MAX_IN_CUSTODY`]).
    refused: u64,
    /// Violations dropped (at [`MAX_PENDING`]).
    lost: u64,
}

impl Registry {
    fn push(&mut self, v: Option<Violation>) {
        let Some(v) = v else { return };
        if self.pending.len() < MAX_PENDING {
            self.pending.push(v);
        } else {
            self.lost += 1;
        }
    }

    /// The handover `new` (its number is the registry's to give); `flag()` sets the block's
    /// custody flag and says whether it could.
    pub(crate) fn handover(&mut self, mut new: Entry, flag: impl FnOnce() -> bool) -> Passport {
        let (addr, location, now) = (new.addr, new.location, new.handed);
        let untracked = Passport {
            addr,
            seq: 0,
            guarded: false,
        };
        let mut guarded_before = false;
        let mut twice = None;
        match self.passports.get(&addr) {
            // Rust handing over memory it freed: nothing to follow.
            Some(e) if e.state == State::FreedInCustody => return untracked,
            Some(e) if e.state == State::Handed => {
                guarded_before = e.guarded;
                twice = Some(e.violation(Case::HandedTwice, Some(location), now.wall));
            }
            Some(_) => self.open += 1,
            None if self.open >= MAX_IN_CUSTODY => {
                self.refused += 1;
                return untracked;
            }
            None => self.open += 1,
        }
        self.push(twice);
        self.seq += 1;
        new.seq = self.seq;
        new.guarded = guarded_before || flag();
        let p = Passport {
            addr,
            seq: new.seq,
            guarded: new.guarded,
        };
        self.passports.insert(addr, new);
        p
    }

    /// The passport of handle `p`, while in custody.
    fn in_custody(&mut self, p: &Passport) -> Option<&mut Entry> {
        self.passports
            .get_mut(&p.addr)
            .filter(|e| e.seq == p.seq && e.state == State::Handed)
    }

    /// [`Passport::deadline`].
    pub(crate) fn set_deadline(&mut self, p: &Passport, within: Duration) {
        if let Some(e) = self.in_custody(p) {
            e.set_deadline(within);
        }
    }

    /// [`Passport::until_task_end`]: the task current at the handover.
    pub(crate) fn until_task_end(&mut self, p: &Passport) {
        if let Some(e) = self.in_custody(p) {
            let task = e.key.task_id();
            e.task_end = (task != 0).then_some(task);
        }
    }

    /// A reclaim or release of `addr` at `by`, with `key` current; `unflag(size)` clears a
    /// guarded block's flag.
    pub(crate) fn settle(
        &mut self,
        addr: usize,
        to: State,
        by: &'static Location<'static>,
        key: Key,
        now: Stamp,
        unflag: impl FnOnce(usize) -> bool,
    ) {
        let Some(e) = self.passports.get_mut(&addr) else {
            if self.refused == 0 {
                self.push(Some(Violation {
                    case: Case::NotHanded,
                    term: None,
                    in_custody: false,
                    addr,
                    size: 0,
                    boundary: None,
                    location: by,
                    key,
                    by: Some(by),
                    freed_by: None,
                    realloc: false,
                    at: now.wall,
                }));
            }
            return;
        };
        let was = e.state;
        let Step {
            violation,
            unflag: clear,
        } = match to {
            State::Reclaimed => e.reclaim(now, by),
            _ => e.release(now, by),
        };
        let settled = was == State::Handed && e.state != State::Handed;
        let seq = e.seq;
        let size = e.size;
        if clear {
            // A guarded block's flag is always there to clear.
            let _ = unflag(size);
        }
        self.push(violation);
        if settled {
            self.open -= 1;
            self.settled.push_back((addr, seq));
            self.forget_settled();
        }
    }

    /// Forgets the oldest settled passports beyond [`MAX_SETTLED`].
    fn forget_settled(&mut self) {
        while self.settled.len() > MAX_SETTLED {
            let Some((addr, seq)) = self.settled.pop_front() else {
                break;
            };
            let settled = self
                .passports
                .get(&addr)
                .is_some_and(|e| e.seq == seq && !e.is_open());
            if settled {
                self.passports.remove(&addr);
            }
        }
    }

    /// The allocator caught a free by Rust of flagged block `addr`.
    pub(crate) fn freed(
        &mut self,
        addr: usize,
        freed_by: Key,
        realloc: bool,
        now: SystemTime,
    ) -> bool {
        let Some(e) = self.passports.get_mut(&addr) else {
            return false;
        };
        let reopened = !e.is_open();
        let v = Violation {
            freed_by: Some(freed_by),
            realloc,
            ..e.freed_by_rust(now)
        };
        if reopened {
            // Its entry in `settled` is stale now: it is kept while the block is.
            self.open += 1;
        }
        self.push(Some(v));
        true
    }

    /// Judges every passport's terms at `now` (`task_end` tells a task's end) and hands over
    /// the violations found since the last drain.
    pub(crate) fn drain(
        &mut self,
        now: Stamp,
        mut task_end: impl FnMut(u64) -> TaskEnd,
    ) -> Vec<Violation> {
        let mut found = Vec::new();
        for e in self.passports.values_mut() {
            if !e.needs_check() {
                continue;
            }
            let task = e.task_end.map_or(TaskEnd::Unknown, &mut task_end);
            found.extend(e.check(now, task));
        }
        for v in found {
            self.push(Some(v));
        }
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests;
