//! Running PromQL against real heapspan output with `promtool test rules` (Debian's Prometheus
//! 2.42, installed into `.cache/tools` by `integration-tests/install-tools.sh`): the metric
//! requests of an OTLP JSON file are translated into Prometheus samples ([`crate::prom`]) and
//! written as promtool's `input_series`, one export request per step of [`STEP`], and each
//! query becomes a `promql_expr_test` case.
//!
//! The test file is written as JSON, which YAML (promtool's format) reads as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::prom::{self, Sample};
use crate::{root, ExportMetricsServiceRequest};

/// The step between two export requests in the test file: the scrape interval the
/// provisioned Prometheus data source declares (`timeInterval: 10s`).
pub const STEP: &str = "10s";
/// [`STEP`] in seconds.
pub const STEP_SECONDS: u64 = 10;

/// One of the tools `integration-tests/install-tools.sh` installs into
/// `<workspace>/.cache/tools/bin`; panics (a failure, never a skip) when it is missing.
#[track_caller]
pub fn tool(name: &str) -> PathBuf {
    let path = root().join(".cache/tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run integration-tests/install-tools.sh (it installs promtool, yamllint, \
         check-jsonschema, the Python venv with grafana-foundation-sdk and chromium into \
         .cache/tools)",
        path.display()
    );
    path
}

/// The Python of the tools' venv (with grafana-foundation-sdk). `.cache/tools/bin/python`
/// links to the venv's `bin/python`; Python finds its venv (`pyvenv.cfg`) only when started
/// from the venv's own `bin/`, so the link is followed once.
#[track_caller]
pub fn venv_python() -> PathBuf {
    let link = tool("python");
    match std::fs::read_link(&link) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => link.parent().expect("bin").join(target),
        Err(_) => link,
    }
}

/// The metric export requests among the lines of an OTLP JSON file, in order.
pub fn metric_requests(otlp_json: &Path) -> Vec<ExportMetricsServiceRequest> {
    let text = std::fs::read_to_string(otlp_json).expect("the OTLP JSON file");
    text.lines()
        .filter(|l| l.contains("\"resourceMetrics\""))
        .map(|l| serde_json::from_str(l).expect("an ExportMetricsServiceRequest"))
        .collect()
}

/// Prometheus series built from a run's export requests: per series, its value at each step
/// (`None`: no sample at that step; `Some(None)`: a staleness marker).
#[derive(Debug, Default)]
pub struct Series {
    /// Series (`name{labels}`) → values per step.
    pub values: BTreeMap<String, Vec<Option<Option<f64>>>>,
    /// The samples, as translated.
    pub samples: Vec<Sample>,
    /// Steps (export requests).
    pub steps: usize,
}

impl Series {
    /// Translates `requests` (request `i` at step `i`) with `settings`.
    pub fn from_requests(
        requests: &[ExportMetricsServiceRequest],
        settings: &prom::Settings,
    ) -> Result<Series, String> {
        let mut out = Series {
            steps: requests.len(),
            ..Series::default()
        };
        for (step, req) in requests.iter().enumerate() {
            for s in prom::translate(req, settings)? {
                let row = out
                    .values
                    .entry(s.series())
                    .or_insert_with(|| vec![None; requests.len()]);
                row[step] = Some(s.value);
                out.samples.push(s);
            }
        }
        Ok(out)
    }

    /// The time of the last step, where the cases are evaluated: `"<seconds>s"`.
    pub fn last_step(&self) -> String {
        format!("{}s", (self.steps.saturating_sub(1) as u64) * STEP_SECONDS)
    }

    /// promtool's `input_series`.
    fn input_series(&self) -> Vec<Value> {
        self.values
            .iter()
            .map(|(series, values)| {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| match v {
                        None => "_".to_owned(),
                        Some(None) => "stale".to_owned(),
                        Some(Some(x)) => x.to_string(),
                    })
                    .collect();
                json!({"series": series, "values": values.join(" ")})
            })
            .collect()
    }
}

/// One `promql_expr_test` case: the expression, evaluated at `eval_time`, must give exactly
/// `expected` (labels in PromQL notation such as `{tokio_task_name="planted"}`, value).
#[derive(Clone, Debug)]
pub struct Case {
    /// PromQL.
    pub expr: String,
    /// `"<n>s"`.
    pub eval_time: String,
    /// The expected samples.
    pub expected: Vec<(String, f64)>,
}

impl Case {
    /// A case that passes when `expr` returns at least one sample: promtool compares whole
    /// results, so the expression is wrapped as `count(<expr>) > bool 0`, which is `{} 1` for a
    /// non-empty result and empty otherwise.
    pub fn non_empty(expr: &str, eval_time: &str) -> Case {
        Case {
            expr: format!("count({expr}) > bool 0"),
            eval_time: eval_time.to_owned(),
            expected: vec![("{}".to_owned(), 1.0)],
        }
    }

    /// A case that passes when `expr` returns nothing.
    pub fn empty(expr: &str, eval_time: &str) -> Case {
        Case {
            expr: expr.to_owned(),
            eval_time: eval_time.to_owned(),
            expected: Vec::new(),
        }
    }
}

/// The `promtool test rules` file (JSON, read as YAML) for `series` and `cases`, with the
/// rules file `rules` (which may hold no groups).
pub fn test_file(rules: &str, series: &Series, cases: &[Case]) -> String {
    let cases: Vec<Value> = cases
        .iter()
        .map(|c| {
            let samples: Vec<Value> = c
                .expected
                .iter()
                .map(|(labels, value)| json!({"labels": labels, "value": value}))
                .collect();
            json!({"expr": c.expr, "eval_time": c.eval_time, "exp_samples": samples})
        })
        .collect();
    let file = json!({
        "rule_files": [rules],
        "evaluation_interval": STEP,
        "tests": [{
            "interval": STEP,
            "input_series": series.input_series(),
            "promql_expr_test": cases,
        }],
    });
    serde_json::to_string_pretty(&file).expect("JSON")
}

/// Writes the test file (and an empty rules file) into `dir` and runs `promtool test rules`
/// on it.
pub fn run(dir: &Path, series: &Series, cases: &[Case]) -> Output {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, "groups: []\n").expect("rules file");
    let file = dir.join("dashboard-queries.test.yaml");
    std::fs::write(&file, test_file("rules.yaml", series, cases)).expect("test file");
    Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(&file)
        .current_dir(dir)
        .output()
        .expect("run promtool")
}
