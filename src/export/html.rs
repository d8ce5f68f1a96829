//! The HTML view: one self-contained page (no script, no network, no external font or
//! stylesheet: CSS and SVG inline, so it renders fully offline) that shows, at a glance, what
//! heapspan saw in a run:
//!
//! - a header: the service, when the run started and ended, its windows, the process's
//!   figures at the end (live, peak, allocated, freed, allocations), heapspan's own memory and
//!   what it dropped, by reason;
//! - live bytes over time **per task name** and **per span name**: line charts of the
//!   [`CHART_SERIES`] names with the highest peak (the rest added up as `other`), with byte
//!   (KiB, MiB, …) and time axes, and a table of each line's live bytes at the end and peak;
//! - **the findings** with all their evidence (kind, severity, score, confidence, verdict,
//!   bytes, holder, the summary, every evidence attribute), highest score first, coloured by
//!   severity;
//! - for each finding with roots, **its danger surface**: the roots (highlighted) and what
//!   they own (their ownership closure, the surface the DOT output highlights), at most
//!   [`GRAPH_NODES`] nodes ("+N more" beyond), laid out in columns by breadth-first depth from
//!   the roots, each node with its size, task, span and code location when known, each edge
//!   with its kind and confidence.
//!
//! # Two ways in, one page
//!
//! - **At the end of a run**: with [`Builder::html_report`](crate::Builder::html_report) (or
//!   `HEAPSPAN_HTML_REPORT`; default off), heapspan keeps a bounded history of its windows and
//!   writes the page when its [`Guard`](crate::Guard) is dropped (after the last window).
//!   Needs no collector and no OTLP file. The history is kept on the window stage's thread,
//!   never on the allocation path: per window, the live bytes of the
//!   [`SERIES_NAMES_KEPT`] largest task names and span names (the rest added up), for the last
//!   [`HISTORY_WINDOWS`] windows (an hour at the default 10-second window; about 1 MiB with
//!   names of 40 characters, counted in heapspan's own memory); the last window's findings at or above the reporting score (at most
//!   [`MAX_FINDINGS`]), and the surfaces of the first [`FINDING_GRAPHS`] of them in the latest
//!   window that had a graph (the live index on:
//!   [`Builder::live_index`](crate::Builder::live_index)). A page that cannot be written is
//!   reported on stderr; the guard waits for the window stage's last record at most until its
//!   shutdown timeout. A process that exits without dropping its guard writes no page.
//! - **From an OTLP JSON file** heapspan wrote ([`ExportConfig::file`](super::ExportConfig::file),
//!   `HEAPSPAN_OTLP_FILE`): [`render_otlp_file`] (or `cargo run --example html_report -- <file>
//!   <page>`). The live-bytes metrics give the charts (every export, spread to at most
//!   [`HISTORY_WINDOWS`] points over the run), the `heapspan.process.window` spans the
//!   header, the `heapspan.finding` spans every finding reported during the run (the latest
//!   figures of each), and the `heapspan.edge` events the surfaces: the walk from a finding's
//!   roots ([`names::FINDING_ROOTS`](super::names::FINDING_ROOTS)) over the edges of the
//!   window it was found in (else the nearest window with edges at its roots). The file holds
//!   each task's top edges by bytes, not the graph, so a surface drawn from it may be partial.
//!
//! Both build the same view model; one function draws it. Every name on the page (task and
//! span names are the application's input) is escaped.

mod chart;
mod escape;
mod model;
mod otlp;
mod render;
pub(crate) mod run;
mod surface;

use std::path::Path;

use crate::error::{Error, Result};

/// Windows of history the end-of-run page keeps (the last ones).
pub const HISTORY_WINDOWS: usize = 360;
/// Task names and span names whose live bytes each window keeps (the largest; the rest are
/// added up).
pub const SERIES_NAMES_KEPT: usize = 20;
/// Lines a chart draws (the names with the highest peak), besides `other`.
pub const CHART_SERIES: usize = 10;
/// Nodes of a finding's danger surface drawn at most.
pub const GRAPH_NODES: usize = 50;
/// Edges of a finding's danger surface drawn at most (the most bytes first).
pub const GRAPH_EDGES: usize = 150;
/// Findings shown at most (the highest scores).
pub const MAX_FINDINGS: usize = 100;
/// Findings whose danger surface the end-of-run page draws at most (the highest scores).
pub const FINDING_GRAPHS: usize = 20;

/// Reads the OTLP JSON file heapspan wrote at `input` (one request per line, as
/// [`ExportConfig::file`](super::ExportConfig::file) writes it) and writes its HTML view to
/// `output` (directories created as needed).
///
/// Fails with [`Error::HtmlReport`] when `input` cannot be read or holds no OTLP JSON line,
/// or when `output` cannot be written. Lines that do not parse (a run killed mid-line) are
/// skipped and counted on the page.
///
/// ```
/// use std::io::Write;
///
/// let dir = std::env::temp_dir().join(format!("heapspan-html-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let input = dir.join("run.jsonl");
/// // One window of a run, as heapspan's file sink writes it.
/// let line = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"heapspan.process.window","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000010000000000","attributes":[{"key":"heapspan.memory.live","value":{"intValue":"4096"}}]}]}]}]}"#;
/// writeln!(std::fs::File::create(&input).unwrap(), "{line}").unwrap();
///
/// let page = dir.join("report.html");
/// heapspan::export::html::render_otlp_file(&input, &page)?;
/// let html = std::fs::read_to_string(&page).unwrap();
/// assert!(html.contains("<span id=\"service\">checkout</span>"));
/// assert!(html.contains("<dd data-fact=\"live\" title=\"4096 bytes\">4.0 KiB</dd>"));
///
/// // A file that is not heapspan's says so.
/// std::fs::write(&input, "hello\n").unwrap();
/// let err = heapspan::export::html::render_otlp_file(&input, &page).unwrap_err();
/// assert!(err.to_string().contains("no OTLP JSON line in it"), "{err}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), heapspan::Error>(())
/// ```
pub fn render_otlp_file(input: impl AsRef<Path>, output: impl AsRef<Path>) -> Result<()> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let view = otlp::read(input)?;
    run::write_page(output, &render::page(&view)).map_err(|e| Error::HtmlReport {
        what: "write",
        path: output.to_owned(),
        detail: e.to_string(),
    })
}
