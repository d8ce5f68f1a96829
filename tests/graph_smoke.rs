//! Smoke: the live index sees a Box chain through the real allocator, and a scan keeps its
//! byte budget.
#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use heapspan::graph::EdgeKind;

struct Node {
    _v: u64,
    next: Option<Box<Node>>,
}

fn guard() -> &'static heapspan::Guard {
    static G: std::sync::OnceLock<heapspan::Guard> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        heapspan::builder()
            .live_index(heapspan::IndexMode::Full)
            .start()
            .unwrap()
    })
}

#[test]
fn a_box_chain_is_owned() {
    let guard = guard();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let chain = rt.block_on(async {
        tokio::spawn(async {
            let mut head = Box::new(Node { _v: 0, next: None });
            for i in 1..10 {
                head = Box::new(Node {
                    _v: i,
                    next: Some(head),
                });
            }
            head
        })
        .await
        .unwrap()
    });
    let g = guard.graph().expect("index on");
    eprintln!("{:?}", g.scan);
    let mut addrs = vec![];
    let mut cur = Some(&chain);
    while let Some(n) = cur {
        addrs.push(&**n as *const Node as usize);
        cur = n.next.as_ref();
    }
    let ids: Vec<_> = addrs
        .iter()
        .map(|&a| g.node_at(a).expect("indexed").id)
        .collect();
    for w in ids.windows(2) {
        assert!(
            g.graph
                .edges
                .iter()
                .any(|e| e.kind == EdgeKind::Owns && e.from == w[0] && e.to == w[1]),
            "missing {:?}",
            w
        );
    }
    drop(chain);
}

#[test]
fn the_scan_budget_is_kept_and_what_it_leaves_out_is_reported() {
    let guard = guard();
    let kept: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1024]).collect();
    let cfg = heapspan::CaptureConfig {
        max_scan_bytes: 8 * 1024,
        ..Default::default()
    };
    let g = guard.graph_with(&cfg).expect("index on");
    assert!(g.scan.scanned_bytes <= 8 * 1024, "{:?}", g.scan);
    assert!(g.scan.over_budget_nodes >= 56, "{:?}", g.scan);
    assert!(g.graph.skipped.nodes >= g.scan.over_budget_nodes);
    assert!(g.graph.skipped.bytes >= 56 * 1024);
    assert_eq!(
        g.scan.indexed,
        g.scan.scanned_nodes + g.scan.over_budget_nodes,
        "every indexed node is scanned or reported"
    );
    drop(kept);
}

#[test]
fn an_annotation_survives_a_capture_that_left_its_container_out() {
    let guard = guard();
    let container: Vec<u64> = vec![7; 64];
    let members: Vec<Box<[u8; 48]>> = (0..4).map(|i| Box::new([i as u8; 48])).collect();
    let member_ptrs: Vec<*const u8> = members.iter().map(|m| m.as_ptr()).collect();
    heapspan::graph::live::annotate_container(container.as_ptr().cast(), &member_ptrs);
    // A capture whose byte budget leaves everything out proves nothing gone.
    let none = heapspan::CaptureConfig {
        max_scan_bytes: 0,
        ..Default::default()
    };
    let g = guard.graph_with(&none).expect("index on");
    assert!(g.scan.over_budget_nodes > 0);
    let g = guard.graph().expect("index on");
    let c = g.node_at(container.as_ptr() as usize).expect("indexed").id;
    let contained = g
        .graph
        .edges_of(EdgeKind::Contains)
        .filter(|e| e.from == c && e.confidence == 1.0)
        .count();
    assert_eq!(contained, members.len());
    drop((container, members));
}
