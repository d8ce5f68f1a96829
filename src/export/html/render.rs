//! The page: one self-contained HTML document drawn from a [`View`], with its CSS inline and
//! its charts and graphs as inline SVG. No script, no external resource (no font, no
//! stylesheet, no image), so it renders the same with the network off.

use std::fmt::Write as _;

use super::escape::{attr, text};
use super::model::{FindingView, GraphView, Header, Series, View};
use super::{chart, surface};
use crate::export::report::human_bytes;

const STYLE: &str = r#"
:root { --fg: #1b1f24; --muted: #5f6b7a; --line: #d8dee4; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
#facts { display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 8px; margin: 0; }
#facts div { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
#facts dt { color: var(--muted); font-size: 12px; }
#facts dd { margin: 0; font-size: 16px; font-weight: 600; }
.notes { color: #8a4b00; margin: 8px 0 0; padding-left: 18px; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
.chart-box { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: #eceff1; }
svg.chart .axis { stroke: #90a4ae; }
svg.chart text { font-size: 11px; fill: var(--muted); }
svg.chart .tick.y { text-anchor: end; }
svg.chart .tick.x, svg.chart .axis-title, svg.chart .empty { text-anchor: middle; }
svg.chart polyline { stroke-width: 2; stroke-linejoin: round; }
svg.chart .other polyline { stroke-dasharray: 4 3; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eef1f4; vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.legend td.name { word-break: break-all; }
.finding { border: 1px solid var(--line); border-left: 6px solid #90a4ae; border-radius: 6px; padding: 10px 14px; margin: 0 0 14px; }
.finding .top { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: baseline; }
.finding .kind { font-weight: 700; font-size: 15px; }
.finding .bytes { font-weight: 700; }
.finding .summary { margin: 6px 0; }
.finding .place { color: var(--muted); margin: 0 0 6px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 700; color: #fff; background: #90a4ae; text-transform: uppercase; }
.sev-critical { border-left-color: #7f0000; } .sev-critical .badge { background: #7f0000; }
.sev-high { border-left-color: #d32f2f; } .sev-high .badge { background: #d32f2f; }
.sev-medium { border-left-color: #ef6c00; } .sev-medium .badge { background: #ef6c00; }
.sev-low { border-left-color: #f9a825; } .sev-low .badge { background: #f9a825; color: #1b1f24; }
.sev-info .badge { background: #78909c; }
.metric { color: var(--muted); }
.metric b { color: var(--fg); }
.cols { display: grid; grid-template-columns: minmax(240px, 300px) minmax(0, 1fr); gap: 16px; align-items: start; }
.cols.single { grid-template-columns: minmax(240px, 560px); }
table.evidence td:first-child { color: var(--muted); white-space: nowrap; }
.graph-box { overflow-x: auto; border: 1px solid #eef1f4; border-radius: 6px; background: #fcfcfd; }
.graph-note { color: var(--muted); font-size: 12.5px; margin: 4px 0; }
svg.surface rect { fill: #fff; stroke: #78909c; stroke-width: 1.2; }
svg.surface .root rect { fill: #ffebee; stroke: #c62828; stroke-width: 3; }
svg.surface text { font-size: 11.5px; fill: #37474f; }
svg.surface .node-head { font-weight: 700; fill: #1b1f24; }
svg.surface .edge-label { font-size: 10.5px; paint-order: stroke; stroke: #fff; stroke-width: 3px; text-anchor: middle; }
details summary { cursor: pointer; color: var(--muted); font-size: 12.5px; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
"#;

/// The whole document.
pub(crate) fn page(v: &View) -> String {
    let mut out = String::with_capacity(64 << 10);
    let title = format!("heapspan · {}", v.header.service);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"heapspan {}\"><title>{}</title><style>{STYLE}</style>\
         </head><body>",
        env!("CARGO_PKG_VERSION"),
        text(&title)
    );
    out.push_str(&surface::markers());
    header(&mut out, &v.header);
    out.push_str("<h2>Live bytes over time</h2><div class=\"charts\">");
    series_box(&mut out, "tasks", "by task name", &v.tasks, &v.header);
    series_box(&mut out, "spans", "by span name", &v.spans, &v.header);
    out.push_str("</div>");
    findings(&mut out, v);
    let _ = writeln!(
        out,
        "<footer>heapspan {} · a self-contained page: no script, no network.</footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn bytes_i(n: i64) -> String {
    human_bytes(n)
}

fn bytes_u(n: u64) -> String {
    human_bytes(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `2024-05-01 12:34:56 UTC` for Unix milliseconds (the civil calendar, no time zone data).
pub(crate) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn fact(out: &mut String, key: &str, label: &str, value: &str, title: Option<&str>) {
    let _ = write!(
        out,
        "<div><dt>{}</dt><dd data-fact=\"{}\"{}>{}</dd></div>",
        text(label),
        attr(key),
        title
            .map(|t| format!(" title=\"{}\"", attr(t)))
            .unwrap_or_default(),
        text(value)
    );
}

fn header(out: &mut String, h: &Header) {
    let _ = write!(
        out,
        "<header><h1>heapspan · <span id=\"service\">{}</span></h1><p class=\"sub\">{}",
        text(&h.service),
        text(&h.source)
    );
    if let (Some(s), Some(e)) = (h.start_ms, h.end_ms) {
        let _ = write!(out, " · {} to {}", text(&utc(s)), text(&utc(e)));
    }
    out.push_str("</p><dl id=\"facts\">");
    let duration = match (h.start_ms, h.end_ms) {
        (Some(s), Some(e)) => chart::elapsed_label((e - s).max(0)),
        _ => "unknown".to_owned(),
    };
    fact(out, "duration", "run", &duration, None);
    fact(out, "windows", "windows", &h.windows.to_string(), None);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
    fact(
        out,
        "live",
        "live at the end",
        &or_dash(h.live.map(bytes_i)),
        h.live.map(|v| format!("{v} bytes")).as_deref(),
    );
    fact(out, "peak", "peak", &or_dash(h.peak.map(bytes_u)), None);
    fact(
        out,
        "allocated",
        "allocated",
        &or_dash(h.allocated.map(bytes_u)),
        None,
    );
    fact(out, "freed", "freed", &or_dash(h.freed.map(bytes_u)), None);
    fact(
        out,
        "allocations",
        "allocations",
        &or_dash(h.allocations.map(|a| a.to_string())),
        None,
    );
    fact(
        out,
        "tracker",
        "heapspan's own memory",
        &or_dash(h.tracker_bytes.map(bytes_u)),
        None,
    );
    let total: u64 = h.dropped.iter().map(|(_, n)| *n).sum();
    let by_reason = h
        .dropped
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    fact(
        out,
        "dropped",
        "dropped by heapspan",
        &total.to_string(),
        (!by_reason.is_empty()).then_some(by_reason.as_str()),
    );
    fact(
        out,
        "exact",
        "figures",
        match h.exact {
            Some(true) => "exact",
            Some(false) => "lower bounds",
            None => "—",
        },
        None,
    );
    out.push_str("</dl>");
    if total > 0 {
        let _ = write!(
            out,
            "<p class=\"sub\" id=\"drops\">dropped, by reason: {}</p>",
            text(&by_reason)
        );
    }
    if !h.notes.is_empty() {
        out.push_str("<ul class=\"notes\">");
        for n in &h.notes {
            let _ = write!(out, "<li>{}</li>", text(n));
        }
        out.push_str("</ul>");
    }
    out.push_str("</header>");
}

/// A chart and its legend: one row per drawn line with its colour, latest and peak live bytes.
fn series_box(out: &mut String, id: &str, title: &str, s: &Series, h: &Header) {
    let lines = s.lines();
    let times: Vec<i64> = s.points.iter().map(|p| p.at_ms).collect();
    let _ = write!(
        out,
        "<section class=\"chart-box\" id=\"chart-{}\"><h3>Live bytes {}</h3>",
        attr(id),
        text(title)
    );
    out.push_str(&chart::svg(id, &lines, &times, h.start_ms));
    let _ = write!(
        out,
        "<table class=\"legend\" data-chart=\"{}\"><thead><tr><th>{}</th>\
         <th class=\"num\">live at the end</th><th class=\"num\">peak</th></tr></thead><tbody>",
        attr(id),
        if id == "tasks" {
            "task name"
        } else {
            "span name"
        }
    );
    if lines.is_empty() {
        out.push_str("<tr><td colspan=\"3\">nothing recorded</td></tr>");
    }
    for (i, l) in lines.iter().enumerate() {
        let last = l.last();
        let _ = write!(
            out,
            "<tr class=\"series\" data-chart=\"{}\" data-name=\"{}\" data-live=\"{}\" \
             data-peak=\"{}\"><td class=\"name\"><span class=\"swatch\" style=\"background:{}\">\
             </span>{}</td><td class=\"num live\">{}</td><td class=\"num\">{}</td></tr>",
            attr(id),
            attr(&l.name),
            last.map(|v| v.to_string()).unwrap_or_default(),
            l.peak(),
            chart::colour(l, i),
            if l.is_other {
                "<em>other</em> (every name not drawn)".to_owned()
            } else {
                text(&l.name)
            },
            last.map(bytes_i)
                .unwrap_or_else(|| "— (in other)".to_owned()),
            bytes_i(l.peak()),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn findings(out: &mut String, v: &View) {
    let _ = write!(
        out,
        "<h2 id=\"findings\">Findings <span class=\"metric\">({})</span></h2>\
         <p class=\"sub\">{}</p>",
        v.findings.len(),
        text(&v.findings_caption)
    );
    if v.findings.is_empty() {
        out.push_str("<p id=\"no-findings\">No finding at or above the reporting score.</p>");
    }
    for f in &v.findings {
        finding(out, f);
    }
}

/// An evidence value for a reader: byte figures get their human size beside them.
fn evidence_value(key: &str, value: &str) -> String {
    let is_bytes = key.ends_with(".bytes") || key.ends_with(".size") || key.ends_with("_bytes");
    match value.parse::<i64>() {
        Ok(b) if is_bytes && b.unsigned_abs() >= 1024 => format!("{value} ({})", bytes_i(b)),
        _ => value.to_owned(),
    }
}

fn finding(out: &mut String, f: &FindingView) {
    let sev = f.severity.as_str();
    let _ = write!(
        out,
        "<section class=\"finding sev-{}\" id=\"finding-{}\" data-id=\"{}\" data-kind=\"{}\" \
         data-severity=\"{}\" data-score=\"{:.3}\" data-bytes=\"{}\"><div class=\"top\">\
         <span class=\"badge\">{}</span><span class=\"kind\">{}</span>\
         <span class=\"bytes\" title=\"{} bytes\">{}</span>\
         <span class=\"metric\">score <b>{:.2}</b></span>\
         <span class=\"metric\">confidence <b>{:.2}</b></span>\
         <span class=\"metric\">verdict <b>{}</b></span>\
         <span class=\"metric\">windows <b>{}</b></span></div>",
        attr(sev),
        attr(&f.id),
        attr(&f.id),
        attr(&f.kind),
        attr(sev),
        f.score,
        f.bytes,
        text(sev),
        text(&f.kind),
        f.bytes,
        text(&bytes_u(f.bytes)),
        f.score,
        f.confidence,
        text(&f.verdict),
        f.windows,
    );
    let _ = write!(out, "<p class=\"summary\">{}</p>", text(&f.summary));
    let mut place = Vec::new();
    if let Some(t) = &f.task {
        place.push(format!("task <strong class=\"task\">{}</strong>", text(t)));
    }
    if let Some(s) = &f.span {
        place.push(format!("span <strong class=\"span\">{}</strong>", text(s)));
    }
    if let Some(l) = &f.location {
        place.push(format!("at <code>{}</code>", text(l)));
    }
    if let Some(h) = &f.holder {
        place.push(format!("held by: {}", text(h)));
    }
    if !place.is_empty() {
        let _ = write!(out, "<p class=\"place\">{}</p>", place.join(" · "));
    }
    let drawn = f.graph.is_some() || f.graph_missing.is_some();
    out.push_str(if drawn {
        "<div class=\"cols\"><table class=\"evidence\"><tbody>"
    } else {
        "<div class=\"cols single\"><table class=\"evidence\"><tbody>"
    });
    let mut row = |k: &str, label: &str, v: &str| {
        let _ = write!(
            out,
            "<tr data-key=\"{}\"><td title=\"{}\">{}</td><td class=\"mono\">{}</td></tr>",
            attr(k),
            attr(k),
            text(label),
            text(v)
        );
    };
    row("heapspan.finding.id", "id", &f.id);
    row(
        "heapspan.finding.allocations",
        "allocations",
        &f.allocations.to_string(),
    );
    row(
        "heapspan.finding.from_graph",
        "from the graph",
        if f.from_graph { "yes" } else { "no" },
    );
    if let Some(c) = &f.holder_class {
        row("heapspan.finding.holder.class", "holder class", c);
    }
    for (k, v) in &f.evidence {
        let label = k.strip_prefix("heapspan.finding.").unwrap_or(k);
        row(k, label, &evidence_value(k, v));
    }
    out.push_str("</tbody></table><div class=\"surface-box\">");
    match (&f.graph, &f.graph_missing) {
        (Some(g), _) => graph(out, &f.id, g),
        (None, Some(why)) => {
            let _ = write!(out, "<p class=\"graph-note\">{}</p>", text(why));
        }
        (None, None) => {}
    }
    out.push_str("</div></div></section>");
}

fn graph(out: &mut String, id: &str, g: &GraphView) {
    let roots = g.nodes.iter().filter(|n| n.root).count();
    let _ = write!(
        out,
        "<p class=\"graph-note\">Danger surface: {} root{} (red) and what {} own{}: {} node{}, \
         {} edge{}{}. {}</p>",
        roots,
        if roots == 1 { "" } else { "s" },
        if roots == 1 { "it" } else { "they" },
        if roots == 1 { "s" } else { "" },
        g.nodes.len(),
        if g.nodes.len() == 1 { "" } else { "s" },
        g.edges.len(),
        if g.edges.len() == 1 { "" } else { "s" },
        if g.more > 0 {
            format!(
                " <span class=\"more\" data-more=\"{}\">+{}{} more node{} not drawn</span>",
                g.more,
                g.more,
                if g.more_at_least { " or" } else { "" },
                if g.more == 1 && !g.more_at_least {
                    ""
                } else {
                    "s"
                },
            )
        } else {
            String::new()
        },
        text(&g.source),
    );
    let _ = write!(
        out,
        "<div class=\"graph-box\">{}</div>",
        surface::svg(id, g)
    );
    if g.more_edges > 0 {
        let _ = write!(
            out,
            "<p class=\"graph-note more-edges\">+{} more edges between these nodes not drawn</p>",
            g.more_edges
        );
    }
    if !g.edges.is_empty() {
        out.push_str(
            "<details><summary>edges</summary><table class=\"edges\"><thead><tr><th>from</th>\
             <th>to</th><th>kind</th><th class=\"num\">confidence</th><th class=\"num\">bytes</th>\
             </tr></thead><tbody>",
        );
        for e in &g.edges {
            let _ = write!(
                out,
                "<tr><td>#{}</td><td>#{}</td><td>{}</td><td class=\"num\">{:.2}</td>\
                 <td class=\"num\">{}</td></tr>",
                e.from,
                e.to,
                text(&e.kind),
                e.confidence,
                text(&bytes_u(e.bytes))
            );
        }
        out.push_str("</tbody></table></details>");
    }
}

/// The document of `v` has no reference that a browser would fetch: no `src`, no `href`
/// outside the page, no `url(…)` other than a fragment, no `@import`.
#[cfg(test)]
pub(crate) fn fetches_nothing(html: &str) -> Result<(), String> {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "src=", "href=", "@import", "<link", "<script", "<iframe", "<object", "<embed",
    ] {
        if let Some(i) = lower.find(bad) {
            return Err(format!(
                "{bad} at {i}: {}",
                &html[i..(i + 80).min(html.len())]
            ));
        }
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("url(") {
        if !rest[i + 4..].starts_with('#') {
            return Err(format!(
                "url( not to a fragment: {}",
                &rest[i..(i + 60).min(rest.len())]
            ));
        }
        rest = &rest[i + 4..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::html::model::{EdgeView, NodeView, Point};

    /// A view with everything a page shows, names full of markup.
    pub(crate) fn sample() -> View {
        let t0 = 1_700_000_000_000;
        let tasks = Series {
            points: (0..5)
                .map(|i| {
                    Point::of(
                        t0 + i * 10_000,
                        [
                            ("planted", 3 << 20),
                            ("<b>bold</b> & \"quoted\" 'name'", 1000 * i),
                        ],
                    )
                })
                .collect(),
        };
        let spans = Series {
            points: vec![Point::of(t0, [("app::request", 2048)])],
        };
        let finding = FindingView {
            id: "00000000000000ab".into(),
            kind: "refcount.unreachable_cycle".into(),
            severity: "high".into(),
            score: 0.95,
            confidence: 0.9,
            verdict: "confirmed".into(),
            bytes: 131_104,
            allocations: 2,
            windows: 3,
            from_graph: true,
            task: Some("cycler<script>".into()),
            span: None,
            location: Some("src/main.rs:12".into()),
            holder: Some("the cycle itself".into()),
            holder_class: Some("cycle".into()),
            summary: "2 Rc/Arc blocks hold each other & nothing else <points> to them".into(),
            evidence: vec![
                ("heapspan.finding.cycle.members".into(), "2".into()),
                ("heapspan.finding.growth.bytes".into(), "1048576".into()),
            ],
            roots: vec![1, 2],
            graph: Some(GraphView {
                nodes: vec![
                    NodeView {
                        id: 1,
                        bytes: Some(48),
                        root: true,
                        ..NodeView::default()
                    },
                    NodeView {
                        id: 2,
                        bytes: Some(48),
                        root: true,
                        ..NodeView::default()
                    },
                ],
                edges: vec![EdgeView {
                    from: 1,
                    to: 2,
                    kind: "rc_clone".into(),
                    confidence: 0.95,
                    bytes: 48,
                }],
                more: 3,
                source: "graph of window 3".into(),
                ..GraphView::default()
            }),
            graph_missing: None,
        };
        View {
            header: Header {
                service: "svc <&>".into(),
                source: "written at the end of the run".into(),
                start_ms: Some(t0),
                end_ms: Some(t0 + 40_000),
                windows: 5,
                live: Some(3 << 20),
                peak: Some(4 << 20),
                allocated: Some(10 << 20),
                freed: Some(7 << 20),
                allocations: Some(1234),
                tracker_bytes: Some(1 << 20),
                dropped: vec![
                    ("overflow_allocation".into(), 0),
                    ("lost_operation".into(), 2),
                ],
                exact: Some(false),
                notes: vec!["a note <i>".into()],
            },
            tasks,
            spans,
            findings_caption: "the last window's findings".into(),
            findings: vec![finding],
        }
    }

    #[test]
    fn a_page_escapes_every_name_and_fetches_nothing() {
        let html = page(&sample());
        fetches_nothing(&html).unwrap();
        assert!(
            !html.contains("<b>bold"),
            "a task name is text, never markup"
        );
        assert!(!html.contains("cycler<script>"));
        assert!(!html.contains("svc <&>"));
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; &#39;name&#39;"));
        assert!(html.contains("<span id=\"service\">svc &lt;&amp;&gt;</span>"));
        assert!(html.contains("cycler&lt;script&gt;"));
        assert!(html.contains("&amp; nothing else &lt;points&gt; to them"));
        assert!(html.contains("<li>a note &lt;i&gt;</li>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn a_page_shows_the_series_rows_the_findings_and_their_graph() {
        let html = page(&sample());
        assert!(html.contains(
            "<tr class=\"series\" data-chart=\"tasks\" data-name=\"planted\" \
             data-live=\"3145728\" data-peak=\"3145728\">"
        ));
        assert!(html.contains("<td class=\"num live\">3.0 MiB</td>"));
        assert!(html.contains("data-name=\"app::request\""));
        assert!(html.contains(
            "<section class=\"finding sev-high\" id=\"finding-00000000000000ab\" \
             data-id=\"00000000000000ab\" data-kind=\"refcount.unreachable_cycle\" \
             data-severity=\"high\""
        ));
        assert!(html.contains("<span class=\"badge\">high</span>"));
        assert!(html.contains(">cycle.members</td><td class=\"mono\">2</td>"));
        assert!(html.contains(">growth.bytes</td><td class=\"mono\">1048576 (1.0 MiB)</td>"));
        assert!(html.contains("data-finding=\"00000000000000ab\" data-nodes=\"2\""));
        assert_eq!(html.matches("<g class=\"node root\"").count(), 2);
        assert!(html.contains("+3 more nodes not drawn"));
        assert!(html.contains("<dd data-fact=\"windows\">5</dd>"));
        assert!(html.contains(
            "<dd data-fact=\"dropped\" title=\"overflow_allocation: 0, lost_operation: 2\">2</dd>"
        ));
        assert!(html.contains("<dd data-fact=\"exact\">lower bounds</dd>"));
        assert!(html.contains("2023-11-14 22:13:20 UTC to 2023-11-14 22:14:00 UTC"));
        assert!(html.contains("<dd data-fact=\"duration\">40 s</dd>"));
    }

    #[test]
    fn an_empty_view_still_makes_a_page() {
        let html = page(&View::default());
        fetches_nothing(&html).unwrap();
        assert!(html.contains("no figures recorded"));
        assert!(html.contains("id=\"no-findings\""));
        assert!(html.contains("<dd data-fact=\"duration\">unknown</dd>"));
    }

    #[test]
    fn the_checker_of_fetches_catches_what_a_browser_would_load() {
        assert!(fetches_nothing("<img src=\"x.png\">").is_err());
        assert!(fetches_nothing("<a href=\"https://x\">").is_err());
        assert!(fetches_nothing("<style>@import 'x.css';</style>").is_err());
        assert!(fetches_nothing("<style>b{background:url(x.png)}</style>").is_err());
        assert!(fetches_nothing("<path marker-end=\"url(#hs-arrow-owns)\"/>").is_ok());
    }

    #[test]
    fn utc_dates_follow_the_civil_calendar() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59 UTC");
    }
}
