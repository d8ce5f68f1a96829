//! Cutting task windows: which tasks get a window span this time, and each one's figures at
//! its start.
//!
//! A task is due a window when its figures changed since its last one, when it ended (its
//! final window, once), at the last window, and when it holds memory but did nothing: then
//! only every [`Bounds::idle_every`] windows (a task sitting on a leak stays visible without
//! being sent again every window).
//!
//! At most [`Bounds::max_spans`] of the due tasks get one, those that moved or hold the most
//! bytes first (allocated plus freed since their window opened, plus what they hold). A
//! running task left out keeps its window open: its next window span starts where this one
//! would have, so a task's window spans still add up to what it allocated and freed, and its
//! score grows until it is chosen. An ended task left out gets no final window span. The
//! window counts both ([`Cut::omitted`]), and the idle holders waiting for their turn
//! ([`Cut::idle`]).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::{MemStats, Snapshot, TaskKey, TaskStats};

/// How many window spans a window gets at most, and how often an idle holder gets one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Task windows per window at most.
    pub(crate) max_spans: usize,
    /// A task that holds memory but whose figures did not change gets a window every this
    /// many windows (1: every window).
    pub(crate) idle_every: u32,
}

/// One task's window.
#[derive(Clone, Debug)]
pub(crate) struct TaskWindow {
    /// The task at the window's end.
    pub(crate) task: TaskStats,
    /// Its figures at the window's start.
    pub(crate) at_start: MemStats,
    /// The window's start (the task's start if later).
    pub(crate) start: SystemTime,
    /// The window's end (the task's end if it ended).
    pub(crate) end: SystemTime,
}

/// What one cut gives: the task windows, and what was held back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cut {
    /// The task windows, highest score first.
    pub(crate) tasks: Vec<TaskWindow>,
    /// Tasks due a window that did not get one (over [`Bounds::max_spans`]).
    pub(crate) omitted: u64,
    /// Tasks that hold memory, did nothing, and wait for their turn ([`Bounds::idle_every`]).
    pub(crate) idle: u64,
}

#[derive(Clone, Copy)]
struct Open {
    at_start: MemStats,
    start: SystemTime,
    /// Windows since the task's last window (or since it was first seen).
    quiet: u32,
}

/// The per-task window state across windows.
pub(crate) struct Cutter {
    bounds: Bounds,
    open: HashMap<TaskKey, Open>,
    finished: HashSet<TaskKey>,
    last: SystemTime,
}

/// A due task's rank: the bytes it moved since its window opened plus what it holds.
fn score(t: &TaskStats, at_start: &MemStats) -> u64 {
    let moved = t
        .mem
        .allocated_bytes
        .saturating_sub(at_start.allocated_bytes)
        .saturating_add(t.mem.freed_bytes.saturating_sub(at_start.freed_bytes));
    moved.saturating_add(u64::try_from(t.mem.live_bytes()).unwrap_or(0))
}

impl Cutter {
    /// A cutter whose first window starts at `start`.
    pub(crate) fn new(start: SystemTime, bounds: Bounds) -> Self {
        Cutter {
            bounds,
            open: HashMap::new(),
            finished: HashSet::new(),
            last: start,
        }
    }

    /// The start of the window being cut next.
    pub(crate) fn last(&self) -> SystemTime {
        self.last
    }

