//! The hand-off matrix (`alloc.cross_task_free`) as a real program exports it: the metrics
//! `heapspan.task.memory.handed_off` and `heapspan.task.handoffs` per allocating
//! (`tokio.task.name`) × freeing (`heapspan.free.task.name`) task name, read from heapspan's
//! OTLP JSON file after the program ended (cumulative: the last point of each series is its
//! total). The program is `src/bin/handoff_app.rs`; its planted figures are in
//! `src/handoff.rs`.

use std::path::Path;
use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::handoff::{NAMED, PRODUCERS, SELF_FREED, TO_CONSUMER, TO_THREAD};
use heapspan_integration_tests::*;

/// Runs the app in `mode` with its OTLP JSON file in a scratch directory of `name`; the file
/// and the app's stdout.
fn run_app(name: &str, mode: &str, max_cells: usize) -> (std::path::PathBuf, String) {
    let dir = scratch(name);
    let file = dir.join("heapspan.otlp.jsonl");
    let out = run(
        app(env!("CARGO_BIN_EXE_handoff_app"))
            .env("HEAPSPAN_OTLP_FILE", &file)
            .env("APP_MODE", mode)
            .env("APP_MAX_CELLS", max_cells.to_string()),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("DONE"), "{stdout}");
    (file, stdout)
}

/// A cell of the matrix: (allocating, freeing) task name, (bytes, frees).
type Cell = ((String, String), (u64, u64));

/// Per (allocating, freeing) task name: the exported bytes and frees at the last export.
fn cells(file: &Path) -> Vec<Cell> {
    let key = |p: &LoggedPoint| {
        (
            p.attr(n::TOKIO_TASK_NAME).unwrap_or_default().to_owned(),
            p.attr(n::FREE_TASK_NAME).unwrap_or_default().to_owned(),
        )
    };
    let mut out: Vec<Cell> = Vec::new();
    for p in file_totals(file, n::TASK_MEMORY_HANDED_OFF) {
        assert_eq!(p.unit, n::UNIT_BYTES);
        assert_eq!(p.attrs.len(), 2, "{p:?}");
        out.push((key(&p), (p.value as u64, 0)));
    }
    for p in file_totals(file, n::TASK_HANDOFFS) {
        assert_eq!(p.unit, n::UNIT_FREES);
        let k = key(&p);
        match out.iter_mut().find(|(c, _)| *c == k) {
            Some((_, v)) => v.1 = p.value as u64,
            None => out.push((k, (0, p.value as u64))),
        }
    }
    out
}

#[track_caller]
fn cell(cells: &[Cell], from: &str, to: &str) -> Option<(u64, u64)> {
    cells
        .iter()
        .find(|((a, b), _)| a == from && b == to)
        .map(|(_, v)| *v)
}

/// 3 000 producer tasks hand a 3 000-byte buffer each to the consumer task, free a 5 000-byte
/// buffer themselves, and every second one hands a 7 000-byte buffer to a plain thread.
#[test]
fn producer_to_consumer_and_to_no_task_are_exact_and_self_frees_are_in_no_cell() {
    let (file, stdout) = run_app("handoff_matrix_service", "service", 100);
    assert!(
        stdout.contains(&format!(
            "DONE consumer={} thread={}",
            PRODUCERS * TO_CONSUMER,
            PRODUCERS / 2 * TO_THREAD
        )),
        "{stdout}"
    );
    let cells = cells(&file);
    assert_eq!(
        cell(&cells, "producer", "consumer"),
        Some(((PRODUCERS * TO_CONSUMER) as u64, PRODUCERS as u64)),
        "{cells:?}"
    );
    assert_eq!(
        cell(&cells, "producer", n::NO_TASK),
        Some(((PRODUCERS / 2 * TO_THREAD) as u64, (PRODUCERS / 2) as u64)),
        "{cells:?}"
    );
    // The producers' own frees (3 000 × 5 000 bytes) are no hand-off: no cell of the
    // producer's row holds them (tasks are compared by id: a diagonal `producer → producer`
    // cell would be one producer freeing another's block, which the program never does).
    assert_eq!(cell(&cells, "producer", "producer"), None, "{cells:?}");
    // The rest of the producer's row is the runtime's: worker state a producer's poll
    // initialised (a 1 KiB buffer), freed as the runtime shut down, outside the producer.
    // Less than one self-freed buffer: none of the 3 000 is in it.
    let rest_of_row: u64 = cells
        .iter()
        .filter(|((a, b), _)| a == "producer" && b != "consumer" && b != n::NO_TASK)
        .map(|(_, (b, _))| b)
        .sum();
    assert!(
        rest_of_row < SELF_FREED as u64,
        "{rest_of_row} B besides the planted cells: {cells:?}"
    );
    // Nothing overflowed: the dropped series of the reason is there, at zero.
    let dropped = file_totals(&file, n::TRACKER_DROPPED);
    let overflow = dropped
        .iter()
        .find(|p| p.attr(n::DROP_REASON) == Some(n::DROP_REASON_HANDOFF_OVERFLOW))
        .map(|p| p.value);
    assert_eq!(overflow, Some(0.0), "{dropped:?}");
}

