//! Relation graph build on a synthetic heap of 1M live allocations.
//!
//! The heap mixes what a service holds: binary trees of boxes, `Vec<String>`s, vectors of
//! boxes, `Arc` blocks with several holders, and buffers of non-pointer data (text, integers,
//! floats), in two arenas far apart (small objects, and big buffers as if `mmap`ed). Reported:
//! allocations per second and heap bytes per second (criterion `Throughput`), against a
//! baseline that only reads every word through the same `WordSource` (the memory-bandwidth
//! floor of any scan), measured in the same run. Run with `cargo bench --bench graph`; set
//! `HEAPSPAN_BENCH_NODES` for another heap size.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use heapspan::graph::{build_owned, AllocId, FlatHeap, GraphConfig, Node, WordSource};

const WORD: usize = size_of::<usize>();
const SMALL_BASE: usize = 0x5555_5555_0000;
const BIG_BASE: usize = 0x7f12_3400_0000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn data_word(&mut self) -> usize {
        (match self.below(5) {
            0 => self.below(1000),
            1 => u64::from_le_bytes(*b"lorem ip") ^ (self.below(26) << 56),
            2 => (self.below(1_000_000) as f64 / 3.0).to_bits(),
            3 => 1_700_000_000_000_000_000 + self.below(1 << 40),
            _ => self.next(),
        }) as usize
    }
}

/// Two heap images: small objects and big buffers.
struct Heap {
    small: FlatHeap,
    big: FlatHeap,
}

impl WordSource for Heap {
    fn read_words(&self, node: &Node, out: &mut Vec<usize>) -> bool {
        if node.addr >= BIG_BASE {
            self.big.read_words(node, out)
        } else {
            self.small.read_words(node, out)
        }
    }
}

struct Builder {
    nodes: Vec<Node>,
    small: Vec<usize>,
    big: Vec<usize>,
    rng: Rng,
    time: u64,
    /// Mostly big data buffers (a byte-heavy heap).
    byte_heavy: bool,
}

