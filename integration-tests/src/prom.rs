//! How Prometheus names OTLP metrics: the rules of its OTLP receiver (Prometheus 3,
//! `--web.enable-otlp-receiver`), implemented here so that the dashboards can be generated and
//! tested against the series Prometheus will hold.
//!
//! Sources (read for this module, cited per function):
//! - `prometheus/otlptranslator`: `metric_namer.go` (`MetricNamer.Build`, `normalizeName`,
//!   `addUnitTokens`, the unit maps), `unit_namer.go` (`UnitNamer.Build`,
//!   `buildUnitSuffixes`, `cleanUpUnit`), `label_namer.go` (`LabelNamer.Build`),
//!   `strconv.go` (`sanitizeLabelName`) and `strategy.go`; the tests of this module are the
//!   worked examples of `metric_namer_test.go` and `label_namer_test.go`.
//! - `prometheus/prometheus`, `storage/remote/otlptranslator/prometheusremotewrite/helper.go`
//!   (`createAttributes`: point attributes, promoted resource attributes, `service.name` and
//!   `service.namespace` → `job`, `service.instance.id` → `instance`;
//!   `addHistogramDataPoints`: `_sum`, `_count`, cumulative `_bucket{le}` with `+Inf`) and
//!   `metrics_to_prw.go` (sums and histograms of delta temporality are dropped).
//! - The OpenTelemetry specification, "Prometheus and OpenMetrics Compatibility", section
//!   "OTLP Metric points to Prometheus".
//!
//! The Prometheus configuration `otel-config/` ships pins [`PINNED`] (Prometheus' default), the
//! strategy the dashboards are written for; `otel-config/prometheus/metrics.md` lists every
//! contract metric's names under it.
//!
//! ```
//! use heapspan::export::names as n;
//! use heapspan_integration_tests::prom;
//!
//! let live = prom::contract_metric(n::TASK_MEMORY_LIVE);
//! assert_eq!(prom::metric_name(live), "heapspan_task_memory_live_bytes");
//! assert_eq!(prom::label_name(n::TOKIO_TASK_NAME), "tokio_task_name");
//! ```

use std::collections::BTreeMap;

use heapspan::export::names::{self as n, MetricName};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

/// Prometheus' `otlp.translation_strategy` values (`strategy.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Escape to `[a-zA-Z0-9_:]` and add unit and type suffixes (Prometheus' default).
    UnderscoreEscapingWithSuffixes,
    /// Escape, no suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// Keep UTF-8 names (dots stay), add suffixes.
    NoUtf8EscapingWithSuffixes,
    /// Keep names as they are.
    NoTranslation,
}

impl Strategy {
    /// The value in a Prometheus configuration.
    pub fn config_value(self) -> &'static str {
        match self {
            Strategy::UnderscoreEscapingWithSuffixes => "UnderscoreEscapingWithSuffixes",
            Strategy::UnderscoreEscapingWithoutSuffixes => "UnderscoreEscapingWithoutSuffixes",
            Strategy::NoUtf8EscapingWithSuffixes => "NoUTF8EscapingWithSuffixes",
            Strategy::NoTranslation => "NoTranslation",
        }
    }

    fn escapes(self) -> bool {
        matches!(
            self,
            Strategy::UnderscoreEscapingWithSuffixes | Strategy::UnderscoreEscapingWithoutSuffixes
        )
    }

    fn adds_suffixes(self) -> bool {
        matches!(
            self,
            Strategy::UnderscoreEscapingWithSuffixes | Strategy::NoUtf8EscapingWithSuffixes
        )
    }
}

/// The strategy heapspan's Prometheus configuration pins, and the dashboards are written for.
pub const PINNED: Strategy = Strategy::UnderscoreEscapingWithSuffixes;

/// The metric types the namer distinguishes (`otlptranslator.MetricType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// A monotonic cumulative sum (an OpenTelemetry Counter): gets `_total`.
    MonotonicCounter,
    /// A non-monotonic sum (an UpDownCounter): a Prometheus gauge, no type suffix.
    NonMonotonicCounter,
    /// A gauge: `_ratio` when its unit is `1`.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
    /// An exponential histogram (a native histogram in Prometheus).
    ExponentialHistogram,
    /// A summary.
    Summary,
    /// Unknown.
    Unknown,
}

impl MetricType {
    /// The type of a contract instrument (`counter`, `updowncounter`, `gauge`, `histogram`,
    /// the values of [`MetricName::instrument`]).
    pub fn of_instrument(instrument: &str) -> Option<MetricType> {
        Some(match instrument {
            "counter" => MetricType::MonotonicCounter,
            "updowncounter" => MetricType::NonMonotonicCounter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            _ => return None,
        })
    }
}

/// UCUM units and their Prometheus words (`metric_namer.go`, `unitMap`; the
/// `LegacyUnitMapping` words, which the version Prometheus 3 vendors uses).
const UNIT_WORDS: &[(&str, &str)] = &[
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tibibytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("1", ""),
    ("%", "percent"),
];

