//! The findings' thresholds: documented defaults, builder methods, `HEAPSPAN_*` overrides.

use std::time::Duration;

use crate::error::{Error, Result};

/// Default for [`FindingsConfig::min_score`]: the catalog's reporting threshold. Below it a
/// finding is a hint (kept in [`crate::Guard::findings`], not exported as a span).
pub const DEFAULT_MIN_SCORE: f64 = 0.5;
/// Default for [`FindingsConfig::escape_grace_windows`]: an ended task's allocations count as
/// escaped once still live one window after its end (a send or a return value is usually
/// taken within one).
pub const DEFAULT_ESCAPE_GRACE_WINDOWS: u32 = 1;
/// Default for [`FindingsConfig::escape_min_bytes`]: 64 KiB per task name. Return values, a
/// sent buffer or a lazily initialised thread-local stay below it; a real escape adds up over
/// a name's tasks.
pub const DEFAULT_ESCAPE_MIN_BYTES: u64 = 64 << 10;
/// Default for [`FindingsConfig::growth_windows`]: K = 6 windows (a minute at the default
/// window) of growth before a growth finding (the catalog's proposal).
pub const DEFAULT_GROWTH_WINDOWS: usize = 6;
/// Default for [`FindingsConfig::growth_positive_fraction`]: at least 80 % of the K window
/// deltas positive (the catalog's proposal); saw-tooth batchers fall below it.
pub const DEFAULT_GROWTH_POSITIVE_FRACTION: f64 = 0.8;
/// Default for [`FindingsConfig::growth_min_bytes`]: the series grew at least 64 KiB over the K
/// windows (below it, allocator and map rounding noise).
pub const DEFAULT_GROWTH_MIN_BYTES: u64 = 64 << 10;
/// Default for [`FindingsConfig::growth_high_bytes`]: growth of 16 MiB or more over the K
/// windows makes a growth finding high rather than medium.
pub const DEFAULT_GROWTH_HIGH_BYTES: u64 = 16 << 20;
/// Default for [`FindingsConfig::warmup_windows`]: the first 3 windows of a series (after
/// heapspan's start or the task's) are warm-up, where caches and pools fill.
pub const DEFAULT_WARMUP_WINDOWS: usize = 3;
/// Default for [`FindingsConfig::suspended_after`]: 30 s without allocation activity or poll.
pub const DEFAULT_SUSPENDED_AFTER: Duration = Duration::from_secs(30);
/// Default for [`FindingsConfig::suspended_min_bytes`]: 1 MiB held (I/O buffers are smaller).
pub const DEFAULT_SUSPENDED_MIN_BYTES: u64 = 1 << 20;
/// Default for [`FindingsConfig::stalled_after`]: not polled for 60 s.
pub const DEFAULT_STALLED_AFTER: Duration = Duration::from_secs(60);
/// Default for [`FindingsConfig::stalled_min_age`]: alive for at least 60 s.
pub const DEFAULT_STALLED_MIN_AGE: Duration = Duration::from_secs(60);
/// Default for [`FindingsConfig::stalled_min_bytes`]: holding at least 64 KiB (an idle
/// listener holds less).
pub const DEFAULT_STALLED_MIN_BYTES: u64 = 64 << 10;
/// Default for [`FindingsConfig::high_bytes`]: 16 MiB held makes a stall, a retention, a
/// clone storm or a pointer not given back by foreign code (its danger surface) one severity
/// higher.
pub const DEFAULT_HIGH_BYTES: u64 = 16 << 20;
/// Default for [`FindingsConfig::cycle_confirm_windows`]: a cycle is reported once seen in 2
/// consecutive windows (the catalog: racing count reads must not make one).
pub const DEFAULT_CYCLE_CONFIRM_WINDOWS: u32 = 2;
/// Default for [`FindingsConfig::cycle_critical_bytes`]: an unreachable cycle of more than
/// 1 MiB is critical (the catalog).
pub const DEFAULT_CYCLE_CRITICAL_BYTES: u64 = 1 << 20;
/// Default for [`FindingsConfig::clone_storm_min_clones`]: 50 copies (the catalog's proposal).
pub const DEFAULT_CLONE_STORM_MIN_CLONES: usize = 50;
/// Default for [`FindingsConfig::clone_storm_min_bytes`]: or 1 MiB of duplicated bytes.
pub const DEFAULT_CLONE_STORM_MIN_BYTES: u64 = 1 << 20;
/// Default for [`FindingsConfig::large_future_bytes`]: 1024 bytes, tokio-console's threshold.
pub const DEFAULT_LARGE_FUTURE_BYTES: u64 = 1024;
/// Default for [`FindingsConfig::churn_allocations_per_sec`]: 100 000 allocations a second
/// in one span name, nearly all freed again within the window.
pub const DEFAULT_CHURN_ALLOCATIONS_PER_SEC: f64 = 100_000.0;
/// Default for [`FindingsConfig::cross_task_min_bytes`]: 1 MiB of a task name's blocks freed
/// by other tasks (or no task) in a window (its row of the hand-off matrix).
pub const DEFAULT_CROSS_TASK_MIN_BYTES: u64 = 1 << 20;