impl Builder {
    fn alloc(&mut self, size: usize, site: u64) -> usize {
        let big = size >= 4096;
        let (base, image) = if big {
            (BIG_BASE, &mut self.big)
        } else {
            (SMALL_BASE, &mut self.small)
        };
        let addr = base + image.len() * WORD;
        image.resize(image.len() + (size.next_multiple_of(16) + 16) / WORD, 0);
        let mut node = Node::new(AllocId(self.nodes.len() as u64 + 1), addr, size);
        node.task = 1 + self.rng.below(64);
        node.site = site;
        node.alloc_time_ns = self.time;
        self.time += 50;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn set(&mut self, i: usize, k: usize, w: usize) {
        let n = &self.nodes[i];
        let (base, image) = if n.addr >= BIG_BASE {
            (BIG_BASE, &mut self.big)
        } else {
            (SMALL_BASE, &mut self.small)
        };
        image[(n.addr - base) / WORD + k] = w;
    }

    fn addr(&self, i: usize) -> usize {
        self.nodes[i].addr
    }

    fn fill(&mut self, i: usize) {
        for k in 0..self.nodes[i].size / WORD {
            let w = self.rng.data_word();
            self.set(i, k, w);
        }
    }

    /// A binary tree of 40-byte boxes `[left, right, key, value, text]`.
    fn tree(&mut self, count: usize) {
        let first = self.nodes.len();
        for _ in 0..count {
            let i = self.alloc(40, 1);
            self.fill(i);
        }
        for k in 0..count {
            for (slot, child) in [(0, 2 * k + 1), (1, 2 * k + 2)] {
                let w = if child < count {
                    self.addr(first + child)
                } else {
                    0
                };
                self.set(first + k, slot, w);
            }
        }
    }

    fn vec_of_strings(&mut self, count: usize) {
        let buf = self.alloc(24 * count, 2);
        for s in 0..count {
            let len = 8 + self.rng.below(56) as usize;
            let string = self.alloc(len, 3);
            self.fill(string);
            self.set(buf, 3 * s, self.addr(string));
            self.set(buf, 3 * s + 1, len);
            self.set(buf, 3 * s + 2, len);
        }
    }

    fn vec_of_boxes(&mut self, count: usize) {
        let buf = self.alloc(8 * count, 4);
        for b in 0..count {
            let boxed = self.alloc(24, 5);
            self.fill(boxed);
            self.set(buf, b, self.addr(boxed));
        }
    }

    fn arc(&mut self, holders: usize) {
        let block = self.alloc(48, 6);
        self.fill(block);
        self.set(block, 0, holders);
        self.set(block, 1, 1);
        for _ in 0..holders {
            let h = self.alloc(32, 7);
            self.fill(h);
            self.set(h, 0, self.addr(block));
        }
    }

    fn data(&mut self) {
        let roll = if self.byte_heavy {
            0
        } else {
            self.rng.below(10)
        };
        let size = match roll {
            0 => 4096 + self.rng.below(60_000) as usize,
            1..=4 => 256 + self.rng.below(3800) as usize,
            _ => 16 + self.rng.below(240) as usize,
        };
        let i = self.alloc(size, 8);
        self.fill(i);
    }
}

fn synth(n: usize, byte_heavy: bool) -> (Vec<Node>, Heap) {
    let mut b = Builder {
        nodes: Vec::with_capacity(n + 2048),
        small: Vec::new(),
        big: Vec::new(),
        rng: Rng(42),
        time: 0,
        byte_heavy,
    };
    while b.nodes.len() < n {
        let roll = b.rng.below(100);
        let roll = if byte_heavy && roll >= 30 { 99 } else { roll };
        match roll {
            0..=9 => b.tree(1023),
            10..=39 => b.vec_of_strings(16),
            40..=59 => b.vec_of_boxes(32),
            60..=69 => b.arc(3),
            _ => {
                for _ in 0..8 {
                    b.data();
                }
            }
        }
    }
    b.nodes.truncate(n);
    let heap = Heap {
        small: FlatHeap::from_words(SMALL_BASE, b.small),
        big: FlatHeap::from_words(BIG_BASE, b.big),
    };
    (b.nodes, heap)
}

/// Time this thread has spent on a CPU (Linux `schedstat`), or zero where unavailable.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// The floor: read every word through the same source and fold it.
fn read_all(nodes: &[Node], heap: &Heap) -> usize {
    let mut buf = Vec::with_capacity(8192);
    let mut acc = 0usize;
    for n in nodes {
        buf.clear();
        if heap.read_words(n, &mut buf) {
            acc = buf.iter().fold(acc, |a, &w| a.rotate_left(1) ^ w);
        }
    }
    acc
}

fn run(c: &mut Criterion, name: &str, n: usize, byte_heavy: bool) {
    let (nodes, heap) = synth(n, byte_heavy);
    let bytes: u64 = nodes.iter().map(|n| n.size as u64).sum();
    let cfg = GraphConfig::default();

    // A summary before criterion's samples: best of 5 builds and reads, wall-clock and on-CPU
    // time of this thread (so a loaded machine does not hide the figures), and the ratio.
    let mut best = (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    let mut graph = None;
    for _ in 0..5 {
        let owned = nodes.clone();
        let (cpu, t) = (thread_cpu(), Instant::now());
        graph = Some(build_owned(owned, &heap, &[], &cfg));
        best.0 = best.0.min(t.elapsed());
        best.1 = best.1.min(thread_cpu().saturating_sub(cpu));
        let (cpu, t) = (thread_cpu(), Instant::now());
        black_box(read_all(&nodes, &heap));
        best.2 = best.2.min(t.elapsed());
        best.3 = best.3.min(thread_cpu().saturating_sub(cpu));
    }
    let graph = graph.expect("built");
    let per_s = |d: Duration, x: f64| x / d.as_secs_f64();
    eprintln!(
        "{name}: {n} nodes, {:.1} MiB, edges {:?} (owns, contains, shares, slice, clone, \
         evolution, arc_clone, rc_clone), {} cycles\n  build: wall {:?} ({:.2} M allocations/s, \
         {:.2} GB/s), on-CPU {:?} ({:.2} M allocations/s, {:.2} GB/s)\n  read-only baseline: \
         wall {:?}, on-CPU {:?}; build/baseline on-CPU = {:.1}x",
        bytes as f64 / (1 << 20) as f64,
        graph.count_by_kind(),
        graph.cycles.len(),
        best.0,
        per_s(best.0, n as f64) / 1e6,
        per_s(best.0, bytes as f64) / 1e9,
        best.1,
        per_s(best.1, n as f64) / 1e6,
        per_s(best.1, bytes as f64) / 1e9,
        best.2,
        best.3,
        best.1.as_secs_f64() / best.3.as_secs_f64(),
    );
    drop(graph);

    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    // The node list is the live index's output, handed over: cloned outside the timing.
    let build = |b: &mut criterion::Bencher<'_>| {
        b.iter_batched(
            || nodes.clone(),
            |nodes| build_owned(nodes, &heap, &[], &cfg),
            BatchSize::LargeInput,
        )
    };
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("build/allocations", build);
    group.bench_function("read_baseline/allocations", |b| {
        b.iter(|| read_all(black_box(&nodes), &heap))
    });
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("build/bytes", build);
    group.bench_function("read_baseline/bytes", |b| {
        b.iter(|| read_all(black_box(&nodes), &heap))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let n = std::env::var("HEAPSPAN_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000usize);
    // The realistic mix: about 124 bytes per allocation.
    run(c, "graph", n, false);
    // Byte-heavy: 70% of shapes are big buffers (4 to 64 KiB), a tenth of the nodes.
    run(c, "graph_byte_heavy", n / 10, true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
