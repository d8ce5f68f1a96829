//! One pointer's passport: the state machine of a handover to foreign code, and the violations
//! its transitions find.
//!
//! | state \ event | reclaim | release | freed by Rust | check (deadline, task end) |
//! |---|---|---|---|---|
//! | `Handed` | `Reclaimed` (late: `not_reclaimed`) | `Released` (late: `not_reclaimed`) | `FreedInCustody`: `freed_in_custody` | past it: `not_reclaimed`, once |
//! | `Reclaimed` | `reclaimed_twice` | `released_after_reclaim` | `FreedInCustody`: `freed_in_custody` | task ended before the reclaim: `not_reclaimed`, once |
//! | `Released` | `reclaimed_after_release` | `released_twice` | `FreedInCustody`: `freed_in_custody` | as for `Reclaimed` |
//! | `FreedInCustody` | nothing new | nothing new | `freed_in_custody` again | nothing |
//!
//! A handover of a pointer whose passport is `Handed` is `handed_twice` (the new passport
//! replaces it); of one that is `Reclaimed` or `Released`, a new custody; of one that is
//! `FreedInCustody`, nothing (Rust handing over memory it freed). A reclaim or release of a
//! pointer with no passport is `not_handed` ([`super::Registry`]).
//!
//! "Freed by Rust" comes from the allocator, which saw the block's custody flag at the free:
//! it is believed in every state (the free may be read after a reclaim that followed it).
//! Errors never move a settled passport: its first settlement is the one that counts.

use std::panic::Location;
use std::time::{Duration, Instant, SystemTime};

use crate::alloc::header::Key;

/// A moment, on both clocks: deadlines are measured on the monotonic one, task ends come
/// stamped with the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) mono: Instant,
    pub(crate) wall: SystemTime,
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        Stamp {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Where a passport stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In foreign custody.
    Handed,
    /// Rust took it back.
    Reclaimed,
    /// The foreign side let go of it.
    Released,
    /// Rust freed it while foreign code held it (the allocator kept the block). Absorbing.
    FreedInCustody,
}

/// What a violation is: the finding's [`FINDING_CUSTODY_CASE`](crate::export::names::FINDING_CUSTODY_CASE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Case {
    /// Still in custody at its deadline or its task's end, or settled after it.
    NotReclaimed,
    /// Freed by Rust while foreign code held it.
    FreedInCustody,
    /// Reclaimed a second time.
    ReclaimedTwice,
    /// Released by the foreign side after Rust reclaimed it.
    ReleasedAfterReclaim,
    /// Reclaimed after the foreign side released it.
    ReclaimedAfterRelease,
    /// Released a second time.
    ReleasedTwice,
    /// Handed over again while in custody.
    HandedTwice,
    /// Reclaimed or released, never handed over (or handed over too long ago to remember).
    NotHanded,
}

impl Case {
    /// The evidence value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Case::NotReclaimed => "not_reclaimed",
            Case::FreedInCustody => "freed_in_custody",
            Case::ReclaimedTwice => "reclaimed_twice",
            Case::ReleasedAfterReclaim => "released_after_reclaim",
            Case::ReclaimedAfterRelease => "reclaimed_after_release",
            Case::ReleasedTwice => "released_twice",
            Case::HandedTwice => "handed_twice",
            Case::NotHanded => "not_handed",
        }
    }

    /// Every case.
    #[cfg(test)]
    pub(crate) const ALL: [Case; 8] = [
        Case::NotReclaimed,
        Case::FreedInCustody,
        Case::ReclaimedTwice,
        Case::ReleasedAfterReclaim,
        Case::ReclaimedAfterRelease,
        Case::ReleasedTwice,
        Case::HandedTwice,
        Case::NotHanded,
    ];
}

/// Which term a `not_reclaimed` passport broke: the finding's
/// [`FINDING_CUSTODY_UNTIL`](crate::export::names::FINDING_CUSTODY_UNTIL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Term {
    Deadline,
    TaskEnd,
}

impl Term {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Term::Deadline => "deadline",
            Term::TaskEnd => "task_end",
        }
    }
}