/// Thresholds of the danger findings (see the crate's "Findings" section); pass to
/// [`crate::Builder::findings`]. Every default is a `DEFAULT_*` constant with its reason.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingsConfig {
    pub(crate) enabled: bool,
    pub(crate) min_score: f64,
    pub(crate) escape_grace_windows: u32,
    pub(crate) escape_min_bytes: u64,
    pub(crate) growth_windows: usize,
    pub(crate) growth_positive_fraction: f64,
    pub(crate) growth_min_bytes: u64,
    pub(crate) growth_high_bytes: u64,
    pub(crate) warmup_windows: usize,
    pub(crate) suspended_after: Duration,
    pub(crate) suspended_min_bytes: u64,
    pub(crate) stalled_after: Duration,
    pub(crate) stalled_min_age: Duration,
    pub(crate) stalled_min_bytes: u64,
    pub(crate) high_bytes: u64,
    pub(crate) cycle_confirm_windows: u32,
    pub(crate) cycle_critical_bytes: u64,
    pub(crate) clone_storm_min_clones: usize,
    pub(crate) clone_storm_min_bytes: u64,
    pub(crate) large_future_bytes: u64,
    pub(crate) churn_allocations_per_sec: f64,
    pub(crate) cross_task_min_bytes: u64,
    /// Settings with a variable that were set in code: the environment does not touch them.
    pub(crate) set_in_code: SetInCode,
}

/// Which of the [`FindingsConfig`] settings that have a `HEAPSPAN_*` variable were set in code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SetInCode {
    pub(crate) enabled: bool,
    pub(crate) growth_windows: bool,
}

impl Default for FindingsConfig {
    fn default() -> Self {
        FindingsConfig {
            enabled: true,
            min_score: DEFAULT_MIN_SCORE,
            escape_grace_windows: DEFAULT_ESCAPE_GRACE_WINDOWS,
            escape_min_bytes: DEFAULT_ESCAPE_MIN_BYTES,
            growth_windows: DEFAULT_GROWTH_WINDOWS,
            growth_positive_fraction: DEFAULT_GROWTH_POSITIVE_FRACTION,
            growth_min_bytes: DEFAULT_GROWTH_MIN_BYTES,
            growth_high_bytes: DEFAULT_GROWTH_HIGH_BYTES,
            warmup_windows: DEFAULT_WARMUP_WINDOWS,
            suspended_after: DEFAULT_SUSPENDED_AFTER,
            suspended_min_bytes: DEFAULT_SUSPENDED_MIN_BYTES,
            stalled_after: DEFAULT_STALLED_AFTER,
            stalled_min_age: DEFAULT_STALLED_MIN_AGE,
            stalled_min_bytes: DEFAULT_STALLED_MIN_BYTES,
            high_bytes: DEFAULT_HIGH_BYTES,
            cycle_confirm_windows: DEFAULT_CYCLE_CONFIRM_WINDOWS,
            cycle_critical_bytes: DEFAULT_CYCLE_CRITICAL_BYTES,
            clone_storm_min_clones: DEFAULT_CLONE_STORM_MIN_CLONES,
            clone_storm_min_bytes: DEFAULT_CLONE_STORM_MIN_BYTES,
            large_future_bytes: DEFAULT_LARGE_FUTURE_BYTES,
            churn_allocations_per_sec: DEFAULT_CHURN_ALLOCATIONS_PER_SEC,
            cross_task_min_bytes: DEFAULT_CROSS_TASK_MIN_BYTES,
            set_in_code: SetInCode::default(),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, v: $ty) -> Self {
                self.$name = v;
                self
            }
        )*
    };
}

impl FindingsConfig {
    /// Whether heapspan looks for findings at all (default on; wins over `HEAPSPAN_FINDINGS`).
    pub fn enabled(mut self, v: bool) -> Self {
        self.enabled = v;
        self.set_in_code.enabled = true;
        self
    }

    /// K, the windows of a growth test (default [`DEFAULT_GROWTH_WINDOWS`]; wins over
    /// `HEAPSPAN_GROWTH_WINDOWS`).
    pub fn growth_windows(mut self, v: usize) -> Self {
        self.growth_windows = v;
        self.set_in_code.growth_windows = true;
        self
    }

