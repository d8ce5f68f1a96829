//! The danger surface of a finding as inline SVG: a layered drawing, one column per
//! breadth-first depth from the roots (a deep layer wraps into several columns), the roots
//! highlighted, edges coloured by kind and labelled with kind and confidence.
//!
//! The layout is deterministic: the same graph gives the same drawing (columns by depth, rows
//! in breadth-first discovery order, the roots in the order the finding names them).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use super::escape;
use super::model::{EdgeView, GraphView};
use crate::export::report::human_bytes;
use crate::graph::{Capability, EdgeKind};

/// A node's box.
pub(crate) const NODE_W: f64 = 232.0;
pub(crate) const NODE_H: f64 = 50.0;
/// Gaps between columns (room for the edges and their labels) and rows.
const GAP_X: f64 = 84.0;
const GAP_Y: f64 = 16.0;
const MARGIN: f64 = 12.0;
/// Rows of a column before a layer wraps into the next one.
pub(crate) const ROWS_PER_COLUMN: usize = 8;
/// Characters of a name on a node's line (the whole name is in its tooltip).
const NODE_LINE_CHARS: usize = 33;
/// Edges labelled on the drawing at most (beyond, the edge list below it has them).
const LABELLED_EDGES: usize = 40;

/// Where each node goes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    /// Per node of the graph (same order): breadth-first depth from the roots, column, row.
    pub(crate) depth: Vec<usize>,
    pub(crate) column: Vec<usize>,
    pub(crate) row: Vec<usize>,
    pub(crate) width: f64,
    pub(crate) height: f64,
}

impl Layout {
    /// The top-left corner of node `i`'s box.
    pub(crate) fn corner(&self, i: usize) -> (f64, f64) {
        (
            MARGIN + self.column[i] as f64 * (NODE_W + GAP_X),
            MARGIN + self.row[i] as f64 * (NODE_H + GAP_Y),
        )
    }
}

/// Lays `g` out, in columns by breadth-first depth along the edges' direction (holder to
/// target), in the order of the graph's edges. The walk starts at the roots nothing drawn
/// points at (in the graph's order); roots still unreached (held by other roots, or members
/// of a cycle) start a walk of their own, the one with the most edges out first, so that a
/// root held by another one is drawn after it and a cycle reads as a chain. Nodes no root
/// reaches go one layer beyond the deepest. A layer of more than [`ROWS_PER_COLUMN`] nodes
/// takes several columns.
pub(crate) fn layout(g: &GraphView) -> Layout {
    let index: HashMap<u64, usize> = g.nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    let mut held = vec![false; g.nodes.len()];
    for e in &g.edges {
        if let (Some(&a), Some(&b)) = (index.get(&e.from), index.get(&e.to)) {
            out[a].push(b);
            if a != b {
                held[b] = true;
            }
        }
    }
    let mut depth = vec![usize::MAX; g.nodes.len()];
    let mut order = Vec::with_capacity(g.nodes.len());
    let mut queue = VecDeque::new();
    let mut walk = |seeds: &[usize], depth: &mut Vec<usize>, order: &mut Vec<usize>| {
        for &i in seeds {
            depth[i] = 0;
            queue.push_back(i);
        }
        while let Some(v) = queue.pop_front() {
            order.push(v);
            for &t in &out[v] {
                if depth[t] == usize::MAX {
                    depth[t] = depth[v] + 1;
                    queue.push_back(t);
                }
            }
        }
    };
    let free: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| g.nodes[i].root && !held[i])
        .collect();
    walk(&free, &mut depth, &mut order);
    loop {
        let reach = |i: usize| out[i].iter().filter(|&&t| depth[t] == usize::MAX).count();
        let Some(seed) = (0..g.nodes.len())
            .filter(|&i| g.nodes[i].root && depth[i] == usize::MAX)
            .max_by(|&a, &b| reach(a).cmp(&reach(b)).then(b.cmp(&a)))
        else {
            break;
        };
        walk(&[seed], &mut depth, &mut order);
    }
    let deepest = order.iter().map(|&i| depth[i]).max().map_or(0, |d| d + 1);
    for (i, d) in depth.iter_mut().enumerate() {
        if *d == usize::MAX {
            *d = deepest;
            order.push(i);
        }
    }
    let layers = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for &i in &order {
        members[depth[i]].push(i);
    }
    let mut column = vec![0; g.nodes.len()];
    let mut row = vec![0; g.nodes.len()];
    let mut first_column = 0;
    let mut rows = 0;
    for layer in &members {
        for (k, &i) in layer.iter().enumerate() {
            column[i] = first_column + k / ROWS_PER_COLUMN;
            row[i] = k % ROWS_PER_COLUMN;
            rows = rows.max(row[i] + 1);
        }
        first_column += layer.len().div_ceil(ROWS_PER_COLUMN).max(1);
    }
    let columns = column.iter().copied().max().map_or(0, |c| c + 1);
    Layout {
        depth,
        column,
        row,
        width: 2.0 * MARGIN + columns as f64 * (NODE_W + GAP_X) - GAP_X + 40.0,
        height: 2.0 * MARGIN + rows as f64 * (NODE_H + GAP_Y) - GAP_Y,
    }
}

