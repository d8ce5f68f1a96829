//! Span groups: a span's name together with the values of the group fields it has
//! ([`Builder::span_group_fields`](crate::Builder::span_group_fields)), interned as the 15-bit
//! index each block's header carries, so that per-group figures are exact like per-name ones.
//!
//! Every span name has a *base* group: the name alone (what the index was before groups).
//! A span whose callsite declares one of the group fields gets the group of its name and the
//! values of those fields it has at creation; a value recorded later
//! ([`Span::record`](tracing::Span::record), as a router's middleware records `http.route`)
//! moves the span to the group of its values then, for the allocations it makes from then on
//! (what it allocated before stays with the group it had). A name gets at most
//! `max_span_groups_per_name` groups with values; later values share the name's `other`
//! group. Values are cut at [`MAX_SPAN_GROUP_VALUE_BYTES`].
//!
//! The index space (32,766 groups) is shared by every name: once it is full a new name is
//! `other` (as before groups), and a new group with values falls back to its name's `other`
//! group, else to its base group. Interning takes a lock only for spans whose callsite has a
//! group field (the layer caches, per thread and callsite, whether it has one); spans of other
//! callsites cost what they did before. Nothing here runs in the allocator.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use tracing_core::field::{Field, Visit};

use super::names::{SpanName, OTHER_SPAN};
use crate::aggregator::snapshot::SpanGroup;
use crate::alloc::header::{GROUP_MAX, SPAN_BITS, SPAN_MASK};

/// Default for [`Builder::span_group_fields`](crate::Builder::span_group_fields): OpenTelemetry's
/// `http.route` (the route template a router matched, such as `/users/{id}`: low cardinality by
/// definition) and `otel.name` (the span name tracing-opentelemetry exports, meant to be low
/// cardinality too). Not `http.request.method` (it multiplies the rows; add it if wanted), and
/// never `uri`/`url.path` by default (unbounded, and they may carry personal data).
pub const DEFAULT_SPAN_GROUP_FIELDS: &[&str] = &["http.route", "otel.name"];
/// Default for
/// [`Builder::max_span_groups_per_name`](crate::Builder::max_span_groups_per_name): groups with
/// field values per span name; the span's later values share the name's `other` group.
pub const DEFAULT_MAX_SPAN_GROUPS_PER_NAME: usize = 100;
/// Most group fields [`Builder::span_group_fields`](crate::Builder::span_group_fields) accepts.
pub const MAX_SPAN_GROUP_FIELDS: usize = 8;
/// Largest accepted [`Builder::max_span_groups_per_name`](crate::Builder::max_span_groups_per_name).
pub const MAX_SPAN_GROUPS_PER_NAME: usize = 4096;
/// A group field's value is cut to this many bytes (at a character boundary): two values that
/// agree that far share a group.
pub const MAX_SPAN_GROUP_VALUE_BYTES: usize = 128;

/// The grouping settings, set once when heapspan starts.
#[derive(Debug)]
pub(crate) struct Config {
    fields: Box<[Box<str>]>,
    per_name: usize,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Sets the grouping settings (at start; a second start changes nothing).
pub(crate) fn configure(fields: &[String], per_name: usize) {
    let _ = CONFIG.set(Config {
        fields: fields.iter().map(|f| f.as_str().into()).collect(),
        per_name,
    });
}

/// The grouping settings, once heapspan started (`None` before: spans are not grouped).
pub(crate) fn config() -> Option<&'static Config> {
    CONFIG.get()
}

impl Config {
    /// True when callsite `meta` declares one of the group fields.
    pub(crate) fn groups(&self, meta: &tracing_core::Metadata<'_>) -> bool {
        self.fields
            .iter()
            .any(|f| meta.fields().field(f.as_ref()).is_some())
    }

    /// True when `values` hold a value of a group field (checked by name, nothing formatted).
    pub(crate) fn touches(&self, values: &tracing_core::span::Record<'_>) -> bool {
        struct Probe<'a>(&'a [Box<str>], bool);
        impl Visit for Probe<'_> {
            fn record_debug(&mut self, f: &Field, _: &dyn fmt::Debug) {
                self.1 |= self.0.iter().any(|g| &**g == f.name());
            }
            fn record_str(&mut self, f: &Field, _: &str) {
                self.1 |= self.0.iter().any(|g| &**g == f.name());
            }
        }
        if self.fields.is_empty() {
            return false;
        }
        let mut p = Probe(&self.fields, false);
        values.record(&mut p);
        p.1
    }
}

