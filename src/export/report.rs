//! The terminal report: the danger findings, then top tasks and spans by live and peak bytes.

use std::fmt::Write;

use crate::findings::{EvidenceValue, Finding, Severity};
use crate::{MemStats, Snapshot, SortBy, SpanGroupStats, TaskStats};

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

/// Rows per table of the report by default ([`ReportOptions::rows`]).
pub const DEFAULT_REPORT_ROWS: usize = 10;

/// What the report shows. Default: [`DEFAULT_REPORT_ROWS`] rows per table, and ended tasks
/// left out of a task table when they have nothing in its column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    rows: usize,
    empty_tasks: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            rows: DEFAULT_REPORT_ROWS,
            empty_tasks: false,
        }
    }
}

impl ReportOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows per table (default [`DEFAULT_REPORT_ROWS`]).
    pub fn rows(mut self, n: usize) -> Self {
        self.rows = n;
        self
    }

    /// Show ended tasks that have nothing in a task table's column (no live bytes in "Tasks by
    /// live bytes", no peak in "Tasks by peak bytes"). Default off: a service that has run
    /// many short tasks would otherwise fill both tables with them; the report says how many
    /// it left out.
    pub fn empty_tasks(mut self, on: bool) -> Self {
        self.empty_tasks = on;
        self
    }
}

/// Builds the tables, and the notes that explain what a figure does not say by itself.
struct Table {
    out: String,
    /// Rows whose live bytes are shown as `0*`: their label and their negative net.
    clamped: Vec<(String, i64)>,
    /// Figures are lower bounds (allocations went to the overflow bucket).
    lower: bool,
}

impl Table {
    fn header(&mut self, title: &str, extra: &str) {
        let _ = writeln!(self.out, "\n{title}");
        let _ = writeln!(
            self.out,
            "  {:<28} {extra:<26} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "name", "live", "peak", "allocated", "allocs", "frees"
        );
    }

    /// One row; with `lower`, figures are marked `≥` (lower bounds). A negative net is not
    /// memory: it is shown as `0*` and listed in the notes.
    fn row(&mut self, label: &str, extra: &str, m: &MemStats, lower: bool) {
        let net = m.live_bytes();
        let live = if net < 0 {
            self.clamped.push((label.to_owned(), net));
            "0*".to_owned()
        } else {
            bytes(net, lower)
        };
        self.cells(
            label,
            extra,
            &live,
            &bytes(m.peak_bytes as i64, lower),
            m,
            lower,
        );
    }

    fn cells(
        &mut self,
        label: &str,
        extra: &str,
        live: &str,
        peak: &str,
        m: &MemStats,
        lower: bool,
    ) {
        let c = |n: u64| {
            if lower {
                format!("≥{n}")
            } else {
                n.to_string()
            }
        };
        let _ = writeln!(
            self.out,
            "  {label:<28} {extra:<26} {live:>10} {peak:>10} {:>10} {:>9} {:>9}",
            bytes(m.allocated_bytes as i64, lower),
            c(m.allocations),
            c(m.frees),
        );
    }
}