/// What a check knows of a task's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskEnd {
    /// Running, as far as heapspan knows.
    Running,
    /// Ended at this time (the fold that took the end in: at or after the real end).
    Ended(SystemTime),
    /// Not in heapspan's tables (never seen, or forgotten).
    Unknown,
}

/// A broken rule, as the findings read it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Violation {
    pub(crate) case: Case,
    /// For `not_reclaimed`: the term broken.
    pub(crate) term: Option<Term>,
    /// For `not_reclaimed`: still in custody (not settled late).
    pub(crate) in_custody: bool,
    /// The handed-over pointer.
    pub(crate) addr: usize,
    /// Its block's size as the handover gave it (0 for `not_handed`).
    pub(crate) size: usize,
    /// The boundary it was handed across (`None` for `not_handed`).
    pub(crate) boundary: Option<&'static str>,
    /// Where it was handed over (for `not_handed`, the call that found no passport).
    pub(crate) location: &'static Location<'static>,
    /// The task and span current at the handover (for `not_handed`, at that call).
    pub(crate) key: Key,
    /// The call that broke the rule (a reclaim, release or handover), when one did.
    pub(crate) by: Option<&'static Location<'static>>,
    /// For `freed_in_custody`: the task and span current at the free, and whether it was a
    /// realloc.
    pub(crate) freed_by: Option<Key>,
    pub(crate) realloc: bool,
    /// When it was found.
    pub(crate) at: SystemTime,
}

/// One pointer's passport.
#[derive(Clone, Debug)]
pub(crate) struct Passport {
    /// Counts handovers from 1 (0: a handover the registry did not track).
    pub(crate) seq: u64,
    pub(crate) addr: usize,
    /// The block's size as the handover gave it.
    pub(crate) size: usize,
    pub(crate) boundary: &'static str,
    /// The handover's call site.
    pub(crate) location: &'static Location<'static>,
    /// The task and span current at the handover.
    pub(crate) key: Key,
    pub(crate) handed: Stamp,
    pub(crate) deadline: Option<Instant>,
    /// The tokio task whose end ends the custody.
    pub(crate) task_end: Option<u64>,
    pub(crate) state: State,
    pub(crate) settled: Option<Stamp>,
    /// The allocator holds the block's custody flag (a free by Rust is caught).
    pub(crate) guarded: bool,
    /// `not_reclaimed` was found for it already.
    pub(crate) overdue: bool,
    /// A settled passport's task end was judged.
    pub(crate) task_checked: bool,
}

/// What a transition asks of the caller besides its violation.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Step {
    /// The rule it broke, if any.
    pub(crate) violation: Option<Violation>,
    /// Custody ended for a guarded block: clear its flag.
    pub(crate) unflag: bool,
}

impl Passport {
    /// A passport of handover `seq` of block `addr` (`size` bytes), in custody from `handed`.
    pub(crate) fn new(
        seq: u64,
        addr: usize,
        size: usize,
        boundary: &'static str,
        location: &'static Location<'static>,
        key: Key,
        handed: Stamp,
    ) -> Passport {
        Passport {
            seq,
            addr,
            size,
            boundary,
            location,
            key,
            handed,
            deadline: None,
            task_end: None,
            state: State::Handed,
            settled: None,
            guarded: false,
            overdue: false,
            task_checked: false,
        }
    }

    /// Custody must end within `within` of the handover.
    pub(crate) fn set_deadline(&mut self, within: Duration) {
        self.deadline = Some(self.handed.mono.checked_add(within).unwrap_or_else(|| {
            // Beyond the clock's range: as good as none.
            self.handed.mono + Duration::from_secs(u64::from(u32::MAX))
        }));
    }

    /// A violation of `case` about this passport, found at `at`, by the call at `by`.
    pub(crate) fn violation(
        &self,
        case: Case,
        by: Option<&'static Location<'static>>,
        at: SystemTime,
    ) -> Violation {
        Violation {
            case,
            term: None,
            in_custody: false,
            addr: self.addr,
            size: self.size,
            boundary: Some(self.boundary),
            location: self.location,
            key: self.key,
            by,
            freed_by: None,
            realloc: false,
            at,
        }
    }