/// The values of the group fields one span has, formatted into a fixed buffer (visiting a span
/// allocates nothing).
pub(crate) struct Values {
    fields: &'static [Box<str>],
    /// Per group field (in the configured order): its value's bytes in `buf`, if it has one.
    ranges: [Option<(usize, usize)>; MAX_SPAN_GROUP_FIELDS],
    buf: [u8; MAX_SPAN_GROUP_FIELDS * MAX_SPAN_GROUP_VALUE_BYTES],
    len: usize,
}

/// Writes into the rest of a buffer, at most `limit` bytes, cut at a character boundary.
struct Limited<'a> {
    buf: &'a mut [u8],
    len: usize,
    limit: usize,
}

impl fmt::Write for Limited<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        // Full: stop the formatting (a long `Debug` value is not walked to its end).
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl Values {
    pub(crate) fn new(c: &'static Config) -> Self {
        Values {
            fields: &c.fields,
            ranges: [None; MAX_SPAN_GROUP_FIELDS],
            buf: [0; MAX_SPAN_GROUP_FIELDS * MAX_SPAN_GROUP_VALUE_BYTES],
            len: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.ranges.iter().all(Option::is_none)
    }

    /// Field `i`'s value, if it has one.
    fn get(&self, i: usize) -> Option<&str> {
        let (a, b) = self.ranges[i]?;
        // Written from whole characters of a `&str` only.
        std::str::from_utf8(&self.buf[a..b]).ok()
    }

    /// The present fields, in the configured order.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.fields.len()).filter_map(|i| self.get(i).map(|v| (&*self.fields[i], v)))
    }

    fn put(&mut self, name: &str, f: impl FnOnce(&mut Limited<'_>) -> fmt::Result) {
        let Some(i) = self.fields.iter().position(|g| &**g == name) else {
            return;
        };
        // Each field has room for one value: the first one given wins.
        if self.ranges[i].is_some() || self.len + MAX_SPAN_GROUP_VALUE_BYTES > self.buf.len() {
            return;
        }
        let start = self.len;
        let mut w = Limited {
            buf: &mut self.buf,
            len: start,
            limit: start + MAX_SPAN_GROUP_VALUE_BYTES,
        };
        let _ = f(&mut w);
        let end = w.len;
        // An empty value is no value.
        if end > start {
            self.ranges[i] = Some((start, end));
            self.len = end;
        }
    }

    /// Takes the fields of `g` this span has no value for yet.
    fn fill_from(&mut self, g: &SpanGroup) {
        for (k, v) in g.fields() {
            self.put(k, |w| w.write_str(v));
        }
    }

    fn hash_with(&self, base: u16) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        base.hash(&mut h);
        for (k, v) in self.iter() {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    fn matches(&self, g: &SpanGroup) -> bool {
        !g.is_other() && crate::aggregator::snapshot::same_fields(self.iter(), g.fields())
    }

    fn to_group(&self) -> SpanGroup {
        // The configured names live in a static: `&'static str` for the snapshot's groups.
        let fields: &'static [Box<str>] = self.fields;
        SpanGroup::with_fields(
            (0..fields.len())
                .filter_map(|i| self.get(i).map(|v| (&*fields[i], Box::<str>::from(v))))
                .collect(),
        )
    }
}

impl Visit for Values {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.put(f.name(), |w| w.write_str(v));
    }

    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.put(f.name(), |w| write!(w, "{v:?}"));
    }
}

/// One group.
#[derive(Debug)]
struct Entry {
    name: SpanName,
    /// The base group of the name (its own index for a base group).
    base: u16,
    group: SpanGroup,
    /// Base groups only: groups with values handed out for the name, and the name's `other`
    /// group (0: none yet).
    valued: usize,
    other: u16,
}

#[derive(Debug, Default)]
struct Table {
    /// Group `n` at `entries[n - 1]`.
    entries: Vec<Entry>,
    by_name: HashMap<SpanName, u16>,
    /// Groups with values, by the hash of their base and values (collisions are told apart by
    /// comparing the values).
    by_values: HashMap<u64, Vec<u16>>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// The highest group index handed out to a group of its own.
const LAST: usize = GROUP_MAX as usize - 1;

impl Table {
    fn entry(&self, g: u16) -> Option<&Entry> {
        self.entries.get(usize::from(g).checked_sub(1)?)
    }

    fn push(&mut self, e: Entry) -> Option<u16> {
        let n = self.entries.len() + 1;
        if n > LAST {
            return None;
        }
        self.entries.push(e);
        Some(n as u16)
    }

