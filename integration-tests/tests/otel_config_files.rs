//! Offline checks of the view stack in `otel-config/`. Docker, the contrib collector,
//! Prometheus 3, Jaeger, Tempo and Grafana cannot run on the machines this is tested on, so
//! each file is checked with what does run here (yamllint, check-jsonschema's compose schema,
//! promtool 2.42, Python's YAML parser) and against the other files it names: the collector's
//! components against the pinned contrib release, every endpoint against a compose service and
//! a port that service listens on, the dashboard provider against the compose mount, the
//! READMEs' PromQL against promtool and their names against the telemetry contract.
//!
//! The tools come from `integration-tests/install-tools.sh` (into `<workspace>/.cache/tools/bin`);
//! a missing one fails the test with the script's name. YAML is read with the tools' Python
//! (PyYAML comes with yamllint), so the test needs no YAML crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use heapspan::export::names::{self, MetricName};
use heapspan::findings::{Kind, Severity};
use heapspan::graph::EdgeKind;
use heapspan_integration_tests::{root, scratch};
use serde_json::{json, Value};

/// The contrib collector release `otel-config/compose.yaml` pins. The component lists below were
/// checked for it: bumping the image fails [`collector_configs_name_only_components_of_the_pinned_contrib`]
/// until this constant (and the lists) follow.
const CONTRIB_IMAGE: &str = "otel/opentelemetry-collector-contrib:0.159.0";

/// Component types of otelcol-contrib 0.159.0 that otel-config may use, by kind.
///
/// What was looked at (no copy of the 0.159.0 builder manifest was at hand, so the list holds
/// only names checked one by one, and a name not here fails until someone checks it):
/// - the distribution's module list, `distributions/otelcol-contrib/manifest.yaml` in
///   open-telemetry/opentelemetry-collector-releases (the stored copy is at 0.135.0): it carries
///   otlpreceiver, otlpjsonfilereceiver, memorylimiterprocessor, batchprocessor, debugexporter,
///   otlpexporter, otlphttpexporter, healthcheckextension, zpagesextension and forwardconnector;
/// - the type names, which 2026 releases renamed to lower_snake_case
///   (open-telemetry/opentelemetry-collector#14208, -contrib#45339): collector v0.144.0's
///   release notes (`exporter/otlp_grpc: Rename otlp exporter to otlp_grpc exporter and add
///   deprecated alias otlp` (#14403), the same for `otlp_http` (#14396)); contrib PR #48728
///   (`[receiver/otlpjsonfile] rename to otlp_json_file with deprecated alias otlpjsonfile`,
///   merged 2026-05-28, before v0.154.0 of 2026-06-09); grafana/docker-otel-lgtm#1434 (the
///   `otlp` receiver keeps its name: one component for both protocols); the `type:` of the
///   modules' `metadata.yaml`, snake case already: `memory_limiter`, `batch`, `debug`,
///   `zpages`, `forward` (opentelemetry-collector) and `health_check` (-contrib, a copy from
///   after v0.142.0).
const RECEIVERS: &[&str] = &["otlp", "otlp_json_file"];
const PROCESSORS: &[&str] = &["memory_limiter", "batch"];
const EXPORTERS: &[&str] = &["debug", "otlp_grpc", "otlp_http"];
const EXTENSIONS: &[&str] = &["health_check", "zpages"];
const CONNECTORS: &[&str] = &["forward"];

/// Old names that still start (deprecated aliases) or no longer exist, with their current name.
const OLD_NAMES: &[(&str, &str)] = &[
    (
        "otlp",
        "otlp_grpc (exporter; `otlp` stays the receiver's name)",
    ),
    ("otlphttp", "otlp_http"),
    ("logging", "debug"),
    ("otlpjsonfile", "otlp_json_file"),
];

// ---- helpers ----

fn otel_config() -> PathBuf {
    root().join("otel-config")
}

/// A tool installed by `integration-tests/install-tools.sh`; fails, never skips, without it.
#[track_caller]
fn tool(name: &str) -> PathBuf {
    let path = root().join(".cache/tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run integration-tests/install-tools.sh (it installs promtool, yamllint, \
         check-jsonschema and a Python with PyYAML into .cache/tools/bin)",
        path.display()
    );
    path
}