fn bytes(n: i64, lower: bool) -> String {
    if lower {
        format!("≥{}", human_bytes(n))
    } else {
        human_bytes(n)
    }
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
    let name = crate::layer::names::label(g.target, g.name);
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

/// [`render`] with the "Findings" section ([`render_findings`]) on top: what
/// [`Guard::report`](crate::Guard::report) returns.
pub fn render_with_findings(s: &Snapshot, findings: &[Finding], n: usize) -> String {
    render_with(s, findings, &ReportOptions::new().rows(n))
}

/// The whole report with `opts`: the "Findings" section ([`render_findings`]), then the
/// tables of [`render`].
pub fn render_with(s: &Snapshot, findings: &[Finding], opts: &ReportOptions) -> String {
    let mut out = render_findings(findings);
    out.push_str(&tables(s, opts));
    out
}

/// Renders the top `n` tasks by live and by peak bytes, the top task and span names, the
/// buckets, and heapspan's own memory.
///
/// What the figures mean where they could mislead:
/// - a live figure is never shown negative: a row whose net (allocated − freed) is below
///   zero shows `0*`, and a note under the tables gives the net and why (frees read before
///   the allocations they free: see [`MemStats::live_bytes`]);
/// - `untracked (before start)` has no live figure (`—`): only the frees and
///   resizes of blocks allocated before heapspan started are counted; it comes after TOTAL,
///   which leaves it out;
/// - ended tasks with nothing in a task table's column are left out of it, and counted in a
///   line under it ([`ReportOptions::empty_tasks`] shows them);
/// - `outside any span` cuts across tasks: allocations made in no span, in a task or not
///   (with the span names it adds up to the task names and `unattributed (no task)`);
/// - heapspan's own memory is one figure, [`Snapshot::tracker_bytes`] (exported as
///   `heapspan.tracker.memory`), split into its heap blocks (the `heapspan's heap blocks`
///   row, part of TOTAL) and what it maps outside the heap.
pub fn render(s: &Snapshot, n: usize) -> String {
    tables(s, &ReportOptions::new().rows(n))
}

fn tables(s: &Snapshot, opts: &ReportOptions) -> String {
    let n = opts.rows;
    // Owners' figures are lower bounds once allocations went to the overflow bucket.
    let lower = !s.is_exact();
    let mut t = Table {
        out: String::new(),
        clamped: Vec::new(),
        lower,
    };
    if lower {
        let _ = writeln!(
            t.out,
            "NOT EXACT: {} allocations ({}) went to the overflow bucket because heapspan's \
             queues reached Builder::max_queue_bytes, and {} operations were lost; task and \
             span figures marked ≥ are lower bounds.",
            s.dropped.overflow_allocations,
            human_bytes(s.buckets.overflow.allocated_bytes as i64),
            s.dropped.lost_operations,
        );
    }
    for (title, by, what) in [
        ("Tasks by live bytes", SortBy::Live, "no live bytes"),
        ("Tasks by peak bytes", SortBy::Peak, "no peak"),
    ] {
        t.header(title, "id / spawned at");
        // An ended task with nothing in this table's column says nothing here.
        let empty = |t: &TaskStats| {
            t.ended.is_some()
                && match by {
                    SortBy::Peak => t.mem.peak_bytes == 0,
                    _ => t.mem.live_bytes() <= 0,
                }
        };
        let left_out = if opts.empty_tasks {
            0
        } else {
            s.tasks.iter().filter(|t| empty(t)).count()
        };
        let mut shown: Vec<&TaskStats> = s
            .tasks
            .iter()
            .filter(|t| opts.empty_tasks || !empty(t))
            .collect();
        shown.sort_by_key(|t| (std::cmp::Reverse(sort_key(&t.mem, by)), t.key));
        for task in shown.into_iter().take(n) {
            // The file name, not its path: the column is narrow.
            let loc = task
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
            let state = if task.ended.is_some() { " (ended)" } else { "" };
            let extra = clip(&format!("#{} {loc}", task.key), 26);
            t.row(
                &clip(&format!("{}{state}", task.display_name()), 28),
                &extra,
                &task.mem,
                lower,
            );
        }
        if left_out > 0 {
            let _ = writeln!(
                t.out,
                "  ({left_out} ended task{} with {what} left out: ReportOptions::empty_tasks)",
                if left_out == 1 { "" } else { "s" }
            );
        }
    }
    t.header("Task names (every task of the name)", "tasks (ended)");
    for tn in s.top_task_names(SortBy::Live, n) {
        t.row(
            &clip(&tn.name, 28),
            &format!("{} ({})", tn.tasks, tn.ended),
            &tn.mem,
            lower,
        );
    }
    // Per span group: a name split by its group fields (`request {http.route=/leak}`); a
    // name without any is one row, as before groups.
    t.header("Span names by live bytes", "instances (closed)");
    for sp in s.top_span_groups(SortBy::Live, n) {
        t.row(
            &group_label(sp, 28),
            &format!("{} ({})", sp.instances, sp.closed),
            &sp.mem,
            lower,
        );
    }
    t.header("Buckets and the total", "");
    let b = &s.buckets;
    // TOTAL leaves the untracked bucket out: it has no live figure.
    let mut since_start = s.total;
    since_start.allocated_bytes = since_start
        .allocated_bytes
        .saturating_sub(b.untracked.allocated_bytes);
    since_start.allocations = since_start
        .allocations
        .saturating_sub(b.untracked.allocations);
    since_start.freed_bytes = since_start
        .freed_bytes
        .saturating_sub(b.untracked.freed_bytes);
    since_start.frees = since_start.frees.saturating_sub(b.untracked.frees);
    for (label, m, l) in [
        ("outside any span", &s.no_span, lower),
        ("unattributed (no task)", &b.unattributed, lower),
        ("heapspan's heap blocks", &b.heapspan, false),
        ("overflow (not attributed)", &b.overflow, false),
        ("TOTAL since start", &since_start, false),
    ] {
        t.row(label, "", m, l);
    }
    t.cells(
        "untracked (before start)",
        "",
        "—",
        "—",
        &b.untracked,
        false,
    );
    // The notes: what the figures above do not say by themselves.
    let heap = b.heapspan.live_bytes_clamped();
    let _ = writeln!(
        t.out,
        "\nheapspan's own memory: {} resident (Snapshot::tracker_bytes, exported as {}) = {} \
         heap blocks (the row above, part of TOTAL) + {} thread tables, queues and live index \
         (mapped outside the heap)",
        human_bytes(s.tracker_bytes as i64),
        super::names::TRACKER_MEMORY,
        human_bytes(heap as i64),
        human_bytes(s.tracker_bytes.saturating_sub(heap) as i64),
    );
    if b.untracked.frees > 0 || b.untracked.allocated_bytes > 0 {
        let _ = writeln!(
            t.out,
            "untracked: of the memory allocated before heapspan started, {} was freed since \
             ({} free{}{}); how much of it is still live is unknown (—)",
            human_bytes(b.untracked.freed_bytes as i64),
            b.untracked.frees,
            if b.untracked.frees == 1 { "" } else { "s" },
            if b.untracked.allocated_bytes > 0 {
                format!(
                    ", {} of growth by realloc",
                    human_bytes(b.untracked.allocated_bytes as i64)
                )
            } else {
                String::new()
            }
        );
    }
    if !t.clamped.is_empty() {
        let nets: Vec<String> = t
            .clamped
            .iter()
            .map(|(label, net)| format!("{} {}", label.trim(), human_bytes(*net)))
            .collect();
        let _ = writeln!(
            t.out,
            "0*: live shown as 0: frees of these rows were read before the allocations they \
             free (made on another thread, read at the next fold); net allocated − freed now: {}",
            nets.join(", ")
        );
    }
    let _ = writeln!(
        t.out,
        "{}",
        if t.lower {
            "figures marked ≥ are lower bounds (see the first line)"
        } else {
            "every figure exact (nothing dropped)"
        }
    );
    t.out
}

fn sort_key(m: &MemStats, by: SortBy) -> i64 {
    match by {
        SortBy::Live => m.live_bytes(),
        SortBy::Peak => m.peak_bytes as i64,
        _ => m.allocated_bytes as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Buckets, Dropped, SizeHistogram, SpanNameStats, TaskKey, TaskSource};
    use std::time::SystemTime;

    fn mem(allocated: u64, freed: u64, peak: u64) -> MemStats {
        MemStats {
            allocated_bytes: allocated,
            allocations: u64::from(allocated > 0),
            freed_bytes: freed,
            frees: u64::from(freed > 0),
            peak_bytes: peak,
        }
    }

    fn task(id: u64, name: &str, m: MemStats, ended: bool) -> TaskStats {
        TaskStats {
            key: TaskKey { id },
            name: Some(name.to_owned()),
            location: None,
            first_span: None,
            source: TaskSource::Wrapper,
            mem: m,
            started: None,
            ended: ended.then_some(SystemTime::UNIX_EPOCH),
            first_activity: None,
            last_activity: None,
            future_size: None,
            last_poll: None,
        }
    }

    /// What the service showed: frees of blocks allocated before start, a span name
    /// whose frees were read before its allocations, a crowd of ended tasks that never held
    /// anything, and heapspan's own memory.
    fn service() -> Snapshot {
        let mut tasks = vec![
            task(1, "cache", mem(8192, 0, 8192), false),
            task(2, "handler", mem(4096, 4096, 4096), true),
        ];
        for id in 10..40 {
            tasks.push(task(id, "conn", mem(0, 0, 0), true));
        }
        with_groups(Snapshot {
            taken_at: SystemTime::UNIX_EPOCH,
            tasks,
            task_names: Vec::new(),
            spans: Vec::new(),
            span_groups: Vec::new(),
            span_names: vec![
                SpanNameStats {
                    name: "request",
                    target: "svc",
                    instances: 3,
                    closed: 3,
                    mem: mem(1000, 2740, 900),
                },
                SpanNameStats {
                    name: "other",
                    target: "",
                    instances: 1,
                    closed: 0,
                    mem: mem(64, 0, 64),
                },
            ],
            no_span: mem(100, 0, 100),
            buckets: Buckets {
                unattributed: mem(2048, 1024, 2048),
                heapspan: mem(3000, 1000, 2000),
                untracked: mem(0, 276, 0),
                overflow: MemStats::default(),
            },
            // Every task name and bucket: 8192 + 4096 + 2048 + 3000 allocated in 4
            // allocations; 4096 + 1024 + 1000 + 276 freed in 4 frees (the untracked one
            // included).
            total: MemStats {
                allocated_bytes: 17336,
                allocations: 4,
                freed_bytes: 6396,
                frees: 4,
                peak_bytes: 12000,
            },
            allocation_sizes: SizeHistogram::default(),
            dropped: Dropped::default(),
            handoffs: crate::HandOffs::default(),
            tracker_bytes: 2000 + 50_000,
        })
    }

    /// Each span name as one group with no group fields, as the aggregator makes them.
    fn with_groups(mut s: Snapshot) -> Snapshot {
        s.span_groups = s
            .span_names
            .iter()
            .map(|n| crate::SpanGroupStats {
                name: n.name,
                target: n.target,
                group: crate::SpanGroup::default(),
                instances: n.instances,
                closed: n.closed,
                mem: n.mem,
            })
            .collect();
        s
    }

    /// The rows of the tables (no notes, no headers, no "left out" lines).
    fn cells(report: &str) -> Vec<&str> {
        report
            .lines()
            .filter(|l| {
                l.starts_with("  ")
                    && !l.trim_start().starts_with("name")
                    && !l.trim_start().starts_with('(')
            })
            .collect()
    }

    /// A row's five figures (live, peak, allocated, allocs, frees), read by column.
    #[track_caller]
    fn figures(row: &str) -> [String; 5] {
        let chars: Vec<char> = row.chars().collect();
        let mut at = 2 + 28 + 1 + 26 + 1;
        [10, 10, 10, 9, 9].map(|w| {
            let cell: String = chars[at..at + w].iter().collect();
            at += w + 1;
            cell.trim().to_owned()
        })
    }

    #[track_caller]
    fn row<'a>(report: &'a str, label: &str) -> &'a str {
        cells(report)
            .into_iter()
            .find(|l| l[2..].starts_with(label))
            .unwrap_or_else(|| panic!("no row {label}:\n{report}"))
    }

    #[test]
    fn no_figure_in_a_table_is_negative() {
        let r = render(&service(), 10);
        for line in cells(&r) {
            for f in figures(line) {
                assert!(!f.starts_with('-'), "a negative figure: {line}");
            }
        }
        assert_eq!(figures(row(&r, "svc::request"))[0], "0*");
        assert!(
            r.contains("0*: live shown as 0: frees of these rows were read before the allocations")
                && r.contains("svc::request -1.7 KiB"),
            "the net is given as a net, with why:\n{r}"
        );
    }

    #[test]
    fn untracked_has_no_live_figure_and_total_leaves_it_out() {
        let r = render(&service(), 10);
        assert_eq!(
            figures(row(&r, "untracked (before start)")),
            ["—", "—", "0 B", "0", "1"]
        );
        assert!(
            r.contains(
                "untracked: of the memory allocated before heapspan started, 276 B was freed \
                 since (1 free); how much of it is still live is unknown (—)"
            ),
            "{r}"
        );
        // 17336 − (6396 − 276) = 11216 B live; the untracked free is not among TOTAL's.
        assert_eq!(
            figures(row(&r, "TOTAL since start")),
            ["11.0 KiB", "11.7 KiB", "16.9 KiB", "4", "3"]
        );
        assert!(
            r.find("TOTAL since start") < r.find("untracked (before start)"),
            "untracked comes after the total it is not part of"
        );
    }

    #[test]
    fn ended_tasks_with_nothing_are_left_out_unless_asked() {
        let r = render(&service(), 10);
        assert!(!r.contains("conn"), "{r}");
        assert!(
            r.contains("(31 ended tasks with no live bytes left out: ReportOptions::empty_tasks)"),
            "{r}"
        );
        assert!(
            r.contains("(30 ended tasks with no peak left out: ReportOptions::empty_tasks)"),
            "the handler task had a peak: {r}"
        );
        let by_peak = &r[r.find("Tasks by peak bytes").unwrap()..r.find("Task names").unwrap()];
        assert!(by_peak.contains("handler (ended)"), "{by_peak}");
        let all = render_with(
            &service(),
            &[],
            &ReportOptions::new().rows(40).empty_tasks(true),
        );
        assert_eq!(
            all.matches("conn (ended)").count(),
            60,
            "both tables: {all}"
        );
        assert!(!all.contains("left out"));
    }

    #[test]
    fn heapspan_own_memory_is_one_figure_with_its_split() {
        let r = render(&service(), 10);
        assert!(
            r.contains(
                "heapspan's own memory: 50.8 KiB resident (Snapshot::tracker_bytes, exported as \
                 heapspan.tracker.memory) = 2.0 KiB heap blocks (the row above, part of TOTAL) + \
                 48.8 KiB thread tables, queues and live index (mapped outside the heap)"
            ),
            "{r}"
        );
        assert!(
            !r.contains("bookkeeping"),
            "no second figure under another name"
        );
        assert_eq!(r.matches("heapspan's heap blocks").count(), 1);
    }

    #[test]
    fn span_rows_without_a_target_show_the_name_alone() {
        let r = render(&service(), 10);
        assert_eq!(figures(row(&r, "other "))[0], "64 B");
        assert!(!r.contains("::other"));
    }

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
