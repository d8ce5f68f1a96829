//! The HTML view in a real browser: a heapspan program with planted problems
//! (`src/bin/html_app.rs`: a `planted` task holding 3 MiB, an unreachable `Rc` cycle, a task
//! whose name is markup) writes its end-of-run page and an OTLP JSON file; the test renders the
//! file's page too (`export::html::render_otlp_file`), loads each page in headless Chromium
//! (Debian's, installed into `.cache/tools` by `integration-tests/install-tools.sh`) with the
//! network stack logging, and asserts on the DOM the browser built, on the requests it made
//! for the page (none), and keeps a screenshot of each under `target/html-view/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use heapspan_integration_tests::*;

/// Bytes the `planted` task holds at the end (`html_app`'s `PLANTED`).
const PLANTED: u64 = 3 << 20;
/// The task with markup in its name (`html_app`'s `TRICKY`), and how a browser serializes
/// its text.
const TRICKY: &str = "tricky <b>&\"quoted\"</b>";
const TRICKY_TEXT: &str = "tricky &lt;b&gt;&amp;\"quoted\"&lt;/b&gt;";

/// Debian's chromium, linked into the workspace's tool cache by install-tools.sh.
fn chromium() -> PathBuf {
    let p = root().join(".cache/tools/bin/chromium");
    assert!(
        p.exists(),
        "{} is missing: run integration-tests/install-tools.sh (it installs Debian's chromium \
         and links it there); this test fails rather than skips without it",
        p.display()
    );
    p
}

/// Headless Chromium on `page` with `extra` flags, a fresh profile and no network chatter of
/// its own that it can be told to leave out; stdout is what `--dump-dom` prints.
fn browse(page: &Path, profile: &Path, extra: &[String]) -> String {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .env("HOME", profile);
    let out = run(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "chromium failed on {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// The DOM of `page` as the browser built it, and the URLs the page made the browser request
/// (from its net log: requests whose network isolation key is the page's `file://` origin; the
/// browser's own background requests have other keys).
fn dom_and_requests(page: &Path, work: &Path) -> (String, Vec<String>) {
    let netlog = work.join("netlog.json");
    let dom = browse(
        page,
        &work.join("profile"),
        &[
            "--dump-dom".to_owned(),
            format!("--log-net-log={}", netlog.display()),
        ],
    );
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).expect("the net log"))
            .expect("the net log is JSON");
    let types = &log["constants"]["logEventTypes"];
    let start_job = types["URL_REQUEST_START_JOB"].as_u64().expect("event type");
    let requests = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| {
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.contains("file://"))
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_owned))
        .collect();
    (dom, requests)
}

/// The HTML of the section of finding kind `kind` in `dom`.
#[track_caller]
fn finding_section<'a>(dom: &'a str, kind: &str) -> &'a str {
    let at = dom
        .find(&format!("data-kind=\"{kind}\""))
        .unwrap_or_else(|| panic!("a {kind} finding in the page"));
    let start = dom[..at].rfind("<section").expect("its section");
    let end = at + dom[at..].find("</section>").expect("its end");
    &dom[start..end]
}

/// The static checks: nothing in the page would make a browser fetch anything.
#[track_caller]
fn fetches_nothing(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "http://", "https://", "src=", "href=", "@import", "<link", "<script", "<iframe",
    ] {
        assert!(!lower.contains(bad), "the page holds {bad}");
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("url(") {
        assert!(
            rest[i + 4..].starts_with('#'),
            "url( outside the page: {}",
            &rest[i..(i + 60).min(rest.len())]
        );
        rest = &rest[i + 4..];
    }
}

