//! The registry: passports by address, their flags, tombstones, bounds, and the drain (on a
//! registry of the test's own: the process-wide one is left to the integration tests).

use std::cell::RefCell;
use std::panic::Location;
use std::time::Duration;

use super::*;

const BOUNDARY: &str = "keeper";
const SIZE: usize = 4096;

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

/// A registry and a log of the flag changes it asked for.
#[derive(Default)]
struct Fixture {
    r: Registry,
    flags: RefCell<Vec<(usize, bool)>>,
}

impl Fixture {
    fn hand(&mut self, addr: usize, now: Stamp, guardable: bool) -> Passport {
        let flags = &self.flags;
        let new = Entry::new(0, addr, SIZE, BOUNDARY, here(), Key::new(7, 0), now);
        self.r.handover(new, || {
            flags.borrow_mut().push((addr, true));
            guardable
        })
    }

    fn settle(&mut self, addr: usize, to: State, now: Stamp) {
        let flags = &self.flags;
        self.r
            .settle(addr, to, here(), Key::new(9, 0), now, |size| {
                assert_eq!(size, SIZE, "the handover's size");
                flags.borrow_mut().push((addr, false));
                true
            });
    }

    fn drain(&mut self, now: Stamp) -> Vec<Case> {
        self.r
            .drain(now, |_| TaskEnd::Unknown)
            .into_iter()
            .map(|v| v.case)
            .collect()
    }
}

#[test]
fn a_guarded_handover_flags_the_block_and_its_reclaim_clears_it() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let p = f.hand(0x1000, t0, true);
    assert!(p.is_tracked() && p.is_guarded());
    f.settle(0x1000, State::Reclaimed, at(t0, 1));
    assert_eq!(*f.flags.borrow(), vec![(0x1000, true), (0x1000, false)]);
    assert_eq!(f.drain(at(t0, 2)), vec![], "nothing broke a rule");
    assert_eq!(f.r.open, 0);
}

#[test]
fn an_unguarded_handover_never_clears_a_flag() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let p = f.hand(0x1000, t0, false);
    assert!(p.is_tracked() && !p.is_guarded());
    f.settle(0x1000, State::Released, at(t0, 1));
    assert_eq!(*f.flags.borrow(), vec![(0x1000, true)], "only the attempt");
}

#[test]
fn a_reclaim_of_a_pointer_never_handed_over_is_not_handed_named_by_its_call() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    f.settle(0x2000, State::Reclaimed, t0);
    let v = f.r.drain(at(t0, 1), |_| TaskEnd::Unknown);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].case, Case::NotHanded);
    assert_eq!(v[0].boundary, None);
    assert_eq!(v[0].key, Key::new(9, 0), "the calling task");
    assert_eq!(v[0].by, Some(v[0].location));
    assert!(f.flags.borrow().is_empty());
}

#[test]
fn settling_twice_is_reported_through_the_tombstone() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    f.hand(0x1000, t0, true);
    f.settle(0x1000, State::Reclaimed, at(t0, 1));
    f.settle(0x1000, State::Reclaimed, at(t0, 2));
    f.settle(0x1000, State::Released, at(t0, 3));
    assert_eq!(
        f.drain(at(t0, 4)),
        vec![Case::ReclaimedTwice, Case::ReleasedAfterReclaim]
    );
    assert_eq!(f.flags.borrow().len(), 2, "flagged once, cleared once");
    assert_eq!(f.drain(at(t0, 5)), vec![], "each violation once");
}

#[test]
fn a_second_handover_in_custody_is_handed_twice_and_the_new_terms_hold() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let first = f.hand(0x1000, t0, true);
    f.r.set_deadline(&first, Duration::ZERO);
    let second = f.hand(0x1000, at(t0, 1), true);
    assert_ne!(first, second);
    assert!(second.is_guarded(), "still flagged");
    assert_eq!(f.flags.borrow().len(), 1, "the flag was already set");
    assert_eq!(f.r.open, 1);
    // The first passport's deadline went with it, and `first` no longer sets anything.
    f.r.until_task_end(&first);
    assert!(!f.r.passports[&0x1000].needs_check());
    assert_eq!(f.drain(at(t0, 10)), vec![Case::HandedTwice]);
}

