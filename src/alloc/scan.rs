//! The safe heap scan: copies the live indexed allocations' contents while frees of them are
//! deferred (see [`super::index`] for the handshake), for the graph to read afterwards.

use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::header::{self, Key};
use super::index::{self, DEFERRED, EXT, SIZE_MASK};
use crate::graph::{AllocId, Node, WordSource};

/// One scan at a time (the deferred stack may only be drained outside scans).
static SCAN_LOCK: Mutex<()> = Mutex::new(());

const WORD: usize = std::mem::size_of::<usize>();

/// One word of a live block, for the scan: an aligned load whose value is an initialized
/// integer whatever the memory holds. Heaps are full of bytes never written (padding, spare
/// capacity), and reading those as an integer with a plain or volatile load is undefined in
/// Rust's abstract machine (Miri reports it); the output of an inline-assembly load is a fixed
/// value instead. Other architectures, and Miri (which has no inline assembly), use a volatile
/// load.
///
/// # Safety
/// `p` must be aligned and point into a block that stays allocated during the read.
#[inline(always)]
unsafe fn read_word(p: *const usize) -> usize {
    #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri)))]
    {
        let v: usize;
        // SAFETY: one aligned 8-byte load from memory the caller guarantees is allocated; no
        // stack use, no flags changed, no other memory touched.
        unsafe {
            std::arch::asm!(
                #[cfg(target_arch = "x86_64")]
                "mov {v}, qword ptr [{p}]",
                #[cfg(target_arch = "aarch64")]
                "ldr {v}, [{p}]",
                p = in(reg) p,
                v = lateout(reg) v,
                options(nostack, preserves_flags, readonly),
            );
        }
        v
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: by the caller's contract.
    unsafe {
        std::ptr::read_volatile(p)
    }
}

/// The copied contents of the scanned nodes.
#[derive(Debug, Default)]
pub(crate) struct CopiedHeap {
    /// `(address, first word, words)`, in node order.
    ranges: Vec<(usize, usize, usize)>,
    /// `(address, index in ranges)`, sorted by address, for lookups out of order.
    by_addr: Vec<(usize, u32)>,
    /// The range after the last one read: the graph reads nodes in order, mostly.
    next: std::cell::Cell<usize>,
    words: Vec<usize>,
}

impl CopiedHeap {
    fn finish(&mut self) {
        self.by_addr = self
            .ranges
            .iter()
            .enumerate()
            .map(|(i, r)| (r.0, i as u32))
            .collect();
        self.by_addr.sort_unstable();
    }
}

impl WordSource for CopiedHeap {
    fn read_words(&self, node: &Node, out: &mut Vec<usize>) -> bool {
        let k = match self.ranges.get(self.next.get()) {
            Some(r) if r.0 == node.addr => self.next.get(),
            _ => match self.by_addr.binary_search_by_key(&node.addr, |r| r.0) {
                Ok(j) => self.by_addr[j].1 as usize,
                Err(_) => return false,
            },
        };
        self.next.set(k + 1);
        let (_, start, len) = self.ranges[k];
        out.extend_from_slice(&self.words[start..start + len]);
        true
    }
}

/// Caps of one scan.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub(crate) max_nodes: usize,
    pub(crate) max_bytes_per_node: usize,
    pub(crate) max_bytes: usize,
}

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) nodes: Vec<Node>,
    /// Per node (same order): the allocating task's name index (0: unnamed or no task).
    pub(crate) task_names: Vec<u16>,
    pub(crate) heap: CopiedHeap,
    pub(crate) indexed: u64,
    pub(crate) over_budget_nodes: u64,
    pub(crate) over_budget_bytes: u64,
    /// Nodes bigger than the per-node cap, copied only up to it, and the bytes left out.
    pub(crate) truncated_nodes: u64,
    pub(crate) truncated_bytes: u64,
    pub(crate) scanned_bytes: u64,
    pub(crate) deferred_frees: u64,
    pub(crate) unindexed: u64,
    pub(crate) pause: Duration,
}

