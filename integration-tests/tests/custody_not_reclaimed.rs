//! `ffi.custody` `not_reclaimed`, planted through the C library `keeper` (which keeps the
//! pointers it is given in static memory), with the live index on:
//!
//! - the `ffi_worker` task hands the buffer of a `Vec<Box<[u8; 1000]>>` of 5 to C until its
//!   own end, and ends with C still holding it: found at the task's end, its danger surface the
//!   buffer and its five boxes (5 × 8 + 5 × 1000 bytes, exact: full index, weight 1);
//! - the main thread, in the span `hand_over`, hands one of 3 boxes with a deadline that has
//!   passed by the next window: found at the deadline (3 × 8 + 3 × 1000 bytes);
//! - a pointer reclaimed before its deadline, and one released by C before its task's end,
//!   are not found.
//!
//! The window's DOT output and the HTML view highlight both surfaces, and the findings are in
//! the OTLP JSON file with their boundary.

#[path = "custody_common/mod.rs"]
mod custody_common;

use std::time::Duration;

use custody_common::*;
use heapspan::custody;
use heapspan::export::{names as n, ExportConfig};
use heapspan::findings::{Severity, Verdict};
use heapspan_integration_tests::keeper::*;
use heapspan_integration_tests::{file_spans, scratch};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const WORKER_BOXES: usize = 5;
const DEADLINE_BOXES: usize = 3;

