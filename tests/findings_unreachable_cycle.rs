//! `refcount.unreachable_cycle`: reference-counted blocks that keep each other alive after
//! every handle from outside is gone.
//!
//! - The `rc_maker` task builds two `Rc<RefCell<..>>` nodes (64 KiB payload each) that point at
//!   each other in its `link_peers` span, and drops its handles: a 2-member cycle of about
//!   128 KiB, high.
//! - The `left` task makes an `Arc` node (768 KiB payload) and hands it to the `right` task,
//!   which makes its own, links the two into a cycle and drops every handle: a cycle across
//!   two tasks of about 1.5 MiB, above 1 MiB: critical.
//! - The running `keeper` task holds a handle to a third pair of linked `Arc` nodes (128 KiB
//!   each) in a `Vec` of its own: a cycle, but a reachable one, never found.
//!
//! The live index is on (cycles come from the relation graph, counts from the blocks' headers),
//! and a cycle is confirmed over the default two windows.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use heapspan::findings::{Finding, Holder, Kind, Severity, Verdict};
use tokio::sync::oneshot;
use tracing::info_span;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

const RC_PAYLOAD: usize = 64 << 10;
const ARC_PAYLOAD: usize = 768 << 10;
const KEPT_PAYLOAD: usize = 128 << 10;
const WORD: usize = std::mem::size_of::<usize>();

struct RcNode {
    payload: Vec<u8>,
    next: RefCell<Option<Rc<RcNode>>>,
}

struct ArcNode {
    payload: Vec<u8>,
    next: Mutex<Option<Arc<ArcNode>>>,
}

fn buffer(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(11).wrapping_add(seed))
        .collect()
}

fn arc_node(len: usize, seed: u8) -> Arc<ArcNode> {
    Arc::new(ArcNode {
        payload: buffer(len, seed),
        next: Mutex::new(None),
    })
}

use common::evidence_int as evidence;

/// A cycle's bytes: its two blocks (`strong`, `weak`, then the node) and the payloads they own,
/// all exact; 1 % tolerance for the allocator's view of a block's size (none expected).
#[track_caller]
fn assert_cycle(f: &Finding, planted: usize, severity: Severity) {
    let planted = planted as u64;
    assert_eq!(f.severity, severity, "{}", f.summary);
    assert_eq!(f.verdict, Verdict::Confirmed, "{}", f.summary);
    assert!(f.score >= 0.5);
    assert_eq!(f.holder, Some(Holder::Cycle));
    assert!(
        f.bytes.abs_diff(planted) <= planted / 100,
        "{} B, planted {planted} B: {}",
        f.bytes,
        f.summary
    );
    assert_eq!(f.allocations, 2, "two members");
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_CYCLE_MEMBERS),
        2
    );
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_CYCLE_REFCOUNTED),
        2
    );
    assert_eq!(
        evidence(f, heapspan::export::names::FINDING_CYCLE_STRONG),
        2,
        "one strong reference each, from the other"
    );
    assert_eq!(
        f.roots.len(),
        2,
        "the members are the danger surface's roots"
    );
    assert!(f.from_graph);
}