#[test]
fn a_handover_after_a_settlement_is_a_new_custody() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    f.hand(0x1000, t0, true);
    f.settle(0x1000, State::Reclaimed, at(t0, 1));
    f.hand(0x1000, at(t0, 2), true);
    f.settle(0x1000, State::Reclaimed, at(t0, 3));
    assert_eq!(f.drain(at(t0, 4)), vec![]);
    assert_eq!(f.flags.borrow().len(), 4);
    assert_eq!(f.r.open, 0);
}

#[test]
fn a_free_in_custody_takes_the_passport_and_keeps_it() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    f.hand(0x1000, t0, true);
    assert!(f.r.freed(0x1000, Key::new(11, 0), true, at(t0, 1).wall));
    assert!(
        !f.r.freed(0x3000, Key::new(11, 0), false, at(t0, 1).wall),
        "no passport"
    );
    let v = f.r.drain(at(t0, 2), |_| TaskEnd::Unknown);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].case, Case::FreedInCustody);
    assert_eq!(v[0].freed_by, Some(Key::new(11, 0)));
    assert!(v[0].realloc);
    assert_eq!(v[0].boundary, Some(BOUNDARY));
    assert_eq!(v[0].size, SIZE);
    // Reclaimed after it: nothing new, and the block keeps its flag.
    f.settle(0x1000, State::Reclaimed, at(t0, 3));
    assert_eq!(f.flags.borrow().len(), 1);
    // Handed over again: Rust's freed memory is not followed.
    assert!(!f.hand(0x1000, at(t0, 4), true).is_tracked());
    assert_eq!(f.drain(at(t0, 5)), vec![]);
    assert_eq!(f.r.open, 1, "kept with the block");
}

#[test]
fn a_free_after_a_reclaim_the_allocator_saw_flagged_still_counts() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    f.hand(0x1000, t0, true);
    f.settle(0x1000, State::Reclaimed, at(t0, 1));
    assert!(f.r.freed(0x1000, Key::new(11, 0), false, at(t0, 2).wall));
    assert_eq!(f.drain(at(t0, 3)), vec![Case::FreedInCustody]);
    assert_eq!(f.r.open, 1, "the tombstone is a kept block again");
}

#[test]
fn deadlines_and_task_ends_are_judged_by_the_drain() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let a = f.hand(0x1000, t0, true);
    f.r.set_deadline(&a, Duration::from_millis(10));
    let b = f.hand(0x2000, t0, true);
    f.r.until_task_end(&b);
    // Both checked: the first is not due, the second's task (7) runs.
    let mut asked = Vec::new();
    let v = f.r.drain(at(t0, 5), |t| {
        asked.push(t);
        TaskEnd::Running
    });
    assert!(v.is_empty());
    assert_eq!(asked, vec![7], "only passports with a task end ask for it");
    let mut v = f.r.drain(at(t0, 10), |_| TaskEnd::Ended(at(t0, 7).wall));
    v.sort_by_key(|v| v.addr);
    let got: Vec<_> = v.iter().map(|v| (v.addr, v.case, v.term)).collect();
    assert_eq!(
        got,
        vec![
            (0x1000, Case::NotReclaimed, Some(Term::Deadline)),
            (0x2000, Case::NotReclaimed, Some(Term::TaskEnd)),
        ]
    );
    assert!(v.iter().all(|v| v.in_custody));
    assert_eq!(f.drain(at(t0, 20)), vec![], "once each");
}

#[test]
fn until_task_end_outside_a_task_sets_no_term() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let new = Entry::new(0, 0x1000, SIZE, BOUNDARY, here(), Key::new(0, 0), t0);
    let p = f.r.handover(new, || true);
    f.r.until_task_end(&p);
    assert!(p.is_tracked());
    assert!(!f.r.passports[&0x1000].needs_check());
}

#[test]
fn a_settled_passport_is_judged_against_its_task_end_at_the_next_drain() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let p = f.hand(0x1000, t0, true);
    f.r.until_task_end(&p);
    f.settle(0x1000, State::Released, at(t0, 5));
    let v = f.r.drain(at(t0, 9), |_| TaskEnd::Ended(at(t0, 3).wall));
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].case, v[0].term),
        (Case::NotReclaimed, Some(Term::TaskEnd))
    );
    assert!(!v[0].in_custody, "released late");
}

