//! Cutting task windows: which tasks get a window this time, and each one's figures at its
//! start.
//!
//! A task gets a window when its figures changed since its last one, when it ended (its final
//! window, once), at the last window, and when it is idle but holds memory (the largest
//! [`IDLE_HOLDER_WINDOWS`] of those: a task holding a leak must stay visible).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::{MemStats, Snapshot, TaskKey, TaskStats};

/// At most this many idle tasks that hold memory get a window per window (the largest by live
/// bytes), so that a window stays within the export's span queue.
pub(crate) const IDLE_HOLDER_WINDOWS: usize = 500;

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

#[derive(Clone, Copy)]
struct Open {
    at_start: MemStats,
    start: SystemTime,
}

/// The per-task window state across windows.
pub(crate) struct Cutter {
    open: HashMap<TaskKey, Open>,
    finished: HashSet<TaskKey>,
    last: SystemTime,
}

impl Cutter {
    /// A cutter whose first window starts at `start`.
    pub(crate) fn new(start: SystemTime) -> Self {
        Cutter {
            open: HashMap::new(),
            finished: HashSet::new(),
            last: start,
        }
    }

    /// The start of the window being cut next.
    pub(crate) fn last(&self) -> SystemTime {
        self.last
    }

    /// Cuts the windows that end at `snap` (every task's at the last window, `stopping`).
    pub(crate) fn cut(&mut self, snap: &Snapshot, stopping: bool) -> Vec<TaskWindow> {
        let now = snap.taken_at;
        let window_start = self.last;
        let mut seen: HashSet<TaskKey> = HashSet::with_capacity(snap.tasks.len());
        let mut idle_holders: Vec<(i64, TaskKey)> = snap
            .tasks
            .iter()
            .filter(|t| t.ended.is_none() && t.mem.live_bytes() > 0)
            .filter(|t| self.open.get(&t.key).is_some_and(|st| st.at_start == t.mem))
            .map(|t| (t.mem.live_bytes(), t.key))
            .collect();
        idle_holders.sort_unstable_by(|a, b| b.cmp(a));
        let idle_holders: HashSet<TaskKey> = idle_holders
            .into_iter()
            .take(IDLE_HOLDER_WINDOWS)
            .map(|(_, k)| k)
            .collect();
        let mut due = Vec::new();
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
                }
            });
            let changed = st.at_start != t.mem;
            if t.ended.is_none() && !changed && !stopping && !idle_holders.contains(&t.key) {
                self.open.insert(
                    t.key,
                    Open {
                        at_start: st.at_start,
                        start: now,
                    },
                );
                continue;
            }
            let end = t.ended.unwrap_or(now).max(st.start);
            due.push(TaskWindow {
                task: t.clone(),
                at_start: st.at_start,
                start: st.start,
                end,
            });
            if t.ended.is_some() {
                self.open.remove(&t.key);
                self.finished.insert(t.key);
            } else {
                self.open.insert(
                    t.key,
                    Open {
                        at_start: t.mem,
                        start: now,
                    },
                );
            }
        }
        self.open.retain(|k, _| seen.contains(k));
        self.finished.retain(|k| seen.contains(k));
        self.last = now;
        due
    }
}
