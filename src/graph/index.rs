//! Address range index: which live node, if any, contains a given word.
//!
//! The scan asks this for every word of every scanned allocation, so lookups must be cheap and
//! must not hash. Nodes are sorted by start address into one array of `(start, end, node)`
//! entries. The sorted entries are cut into *clusters* wherever two neighbours are more than
//! [`CLUSTER_GAP`] apart (a process heap is a few dense arenas far apart in the address space:
//! the `brk` heap, thread arenas, `mmap`ed large blocks). Each cluster has a bucket table over
//! its address range, with power-of-two buckets sized so the table has about one bucket per
//! node; a bucket holds the first entry that ends after the bucket's start.
//!
//! A lookup is: one subtraction and compare against the whole index's range (rejects almost all
//! non-pointer words: small integers, text, floats), a cluster pick (usually one or two
//! clusters), a shift to find the bucket, and a scan of the entries the bucket and its
//! successor bracket (binary search when that range is long). Memory: 24 bytes per node for
//! the entries and 4 bytes per node for the buckets. Build: `O(n log n)` for the sort.

/// Neighbouring nodes further apart than this start a new cluster (its own bucket table).
pub(crate) const CLUSTER_GAP: usize = 64 << 20;

/// Smallest bucket: 16 bytes, the usual allocation granularity.
const MIN_SHIFT: u32 = 4;

/// Bracketed ranges longer than this are binary-searched instead of scanned.
const LINEAR_SCAN: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    end: usize,
    node: u32,
}

#[derive(Clone, Copy, Debug)]
struct Cluster {
    /// Start of the first entry.
    base: usize,
    /// End of the last entry.
    end: usize,
    /// log2 of the bucket size in bytes.
    shift: u32,
    /// First entry of the cluster.
    first: u32,
    /// One past the last entry of the cluster.
    last: u32,
    /// Offset of the cluster's buckets in `AddrIndex::buckets`.
    buckets: u32,
}

/// Sorted, non-overlapping address ranges of nodes with a bucket table per cluster.
#[derive(Debug)]
pub(crate) struct AddrIndex {
    entries: Vec<Entry>,
    clusters: Vec<Cluster>,
    buckets: Vec<u32>,
    lo: usize,
    span: usize,
    /// Nodes left out because their range overlaps an earlier node's (a stale node list).
    pub(crate) overlapping: u64,
}

impl AddrIndex {
    /// Indexes `ranges[i] = (addr, size)` as node `i`. Empty ranges and ranges at address 0 are
    /// not indexed (nothing can point at them); ranges overlapping an earlier-starting one are
    /// left out and counted in `overlapping`.
    pub(crate) fn new(ranges: impl ExactSizeIterator<Item = (usize, usize)>) -> Self {
        let mut entries: Vec<Entry> = Vec::with_capacity(ranges.len());
        for (node, (addr, size)) in ranges.enumerate() {
            if size == 0 || addr == 0 {
                continue;
            }
            entries.push(Entry {
                start: addr,
                end: addr.saturating_add(size),
                node: u32::try_from(node).unwrap_or(u32::MAX),
            });
        }
        // Adaptive (a live index usually lists nodes in address or allocation order, nearly
        // sorted); ties (a stale list) by node index, for determinism.
        entries.sort_unstable_by_key(|e| (e.start, e.node));
        let mut overlapping = 0u64;
        let mut kept = 0usize;
        for k in 0..entries.len() {
            if kept > 0 && entries[k].start < entries[kept - 1].end {
                overlapping += 1;
                continue;
            }
            entries[kept] = entries[k];
            kept += 1;
        }
        entries.truncate(kept);

        let mut clusters = Vec::new();
        let mut buckets = Vec::with_capacity(entries.len() + 16);
        let mut first = 0usize;
        while first < entries.len() {
            let mut last = first + 1;
            while last < entries.len() && entries[last].start - entries[last - 1].end <= CLUSTER_GAP
            {
                last += 1;
            }
            let base = entries[first].start;
            let end = entries[last - 1].end;
            let count = last - first;
            let span = end - base;
            let mut shift = MIN_SHIFT;
            while (span >> shift) > count {
                shift += 1;
            }
            let n_buckets = (span >> shift) + 1;
            let offset = buckets.len();
            // Bucket b covers [base + b << shift, base + (b + 1) << shift): it starts at the
            // first entry whose end lies beyond the bucket's start. One extra sentinel bucket.
            let mut k = first;
            for b in 0..=n_buckets {
                let bucket_start = base.saturating_add(b << shift);
                while k < last && entries[k].end <= bucket_start {
                    k += 1;
                }
                buckets.push(k as u32);
            }
            clusters.push(Cluster {
                base,
                end,
                shift,
                first: first as u32,
                last: last as u32,
                buckets: offset as u32,
            });
            first = last;
        }
        let (lo, span) = match (entries.first(), entries.last()) {
            (Some(f), Some(l)) => (f.start, l.end - f.start),
            _ => (1, 0),
        };
        AddrIndex {
            entries,
            clusters,
            buckets,
            lo,
            span,
            overlapping,
        }
    }

