//! LSD radix sort by a `u64` key: the scan's big sorts (index entries, pointer hits, clone
//! candidates) have integer keys, and a radix sort moves each element a few times instead of
//! `log n` times. 11-bit digits; digits where all keys agree are skipped (addresses share their
//! high bits, hit keys have few bits of node index). Stable.

const BITS: u32 = 11;
const MASK: u64 = (1 << BITS) - 1;

/// Below this length a comparison sort is faster.
const SMALL: usize = 512;

/// Sorts `v` by `key`, stably.
pub(crate) fn radix_sort_by_key<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    let n = v.len();
    if n < SMALL {
        v.sort_by_key(|x| key(x));
        return;
    }
    let k0 = key(&v[0]);
    let varying = v.iter().fold(0u64, |acc, x| acc | (key(x) ^ k0));
    let mut src = std::mem::take(v);
    let mut dst: Vec<T> = Vec::new();
    let mut counts = vec![0usize; 1 << BITS];
    let mut shift = 0u32;
    while shift < 64 && (varying >> shift) != 0 {
        if (varying >> shift) & MASK == 0 {
            shift += BITS;
            continue;
        }
        counts.fill(0);
        for x in &src {
            counts[((key(x) >> shift) & MASK) as usize] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        if dst.len() != n {
            dst.clear();
            dst.resize(n, src[0]);
        }
        for x in &src {
            let d = ((key(x) >> shift) & MASK) as usize;
            dst[counts[d]] = *x;
            counts[d] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
        shift += BITS;
    }
    *v = src;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably_like_the_standard_sort() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut v: Vec<(u64, u32)> = (0..if cfg!(miri) { 600 } else { 20_000 })
            .map(|i| {
                x = x.rotate_left(13).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (0x5555_0000_0000 + (x % 5000) * 16, i)
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_by_key(|e| e.0);
        radix_sort_by_key(&mut v, |e| e.0);
        assert_eq!(v, expected);
        let mut small = vec![(3u64, 0u32), (1, 1), (3, 2), (0, 3)];
        radix_sort_by_key(&mut small, |e| e.0);
        assert_eq!(small, [(0, 3), (1, 1), (3, 0), (3, 2)]);
    }
}