/// Runs a command to completion (its output is kept for the assertion messages).
#[track_caller]
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A YAML file as JSON, read by PyYAML's `safe_load`.
#[track_caller]
fn yaml(path: &Path) -> Value {
    let out = run(Command::new(tool("python")).args([
        "-c",
        "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        path.to_str().expect("utf-8 path"),
    ]));
    assert!(out.status.success(), "{}: {}", path.display(), text(&out));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

/// Every file under `dir` (recursively) whose name ends with one of `suffixes`, sorted.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if suffixes.iter().any(|s| name.ends_with(s)) {
                    found.push(p);
                }
            }
        }
    }
    found.sort();
    found
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn compose() -> Value {
    yaml(&otel_config().join("compose.yaml"))
}

#[track_caller]
fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("compose.yaml has no service `{name}`"))
}

/// A service's `command` as a list of words.
fn command(svc: &Value) -> Vec<String> {
    match &svc["command"] {
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The value of `flag` in a command (`--flag=value` or `-flag=value`).
fn flag(cmd: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    cmd.iter()
        .find_map(|w| w.strip_prefix(&prefix).map(str::to_owned))
}

/// A service's bind mounts: container path → host path (resolved from `otel-config/`).
fn binds(svc: &Value) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    for v in svc["volumes"].as_array().into_iter().flatten() {
        let (source, target) = match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                (parts[0].to_owned(), parts[1].to_owned())
            }
            _ => (
                v["source"].as_str().unwrap_or_default().to_owned(),
                v["target"].as_str().unwrap_or_default().to_owned(),
            ),
        };
        if source.starts_with("./") || source.starts_with("../") {
            m.insert(target, otel_config().join(source.trim_start_matches("./")));
        }
    }
    m
}

/// The host file a service reads its configuration from: the bind mount at the path its
/// command names with `config_flag`.
#[track_caller]
fn config_of(compose: &Value, name: &str, config_flag: &str) -> PathBuf {
    let svc = service(compose, name);
    let target = flag(&command(svc), config_flag)
        .unwrap_or_else(|| panic!("service `{name}`: no {config_flag}= in its command"));
    let host = binds(svc)
        .remove(&target)
        .unwrap_or_else(|| panic!("service `{name}`: nothing is mounted at {target}"));
    std::fs::canonicalize(&host)
        .unwrap_or_else(|e| panic!("service `{name}`: {} ({e})", host.display()))
}

/// `host:port` (or a URL) → (host, port, path).
#[track_caller]
fn host_port(endpoint: &str) -> (String, u16, String) {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in endpoint {endpoint}"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("bad port in {endpoint}"));
    (host.to_owned(), port, path.to_owned())
}

/// The component ids a collector configuration defines, by section.
fn defined(config: &Value, section: &str) -> BTreeSet<String> {
    config[section]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every way a collector configuration names a component that is not defined in it: pipelines'
/// receivers, processors and exporters (a connector counts as both), and service extensions.
fn undefined_references(config: &Value) -> Vec<String> {
    let connectors = defined(config, "connectors");
    let mut errors = Vec::new();
    for (pipeline, p) in config["service"]["pipelines"]
        .as_object()
        .expect("service.pipelines")
    {
        for (role, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            let known = defined(config, section);
            let names = p[role].as_array().cloned().unwrap_or_default();
            if role != "processors" && names.is_empty() {
                errors.push(format!("pipeline {pipeline} has no {role}"));
            }
            // A connector is the exporter of one pipeline and the receiver of another.
            let connector_ok = role != "processors";
            for id in names {
                let id = id.as_str().expect("component id");
                let is_connector = connector_ok && connectors.contains(id);
                if !known.contains(id) && !is_connector {
                    errors.push(format!(
                        "pipeline {pipeline} names {role} `{id}`, not defined in `{section}`"
                    ));
                }
            }
        }
    }
    let extensions = defined(config, "extensions");
    for id in config["service"]["extensions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = id.as_str().expect("extension id");
        if !extensions.contains(id) {
            errors.push(format!(
                "service.extensions names `{id}`, not defined in `extensions`"
            ));
        }
    }
    errors
}

// ---- (a) YAML ----

#[test]
fn every_yaml_file_lints_strictly() {
    let dir = otel_config();
    let yamls = files(&dir, &[".yaml", ".yml"]);
    let names: Vec<String> = yamls.iter().map(|p| rel(p)).collect();
    for expected in [
        "otel-config/compose.yaml",
        "otel-config/collector/collector.yaml",
        "otel-config/collector/replay.yaml",
        "otel-config/prometheus/prometheus.yml",
        "otel-config/jaeger/config.yaml",
        "otel-config/tempo/tempo.yaml",
        "otel-config/grafana/provisioning/datasources/heapspan.yaml",
        "otel-config/grafana/provisioning/dashboards/heapspan.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not found among {names:?}"
        );
    }
    let out = run(Command::new(tool("yamllint"))
        .arg("-s")
        .arg("-c")
        .arg(dir.join(".yamllint"))
        .args(&yamls));
    assert!(
        out.status.success(),
        "yamllint -s failed on otel-config (config otel-config/.yamllint):\n{}",
        text(&out)
    );
}

