//! Renders the HTML view of a run from the OTLP JSON file heapspan wrote
//! (`ExportConfig::file`, `HEAPSPAN_OTLP_FILE`): live bytes over time per task and span name,
//! the findings with their evidence, and the relation graph around each finding's roots, in
//! one self-contained page (no network needed to open it).
//!
//! ```text
//! cargo run --example html_report -- heapspan.otlp.jsonl heapspan-report.html
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        eprintln!("usage: html_report <heapspan OTLP JSON file> <page.html>");
        return ExitCode::from(2);
    };
    match heapspan::export::html::render_otlp_file(input, output) {
        Ok(()) => {
            println!("wrote {output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
