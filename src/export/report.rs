//! The terminal report: the danger findings, then top tasks and spans by live and peak bytes.

use std::fmt::Write;

use crate::findings::{EvidenceValue, Finding, Severity};
use crate::{MemStats, Snapshot, SortBy, SpanGroupStats};

/// Info-level hints the report shows at most.
const REPORT_HINTS: usize = 3;
/// Findings (low and above) the report shows at most.
const REPORT_FINDINGS: usize = 20;

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

/// A span group's label in `n` characters: `target::name {fields}`, the name clipped first so
/// that the group (the route) stays readable.
fn group_label(g: &SpanGroupStats, n: usize) -> String {
    let name = format!("{}::{}", g.target, g.name);
    if g.group.is_empty() {
        return clip(&name, n);
    }
    let group = format!(" {{{}}}", g.group);
    let glen = group.chars().count();
    // Keep at least the name's last 8 characters.
    if glen + 8 > n {
        return clip(&format!("{name}{group}"), n);
    }
    format!("{}{group}", clip(&name, n - glen))
}

/// The report's "Findings" section: one line per finding at or above the reporting score
/// (severity, kind, where, bytes, the claim in words), its evidence on the next line; then at
/// most three info-level hints. Empty when there are none.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    let (hints, main): (Vec<&Finding>, Vec<&Finding>) = findings
        .iter()
        .filter(|f| f.score >= crate::findings::DEFAULT_MIN_SCORE || f.severity == Severity::Info)
        .partition(|f| f.severity == Severity::Info);
    if main.is_empty() && hints.is_empty() {
        return out;
    }
    let _ = writeln!(out, "Findings");
    if main.is_empty() {
        let _ = writeln!(out, "  none of low severity or above");
    }
    let mut main = main;
    main.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.score.total_cmp(&a.score))
            .then(b.bytes.cmp(&a.bytes))
    });
    for f in main.iter().take(REPORT_FINDINGS) {
        let _ = writeln!(
            out,
            "  {:<8} {:<26} {:>10}  {}",
            f.severity.as_str().to_uppercase(),
            f.kind.as_str(),
            human_bytes(i64::try_from(f.bytes).unwrap_or(i64::MAX)),
            f.place()
        );
        let _ = writeln!(out, "           {}", f.summary);
        let ev = evidence_line(f);
        if !ev.is_empty() {
            let _ = writeln!(out, "           evidence: {ev}");
        }
    }
    if main.len() > REPORT_FINDINGS {
        let _ = writeln!(
            out,
            "  … and {} more (Guard::findings)",
            main.len() - REPORT_FINDINGS
        );
    }
    for f in hints.iter().take(REPORT_HINTS) {
        let _ = writeln!(out, "  hint     {:<26} {}", f.kind.as_str(), f.summary);
    }
    out.push('\n');
    out
}

/// A finding's evidence as `key=value` pairs, without the `heapspan.finding.` prefix.
fn evidence_line(f: &Finding) -> String {
    let mut parts: Vec<String> = vec![
        format!("confidence={:.2}", f.confidence),
        format!("verdict={}", f.verdict.as_str()),
        format!("windows={}", f.windows),
    ];
    if let Some(h) = &f.holder {
        parts.push(format!("holder={}", h.class()));
    }
    for (k, v) in &f.evidence {
        let k = k.strip_prefix("heapspan.finding.").unwrap_or(k);
        parts.push(match v {
            EvidenceValue::Int(i) => format!("{k}={i}"),
            EvidenceValue::Float(x) => format!("{k}={x:.2}"),
            EvidenceValue::Text(t) => format!("{k}={t}"),
        });
    }
    parts.join(" ")
}

/// [`render`] with the "Findings" section ([`render_findings`]) on top.
pub fn render_with_findings(s: &Snapshot, findings: &[Finding], n: usize) -> String {
    let mut out = render_findings(findings);
    out.push_str(&render(s, n));
    out
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
    // Per span group: a name split by its group fields (`request {http.route=/leak}`); a
    // name without any is one row, as before groups.
    header(&mut out, "Span names by live bytes", "instances (closed)");
    for sp in s.top_span_groups(SortBy::Live, n) {
        row(
            &mut out,
            &group_label(sp, 28),
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
    fn span_group_labels_keep_the_group_readable() {
        let g = |group: crate::SpanGroup| SpanGroupStats {
            name: "request",
            target: "tower_http::trace::make_span",
            group,
            instances: 1,
            closed: 1,
            mem: MemStats::default(),
        };
        let route = |r: &str| crate::SpanGroup::with_fields(vec![("http.route", r.into())]);
        assert_eq!(
            group_label(&g(route("/leak")), 28),
            "…:request {http.route=/leak}"
        );
        assert_eq!(
            group_label(&g(route("/leak")), 60),
            "tower_http::trace::make_span::request {http.route=/leak}"
        );
        assert_eq!(
            group_label(&g(crate::SpanGroup::default()), 60),
            "tower_http::trace::make_span::request"
        );
        assert!(group_label(&g(crate::SpanGroup::other()), 28).ends_with("request {other}"));
        // A group too long for the column keeps its end.
        let long = group_label(&g(route("/api/v1/users/{id}/orders/{order}")), 28);
        assert_eq!(long.chars().count(), 28);
        assert!(long.ends_with("/orders/{order}}"));
    }

    #[test]
    fn human_bytes_picks_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(-3 * 1024 * 1024), "-3.0 MiB");
    }
}