/// Units after a `/` and their (singular) words (`metric_namer.go`, `perUnitMap`).
const PER_UNIT_WORDS: &[(&str, &str)] = &[
    ("s", "second"),
    ("m", "minute"),
    ("h", "hour"),
    ("d", "day"),
    ("w", "week"),
    ("mo", "month"),
    ("y", "year"),
];

fn word<'a>(table: &[(&str, &'a str)], unit: &'a str) -> &'a str {
    table
        .iter()
        .find(|(u, _)| *u == unit)
        .map_or(unit, |(_, w)| w)
}

/// `[a-zA-Z0-9:]` (`isValidCompliantMetricChar`).
fn metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The unit's main and per parts as words, not yet cleaned (`buildUnitSuffixes`): units in
/// braces are dropped, the part after `/` becomes `per_<word>`.
fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let main = if main.is_empty() || main.contains(['{', '}']) {
        String::new()
    } else {
        word(UNIT_WORDS, main).to_owned()
    };
    let per = match parts.next() {
        Some(p) if !p.is_empty() => {
            let p = p.trim();
            if p.is_empty() || p.contains(['{', '}']) {
                String::new()
            } else {
                format!("per_{}", word(PER_UNIT_WORDS, p))
            }
        }
        _ => String::new(),
    };
    (main, per)
}

/// Every character outside `[a-zA-Z0-9:]` becomes `_`, runs of `_` become one, and a leading
/// `_` goes (`cleanUpUnit`).
fn clean_unit(unit: &str) -> String {
    let mapped: String = unit
        .chars()
        .map(|c| if metric_char(c) { c } else { '_' })
        .collect();
    let mut out = String::with_capacity(mapped.len());
    for c in mapped.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.strip_prefix('_').map(str::to_owned).unwrap_or(out)
}

/// The unit as Prometheus writes it in names (`UnitNamer.Build`): `By` → `bytes`,
/// `By/s` → `bytes_per_second`, `1` → nothing, `{allocation}` → nothing.
pub fn unit_name(strategy: Strategy, unit: &str) -> String {
    let (mut main, mut per) = unit_suffixes(unit);
    if strategy.escapes() {
        main = clean_unit(&main);
        per = clean_unit(&per);
    }
    let u = match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        _ => per,
    };
    let u = u.strip_prefix('_').unwrap_or(&u);
    u.strip_suffix('_').unwrap_or(u).to_owned()
}

/// The Prometheus metric name of an OTLP metric (`MetricNamer.Build`), or why it has none (a
/// name that escapes to nothing but underscores).
pub fn build_metric_name(
    strategy: Strategy,
    namespace: &str,
    name: &str,
    unit: &str,
    ty: MetricType,
) -> Result<String, String> {
    let built = if !strategy.escapes() {
        utf8_metric_name(strategy.adds_suffixes(), namespace, name, unit, ty)
    } else if strategy.adds_suffixes() {
        normalize_name(name, unit, ty, namespace)
    } else {
        // `buildCompliantMetricName` without suffixes: tokens of valid characters joined by
        // `_` (underscores are valid here, so runs of them stay).
        let valid = |c: char| metric_char(c) || c == '_';
        let join = |s: &str| {
            s.split(|c: char| !valid(c))
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("_")
        };
        let mut metric = join(name);
        if !namespace.is_empty() {
            metric = format!("{}_{metric}", join(namespace));
        } else if metric.starts_with(|c: char| c.is_ascii_digit()) {
            metric.insert(0, '_');
        }
        metric
    };
    if built.is_empty() {
        return Err(format!(
            "normalization for metric {name:?} resulted in empty name"
        ));
    }
    if strategy.escapes() && built != name && built.chars().all(|c| c == '_') {
        return Err(format!(
            "normalization for metric {name:?} resulted in invalid name {built:?}"
        ));
    }
    Ok(built)
}

