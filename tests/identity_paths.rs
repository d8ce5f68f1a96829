//! Both ways of learning task identity give the same numbers: heapspan's wrapper (stable
//! tokio) and tokio's own `runtime.spawn` spans (`--cfg tokio_unstable`, no heapspan code in the
//! task). `integration-tests/test-all.sh` runs this file both ways.

mod common;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use heapspan::TaskSource;

/// Exactly `(i + 1) * 100` bytes in one allocation, held until the task returns it.
async fn workload(i: usize) -> Vec<u8> {
    let v = vec![7u8; (i + 1) * 100];
    tokio::task::consume_budget().await;
    v
}

fn check(snap: &heapspan::Snapshot, ids: &[tokio::task::Id], prefix: &str, source: TaskSource) {
    for (i, id) in ids.iter().enumerate() {
        let t = snap
            .task_by_id(*id)
            .unwrap_or_else(|| panic!("{prefix}-{i} recorded"));
        assert_eq!(t.name.as_deref(), Some(format!("{prefix}-{i}").as_str()));
        assert_eq!(t.source, source);
        assert_eq!(
            (t.mem.allocated_bytes, t.mem.allocations),
            (((i + 1) * 100) as u64, 1),
            "{t:?}"
        );
        assert!(
            t.location
                .as_ref()
                .is_some_and(|l| l.file.ends_with("identity_paths.rs")),
            "{t:?}"
        );
        assert!(
            t.started.is_some() && t.ended.is_some(),
            "start and end are known: {t:?}"
        );
    }
}

#[test]
fn wrapper_and_spawn_spans_give_the_same_numbers() {
    common::start();
    let rt = common::runtime(2);
    // Warm per-worker structures (span stacks, scheduler queues) outside the measured tasks.
    rt.block_on(async {
        for _ in 0..4 {
            let hs: Vec<_> = (0..16).map(|_| tokio::spawn(workload(0))).collect();
            for h in hs {
                h.await.unwrap();
            }
        }
    });

    let wrapped: Vec<_> = (0..8)
        .map(|i| {
            let _g = rt.enter();
            heapspan::spawn(format!("wrapped-{i}"), workload(i))
        })
        .collect();
    let wrapped_ids: Vec<_> = wrapped.iter().map(|h| h.id()).collect();
    let kept: Vec<Vec<u8>> = rt.block_on(async {
        let mut out = Vec::new();
        for h in wrapped {
            out.push(h.await.unwrap());
        }
        out
    });
    let snap = common::snapshot();
    check(&snap, &wrapped_ids, "wrapped", TaskSource::Wrapper);

    #[cfg(tokio_unstable)]
    {
        let spawned: Vec<_> = (0..8)
            .map(|i| {
                tokio::task::Builder::new()
                    .name(&format!("spawned-{i}"))
                    .spawn_on(workload(i), rt.handle())
                    .unwrap()
            })
            .collect();
        let ids: Vec<_> = spawned.iter().map(|h| h.id()).collect();
        let more: Vec<Vec<u8>> = rt.block_on(async {
            let mut out = Vec::new();
            for h in spawned {
                out.push(h.await.unwrap());
            }
            out
        });
        drop(rt);
        let snap = common::snapshot();
        check(&snap, &ids, "spawned", TaskSource::SpawnSpan);
        for (w, s) in wrapped_ids.iter().zip(&ids) {
            let (w, s) = (snap.task_by_id(*w).unwrap(), snap.task_by_id(*s).unwrap());
            assert_eq!(w.mem, s.mem, "same workload, same figures");
        }
        drop(more);
    }
    drop(kept);
}
