//! Rewrites the files generated from heapspan's telemetry contract: the Grafana dashboards of
//! `otel-config/grafana/dashboards/` and `otel-config/prometheus/metrics.md` (see
//! `heapspan_integration_tests::dashboards`). `tests/dashboards.rs` fails until they are
//! committed as this writes them.

fn main() {
    let root = heapspan_integration_tests::root();
    for g in heapspan_integration_tests::dashboards::generated() {
        let path = root.join(&g.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the directory");
        }
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|t| t == g.text);
        if !unchanged {
            std::fs::write(&path, &g.text).expect("write the file");
        }
        println!(
            "{} {}",
            if unchanged { "unchanged" } else { "wrote" },
            g.path
        );
    }
}
