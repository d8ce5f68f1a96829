//! The terminal report: top tasks and spans by live and peak bytes.

use std::fmt::Write;

use crate::{MemStats, Snapshot, SortBy};

/// Bytes for humans: `512 B`, `1.5 KiB`, `3.0 MiB`.
pub fn human_bytes(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let v = n.unsigned_abs() as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut u = 0;
    let mut x = v;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{sign}{} B", n.unsigned_abs())
    } else {
        format!("{sign}{x:.1} {}", UNITS[u])
    }
}

/// One row; `lower` marks figures that are lower bounds (allocations went to the overflow
/// bucket instead of their owners) with `≥`.
fn row(out: &mut String, label: &str, extra: &str, m: &MemStats, lower: bool) {
    let b = |n: i64| {
        if lower {
            format!("≥{}", human_bytes(n))
        } else {
            human_bytes(n)
        }
    };
    let c = |n: u64| {
        if lower {
            format!("≥{n}")
        } else {
            n.to_string()
        }
    };
    let _ = writeln!(
        out,
        "  {label:<28} {extra:<26} {:>10} {:>10} {:>10} {:>9} {:>9}",
        b(m.live_bytes()),
        b(m.peak_bytes as i64),
        b(m.allocated_bytes as i64),
        c(m.allocations),
        c(m.frees),
    );
}

fn header(out: &mut String, title: &str, extra: &str) {
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "  {:<28} {extra:<26} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "name", "live", "peak", "allocated", "allocs", "frees"
    );
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

/// Renders the top `n` tasks by live and by peak bytes, the top span names, and the buckets.
pub fn render(s: &Snapshot, n: usize) -> String {
    let mut out = String::new();
    // Owners' figures are lower bounds once allocations went to the overflow bucket.
    let lower = !s.is_exact();
    if lower {
        let _ = writeln!(
            out,
            "NOT EXACT: {} allocations ({}) went to the overflow bucket because heapspan's \
             queues reached Builder::max_queue_bytes, and {} operations were lost; task and \
             span figures marked ≥ are lower bounds.",
            s.dropped.overflow_allocations,
            human_bytes(s.buckets.overflow.allocated_bytes as i64),
            s.dropped.lost_operations,
        );
    }
    for (title, by) in [
        ("Tasks by live bytes", SortBy::Live),
        ("Tasks by peak bytes", SortBy::Peak),
    ] {
        header(&mut out, title, "id / spawned at");
        for t in s.top_tasks(by, n) {
            // The file name, not its path: the column is narrow.
            let loc = t
                .location
                .as_ref()
                .map(|l| {
                    format!(
                        "{}:{}",
                        l.file.rsplit(['/', '\\']).next().unwrap_or(&l.file),
                        l.line
                    )
                })
                .unwrap_or_default();
            let state = if t.ended.is_some() { " (ended)" } else { "" };
            let extra = clip(&format!("#{} {loc}", t.key), 26);
            row(
                &mut out,
                &clip(&format!("{}{state}", t.display_name()), 28),
                &extra,
                &t.mem,
                lower,
            );
        }
    }
    header(
        &mut out,
        "Task names (every task of the name)",
        "tasks (ended)",
    );
    for t in s.top_task_names(SortBy::Live, n) {
        row(
            &mut out,
            &clip(&t.name, 28),
            &format!("{} ({})", t.tasks, t.ended),
            &t.mem,
            lower,
        );
    }
    header(&mut out, "Span names by live bytes", "instances (closed)");
    for sp in s.top_span_names(SortBy::Live, n) {
        row(
            &mut out,
            &clip(&format!("{}::{}", sp.target, sp.name), 28),
            &format!("{} ({})", sp.instances, sp.closed),
            &sp.mem,
            lower,
        );
    }
    header(&mut out, "Outside tasks and spans", "");
    let b = &s.buckets;
    for (label, m, l) in [
        ("in a task, outside any span", &s.no_span, lower),
        ("unattributed (no task)", &b.unattributed, lower),
        ("heapspan itself", &b.heapspan, false),
        ("untracked (before start)", &b.untracked, false),
        ("overflow (not attributed)", &b.overflow, false),
        ("TOTAL since start", &s.total, false),
    ] {
        row(&mut out, label, "", m, l);
    }
    let _ = writeln!(
        out,
        "\nheapspan bookkeeping: {} resident; {}",
        human_bytes(s.tracker_bytes as i64),
        if lower {
            "figures marked ≥ are lower bounds (see the first line)"
        } else {
            "every figure exact (nothing dropped)"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(-3 * 1024 * 1024), "-3.0 MiB");
    }
}