/// The colour of an edge kind (as in the DOT output, in CSS colours).
pub(crate) fn kind_colour(kind: Option<EdgeKind>) -> &'static str {
    match kind {
        Some(EdgeKind::Owns) => "#263238",
        Some(EdgeKind::Contains) => "#2e7d32",
        Some(EdgeKind::Shares) => "#ef6c00",
        Some(EdgeKind::Slice) => "#1565c0",
        Some(EdgeKind::Clone) => "#6a1b9a",
        Some(EdgeKind::Evolution) => "#757575",
        Some(EdgeKind::ArcClone) => "#e65100",
        Some(EdgeKind::RcClone) => "#8d4004",
        _ => "#9e9e9e",
    }
}

/// The arrowhead markers, one per kind colour (`#hs-arrow-<kind>`), defined once per page.
pub(crate) fn markers() -> String {
    let mut out =
        String::from("<svg class=\"defs\" width=\"0\" height=\"0\" aria-hidden=\"true\"><defs>");
    for k in EdgeKind::ALL
        .iter()
        .map(|k| (k.as_str(), kind_colour(Some(*k))))
        .chain([("unknown", kind_colour(None))])
    {
        let _ = write!(
            out,
            "<marker id=\"hs-arrow-{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            k.0, k.1
        );
    }
    out.push_str("</defs></svg>");
    out
}

fn edge_path(l: &Layout, a: usize, b: usize, e: &EdgeView) -> (String, (f64, f64)) {
    let (ax, ay) = l.corner(a);
    let (bx, by) = l.corner(b);
    let (ay, by) = (ay + NODE_H / 2.0, by + NODE_H / 2.0);
    if a == b {
        // A node pointing at itself: a loop on its right side.
        let x = ax + NODE_W;
        return (
            format!(
                "M{x:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {x:.1},{:.1}",
                ay - 10.0,
                x + 40.0,
                ay - 30.0,
                x + 40.0,
                ay + 30.0,
                ay + 10.0
            ),
            (x + 34.0, ay),
        );
    }
    if l.column[b] > l.column[a] {
        let (x1, x2) = (ax + NODE_W, bx);
        let dx = (x2 - x1) / 2.0;
        (
            format!(
                "M{x1:.1},{ay:.1} C{:.1},{ay:.1} {:.1},{by:.1} {x2:.1},{by:.1}",
                x1 + dx,
                x2 - dx
            ),
            ((x1 + x2) / 2.0, (ay + by) / 2.0 - 4.0),
        )
    } else if l.column[b] < l.column[a] {
        // Backwards: from the source's left side to the target's right side, 12 px below the
        // middle, so that it runs beside a forward edge between the same two nodes; its label
        // goes below the line.
        let (x1, x2) = (ax, bx + NODE_W);
        let (y1, y2) = (ay + 12.0, by + 12.0);
        let dx = (x1 - x2) / 2.0;
        (
            format!(
                "M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}",
                x1 - dx,
                x2 + dx
            ),
            ((x1 + x2) / 2.0, (y1 + y2) / 2.0 + 14.0),
        )
    } else {
        // Same column: an arc on the right of the boxes, wider for the edge going up, so that
        // two edges of a pair stay apart.
        let x = ax + NODE_W;
        let bulge = if by > ay { 36.0 } else { 62.0 } + (e.kind.len() % 3) as f64 * 4.0;
        let cx = x + bulge;
        (
            format!("M{x:.1},{ay:.1} C{cx:.1},{ay:.1} {cx:.1},{by:.1} {x:.1},{by:.1}"),
            // Near the source: the labels of a pair of edges do not meet.
            (x + bulge * 0.75, ay + (by - ay) * 0.3),
        )
    }
}