#[test]
fn unreachable_rc_and_arc_cycles_are_found() {
    let guard = common::start_with_manual_windows(
        heapspan::Builder::default().live_index(heapspan::IndexMode::Full),
    );
    let rt = common::runtime(2);

    let (stop_keeper, keeper) = rt.block_on(async {
        heapspan::spawn("rc_maker", async {
            info_span!("link_peers").in_scope(|| {
                let a = Rc::new(RcNode {
                    payload: buffer(RC_PAYLOAD, 1),
                    next: RefCell::new(None),
                });
                let b = Rc::new(RcNode {
                    payload: buffer(RC_PAYLOAD, 2),
                    next: RefCell::new(Some(a.clone())),
                });
                *a.next.borrow_mut() = Some(b.clone());
                a.payload.len() + b.payload.len()
            })
        })
        .await
        .unwrap();

        let (to_right, from_left) = oneshot::channel::<Arc<ArcNode>>();
        let left = heapspan::spawn("left", async move {
            to_right.send(arc_node(ARC_PAYLOAD, 3)).ok().unwrap();
        });
        let right = heapspan::spawn("right", async move {
            let l = from_left.await.unwrap();
            let r = arc_node(l.payload.len(), 4);
            *r.next.lock().unwrap() = Some(l.clone());
            *l.next.lock().unwrap() = Some(r.clone());
        });
        left.await.unwrap();
        right.await.unwrap();

        let (ready_tx, ready) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let keeper = heapspan::spawn("keeper", async move {
            let x = arc_node(KEPT_PAYLOAD, 5);
            let y = arc_node(KEPT_PAYLOAD, 6);
            *x.next.lock().unwrap() = Some(y.clone());
            *y.next.lock().unwrap() = Some(x.clone());
            #[allow(
                clippy::useless_vec,
                reason = "the handle lives in a heap block of the keeper's own"
            )]
            let handles = vec![x];
            drop(y);
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
            // Break the cycle on the way out.
            handles[0].next.lock().unwrap().take();
            handles.len()
        });
        ready.await.unwrap();
        (stop, keeper)
    });

    let cycles = |fs: &[Finding]| -> Vec<Finding> {
        fs.iter()
            .filter(|f| f.kind == Kind::UnreachableCycle)
            .cloned()
            .collect()
    };
    // First window: seen once, not yet confirmed (racing count reads must not make one).
    let first = guard.cut_window();
    assert!(cycles(&first).is_empty(), "{:#?}", cycles(&first));
    // Second window: confirmed.
    let second = cycles(&guard.cut_window());
    assert_eq!(
        second.len(),
        2,
        "the Rc and the Arc cycle, not the kept one: {second:#?}"
    );
    let snap = guard.snapshot();
    let key_of = |name: &str| {
        snap.tasks
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("task {name}"))
            .key
    };
    let node_bytes = |payload: usize, node: usize| 2 * (2 * WORD + node + payload);

    let rc = second
        .iter()
        .find(|f| f.task_name.as_deref() == Some("rc_maker"))
        .expect("the Rc cycle, named after its task");
    assert_cycle(
        rc,
        node_bytes(RC_PAYLOAD, std::mem::size_of::<RcNode>()),
        Severity::High,
    );
    assert_eq!(rc.tasks, vec![key_of("rc_maker")]);
    assert_eq!(
        rc.span_name.as_deref(),
        Some(format!("{}::link_peers", module_path!()).as_str()),
        "the span its largest member was allocated in, as `target::name`"
    );

    let arc = second
        .iter()
        .find(|f| f.task_name.as_deref() != Some("rc_maker"))
        .expect("the Arc cycle");
    assert!(
        matches!(arc.task_name.as_deref(), Some("left" | "right")),
        "named after one of its tasks (its members are the same size): {:?}",
        arc.task_name
    );
    assert_cycle(
        arc,
        node_bytes(ARC_PAYLOAD, std::mem::size_of::<ArcNode>()),
        Severity::Critical,
    );
    assert_eq!(arc.span_name, None);
    assert_eq!(
        arc.tasks.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([key_of("left"), key_of("right")]),
        "allocated by two tasks"
    );

    // Third window: still there, the same findings (stable ids), one window older.
    let third = cycles(&guard.cut_window());
    assert_eq!(third.len(), 2);
    for f in &second {
        let again = third
            .iter()
            .find(|g| g.id == f.id)
            .expect("the same finding again");
        assert_eq!(again.windows, f.windows + 1);
        assert_eq!(
            evidence(again, heapspan::export::names::FINDING_CYCLE_WINDOWS),
            3
        );
    }

    rt.block_on(async {
        stop_keeper.send(()).unwrap();
        assert_eq!(keeper.await.unwrap(), 1);
    });
}
