//! The Grafana dashboards of `otel-config/grafana/dashboards/` and the table of Prometheus names
//! `otel-config/prometheus/metrics.md`, generated from heapspan's telemetry contract
//! ([`heapspan::export::names`]) through the Prometheus translation ([`crate::prom`]), so that a
//! renamed metric cannot leave a stale panel: every query names its metrics by their contract
//! constants. `cargo run -p heapspan-integration-tests --bin gen-dashboards` writes the files;
//! `tests/dashboards.rs` fails when the committed ones differ, and runs every query against
//! real heapspan output.
//!
//! The dashboards are for Grafana 11.6 (dashboard schema version [`SCHEMA_VERSION`]), with the
//! data sources `otel-config/grafana/provisioning/datasources/heapspan.yaml` provisions (by
//! uid: [`PROMETHEUS`], [`TEMPO`], [`JAEGER`]). Their variables: `service` (the `job` label:
//! `service.name`, or `service.namespace/service.name`), `task` (`tokio.task.name`) and `span`
//! (`heapspan.span.name`).

use heapspan::export::names as n;
use serde_json::{json, Value};

use crate::prom;

/// Grafana's dashboard schema version in Grafana 11.6 (and in grafana-foundation-sdk 11.6's
/// `Dashboard` default).
pub const SCHEMA_VERSION: u32 = 41;
/// The provisioned Prometheus data source.
pub const PROMETHEUS: &str = "heapspan-prometheus";
/// The provisioned Tempo data source.
pub const TEMPO: &str = "heapspan-tempo";
/// The provisioned Jaeger data source.
pub const JAEGER: &str = "heapspan-jaeger";
/// Where the dashboards go, from the workspace root.
pub const DASHBOARD_DIR: &str = "otel-config/grafana/dashboards";
/// Where the table of Prometheus names goes, from the workspace root.
pub const METRICS_MD: &str = "otel-config/prometheus/metrics.md";
/// The command that rewrites the generated files.
pub const REGENERATE: &str = "cargo run -p heapspan-integration-tests --bin gen-dashboards";

/// One generated file: its path from the workspace root and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Path from the workspace root.
    pub path: String,
    /// Contents.
    pub text: String,
}

/// Every generated file: the four dashboards and the table of names.
pub fn generated() -> Vec<Generated> {
    let mut out: Vec<Generated> = dashboards()
        .into_iter()
        .map(|(file, board)| Generated {
            path: format!("{DASHBOARD_DIR}/{file}"),
            text: format!("{}\n", serde_json::to_string_pretty(&board).expect("JSON")),
        })
        .collect();
    out.push(Generated {
        path: METRICS_MD.to_owned(),
        text: metrics_md(),
    });
    out
}

/// The dashboards: (file name, dashboard JSON).
pub fn dashboards() -> Vec<(&'static str, Value)> {
    vec![
        ("overview.json", overview()),
        ("findings.json", findings()),
        ("graph.json", graph()),
        ("runtime.json", runtime()),
    ]
}

// ---- PromQL from the contract ----

/// The label filters a selector carries: every one filters on the service, some on the task or
/// span variable too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Service,
    Task,
    Span,
}

/// The selector of contract metric `metric`'s series (`suffix`: `""`, or `_bucket`, `_sum`,
/// `_count` of a histogram), filtered by the dashboard's variables.
fn sel(metric: &str, suffix: &str, by: By) -> String {
    let name = prom::metric_name(prom::contract_metric(metric));
    let mut filters = vec!["job=~\"$service\"".to_owned()];
    match by {
        By::Service => {}
        By::Task => filters.push(format!("{}=~\"$task\"", l(n::TOKIO_TASK_NAME))),
        By::Span => filters.push(format!("{}=~\"$span\"", l(n::SPAN_NAME))),
    }
    format!("{name}{suffix}{{{}}}", filters.join(", "))
}

/// The Prometheus label of a contract attribute.
fn l(attribute: &str) -> String {
    prom::label_name(attribute)
}

/// `rate(<selector>[$__rate_interval])`.
fn rate(metric: &str, suffix: &str, by: By) -> String {
    format!("rate({}[$__rate_interval])", sel(metric, suffix, by))
}

/// `increase(<selector>[$__rate_interval])`.
fn increase(metric: &str, by: By) -> String {
    format!("increase({}[$__rate_interval])", sel(metric, "", by))
}

/// `sum by (<labels>) (<expr>)`.
fn sum_by(labels: &[&str], expr: &str) -> String {
    let labels: Vec<String> = labels.iter().map(|a| l(a)).collect();
    format!("sum by ({}) ({expr})", labels.join(", "))
}

/// `{{label}}` legends.
fn legend(attributes: &[&str]) -> String {
    let parts: Vec<String> = attributes
        .iter()
        .map(|a| format!("{{{{{}}}}}", l(a)))
        .collect();
    parts.join(" ")
}