    fn not_reclaimed(&mut self, term: Term, at: SystemTime) -> Violation {
        self.overdue = true;
        Violation {
            term: Some(term),
            in_custody: self.state == State::Handed,
            ..self.violation(Case::NotReclaimed, None, at)
        }
    }

    /// Ends custody in `to` (reclaimed or released) at `now`, called at `by`.
    fn settle(&mut self, to: State, now: Stamp, by: &'static Location<'static>) -> Step {
        let twice = match (self.state, to) {
            (State::Handed, _) => None,
            (State::Reclaimed, State::Reclaimed) => Some(Case::ReclaimedTwice),
            (State::Reclaimed, _) => Some(Case::ReleasedAfterReclaim),
            (State::Released, State::Reclaimed) => Some(Case::ReclaimedAfterRelease),
            (State::Released, _) => Some(Case::ReleasedTwice),
            (State::FreedInCustody, _) => return Step::default(),
        };
        if let Some(case) = twice {
            return Step {
                violation: Some(self.violation(case, Some(by), now.wall)),
                unflag: false,
            };
        }
        self.state = to;
        self.settled = Some(now);
        let unflag = std::mem::take(&mut self.guarded);
        // Settled after its deadline: the deadline was missed even if no window saw it.
        let late = !self.overdue && self.deadline.is_some_and(|d| now.mono > d);
        Step {
            violation: late.then(|| Violation {
                by: Some(by),
                ..self.not_reclaimed(Term::Deadline, now.wall)
            }),
            unflag,
        }
    }

    /// Rust took the pointer back.
    pub(crate) fn reclaim(&mut self, now: Stamp, by: &'static Location<'static>) -> Step {
        self.settle(State::Reclaimed, now, by)
    }

    /// The foreign side let go of the pointer.
    pub(crate) fn release(&mut self, now: Stamp, by: &'static Location<'static>) -> Step {
        self.settle(State::Released, now, by)
    }

    /// The allocator caught a free of the block by Rust while its custody flag was set.
    pub(crate) fn freed_by_rust(&mut self, now: SystemTime) -> Violation {
        self.state = State::FreedInCustody;
        // The allocator keeps the block flagged: a second free is caught too.
        self.guarded = false;
        self.violation(Case::FreedInCustody, None, now)
    }