/// The drawing of `g`, the surface of finding `finding` (its id, for `data-finding`).
pub(crate) fn svg(finding: &str, g: &GraphView) -> String {
    let l = layout(g);
    let index: HashMap<u64, usize> = g.nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"surface\" data-finding=\"{}\" data-nodes=\"{}\" data-edges=\"{}\" \
         width=\"{:.0}\" height=\"{:.0}\" viewBox=\"0 0 {:.0} {:.0}\" role=\"img\">",
        escape::attr(finding),
        g.nodes.len(),
        g.edges.len(),
        l.width,
        l.height,
        l.width,
        l.height
    );
    // Edges under the boxes.
    let labelled = g.edges.len() <= LABELLED_EDGES;
    for e in &g.edges {
        let (Some(&a), Some(&b)) = (index.get(&e.from), index.get(&e.to)) else {
            continue;
        };
        let kind = e.edge_kind();
        let colour = kind_colour(kind);
        let dash = match kind.map(EdgeKind::capability) {
            Some(Capability::Borrow) => " stroke-dasharray=\"5 4\"",
            _ => "",
        };
        let width = match kind.map(EdgeKind::capability) {
            Some(Capability::Shared) => 2.4,
            _ => 1.6,
        };
        let (d, (mx, my)) = edge_path(&l, a, b, e);
        let marker = kind.map_or("unknown", EdgeKind::as_str);
        let label = format!("{} {:.2}", e.kind, e.confidence);
        let _ = write!(
            out,
            "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\" data-kind=\"{}\" \
             data-confidence=\"{:.2}\"><title>#{} → #{}: {} (confidence {:.2}, {})</title>\
             <path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash} \
             marker-end=\"url(#hs-arrow-{marker})\"/>",
            e.from,
            e.to,
            escape::attr(&e.kind),
            e.confidence,
            e.from,
            e.to,
            escape::text(&e.kind),
            e.confidence,
            escape::text(&human_bytes(i64::try_from(e.bytes).unwrap_or(i64::MAX))),
        );
        if labelled {
            let _ = write!(
                out,
                "<text class=\"edge-label\" x=\"{mx:.1}\" y=\"{my:.1}\" fill=\"{colour}\">{}</text>",
                escape::text(&label)
            );
        }
        out.push_str("</g>");
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let (x, y) = l.corner(i);
        let size = n
            .bytes
            .map(|b| human_bytes(i64::try_from(b).unwrap_or(i64::MAX)))
            .unwrap_or_else(|| "size unknown".to_owned());
        let mut lines = vec![format!("#{} · {size}", n.id)];
        let mut full = lines[0].clone();
        for (what, v) in [("task", &n.task), ("span", &n.span), ("at", &n.site)] {
            if let Some(v) = v {
                let _ = write!(full, "\n{what} {v}");
                if lines.len() < 3 {
                    lines.push(format!("{what} {}", escape::clip(v, NODE_LINE_CHARS)));
                }
            }
        }
        if n.root {
            full.push_str("\nroot of the danger surface");
        }
        let _ = write!(
            out,
            "<g class=\"node{}\" data-id=\"{}\" data-root=\"{}\" data-depth=\"{}\"{}>\
             <title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{NODE_W}\" \
             height=\"{NODE_H}\" rx=\"6\"/>",
            if n.root { " root" } else { "" },
            n.id,
            n.root,
            l.depth[i],
            n.bytes
                .map(|b| format!(" data-bytes=\"{b}\""))
                .unwrap_or_default(),
            escape::text(&full),
        );
        for (k, t) in lines.iter().enumerate() {
            let _ = write!(
                out,
                "<text class=\"{}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                if k == 0 { "node-head" } else { "node-line" },
                x + 8.0,
                y + 16.0 + 14.0 * k as f64,
                escape::text(t)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::html::model::NodeView;

    fn node(id: u64, root: bool) -> NodeView {
        NodeView {
            id,
            bytes: Some(id * 16),
            root,
            ..NodeView::default()
        }
    }

    fn edge(from: u64, to: u64, kind: &str) -> EdgeView {
        EdgeView {
            from,
            to,
            kind: kind.into(),
            confidence: 0.95,
            bytes: 16,
        }
    }

    fn graph(nodes: Vec<NodeView>, edges: Vec<EdgeView>) -> GraphView {
        GraphView {
            nodes,
            edges,
            ..GraphView::default()
        }
    }

    #[test]
    fn layers_are_breadth_first_depths_from_the_roots() {
        // Roots 1 and 2 hold each other (a cycle): the walk starts at the root with the most
        // edges out (1), so 2 comes one layer later; 1 owns 3, 3 owns 4; 5 is reached by
        // nothing.
        let g = graph(
            vec![
                node(1, true),
                node(2, true),
                node(3, false),
                node(4, false),
                node(5, false),
            ],
            vec![
                edge(1, 2, "rc_clone"),
                edge(2, 1, "rc_clone"),
                edge(1, 3, "owns"),
                edge(3, 4, "owns"),
            ],
        );
        let l = layout(&g);
        assert_eq!(l.depth, [0, 1, 1, 2, 3]);
        assert_eq!(l.column, [0, 1, 1, 2, 3]);
        assert_eq!(l.row, [0, 0, 1, 0, 0]);
        // A root nothing points at starts the walk; a root it holds comes after it; a root
        // of its own (6, held by nothing) shares the first layer.
        let g2 = graph(
            vec![node(1, true), node(2, true), node(6, true), node(3, false)],
            vec![edge(2, 1, "owns"), edge(1, 3, "owns")],
        );
        assert_eq!(layout(&g2).depth, [1, 0, 0, 2]);
        // Deterministic: the same graph, the same drawing.
        assert_eq!(layout(&g), l);
        assert_eq!(svg("f", &g), svg("f", &g));
    }

    #[test]
    fn a_wide_layer_wraps_into_columns_and_no_boxes_overlap() {
        let mut nodes = vec![node(1, true)];
        let mut edges = Vec::new();
        for i in 2..=30 {
            nodes.push(node(i, false));
            edges.push(edge(1, i, "owns"));
        }
        let g = graph(nodes, edges);
        let l = layout(&g);
        assert_eq!(l.depth.iter().filter(|d| **d == 1).count(), 29);
        // 29 nodes of depth 1 in 4 columns of at most 8 rows, after the root's column.
        assert_eq!(l.column.iter().copied().max(), Some(4));
        assert!(l.row.iter().all(|r| *r < ROWS_PER_COLUMN));
        let mut seen = std::collections::HashSet::new();
        for i in 0..g.nodes.len() {
            assert!(seen.insert((l.column[i], l.row[i])), "node {i} overlaps");
            let (x, y) = l.corner(i);
            assert!(x + NODE_W <= l.width && y + NODE_H <= l.height);
        }
    }

    #[test]
    fn the_drawing_marks_roots_and_labels_edges_with_kind_and_confidence() {
        let mut n2 = node(2, false);
        n2.task = Some("<cache> & \"co\"".into());
        n2.span = Some("app::a_very_long_span_name_that_does_not_fit".into());
        let g = graph(
            vec![node(1, true), n2],
            vec![edge(1, 2, "owns"), edge(2, 1, "slice")],
        );
        let s = svg("0123", &g);
        assert!(s.starts_with("<svg class=\"surface\" data-finding=\"0123\" data-nodes=\"2\""));
        assert_eq!(s.matches("<g class=\"node").count(), 2);
        assert_eq!(s.matches("<g class=\"node root\" data-id=\"1\"").count(), 1);
        assert!(s.contains("data-root=\"false\""));
        assert!(s.contains(">owns 0.95<") && s.contains(">slice 0.95<"));
        assert!(s.contains("url(#hs-arrow-owns)"));
        assert!(s.contains("stroke-dasharray"), "a borrow is dashed");
        // Names are escaped, long ones clipped on the drawing and whole in the tooltip.
        assert!(s.contains("task &lt;cache&gt; &amp; &quot;co&quot;"), "{s}");
        assert!(!s.contains("<cache>"));
        let clipped = escape::clip(
            "app::a_very_long_span_name_that_does_not_fit",
            NODE_LINE_CHARS,
        );
        assert!(clipped.ends_with('…') && clipped.chars().count() == NODE_LINE_CHARS);
        assert!(s.contains(&format!(">span {clipped}<")), "{s}");
        assert!(s.contains("span app::a_very_long_span_name_that_does_not_fit"));
        assert!(s.contains("#1 · 16 B"));
        let defs = markers();
        assert_eq!(defs.matches("<marker").count(), EdgeKind::ALL.len() + 1);
    }
}