/// The matrix the app printed from its last snapshot: `cell <from> -> <to> bytes=… frees=…`.
fn printed(stdout: &str) -> Vec<Cell> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cell ")?;
            let (pair, figures) = rest.split_once(" bytes=")?;
            let (from, to) = pair.split_once(" -> ")?;
            let (bytes, frees) = figures.split_once(" frees=")?;
            Some((
                (from.to_owned(), to.to_owned()),
                (bytes.parse().ok()?, frees.parse().ok()?),
            ))
        })
        .collect()
}

fn totals(cells: &[Cell]) -> (u64, u64) {
    cells
        .iter()
        .fold((0, 0), |(b, f), (_, (cb, cf))| (b + cb, f + cf))
}

/// 300 tasks of a name each hand a buffer to a plain thread: more pairs than the thread's
/// table has cells (64), and than the export's cap (10 cells). Both send the rest to
/// `other → other`; the totals stay exact.
#[test]
fn past_the_cells_and_the_export_cap_the_totals_stay_exact() {
    const CAP: usize = 10;
    const CELLS: usize = 64;
    let (file, stdout) = run_app("handoff_matrix_names", "names", CAP);
    // The thread's table: the first 64 pairs have a cell each, the rest are in the overflow
    // cell, and the overflow is counted; together exactly the planted hand-offs.
    let snap = printed(&stdout);
    let named: Vec<_> = snap
        .iter()
        .filter(|((a, _), _)| a.starts_with('p'))
        .collect();
    assert_eq!(named.len(), CELLS, "{snap:?}");
    for ((_, to), (b, f)) in &named {
        assert_eq!((to.as_str(), *b, *f), (n::NO_TASK, TO_CONSUMER as u64, 1));
    }
    let rest = (NAMED - CELLS) as u64;
    let other = snap
        .iter()
        .find(|((a, b), _)| a == n::OTHER && b == n::OTHER)
        .map(|(_, v)| *v);
    assert_eq!(
        other,
        Some((rest * TO_CONSUMER as u64, rest)),
        "the hand-offs past the thread's cells: {snap:?}"
    );
    let overflow: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("overflow frees="))
        .and_then(|v| v.parse().ok())
        .expect("the app prints the overflow");
    assert_eq!(overflow, rest);

    // The export: at most CAP series of their own (the `other → other` cell may take one:
    // it is the series of everything past the cap too), and `other`; the named ones exactly
    // the snapshot's cells, and the totals the snapshot's.
    let exported = cells(&file);
    assert!(exported.len() <= CAP + 1, "{exported:?}");
    assert!(exported.len() >= CAP, "{exported:?}");
    for (pair, v) in exported.iter().filter(|((a, _), _)| a != n::OTHER) {
        assert_eq!(
            snap.iter().find(|(p, _)| p == pair).map(|(_, s)| s),
            Some(v),
            "{pair:?}"
        );
    }
    assert_eq!(totals(&exported), totals(&snap), "{exported:?}");
    let dropped = file_totals(&file, n::TRACKER_DROPPED);
    let reported = dropped
        .iter()
        .find(|p| p.attr(n::DROP_REASON) == Some(n::DROP_REASON_HANDOFF_OVERFLOW))
        .map(|p| p.value as u64);
    assert_eq!(reported, Some(overflow), "{dropped:?}");
}