    /// Cuts the windows that end at `snap` (every task is due at the last window, `stopping`,
    /// the bound still applies).
    pub(crate) fn cut(&mut self, snap: &Snapshot, stopping: bool) -> Cut {
        let now = snap.taken_at;
        let window_start = self.last;
        let idle_every = self.bounds.idle_every.max(1);
        let mut seen: HashSet<TaskKey> = HashSet::with_capacity(snap.tasks.len());
        let mut idle = 0u64;
        // (score, task, its open window)
        let mut due: Vec<(u64, &TaskStats, Open)> = Vec::new();
        for t in &snap.tasks {
            seen.insert(t.key);
            if self.finished.contains(&t.key) {
                continue;
            }
            let st = self.open.get(&t.key).copied().unwrap_or_else(|| {
                let began = t.started.or(t.first_activity).unwrap_or(window_start);
                Open {
                    at_start: MemStats::default(),
                    start: began.max(window_start),
                    quiet: 0,
                }
            });
            let changed = st.at_start != t.mem;
            let holds = t.mem.live_bytes() > 0;
            let idle_turn = holds && st.quiet.saturating_add(1) >= idle_every;
            if t.ended.is_none() && !changed && !stopping && !idle_turn {
                if holds {
                    idle += 1;
                }
                // Nothing happened: the next window starts now.
                self.open.insert(
                    t.key,
                    Open {
                        at_start: st.at_start,
                        start: now,
                        quiet: st.quiet.saturating_add(1),
                    },
                );
                continue;
            }
            due.push((score(t, &st.at_start), t, st));
        }
        // Highest score first; ties by task id, so that a cut is reproducible.
        due.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.key.cmp(&b.1.key)));
        let mut cut = Cut {
            tasks: Vec::with_capacity(due.len().min(self.bounds.max_spans)),
            omitted: 0,
            idle,
        };
        for (i, (_, t, st)) in due.into_iter().enumerate() {
            let chosen = i < self.bounds.max_spans;
            if chosen {
                cut.tasks.push(TaskWindow {
                    task: t.clone(),
                    at_start: st.at_start,
                    start: st.start,
                    end: t.ended.unwrap_or(now).max(st.start),
                });
            } else {
                cut.omitted += 1;
            }
            if t.ended.is_some() {
                self.open.remove(&t.key);
                self.finished.insert(t.key);
            } else if chosen {
                self.open.insert(
                    t.key,
                    Open {
                        at_start: t.mem,
                        start: now,
                        quiet: 0,
                    },
                );
            } else {
                // Left out: the window stays open (its start and figures), one window older.
                self.open.insert(
                    t.key,
                    Open {
                        quiet: st.quiet.saturating_add(1),
                        ..st
                    },
                );
            }
        }
        self.open.retain(|k, _| seen.contains(k));
        self.finished.retain(|k| seen.contains(k));
        self.last = now;
        cut
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::TaskSource;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    /// A running task that allocated `allocated` and freed `freed` bytes so far.
    fn task(id: u64, allocated: u64, freed: u64) -> TaskStats {
        TaskStats {
            key: TaskKey { id },
            name: Some(format!("t{id}")),
            location: None,
            first_span: None,
            source: TaskSource::Wrapper,
            mem: MemStats {
                allocated_bytes: allocated,
                allocations: 1,
                freed_bytes: freed,
                frees: u64::from(freed > 0),
                peak_bytes: allocated,
            },
            started: Some(at(0)),
            ended: None,
            first_activity: Some(at(0)),
            last_activity: Some(at(0)),
            future_size: None,
            last_poll: None,
        }
    }

    fn snap(s: u64, tasks: Vec<TaskStats>) -> Snapshot {
        Snapshot {
            taken_at: at(s),
            tasks,
            task_names: Vec::new(),
            spans: Vec::new(),
            span_names: Vec::new(),
            span_groups: Vec::new(),
            no_span: MemStats::default(),
            buckets: crate::Buckets::default(),
            total: MemStats::default(),
            allocation_sizes: crate::SizeHistogram::default(),
            dropped: crate::Dropped::default(),
            handoffs: crate::HandOffs::default(),
            tracker_bytes: 0,
        }
    }

    fn ids(c: &Cut) -> Vec<u64> {
        c.tasks.iter().map(|w| w.task.key.id).collect()
    }

    #[test]
    fn an_idle_holder_gets_a_window_every_n_windows() {
        let mut c = Cutter::new(
            at(0),
            Bounds {
                max_spans: 100,
                idle_every: 3,
            },
        );
        // Window 1: the task allocates 4096 bytes and keeps them.
        assert_eq!(ids(&c.cut(&snap(10, vec![task(1, 4096, 0)]), false)), [1]);
        // Then it does nothing: windows 2 and 3 hold it back, window 4 sends it again.
        let mut sent = Vec::new();
        for w in 2..=10 {
            let cut = c.cut(&snap(10 * w, vec![task(1, 4096, 0)]), false);
            if cut.tasks.is_empty() {
                assert_eq!(cut.idle, 1, "window {w}: counted as waiting");
            } else {
                assert_eq!(cut.idle, 0);
                let tw = &cut.tasks[0];
                // An idle window covers the last window only, with no deltas.
                assert_eq!(tw.at_start, tw.task.mem);
                assert_eq!((tw.start, tw.end), (at(10 * w - 10), at(10 * w)));
                sent.push(w);
            }
        }
        assert_eq!(sent, [4, 7, 10]);
        // A task that holds nothing and does nothing never gets one.
        let mut nothing = task(2, 0, 0);
        nothing.mem = MemStats::default();
        let cut = c.cut(&snap(110, vec![task(1, 4096, 0), nothing]), false);
        assert!(cut.tasks.is_empty() && cut.idle == 1);
        // Once it changes it is due at once.
        assert_eq!(ids(&c.cut(&snap(120, vec![task(1, 5000, 0)]), false)), [1]);
    }

    #[test]
    fn every_window_with_an_interval_of_one() {
        let mut c = Cutter::new(
            at(0),
            Bounds {
                max_spans: 100,
                idle_every: 1,
            },
        );
        for w in 1..=4 {
            assert_eq!(ids(&c.cut(&snap(10 * w, vec![task(1, 64, 0)]), false)), [1]);
        }
    }

    #[test]
    fn the_cap_keeps_the_biggest_and_left_out_windows_stay_open() {
        let mut c = Cutter::new(
            at(0),
            Bounds {
                max_spans: 2,
                idle_every: 1,
            },
        );
        // Three tasks moved bytes: 1 moved least and is left out.
        let cut = c.cut(
            &snap(
                10,
                vec![task(1, 100, 0), task(2, 5000, 5000), task(3, 300, 0)],
            ),
            false,
        );
        assert_eq!(ids(&cut), [2, 3]);
        assert_eq!(cut.omitted, 1);
        // Window 2: task 1 moved 100 more bytes; 2 and 3 went quiet (3 holds 300, 2 nothing).
        // Task 1's window is still the one opened at 0, and covers 200 bytes now: its score
        // grew with it.
        let cut = c.cut(
            &snap(
                20,
                vec![task(1, 200, 0), task(2, 5000, 5000), task(3, 300, 0)],
            ),
            false,
        );
        assert_eq!(
            ids(&cut),
            [1, 3],
            "task 1 moved 200 + holds 200; task 3 holds 300"
        );
        let w1 = &cut.tasks[0];
        assert_eq!(w1.at_start, MemStats::default());
        assert_eq!((w1.start, w1.end), (at(0), at(20)));
        assert_eq!(cut.omitted, 0);
        // So a task's windows add up to its figures, whatever the cap left out.
        assert_eq!(
            w1.task.mem.allocated_bytes - w1.at_start.allocated_bytes,
            200
        );
    }

    #[test]
    fn an_ended_task_left_out_gets_no_final_window_and_the_last_window_is_bounded_too() {
        let mut c = Cutter::new(
            at(0),
            Bounds {
                max_spans: 1,
                idle_every: 1,
            },
        );
        let mut ended = task(1, 10, 10);
        ended.ended = Some(at(5));
        let cut = c.cut(&snap(10, vec![ended.clone(), task(2, 9000, 0)]), false);
        assert_eq!((ids(&cut), cut.omitted), (vec![2], 1));
        // It is finished: not due again.
        let cut = c.cut(&snap(20, vec![ended, task(2, 9000, 0)]), false);
        assert_eq!((ids(&cut), cut.omitted), (vec![2], 0));
        // The last window: every task is due, the cap still holds.
        let cut = c.cut(&snap(30, vec![task(2, 9000, 0), task(3, 1, 0)]), true);
        assert_eq!((ids(&cut), cut.omitted), (vec![2], 1));
    }
}
