//! The Grafana dashboards of `otel-config/grafana/dashboards/` and `otel-config/prometheus/metrics.md`:
//! committed as the generator writes them, every contract metric on a panel, every panel on a
//! provisioned data source, every dashboard within Grafana's dashboard model
//! (grafana-foundation-sdk), and every panel query answering on real heapspan output (a real
//! program's OTLP JSON file, translated into Prometheus series by Prometheus' rules and queried
//! with `promtool test rules`).
//!
//! Needs the tools of `integration-tests/install-tools.sh` (promtool, the Python venv with
//! grafana-foundation-sdk); fails, naming that script, when they are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::dashboards::{self, REGENERATE};
use heapspan_integration_tests::promtool::{self, Case, Series};
use heapspan_integration_tests::*;
use serde_json::Value;

/// The committed dashboards, parsed: (file name, JSON).
fn committed_boards() -> Vec<(String, Value)> {
    dashboards::dashboards()
        .into_iter()
        .map(|(file, _)| {
            let path = root().join(dashboards::DASHBOARD_DIR).join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run `{REGENERATE}`", path.display()));
            (file.to_owned(), serde_json::from_str(&text).expect("JSON"))
        })
        .collect()
}

/// Every panel with queries (rows have none): (dashboard file, panel).
fn panels(boards: &[(String, Value)]) -> Vec<(String, Value)> {
    boards
        .iter()
        .flat_map(|(file, b)| {
            b["panels"]
                .as_array()
                .expect("panels")
                .iter()
                .filter(|p| p["type"] != "row")
                .map(move |p| (file.clone(), p.clone()))
        })
        .collect()
}

fn title(p: &Value) -> &str {
    p["title"].as_str().unwrap_or("?")
}

/// The PromQL of every Prometheus target: (where, expression).
fn prometheus_queries(boards: &[(String, Value)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, p) in panels(boards) {
        for t in p["targets"].as_array().expect("targets") {
            if t["datasource"]["type"] == "prometheus" {
                out.push((
                    format!("{file}: {}", title(&p)),
                    t["expr"].as_str().expect("expr").to_owned(),
                ));
            }
        }
    }
    out
}

/// Whether `expr` names `series` as a metric (not as a prefix of a longer name).
fn names_series(expr: &str, series: &str) -> bool {
    expr.match_indices(series).any(|(i, _)| {
        let before = expr[..i].chars().next_back();
        let after = expr[i + series.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

#[test]
fn committed_files_are_what_the_generator_writes() {
    for g in dashboards::generated() {
        let path = root().join(&g.path);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == g.text,
            "{} differs from what the generator writes (from heapspan::export::names): run \
             `{REGENERATE}` and commit the result",
            g.path
        );
    }
}

#[test]
fn every_contract_metric_is_in_a_panel_query() {
    let queries = prometheus_queries(&committed_boards());
    for m in prom::contract() {
        for series in prom::series_names(m) {
            assert!(
                queries.iter().any(|(_, q)| names_series(q, &series)),
                "no panel queries {series} ({}); add one to integration-tests/src/dashboards.rs \
                 and run `{REGENERATE}`",
                m.name
            );
        }
    }
    // And the check sees a metric that is missing.
    assert!(!queries
        .iter()
        .any(|(_, q)| names_series(q, "heapspan_task_memory_live")));
}

/// The data sources `heapspan.yaml` provisions: uid → type (a line parse of its
/// `datasources:` list: each `- ` entry's `uid:` and `type:` keys).
fn provisioned() -> BTreeMap<String, String> {
    let path = root().join("otel-config/grafana/provisioning/datasources/heapspan.yaml");
    let text = std::fs::read_to_string(&path).expect("heapspan.yaml");
    let mut out = BTreeMap::new();
    let (mut uid, mut kind) = (None::<String>, None::<String>);
    let mut flush = |uid: &mut Option<String>, kind: &mut Option<String>| {
        if let (Some(u), Some(k)) = (uid.take(), kind.take()) {
            out.insert(u, k);
        }
    };
    let mut entry_indent = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let (key_line, key_indent) = match trimmed.strip_prefix("- ") {
            Some(rest) => {
                flush(&mut uid, &mut kind);
                entry_indent = Some(indent + 2);
                (rest, indent + 2)
            }
            None => (trimmed, indent),
        };
        if Some(key_indent) != entry_indent {
            continue;
        }
        if let Some((k, v)) = key_line.split_once(':') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "uid" => uid = Some(v),
                "type" => kind = Some(v),
                _ => {}
            }
        }
    }
    flush(&mut uid, &mut kind);
    out
}