// ---- (b) compose ----

#[test]
fn compose_file_validates_against_the_compose_spec() {
    let out = run(Command::new(tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(otel_config().join("compose.yaml")));
    assert!(
        out.status.success(),
        "otel-config/compose.yaml against the compose spec:\n{}",
        text(&out)
    );
}

#[test]
fn compose_pins_every_image() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for (name, svc) in services {
        let image = svc["image"].as_str().unwrap_or_default();
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("service `{name}`: image `{image}` has no tag"));
        assert!(
            tag.chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == 'v')
                && tag.contains('.')
                && tag != "latest",
            "service `{name}`: image `{image}` is not pinned to a release"
        );
    }
    let image = |s: &str| service(&compose, s)["image"].as_str().unwrap().to_owned();
    assert!(image("prometheus").starts_with("prom/prometheus:v3."));
    assert!(image("grafana").starts_with("grafana/grafana:11.6."));
    assert!(image("jaeger").starts_with("jaegertracing/jaeger:2."));
}

// ---- (c) collector components ----

#[test]
fn collector_configs_name_only_components_of_the_pinned_contrib() {
    let compose = compose();
    // The collector configurations compose runs, and every file in collector/: the same set.
    let mut run_by_compose = BTreeSet::new();
    for (name, svc) in compose["services"].as_object().unwrap() {
        if svc["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("otel/opentelemetry-collector")
        {
            assert_eq!(
                svc["image"].as_str(),
                Some(CONTRIB_IMAGE),
                "service `{name}` runs another collector than the one the component lists of \
                 this test were checked for: check the names for the new release, then update \
                 CONTRIB_IMAGE"
            );
            run_by_compose.insert(config_of(&compose, name, "--config"));
        }
    }
    let in_dir: BTreeSet<PathBuf> = files(&otel_config().join("collector"), &[".yaml", ".yml"])
        .into_iter()
        .map(|p| std::fs::canonicalize(p).unwrap())
        .collect();
    assert_eq!(
        run_by_compose, in_dir,
        "every collector configuration is run by a compose service, and only those"
    );

    let mut errors = Vec::new();
    for file in &in_dir {
        let config = yaml(file);
        for (section, known) in [
            ("receivers", RECEIVERS),
            ("processors", PROCESSORS),
            ("exporters", EXPORTERS),
            ("extensions", EXTENSIONS),
            ("connectors", CONNECTORS),
        ] {
            for id in defined(&config, section) {
                let kind = id.split('/').next().unwrap();
                if known.contains(&kind) {
                    continue;
                }
                let hint = OLD_NAMES
                    .iter()
                    .find(|(old, _)| *old == kind)
                    .map(|(_, new)| format!(": an old name, use {new}"))
                    .unwrap_or_default();
                errors.push(format!(
                    "{}: {section} `{id}`: type `{kind}` is not among the checked {section} of \
                     {CONTRIB_IMAGE} {known:?}{hint}",
                    rel(file)
                ));
            }
        }
        errors.extend(
            undefined_references(&config)
                .into_iter()
                .map(|e| format!("{}: {e}", rel(file))),
        );
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_replay_config_sends_where_the_live_one_does() {
    let live = yaml(&otel_config().join("collector/collector.yaml"));
    let replay = yaml(&otel_config().join("collector/replay.yaml"));
    for section in ["processors", "exporters"] {
        assert_eq!(
            live[section], replay[section],
            "collector.yaml and replay.yaml differ in `{section}`"
        );
    }
    for pipeline in ["metrics", "traces"] {
        for role in ["processors", "exporters"] {
            assert_eq!(
                live["service"]["pipelines"][pipeline][role],
                replay["service"]["pipelines"][pipeline][role],
                "pipeline {pipeline}: {role} differ"
            );
        }
        assert_eq!(
            replay["service"]["pipelines"][pipeline]["receivers"],
            json!(["otlp_json_file"])
        );
    }
    // The file the receiver reads is the one compose mounts from HEAPSPAN_REPLAY_FILE.
    let include = replay["receivers"]["otlp_json_file"]["include"]
        .as_array()
        .expect("otlp_json_file.include")
        .clone();
    assert_eq!(
        replay["receivers"]["otlp_json_file"]["start_at"],
        "beginning"
    );
    let compose = compose();
    let svc = service(&compose, "otel-collector-replay");
    assert_eq!(svc["profiles"], json!(["replay"]));
    let mount = svc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["type"] == "bind"
                && v["source"]
                    .as_str()
                    .is_some_and(|s| s.contains("HEAPSPAN_REPLAY_FILE"))
        })
        .expect("a bind mount of ${HEAPSPAN_REPLAY_FILE...}");
    assert_eq!(include, vec![mount["target"].clone()]);
    assert_eq!(mount["bind"]["create_host_path"], false);
}

#[test]
fn jaeger_config_names_only_components_it_defines() {
    let config = yaml(&otel_config().join("jaeger/config.yaml"));
    let errors = undefined_references(&config);
    assert!(
        errors.is_empty(),
        "otel-config/jaeger/config.yaml: {}",
        errors.join("\n")
    );
    let storage = &config["extensions"]["jaeger_query"]["storage"]["traces"];
    let backends = defined(&config["extensions"]["jaeger_storage"], "backends");
    assert!(
        backends.contains(storage.as_str().unwrap_or_default()),
        "jaeger_query reads storage {storage}, not among jaeger_storage's backends {backends:?}"
    );
    assert_eq!(
        config["exporters"]["jaeger_storage_exporter"]["trace_storage"], *storage,
        "the exporter writes where jaeger_query reads"
    );
}

// ---- (d) Prometheus ----

#[test]
fn prometheus_config_passes_promtool_without_its_otlp_block() {
    let dir = scratch("otel_config_promtool");
    let copy = dir.join("prometheus-without-otlp.yml");
    // promtool 2.42 rejects an `otlp:` block (Prometheus 3 only): check the rest of the file.
    let out = run(Command::new(tool("python")).args([
        "-c",
        "import sys, yaml\n\
         c = yaml.safe_load(open(sys.argv[1]))\n\
         assert 'otlp' in c, 'no otlp block'\n\
         del c['otlp']\n\
         yaml.safe_dump(c, open(sys.argv[2], 'w'))",
        otel_config()
            .join("prometheus/prometheus.yml")
            .to_str()
            .unwrap(),
        copy.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Command::new(tool("promtool"))
        .arg("check")
        .arg("config")
        .arg(&copy));
    assert!(
        out.status.success(),
        "promtool check config on otel-config/prometheus/prometheus.yml less its otlp block:\n{}",
        text(&out)
    );
}

#[test]
fn prometheus_otlp_block_pins_the_translation_and_promotes_the_service() {
    let config = yaml(&otel_config().join("prometheus/prometheus.yml"));
    let otlp = &config["otlp"];
    assert_eq!(
        otlp["translation_strategy"], "UnderscoreEscapingWithSuffixes",
        "the dashboards and otel-config/prometheus/README.md are written for this strategy"
    );
    let promoted: Vec<&str> = otlp["promote_resource_attributes"]
        .as_array()
        .expect("otlp.promote_resource_attributes")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for attr in ["service.name", "service.instance.id"] {
        assert!(
            promoted.contains(&attr),
            "{attr} is not promoted: {promoted:?}"
        );
    }
    // A replayed capture carries its own (old) timestamps: the window must be set.
    let window = config["storage"]["tsdb"]["out_of_order_time_window"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !window.is_empty() && window != "0s",
        "no out-of-order window"
    );
    // And the server runs with the receiver on, with this file.
    let compose = compose();
    let cmd = command(service(&compose, "prometheus"));
    assert!(
        cmd.iter().any(|w| w == "--web.enable-otlp-receiver"),
        "{cmd:?}"
    );
    assert_eq!(
        config_of(&compose, "prometheus", "--config.file"),
        std::fs::canonicalize(otel_config().join("prometheus/prometheus.yml")).unwrap()
    );
}

// ---- (e) endpoints ----

/// Where each compose service listens inside the compose network: (port, protocol), protocol
/// `grpc` or `http`, read from the configuration file each service mounts.
fn listeners(compose: &Value) -> BTreeMap<String, BTreeSet<(u16, &'static str)>> {
    let mut m: BTreeMap<String, BTreeSet<(u16, &'static str)>> = BTreeMap::new();
    let mut add = |svc: &str, endpoint: &Value, proto: &'static str| {
        if let Some(e) = endpoint.as_str() {
            m.entry(svc.to_owned())
                .or_default()
                .insert((host_port(e).1, proto));
        }
    };
    let otlp_receiver = |config: &Value| -> Vec<(Value, &'static str)> {
        let p = &config["protocols"];
        vec![
            (p["grpc"]["endpoint"].clone(), "grpc"),
            (p["http"]["endpoint"].clone(), "http"),
        ]
    };
    for (name, svc) in compose["services"].as_object().unwrap() {
        let image = svc["image"].as_str().unwrap_or_default();
        if image.starts_with("otel/opentelemetry-collector") {
            let config = yaml(&config_of(compose, name, "--config"));
            for (e, proto) in otlp_receiver(&config["receivers"]["otlp"]) {
                add(name, &e, proto);
            }
        } else if image.starts_with("jaegertracing/jaeger") {
            let config = yaml(&config_of(compose, name, "--config"));
            for (e, proto) in otlp_receiver(&config["receivers"]["otlp"]) {
                add(name, &e, proto);
            }
            let query = &config["extensions"]["jaeger_query"];
            add(name, &query["http"]["endpoint"], "http");
            add(name, &query["grpc"]["endpoint"], "grpc");
        } else if image.starts_with("grafana/tempo")
            && flag(&command(svc), "-config.file").is_some()
        {
            let config = yaml(&config_of(compose, name, "-config.file"));
            for (e, proto) in otlp_receiver(&config["distributor"]["receivers"]["otlp"]) {
                add(name, &e, proto);
            }
            let port = config["server"]["http_listen_port"]
                .as_u64()
                .expect("http_listen_port");
            add(name, &json!(format!("0.0.0.0:{port}")), "http");
        } else if image.starts_with("prom/prometheus") {
            let addr = flag(&command(svc), "--web.listen-address").expect("--web.listen-address");
            add(name, &json!(addr), "http");
        } else if image.starts_with("grafana/grafana") {
            // Grafana's default http_port (GF_SERVER_HTTP_PORT unset here).
            assert!(svc["environment"].get("GF_SERVER_HTTP_PORT").is_none());
            add(name, &json!("0.0.0.0:3000"), "http");
        }
    }
    m
}

#[test]
fn every_endpoint_names_a_compose_service_and_a_port_it_listens_on() {
    let compose = compose();
    let listeners = listeners(&compose);
    for svc in ["otel-collector", "prometheus", "jaeger", "tempo", "grafana"] {
        assert!(listeners.contains_key(svc), "{svc}: no listener found");
    }
    let mut errors = Vec::new();
    let mut checked = 0;
    let mut check = |from: &str, host: &str, port: u16, proto: &str, depends: &BTreeSet<String>| {
        checked += 1;
        match listeners.get(host) {
            None => errors.push(format!("{from}: {host}:{port} is not a compose service")),
            Some(l) if !l.contains(&(port, proto)) => errors.push(format!(
                "{from}: {host}:{port} ({proto}): {host} listens on {l:?}"
            )),
            Some(_) => {}
        }
        if !depends.contains(host) {
            errors.push(format!("{from}: sends to {host} but does not depend on it"));
        }
    };
    let depends_on = |svc: &Value| -> BTreeSet<String> {
        match &svc["depends_on"] {
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    };
    // The collectors' exporters.
    for (name, svc) in compose["services"].as_object().unwrap() {
        if !svc["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("otel/opentelemetry-collector")
        {
            continue;
        }
        let file = config_of(&compose, name, "--config");
        let config = yaml(&file);
        for (id, exporter) in config["exporters"].as_object().unwrap() {
            let proto = match id.split('/').next().unwrap() {
                "otlp_grpc" => "grpc",
                "otlp_http" => "http",
                _ => continue,
            };
            let endpoint = exporter["endpoint"].as_str().expect("endpoint");
            let (host, port, path) = host_port(endpoint);
            let from = format!("{} exporter {id}", rel(&file));
            check(&from, &host, port, proto, &depends_on(svc));
            if host == "prometheus" {
                // Prometheus 3's OTLP receiver: /api/v1/otlp/v1/metrics, `/v1/metrics` appended.
                assert_eq!(path, "/api/v1/otlp", "{from}");
            }
        }
    }
    // Grafana's data sources.
    let grafana = service(&compose, "grafana");
    let datasources = yaml(&otel_config().join("grafana/provisioning/datasources/heapspan.yaml"));
    for ds in datasources["datasources"].as_array().unwrap() {
        let (host, port, _) = host_port(ds["url"].as_str().unwrap());
        let from = format!("Grafana data source {}", ds["uid"]);
        check(&from, &host, port, "http", &depends_on(grafana));
    }
    // Published ports: the container side is a listener, and the README documents the host side.
    let readme =
        std::fs::read_to_string(otel_config().join("README.md")).expect("otel-config/README.md");
    for (name, svc) in compose["services"].as_object().unwrap() {
        for p in svc["ports"].as_array().into_iter().flatten() {
            let p = p.as_str().expect("ports in short syntax");
            let parts: Vec<&str> = p.split(':').collect();
            let (bind, host_port, container) = match parts[..] {
                [b, h, c] => (b, h, c),
                _ => panic!("service `{name}`: publish {p} as ADDRESS:HOST:CONTAINER"),
            };
            assert_eq!(
                bind, "127.0.0.1",
                "service `{name}`: {p} is not bound to loopback"
            );
            let container: u16 = container.parse().unwrap();
            if !listeners[name.as_str()]
                .iter()
                .any(|(port, _)| *port == container)
            {
                errors.push(format!(
                    "service `{name}` publishes {p}, it listens on {:?}",
                    listeners[name.as_str()]
                ));
            }
            if !readme.contains(&format!("localhost:{host_port}")) {
                errors.push(format!(
                    "otel-config/README.md does not mention localhost:{host_port} ({name})"
                ));
            }
        }
    }
    assert!(checked >= 8, "only {checked} endpoints found");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---- (f) dashboards ----

#[test]
fn grafana_loads_every_dashboard_file_from_the_provider_path() {
    let provisioning = otel_config().join("grafana/provisioning");
    let providers = yaml(&provisioning.join("dashboards/heapspan.yaml"));
    let provider = &providers["providers"][0];
    assert_eq!(providers["providers"].as_array().map(Vec::len), Some(1));
    assert_eq!(provider["type"], "file");
    assert_eq!(provider["folder"], "heapspan");
    let path = provider["options"]["path"]
        .as_str()
        .expect("options.path")
        .to_owned();

    let compose = compose();
    let grafana = service(&compose, "grafana");
    let binds = binds(grafana);
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let dashboards_dir = otel_config().join("grafana/dashboards");
    assert_eq!(
        binds.get(&path).map(|p| canon(p)),
        Some(canon(&dashboards_dir)),
        "the provider reads {path}: compose must mount otel-config/grafana/dashboards there \
         (grafana mounts {binds:?})"
    );
    for sub in ["datasources", "dashboards"] {
        assert_eq!(
            binds
                .get(&format!("/etc/grafana/provisioning/{sub}"))
                .map(|p| canon(p)),
            Some(canon(&provisioning.join(sub))),
            "provisioning/{sub} is not mounted where Grafana reads it"
        );
    }

    // Every dashboard present is a JSON file directly in the mounted directory, with its own uid.
    let found = files(&dashboards_dir, &[".json"]);
    let mut uids = BTreeSet::new();
    for file in &found {
        assert_eq!(
            file.parent(),
            Some(dashboards_dir.as_path()),
            "{} is in a subfolder",
            rel(file)
        );
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
        if let Some(uid) = dash["uid"].as_str() {
            assert!(
                uids.insert(uid.to_owned()),
                "{}: uid {uid} used twice",
                rel(file)
            );
        }
    }
    eprintln!(
        "{} dashboard file(s) under otel-config/grafana/dashboards",
        found.len()
    );

    // The home dashboard is one of them, through the same mount.
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .expect("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let name = home
        .strip_prefix(&format!("{path}/"))
        .unwrap_or_else(|| panic!("home dashboard {home} is not under the provider path {path}"));
    assert_eq!(name, "overview.json");
    if !found.is_empty() {
        assert!(
            dashboards_dir.join(name).exists(),
            "home dashboard {name} does not exist"
        );
    }
}

// ---- (g), (h) the READMEs ----

fn readmes() -> Vec<(PathBuf, String)> {
    let list: Vec<(PathBuf, String)> = files(&otel_config(), &["README.md"])
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect();
    for expected in [
        "README.md",
        "prometheus/README.md",
        "jaeger/README.md",
        "tempo/README.md",
    ] {
        assert!(
            list.iter().any(|(p, _)| *p == otel_config().join(expected)),
            "otel-config/{expected} is missing"
        );
    }
    list
}

/// The contents of the fenced code blocks of `lang` in a markdown text.
fn fenced(markdown: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == open => current = Some(String::new()),
            Some(b) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn readme_promql_examples_parse() {
    let mut rules = Vec::new();
    for (path, text) in readmes() {
        for (i, expr) in fenced(&text, "promql").into_iter().enumerate() {
            rules.push(json!({
                "record": format!("readme_example_{}", rules.len()),
                "expr": expr,
                "labels": { "source": format!("{}#{}", rel(&path), i + 1) },
            }));
        }
    }
    assert!(
        rules.len() >= 6,
        "only {} PromQL examples in the READMEs",
        rules.len()
    );
    let dir = scratch("otel_config_promql");
    let file = dir.join("readme-examples.rules.json");
    let doc = json!({ "groups": [{ "name": "readme", "rules": rules }] });
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let out = run(Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&file));
    assert!(
        out.status.success(),
        "a PromQL example of the otel-config READMEs does not parse ({}):\n{}",
        file.display(),
        text(&out)
    );
}

/// The string values of `pub const X: &str = "...";` in src/export/names.rs.
fn contract_strings() -> BTreeSet<String> {
    let src = std::fs::read_to_string(root().join("src/export/names.rs")).expect("names.rs");
    let set: BTreeSet<String> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": &str = \""))
        .filter_map(|(_, v)| v.strip_suffix("\";"))
        .map(str::to_owned)
        .collect();
    // The parse is the test's own: the crate's constants must be in it.
    for c in [
        names::FINDING_SPAN,
        names::TASK_MEMORY_LIVE,
        names::EDGE_KIND,
        names::MEMORY_RESIDUE,
    ] {
        assert!(set.contains(c), "names.rs parse missed {c}");
    }
    set
}

/// UnderscoreEscapingWithSuffixes of a name: each run of characters outside [a-zA-Z0-9:]
/// becomes one `_`.
fn escape(name: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == ':' {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out
}

/// The Prometheus names of a contract metric (series names: a histogram is its `_bucket`, `_sum`
/// and `_count`), under UnderscoreEscapingWithSuffixes (`escaped`) or NoUTF8EscapingWithSuffixes
/// (the dots stay, the suffixes are the same).
fn prometheus_names(m: &MetricName, escaped: bool) -> Vec<String> {
    let unit = match m.unit {
        "By" => "_bytes",
        "s" => "_seconds",
        "1" if m.instrument == "gauge" => "_ratio",
        u if u.starts_with('{') => "",
        u => panic!("unit {u} of {} has no rule here", m.name),
    };
    let name = if escaped {
        escape(m.name)
    } else {
        m.name.to_owned()
    };
    let base = format!("{name}{unit}");
    match m.instrument {
        "counter" => vec![format!("{base}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{base}{s}"))
            .collect(),
        _ => vec![base],
    }
}

/// Words of `text` that start with `prefix` and go on with [a-z0-9_.] (not preceded by a word
/// character), with trailing dots cut, and whether `.*` follows.
fn words_with_prefix<'a>(text: &'a str, prefix: &str) -> Vec<(&'a str, bool)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(prefix) {
        let start = from + i;
        from = start + prefix.len();
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric() || b"_-/".contains(&bytes[start - 1]))
        {
            continue;
        }
        let mut end = from;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || b"_.".contains(&bytes[end]))
        {
            end += 1;
        }
        let word = text[start..end].trim_end_matches('.');
        let wildcard = text[start + word.len()..].starts_with(".*");
        out.push((word, wildcard));
        from = end.max(from);
    }
    out
}

#[test]
fn readmes_name_only_contract_names() {
    let mut contract = contract_strings();
    let metrics = || {
        names::METRICS
            .iter()
            .chain(names::GRAPH_METRICS)
            .chain(names::FINDING_METRICS)
    };
    let mut prometheus: BTreeSet<String> =
        metrics().flat_map(|m| prometheus_names(m, true)).collect();
    // Attribute keys as labels (the metric names themselves are no labels).
    let metric_names: BTreeSet<&str> = metrics().map(|m| m.name).collect();
    prometheus.extend(
        contract
            .iter()
            .filter(|c| c.starts_with("heapspan.") && !metric_names.contains(c.as_str()))
            .map(|c| escape(c)),
    );
    // The README shows what NoUTF8EscapingWithSuffixes would make of a name.
    contract.extend(metrics().flat_map(|m| prometheus_names(m, false)));
    let file_suffixes = ["json", "jsonl", "yaml", "yml", "md", "rs", "dot"];
    let mut errors = Vec::new();
    let mut seen = 0;
    for (path, text) in readmes() {
        for (word, wildcard) in words_with_prefix(&text, "heapspan.") {
            if word == "heapspan"
                || file_suffixes
                    .iter()
                    .any(|s| word.ends_with(&format!(".{s}")))
            {
                continue;
            }
            seen += 1;
            let ok = if wildcard {
                contract.iter().any(|c| c.starts_with(&format!("{word}.")))
            } else {
                contract.contains(word)
            };
            if !ok {
                errors.push(format!(
                    "{}: `{word}{}` is not in src/export/names.rs",
                    rel(&path),
                    if wildcard { ".*" } else { "" }
                ));
            }
        }
        for (word, _) in words_with_prefix(&text, "heapspan_") {
            let word = word.trim_end_matches('_');
            seen += 1;
            if !prometheus.contains(word) {
                errors.push(format!(
                    "{}: `{word}` is not the Prometheus name of a contract metric or attribute",
                    rel(&path)
                ));
            }
        }
    }
    assert!(seen >= 20, "only {seen} names found in the READMEs");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The quoted values right after `key` (`key = "v"`, `key="v"`, `key=~"a|b"`, `key=v` in a
/// Jaeger tag search), split at `|`.
fn values_after<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(key) {
        let mut rest = &text[from + i + key.len()..];
        from += i + key.len();
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        rest = rest.trim_start();
        let Some(r) = rest
            .strip_prefix("=~")
            .or_else(|| rest.strip_prefix("!="))
            .or_else(|| rest.strip_prefix('='))
        else {
            continue;
        };
        let r = r.trim_start();
        let value = if let Some(q) = r.strip_prefix('"') {
            &q[..q.find('"').unwrap_or(0)]
        } else {
            let end = r
                .find(|c: char| c.is_whitespace() || c == '`' || c == '}' || c == ',')
                .unwrap_or(r.len());
            &r[..end]
        };
        out.extend(
            value
                .split('|')
                .filter(|v| !v.is_empty() && !v.contains('…') && !v.starts_with('$')),
        );
    }
    out
}

#[test]
fn readmes_use_the_values_the_code_puts_on_the_wire() {
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let edges: Vec<&str> = EdgeKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut errors = Vec::new();
    let mut seen = 0;
    for (path, text) in readmes() {
        for (keys, allowed) in [
            (
                [names::FINDING_SEVERITY, "heapspan_finding_severity"],
                &severities,
            ),
            ([names::FINDING_KIND, "heapspan_finding_kind"], &kinds),
            ([names::EDGE_KIND, "heapspan_edge_kind"], &edges),
        ] {
            for key in keys {
                for v in values_after(&text, key) {
                    seen += 1;
                    if !allowed.contains(&v) {
                        errors.push(format!(
                            "{}: {key} = {v:?}: the code writes one of {allowed:?}",
                            rel(&path)
                        ));
                    }
                }
            }
        }
    }
    assert!(seen >= 5, "only {seen} values found");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
