//! Graphviz (DOT) export for humans.
//!
//! Nodes show their id, size, task and retained size; edges their kind and confidence, styled
//! by capability (exclusive: solid, shared: bold, borrow: dashed) and coloured by kind; cycle
//! members are red. With [`DotOptions::highlight`], the danger surface of those roots (their
//! ownership closure, findings.md) is drawn whatever the edge cap: its nodes filled, the
//! roots with a double border, its edges thick. Raw addresses appear only with [`DotOptions::show_addresses`]
//! (telemetry.md, Privacy). Render with `dot -Tsvg graph.dot > graph.svg`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{top_k_edges, AllocId, EdgeKind, Graph};

/// What [`to_dot`] draws.
#[derive(Clone, Debug, PartialEq)]
pub struct DotOptions {
    /// Edges drawn at most: the top ones by bytes. Default 500.
    pub max_edges: usize,
    /// Edges below this confidence are left out. Default 0.
    pub min_confidence: f32,
    /// Label nodes with their addresses. Default false.
    pub show_addresses: bool,
    /// Code locations by [`Node::site`](super::Node::site), added to node labels. Default
    /// empty; [`LiveGraph::to_dot`](super::live::LiveGraph::to_dot) fills it when sites are
    /// captured.
    pub site_labels: std::collections::BTreeMap<u64, String>,
    /// Roots whose danger surface (ownership closure, at most [`HIGHLIGHT_NODES`] nodes) is
    /// highlighted and always drawn, such as a finding's
    /// [`roots`](crate::findings::Finding::roots). Default empty.
    pub highlight: Vec<AllocId>,
}

/// Nodes of the highlighted danger surface drawn at most.
pub const HIGHLIGHT_NODES: usize = 2000;

impl Default for DotOptions {
    fn default() -> Self {
        DotOptions {
            max_edges: 500,
            min_confidence: 0.0,
            show_addresses: false,
            site_labels: std::collections::BTreeMap::new(),
            highlight: Vec::new(),
        }
    }
}

/// Human-readable byte count: `512 B`, `1.5 KiB`, `3.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn colour(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Owns => "black",
        EdgeKind::Contains => "darkgreen",
        EdgeKind::Shares => "orange",
        EdgeKind::Slice => "blue",
        EdgeKind::Clone => "purple",
        EdgeKind::Evolution => "gray40",
        EdgeKind::ArcClone => "darkorange3",
        EdgeKind::RcClone => "brown",
    }
}

fn style(kind: EdgeKind) -> &'static str {
    match kind.capability() {
        super::Capability::Exclusive => "solid",
        super::Capability::Shared => "bold",
        super::Capability::Borrow => "dashed",
    }
}

/// Renders `graph` as a DOT digraph: the top [`DotOptions::max_edges`] edges by bytes and the
/// nodes they touch.
pub fn to_dot(graph: &Graph, opts: &DotOptions) -> String {
    let kept: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.confidence >= opts.min_confidence)
        .copied()
        .collect();
    let mut edges = top_k_edges(&kept, opts.max_edges);
    let in_cycle: BTreeSet<AllocId> = graph.cycles.iter().flatten().copied().collect();
    let surface = (!opts.highlight.is_empty())
        .then(|| graph.ownership_closure_of(&opts.highlight, HIGHLIGHT_NODES));
    let in_surface: BTreeSet<AllocId> = surface
        .iter()
        .flat_map(|c| c.nodes.iter().copied())
        .collect();
    let roots: BTreeSet<AllocId> = opts
        .highlight
        .iter()
        .copied()
        .filter(|id| in_surface.contains(id))
        .collect();
    // The surface's own ownership edges, whatever the cap.
    let drawn: BTreeSet<(AllocId, AllocId, EdgeKind)> =
        edges.iter().map(|e| (e.from, e.to, e.kind)).collect();
    let extra: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.kind.is_ownership())
        .filter(|e| in_surface.contains(&e.from) && in_surface.contains(&e.to))
        .filter(|e| !drawn.contains(&(e.from, e.to, e.kind)))
        .collect();
    edges.extend(extra);
    let mut ids: BTreeSet<AllocId> = in_surface.clone();
    for e in &edges {
        ids.insert(e.from);
        ids.insert(e.to);
    }
    let mut out = String::new();
    out.push_str("digraph heapspan {\n");
    if let Some(c) = &surface {
        let _ = writeln!(
            out,
            "  // danger surface of {} root(s): {} nodes, {}{}",
            roots.len(),
            c.nodes.len(),
            bytes(c.bytes),
            if c.truncated { " (truncated)" } else { "" }
        );
    }
    out.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for id in &ids {
        let Some(i) = graph.index_of(*id) else {
            let _ = writeln!(
                out,
                "  n{} [label=\"{id}\\n(freed)\", style=dashed, color=gray50];",
                id.0
            );
            continue;
        };
        let n = &graph.nodes[i];
        let mut label = format!("{id}\\n{}", bytes(n.weighted_size()));
        if n.task != 0 {
            let _ = write!(label, "\\ntask {}", n.task);
        }
        let retained = graph.retained.get(i).copied().unwrap_or(0);
        if retained > n.weighted_size() {
            let _ = write!(label, "\\nretains {}", bytes(retained));
        }
        if let Some(site) = opts.site_labels.get(&n.site) {
            let site = site.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = write!(label, "\\n{site}");
        }
        if opts.show_addresses {
            let _ = write!(label, "\\n{:#x}", n.addr);
        }
        let colour = if in_cycle.contains(id) {
            "red"
        } else {
            "black"
        };
        let fill = if in_surface.contains(id) {
            ", style=filled, fillcolor=\"#ffd6d6\""
        } else {
            ""
        };
        let border = if roots.contains(id) {
            ", peripheries=2, penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  n{} [label=\"{label}\", color={colour}{fill}{border}];",
            id.0
        );
    }
    for e in &edges {
        let thick = if in_surface.contains(&e.from) && in_surface.contains(&e.to) {
            ", penwidth=2.5"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  n{} -> n{} [label=\"{} {:.2}\", color={}, style={}{thick}];",
            e.from.0,
            e.to.0,
            e.kind,
            e.confidence,
            colour(e.kind),
            style(e.kind),
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