/// `normalizeName`: tokens of `[a-zA-Z0-9:]` (so runs of other characters, `_` included, become
/// one `_`), the unit words unless a token already is one, `total` for monotonic counters,
/// `ratio` for gauges of unit `1`, the namespace first, `_` before a leading digit.
fn normalize_name(name: &str, unit: &str, ty: MetricType, namespace: &str) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let (main, per) = unit_suffixes(unit);
    let (mut main, mut per) = (clean_unit(&main), clean_unit(&per));
    // `addUnitTokens`.
    if tokens.contains(&main) {
        main.clear();
    }
    if per == "per_" {
        per.clear();
    } else {
        if let Some(p) = per.strip_suffix('_') {
            per = p.to_owned();
        }
        if tokens.contains(&per) {
            per.clear();
        }
    }
    if !per.is_empty() {
        if let Some(m) = main.strip_suffix('_') {
            main = m.to_owned();
        }
    }
    for t in [main, per] {
        if !t.is_empty() {
            tokens.push(t);
        }
    }
    if ty == MetricType::MonotonicCounter {
        tokens.retain(|t| t != "total");
        tokens.push("total".to_owned());
    }
    if unit == "1" && ty == MetricType::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".to_owned());
    }
    if !namespace.is_empty() {
        tokens.insert(0, namespace.to_owned());
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `buildMetricName`: UTF-8 names kept, suffixes appended unless already there.
fn utf8_metric_name(
    suffixes: bool,
    namespace: &str,
    name: &str,
    unit: &str,
    ty: MetricType,
) -> String {
    let mut name = if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}_{name}")
    };
    if !suffixes {
        return name;
    }
    let trim = |name: &mut String, suffix: &str| {
        if name.ends_with(suffix) && name.len() > suffix.len() + 1 {
            name.truncate(name.len() - suffix.len() - 1);
        }
    };
    let ratio = unit == "1" && ty == MetricType::Gauge;
    if ratio {
        trim(&mut name, "ratio");
    }
    let total = ty == MetricType::MonotonicCounter;
    if total {
        trim(&mut name, "total");
    }
    let (main, per) = unit_suffixes(unit);
    if !per.is_empty() {
        trim(&mut name, &per);
    }
    if !main.is_empty() && !name.ends_with(&main) {
        name = format!("{name}_{main}");
    }
    if !per.is_empty() {
        name = format!("{name}_{per}");
    }
    if total {
        name.push_str("_total");
    }
    if ratio {
        name.push_str("_ratio");
    }
    name
}

/// The Prometheus label name of an OTLP attribute (`LabelNamer.Build`): each character outside
/// `[a-zA-Z0-9_]` becomes `_` (one each, no merging: `sanitizeLabelName`), a leading digit gets
/// `key_`, a single leading `_` gets `key`.
pub fn build_label_name(strategy: Strategy, label: &str) -> Result<String, String> {
    if label.is_empty() {
        return Err("normalization for label name \"\" resulted in empty name".to_owned());
    }
    if !strategy.escapes() {
        return Ok(label.to_owned());
    }
    let mut out: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    if out != label && out.chars().all(|c| c == '_') {
        return Err(format!(
            "normalization for label name {label:?} resulted in invalid name {out:?}"
        ));
    }
    Ok(out)
}

/// Every metric of heapspan's contract: [`n::METRICS`], [`n::GRAPH_METRICS`],
/// [`n::FINDING_METRICS`], [`n::TOKIO_METRICS`] and [`n::TOKIO_UNSTABLE_METRICS`].
pub fn contract() -> impl Iterator<Item = &'static MetricName> {
    n::METRICS
        .iter()
        .chain(n::GRAPH_METRICS)
        .chain(n::FINDING_METRICS)
        .chain(n::TOKIO_METRICS)
        .chain(n::TOKIO_UNSTABLE_METRICS)
}

/// The contract's entry for metric `name` (panics when the contract has none: a dashboard or
/// test naming a metric heapspan does not export is a bug).
#[track_caller]
pub fn contract_metric(name: &str) -> &'static MetricName {
    contract()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not a metric of heapspan::export::names"))
}

/// The metric type of a contract metric.
#[track_caller]
pub fn metric_type(m: &MetricName) -> MetricType {
    MetricType::of_instrument(m.instrument)
        .unwrap_or_else(|| panic!("{}: unknown instrument {}", m.name, m.instrument))
}

/// The Prometheus name of a contract metric under [`PINNED`] (its histogram's base name).
#[track_caller]
pub fn metric_name(m: &MetricName) -> String {
    build_metric_name(PINNED, "", m.name, m.unit, metric_type(m)).unwrap_or_else(|e| panic!("{e}"))
}

/// The Prometheus series names of a contract metric under [`PINNED`]: one, or a histogram's
/// `_bucket`, `_sum` and `_count`.
pub fn series_names(m: &MetricName) -> Vec<String> {
    let base = metric_name(m);
    if metric_type(m) == MetricType::Histogram {
        ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{base}{s}"))
            .collect()
    } else {
        vec![base]
    }
}

/// The Prometheus label name of a contract attribute under [`PINNED`].
#[track_caller]
pub fn label_name(attribute: &str) -> String {
    build_label_name(PINNED, attribute).unwrap_or_else(|e| panic!("{e}"))
}

/// What the receiver is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The translation strategy.
    pub strategy: Strategy,
    /// Resource attributes copied onto every series (`otlp.promote_resource_attributes`).
    pub promote_resource_attributes: Vec<String>,
}

impl Default for Settings {
    /// [`PINNED`], nothing promoted beyond `job` and `instance`.
    fn default() -> Self {
        Settings {
            strategy: PINNED,
            promote_resource_attributes: Vec::new(),
        }
    }
}

/// One Prometheus sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name (`__name__`).
    pub name: String,
    /// The other labels, sorted.
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch.
    pub t_ms: i64,
    /// The value; `None` is a staleness marker (a point flagged "no recorded value").
    pub value: Option<f64>,
}