/// Everything a page must show, in the DOM the browser built from it.
#[track_caller]
fn assert_page(name: &str, dom: &str) {
    // The planted task's row, with its byte figure.
    let row = format!(
        "<tr class=\"series\" data-chart=\"tasks\" data-name=\"planted\" data-live=\"{PLANTED}\""
    );
    let at = dom
        .find(&row)
        .unwrap_or_else(|| panic!("{name}: the planted task's row ({row}) in:\n{dom}"));
    let tr = &dom[at..at + dom[at..].find("</tr>").unwrap()];
    assert!(tr.contains(">3.0 MiB</td>"), "{name}: {tr}");
    // Its line on the chart.
    assert!(
        dom.contains("<g class=\"series-line\" data-name=\"planted\""),
        "{name}: the planted line"
    );
    // The task named with markup is text: no element was made of it.
    assert!(dom.contains(TRICKY_TEXT), "{name}: the tricky name as text");
    assert!(
        !dom.contains("<b>&amp;\"quoted\"</b>") && !dom.contains(TRICKY),
        "{name}: a name became markup"
    );
    // The span chart has the cycler's span.
    assert!(
        dom.contains("data-chart=\"spans\" data-name=\"html_app::link_peers\""),
        "{name}: the span row"
    );
    // The header.
    assert!(
        dom.contains("<span id=\"service\">html-view-app</span>"),
        "{name}"
    );
    assert!(dom.contains("data-fact=\"tracker\""), "{name}");
    // The cycle, with its evidence and its danger surface: the two members, roots.
    let f = finding_section(dom, "refcount.unreachable_cycle");
    assert!(f.contains("data-severity=\"high\""), "{name}: {f}");
    assert!(f.contains("<span class=\"badge\">high</span>"), "{name}");
    assert!(
        f.contains(">cycle.members</td><td class=\"mono\">2</td>"),
        "{name}: {f}"
    );
    assert!(
        f.contains(">holder class</td><td class=\"mono\">cycle</td>"),
        "{name}"
    );
    assert!(
        f.contains("task <strong class=\"task\">cycler</strong>"),
        "{name}"
    );
    assert!(f.contains("<svg class=\"surface\""), "{name}: a graph: {f}");
    let roots = f.matches("<g class=\"node root\"").count();
    assert_eq!(roots, 2, "{name}: the cycle's members are its roots");
    let nodes = f.matches("<g class=\"node").count();
    assert!(nodes >= 2, "{name}: {nodes} nodes");
    // The members hold each other (an `Rc` read as `arc_clone` when neither a second task nor
    // the allocation site proves the flavour).
    assert!(
        f.contains("data-kind=\"rc_clone\"") || f.contains("data-kind=\"arc_clone\""),
        "{name}: the members' edges: {f}"
    );
}

#[test]
fn the_html_view_renders_in_a_browser_from_a_run_and_from_its_otlp_file() {
    // Fail first, naming the script, when the browser is missing.
    chromium();
    let dir = scratch("html_view");
    let from_run = dir.join("report.html");
    let otlp = dir.join("run.otlp.jsonl");
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_html_app"))
            .arg(&from_run)
            .arg(&otlp),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("PLANTED {PLANTED}")));
    let from_file = dir.join("from-file.html");
    heapspan::export::html::render_otlp_file(&otlp, &from_file).expect("the file's page");

    let artifacts = root().join("target/html-view");
    std::fs::create_dir_all(&artifacts).unwrap();
    for (name, page, shot) in [
        ("end of run", &from_run, "report.png"),
        ("from the file", &from_file, "from-file.png"),
    ] {
        let html = std::fs::read_to_string(page).expect("the page");
        fetches_nothing(&html);
        let work = dir.join(shot.trim_end_matches(".png"));
        let (dom, requests) = dom_and_requests(page, &work);
        assert!(
            requests.is_empty(),
            "{name}: the page made requests: {requests:?}"
        );
        assert_page(name, &dom);
        let png = artifacts.join(shot);
        let _ = std::fs::remove_file(&png);
        browse(
            page,
            &work.join("profile-shot"),
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1400,2000".to_owned(),
            ],
        );
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 50_000,
            "{name}: a screenshot of {len} bytes at {}",
            png.display()
        );
        let head = std::fs::read(&png).unwrap();
        assert_eq!(&head[..8], b"\x89PNG\r\n\x1a\n", "{name}: a PNG");
    }
    // The end-of-run page draws the whole surface: the members and their payloads, with
    // their sizes and the span they were allocated in.
    let dom = std::fs::read_to_string(&from_run).unwrap();
    let f = finding_section(&dom, "refcount.unreachable_cycle");
    assert_eq!(f.matches("<g class=\"node").count(), 4, "{f}");
    assert_eq!(
        f.matches("data-bytes=\"65536\"").count(),
        2,
        "the payloads: {f}"
    );
    assert!(f.contains("span html_app::link_peers"), "{f}");

    // The request check sees a request when a page makes one: the control.
    let control = dir.join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/x.png\"></body></html>",
    )
    .unwrap();
    let (_, requests) = dom_and_requests(&control, &dir.join("control"));
    assert_eq!(
        requests,
        ["http://127.0.0.1:9/x.png"],
        "the control page's request"
    );
}