    /// Judges the terms at `now`, knowing what `task` says of the term's task: a passport in
    /// custody past its deadline or its task's end, or settled after its task ended, is
    /// `not_reclaimed` (once).
    pub(crate) fn check(&mut self, now: Stamp, task: TaskEnd) -> Option<Violation> {
        match self.state {
            State::Handed if !self.overdue => {
                if self.deadline.is_some_and(|d| now.mono >= d) {
                    return Some(self.not_reclaimed(Term::Deadline, now.wall));
                }
                if self.task_end.is_some() && matches!(task, TaskEnd::Ended(_)) {
                    return Some(self.not_reclaimed(Term::TaskEnd, now.wall));
                }
                None
            }
            State::Reclaimed | State::Released if self.task_end.is_some() && !self.task_checked => {
                // A running task ends after the settlement; an unknown one cannot be judged.
                self.task_checked = true;
                let settled = self.settled.map_or(now.wall, |s| s.wall);
                match task {
                    // The end's stamp is at or after the real end: settled after the stamp
                    // proves it late (one settled in between is missed, never made up).
                    TaskEnd::Ended(end) if settled > end && !self.overdue => {
                        Some(self.not_reclaimed(Term::TaskEnd, now.wall))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether a check may still find something (the registry keeps it for the next one).
    pub(crate) fn needs_check(&self) -> bool {
        match self.state {
            State::Handed => !self.overdue && (self.deadline.is_some() || self.task_end.is_some()),
            State::Reclaimed | State::Released => self.task_end.is_some() && !self.task_checked,
            State::FreedInCustody => false,
        }
    }

    /// In custody (or freed by Rust in it): not a tombstone.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Handed | State::FreedInCustody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "keeper";

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    fn at(t0: Stamp, ms: u64) -> Stamp {
        Stamp {
            mono: t0.mono + Duration::from_millis(ms),
            wall: t0.wall + Duration::from_millis(ms),
        }
    }

    fn handed(t0: Stamp) -> Passport {
        let mut p = Passport::new(1, 0x1000, 64, BOUNDARY, here(), Key::new(7, 0), t0);
        p.guarded = true;
        p
    }

    #[track_caller]
    fn case(step: &Step) -> Option<Case> {
        step.violation.as_ref().map(|v| v.case)
    }

    #[test]
    fn a_reclaim_ends_custody_and_clears_the_flag() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        let s = p.reclaim(at(t0, 5), here());
        assert_eq!(
            s,
            Step {
                violation: None,
                unflag: true
            }
        );
        assert_eq!(p.state, State::Reclaimed);
        assert_eq!(p.settled, Some(at(t0, 5)));
        assert!(!p.is_open());
    }

    #[test]
    fn a_release_ends_custody_and_clears_the_flag() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        let s = p.release(at(t0, 5), here());
        assert_eq!(
            s,
            Step {
                violation: None,
                unflag: true
            }
        );
        assert_eq!(p.state, State::Released);
    }

    #[test]
    fn an_unguarded_passport_asks_for_no_flag_change() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        p.guarded = false;
        assert!(!p.reclaim(at(t0, 1), here()).unflag);
    }

    #[test]
    fn settling_twice_is_a_violation_named_by_both_calls() {
        let t0 = Stamp::now();
        for (first, second, want) in [
            (State::Reclaimed, State::Reclaimed, Case::ReclaimedTwice),
            (
                State::Reclaimed,
                State::Released,
                Case::ReleasedAfterReclaim,
            ),
            (
                State::Released,
                State::Reclaimed,
                Case::ReclaimedAfterRelease,
            ),
            (State::Released, State::Released, Case::ReleasedTwice),
        ] {
            let mut p = handed(t0);
            let settle = |p: &mut Passport, s: State, ms| match s {
                State::Reclaimed => p.reclaim(at(t0, ms), here()),
                _ => p.release(at(t0, ms), here()),
            };
            assert_eq!(case(&settle(&mut p, first, 1)), None);
            let by = here();
            let s = match second {
                State::Reclaimed => p.reclaim(at(t0, 2), by),
                _ => p.release(at(t0, 2), by),
            };
            let v = s.violation.expect("a violation");
            assert_eq!(v.case, want, "{first:?} then {second:?}");
            assert_eq!(v.by, Some(by), "the second call is named");
            assert_eq!(v.boundary, Some(BOUNDARY));
            assert_eq!(v.addr, 0x1000);
            assert_eq!(v.at, at(t0, 2).wall);
            assert!(!s.unflag, "the flag was cleared by the first");
            assert_eq!(p.state, first, "the first settlement stands");
            assert_eq!(p.settled, Some(at(t0, 1)));
        }
    }

    #[test]
    fn a_free_by_rust_in_custody_is_a_violation_in_every_state() {
        let t0 = Stamp::now();
        for before in [State::Handed, State::Reclaimed, State::Released] {
            let mut p = handed(t0);
            match before {
                State::Reclaimed => drop(p.reclaim(at(t0, 1), here())),
                State::Released => drop(p.release(at(t0, 1), here())),
                _ => {}
            }
            let v = p.freed_by_rust(at(t0, 2).wall);
            assert_eq!(v.case, Case::FreedInCustody, "from {before:?}");
            assert_eq!(v.by, None);
            assert_eq!(p.state, State::FreedInCustody);
            assert!(p.is_open(), "the allocator keeps the block");
            // Freed again: caught again.
            assert_eq!(p.freed_by_rust(at(t0, 3).wall).case, Case::FreedInCustody);
        }
    }

    #[test]
    fn after_a_free_in_custody_settling_finds_nothing_new() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        p.set_deadline(Duration::from_millis(1));
        p.freed_by_rust(at(t0, 1).wall);
        assert_eq!(p.reclaim(at(t0, 5), here()), Step::default());
        assert_eq!(p.release(at(t0, 6), here()), Step::default());
        assert_eq!(p.check(at(t0, 7), TaskEnd::Ended(t0.wall)), None);
        assert_eq!(p.state, State::FreedInCustody);
        assert!(!p.needs_check());
    }

    #[test]
    fn a_deadline_passed_in_custody_is_found_once() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        p.set_deadline(Duration::from_millis(10));
        assert!(p.needs_check());
        assert_eq!(p.check(at(t0, 9), TaskEnd::Unknown), None, "not yet");
        let v = p
            .check(at(t0, 10), TaskEnd::Unknown)
            .expect("at the deadline");
        assert_eq!(v.case, Case::NotReclaimed);
        assert_eq!(v.term, Some(Term::Deadline));
        assert!(v.in_custody);
        assert_eq!(v.by, None);
        assert_eq!(p.check(at(t0, 20), TaskEnd::Unknown), None, "once");
        assert!(!p.needs_check());
        // Reclaimed later: custody ends, no second finding.
        assert_eq!(
            p.reclaim(at(t0, 30), here()),
            Step {
                violation: None,
                unflag: true
            }
        );
    }