impl Sample {
    /// `name{label="value",…}`, the series in PromQL's notation (and promtool's).
    pub fn series(&self) -> String {
        series(&self.name, &self.labels)
    }
}

/// `name{label="value",…}` with label values escaped as PromQL strings.
pub fn series(name: &str, labels: &BTreeMap<String, String>) -> String {
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{name}{{{}}}", body.join(","))
}

/// A PromQL double-quoted string's contents.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// An attribute value as a label value (pdata's `Value.AsString`) for the value types heapspan
/// puts on metrics and resources: strings, integers, booleans, and doubles between 1e-6 and
/// 1e21 (or 0), which pdata writes as JSON numbers in plain notation, the shortest form, as
/// Rust's `Display` does. Arrays, maps, bytes and doubles pdata would write in exponent
/// notation are an error here: heapspan sends none.
fn value_string(kv: &KeyValue) -> Result<String, String> {
    let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
        return Ok(String::new());
    };
    Ok(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) if *d == 0.0 || (1e-6..1e21).contains(&d.abs()) => {
            d.to_string()
        }
        _ => {
            return Err(format!(
                "attribute {}: arrays, maps, bytes and doubles in exponent notation are not \
                 translated here",
                kv.key
            ))
        }
    })
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// The labels of one point (`createAttributes`): its attributes, sorted by key and escaped
/// (values of keys that escape alike joined by `;`), the promoted resource attributes not
/// already there, `job` from `service.namespace/service.name` and `instance` from
/// `service.instance.id`.
fn point_labels(
    resource: &[KeyValue],
    attributes: &[KeyValue],
    settings: &Settings,
) -> Result<BTreeMap<String, String>, String> {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for kv in sorted {
        let key = build_label_name(settings.strategy, &kv.key)?;
        let value = value_string(kv)?;
        labels
            .entry(key)
            .and_modify(|v| {
                v.push(';');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut promoted: Vec<&String> = settings.promote_resource_attributes.iter().collect();
    promoted.sort();
    for name in promoted {
        if let Some(kv) = attr(resource, name) {
            let value = value_string(kv)?;
            labels
                .entry(build_label_name(settings.strategy, name)?)
                .or_insert(value);
        }
    }
    if let Some(service) = attr(resource, "service.name") {
        let mut job = value_string(service)?;
        if let Some(ns) = attr(resource, "service.namespace") {
            job = format!("{}/{job}", value_string(ns)?);
        }
        labels.insert("job".to_owned(), job);
    }
    if let Some(instance) = attr(resource, "service.instance.id") {
        labels.insert("instance".to_owned(), value_string(instance)?);
    }
    Ok(labels)
}

/// OTLP aggregation temporality: cumulative.
const CUMULATIVE: i32 = 2;
/// OTLP data point flag: no recorded value.
const NO_RECORDED_VALUE: u32 = 1;

/// `le` as Prometheus writes it (`strconv.FormatFloat(bound, 'f', -1, 64)`; Rust's `Display`
/// for `f64` is also the shortest round-trip form, never in exponent notation).
fn le(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

/// The Prometheus samples of one OTLP export request, as Prometheus' OTLP receiver stores them.
/// Delta sums and histograms are dropped (as Prometheus does by default); exponential
/// histograms (native histograms in Prometheus, which promtool's series notation cannot hold)
/// are an error.
pub fn translate(
    req: &ExportMetricsServiceRequest,
    settings: &Settings,
) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let Some(data) = &m.data else { continue };
            let ty = match data {
                Data::Gauge(_) => MetricType::Gauge,
                Data::Sum(s) if s.is_monotonic => MetricType::MonotonicCounter,
                Data::Sum(_) => MetricType::NonMonotonicCounter,
                Data::Histogram(_) => MetricType::Histogram,
                Data::ExponentialHistogram(_) => MetricType::ExponentialHistogram,
                Data::Summary(_) => MetricType::Summary,
            };
            let name = build_metric_name(settings.strategy, "", &m.name, &m.unit, ty)?;
            let mut push = |name: String, labels: BTreeMap<String, String>, t: u64, v, flags| {
                out.push(Sample {
                    name,
                    labels,
                    t_ms: i64::try_from(t / 1_000_000).unwrap_or(i64::MAX),
                    value: (flags & NO_RECORDED_VALUE == 0).then_some(v),
                });
            };
            match data {
                Data::Gauge(g) => {
                    for p in &g.data_points {
                        let labels = point_labels(resource, &p.attributes, settings)?;
                        push(name.clone(), labels, p.time_unix_nano, number(p), p.flags);
                    }
                }
                Data::Sum(s) => {
                    if s.aggregation_temporality != CUMULATIVE {
                        continue;
                    }
                    for p in &s.data_points {
                        let labels = point_labels(resource, &p.attributes, settings)?;
                        push(name.clone(), labels, p.time_unix_nano, number(p), p.flags);
                    }
                }
                Data::Histogram(h) => {
                    if h.aggregation_temporality != CUMULATIVE {
                        continue;
                    }
                    for p in &h.data_points {
                        let base = point_labels(resource, &p.attributes, settings)?;
                        let t = p.time_unix_nano;
                        if let Some(sum) = p.sum {
                            push(format!("{name}_sum"), base.clone(), t, sum, p.flags);
                        }
                        push(
                            format!("{name}_count"),
                            base.clone(),
                            t,
                            p.count as f64,
                            p.flags,
                        );
                        let mut cumulative = 0u64;
                        for (bound, count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
                            cumulative = cumulative.saturating_add(*count);
                            let mut labels = base.clone();
                            labels.insert("le".to_owned(), le(*bound));
                            push(
                                format!("{name}_bucket"),
                                labels,
                                t,
                                cumulative as f64,
                                p.flags,
                            );
                        }
                        let mut labels = base;
                        labels.insert("le".to_owned(), le(f64::INFINITY));
                        push(format!("{name}_bucket"), labels, t, p.count as f64, p.flags);
                    }
                }
                Data::Summary(s) => {
                    for p in &s.data_points {
                        let base = point_labels(resource, &p.attributes, settings)?;
                        let t = p.time_unix_nano;
                        push(format!("{name}_sum"), base.clone(), t, p.sum, p.flags);
                        push(
                            format!("{name}_count"),
                            base.clone(),
                            t,
                            p.count as f64,
                            p.flags,
                        );
                        for q in &p.quantile_values {
                            let mut labels = base.clone();
                            labels.insert("quantile".to_owned(), q.quantile.to_string());
                            push(name.clone(), labels, t, q.value, p.flags);
                        }
                    }
                }
                Data::ExponentialHistogram(_) => {
                    return Err(format!(
                        "{}: exponential histograms become native histograms, which this \
                         translation does not produce",
                        m.name
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn number(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use MetricType::*;
    use Strategy::*;

    /// `metric_namer_test.go`, `TestMetricNamer_Build`: (strategy, namespace, name, unit,
    /// type, Prometheus name, unit name). The cases with `KeepMultipleUnderscores` (an option
    /// Prometheus does not set) are left out.
    #[allow(clippy::type_complexity)]
    #[rustfmt::skip]
    const NAMER_CASES: &[(Strategy, &str, &str, &str, MetricType, &str, &str)] = &[
        // Escaping, no suffixes.
        (UnderscoreEscapingWithoutSuffixes, "", "simple_metric", "", Gauge, "simple_metric", ""),
        (UnderscoreEscapingWithoutSuffixes, "", "metric@with#special$chars", "", Gauge, "metric_with_special_chars", ""),
        (UnderscoreEscapingWithoutSuffixes, "", "123metric", "", Gauge, "_123metric", ""),
        (UnderscoreEscapingWithoutSuffixes, "test_namespace", "simple_metric", "", Gauge, "test_namespace_simple_metric", ""),
        (UnderscoreEscapingWithoutSuffixes, "", "metric@@##$$name", "", Gauge, "metric_name", ""),
        (UnderscoreEscapingWithoutSuffixes, "test@namespace!!??", "metric", "", Gauge, "test_namespace_metric", ""),
        // Escaping with suffixes (Prometheus' default, heapspan's pinned strategy).
        (UnderscoreEscapingWithSuffixes, "", "requests", "", MonotonicCounter, "requests_total", ""),
        (UnderscoreEscapingWithSuffixes, "", "cpu_usage", "1", Gauge, "cpu_usage_ratio", ""),
        (UnderscoreEscapingWithSuffixes, "", "items", "1", MonotonicCounter, "items_total", ""),
        (UnderscoreEscapingWithSuffixes, "", "response_time", "ms", Gauge, "response_time_milliseconds", "milliseconds"),
        (UnderscoreEscapingWithSuffixes, "", "memory_usage", "By", Gauge, "memory_usage_bytes", "bytes"),
        (UnderscoreEscapingWithSuffixes, "", "requests", "1/s", Gauge, "requests_per_second", "per_second"),
        (UnderscoreEscapingWithSuffixes, "", "throughput", "By/s", Gauge, "throughput_bytes_per_second", "bytes_per_second"),
        (UnderscoreEscapingWithSuffixes, "", "custom_metric", "custom_unit", Gauge, "custom_metric_custom_unit", "custom_unit"),
        (UnderscoreEscapingWithSuffixes, "", "custom_metric", "{custom}", Gauge, "custom_metric", ""),
        (UnderscoreEscapingWithSuffixes, "", "custom_metric", "By/{custom}", Gauge, "custom_metric_bytes", "bytes"),
        (UnderscoreEscapingWithSuffixes, "", "requests_total", "", MonotonicCounter, "requests_total", ""),
        (UnderscoreEscapingWithSuffixes, "", "cpu_usage_ratio", "1", Gauge, "cpu_usage_ratio", ""),
        (UnderscoreEscapingWithSuffixes, "", "response_time_seconds", "s", Gauge, "response_time_seconds", "seconds"),
        (UnderscoreEscapingWithSuffixes, "app", "requests", "1/s", MonotonicCounter, "app_requests_per_second_total", "per_second"),
        (UnderscoreEscapingWithSuffixes, "app", "123_requests", "", MonotonicCounter, "app_123_requests_total", ""),
        (UnderscoreEscapingWithSuffixes, "", "metric__with__multiple__underscores", "unit__multiple__underscores", Gauge, "metric_with_multiple_underscores_unit_multiple_underscores", "unit_multiple_underscores"),
        (UnderscoreEscapingWithSuffixes, "", "custom_metric", "unit@with#special/chars", Gauge, "custom_metric_unit_with_special_per_chars", "unit_with_special_per_chars"),
        // UTF-8 kept.
        (NoTranslation, "", "métric_with_ñ_chars", "", Gauge, "métric_with_ñ_chars", ""),
        (NoTranslation, "test_namespace", "métric_with_ñ_chars", "", Gauge, "test_namespace_métric_with_ñ_chars", ""),
        (NoUtf8EscapingWithSuffixes, "", "requêsts", "", MonotonicCounter, "requêsts_total", ""),
        (NoUtf8EscapingWithSuffixes, "", "cpu_usagé", "1", Gauge, "cpu_usagé_ratio", ""),
        (NoUtf8EscapingWithSuffixes, "", "respønse_time", "ms", Gauge, "respønse_time_milliseconds", "milliseconds"),
        (NoUtf8EscapingWithSuffixes, "", "requêsts", "1/s", Gauge, "requêsts_per_second", "per_second"),
        (NoUtf8EscapingWithSuffixes, "ñamespace", "requêsts", "1/s", MonotonicCounter, "ñamespace_requêsts_per_second_total", "per_second"),
        (NoUtf8EscapingWithSuffixes, "", "@#$%", "", MonotonicCounter, "@#$%_total", ""),
        (NoUtf8EscapingWithSuffixes, "test@namespace", "metric", "", MonotonicCounter, "test@namespace_metric_total", ""),
        // Types.
        (UnderscoreEscapingWithSuffixes, "", "request_duration", "s", Histogram, "request_duration_seconds", "seconds"),
        (UnderscoreEscapingWithSuffixes, "", "request_size", "By", ExponentialHistogram, "request_size_bytes", "bytes"),
        (UnderscoreEscapingWithSuffixes, "", "response_time", "ms", Summary, "response_time_milliseconds", "milliseconds"),
        (UnderscoreEscapingWithSuffixes, "", "active_connections", "", NonMonotonicCounter, "active_connections", ""),
        (UnderscoreEscapingWithSuffixes, "", "unknown_metric", "", Unknown, "unknown_metric", ""),
        // Units.
        (UnderscoreEscapingWithSuffixes, "", "uptime", "d", Gauge, "uptime_days", "days"),
        (UnderscoreEscapingWithSuffixes, "", "duration", "h", Gauge, "duration_hours", "hours"),
        (UnderscoreEscapingWithSuffixes, "", "timeout", "min", Gauge, "timeout_minutes", "minutes"),
        (UnderscoreEscapingWithSuffixes, "", "latency", "us", Gauge, "latency_microseconds", "microseconds"),
        (UnderscoreEscapingWithSuffixes, "", "precision_time", "ns", Gauge, "precision_time_nanoseconds", "nanoseconds"),
        (UnderscoreEscapingWithSuffixes, "", "cache_size", "KiBy", Gauge, "cache_size_kibibytes", "kibibytes"),
        (UnderscoreEscapingWithSuffixes, "", "memory", "MiBy", Gauge, "memory_mebibytes", "mebibytes"),
        (UnderscoreEscapingWithSuffixes, "", "storage", "GiBy", Gauge, "storage_gibibytes", "gibibytes"),
        (UnderscoreEscapingWithSuffixes, "", "capacity", "TiBy", Gauge, "capacity_tibibytes", "tibibytes"),
        (UnderscoreEscapingWithSuffixes, "", "transfer", "KBy", Gauge, "transfer_kilobytes", "kilobytes"),
        (UnderscoreEscapingWithSuffixes, "", "download", "MBy", Gauge, "download_megabytes", "megabytes"),
        (UnderscoreEscapingWithSuffixes, "", "backup", "GBy", Gauge, "backup_gigabytes", "gigabytes"),
        (UnderscoreEscapingWithSuffixes, "", "archive", "TBy", Gauge, "archive_terabytes", "terabytes"),
        (UnderscoreEscapingWithSuffixes, "", "distance", "m", Gauge, "distance_meters", "meters"),
        (UnderscoreEscapingWithSuffixes, "", "voltage", "V", Gauge, "voltage_volts", "volts"),
        (UnderscoreEscapingWithSuffixes, "", "current", "A", Gauge, "current_amperes", "amperes"),
        (UnderscoreEscapingWithSuffixes, "", "energy", "J", Gauge, "energy_joules", "joules"),
        (UnderscoreEscapingWithSuffixes, "", "power", "W", Gauge, "power_watts", "watts"),
        (UnderscoreEscapingWithSuffixes, "", "weight", "g", Gauge, "weight_grams", "grams"),
        (UnderscoreEscapingWithSuffixes, "", "temperature", "Cel", Gauge, "temperature_celsius", "celsius"),
        (UnderscoreEscapingWithSuffixes, "", "frequency", "Hz", Gauge, "frequency_hertz", "hertz"),
        (UnderscoreEscapingWithSuffixes, "", "cpu_usage", "%", Gauge, "cpu_usage_percent", "percent"),
        (UnderscoreEscapingWithSuffixes, "", "requests", "1/m", Gauge, "requests_per_minute", "per_minute"),
        (UnderscoreEscapingWithSuffixes, "", "events", "1/h", Gauge, "events_per_hour", "per_hour"),
        (UnderscoreEscapingWithSuffixes, "", "transactions", "1/d", Gauge, "transactions_per_day", "per_day"),
        (UnderscoreEscapingWithSuffixes, "", "reports", "1/w", Gauge, "reports_per_week", "per_week"),
        (UnderscoreEscapingWithSuffixes, "", "invoices", "1/mo", Gauge, "invoices_per_month", "per_month"),
        (UnderscoreEscapingWithSuffixes, "", "renewals", "1/y", Gauge, "renewals_per_year", "per_year"),
        (UnderscoreEscapingWithSuffixes, "", "custom", "1/custom_unit", Gauge, "custom_per_custom_unit", "per_custom_unit"),
        (UnderscoreEscapingWithSuffixes, "", "metric", "By/", Gauge, "metric_bytes", "bytes"),
        (UnderscoreEscapingWithSuffixes, "", "metric", " By / s ", Gauge, "metric_bytes_per_second", "bytes_per_second"),
        (UnderscoreEscapingWithSuffixes, "", "metric", "/", Gauge, "metric", ""),
        // Common OpenTelemetry metrics.
        (UnderscoreEscapingWithSuffixes, "", "http.request.duration", "ms", Histogram, "http_request_duration_milliseconds", "milliseconds"),
        (NoTranslation, "", "http.request.duration", "ms", Histogram, "http.request.duration", ""),
        (UnderscoreEscapingWithSuffixes, "", "http.requests", "1", MonotonicCounter, "http_requests_total", ""),
        (NoTranslation, "", "http.requests", "1", MonotonicCounter, "http.requests", ""),
    ];

    #[test]
    fn prometheus_worked_examples_of_metric_and_unit_names() {
        for &(strategy, ns, name, unit, ty, want, want_unit) in NAMER_CASES {
            assert_eq!(
                build_metric_name(strategy, ns, name, unit, ty).as_deref(),
                Ok(want),
                "{strategy:?} {ns:?} {name:?} {unit:?} {ty:?}"
            );
            if strategy.adds_suffixes() {
                assert_eq!(unit_name(strategy, unit), want_unit, "unit {unit:?}");
                assert!(want.contains(want_unit), "{want} holds {want_unit}");
            }
        }
    }

    #[test]
    fn names_that_escape_to_nothing_are_errors() {
        // metric_namer_test.go: "empty metric name", "metric name with only special characters".
        for strategy in [
            UnderscoreEscapingWithSuffixes,
            UnderscoreEscapingWithoutSuffixes,
        ] {
            assert!(build_metric_name(strategy, "", "", "", Gauge).is_err());
            assert!(build_metric_name(strategy, "", "@#$%", "", Gauge).is_err());
        }
    }

    /// `label_namer_test.go`, `labelTestCases` (escaping; the empty result is an error).
    #[test]
    fn prometheus_worked_examples_of_label_names() {
        for (label, want) in [
            ("label:with:colons", "label_with_colons"),
            ("LabelWithCapitalLetters", "LabelWithCapitalLetters"),
            ("label!with&special$chars)", "label_with_special_chars_"),
            (
                "label_with_foreign_characters_字符",
                "label_with_foreign_characters___",
            ),
            ("label.with.dots", "label_with_dots"),
            ("123label", "key_123label"),
            // label_namer.go at 73b608c prefixes a single leading `_` with `key` (older
            // versions made it an option); heapspan has no such attribute.
            (
                "_label_starting_with_underscore",
                "key_label_starting_with_underscore",
            ),
            (
                "__label_starting_with_2underscores",
                "__label_starting_with_2underscores",
            ),
            ("regular label", "regular_label"),
        ] {
            assert_eq!(
                build_label_name(PINNED, label).as_deref(),
                Ok(want),
                "{label}"
            );
            assert_eq!(
                build_label_name(NoUtf8EscapingWithSuffixes, label).as_deref(),
                Ok(label)
            );
        }
        // TestBuildLabel_Errors (`__` is left as it is, a reserved name, not an error, in the
        // label_namer.go whose checks these are).
        for label in ["", "ようこそ"] {
            assert!(build_label_name(PINNED, label).is_err(), "{label}");
        }
        assert!(build_label_name(NoUtf8EscapingWithSuffixes, "").is_err());
    }

    /// The examples of `telemetry.md`, "How the names look in Prometheus".
    #[test]
    fn the_telemetry_contract_examples() {
        let name = |m: &str| metric_name(contract_metric(m));
        assert_eq!(name(n::TASK_MEMORY_LIVE), "heapspan_task_memory_live_bytes");
        assert_eq!(
            name(n::TASK_MEMORY_ALLOCATED),
            "heapspan_task_memory_allocated_bytes_total"
        );
        assert_eq!(name(n::TASK_ALLOCATIONS), "heapspan_task_allocations_total");
        assert_eq!(name(n::TASK_MEMORY_PEAK), "heapspan_task_memory_peak_bytes");
        assert_eq!(label_name(n::TOKIO_TASK_NAME), "tokio_task_name");
        assert_eq!(
            series_names(contract_metric(n::ALLOCATION_SIZE)),
            [
                "heapspan_allocation_size_bytes_bucket",
                "heapspan_allocation_size_bytes_sum",
                "heapspan_allocation_size_bytes_count"
            ]
        );
        assert_eq!(
            name(n::GRAPH_SCAN_PAUSE),
            "heapspan_graph_scan_pause_seconds"
        );
        assert_eq!(
            name(n::TOKIO_RUNTIME_WORKER_BUSY_DURATION),
            "tokio_runtime_worker_busy_duration_seconds_total"
        );
        // With NoUTF8EscapingWithSuffixes the dots stay.
        assert_eq!(
            build_metric_name(
                NoUtf8EscapingWithSuffixes,
                "",
                n::TASK_MEMORY_LIVE,
                n::UNIT_BYTES,
                NonMonotonicCounter
            )
            .as_deref(),
            Ok("heapspan.task.memory.live_bytes")
        );
    }

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.to_owned(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    #[test]
    fn resource_attributes_become_job_and_instance_and_promoted_labels() {
        let resource = [
            kv("service.name", s("cache")),
            kv("service.namespace", s("shop")),
            kv("service.instance.id", s("pod-1")),
            kv("deployment.environment", s("prod")),
        ];
        let attrs = [
            kv("tokio.task.name", s("loader")),
            kv("a.b", any_value::Value::IntValue(1)),
            kv("a_b", any_value::Value::BoolValue(true)),
        ];
        let settings = Settings {
            promote_resource_attributes: vec!["deployment.environment".to_owned()],
            ..Settings::default()
        };
        let labels = point_labels(&resource, &attrs, &settings).unwrap();
        let want: BTreeMap<String, String> = [
            ("a_b", "1;true"),
            ("deployment_environment", "prod"),
            ("instance", "pod-1"),
            ("job", "shop/cache"),
            ("tokio_task_name", "loader"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, want);
        // Values heapspan never sends are refused, not guessed.
        let array = kv("a", any_value::Value::ArrayValue(Default::default()));
        assert!(point_labels(&resource, &[array], &settings).is_err());
        assert_eq!(
            series("m", &labels),
            "m{a_b=\"1;true\",deployment_environment=\"prod\",instance=\"pod-1\",\
             job=\"shop/cache\",tokio_task_name=\"loader\"}"
        );
    }

    #[test]
    fn histograms_become_cumulative_buckets_sum_and_count() {
        use opentelemetry_proto::tonic::metrics::v1::{
            Histogram as H, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("app"))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: n::ALLOCATION_SIZE.to_owned(),
                        unit: n::UNIT_BYTES.to_owned(),
                        data: Some(Data::Histogram(H {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 5_000_000_000,
                                count: 6,
                                sum: Some(100.0),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![16.0, 64.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: CUMULATIVE,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let got: Vec<(String, f64)> = translate(&req, &Settings::default())
            .unwrap()
            .iter()
            .map(|s| (s.series(), s.value.unwrap()))
            .collect();
        let b = "heapspan_allocation_size_bytes";
        assert_eq!(
            got,
            [
                (format!("{b}_sum{{job=\"app\"}}"), 100.0),
                (format!("{b}_count{{job=\"app\"}}"), 6.0),
                (format!("{b}_bucket{{job=\"app\",le=\"16\"}}"), 1.0),
                (format!("{b}_bucket{{job=\"app\",le=\"64\"}}"), 3.0),
                (format!("{b}_bucket{{job=\"app\",le=\"+Inf\"}}"), 6.0),
            ]
        );
    }
}