/// The overview's "Live bytes by task name" query: the one whose value for the planted task
/// `tests/dashboards.rs` checks exactly.
pub fn live_by_task_expr() -> String {
    sum_by(
        &[n::TOKIO_TASK_NAME],
        &sel(n::TASK_MEMORY_LIVE, "", By::Task),
    )
}

/// The overview's "Live bytes by span name and group" query (checked exactly for the planted
/// span group).
pub fn live_by_span_group_expr() -> String {
    sum_by(
        &[n::SPAN_NAME, n::SPAN_GROUP],
        &sel(n::SPAN_MEMORY_LIVE, "", By::Span),
    )
}

// ---- TraceQL from the contract ----

/// `{ name = "<span>" && resource.service.name =~ "$service" <&& more> } | select(<attrs>)`.
fn traceql(span: &str, more: &[String], select: &[&str]) -> String {
    let mut conditions = vec![
        format!("name = \"{span}\""),
        "resource.service.name =~ \"${service:regex}\"".to_owned(),
    ];
    conditions.extend(more.iter().cloned());
    let select: Vec<String> = select.iter().map(|a| format!("span.{a}")).collect();
    format!(
        "{{ {} }} | select({})",
        conditions.join(" && "),
        select.join(", ")
    )
}

// ---- Grafana JSON ----

fn prometheus_ds() -> Value {
    json!({"type": "prometheus", "uid": PROMETHEUS})
}

/// One query of a panel.
enum Query {
    /// PromQL over a time range: expression and legend.
    Range(String, String),
    /// PromQL at the panel's end time: expression and legend.
    Instant(String, String),
    /// PromQL as a heatmap (buckets by `le`).
    Buckets(String),
    /// TraceQL on Tempo, as a table of spans.
    TraceQl(String),
    /// A Jaeger search: operation (span name) and logfmt tags.
    Jaeger(&'static str, String),
}

impl Query {
    fn target(&self, ref_id: char) -> Value {
        let prom = |expr: &str, legend: &str, instant: bool, format: &str| {
            json!({
                "datasource": prometheus_ds(),
                "editorMode": "code",
                "expr": expr,
                "format": format,
                "instant": instant,
                "legendFormat": legend,
                "range": !instant,
                "refId": ref_id.to_string(),
            })
        };
        match self {
            Query::Range(e, lg) => prom(e, lg, false, "time_series"),
            Query::Instant(e, lg) => prom(e, lg, true, "time_series"),
            Query::Buckets(e) => prom(e, "{{le}}", false, "heatmap"),
            Query::TraceQl(q) => json!({
                "datasource": {"type": "tempo", "uid": TEMPO},
                "filters": [],
                "limit": 50,
                "query": q,
                "queryType": "traceql",
                "refId": ref_id.to_string(),
                "spss": 1,
                "tableType": "spans",
            }),
            Query::Jaeger(operation, tags) => json!({
                "datasource": {"type": "jaeger", "uid": JAEGER},
                "limit": 50,
                "operation": operation,
                "queryType": "search",
                "refId": ref_id.to_string(),
                "service": "$service",
                "tags": tags,
            }),
        }
    }

    fn datasource(&self) -> Value {
        match self {
            Query::TraceQl(_) => json!({"type": "tempo", "uid": TEMPO}),
            Query::Jaeger(..) => json!({"type": "jaeger", "uid": JAEGER}),
            _ => prometheus_ds(),
        }
    }
}

/// The visualisation of a panel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Viz {
    TimeSeries,
    BarGauge,
    Stat,
    Heatmap,
    Table,
}

/// A panel before layout.
struct Panel {
    viz: Viz,
    title: String,
    description: String,
    unit: &'static str,
    width: u32,
    height: u32,
    queries: Vec<Query>,
}

fn panel(viz: Viz, title: &str, unit: &'static str, width: u32, description: &str) -> Panel {
    Panel {
        viz,
        title: title.to_owned(),
        description: description.to_owned(),
        unit,
        width,
        height: if viz == Viz::Stat { 4 } else { 8 },
        queries: Vec::new(),
    }
}

impl Panel {
    fn query(mut self, q: Query) -> Self {
        self.queries.push(q);
        self
    }

    fn height(mut self, h: u32) -> Self {
        self.height = h;
        self
    }

