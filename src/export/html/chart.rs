//! Line charts of live bytes over time, drawn as inline SVG: byte axes in B/KiB/MiB/GiB with
//! round ticks, a time axis in seconds, minutes or hours since the start of the run.

use std::fmt::Write as _;

use super::escape;
use super::model::Line;

/// The drawing's size (it scales to the width of its box; the text is sized for this).
const WIDTH: f64 = 660.0;
const HEIGHT: f64 = 280.0;
/// Margins around the plot: room for the byte labels on the left, the time labels below.
const LEFT: f64 = 74.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// Colours of the drawn lines, in rank order (colour-blind-safe where it matters: the first
/// ones differ in lightness too); `other` is grey.
pub(crate) const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79",
];
/// The colour of the `other` line.
pub(crate) const OTHER_COLOUR: &str = "#9e9e9e";

/// The colour of line `i` of `lines`.
pub(crate) fn colour(line: &Line, i: usize) -> &'static str {
    if line.is_other {
        OTHER_COLOUR
    } else {
        PALETTE[i % PALETTE.len()]
    }
}

/// Binary units of the byte axes.
const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// Round ticks for `0..=max` bytes: `(unit, ticks)` with at most about 6 ticks, the step a
/// 1, 2, 2.5 or 5 times a power of ten of the axis unit (B, KiB, MiB, …: the largest one the
/// top tick holds once), and the last tick at or above `max`.
pub(crate) fn byte_ticks(max: u64) -> (u64, Vec<u64>) {
    let max = max.max(1);
    let unit_of = |v: u64| {
        let mut unit = 1u64;
        while unit < (1 << 50) && v / unit >= 1024 {
            unit <<= 10;
        }
        unit
    };
    let unit = unit_of(max);
    let in_unit = max as f64 / unit as f64;
    let raw = in_unit / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step_in_unit = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * 0.999_999)
        .unwrap_or(10.0 * mag);
    let step = ((step_in_unit * unit as f64).round() as u64).max(1);
    let n = max.div_ceil(step);
    let ticks: Vec<u64> = (0..=n).map(|i| i * step).collect();
    (unit_of(*ticks.last().unwrap_or(&max)), ticks)
}

/// A tick label in the axis `unit`: `0`, `512 B`, `0.25 MiB`, `250 MiB`.
pub(crate) fn byte_label(v: u64, unit: u64) -> String {
    if v == 0 {
        return "0".to_owned();
    }
    let u = (unit.max(1).trailing_zeros() / 10) as usize;
    format!(
        "{} {}",
        trim(v as f64 / unit.max(1) as f64),
        UNITS[u.min(UNITS.len() - 1)]
    )
}

/// `x` with at most two decimals, trailing zeros dropped.
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// Round ticks over `0..=span_ms` of elapsed time: at most 7, at 10, 20, 50 … 500 ms,
/// 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h or days.
pub(crate) fn time_ticks(span_ms: i64) -> Vec<i64> {
    const STEPS_MS: [i64; 25] = [
        10,
        20,
        50,
        100,
        200,
        500,
        1000,
        2000,
        5000,
        10_000,
        15_000,
        30_000,
        60_000,
        120_000,
        300_000,
        600_000,
        900_000,
        1_800_000,
        3_600_000,
        7_200_000,
        10_800_000,
        21_600_000,
        43_200_000,
        86_400_000,
        604_800_000,
    ];
    let span_ms = span_ms.max(1);
    let step_ms = STEPS_MS
        .iter()
        .copied()
        .find(|s| span_ms / s <= 6)
        .unwrap_or_else(|| (span_ms / 6).max(1));
    (0..=span_ms / step_ms).map(|i| i * step_ms).collect()
}

