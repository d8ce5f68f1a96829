//! `span.residue_growth`: every `handle_request` span leaves a 1 KiB audit record in a global
//! `Vec` (a per-request leak), 50 requests a window, 12 windows cut by the test. The finding
//! names the span, its residue (what closed instances left, the whole leak so far), its growth
//! over the K windows, the per-request figure, and, with sites captured, the code line that
//! allocates the leak.
//!
//! Each request also looks a key up in a cache (its own `lookup` span) that fills during the
//! first windows and then stays at 40 keys: memory that outlives the requests too, but that
//! stops growing (warm-up, not a leak), and gets no finding.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use heapspan::findings::{EvidenceValue, Finding, FindingsConfig, Holder, Kind, Severity};
use tracing::{info_span, Instrument};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const WINDOWS: usize = 12;
const REQUESTS_PER_WINDOW: usize = 50;
const LEAK: usize = 1024;
const CACHE_KEYS: usize = 40;
/// The growth test's K (the default), after the default 3 warm-up windows: a series is
/// judged from its `3 + K + 1`-th window on.
const K: usize = heapspan::findings::DEFAULT_GROWTH_WINDOWS;
const FIRST_FINDING_WINDOW: usize = heapspan::findings::DEFAULT_WARMUP_WINDOWS + K + 1;

/// Audit records nobody ever removes: the planted leak. Its storage is reserved at start-up
/// for every request, so the records are the only bytes the requests leave.
static AUDIT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The line of `handle`'s leaking allocation (checked against the finding's location).
static LEAK_LINE: Mutex<u32> = Mutex::new(0);

async fn handle(id: usize, cache: Arc<Mutex<HashMap<usize, Vec<u8>>>>) {
    // Temporary work, freed before the span closes.
    let body: Vec<u8> = (0..2048).map(|i| (i + id) as u8).collect();
    let fields: Vec<String> = body.chunks(128).map(|c| format!("{:?}", &c[..4])).collect();
    tokio::task::yield_now().await;
    info_span!("lookup").in_scope(|| {
        cache
            .lock()
            .unwrap()
            .entry(id % CACHE_KEYS)
            .or_insert_with(|| vec![7; 512]);
    });
    // The leak: 1 KiB per request, kept for ever. (Made with `with_capacity`: heapspan's
    // site symbolizer takes the frames of `vec![x; n]` for `u8`,
    // `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem`, for the caller's.)
    let (mut record, line) = (Vec::with_capacity(LEAK), line!());
    record.resize(LEAK, (id % 251) as u8 + 1);
    *LEAK_LINE.lock().unwrap() = line;
    AUDIT.lock().unwrap().push(record);
    drop((body, fields));
}

fn growth_bytes(f: &Finding) -> i64 {
    f.evidence
        .iter()
        .find_map(|(k, v)| match v {
            EvidenceValue::Int(b) if *k == heapspan::export::names::FINDING_GROWTH_BYTES => {
                Some(*b)
            }
            _ => None,
        })
        .expect("a growth figure")
}

use common::evidence_int;

#[test]
fn a_per_request_leak_is_a_growing_span_residue() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default()
            .live_index(heapspan::IndexMode::Full)
            .capture_sites(true)
            .findings(FindingsConfig::default()),
    );
    AUDIT
        .lock()
        .unwrap()
        .reserve_exact(WINDOWS * REQUESTS_PER_WINDOW);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let span_label = format!("{}::handle_request", module_path!());
    let lookup_label = format!("{}::lookup", module_path!());
    let cache = Arc::new(Mutex::new(HashMap::new()));
    let mut found = Vec::new();
    for w in 1..=WINDOWS {
        rt.block_on(async {
            let handles: Vec<_> = (0..REQUESTS_PER_WINDOW)
                .map(|i| {
                    let id = (w - 1) * REQUESTS_PER_WINDOW + i;
                    heapspan::spawn(
                        "request",
                        handle(id, cache.clone()).instrument(info_span!("handle_request", id)),
                    )
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
        let findings = guard.cut_window();
        assert!(
            !findings.iter().any(|f| f.kind == Kind::SpanResidueGrowth
                && f.span_name.as_deref() == Some(lookup_label.as_str())),
            "window {w}: the cache plateaued: no growth finding for it"
        );
        let residue: Vec<Finding> = findings
            .into_iter()
            .filter(|f| {
                f.kind == Kind::SpanResidueGrowth
                    && f.span_name.as_deref() == Some(span_label.as_str())
            })
            .collect();
        assert!(residue.len() <= 1, "one finding per span name");
        if w < FIRST_FINDING_WINDOW {
            assert!(
                residue.is_empty(),
                "window {w}: found before warm-up and K windows: {residue:?}"
            );
            continue;
        }
        let f = residue
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("window {w}: no residue growth for {span_label}"));
        found.push((w, f));
    }
    assert_eq!(found.len(), WINDOWS + 1 - FIRST_FINDING_WINDOW);
    let leak_line = *LEAK_LINE.lock().unwrap();
    for (w, f) in &found {
        let leaked = (w * REQUESTS_PER_WINDOW * LEAK) as u64;
        assert_eq!(f.severity, Severity::Medium, "{}", f.summary);
        assert!(f.score >= 0.5, "reported: {}", f.score);
        assert_eq!(f.task_name, None);
        // Bytes: the residue is every record leaked so far, plus what tracing-subscriber's
        // registry allocated for good while a `handle_request` was current (the slab pages
        // and shards that store the nested `lookup` spans: about 11 KiB, made in the first
        // windows, then reused). So at least the leak, and at most 3 % above it (2.2 % at
        // window 10, less after).
        assert!(
            f.bytes >= leaked && f.bytes <= leaked + leaked * 3 / 100,
            "window {w}: residue {} B, leaked {leaked} B (+3 % at most): {}",
            f.bytes,
            f.summary
        );
        // Growth over the K windows: K × 50 requests × 1 KiB, within 1 % (a slab page may
        // come in those windows).
        let grown = (K * REQUESTS_PER_WINDOW * LEAK) as i64;
        let g = growth_bytes(f);
        assert!(
            g.abs_diff(grown) as i64 <= grown / 100,
            "window {w}: growth {g} B, planted {grown} B"
        );
        assert_eq!(
            evidence_int(f, heapspan::export::names::FINDING_INSTANCES),
            (K * REQUESTS_PER_WINDOW) as i64,
            "instances closed over the K windows"
        );
        let per = evidence_int(f, heapspan::export::names::FINDING_PER_INSTANCE_BYTES);
        assert!(
            per.abs_diff(LEAK as i64) <= LEAK as u64 / 100,
            "about 1 KiB per request: {per}"
        );
        // With sites captured: the leak's line, and the leaked records as the holder.
        let loc = f.location.as_ref().expect("a code location");
        assert!(
            loc.file.ends_with("findings_span_residue_growth.rs") && loc.line == leak_line,
            "the leaking line ({leak_line}): {loc:?}"
        );
        match &f.holder {
            Some(Holder::Allocation { bytes, location }) => {
                assert_eq!(*bytes, leaked, "the leak site holds exactly the records");
                assert!(location.is_some());
            }
            h => panic!("holder: {h:?}"),
        }
    }
    assert_eq!(AUDIT.lock().unwrap().len(), WINDOWS * REQUESTS_PER_WINDOW);
}