    fn json(&self, id: u32, x: u32, y: u32) -> Value {
        let targets: Vec<Value> = self
            .queries
            .iter()
            .zip('A'..='Z')
            .map(|(q, r)| q.target(r))
            .collect();
        let (kind, options, custom) = match self.viz {
            Viz::TimeSeries => (
                "timeseries",
                json!({
                    "legend": {"calcs": [], "displayMode": "list", "placement": "bottom",
                               "showLegend": true},
                    "tooltip": {"hideZeros": false, "mode": "multi", "sort": "desc"},
                }),
                json!({"fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
                       "spanNulls": false}),
            ),
            Viz::BarGauge => (
                "bargauge",
                json!({
                    "displayMode": "gradient",
                    "legend": {"calcs": [], "displayMode": "list", "placement": "bottom",
                               "showLegend": false},
                    "maxVizHeight": 300,
                    "minVizHeight": 16,
                    "minVizWidth": 8,
                    "namePlacement": "auto",
                    "orientation": "horizontal",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
                    "showUnfilled": true,
                    "sizing": "auto",
                    "valueMode": "color",
                }),
                Value::Null,
            ),
            Viz::Stat => (
                "stat",
                json!({
                    "colorMode": "value",
                    "graphMode": "none",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "percentChangeColorMode": "standard",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
                    "showPercentChange": false,
                    "textMode": "value_and_name",
                    "wideLayout": true,
                }),
                Value::Null,
            ),
            Viz::Heatmap => (
                "heatmap",
                json!({
                    "calculate": false,
                    "cellGap": 1,
                    "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme",
                              "reverse": false, "scale": "exponential", "scheme": "Oranges",
                              "steps": 64},
                    "exemplars": {"color": "rgba(255,0,255,0.7)"},
                    "filterValues": {"le": 1e-9},
                    "legend": {"show": true},
                    "rowsFrame": {"layout": "auto"},
                    "showValue": "never",
                    "tooltip": {"mode": "single", "showColorScale": false, "yHistogram": false},
                    "yAxis": {"axisPlacement": "left", "reverse": false, "unit": "bytes"},
                }),
                Value::Null,
            ),
            Viz::Table => (
                "table",
                json!({
                    "cellHeight": "sm",
                    "footer": {"countRows": false, "fields": [], "reducer": ["sum"],
                               "show": false},
                    "frameIndex": 0,
                    "showHeader": true,
                }),
                Value::Null,
            ),
        };
        let mut defaults = json!({
            "color": {"mode": "palette-classic"},
            "unit": self.unit,
        });
        if !custom.is_null() {
            defaults["custom"] = custom;
        }
        json!({
            "datasource": self.queries[0].datasource(),
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": id,
            "options": options,
            "targets": targets,
            "title": self.title,
            "type": kind,
        })
    }
}

/// A dashboard being laid out: panels flow left to right in rows of 24 columns.
struct Board {
    uid: &'static str,
    title: &'static str,
    description: &'static str,
    variables: Vec<Value>,
    panels: Vec<Value>,
    next_id: u32,
    x: u32,
    y: u32,
    row_height: u32,
}

impl Board {
    fn new(uid: &'static str, title: &'static str, description: &'static str) -> Board {
        Board {
            uid,
            title,
            description,
            variables: vec![service_variable()],
            panels: Vec::new(),
            next_id: 1,
            x: 0,
            y: 0,
            row_height: 0,
        }
    }

    fn variable(mut self, v: Value) -> Self {
        self.variables.push(v);
        self
    }

    fn newline(&mut self) {
        if self.x > 0 {
            self.y += self.row_height;
            self.x = 0;
            self.row_height = 0;
        }
    }

    fn row(&mut self, title: &str) {
        self.newline();
        self.panels.push(json!({
            "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            "id": self.next_id,
            "panels": [],
            "title": title,
            "type": "row",
        }));
        self.next_id += 1;
        self.y += 1;
    }

    fn add(&mut self, p: Panel) {
        if self.x + p.width > 24 {
            self.newline();
        }
        self.panels.push(p.json(self.next_id, self.x, self.y));
        self.next_id += 1;
        self.x += p.width;
        self.row_height = self.row_height.max(p.height);
    }

    fn json(self) -> Value {
        json!({
            "annotations": {"list": []},
            "description": self.description,
            "editable": false,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "links": [{
                "asDropdown": false,
                "icon": "external link",
                "includeVars": true,
                "keepTime": true,
                "tags": ["heapspan"],
                "targetBlank": false,
                "title": "heapspan",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }],
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": ["heapspan"],
            "templating": {"list": self.variables},
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
        })
    }
}

fn query_variable(name: &str, label: &str, query: String, all: bool, description: &str) -> Value {
    let mut v = json!({
        "datasource": prometheus_ds(),
        "description": description,
        "hide": 0,
        "includeAll": all,
        "label": label,
        "multi": all,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "skipUrlSync": false,
        "sort": 1,
        "type": "query",
    });
    if all {
        v["allValue"] = json!(".*");
    }
    v
}

/// `service`: the `job` label of heapspan's series (`service.name`, with `service.namespace/`
/// in front when the resource has one).
fn service_variable() -> Value {
    let tracker = prom::metric_name(prom::contract_metric(n::TRACKER_MEMORY));
    query_variable(
        "service",
        "Service",
        format!("label_values({tracker}, job)"),
        false,
        "The job label: service.name (service.namespace/service.name when the resource has a namespace).",
    )
}

fn task_variable() -> Value {
    let live = prom::metric_name(prom::contract_metric(n::TASK_MEMORY_LIVE));
    query_variable(
        "task",
        "Task name",
        format!(
            "label_values({live}{{job=~\"$service\"}}, {})",
            l(n::TOKIO_TASK_NAME)
        ),
        true,
        "tokio.task.name: the name given at spawn, else the spawn location; `other` beyond the cap.",
    )
}