/// Scans every live indexed allocation; `None` when the live index is off.
pub(crate) fn scan(caps: Caps) -> Option<Scanned> {
    if !super::state::indexing() {
        return None;
    }
    let pool = super::state::pool()?;
    let _one = SCAN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let sampled = super::state::mode() == super::state::Mode::Sampled;
    let mean = super::sampler::SAMPLE_MEAN.load(Ordering::Relaxed);
    let high = pool.high.load(Ordering::Acquire) as usize;
    let mut out = Scanned::default();
    let reserve: usize = index::tables(high)
        .iter()
        .map(|t| t.published().len())
        .sum();
    out.nodes.reserve(reserve.min(caps.max_nodes));
    out.task_names.reserve(reserve.min(caps.max_nodes));
    out.heap.ranges.reserve(reserve.min(caps.max_nodes));
    // A first guess of the words (64 bytes a node), so the copy phase rarely grows the buffer.
    out.heap
        .words
        .reserve((reserve.saturating_mul(8)).min(caps.max_bytes / WORD));
    // Fault the buffers' pages in now, not during the copy phase (frees are deferred then).
    prefault(out.nodes.spare_capacity_mut());
    prefault(out.task_names.spare_capacity_mut());
    prefault(out.heap.ranges.spare_capacity_mut());
    prefault(out.heap.words.spare_capacity_mut());
    let mut scratch_budget = caps.max_bytes;

    let began = Instant::now();
    if !index::begin_scan(|| pool.claimed().len()) {
        return None;
    }
    // Ends the scan (and releases deferred frees) however this function is left.
    struct EndScan<'a>(&'a mut u64);
    impl Drop for EndScan<'_> {
        fn drop(&mut self) {
            *self.0 = index::end_scan();
        }
    }
    let mut deferred = 0;
    let end = EndScan(&mut deferred);
    for (table, t) in index::tables(high).iter().enumerate() {
        index::visit(t, |entry, addr, meta| {
            out.indexed += 1;
            let user = addr as *const u8;
            // SAFETY: `addr` was read from a published entry after `begin_scan`: the block it
            // names was live then, and none goes back to the inner allocator before
            // `end_scan` (its free is deferred), so its header words stay readable.
            let (sw, id, tw, spw) = unsafe {
                (
                    index::word(user, 24).load(Ordering::Acquire),
                    index::word(user, 32).load(Ordering::Relaxed),
                    index::word(user, 16).load(Ordering::Relaxed),
                    index::word(user, 8).load(Ordering::Relaxed),
                )
            };
            let Key { task, span } = header::untagged(tw, spw);
            let span = span & !header::CUSTODY;
            let (t_id, e_id, _) = index::split_id(id);
            if sw & DEFERRED != 0 || span & EXT == 0 || t_id != table || e_id != entry {
                // Freed (or moved) since the entry was read.
                out.indexed -= 1;
                return;
            }
            let size = (sw & SIZE_MASK) as usize;
            let take = size.min(caps.max_bytes_per_node) / WORD * WORD;
            if out.nodes.len() >= caps.max_nodes || take > scratch_budget {
                out.over_budget_nodes += 1;
                out.over_budget_bytes += size as u64;
                return;
            }
            let start = out.heap.words.len();
            let n = take / WORD;
            out.heap.words.reserve(n);
            let dst = out.heap.words.spare_capacity_mut();
            for (k, d) in dst[..n].iter_mut().enumerate() {
                // SAFETY: `k * WORD + WORD <= size` bytes from `user` belong to the block,
                // which stays allocated (see above); `user` is 8-aligned. The application may
                // write the word concurrently, so the value is evidence only (documented in
                // the crate's "Safety and correctness").
                d.write(unsafe { read_word(user.add(k * WORD).cast::<usize>()) });
            }
            // SAFETY: the first `n` spare elements were just written.
            unsafe { out.heap.words.set_len(start + n) };
            let site = t.site(entry);
            fence(Ordering::Acquire);
            // SAFETY: as above.
            if unsafe { index::word(user, 24).load(Ordering::Relaxed) } != sw {
                // Freed during the copy: the words are the dead block's, drop them.
                out.heap.words.truncate(start);
                out.indexed -= 1;
                return;
            }
            scratch_budget -= take;
            out.scanned_bytes += take as u64;
            // Cut at the per-node cap (a trailing partial word holds no aligned pointer).
            if size > caps.max_bytes_per_node {
                out.truncated_nodes += 1;
                out.truncated_bytes += (size - take) as u64;
            }
            out.heap.ranges.push((addr, start, take / WORD));
            let gen = id & 0xFF_FFFF;
            out.task_names.push(Key::new(task, span).task_name());
            out.nodes.push(Node {
                id: AllocId(id),
                addr,
                size,
                task: Key::new(task, span).task_id(),
                span: Key::new(task, span).span_word(),
                alloc_time_ns: (meta >> 24).saturating_mul(1_000_000),
                site,
                realloc_from: (index::reallocs_of(sw) > 0)
                    .then(|| AllocId((id & !0xFF_FFFF) | (gen.wrapping_sub(1) & 0xFF_FFFF))),
                weight: if sampled {
                    super::sampler::sample_weight(size, mean)
                } else {
                    1.0
                },
            });
        });
    }
    drop(end);
    out.deferred_frees = deferred;
    out.pause = began.elapsed();
    out.unindexed = index::tables(high)
        .iter()
        .map(|t| t.unindexed.load(Ordering::Relaxed))
        .sum();
    out.heap.finish();
    Some(out)
}

/// Writes zeros over `spare` so that its pages are resident before the scan's copy phase.
fn prefault<T>(spare: &mut [std::mem::MaybeUninit<T>]) {
    // SAFETY: `spare` is writable memory of `spare.len()` elements; zero bytes written into
    // `MaybeUninit` are fine whatever `T` is (nothing reads them as `T`).
    unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0, spare.len()) };
}

/// Releases blocks whose frees were deferred by a scan but pushed after it ended (when no
/// scan runs; the aggregator calls it every fold).
pub(crate) fn drain_if_idle() {
    let _one = match SCAN_LOCK.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    index::drain_deferred();
}