    fn base(&mut self, name: SpanName) -> u16 {
        if let Some(&n) = self.by_name.get(&name) {
            return n;
        }
        let n = self.entries.len() + 1;
        let Some(n) = self.push(Entry {
            name,
            base: n as u16,
            group: SpanGroup::default(),
            valued: 0,
            other: 0,
        }) else {
            return OTHER_SPAN;
        };
        self.by_name.insert(name, n);
        n
    }

    /// The name's `other` group, made on first use; its base group once the table is full.
    fn other_of(&mut self, base: u16) -> u16 {
        let Some(b) = self.entry(base) else {
            return base;
        };
        if b.other != 0 {
            return b.other;
        }
        let name = b.name;
        match self.push(Entry {
            name,
            base,
            group: SpanGroup::other(),
            valued: 0,
            other: 0,
        }) {
            Some(n) => {
                self.entries[usize::from(base) - 1].other = n;
                n
            }
            None => base,
        }
    }

    fn intern(&mut self, base: u16, v: &Values, per_name: usize) -> u16 {
        if v.is_empty() || self.entry(base).is_none_or(|b| b.base != base) {
            return base;
        }
        let h = v.hash_with(base);
        if let Some(c) = self.by_values.get(&h) {
            for &g in c {
                if self
                    .entry(g)
                    .is_some_and(|e| e.base == base && v.matches(&e.group))
                {
                    return g;
                }
            }
        }
        let (name, valued) = {
            let b = &self.entries[usize::from(base) - 1];
            (b.name, b.valued)
        };
        if valued >= per_name {
            return self.other_of(base);
        }
        let Some(n) = self.push(Entry {
            name,
            base,
            group: v.to_group(),
            valued: 0,
            other: 0,
        }) else {
            return self.other_of(base);
        };
        self.entries[usize::from(base) - 1].valued += 1;
        self.by_values.entry(h).or_default().push(n);
        n
    }
}

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Table::default))
}

/// The base group of span name `name` (interned on first use; `other` once the table is full).
pub(crate) fn base(name: SpanName) -> u16 {
    with_table(|t| t.base(name))
}

/// The group of a new span of base group `base` whose callsite has group fields: its name and
/// the values of those fields it has.
pub(crate) fn of_new_span(base: u16, attrs: &tracing_core::span::Attributes<'_>) -> u16 {
    let Some(c) = config() else { return base };
    let mut v = Values::new(c);
    attrs.record(&mut v);
    if v.is_empty() {
        return base;
    }
    with_table(|t| t.intern(base, &v, c.per_name))
}

/// The span word of span `word` once `values` are recorded into it, if its group changes: the
/// group of its name and its values (the ones it had, with the recorded ones over them). A span
/// in its name's `other` group stays there.
pub(crate) fn regroup(word: u64, values: &tracing_core::span::Record<'_>) -> Option<u64> {
    let c = config()?;
    let mut v = Values::new(c);
    values.record(&mut v);
    if v.is_empty() {
        return None;
    }
    let g = (word >> SPAN_BITS) as u16;
    let new = with_table(|t| {
        let e = t.entry(g)?;
        if e.group.is_other() {
            return None;
        }
        let base = e.base;
        v.fill_from(&e.group);
        Some(t.intern(base, &v, c.per_name))
    })?;
    (new != g).then(|| crate::alloc::header::span_word(new, word & SPAN_MASK))
}

/// The `(target, name)` of group `g`.
pub(crate) fn name_of(g: u16) -> Option<SpanName> {
    with_table(|t| t.entry(g).map(|e| e.name))
}

/// The base group of group `g` (`g` itself for a base group, `0` and `other`).
pub(crate) fn base_of(g: u16) -> u16 {
    with_table(|t| t.entry(g).map_or(g, |e| e.base))
}