fn span_variable() -> Value {
    let live = prom::metric_name(prom::contract_metric(n::SPAN_MEMORY_LIVE));
    query_variable(
        "span",
        "Span name",
        format!(
            "label_values({live}{{job=~\"$service\"}}, {})",
            l(n::SPAN_NAME)
        ),
        true,
        "heapspan.span.name: target::name of the tracing span; `other` beyond the cap.",
    )
}

/// A description naming the contract metric(s) a panel shows.
fn about(metrics: &[&str], what: &str) -> String {
    let named: Vec<String> = metrics
        .iter()
        .map(|m| {
            let c = prom::contract_metric(m);
            format!("`{}` ({}, {})", c.name, c.instrument, c.unit)
        })
        .collect();
    format!("{what} From {}.", named.join(", "))
}

fn overview() -> Value {
    use Query::*;
    use Viz::*;
    let mut b = Board::new(
        "heapspan-overview",
        "heapspan: memory by task and span",
        "Where the heap goes: live bytes, allocation and free rates per tokio task name and per tracing span name (and span group), allocation sizes, and heapspan's own cost. Generated from heapspan::export::names.",
    )
    .variable(task_variable())
    .variable(span_variable());
    let task = [n::TOKIO_TASK_NAME];
    let span = [n::SPAN_NAME];

    b.row("Memory by task");
    b.add(
        panel(
            TimeSeries,
            "Live bytes by task name",
            "bytes",
            12,
            &about(
                &[n::TASK_MEMORY_LIVE],
                "Allocated minus freed, per task name (frees count against the allocating task).",
            ),
        )
        .query(Range(live_by_task_expr(), legend(&task))),
    );
    b.add(
        panel(
            BarGauge,
            "Which task holds the most",
            "bytes",
            12,
            &about(
                &[n::TASK_MEMORY_LIVE],
                "The ten task names holding the most live bytes now.",
            ),
        )
        .query(Instant(
            format!("topk(10, {})", live_by_task_expr()),
            legend(&task),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Allocated bytes per second by task",
            "binBps",
            8,
            &about(
                &[n::TASK_MEMORY_ALLOCATED],
                "Allocation rate per task name.",
            ),
        )
        .query(Range(
            sum_by(&task, &rate(n::TASK_MEMORY_ALLOCATED, "", By::Task)),
            legend(&task),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Freed bytes per second by task",
            "binBps",
            8,
            &about(
                &[n::TASK_MEMORY_FREED],
                "Free rate per allocating task name (whichever task freed the blocks).",
            ),
        )
        .query(Range(
            sum_by(&task, &rate(n::TASK_MEMORY_FREED, "", By::Task)),
            legend(&task),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Allocations per second by task",
            "ops",
            8,
            &about(
                &[n::TASK_ALLOCATIONS],
                "Allocation count rate per task name.",
            ),
        )
        .query(Range(
            sum_by(&task, &rate(n::TASK_ALLOCATIONS, "", By::Task)),
            legend(&task),
        )),
    );
    b.add(
        panel(
            BarGauge,
            "Peak live bytes of a single task, by name",
            "bytes",
            24,
            &about(
                &[n::TASK_MEMORY_PEAK],
                "The largest peak of one task of each name (observed at folds: a lower bound).",
            ),
        )
        .query(Instant(
            format!(
                "max by ({}) ({})",
                l(n::TOKIO_TASK_NAME),
                sel(n::TASK_MEMORY_PEAK, "", By::Task)
            ),
            legend(&task),
        )),
    );

    b.row("Memory by span");
    b.add(
        panel(
            TimeSeries,
            "Live bytes by span name",
            "bytes",
            12,
            &about(
                &[n::SPAN_MEMORY_LIVE],
                "Allocated inside spans of a name and not yet freed, every group together.",
            ),
        )
        .query(Range(
            sum_by(&span, &sel(n::SPAN_MEMORY_LIVE, "", By::Span)),
            legend(&span),
        )),
    );
    b.add(
        panel(TimeSeries, "Live bytes by span name and group", "bytes", 12, &about(
            &[n::SPAN_MEMORY_LIVE],
            "Per span group (the values of the group fields, e.g. http.route); spans without group fields have no group.",
        ))
        .query(Range(
            live_by_span_group_expr(),
            legend(&[n::SPAN_NAME, n::SPAN_GROUP]),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Allocated and freed bytes per second by span",
            "binBps",
            8,
            &about(
                &[n::SPAN_MEMORY_ALLOCATED, n::SPAN_MEMORY_FREED],
                "Allocation and free rates per span name.",
            ),
        )
        .query(Range(
            sum_by(&span, &rate(n::SPAN_MEMORY_ALLOCATED, "", By::Span)),
            format!("{} allocated", legend(&span)),
        ))
        .query(Range(
            sum_by(&span, &rate(n::SPAN_MEMORY_FREED, "", By::Span)),
            format!("{} freed", legend(&span)),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Allocations per second by span",
            "ops",
            8,
            &about(
                &[n::SPAN_ALLOCATIONS],
                "Allocation count rate per span name.",
            ),
        )
        .query(Range(
            sum_by(&span, &rate(n::SPAN_ALLOCATIONS, "", By::Span)),
            legend(&span),
        )),
    );
    b.add(
        panel(BarGauge, "Which span's live bytes grew over the time range", "bytes", 8, &about(
            &[n::SPAN_MEMORY_LIVE],
            "Growth of live bytes per span name over the dashboard's time range: a span whose residue grows climbs here.",
        ))
        .query(Instant(
            format!(
                "topk(10, {})",
                sum_by(
                    &span,
                    &format!("delta({}[$__range])", sel(n::SPAN_MEMORY_LIVE, "", By::Span))
                )
            ),
            legend(&span),
        )),
    );

    b.row("Allocation sizes");
    b.add(
        panel(
            Heatmap,
            "Allocation sizes",
            "short",
            16,
            &about(
                &[n::ALLOCATION_SIZE],
                "Allocations per size bucket (16 B to 16 MiB, powers of 4) over time.",
            ),
        )
        .query(Buckets(format!(
            "sum by (le) (increase({}[$__rate_interval]))",
            sel(n::ALLOCATION_SIZE, "_bucket", By::Service)
        ))),
    );
    b.add(
        panel(
            TimeSeries,
            "Mean allocation size",
            "bytes",
            8,
            &about(
                &[n::ALLOCATION_SIZE],
                "Bytes per allocation, from the histogram's sum and count.",
            ),
        )
        .query(Range(
            format!(
                "sum({}) / sum({})",
                rate(n::ALLOCATION_SIZE, "_sum", By::Service),
                rate(n::ALLOCATION_SIZE, "_count", By::Service)
            ),
            "mean".to_owned(),
        )),
    );

    b.row("Hand-offs between tasks");
    let pair = [n::TOKIO_TASK_NAME, n::FREE_TASK_NAME];
    let pair_legend = format!(
        "{} \u{2192} {}",
        legend(&[n::TOKIO_TASK_NAME]),
        legend(&[n::FREE_TASK_NAME])
    );
    b.add(
        panel(
            BarGauge,
            "Hand-off matrix: bytes freed by another task (allocating \u{2192} freeing)",
            "bytes",
            12,
            &about(
                &[n::TASK_MEMORY_HANDED_OFF],
                "The largest cells of the hand-off matrix over the dashboard's range: bytes a task name allocated and another task name (or `no task`: plain threads, main) freed. Normal message passing; a task freeing its own blocks is in no cell.",
            ),
        )
        .query(Instant(
            format!(
                "topk(15, {})",
                sum_by(
                    &pair,
                    &format!(
                        "increase({}[$__range])",
                        sel(n::TASK_MEMORY_HANDED_OFF, "", By::Service)
                    )
                )
            ),
            pair_legend.clone(),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Hand-offs per second (allocating \u{2192} freeing)",
            "ops",
            12,
            &about(
                &[n::TASK_HANDOFFS],
                "Frees by another task than the allocating one, per cell of the hand-off matrix.",
            ),
        )
        .query(Range(
            sum_by(&pair, &rate(n::TASK_HANDOFFS, "", By::Service)),
            pair_legend,
        )),
    );
    b.row("heapspan itself");
    b.add(
        panel(
            TimeSeries,
            "heapspan's own memory",
            "bytes",
            12,
            &about(
                &[n::TRACKER_MEMORY],
                "heapspan's bookkeeping: its heap blocks, thread tables, queues and live index.",
            ),
        )
        .query(Range(
            sel(n::TRACKER_MEMORY, "", By::Service),
            "{{job}} {{instance}}".to_owned(),
        )),
    );
    b.add(
        panel(TimeSeries, "Dropped by reason", "short", 12, &about(
            &[n::TRACKER_DROPPED],
            "What heapspan could not record or export, per reason (every reason has a series, zero until something is dropped).",
        ))
        .query(Range(
            sum_by(&[n::DROP_REASON], &increase(n::TRACKER_DROPPED, By::Service)),
            legend(&[n::DROP_REASON]),
        )),
    );
    b.json()
}

fn findings() -> Value {
    use Query::*;
    use Viz::*;
    let mut b = Board::new(
        "heapspan-findings",
        "heapspan: findings",
        "Danger findings (escaped allocations, growing residue, unreachable cycles, clones, stalls) over time, and the findings themselves with links to their traces. Generated from heapspan::export::names.",
    );
    let kind = [n::FINDING_KIND];
    let severity = [n::FINDING_SEVERITY];
    b.add(
        panel(Stat, "Findings reported since start, by severity", "short", 24, &about(
            &[n::FINDINGS],
            "Findings reported (new ones, and again when one changes severity) since the process started.",
        ))
        .query(Instant(
            sum_by(&severity, &sel(n::FINDINGS, "", By::Service)),
            legend(&severity),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Findings reported by kind",
            "short",
            12,
            &about(
                &[n::FINDINGS],
                "Findings reported per kind in each interval.",
            ),
        )
        .query(Range(
            sum_by(&kind, &increase(n::FINDINGS, By::Service)),
            legend(&kind),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Findings reported by severity",
            "short",
            12,
            &about(
                &[n::FINDINGS],
                "Findings reported per severity in each interval.",
            ),
        )
        .query(Range(
            sum_by(&severity, &increase(n::FINDINGS, By::Service)),
            legend(&severity),
        )),
    );
    b.add(
        panel(
            BarGauge,
            "Findings by kind and severity since start",
            "short",
            24,
            &about(&[n::FINDINGS], "Every kind and severity seen so far."),
        )
        .query(Instant(
            sum_by(
                &[n::FINDING_KIND, n::FINDING_SEVERITY],
                &sel(n::FINDINGS, "", By::Service),
            ),
            format!("{} ({})", legend(&kind), legend(&severity)),
        )),
    );
    let columns = [
        n::FINDING_KIND,
        n::FINDING_SEVERITY,
        n::FINDING_BYTES,
        n::FINDING_SUMMARY,
        n::TOKIO_TASK_NAME,
        n::SPAN_NAME,
        n::FINDING_ID,
    ];
    b.add(
        panel(Table, "Findings (Tempo), with their traces", "short", 24, &format!(
            "One `{}` span per finding, when it is first found and when its severity or bytes change; the trace id opens the window's trace (the finding's task window spans are linked).",
            n::FINDING_SPAN
        ))
        .height(10)
        .query(TraceQl(traceql(n::FINDING_SPAN, &[], &columns))),
    );
    b.add(
        panel(
            Table,
            "High and critical findings (Tempo)",
            "short",
            24,
            &format!(
            "`{}` spans with status Error: heapspan sets it for high and critical findings only.",
            n::FINDING_SPAN
        ),
        )
        .height(8)
        .query(TraceQl(traceql(
            n::FINDING_SPAN,
            &["status = error".to_owned()],
            &columns,
        ))),
    );
    b.add(
        panel(
            Table,
            "Findings (Jaeger)",
            "short",
            24,
            &format!(
                "The same `{}` spans through Jaeger (operation {}); each row opens its trace.",
                n::FINDING_SPAN,
                n::FINDING_SPAN
            ),
        )
        .height(8)
        .query(Jaeger(n::FINDING_SPAN, String::new())),
    );
    b.json()
}

fn graph() -> Value {
    use Query::*;
    use Viz::*;
    let mut b = Board::new(
        "heapspan-graph",
        "heapspan: relation graph",
        "The live relation graph heapspan takes every window with the live index on: edges by kind, nodes, the scan's pause, and each task's share on its window spans. Generated from heapspan::export::names.",
    )
    .variable(task_variable());
    let kind = [n::EDGE_KIND];
    b.add(
        panel(TimeSeries, "Edges of the live graph by kind", "short", 12, &about(
            &[n::GRAPH_EDGES],
            "Edges of the latest window's graph per kind (owns, contains, shares, slice, clone, evolution, arc_clone, rc_clone).",
        ))
        .query(Range(
            sum_by(&kind, &sel(n::GRAPH_EDGES, "", By::Service)),
            legend(&kind),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Nodes of the live graph",
            "short",
            12,
            &about(
                &[n::GRAPH_NODES_METRIC],
                "Live indexed allocations in the latest window's graph.",
            ),
        )
        .query(Range(
            sel(n::GRAPH_NODES_METRIC, "", By::Service),
            "{{job}} {{instance}}".to_owned(),
        )),
    );
    b.add(
        panel(TimeSeries, "Scan pause (frees deferred)", "s", 12, &about(
            &[n::GRAPH_SCAN_PAUSE],
            "How long each scan of the live index deferred the application's frees of indexed blocks (its copy phase: no thread waits, the blocks freed meanwhile are released when it ends); the largest in each interval.",
        ))
        .query(Range(
            format!(
                "max_over_time({}[$__rate_interval])",
                sel(n::GRAPH_SCAN_PAUSE, "", By::Service)
            ),
            "{{job}} {{instance}}".to_owned(),
        )),
    );
    b.add(
        panel(
            BarGauge,
            "Edges now by kind",
            "short",
            12,
            &about(&[n::GRAPH_EDGES], "The latest graph's edges per kind."),
        )
        .query(Instant(
            sum_by(&kind, &sel(n::GRAPH_EDGES, "", By::Service)),
            legend(&kind),
        )),
    );
    b.add(
        panel(Table, "Window spans of the selected tasks, with their share of the graph (Tempo)", "short", 24, &format!(
            "`{}` spans carry each task's nodes and edges of the window's graph, and its top edges as `{}` events.",
            n::WINDOW_SPAN, n::EDGE_EVENT
        ))
        .height(10)
        .query(TraceQl(traceql(
            n::WINDOW_SPAN,
            &[format!("span.{} =~ \"${{task:regex}}\"", n::TOKIO_TASK_NAME)],
            &[
                n::TOKIO_TASK_NAME,
                n::GRAPH_NODES,
                n::GRAPH_EDGES_ATTR,
                n::MEMORY_LIVE,
                n::MEMORY_ALLOCATED,
            ],
        ))),
    );
    b.json()
}

fn runtime() -> Value {
    use Query::*;
    use Viz::*;
    let mut b = Board::new(
        "heapspan-runtime",
        "heapspan: tokio runtime beside memory",
        "tokio-metrics' runtime and task poll figures (feature tokio-metrics) beside the tasks' memory. Generated from heapspan::export::names.",
    )
    .variable(task_variable());
    let task = [n::TOKIO_TASK_NAME];
    b.add(
        panel(
            TimeSeries,
            "Live bytes by task name",
            "bytes",
            12,
            &about(
                &[n::TASK_MEMORY_LIVE],
                "Allocated minus freed, per task name.",
            ),
        )
        .query(Range(live_by_task_expr(), legend(&task))),
    );
    b.add(
        panel(
            TimeSeries,
            "Tasks alive and queued",
            "short",
            12,
            &about(
                &[
                    n::TOKIO_RUNTIME_TASKS_ALIVE,
                    n::TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH,
                ],
                "Tasks alive in the runtime, and tasks waiting in its global queue.",
            ),
        )
        .query(Range(
            format!(
                "sum({})",
                sel(n::TOKIO_RUNTIME_TASKS_ALIVE, "", By::Service)
            ),
            "alive".to_owned(),
        ))
        .query(Range(
            format!(
                "sum({})",
                sel(n::TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH, "", By::Service)
            ),
            "global queue".to_owned(),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Worker busy ratio",
            "percentunit",
            12,
            &about(
                &[
                    n::TOKIO_RUNTIME_WORKER_BUSY_DURATION,
                    n::TOKIO_RUNTIME_WORKERS,
                ],
                "Busy time of the workers per second, per worker.",
            ),
        )
        .query(Range(
            format!(
                "sum({}) / sum({})",
                rate(n::TOKIO_RUNTIME_WORKER_BUSY_DURATION, "", By::Service),
                sel(n::TOKIO_RUNTIME_WORKERS, "", By::Service)
            ),
            "busy".to_owned(),
        )),
    );
    b.add(
        panel(
            TimeSeries,
            "Worker parks per second",
            "ops",
            12,
            &about(
                &[n::TOKIO_RUNTIME_WORKER_PARKS],
                "Times the workers parked, summed over workers.",
            ),
        )
        .query(Range(
            format!(
                "sum({})",
                rate(n::TOKIO_RUNTIME_WORKER_PARKS, "", By::Service)
            ),
            "parks".to_owned(),
        )),
    );
    b.add(
        panel(TimeSeries, "Task polls per second by task", "ops", 12, &about(
            &[n::TOKIO_TASK_POLLS],
            "Polls of the tasks heapspan wraps (heapspan::spawn, heapspan::instrument), per task name.",
        ))
        .query(Range(
            sum_by(&task, &rate(n::TOKIO_TASK_POLLS, "", By::Task)),
            legend(&task),
        )),
    );
    b.add(
        panel(TimeSeries, "Mean poll time by task", "s", 12, &about(
            &[n::TOKIO_TASK_POLL_DURATION, n::TOKIO_TASK_POLLS],
            "Time per poll of the tasks heapspan wraps, per task name (no value while a task is not polled).",
        ))
        .query(Range(
            format!(
                "{} / {}",
                sum_by(&task, &rate(n::TOKIO_TASK_POLL_DURATION, "", By::Task)),
                sum_by(&task, &rate(n::TOKIO_TASK_POLLS, "", By::Task))
            ),
            legend(&task),
        )),
    );
    b.add(
        panel(TimeSeries, "Worker polls per second (needs --cfg tokio_unstable)", "ops", 24, &about(
            &[n::TOKIO_RUNTIME_WORKER_POLLS],
            "Task polls by the workers, summed; tokio counts them only in builds with --cfg tokio_unstable (empty otherwise).",
        ))
        .query(Range(
            format!(
                "sum({})",
                rate(n::TOKIO_RUNTIME_WORKER_POLLS, "", By::Service)
            ),
            "polls".to_owned(),
        )),
    );
    b.json()
}

// ---- The table of Prometheus names ----

/// The attributes of each contract metric (the telemetry contract's table; `names.rs`
/// documents them on each constant). A metric added to the contract without an entry here
/// makes the generator panic.
#[track_caller]
pub fn attributes(metric: &str) -> &'static [&'static str] {
    match metric {
        n::TASK_MEMORY_ALLOCATED
        | n::TASK_MEMORY_FREED
        | n::TASK_MEMORY_LIVE
        | n::TASK_MEMORY_PEAK
        | n::TASK_ALLOCATIONS
        | n::TOKIO_TASK_POLLS
        | n::TOKIO_TASK_POLL_DURATION => &[n::TOKIO_TASK_NAME],
        n::SPAN_MEMORY_ALLOCATED
        | n::SPAN_MEMORY_FREED
        | n::SPAN_MEMORY_LIVE
        | n::SPAN_ALLOCATIONS => &[n::SPAN_NAME, n::SPAN_GROUP],
        n::TASK_MEMORY_HANDED_OFF | n::TASK_HANDOFFS => &[n::TOKIO_TASK_NAME, n::FREE_TASK_NAME],
        n::GRAPH_EDGES => &[n::EDGE_KIND],
        n::FINDINGS => &[n::FINDING_KIND, n::FINDING_SEVERITY],
        n::TRACKER_DROPPED => &[n::DROP_REASON],
        n::ALLOCATION_SIZE
        | n::TRACKER_MEMORY
        | n::GRAPH_NODES_METRIC
        | n::GRAPH_SCAN_PAUSE
        | n::TOKIO_RUNTIME_WORKERS
        | n::TOKIO_RUNTIME_TASKS_ALIVE
        | n::TOKIO_RUNTIME_GLOBAL_QUEUE_DEPTH
        | n::TOKIO_RUNTIME_WORKER_BUSY_DURATION
        | n::TOKIO_RUNTIME_WORKER_PARKS
        | n::TOKIO_RUNTIME_WORKER_POLLS => &[],
        other => panic!("no attributes listed for {other} in dashboards::attributes"),
    }
}

/// Attributes that are absent on some series of their metric.
pub fn optional_attribute(attribute: &str) -> bool {
    attribute == n::SPAN_GROUP
}

/// An example value of each attribute, for the table.
fn example_value(attribute: &str) -> &'static str {
    match attribute {
        n::TOKIO_TASK_NAME => "cache",
        n::FREE_TASK_NAME => "consumer",
        n::SPAN_NAME => "app::handle",
        n::SPAN_GROUP => "http.route=/users",
        n::EDGE_KIND => "owns",
        n::FINDING_KIND => "task.escaped_allocation",
        n::FINDING_SEVERITY => "medium",
        n::DROP_REASON => n::DROP_REASON_EXPORT_FAILED,
        other => panic!("no example value for {other} in dashboards::example_value"),
    }
}

/// `otel-config/prometheus/metrics.md`.
pub fn metrics_md() -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# heapspan's metrics in Prometheus\n\n\
         Generated by `{REGENERATE}` from `heapspan::export::names` (do not edit: a test fails \
         when this file differs from what the generator writes).\n\n\
         Prometheus' OTLP receiver names the series by its translation strategy; heapspan's \
         Prometheus configuration pins `{}` (Prometheus' default). The rules \
         (prometheus/otlptranslator): every run of characters outside `[a-zA-Z0-9:]` becomes \
         one `_`; the unit is appended as a word (`By` → `bytes`, `s` → `seconds`; units in \
         braces such as `{{allocation}}` are dropped); Counters (monotonic sums) get `_total`, \
         UpDownCounters and Gauges no type suffix; a histogram is `_bucket{{le}}`, `_sum` and \
         `_count`. Attributes become labels the same way (each character outside \
         `[a-zA-Z0-9_]` becomes `_`). `service.name` becomes `job` (`service.namespace/service.name` \
         with a namespace) and `service.instance.id` becomes `instance`; other resource \
         attributes stay off the series unless promoted.\n\n",
        prom::PINNED.config_value()
    ));
    s.push_str("| metric | instrument | unit | attributes | Prometheus series | example |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for m in prom::contract() {
        let attrs = attributes(m.name);
        let attr_cell = if attrs.is_empty() {
            "—".to_owned()
        } else {
            attrs
                .iter()
                .map(|a| {
                    let opt = if optional_attribute(a) {
                        " (when the span has group fields)"
                    } else {
                        ""
                    };
                    format!("`{a}` → `{}`{opt}", l(a))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let series: Vec<String> = prom::series_names(m)
            .iter()
            .map(|s| format!("`{s}`"))
            .collect();
        let mut labels: Vec<String> = vec![
            "job=\"my-service\"".to_owned(),
            "instance=\"my-host-1\"".to_owned(),
        ];
        labels.extend(
            attrs
                .iter()
                .map(|a| format!("{}=\"{}\"", l(a), example_value(a))),
        );
        let example_name = prom::series_names(m)[0].clone();
        if prom::metric_type(m) == prom::MetricType::Histogram {
            labels.push("le=\"1024\"".to_owned());
        }
        let mut note = String::new();
        if n::TOKIO_UNSTABLE_METRICS.contains(m) {
            note = " (only with `--cfg tokio_unstable`)".to_owned();
        } else if n::TOKIO_METRICS.contains(m) {
            note = " (feature `tokio-metrics`)".to_owned();
        } else if n::GRAPH_METRICS.contains(m) {
            note = " (live index on)".to_owned();
        }
        s.push_str(&format!(
            "| `{}`{note} | {} | `{}` | {attr_cell} | {} | `{example_name}{{{}}}` |\n",
            m.name,
            m.instrument,
            m.unit,
            series.join(", "),
            labels.join(", ")
        ));
    }
    s
}
