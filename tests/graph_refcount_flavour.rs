//! `Arc` or `Rc`: their boxes are laid out alike, so within one task the graph reads a shared
//! refcounted block as the likelier `arc_clone`, unproven; with sites captured, the allocation
//! stack (`Rc::new` or `Arc::new`) proves the flavour, and the edges get their full score.

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::rc::Rc;
use std::sync::Arc;

use heapspan::graph::EdgeKind;

#[test]
fn the_allocation_site_tells_an_arc_from_an_rc_in_one_task() {
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .capture_sites(true)
        .start()
        .unwrap();
    // Each block held twice from the heap, in one thread and no task.
    let arc = Arc::new([7u64; 8]);
    let arc_holders: Vec<Box<Arc<[u64; 8]>>> = (0..2).map(|_| Box::new(arc.clone())).collect();
    let arc_block = Arc::as_ptr(&arc) as usize - 16;
    drop(arc);
    let rc = Rc::new([9u64; 8]);
    let rc_holders: Vec<Box<Rc<[u64; 8]>>> = (0..2).map(|_| Box::new(rc.clone())).collect();
    let rc_block = Rc::as_ptr(&rc) as usize - 16;
    drop(rc);

    let g = guard.graph().expect("index on");
    for (block, kind) in [
        (arc_block, EdgeKind::ArcClone),
        (rc_block, EdgeKind::RcClone),
    ] {
        let id = g.node_at(block).expect("indexed").id;
        let r = g
            .graph
            .refcount_of(id)
            .expect("taken for a refcounted block");
        assert_eq!((r.strong, r.heap_pointers), (2, 2), "{r:?}");
        assert_eq!(r.kind, kind, "{r:?}");
        assert!(r.kind_proven, "the site proves it: {r:?}");
        let into: Vec<_> = g.graph.edges.iter().filter(|e| e.to == id).collect();
        assert_eq!(into.len(), 2, "{into:?}");
        for e in into {
            assert_eq!(e.kind, kind);
            assert!(!e.cross_task);
            assert!((e.confidence - 0.95).abs() < 1e-6, "full score: {e:?}");
        }
    }
    drop((arc_holders, rc_holders));
}
