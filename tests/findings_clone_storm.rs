//! `clone.storm`: one line of code copies the same 4 KiB buffer 200 times in a window, in the
//! `fanout` task under a `broadcast` span, and keeps the copies. The finding names the line
//! (sites are captured), the task and the span, and counts the copies and their bytes.
//!
//! Beside it, the `varied` task makes 200 buffers of the same size with different contents,
//! and the `zeroed` task 200 zeroed ones (default-like contents look alike without being
//! copies): neither is a storm.

mod common;

use std::sync::{Mutex, OnceLock};

use heapspan::findings::{Finding, Kind, Severity};
use tokio::sync::oneshot;
use tracing::info_span;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const COPIES: usize = 200;
const SIZE: usize = 4096;

/// The line of the clone (checked against the finding's location).
static CLONE_LINE: Mutex<u32> = Mutex::new(0);

fn buffer(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

use common::evidence_int as evidence;

/// A task named `name` that fills a `Vec` with `COPIES` buffers from `make` and keeps them until
/// told to stop.
fn keeper(
    name: &'static str,
    make: impl Fn(usize) -> Vec<u8> + Send + 'static,
    ready: oneshot::Sender<()>,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<usize> {
    heapspan::spawn(name, async move {
        let kept: Vec<Vec<u8>> = (0..COPIES).map(&make).collect();
        ready.send(()).unwrap();
        let _ = stop.await;
        kept.len()
    })
}

/// What the scenario left: the window's findings and the key of the `fanout` task.
struct Planted {
    findings: Vec<Finding>,
    fanout: heapspan::TaskKey,
}

/// Runs the scenario once for the binary's tests.
fn planted() -> &'static Planted {
    static PLANTED: OnceLock<Planted> = OnceLock::new();
    PLANTED.get_or_init(plant)
}

fn plant() -> Planted {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default()
            .live_index(heapspan::IndexMode::Full)
            .capture_sites(true),
    );
    let rt = common::runtime(2);

    let (stops, handles) = rt.block_on(async {
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let fanout = heapspan::spawn("fanout", async move {
            let copies = info_span!("broadcast").in_scope(|| {
                let original = buffer(SIZE, 1);
                let mut copies = Vec::with_capacity(COPIES);
                for _ in 0..COPIES {
                    let (copy, line) = (original.clone(), line!());
                    *CLONE_LINE.lock().unwrap() = line;
                    copies.push(copy);
                }
                copies
            });
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
            copies.len()
        });
        let mut stops = vec![stop];
        let mut handles = vec![fanout];
        let mut readies = vec![ready];
        for (name, make) in [
            (
                "varied",
                Box::new(|i: usize| buffer(SIZE, i as u8)) as Box<dyn Fn(usize) -> Vec<u8> + Send>,
            ),
            ("zeroed", Box::new(|_| vec![0u8; SIZE])),
        ] {
            let (ready_tx, ready) = oneshot::channel();
            let (stop, stop_rx) = oneshot::channel::<()>();
            handles.push(keeper(name, make, ready_tx, stop_rx));
            stops.push(stop);
            readies.push(ready);
        }
        for r in readies {
            r.await.unwrap();
        }
        (stops, handles)
    });

    let findings = guard.cut_window();
    rt.block_on(async {
        for s in stops {
            s.send(()).unwrap();
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), COPIES);
        }
    });
    let fanout = guard
        .snapshot()
        .tasks
        .iter()
        .find(|t| t.name.as_deref() == Some("fanout"))
        .expect("the fanout task")
        .key;
    // heapspan stays on for the process (a global allocator's state); the guard lives on.
    std::mem::forget(guard);
    Planted { findings, fanout }
}

fn storm() -> &'static Finding {
    let storms: Vec<&Finding> = planted()
        .findings
        .iter()
        .filter(|f| f.kind == Kind::CloneStorm)
        .collect();
    assert_eq!(storms.len(), 1, "one storm, the fanout's: {storms:#?}");
    storms[0]
}

#[test]
fn many_copies_from_one_line_are_a_clone_storm() {
    let f = storm();
    assert_eq!(f.task_name.as_deref(), Some("fanout"));
    assert_eq!(
        f.tasks,
        vec![planted().fanout],
        "the task that made the copies"
    );
    assert_eq!(
        f.span_name.as_deref(),
        Some(format!("{}::broadcast", module_path!()).as_str()),
        "the span as `target::name`, as every finding names spans"
    );
    assert_eq!(f.severity, Severity::Low, "{}", f.summary);
    assert!(f.score >= 0.5, "reported: {}", f.score);
    // Copies: the graph links each copy to the earliest block of the same contents and size
    // made within its clone window (100 ms), here the original: all 200. A copy made past the
    // window (a starved thread on a loaded machine) starts a chain of its own and is not
    // counted, so 1 % tolerance (2 copies); the bytes follow the copies exactly.
    let copies = evidence(f, heapspan::export::names::FINDING_CLONES);
    assert!(
        (COPIES as i64 - 2..=COPIES as i64).contains(&copies),
        "{copies} copies of {COPIES}: {}",
        f.summary
    );
    assert_eq!(f.allocations, copies as u64);
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_CLONE_SIZE),
        SIZE as i64
    );
    let planted = (COPIES * SIZE) as u64;
    assert!(
        f.bytes <= planted && f.bytes.abs_diff(planted) <= planted / 100,
        "{} B duplicated, planted {planted} B",
        f.bytes
    );
    assert_eq!(f.bytes, copies as u64 * SIZE as u64);
    assert!(!f.roots.is_empty());
    assert!(f.location.is_some(), "a code location (sites are on)");
}

/// The storm's location is the line that clones (`Vec::clone` allocates in
/// `<T as alloc::slice::hack::ConvertVec>::to_vec`, which the site symbolizer skips as the
/// allocation API's own frame).
#[test]
fn the_storm_names_the_line_that_clones() {
    let f = storm();
    let clone_line = *CLONE_LINE.lock().unwrap();
    let loc = f.location.as_ref().expect("a code location (sites are on)");
    assert!(
        loc.file.ends_with("findings_clone_storm.rs") && loc.line == clone_line,
        "the clone's line ({clone_line}): {loc:?}"
    );
}
