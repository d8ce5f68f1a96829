//! The `ffi_custody` example, run from its own code: the frame C kept past the `encoder`
//! task's end is the one `ffi.custody` finding, with the frame's danger surface, shown in the
//! report's findings section and highlighted in the DOT output.

#[path = "../examples/ffi_custody.rs"]
#[allow(dead_code)]
mod ffi_custody;

use ffi_custody::{finish, run, setup, surface_line, CHUNKS, FRAME_SURFACE};
use heapspan::export::names as n;
use heapspan::findings::{EvidenceValue, Kind, Severity};

#[test]
fn the_example_finds_the_frame_c_kept_past_its_task() {
    let guard = setup();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kept = run(&rt);
    let findings = guard.cut_window();
    let custody: Vec<_> = findings
        .iter()
        .filter(|f| f.kind == Kind::FfiCustody)
        .collect();
    assert_eq!(custody.len(), 1, "{custody:#?}");
    let f = custody[0];
    let ev = |k: &str| {
        f.evidence
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        ev(n::FINDING_CUSTODY_CASE),
        Some(EvidenceValue::Text("not_reclaimed".into()))
    );
    assert_eq!(
        ev(n::FINDING_CUSTODY_UNTIL),
        Some(EvidenceValue::Text("task_end".into()))
    );
    assert_eq!(
        ev(n::FINDING_BOUNDARY),
        Some(EvidenceValue::Text("keeper_take".into()))
    );
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.task_name.as_deref(), Some("encoder"));
    assert_eq!(f.bytes, FRAME_SURFACE);
    assert_eq!(f.allocations, CHUNKS as u64 + 1);

    let section = heapspan::export::report::render_findings(&findings);
    assert!(
        section.contains("ffi.custody") && section.contains("keeper_take"),
        "{section}"
    );
    let line = surface_line(&guard, f);
    assert!(
        line.starts_with(&format!(
            "// danger surface of 1 root(s): {} nodes, ",
            CHUNKS + 1
        )),
        "{line}"
    );
    finish(kept);
}
