//! Invalid frees (issue 13): a program that frees a block twice, frees a pointer of C's
//! `malloc`, frees with the wrong layout, or reallocates a freed block survives, with the live
//! index off and on; the `dealloc.invalid` finding names who allocated the block and who freed
//! it, and reaches the OTLP JSON file. With `HEAPSPAN_ON_INVALID_FREE=abort` the process
//! aborts, after the report is written. Millions of valid frees on several threads produce no
//! report.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::*;

fn run_case(case: &str, index: &str, extra: &[(&str, &str)]) -> (Output, std::path::PathBuf) {
    let dir = scratch(&format!("invalid_free_{case}_{index}"));
    let file = dir.join("otlp.jsonl");
    let mut cmd = app(env!("CARGO_BIN_EXE_invalid_free_app"));
    cmd.env("APP_CASE", case)
        .env("HEAPSPAN_LIVE_INDEX", index)
        .env("HEAPSPAN_OTLP_FILE", &file);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    (run(&mut cmd, Duration::from_secs(120)), file)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `FINDING` lines the app printed.
fn findings(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("FINDING "))
        .map(str::to_owned)
        .collect()
}

/// The `heapspan.finding` spans of kind `dealloc.invalid` in the OTLP file.
fn exported(file: &Path) -> Vec<LoggedSpan> {
    file_spans(file)
        .into_iter()
        .filter(|s| s.name == n::FINDING_SPAN && s.attr(n::FINDING_KIND) == Some("dealloc.invalid"))
        .collect()
}

#[test]
fn a_double_free_is_survived_and_reported_with_the_index_off_and_on() {
    for index in ["off", "full"] {
        let (out, file) = run_case("double_free", index, &[]);
        assert!(out.status.success(), "index {index}: {out:?}");
        assert!(stdout(&out).contains("SURVIVED"), "{out:?}");
        let f = findings(&out);
        assert_eq!(f.len(), 1, "index {index}: {f:?}\n{out:?}");
        let line = &f[0];
        assert!(
            line.starts_with("FINDING dealloc.invalid critical double_free "),
            "{line}"
        );
        assert!(
            line.contains("alloc=victim/invalid_free_app::load"),
            "{line}"
        );
        assert!(
            line.contains("free=second/invalid_free_app::second"),
            "{line}"
        );
        if index == "full" {
            // The ring of recent frees names the first free too.
            assert!(
                line.contains("first=first/invalid_free_app::first"),
                "{line}"
            );
        }
        let spans = exported(&file);
        let s = spans
            .iter()
            .find(|a| a.attr(n::FINDING_INVALID_CASE) == Some("double_free"))
            .unwrap_or_else(|| {
                panic!(
                    "index {index}: no double-free finding span in {}",
                    file.display()
                )
            });
        assert_eq!(s.attr(n::FINDING_SEVERITY), Some("critical"));
        assert_eq!(s.attr(n::FINDING_ALLOC_TASK), Some("victim"));
        assert_eq!(
            s.attr(n::FINDING_ALLOC_SPAN),
            Some("invalid_free_app::load")
        );
        assert_eq!(s.attr(n::FINDING_FREE_TASK), Some("second"));
        assert_eq!(s.attr(n::FINDING_LAYOUT_SIZE), Some("256"));
    }
}

#[test]
fn a_foreign_pointer_a_wrong_layout_and_a_realloc_of_a_freed_block_are_each_reported() {
    for index in ["off", "full"] {
        let (out, _) = run_case("foreign", index, &[]);
        assert!(out.status.success(), "foreign, index {index}: {out:?}");
        let f = findings(&out);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("FINDING dealloc.invalid high unrecognised "),
            "{}",
            f[0]
        );
        assert!(f[0].contains("free=ffi/"), "{}", f[0]);

        let (out, _) = run_case("layout", index, &[]);
        assert!(out.status.success(), "layout, index {index}: {out:?}");
        let f = findings(&out);
        assert_eq!(f.len(), 1, "{f:?}");
        if index == "full" {
            // The live index knows the block: a layout mismatch, with who allocated it.
            assert!(
                f[0].starts_with("FINDING dealloc.invalid high layout_mismatch alloc=victim/"),
                "{}",
                f[0]
            );
        } else {
            assert!(
                f[0].starts_with("FINDING dealloc.invalid high unrecognised "),
                "{}",
                f[0]
            );
        }
        assert!(f[0].contains("free=freer/"), "{}", f[0]);

        let (out, _) = run_case("realloc_freed", index, &[]);
        assert!(
            out.status.success(),
            "realloc_freed, index {index}: {out:?}"
        );
        let f = findings(&out);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("FINDING dealloc.invalid critical double_free alloc=victim/"),
            "{}",
            f[0]
        );
    }
}

#[test]
fn the_abort_setting_aborts_after_the_report_is_written() {
    let (out, file) = run_case(
        "double_free",
        "off",
        &[("HEAPSPAN_ON_INVALID_FREE", "abort")],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(!stdout(&out).contains("SURVIVED"), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("heapspan: invalid free detected; aborting"),
        "{err}"
    );
    assert!(err.contains("critical dealloc.invalid"), "{err}");
    let spans = exported(&file);
    assert!(
        spans
            .iter()
            .any(|a| a.attr(n::FINDING_INVALID_CASE) == Some("double_free")
                && a.attr(n::FINDING_ALLOC_TASK) == Some("victim")),
        "the report reached the file before the abort: {spans:?}"
    );
}

#[test]
fn millions_of_valid_frees_on_several_threads_are_never_reported() {
    for index in ["off", "full"] {
        let (out, _) = run_case(
            "stress",
            index,
            &[("APP_THREADS", "4"), ("APP_ITERS", "250000")],
        );
        assert!(out.status.success(), "index {index}: {out:?}");
        assert!(
            stdout(&out).contains("STRESS blocks_freed_elsewhere=1000000"),
            "{out:?}"
        );
        assert_eq!(findings(&out), Vec::<String>::new(), "index {index}");
    }
}