#[test]
fn pointers_c_keeps_past_their_terms_are_found_with_their_danger_surface() {
    let dir = scratch("custody_not_reclaimed");
    let file = dir.join("heapspan.otlp.jsonl");
    let html = dir.join("heapspan-report.html");
    let guard = start(
        heapspan::Builder::default()
            .live_index(heapspan::IndexMode::Full)
            .html_report(&html),
        ExportConfig::default().file(&file).graph_dot_dir(&dir),
    );
    let rt = runtime();

    // Until the task's end, which comes with C still holding it.
    let worker = rt.block_on(async {
        heapspan::spawn("ffi_worker", async {
            let b = Boxes::new(WORKER_BOXES, 0xA5);
            // SAFETY: the buffer of a vector of capacity `n`: a live block of `n` boxes.
            let p = unsafe { custody::handover(b.ptr, b.n, "keeper") }.until_task_end();
            assert!(p.is_tracked() && p.is_guarded());
            // SAFETY: C keeps the pointer; the block outlives its use there (freed at the end).
            assert_eq!(unsafe { keeper_take(b.ptr.cast(), b.n * 8) }, 0);
            b.addr()
        })
        .await
        .unwrap()
    });

    // With a deadline that has passed by the next window, in a span of the main thread.
    let late = tracing::info_span!("hand_over").in_scope(|| {
        let b = Boxes::new(DEADLINE_BOXES, 0x5A);
        // SAFETY: as above.
        let p = unsafe { custody::handover(b.ptr, b.n, "keeper") }.deadline(Duration::ZERO);
        assert!(p.is_guarded());
        // SAFETY: as above.
        assert_eq!(unsafe { keeper_take(b.ptr.cast(), b.n * 8) }, 0);
        b.addr()
    });

    // In time: reclaimed before its deadline, and released by C before its task ended.
    let in_time = Boxes::new(2, 0x11);
    // SAFETY: as above.
    let _ = unsafe { custody::handover(in_time.ptr, in_time.n, "keeper") }
        .deadline(Duration::from_secs(3600));
    // SAFETY: as above; C gives back the pointer it kept last, this one.
    unsafe {
        assert_eq!(keeper_take(in_time.ptr.cast(), in_time.n * 8), 0);
        assert_eq!(keeper_give_back(), in_time.ptr.cast());
    }
    custody::reclaim(in_time.ptr);
    // SAFETY: reclaimed: Rust owns it again.
    unsafe { Boxes::free(in_time.addr(), in_time.n) };
    rt.block_on(async {
        heapspan::spawn("ffi_consumer", async {
            let bytes = Box::into_raw(Box::new([3u8; 64]));
            // SAFETY: a live block holding one `[u8; 64]`.
            let _ = unsafe { custody::handover(bytes, 1, "keeper") }.until_task_end();
            // SAFETY: C reads the 64 bytes and forgets the pointer.
            unsafe {
                assert_eq!(keeper_take(bytes.cast(), 64), 0);
                assert_eq!(keeper_consume(), 3 * 64);
            }
            custody::release(bytes);
            // SAFETY: released: C holds it no more.
            drop(unsafe { Box::from_raw(bytes) });
        })
        .await
        .unwrap()
    });

    let fs = custody(&guard.cut_window());
    assert_eq!(
        fs.len(),
        2,
        "the two kept pointers, nothing in time: {fs:#?}"
    );
    let at_end = fs
        .iter()
        .find(|f| text(f, n::FINDING_CUSTODY_UNTIL) == "task_end")
        .expect("the task-end pointer");
    let at_deadline = fs
        .iter()
        .find(|f| text(f, n::FINDING_CUSTODY_UNTIL) == "deadline")
        .expect("the deadline pointer");
    for (f, boxes) in [(at_end, WORKER_BOXES), (at_deadline, DEADLINE_BOXES)] {
        assert_eq!(text(f, n::FINDING_CUSTODY_CASE), "not_reclaimed");
        assert_eq!(text(f, n::FINDING_BOUNDARY), "keeper");
        assert_eq!(
            (f.severity, f.verdict),
            (Severity::Medium, Verdict::Confirmed)
        );
        assert_eq!(
            f.bytes,
            Boxes::surface(boxes),
            "the buffer and its boxes: {f:#?}"
        );
        assert_eq!(f.allocations, boxes as u64 + 1);
        assert_eq!(f.roots.len(), 1, "the handed-over buffer");
        assert!(f.from_graph);
        assert_eq!(int(f, n::FINDING_CUSTODY_POINTERS), 1);
        let loc = f.location.as_ref().expect("the handover's call site");
        assert!(loc.file.ends_with("custody_not_reclaimed.rs"), "{loc:?}");
    }
    assert_eq!(at_end.task_name.as_deref(), Some("ffi_worker"));
    assert_eq!(at_end.tasks.len(), 1);
    assert!(
        at_end.summary.contains("when task `ffi_worker` ended"),
        "{}",
        at_end.summary
    );
    assert_eq!(at_deadline.task_name, None, "handed over outside any task");
    assert_eq!(
        at_deadline.span_name.as_deref(),
        Some("custody_not_reclaimed::hand_over")
    );

    // The next window finds them again (kept for the run), measured as they were.
    let again = custody(&guard.cut_window());
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|f| f.windows == 2));
    drop(guard);

    // The DOT of every window highlights both surfaces: 2 roots, 5 + 1 and 3 + 1 nodes.
    let dots: Vec<String> = std::fs::read_dir(&dir)
        .expect("the DOT directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dot"))
        .map(|p| std::fs::read_to_string(p).expect("a DOT file"))
        .collect();
    assert!(dots.len() >= 2, "a DOT file per window: {}", dots.len());
    for dot in &dots {
        assert!(
            dot.contains("// danger surface of 2 root(s): 10 nodes"),
            "{}",
            dot.lines().take(3).collect::<Vec<_>>().join("\n")
        );
    }
    // The HTML view shows both findings, each with its surface drawn: the buffer (the root)
    // and its boxes, 5 + 1 and 3 + 1 nodes.
    let page = std::fs::read_to_string(&html).expect("the HTML view");
    assert_eq!(
        page.matches("data-kind=\"ffi.custody\"").count(),
        2,
        "both findings on the page"
    );
    for boxes in [WORKER_BOXES, DEADLINE_BOXES] {
        let nodes = format!("data-nodes=\"{}\"", boxes + 1);
        assert!(
            page.split("<svg class=\"surface\"")
                .skip(1)
                .any(|svg| svg.split('>').next().is_some_and(|t| t.contains(&nodes))),
            "a surface of {} nodes on the page",
            boxes + 1
        );
    }
    assert!(page.contains("keeper"), "the boundary on the page");
    // The OTLP JSON file has them, with the boundary.
    let spans = file_spans(&file);
    let exported: Vec<_> = spans
        .iter()
        .filter(|s| s.name == n::FINDING_SPAN && s.attr(n::FINDING_KIND) == Some("ffi.custody"))
        .collect();
    assert_eq!(exported.len(), 2, "each sent once: {exported:#?}");
    for s in &exported {
        assert_eq!(s.attr(n::FINDING_BOUNDARY), Some("keeper"));
        assert_eq!(s.attr(n::FINDING_CUSTODY_CASE), Some("not_reclaimed"));
    }
    let mut bytes: Vec<i64> = exported
        .iter()
        .map(|s| s.int(n::FINDING_BYTES).expect("bytes"))
        .collect();
    bytes.sort_unstable();
    assert_eq!(
        bytes,
        vec![
            Boxes::surface(DEADLINE_BOXES) as i64,
            Boxes::surface(WORKER_BOXES) as i64
        ]
    );

    // C gives them back (last kept first); Rust frees them.
    for (addr, boxes) in [(late, DEADLINE_BOXES), (worker, WORKER_BOXES)] {
        // SAFETY: C gives back the pointer it kept last.
        let back = unsafe { keeper_give_back() } as usize;
        assert_eq!(back, addr);
        custody::reclaim(back as *const u8);
        // SAFETY: reclaimed: Rust owns it again.
        unsafe { Boxes::free(back, boxes) };
    }
    // SAFETY: a plain query.
    assert_eq!(unsafe { keeper_held() }, 0);
}