/// Elapsed time for a tick: `0`, `45 s`, `2 min`, `1 min 30 s`, `3 h`, `1 h 15 min`, `2 d`.
pub(crate) fn elapsed_label(ms: i64) -> String {
    let s = ms / 1000;
    if ms == 0 {
        "0".to_owned()
    } else if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        if ms % 1000 == 0 {
            format!("{s} s")
        } else {
            format!("{} s", trim(ms as f64 / 1000.0))
        }
    } else if s < 3600 {
        match s % 60 {
            0 => format!("{} min", s / 60),
            r => format!("{} min {r} s", s / 60),
        }
    } else if s < 86_400 {
        match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        }
    } else {
        format!("{} d", s / 86_400)
    }
}

/// The chart of `lines` over the points at `times` (Unix ms), the time axis from `start_ms`
/// (the run's start, else the first point). `id` names the drawing (`data-chart`).
pub(crate) fn svg(id: &str, lines: &[Line], times: &[i64], start_ms: Option<i64>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         preserveAspectRatio=\"xMidYMid meet\" role=\"img\">",
        escape::attr(id)
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let t0 = start_ms
        .or_else(|| times.first().copied())
        .unwrap_or(0)
        .min(times.first().copied().unwrap_or(i64::MAX));
    let t1 = times.last().copied().unwrap_or(t0).max(t0 + 1);
    let span = t1 - t0;
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0)
        .max(0) as u64;
    let (unit, ticks) = byte_ticks(max);
    let top = *ticks.last().unwrap_or(&1) as f64;
    let x = |t: i64| LEFT + plot_w * ((t - t0) as f64 / span as f64);
    let y = |v: i64| TOP + plot_h * (1.0 - (v.max(0) as f64 / top.max(1.0)));
    // Grid and byte axis.
    for &v in &ticks {
        let yy = y(v as i64);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
             <text class=\"tick y\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            escape::text(&byte_label(v, unit)),
        );
    }
    // Time axis.
    let base = TOP + plot_h;
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{base:.1}\" y2=\"{base:.1}\"/>",
        LEFT + plot_w
    );
    for t in time_ticks(span) {
        let xx = x(t0 + t);
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{base:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick x\" x=\"{xx:.1}\" y=\"{:.1}\">{}</text>",
            base + 4.0,
            base + 17.0,
            escape::text(&elapsed_label(t)),
        );
    }
    let _ = write!(
        out,
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\">time since the start of the run</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 4.0
    );
    // The lines: polylines broken where a name was not among a point's largest, a dot per
    // point when the points are few.
    let dots = times.len() <= 60;
    for (i, line) in lines.iter().enumerate() {
        let c = colour(line, i);
        let _ = write!(
            out,
            "<g class=\"series-line{}\" data-name=\"{}\" stroke=\"{c}\" fill=\"{c}\"><title>{}</title>",
            if line.is_other { " other" } else { "" },
            escape::attr(&line.name),
            escape::text(&line.name)
        );
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |run: &mut Vec<(f64, f64)>, out: &mut String| {
            if run.len() > 1 {
                out.push_str("<polyline fill=\"none\" points=\"");
                for (k, (px, py)) in run.iter().enumerate() {
                    if k > 0 {
                        out.push(' ');
                    }
                    let _ = write!(out, "{px:.1},{py:.1}");
                }
                out.push_str("\"/>");
            }
            if run.len() == 1 || dots {
                for (px, py) in run.iter() {
                    let _ = write!(out, "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2.5\"/>");
                }
            }
            run.clear();
        };
        for (k, v) in line.values.iter().enumerate() {
            match (v, times.get(k)) {
                (Some(v), Some(t)) => run.push((x(*t), y(*v))),
                _ => flush(&mut run, &mut out),
            }
        }
        flush(&mut run, &mut out);
        out.push_str("</g>");
    }
    if times.is_empty() {
        let _ = write!(
            out,
            "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\">no figures recorded</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ticks_are_round_in_a_binary_unit_and_cover_the_maximum() {
        let labels = |max: u64| {
            let (unit, ticks) = byte_ticks(max);
            ticks
                .iter()
                .map(|v| byte_label(*v, unit))
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(3 << 20), ["0", "1 MiB", "2 MiB", "3 MiB"]);
        assert_eq!(
            labels(700 << 10),
            ["0", "200 KiB", "400 KiB", "600 KiB", "800 KiB"]
        );
        // The axis reads in the unit of its top tick.
        assert_eq!(
            labels(1_300_000),
            ["0", "0.25 MiB", "0.5 MiB", "0.75 MiB", "1 MiB", "1.25 MiB"]
        );
        assert_eq!(
            labels(1000 << 10),
            ["0", "200 KiB", "400 KiB", "600 KiB", "800 KiB", "1000 KiB"]
        );
        assert_eq!(labels(37), ["0", "10 B", "20 B", "30 B", "40 B"]);
        assert_eq!(labels(0), ["0", "1 B"]);
        assert_eq!(
            labels(5 << 30),
            ["0", "1 GiB", "2 GiB", "3 GiB", "4 GiB", "5 GiB"]
        );
        for max in [1u64, 999, 4096, 10 << 30, u64::MAX >> 4] {
            let (unit, ticks) = byte_ticks(max);
            assert!(ticks.len() <= 8 && ticks.len() >= 2, "{max}: {ticks:?}");
            assert!(*ticks.last().unwrap() >= max, "{max}");
            assert!(unit.is_power_of_two());
        }
    }

    #[test]
    fn time_ticks_are_round_and_labelled_in_readable_units() {
        assert_eq!(time_ticks(4_000), [0, 1000, 2000, 3000, 4000]);
        let t = time_ticks(60 * 60 * 1000);
        assert_eq!(t.len(), 7, "every 10 min: {t:?}");
        let labels: Vec<String> = t.iter().map(|t| elapsed_label(*t)).collect();
        assert_eq!(labels[..3], ["0", "10 min", "20 min"]);
        assert_eq!(labels[6], "1 h");
        assert_eq!(elapsed_label(90_000), "1 min 30 s");
        assert_eq!(elapsed_label(4_500_000), "1 h 15 min");
        assert_eq!(elapsed_label(250), "250 ms");
        assert_eq!(elapsed_label(3 * 86_400_000), "3 d");
        assert_eq!(time_ticks(0), [0]);
        assert_eq!(time_ticks(812), [0, 200, 400, 600, 800]);
        assert_eq!(elapsed_label(600), "600 ms");
        assert_eq!(elapsed_label(1500), "1.5 s");
        assert!(time_ticks(100 * 86_400_000).len() <= 16);
    }

    fn line(name: &str, values: &[Option<i64>]) -> Line {
        Line {
            name: name.into(),
            values: values.to_vec(),
            is_other: name == "other",
        }
    }

    #[test]
    fn a_chart_breaks_its_lines_where_a_name_was_not_kept_and_escapes_names() {
        let lines = [
            line("a<b>&\"c\"", &[Some(10), Some(20), None, Some(40)]),
            line("other", &[Some(1), Some(1), Some(1), Some(1)]),
        ];
        let s = svg("tasks", &lines, &[0, 1000, 2000, 3000], Some(0));
        assert!(s.starts_with("<svg class=\"chart\" data-chart=\"tasks\""));
        assert!(
            s.contains("data-name=\"a&lt;b&gt;&amp;&quot;c&quot;\""),
            "{s}"
        );
        assert!(!s.contains("a<b>"));
        // Line `a`: one polyline over its first two points, a dot for the lone last one.
        let a = &s[s.find("data-name=\"a&lt;").unwrap()..];
        let a = &a[..a.find("</g>").unwrap()];
        assert_eq!(a.matches("<polyline").count(), 1);
        assert_eq!(a.matches("<circle").count(), 3, "dots with few points");
        assert!(s.contains(&format!("stroke=\"{OTHER_COLOUR}\"")));
        assert!(s.contains(">2 s<") && s.contains(">3 s<"), "time ticks");
        assert!(s.contains(">40 B<"), "the top tick covers the maximum: {s}");
        // No points: an empty chart says so.
        assert!(svg("spans", &[], &[], None).contains("no figures recorded"));
    }
}