    /// Number of indexed nodes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The node whose range contains `word`, and the offset of `word` in it.
    #[inline]
    pub(crate) fn lookup(&self, word: usize) -> Option<(u32, usize)> {
        if word.wrapping_sub(self.lo) >= self.span {
            return None;
        }
        self.lookup_slow(word)
    }

    #[inline]
    fn lookup_slow(&self, word: usize) -> Option<(u32, usize)> {
        let cluster = if self.clusters.len() == 1 {
            &self.clusters[0]
        } else {
            let k = self.clusters.partition_point(|c| c.base <= word);
            &self.clusters[k.checked_sub(1)?]
        };
        if word >= cluster.end {
            return None;
        }
        let b = (word - cluster.base) >> cluster.shift;
        let at = cluster.buckets as usize + b;
        let lo = self.buckets[at] as usize;
        // Entries containing `word` end after the bucket's start (so they are at `lo` or
        // later) and start at or before `word` (so at or before the first entry ending after
        // the next bucket's start).
        let hi = (self.buckets[at + 1] as usize + 1).min(cluster.last as usize);
        let found = if hi - lo <= LINEAR_SCAN {
            let mut found = None;
            for e in &self.entries[lo..hi] {
                if e.start > word {
                    break;
                }
                if word < e.end {
                    found = Some(*e);
                    break;
                }
            }
            found
        } else {
            let k = lo + self.entries[lo..hi].partition_point(|e| e.start <= word);
            let e = self.entries[k.checked_sub(1)?];
            (k > lo && word < e.end).then_some(e)
        };
        debug_assert!(cluster.first as usize <= lo);
        found.map(|e| (e.node, word - e.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force reference.
    fn reference(ranges: &[(usize, usize)], word: usize) -> Option<(u32, usize)> {
        ranges.iter().enumerate().find_map(|(i, &(a, s))| {
            (s > 0 && a != 0 && word >= a && word < a + s).then(|| (i as u32, word - a))
        })
    }

    #[test]
    fn matches_brute_force_on_clustered_ranges() {
        // Two dense arenas far apart, uneven sizes, one big block, gaps between nodes.
        let mut ranges = Vec::new();
        let mut addr = 0x5555_0000_0000usize;
        for i in 0..200usize {
            let size: usize = [16, 24, 48, 100, 4096, 8][i % 6];
            ranges.push((addr, size));
            addr += size.next_multiple_of(16) + 16 * (i % 3);
        }
        let mut addr = 0x7f00_0000_0000usize;
        for i in 0..50usize {
            let size = if i == 10 { 1 << 20 } else { 32 };
            ranges.push((addr, size));
            addr += size + 16;
        }
        ranges.push((0, 64)); // never indexed
        ranges.push((0x1000, 0)); // never indexed
        let index = AddrIndex::new(ranges.iter().copied());
        assert_eq!(index.len(), 250);
        assert_eq!(index.overlapping, 0);
        let mut probes = vec![0, 1, usize::MAX, 0x5555_0000_0000 - 1, 0x7f00_0000_0000];
        for &(a, s) in &ranges {
            probes.extend([
                a.wrapping_sub(1),
                a,
                a + s / 2,
                a + s.saturating_sub(1),
                a + s,
            ]);
        }
        for p in probes {
            assert_eq!(index.lookup(p), reference(&ranges, p), "probe {p:#x}");
        }
    }

    #[test]
    fn overlapping_ranges_are_dropped_and_counted() {
        let ranges = [(0x1000usize, 64usize), (0x1020, 64), (0x1040, 16)];
        let index = AddrIndex::new(ranges.iter().copied());
        assert_eq!(index.overlapping, 1);
        assert_eq!(index.lookup(0x1020), Some((0, 0x20)));
        assert_eq!(index.lookup(0x1040), Some((2, 0)));
    }

    #[test]
    fn empty_index_finds_nothing() {
        let index = AddrIndex::new(std::iter::empty());
        assert_eq!(index.lookup(0), None);
        assert_eq!(index.lookup(usize::MAX), None);
    }
}
