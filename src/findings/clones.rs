//! `clone.storm`: one code location (or, without sites, one span) makes many copies of the
//! same bytes within a window.
//!
//! The graph's `clone` edges run from an original to a block of the same size and contents
//! made after it ([`EdgeKind::Clone`]). They are grouped by the copy's allocating site (else
//! its span, else its task) and size; a group with at least
//! [`FindingsConfig::clone_storm_min_clones`] copies or
//! [`FindingsConfig::clone_storm_min_bytes`] duplicated bytes is a storm (low; medium from
//! [`FindingsConfig::high_bytes`]). Needs the live index.

use std::collections::HashMap;

use super::{human, raise, Draft, FindingsConfig, Input, Kind, Severity, Verdict};
use crate::export::names as n;
use crate::graph::{AllocId, EdgeKind};
use crate::TaskKey;

/// Clone edges below this confidence (contents that only look alike, such as zeroed buffers)
/// do not count.
const MIN_CONFIDENCE: f32 = 0.5;

/// A group of copies: (site, span group, task name, size).
type GroupKey = (u64, u64, Option<String>, usize);

/// Tasks a storm lists at most (as every finding: links to their window spans).
const MAX_TASKS: usize = 8;

/// What a group of copies adds up to.
struct Group {
    copies: u64,
    bytes: u64,
    /// A copy's node index (the first seen).
    first: usize,
    /// The first copies' ids.
    roots: Vec<AllocId>,
    /// The tokio ids of the tasks that made copies (the first [`MAX_TASKS`]).
    tasks: Vec<u64>,
}

pub(crate) fn run(cfg: &FindingsConfig, input: &Input<'_>, out: &mut Vec<Draft>) {
    let Some(g) = input.graph else { return };
    let graph = &g.graph;
    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    for e in graph
        .edges_of(EdgeKind::Clone)
        .filter(|e| e.confidence >= MIN_CONFIDENCE)
    {
        let Some(i) = graph.index_of(e.to) else {
            continue;
        };
        let node = &graph.nodes[i];
        let key = if node.site != 0 {
            (node.site, 0, None, node.size)
        } else if node.span != 0 {
            (
                0,
                node.span >> crate::alloc::header::SPAN_BITS,
                None,
                node.size,
            )
        } else {
            (0, 0, g.task_name_of(i), node.size)
        };
        let s = groups.entry(key).or_insert(Group {
            copies: 0,
            bytes: 0,
            first: i,
            roots: Vec::new(),
            tasks: Vec::new(),
        });
        s.copies += 1;
        s.bytes += node.weighted_size();
        if s.roots.len() < super::MAX_ROOTS {
            s.roots.push(node.id);
        }
        if node.task != 0 && s.tasks.len() < MAX_TASKS && !s.tasks.contains(&node.task) {
            s.tasks.push(node.task);
        }
    }
    for (
        (_, _, _, size),
        Group {
            copies,
            bytes,
            first: i,
            roots,
            tasks,
        },
    ) in groups
    {
        if (copies as usize) < cfg.clone_storm_min_clones && bytes < cfg.clone_storm_min_bytes {
            continue;
        }
        let severity = if bytes >= cfg.high_bytes {
            raise(Severity::Low)
        } else {
            Severity::Low
        };
        let node = &graph.nodes[i];
        let location = g.site_location(node.site);
        // `target::name`, as every finding names a span.
        let span_name = g.span_name_of(i).map(|(t, s)| format!("{t}::{s}"));
        let where_ = match (&location, &span_name) {
            (Some(l), _) => format!("at {l}"),
            (None, Some(s)) => format!("in span {s}"),
            (None, None) => "in one place".to_owned(),
        };
        let mut d = Draft::new(
            Kind::CloneStorm,
            severity,
            Verdict::Probable,
            format!(
                "{copies} identical copies of a {size}-byte block were made {where_} ({} \
                 duplicated)",
                human(bytes)
            ),
        );
        d.confidence = 0.7;
        d.bytes = bytes;
        d.allocations = copies;
        d.task_name = g.task_name_of(i);
        d.tasks = tasks.into_iter().map(|id| TaskKey { id }).collect();
        d.span_name = span_name;
        d.location = location;
        d.from_graph = true;
        d.roots = roots;
        d.ev(n::FINDING_CLONES, copies);
        d.ev(n::FINDING_CLONE_SIZE, size);
        d.ev(n::FINDING_THRESHOLD, cfg.clone_storm_min_clones);
        out.push(d);
    }
}
