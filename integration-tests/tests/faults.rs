//! A collector that is not there yet, or dies and comes back, costs the application nothing:
//! its work is not held up (its throughput stays far above what waiting for the export would
//! leave), what could not be sent is counted, and export resumes by itself.

use std::process::{Command, Stdio};
use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::*;

/// The tests of this file run one at a time: the throughput comparison must not share the two
/// cores with another test's app.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn_app(cmd: &mut Command) -> std::process::Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn app")
}

#[track_caller]
fn wait(child: std::process::Child, limit: Duration) -> std::process::Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.expect("output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("app did not finish within {limit:?}")
        }
    }
}

#[test]
fn the_collector_starts_after_the_app() {
    let _serial = serial();
    let dir = scratch("faults_late");
    let (grpc, http) = (free_port(), free_port());
    let child = spawn_app(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{http}"),
            )
            .env("APP_MILLIS", "3500")
            .env("APP_HOLD_AFTER_MILLIS", "700"),
    );
    // Longer than the exporter's retries (3, backing off from 100 ms to 1.6 s): the first
    // windows' spans are dropped.
    std::thread::sleep(Duration::from_millis(2500));
    let mut rotel = Rotel::start_on(dir.join("rotel.log"), grpc, http);
    let out = wait(child, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(500));
    rotel.stop();
    assert_resumed_and_counted(&rotel.log_text(), "after the collector came up");
}

/// Export resumed on its own (the held bytes arrived), and window spans sent while nobody
/// listened were dropped and counted.
#[track_caller]
fn assert_resumed_and_counted(log: &str, when: &str) {
    let (points, _) = logged_metrics(log);
    assert!(
        points.iter().any(|p| p.metric == n::TASK_MEMORY_LIVE
            && p.attr(n::TOKIO_TASK_NAME) == Some("holder")
            && p.value == HOLD as f64),
        "no holder live point {when}"
    );
    let failed = points
        .iter()
        .filter(|p| {
            p.metric == n::TRACKER_DROPPED
                && p.attr(n::DROP_REASON) == Some(n::DROP_REASON_EXPORT_FAILED)
        })
        .map(|p| p.value)
        .fold(0.0, f64::max);
    assert!(failed > 0.0, "no export_failed drops counted {when}");
}

/// Runs the app for 4.5 s with `env`, calling `during` once it started; returns the churn
/// task's iterations (its throughput).
fn iterations(env: &[(&str, String)], during: impl FnOnce()) -> u64 {
    let mut cmd = app(env!("CARGO_BIN_EXE_export_app"));
    cmd.env("APP_MILLIS", "4500");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = spawn_app(&mut cmd);
    during();
    let out = wait(child, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    stdout_value(&out, "DONE", "iterations").expect("iterations")
}

#[test]
fn the_collector_dies_and_comes_back() {
    let _serial = serial();
    let dir = scratch("faults_restart");
    // Best of three runs each, alternating, to tame the noise of a 2-core machine.
    let (mut baseline, mut with_faults) = (0, 0);
    for run in 0..3 {
        baseline = baseline.max(iterations(&[("APP_EXPORT", "0".into())], || {}));

        let (grpc, http) = (free_port(), free_port());
        let first = dir.join(format!("rotel-{run}-a.log"));
        let second = dir.join(format!("rotel-{run}-b.log"));
        let mut restarted = None;
        let n = iterations(
            &[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://127.0.0.1:{http}"),
                ),
                ("APP_HOLD_AFTER_MILLIS", "700".into()),
            ],
            || {
                // Up for 0.6 s, down (killed) for 2.5 s (longer than the exporter's retries),
                // then back until the end of the run.
                let mut r = Rotel::start_on(first.clone(), grpc, http);
                std::thread::sleep(Duration::from_millis(600));
                r.stop();
                std::thread::sleep(Duration::from_millis(2500));
                restarted = Some(Rotel::start_on(second.clone(), grpc, http));
            },
        );
        with_faults = with_faults.max(n);
        std::thread::sleep(Duration::from_millis(500));
        let mut r2 = restarted.expect("restarted");
        r2.stop();

        let (before, _) = logged_metrics(&std::fs::read_to_string(&first).unwrap());
        assert!(before.iter().any(|p| p.metric == n::TASK_MEMORY_ALLOCATED));
        assert_resumed_and_counted(&r2.log_text(), "after the restart");
    }
    let ratio = with_faults as f64 / baseline as f64;
    eprintln!(
        "throughput: baseline {baseline}, with export and a collector restart {with_faults} \
         ({ratio:.3})"
    );
    // Not a speed figure (that is `benches/export.rs`'s): a guard against blocking. An app
    // held up while the collector is down (2.5 s of its 4.5 s) would keep at most 0.45 of
    // its throughput; 0.6 leaves room for a shared 2-core machine (this bound was 0.9 and
    // failed at 0.875 in a clean-clone run with a build beside it).
    assert!(
        ratio >= 0.6,
        "throughput fell to {ratio:.3} of the baseline: the app waited for the export"
    );
}

#[test]
fn a_collector_that_never_answers_delays_nothing_and_shutdown_is_bounded() {
    let _serial = serial();
    // Accepts connections and reads, never answers: every export waits for its timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
            .env("APP_MILLIS", "1000"),
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout_value(&out, "DONE", "iterations").unwrap() > 0);
    // The app's own work takes ~1 s; dropping the guard waits at most the shutdown timeout
    // (3 s by default) for the stuck export, then leaves it behind.
    assert!(
        took < Duration::from_millis(1000 + 3000 + 1500),
        "the app took {took:?} with a hanging collector"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("heapspan: exporting").count(),
        1,
        "one rate-limited warning: {err}"
    );
}