#[test]
fn every_panel_uses_a_provisioned_data_source() {
    let provisioned = provisioned();
    for (uid, kind) in [
        (dashboards::PROMETHEUS, "prometheus"),
        (dashboards::TEMPO, "tempo"),
        (dashboards::JAEGER, "jaeger"),
    ] {
        assert_eq!(
            provisioned.get(uid).map(String::as_str),
            Some(kind),
            "{provisioned:?}"
        );
    }
    let boards = committed_boards();
    for (file, p) in panels(&boards) {
        let mut refs = vec![p["datasource"].clone()];
        refs.extend(
            p["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .map(|t| t["datasource"].clone()),
        );
        for ds in refs {
            let uid = ds["uid"].as_str().unwrap_or("");
            assert_eq!(
                provisioned.get(uid).map(String::as_str),
                ds["type"].as_str(),
                "{file}: panel {:?} refers to data source {ds}, which heapspan.yaml does not \
                 provision with that type",
                title(&p)
            );
        }
    }
    // The variables query the provisioned Prometheus.
    for (file, b) in &boards {
        for v in b["templating"]["list"].as_array().expect("variables") {
            assert_eq!(
                v["datasource"]["uid"],
                dashboards::PROMETHEUS,
                "{file}: {v}"
            );
        }
    }
}

/// Runs `integration-tests/grafana_check.py` (grafana-foundation-sdk's dashboard types) on
/// `files`.
fn grafana_check(files: &[&Path]) -> std::process::Output {
    Command::new(promtool::venv_python())
        .arg(root().join("integration-tests/grafana_check.py"))
        .args(files)
        .output()
        .expect("run grafana_check.py")
}

#[test]
fn dashboards_fit_grafanas_dashboard_model() {
    let dir = root().join(dashboards::DASHBOARD_DIR);
    let files: Vec<_> = dashboards::dashboards()
        .iter()
        .map(|(f, _)| dir.join(f))
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = grafana_check(&refs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{stdout}"
    );
    // Each board's schema is Grafana 11.6's.
    for (file, b) in committed_boards() {
        assert_eq!(b["schemaVersion"], dashboards::SCHEMA_VERSION, "{file}");
    }
}

#[test]
fn the_model_check_rejects_what_grafana_would_not_read() {
    let dir = scratch("dashboards_model_check");
    let (_, mut board) = committed_boards().remove(0);
    let panel = board["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["type"] == "timeseries")
        .unwrap();
    panel["options"]["tooltip"]["mode"] = "several".into();
    panel["targets"][0]["exprr"] = "up".into();
    panel["targets"][0].as_object_mut().unwrap().remove("refId");
    let file = dir.join("broken.json");
    std::fs::write(&file, serde_json::to_string(&board).unwrap()).unwrap();
    let out = grafana_check(&[&file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for want in [
        "options.tooltip.mode: 'several' is not a value of TooltipDisplayMode",
        "targets[0].exprr: unknown field",
        "targets[0].refId: missing",
    ] {
        assert!(stdout.contains(want), "{want} not in:\n{stdout}");
    }
}

// ---- Every query on real output ----

const SERVICE: &str = "heapspan-dashboards";
const INSTANCE: &str = "dashboards-1";

/// Runs `dashboard_app` writing OTLP JSON lines to a file, with the live index on, short
/// windows and metric intervals; returns the file.
fn real_output(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("heapspan.otlp.jsonl");
    let out = run(
        app(env!("CARGO_BIN_EXE_dashboard_app"))
            .env("HEAPSPAN_OTLP_FILE", &file)
            .env("HEAPSPAN_LIVE_INDEX", "full")
            .env("HEAPSPAN_WINDOW_MS", "200")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
            .env("OTEL_SERVICE_NAME", SERVICE)
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("service.instance.id={INSTANCE}"),
            )
            .env("APP_MILLIS", "1200"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DONE"),
        "{out:?}"
    );
    file
}

/// Grafana's variables as the queries are evaluated: the real service, the planted task and
/// span, and ranges of 5 minutes, which cover the whole run (one export request per 10 s step,
/// fewer than 30 of them), so that a series first exported late in the run still has two
/// samples in range (Grafana's `$__rate_interval` is at least four scrape intervals, 40 s with
/// the provisioned data source, and grows with the dashboard's time range).
fn substitute(q: &str) -> String {
    q.replace("${service:regex}", SERVICE)
        .replace("$service", SERVICE)
        .replace("${task:regex}", PLANTED_TASK)
        .replace("$task", PLANTED_TASK)
        .replace("$span", PLANTED_SPAN)
        .replace("$__rate_interval", "5m")
        .replace("$__range", "5m")
}

/// `label_values(<selector>, <label>)` → the selector and the label.
fn label_values(q: &str) -> (String, String) {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {q}"));
    let (sel, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    (sel.trim().to_owned(), label.trim().to_owned())
}

/// Asserts the translated series of each contract metric carry the labels of its attributes
/// (and `job`, `instance`), as `metrics.md` says.
#[track_caller]
fn assert_series_labels(series: &Series) {
    for m in prom::contract() {
        let names = prom::series_names(m);
        let samples: Vec<&prom::Sample> = series
            .samples
            .iter()
            .filter(|s| names.contains(&s.name))
            .collect();
        if n::TOKIO_UNSTABLE_METRICS.contains(m) {
            assert!(
                samples.is_empty(),
                "{} without --cfg tokio_unstable",
                m.name
            );
            continue;
        }
        assert!(!samples.is_empty(), "no series of {} ({names:?})", m.name);
        let attrs = dashboards::attributes(m.name);
        for s in samples {
            assert_eq!(s.labels["job"], SERVICE, "{}", s.series());
            assert_eq!(s.labels["instance"], INSTANCE, "{}", s.series());
            let got: BTreeSet<&str> = s
                .labels
                .keys()
                .map(String::as_str)
                .filter(|k| !["job", "instance", "le"].contains(k))
                .collect();
            let required: BTreeSet<String> = attrs
                .iter()
                .filter(|a| !dashboards::optional_attribute(a))
                .map(|a| prom::label_name(a))
                .collect();
            let all: BTreeSet<String> = attrs.iter().map(|a| prom::label_name(a)).collect();
            assert!(
                required.iter().all(|r| got.contains(r.as_str()))
                    && got.iter().all(|g| all.contains(*g)),
                "{}: labels {got:?}, attributes {attrs:?}",
                s.series()
            );
        }
    }
}

/// The spans of the OTLP JSON file: (name, attribute keys, resource `service.name`).
fn real_spans(file: &Path) -> Vec<(String, BTreeSet<String>, String)> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        if !line.contains("\"resourceSpans\"") {
            continue;
        }
        let req: ExportTraceServiceRequest = serde_json::from_str(line).expect("traces");
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let keys = s.attributes.iter().map(|kv| kv.key.clone()).collect();
                out.push((s.name.clone(), keys, service.clone()));
            }
        }
    }
    out
}

/// The span name (`name = "…"`) and the `span.` attributes of one of the dashboards'
/// TraceQL queries.
fn traceql_parts(q: &str) -> (String, Vec<String>) {
    let name = q
        .split("name = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a span name condition")
        .to_owned();
    let attrs = q
        .split([' ', ',', '(', ')'])
        .filter_map(|token| token.strip_prefix("span."))
        .map(str::to_owned)
        .collect();
    (name, attrs)
}

#[test]
fn every_panel_query_returns_data_on_real_heapspan_output() {
    let dir = scratch("dashboards_real_output");
    let file = real_output(&dir);
    let requests = promtool::metric_requests(&file);
    assert!(
        (4..30).contains(&requests.len()),
        "{} metric requests",
        requests.len()
    );
    let series = Series::from_requests(&requests, &prom::Settings::default()).expect("translate");
    assert_series_labels(&series);
    // The graph gauges hold the real graph: nodes (the planted and leaked blocks among them),
    // and a scan pause that is a duration (the machine's speed decides its size).
    let values = |metric: &str| -> Vec<f64> {
        let name = prom::metric_name(prom::contract_metric(metric));
        series
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.value)
            .collect()
    };
    assert!(values(n::GRAPH_NODES_METRIC).iter().any(|v| *v >= 2.0));
    let pauses = values(n::GRAPH_SCAN_PAUSE);
    assert!(
        !pauses.is_empty() && pauses.iter().all(|p| p.is_finite() && *p >= 0.0),
        "{pauses:?}"
    );

    let at = series.last_step();
    let boards = committed_boards();
    let unstable: Vec<String> = n::TOKIO_UNSTABLE_METRICS
        .iter()
        .flat_map(prom::series_names)
        .collect();
    let mut cases: Vec<(String, Case)> = Vec::new();
    for (origin, q) in prometheus_queries(&boards) {
        let expr = substitute(&q);
        assert!(!expr.contains('$'), "{origin}: a variable left in {expr}");
        // tokio counts worker polls only with --cfg tokio_unstable: the panel says so, and is
        // empty here.
        if unstable.iter().any(|u| names_series(&expr, u)) {
            cases.push((origin, Case::empty(&expr, &at)));
        } else {
            cases.push((origin, Case::non_empty(&expr, &at)));
        }
    }
    // The planted values, exactly: the task's live bytes and the span group's.
    let planted_task = substitute(&dashboards::live_by_task_expr());
    assert!(prometheus_queries(&boards)
        .iter()
        .any(|(_, q)| substitute(q) == planted_task));
    cases.push((
        "overview.json: Live bytes by task name (planted)".to_owned(),
        Case {
            expr: planted_task,
            eval_time: at.clone(),
            expected: vec![(
                format!("{{tokio_task_name=\"{PLANTED_TASK}\"}}"),
                PLANTED_BYTES as f64,
            )],
        },
    ));
    let planted_span = substitute(&dashboards::live_by_span_group_expr());
    assert!(prometheus_queries(&boards)
        .iter()
        .any(|(_, q)| substitute(q) == planted_span));
    cases.push((
        "overview.json: Live bytes by span name and group (planted)".to_owned(),
        Case {
            expr: planted_span,
            eval_time: at.clone(),
            expected: vec![(
                format!(
                    "{{heapspan_span_name=\"{PLANTED_SPAN}\", \
                     heapspan_span_group=\"http.route={PLANTED_ROUTE}\"}}"
                ),
                PLANTED_SPAN_BYTES as f64,
            )],
        },
    ));
    // The variables: each offers the real value.
    for (file, b) in &boards {
        for v in b["templating"]["list"].as_array().unwrap() {
            let (sel, label) = label_values(v["query"].as_str().expect("query"));
            let want = match v["name"].as_str().unwrap() {
                "service" => SERVICE,
                "task" => PLANTED_TASK,
                "span" => PLANTED_SPAN,
                other => panic!("{file}: variable {other} has no real value here"),
            };
            let expr = format!(
                "count by ({label}) ({}) and on ({label}) \
                 label_replace(vector(1), \"{label}\", \"{want}\", \"\", \"\")",
                substitute(&sel)
            );
            cases.push((
                format!("{file}: variable {}", v["name"]),
                Case::non_empty(&expr, &at),
            ));
        }
    }
    let out = promtool::run(
        &dir,
        &series,
        &cases.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
    );
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let listing: Vec<String> = cases
        .iter()
        .map(|(o, c)| format!("  {o}: {}", c.expr))
        .collect();
    assert!(
        out.status.success(),
        "promtool test rules failed (files in {}):\n{report}\nThe cases:\n{}",
        dir.display(),
        listing.join("\n")
    );
    assert!(report.contains("SUCCESS"), "{report}");

    // A query naming a metric heapspan does not export fails its case (the check is not
    // vacuous): the planted-task query with the metric misspelled.
    let misspelled = substitute(&dashboards::live_by_task_expr()).replace(
        "heapspan_task_memory_live_bytes",
        "heapspan_task_memory_lives_bytes",
    );
    let broken = promtool::run(&dir, &series, &[Case::non_empty(&misspelled, &at)]);
    assert!(!broken.status.success(), "{broken:?}");
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("heapspan_task_memory_lives_bytes"),
        "{broken:?}"
    );

    // The trace queries (Tempo's TraceQL, Jaeger's search) ask for span names and attributes
    // the real output has.
    let spans = real_spans(&file);
    for (file_name, p) in panels(&boards) {
        for t in p["targets"].as_array().unwrap() {
            let (name, attrs) = match t["datasource"]["type"].as_str() {
                Some("tempo") => traceql_parts(t["query"].as_str().unwrap()),
                Some("jaeger") => (t["operation"].as_str().unwrap().to_owned(), Vec::new()),
                _ => continue,
            };
            let named: Vec<_> = spans.iter().filter(|(n, _, _)| *n == name).collect();
            assert!(
                !named.is_empty(),
                "{file_name}: {:?}: no {name} span in the real output",
                title(&p)
            );
            assert!(
                named.iter().all(|(_, _, s)| s.contains(SERVICE)),
                "service.name"
            );
            for a in attrs {
                // A finding carries the span name only when it has one (kinds about a span);
                // this run's findings are about tasks.
                if name == n::FINDING_SPAN && a == n::SPAN_NAME {
                    continue;
                }
                assert!(
                    named.iter().any(|(_, keys, _)| keys.contains(&a)),
                    "{file_name}: {:?}: no {name} span has {a}",
                    title(&p)
                );
            }
        }
    }
}
