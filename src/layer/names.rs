//! Task names and span names as the small numbers each block's header carries: interned once,
//! looked up by the aggregator.
//!
//! A task name is its display name (the name given at spawn, else the spawn location, else
//! `unnamed`), up to 4,094 of them; a span's index is its group: its `(target, name)` and the
//! values of the group fields it has ([`super::groups`]), up to 32,766 groups. Names beyond
//! those bounds share the last index, shown as `other` (metrics cap their cardinality anyway).
//! Interning takes a lock only the first time a thread meets a name, and for each span whose
//! callsite has a group field: each thread keeps a small cache of the static names it used
//! last.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::alloc::header::{GROUP_MAX, NAME_MAX};

/// Index of `unnamed` tasks (no name, no location).
pub(crate) const UNNAMED: u16 = 0;
/// Index of task names beyond the bound.
pub(crate) const OTHER_TASK: u16 = NAME_MAX;
/// Index of span names beyond the bound.
pub(crate) const OTHER_SPAN: u16 = GROUP_MAX;
/// The name shown for the `other` indices.
pub(crate) const OTHER: &str = "other";

/// A span name: target and name.
pub(crate) type SpanName = (&'static str, &'static str);

struct Interner<K> {
    ix: HashMap<K, u16>,
    names: Vec<K>,
    /// The highest index handed out to a name of its own; past it, `other`.
    last: u16,
}

impl<K: std::hash::Hash + Eq + Clone> Interner<K> {
    fn new(last: u16) -> Self {
        Interner {
            ix: HashMap::new(),
            names: Vec::new(),
            last,
        }
    }
}

// Built on first use (a `HashMap` cannot be made in a `const`).
static TASKS: Mutex<Option<Interner<String>>> = Mutex::new(None);

fn intern<K: std::hash::Hash + Eq + Clone>(
    m: &Mutex<Option<Interner<K>>>,
    first: u16,
    last: u16,
    other: u16,
    k: &K,
) -> u16 {
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    let i = g.get_or_insert_with(|| Interner::new(last));
    if let Some(&n) = i.ix.get(k) {
        return n;
    }
    let n = first as usize + i.names.len();
    if n > i.last as usize {
        return other;
    }
    i.names.push(k.clone());
    i.ix.insert(k.clone(), n as u16);
    n as u16
}

fn lookup<K: Clone>(m: &Mutex<Option<Interner<K>>>, first: u16, n: u16) -> Option<K> {
    let g = m.lock().unwrap_or_else(|p| p.into_inner());
    g.as_ref()?
        .names
        .get(usize::from(n.checked_sub(first)?))
        .cloned()
}

const CACHE: usize = 8;

thread_local! {
    /// Recently interned static names of this thread: (address, length, index).
    static TASK_CACHE: [Cell<(usize, usize, u16)>; CACHE] = const { [const { Cell::new((0, 0, 0)) }; CACHE] };
    /// Recently interned span callsites of this thread: (metadata address, base group, and
    /// the [`GROUPED`] and [`CONFIGURED`] bits).
    static SPAN_CACHE: [Cell<(usize, u32)>; CACHE] = const { [const { Cell::new((0, 0)) }; CACHE] };
}

fn slot(addr: usize) -> usize {
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) % CACHE
}

/// The index of task name `name` (a display name; empty means unnamed).
pub(crate) fn task_index(name: &str) -> u16 {
    if name.is_empty() || name == "unnamed" {
        return UNNAMED;
    }
    intern(&TASKS, 1, OTHER_TASK - 1, OTHER_TASK, &name.to_owned())
}

/// [`task_index`] of a static name, without the lock when this thread met it recently.
pub(crate) fn static_task_index(name: &'static str) -> u16 {
    let key = (name.as_ptr() as usize, name.len());
    let hit = TASK_CACHE
        .try_with(|c| {
            let e = c[slot(key.0)].get();
            ((e.0, e.1) == key).then_some(e.2)
        })
        .ok()
        .flatten();
    if let Some(n) = hit {
        return n;
    }
    let n = task_index(name);
    let _ = TASK_CACHE.try_with(|c| c[slot(key.0)].set((key.0, key.1, n)));
    n
}

/// The display name of task name index `n`.
pub(crate) fn task_name(n: u16) -> String {
    match n {
        UNNAMED => "unnamed".to_owned(),
        OTHER_TASK => OTHER.to_owned(),
        n => lookup(&TASKS, 1, n).unwrap_or_else(|| OTHER.to_owned()),
    }
}

/// [`SPAN_CACHE`] bit: the callsite declares a group field.
const GROUPED: u32 = 1 << 16;
/// [`SPAN_CACHE`] bit: the entry was made with the grouping settings known (before start they
/// are not, and the entry is made again once they are).
const CONFIGURED: u32 = 1 << 17;

/// The base group of callsite `meta` (its target and name), and whether the callsite declares
/// a group field (its spans are then grouped by their values: [`super::groups`]).
pub(crate) fn span_index(meta: &'static tracing_core::Metadata<'static>) -> (u16, bool) {
    let addr = std::ptr::from_ref(meta) as usize;
    let config = super::groups::config();
    let hit = SPAN_CACHE
        .try_with(|c| {
            let e = c[slot(addr)].get();
            (e.0 == addr && (config.is_none() || e.1 & CONFIGURED != 0)).then_some(e.1)
        })
        .ok()
        .flatten();
    if let Some(e) = hit {
        return (e as u16, e & GROUPED != 0);
    }
    let n = super::groups::base((meta.target(), meta.name()));
    let grouped = config.is_some_and(|c| c.groups(meta));
    let e = u32::from(n)
        | if grouped { GROUPED } else { 0 }
        | if config.is_some() { CONFIGURED } else { 0 };
    let _ = SPAN_CACHE.try_with(|c| c[slot(addr)].set((addr, e)));
    (n, grouped)
}

/// `target::name` of the span an allocator key names (`None`: no span).
pub(crate) fn span_label(k: crate::alloc::header::Key) -> Option<String> {
    (k.span_word() & crate::alloc::header::SPAN_MASK != 0).then(|| {
        let (target, name) = span_name(k.span_group());
        label(target, name)
    })
}

/// `target::name`, or the name alone for heapspan's own rows without a target (`other`,
/// `(unknown span)`).
pub(crate) fn label(target: &str, name: &str) -> String {
    if target.is_empty() {
        name.to_owned()
    } else {
        format!("{target}::{name}")
    }
}

/// The `(target, name)` of span group `n`.
pub(crate) fn span_name(n: u16) -> SpanName {
    match n {
        0 => ("", "(unknown span)"),
        OTHER_SPAN => ("", OTHER),
        n => super::groups::name_of(n).unwrap_or(("", OTHER)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_without_a_target_is_the_name_alone() {
        assert_eq!(label("app", "request"), "app::request");
        assert_eq!(label("", OTHER), OTHER);
        assert_eq!(label(span_name(0).0, span_name(0).1), "(unknown span)");
    }

    #[test]
    fn names_intern_once_and_read_back() {
        let a = static_task_index("names-test-a");
        assert_eq!(static_task_index("names-test-a"), a);
        assert_eq!(task_index("names-test-a"), a, "static and owned agree");
        assert_ne!(task_index("names-test-b"), a);
        assert_eq!(task_name(a), "names-test-a");
        assert_eq!(task_index(""), UNNAMED);
        assert_eq!(task_name(UNNAMED), "unnamed");
    }
}
