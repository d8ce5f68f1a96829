//! Cycles and retained sizes over the ownership edges.
//!
//! - **Cycles**: Tarjan's strongly connected components, iterative (an explicit stack of
//!   `(node, next edge)` frames instead of recursion, so a 1M-node chain cannot overflow the
//!   thread's stack). `O(V + E)` time, `O(V)` extra memory.
//! - **Retained sizes**: a virtual root points at every root; the dominator tree of that graph
//!   is computed with Lengauer–Tarjan (the "simple" variant with path compression, iterative
//!   DFS and iterative `eval`), `O(E log V)` time, `O(V)` extra memory. A node's retained size
//!   is the weighted size of its subtree in the dominator tree: the bytes that every path from
//!   the roots reaches only through it, i.e. what would become unreachable if it went away.
//!   Nodes no root reaches retain nothing. Summing subtrees is one pass in reverse DFS order.

use super::{AllocId, Graph};

const NONE: u32 = u32::MAX;

/// Compressed adjacency lists of a graph over nodes `0..n`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Csr {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Csr {
    /// The graph of `edges` over `n` nodes (duplicates kept, order within a node by input).
    pub(crate) fn new(n: usize, edges: impl Iterator<Item = (u32, u32)> + Clone) -> Self {
        let mut offsets = vec![0u32; n + 1];
        for (f, _) in edges.clone() {
            offsets[f as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0u32; offsets[n] as usize];
        for (f, t) in edges {
            targets[fill[f as usize] as usize] = t;
            fill[f as usize] += 1;
        }
        Csr { offsets, targets }
    }

    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(crate) fn out(&self, v: u32) -> &[u32] {
        &self.targets[self.offsets[v as usize] as usize..self.offsets[v as usize + 1] as usize]
    }

    fn reversed(&self) -> Csr {
        let n = self.len();
        Csr::new(
            n,
            (0..n as u32).flat_map(move |v| self.out(v).iter().map(move |&t| (t, v))),
        )
    }
}

/// Strongly connected components: `(component of each node, size of each component)`.
/// Components are numbered in the order Tarjan completes them (reverse topological order).
pub(crate) fn tarjan(g: &Csr) -> (Vec<u32>, Vec<u32>) {
    let n = g.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![NONE; n];
    let mut sizes: Vec<u32> = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    let mut frames: Vec<(u32, u32)> = Vec::new();
    let mut counter = 0u32;
    for s in 0..n as u32 {
        if index[s as usize] != NONE {
            continue;
        }
        index[s as usize] = counter;
        low[s as usize] = counter;
        counter += 1;
        stack.push(s);
        on_stack[s as usize] = true;
        frames.push((s, g.offsets[s as usize]));
        while let Some(frame) = frames.last_mut() {
            let v = frame.0;
            if frame.1 < g.offsets[v as usize + 1] {
                let w = g.targets[frame.1 as usize];
                frame.1 += 1;
                if index[w as usize] == NONE {
                    index[w as usize] = counter;
                    low[w as usize] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w as usize] = true;
                    frames.push((w, g.offsets[w as usize]));
                } else if on_stack[w as usize] {
                    low[v as usize] = low[v as usize].min(index[w as usize]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(u, _)) = frames.last() {
                low[u as usize] = low[u as usize].min(low[v as usize]);
            }
            if low[v as usize] == index[v as usize] {
                let c = sizes.len() as u32;
                let mut size = 0;
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    component[w as usize] = c;
                    size += 1;
                    if w == v {
                        break;
                    }
                }
                sizes.push(size);
            }
        }
    }
    (component, sizes)
}

/// One root per source component of the condensation: a node nothing owns, or the smallest id
/// of a cycle nothing outside it owns. Every node is reachable from these.
pub(crate) fn default_roots(graph: &Graph, component: &[u32]) -> Vec<u32> {
    let g = &graph.ownership;
    let components = component.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut owned_from_outside = vec![false; components];
    let mut best: Vec<u32> = vec![NONE; components];
    for v in 0..g.len() as u32 {
        let cv = component[v as usize] as usize;
        let b = &mut best[cv];
        if *b == NONE || graph.nodes[v as usize].id < graph.nodes[*b as usize].id {
            *b = v;
        }
        for &t in g.out(v) {
            let ct = component[t as usize] as usize;
            if ct != cv {
                owned_from_outside[ct] = true;
            }
        }
    }
    let mut roots: Vec<u32> = (0..components)
        .filter(|&c| !owned_from_outside[c])
        .map(|c| best[c])
        .collect();
    roots.sort_unstable();
    roots
}

/// Retained sizes of every node of `graph` (same order as its nodes) from an explicit root set:
/// the weighted bytes reachable from `roots` only through each node. Ids not in the graph are
/// ignored. `O(E log V)`; see the `graph::scc` module docs.
pub fn retained_sizes(graph: &Graph, roots: &[AllocId]) -> Vec<u64> {
    let mut idx: Vec<u32> = roots
        .iter()
        .filter_map(|&r| graph.index_of(r).map(|i| i as u32))
        .collect();
    idx.sort_unstable();
    idx.dedup();
    retained_from(graph, &idx)
}

