//! The task identity: which tokio task an allocation belongs to.
//!
//! heapspan keys a task by tokio's task id (`tokio::task::try_id()`, per allocation). tokio
//! documents that an id may be reused once its task has ended, but draws ids from a 64-bit
//! process-wide counter that never hands one out twice (tokio 1.x, `task::Id::next`); heapspan
//! relies on that. Should a future tokio reuse ids, two tasks of one id would share a record
//! in the per-task table; per-name figures stay exact either way, because the task's name
//! travels in each block's header ([`header`](super::header)).

/// A tokio task id as a `u64`: tokio's `Id` hashes as its inner `NonZeroU64`, so a hasher that
/// keeps the written value recovers it exactly, with no unsafe and no allocation.
#[inline]
pub(crate) fn task_id_u64(id: tokio::task::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    #[derive(Default)]
    struct Keep(u64);
    impl Hasher for Keep {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 << 8) | u64::from(*b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut h = Keep::default();
    id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn task_ids_convert_exactly() {
        let h = tokio::spawn(async { task_id_u64(tokio::task::id()) });
        let expect = h.id().to_string().parse::<u64>().unwrap();
        assert_eq!(h.await.unwrap(), expect);
    }
}