/// The `(target, name)`, base group and field values of group `g`.
pub(crate) fn describe(g: u16) -> Option<(SpanName, u16, SpanGroup)> {
    with_table(|t| t.entry(g).map(|e| (e.name, e.base, e.group.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(fields: &[&str], per_name: usize) -> &'static Config {
        Box::leak(Box::new(Config {
            fields: fields.iter().map(|f| Box::<str>::from(*f)).collect(),
            per_name,
        }))
    }

    fn values(c: &'static Config, kv: &[(&str, &str)]) -> Values {
        let mut v = Values::new(c);
        for (k, x) in kv {
            v.put(k, |w| w.write_str(x));
        }
        v
    }

    #[test]
    fn groups_are_per_name_and_values_bounded_with_the_rest_as_other() {
        let c = cfg(&["http.route", "otel.name"], 3);
        let mut t = Table::default();
        let a = t.base(("t", "request"));
        let b = t.base(("t", "other-span"));
        assert_ne!(a, b);
        assert_eq!(t.base(("t", "request")), a, "interned once");
        let leak = t.intern(a, &values(c, &[("http.route", "/leak")]), c.per_name);
        assert_ne!(leak, a);
        assert_eq!(
            t.intern(a, &values(c, &[("http.route", "/leak")]), c.per_name),
            leak
        );
        // The same values under another name are another group.
        let leak_b = t.intern(b, &values(c, &[("http.route", "/leak")]), c.per_name);
        assert_ne!(leak_b, leak);
        assert_eq!(t.entry(leak).unwrap().base, a);
        assert_eq!(
            t.entry(leak).unwrap().group.field("http.route"),
            Some("/leak")
        );
        // No values: the name's base group.
        assert_eq!(t.intern(a, &values(c, &[]), c.per_name), a);
        // Field order is the configured one, whatever order they come in.
        let both = t.intern(
            a,
            &values(c, &[("otel.name", "GET /x"), ("http.route", "/x")]),
            c.per_name,
        );
        assert_eq!(
            t.entry(both).unwrap().group.to_string(),
            "http.route=/x, otel.name=GET /x"
        );
        let third = t.intern(a, &values(c, &[("http.route", "/3")]), c.per_name);
        // Three groups with values for `request`: the fourth value and later ones share
        // `other`.
        let o1 = t.intern(a, &values(c, &[("http.route", "/4")]), c.per_name);
        let o2 = t.intern(a, &values(c, &[("http.route", "/5")]), c.per_name);
        assert_eq!(o1, o2);
        assert!(t.entry(o1).unwrap().group.is_other());
        assert_eq!(t.entry(o1).unwrap().base, a);
        assert!(![a, leak, both, third].contains(&o1));
        // Known values keep their group.
        assert_eq!(
            t.intern(a, &values(c, &[("http.route", "/leak")]), c.per_name),
            leak
        );
        // Other names are not affected by `request`'s bound.
        assert_ne!(
            t.intern(b, &values(c, &[("http.route", "/4")]), c.per_name),
            t.entry(b).unwrap().other
        );
    }

    #[test]
    fn the_builder_rejects_bad_group_settings_before_starting() {
        let err = crate::Builder::default()
            .span_group_fields(["http.route", ""])
            .start()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"[\\\"http.route\\\", \\\"\\\"]\" for span_group_fields: expected at \
             most 8 non-empty field names"
        );
        let nine = (0..=MAX_SPAN_GROUP_FIELDS).map(|i| format!("f{i}"));
        assert!(crate::Builder::default()
            .span_group_fields(nine)
            .start()
            .unwrap_err()
            .to_string()
            .contains("span_group_fields"));
        let err = crate::Builder::default()
            .max_span_groups_per_name(0)
            .start()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"0\" for max_span_groups_per_name: expected from 1 to 4096"
        );
    }

    #[test]
    fn values_are_cut_at_the_bound_on_a_character_boundary() {
        let c = cfg(&["uri"], 10);
        let long = "é".repeat(MAX_SPAN_GROUP_VALUE_BYTES); // two bytes each
        let v = values(c, &[("uri", &long)]);
        let got = v.get(0).unwrap();
        assert_eq!(got.len(), MAX_SPAN_GROUP_VALUE_BYTES);
        assert!(long.starts_with(got));
        // An empty value is no value; a field not configured is ignored.
        let v = values(c, &[("uri", ""), ("method", "GET")]);
        assert!(v.is_empty());
    }

    #[test]
    fn a_full_table_falls_back_to_other_then_to_the_base_group() {
        let c = cfg(&["k"], 1000);
        let mut t = Table::default();
        let a = t.base(("t", "a"));
        // Fill the index space with groups of `a`, leaving room for exactly one more.
        while t.entries.len() < LAST - 1 {
            let n = t.entries.len();
            t.entries.push(Entry {
                name: ("t", "filler"),
                base: n as u16 + 1,
                group: SpanGroup::default(),
                valued: 0,
                other: 0,
            });
        }
        let one = t.intern(a, &values(c, &[("k", "1")]), c.per_name);
        assert_eq!(t.entries.len(), LAST);
        // Full: no `other` group can be made for `a` either, so its base group.
        assert_eq!(t.intern(a, &values(c, &[("k", "2")]), c.per_name), a);
        assert_eq!(t.intern(a, &values(c, &[("k", "1")]), c.per_name), one);
        assert_eq!(t.base(("t", "new name")), OTHER_SPAN);
    }
}