/// Retained sizes from root node indices (sorted, distinct).
pub(crate) fn retained_from(graph: &Graph, roots: &[u32]) -> Vec<u64> {
    let g = &graph.ownership;
    let n = g.len();
    debug_assert_eq!(n, graph.nodes.len());
    let root = n as u32; // the virtual root
    let total = n + 1;
    let preds = g.reversed();
    let mut is_root = vec![false; n];
    for &r in roots {
        is_root[r as usize] = true;
    }

    // Iterative DFS from the virtual root.
    let mut dfnum = vec![NONE; total];
    let mut vertex: Vec<u32> = Vec::with_capacity(total);
    let mut parent = vec![NONE; total];
    dfnum[root as usize] = 0;
    vertex.push(root);
    let mut frames: Vec<(u32, usize)> = vec![(root, 0)];
    while let Some(frame) = frames.last_mut() {
        let (v, pos) = *frame;
        let children = if v == root { roots } else { g.out(v) };
        if pos == children.len() {
            frames.pop();
            continue;
        }
        frame.1 += 1;
        let w = children[pos];
        if dfnum[w as usize] == NONE {
            dfnum[w as usize] = vertex.len() as u32;
            vertex.push(w);
            parent[w as usize] = v;
            frames.push((w, 0));
        }
    }

    // Lengauer–Tarjan, semidominators as vertices, eval with path compression.
    let mut semi = vec![NONE; total];
    let mut idom = vec![NONE; total];
    let mut samedom = vec![NONE; total];
    let mut ancestor = vec![NONE; total];
    let mut best: Vec<u32> = (0..total as u32).collect();
    let mut bucket_head = vec![NONE; total];
    let mut bucket_next = vec![NONE; total];
    let mut path: Vec<u32> = Vec::new();

    let mut eval = |v: u32, ancestor: &mut [u32], best: &mut [u32], semi: &[u32]| -> u32 {
        if ancestor[v as usize] == NONE {
            return best[v as usize];
        }
        path.clear();
        let mut x = v;
        while ancestor[ancestor[x as usize] as usize] != NONE {
            path.push(x);
            x = ancestor[x as usize];
        }
        for &u in path.iter().rev() {
            let a = ancestor[u as usize];
            let (ba, bu) = (best[a as usize], best[u as usize]);
            if dfnum[semi[ba as usize] as usize] < dfnum[semi[bu as usize] as usize] {
                best[u as usize] = ba;
            }
            ancestor[u as usize] = ancestor[a as usize];
        }
        best[v as usize]
    };

    for i in (1..vertex.len()).rev() {
        let w = vertex[i];
        let p = parent[w as usize];
        let mut s = p;
        let mut consider = |v: u32, ancestor: &mut [u32], best: &mut [u32], semi: &[u32]| {
            if dfnum[v as usize] == NONE {
                return; // a predecessor no root reaches
            }
            let candidate = if dfnum[v as usize] <= dfnum[w as usize] {
                v
            } else {
                semi[eval(v, ancestor, best, semi) as usize]
            };
            if dfnum[candidate as usize] < dfnum[s as usize] {
                s = candidate;
            }
        };
        if is_root[w as usize] {
            consider(root, &mut ancestor, &mut best, &semi);
        }
        for &v in preds.out(w) {
            consider(v, &mut ancestor, &mut best, &semi);
        }
        semi[w as usize] = s;
        bucket_next[w as usize] = bucket_head[s as usize];
        bucket_head[s as usize] = w;
        ancestor[w as usize] = p;
        let mut v = std::mem::replace(&mut bucket_head[p as usize], NONE);
        while v != NONE {
            let y = eval(v, &mut ancestor, &mut best, &semi);
            if semi[y as usize] == semi[v as usize] {
                idom[v as usize] = p;
            } else {
                samedom[v as usize] = y;
            }
            v = bucket_next[v as usize];
        }
    }
    for &w in &vertex[1..] {
        if samedom[w as usize] != NONE {
            idom[w as usize] = idom[samedom[w as usize] as usize];
        }
    }

    let mut retained = vec![0u64; total];
    for &w in vertex[1..].iter().rev() {
        retained[w as usize] += graph.nodes[w as usize].weighted_size();
        let d = idom[w as usize];
        if d != root {
            retained[d as usize] += retained[w as usize];
        }
    }
    retained.truncate(n);
    retained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarjan_finds_cycles_and_singletons() {
        // 0 -> 1 -> 2 -> 0, 2 -> 3, 3 -> 4 -> 3, 5
        let g = Csr::new(
            6,
            [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 3)].into_iter(),
        );
        let (comp, sizes) = tarjan(&g);
        assert_eq!(comp[0], comp[1]);
        assert_eq!(comp[1], comp[2]);
        assert_eq!(comp[3], comp[4]);
        assert_ne!(comp[0], comp[3]);
        assert_eq!(sizes[comp[0] as usize], 3);
        assert_eq!(sizes[comp[3] as usize], 2);
        assert_eq!(sizes[comp[5] as usize], 1);
        // Reverse topological order: {3,4} completes before {0,1,2}.
        assert!(comp[3] < comp[0]);
    }

    #[test]
    fn tarjan_handles_a_long_chain_without_recursion() {
        // Kept small enough for Miri; the iterative frames make the depth irrelevant.
        let n = if cfg!(miri) { 2_000 } else { 1_000_000 };
        let g = Csr::new(
            n,
            (0..n as u32 - 1)
                .map(|i| (i, i + 1))
                .chain([(n as u32 - 1, 0)]),
        );
        let (comp, sizes) = tarjan(&g);
        assert_eq!(sizes.len(), 1);
        assert!(comp.iter().all(|&c| c == 0));
    }
}