    setters! {
        /// Score from which a finding is reported (default [`DEFAULT_MIN_SCORE`]).
        min_score: f64;
        /// Windows an ended task's allocations must survive to count as escaped (default
        /// [`DEFAULT_ESCAPE_GRACE_WINDOWS`]).
        escape_grace_windows: u32;
        /// Escaped bytes per task name and holder class below which nothing is reported
        /// (default [`DEFAULT_ESCAPE_MIN_BYTES`]).
        escape_min_bytes: u64;
        /// Share of positive deltas among the K (default
        /// [`DEFAULT_GROWTH_POSITIVE_FRACTION`]).
        growth_positive_fraction: f64;
        /// Least growth over the K windows (default [`DEFAULT_GROWTH_MIN_BYTES`]).
        growth_min_bytes: u64;
        /// Growth over the K windows that makes a growth finding high (default
        /// [`DEFAULT_GROWTH_HIGH_BYTES`]).
        growth_high_bytes: u64;
        /// Windows at the start of a series that growth tests skip (default
        /// [`DEFAULT_WARMUP_WINDOWS`]).
        warmup_windows: usize;
        /// How long a task must have been idle for `task.suspended_retention` (default
        /// [`DEFAULT_SUSPENDED_AFTER`]).
        suspended_after: Duration;
        /// Bytes it must hold (default [`DEFAULT_SUSPENDED_MIN_BYTES`]).
        suspended_min_bytes: u64;
        /// How long a task must have gone unpolled for `task.stalled` (default
        /// [`DEFAULT_STALLED_AFTER`]).
        stalled_after: Duration;
        /// How old it must be (default [`DEFAULT_STALLED_MIN_AGE`]).
        stalled_min_age: Duration;
        /// Bytes it must hold (default [`DEFAULT_STALLED_MIN_BYTES`]).
        stalled_min_bytes: u64;
        /// Bytes that raise a stall, a retention, a clone storm or an `ffi.custody`
        /// `not_reclaimed` one severity (default [`DEFAULT_HIGH_BYTES`]).
        high_bytes: u64;
        /// Consecutive windows a cycle must be seen in (default
        /// [`DEFAULT_CYCLE_CONFIRM_WINDOWS`]).
        cycle_confirm_windows: u32;
        /// Bytes above which an unreachable cycle is critical (default
        /// [`DEFAULT_CYCLE_CRITICAL_BYTES`]).
        cycle_critical_bytes: u64;
        /// Clones of one group that make a storm (default
        /// [`DEFAULT_CLONE_STORM_MIN_CLONES`]).
        clone_storm_min_clones: usize;
        /// Or duplicated bytes (default [`DEFAULT_CLONE_STORM_MIN_BYTES`]).
        clone_storm_min_bytes: u64;
        /// Future size from which `task.large_future` is reported (default
        /// [`DEFAULT_LARGE_FUTURE_BYTES`]).
        large_future_bytes: u64;
        /// Allocation rate of one span name for `alloc.temporary_churn` (default
        /// [`DEFAULT_CHURN_ALLOCATIONS_PER_SEC`]).
        churn_allocations_per_sec: f64;
        /// Bytes of a task name's blocks that other tasks (or no task) freed in a window for
        /// `alloc.cross_task_free` (default [`DEFAULT_CROSS_TASK_MIN_BYTES`]).
        cross_task_min_bytes: u64;
    }

    /// Applies `HEAPSPAN_FINDINGS` and `HEAPSPAN_GROWTH_WINDOWS` from `lookup` (see
    /// [`crate::env`]) to the settings not set in code.
    pub(crate) fn apply_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if !self.set_in_code.enabled {
            if let Some(on) = crate::env::findings(&lookup)? {
                self.enabled = on;
            }
        }
        if !self.set_in_code.growth_windows {
            if let Some(k) = crate::env::growth_windows(&lookup)? {
                self.growth_windows = k;
            }
        }
        Ok(self)
    }

    /// Checks the settings, naming the first bad one.
    pub(crate) fn validate(&self) -> Result<()> {
        let frac = |v: f64| (0.0..=1.0).contains(&v);
        if !frac(self.min_score) {
            return Err(bad(
                "findings.min_score",
                &self.min_score.to_string(),
                "0 to 1",
            ));
        }
        if !(2..=1000).contains(&self.growth_windows) {
            return Err(bad(
                "findings.growth_windows",
                &self.growth_windows.to_string(),
                "an integer from 2 to 1000",
            ));
        }
        if !frac(self.growth_positive_fraction) || self.growth_positive_fraction == 0.0 {
            return Err(bad(
                "findings.growth_positive_fraction",
                &self.growth_positive_fraction.to_string(),
                "above 0, at most 1",
            ));
        }
        if self.cycle_confirm_windows == 0 {
            return Err(bad("findings.cycle_confirm_windows", "0", "at least 1"));
        }
        if self.churn_allocations_per_sec.is_nan() || self.churn_allocations_per_sec <= 0.0 {
            return Err(bad(
                "findings.churn_allocations_per_sec",
                &self.churn_allocations_per_sec.to_string(),
                "a positive rate",
            ));
        }
        Ok(())
    }
}

fn bad(setting: &'static str, value: &str, expected: &'static str) -> Error {
    Error::InvalidConfig {
        setting,
        value: value.to_owned(),
        expected,
    }
}