#[test]
fn handovers_beyond_the_bound_are_not_followed_and_silence_not_handed() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    for k in 0..MAX_IN_CUSTODY {
        assert!(f.hand(0x10_0000 + 16 * k, t0, false).is_tracked());
    }
    let p = f.hand(0x1, t0, true);
    assert!(!p.is_tracked() && !p.is_guarded());
    assert_eq!(f.r.refused, 1);
    assert_eq!(
        f.flags.borrow().len(),
        MAX_IN_CUSTODY,
        "no flag for the refused one"
    );
    // Its reclaim finds no passport, and says nothing: it may be the refused one.
    f.settle(0x1, State::Reclaimed, at(t0, 1));
    assert_eq!(f.drain(at(t0, 2)), vec![]);
    // A settlement makes room.
    f.settle(0x10_0000, State::Reclaimed, at(t0, 3));
    assert!(f.hand(0x1, at(t0, 4), true).is_tracked());
}

#[test]
fn settled_passports_are_forgotten_beyond_the_bound_oldest_first() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    for k in 0..=MAX_SETTLED {
        let addr = 0x10_0000 + 16 * k;
        f.hand(addr, t0, false);
        f.settle(addr, State::Reclaimed, at(t0, 1));
    }
    assert_eq!(f.r.passports.len(), MAX_SETTLED);
    // The oldest is forgotten: its second reclaim is not_handed; the newest is remembered.
    f.settle(0x10_0000, State::Reclaimed, at(t0, 2));
    f.settle(0x10_0000 + 16 * MAX_SETTLED, State::Reclaimed, at(t0, 2));
    assert_eq!(
        f.drain(at(t0, 3)),
        vec![Case::NotHanded, Case::ReclaimedTwice]
    );
}

#[test]
fn re_handed_addresses_do_not_grow_the_tombstone_queue() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    for _ in 0..3 * MAX_SETTLED {
        f.hand(0x1000, t0, false);
        f.settle(0x1000, State::Reclaimed, at(t0, 1));
    }
    assert!(f.r.settled.len() <= MAX_SETTLED);
    assert_eq!(f.r.passports.len(), 1);
    f.settle(0x1000, State::Reclaimed, at(t0, 2));
    assert_eq!(f.drain(at(t0, 3)), vec![Case::ReclaimedTwice]);
}

#[test]
fn violations_beyond_the_bound_are_counted_not_kept() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    for k in 0..MAX_PENDING + 3 {
        f.settle(0x10_0000 + 16 * k, State::Reclaimed, t0);
    }
    assert_eq!(f.r.lost, 3);
    assert_eq!(f.drain(at(t0, 1)).len(), MAX_PENDING);
    assert_eq!(f.drain(at(t0, 2)).len(), 0);
}

#[test]
fn terms_set_after_custody_ended_change_nothing() {
    let t0 = Stamp::now();
    let mut f = Fixture::default();
    let p = f.hand(0x1000, t0, true);
    f.settle(0x1000, State::Reclaimed, at(t0, 1));
    f.r.set_deadline(&p, Duration::ZERO);
    f.r.until_task_end(&p);
    let e = &f.r.passports[&0x1000];
    assert_eq!((e.deadline, e.task_end), (None, None));
    assert_eq!(f.drain(at(t0, 2)), vec![]);
}

/// No test of the library touches the process-wide registry (the integration tests do, one
/// process each), so here it was never used: the window stage's calls find that with one
/// atomic load, and make nothing.
#[test]
fn an_unused_registry_is_never_made() {
    let snap = crate::Snapshot {
        taken_at: SystemTime::now(),
        tasks: Vec::new(),
        task_names: Vec::new(),
        spans: Vec::new(),
        span_names: Vec::new(),
        span_groups: Vec::new(),
        no_span: crate::MemStats::default(),
        buckets: crate::Buckets::default(),
        total: crate::MemStats::default(),
        allocation_sizes: crate::SizeHistogram::default(),
        dropped: crate::Dropped::default(),
        handoffs: crate::HandOffs::default(),
        tracker_bytes: 0,
    };
    assert!(drain(&snap).is_empty());
    assert!(!on_freed_in_custody(0x1000, Key::new(1, 0), false));
    assert!(REGISTRY.lock().unwrap().is_none(), "not made");
}
