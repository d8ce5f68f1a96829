//! Smoke: the live index sees a Box tree through the real allocator.
#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use heapspan::graph::EdgeKind;

struct Node {
    _v: u64,
    next: Option<Box<Node>>,
}

#[test]
fn a_box_chain_is_owned() {
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .start()
        .unwrap();
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