    #[test]
    fn a_settlement_after_the_deadline_no_check_saw_is_late() {
        let t0 = Stamp::now();
        for release in [false, true] {
            let mut p = handed(t0);
            p.set_deadline(Duration::ZERO);
            let by = here();
            let s = if release {
                p.release(at(t0, 1), by)
            } else {
                p.reclaim(at(t0, 1), by)
            };
            let v = s.violation.expect("late");
            assert_eq!(v.case, Case::NotReclaimed);
            assert_eq!(v.term, Some(Term::Deadline));
            assert!(!v.in_custody, "settled, late");
            assert_eq!(v.by, Some(by));
            assert!(s.unflag);
        }
    }

    #[test]
    fn a_settlement_at_the_deadline_is_in_time() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        p.set_deadline(Duration::from_millis(10));
        assert_eq!(case(&p.reclaim(at(t0, 10), here())), None);
    }

    #[test]
    fn a_task_end_in_custody_is_found_once() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        p.task_end = Some(7);
        assert_eq!(p.check(at(t0, 1), TaskEnd::Running), None);
        assert_eq!(p.check(at(t0, 1), TaskEnd::Unknown), None);
        let v = p.check(at(t0, 2), TaskEnd::Ended(at(t0, 1).wall)).unwrap();
        assert_eq!((v.case, v.term), (Case::NotReclaimed, Some(Term::TaskEnd)));
        assert!(v.in_custody);
        assert_eq!(p.check(at(t0, 3), TaskEnd::Ended(at(t0, 1).wall)), None);
    }

    #[test]
    fn a_settlement_after_the_task_end_is_late_and_one_before_is_not() {
        let t0 = Stamp::now();
        // Settled at 5, the task's end stamped at 3: late.
        let mut p = handed(t0);
        p.task_end = Some(7);
        assert_eq!(case(&p.release(at(t0, 5), here())), None);
        assert!(p.needs_check());
        let v = p.check(at(t0, 9), TaskEnd::Ended(at(t0, 3).wall)).unwrap();
        assert_eq!((v.case, v.term), (Case::NotReclaimed, Some(Term::TaskEnd)));
        assert!(!v.in_custody);
        assert!(!p.needs_check());
        // Settled at 5, the end stamped at 6: in time (the stamp is at or after the end).
        let mut p = handed(t0);
        p.task_end = Some(7);
        p.reclaim(at(t0, 5), here());
        assert_eq!(p.check(at(t0, 9), TaskEnd::Ended(at(t0, 6).wall)), None);
        assert!(!p.needs_check(), "judged once");
        // Settled while the task runs: in time, judged.
        let mut p = handed(t0);
        p.task_end = Some(7);
        p.reclaim(at(t0, 5), here());
        assert_eq!(p.check(at(t0, 9), TaskEnd::Running), None);
        assert!(!p.needs_check());
    }

    #[test]
    fn a_passport_without_terms_is_never_overdue() {
        let t0 = Stamp::now();
        let mut p = handed(t0);
        assert!(!p.needs_check());
        assert_eq!(p.check(at(t0, 1 << 30), TaskEnd::Ended(t0.wall)), None);
    }

    #[test]
    fn cases_have_distinct_names() {
        let names: std::collections::BTreeSet<_> = Case::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Case::ALL.len());
        assert_eq!(Term::Deadline.as_str(), "deadline");
        assert_eq!(Term::TaskEnd.as_str(), "task_end");
    }
}
