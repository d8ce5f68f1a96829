//! Which route leaks? tower-http's `TraceLayer` names every request span `request`, so by name
//! alone every route shares one row. Grouped by `http.route` (one of heapspan's default group
//! fields), each route of an axum-like router gets a row of its own, whether the route is in
//! the span when it is created (axum's `MatchedPath` in `make_span_with`) or recorded into it
//! later by a middleware inside the span; and a flood of routes stays bounded, the rest going
//! to `other`.
//!
//! The router is a few lines of this file rather than axum and tower-http (no new dependency):
//! what heapspan sees is the span, and the spans below are the ones `TraceLayer` makes
//! (`DefaultMakeSpan`'s target, name and fields), with the `http.route` field an axum
//! application adds.

mod common;

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

use std::sync::{Arc, Mutex};

use heapspan::{SortBy, DEFAULT_MAX_SPAN_GROUPS_PER_NAME};
use tracing::Instrument;

/// What the leaking route keeps per request.
const LEAK: usize = 1000;
/// Requests per route.
const PER_ROUTE: usize = 100;
/// Distinct routes of the flood, and what each of its requests keeps.
const FLOOD_ROUTES: usize = 1000;
const FLOOD_KEEP: usize = 64;

/// Where `/leak` puts its bytes: reserved up front (outside any task), so that pushing into
/// it never reallocates inside a request and the route's live bytes are the leaked blocks.
static LEAKS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

struct Request {
    method: &'static str,
    uri: String,
}

struct Response {
    status: u16,
    body: String,
}

type Handler = fn(&Request) -> Response;

/// Routes by path template (`{param}` matches one segment), like axum's `Router`.
struct Router {
    routes: Vec<(&'static str, Handler)>,
}

impl Router {
    fn new() -> Self {
        Router { routes: Vec::new() }
    }

    fn route(mut self, template: &'static str, h: Handler) -> Self {
        self.routes.push((template, h));
        self
    }

    /// The matched template (what axum's `MatchedPath` holds) and its handler. Allocates
    /// nothing.
    fn at(&self, path: &str) -> Option<(&'static str, Handler)> {
        self.routes.iter().copied().find(|(t, _)| {
            let (mut a, mut b) = (t.split('/'), path.split('/'));
            loop {
                match (a.next(), b.next()) {
                    (None, None) => return true,
                    (Some(x), Some(y)) if x.starts_with('{') || x == y => {}
                    _ => return false,
                }
            }
        })
    }
}

fn user(req: &Request) -> Response {
    // A response built per request and dropped once sent: nothing stays.
    let id = req.uri.rsplit('/').next().unwrap_or_default();
    Response {
        status: 200,
        body: format!("{{\"user\":{id},\"name\":\"user {id}\"}}"),
    }
}

fn leak(_: &Request) -> Response {
    LEAKS.lock().unwrap().push(vec![7u8; LEAK]);
    Response {
        status: 200,
        body: "leaked".to_owned(),
    }
}

fn health(_: &Request) -> Response {
    Response {
        status: 200,
        body: "ok".to_owned(),
    }
}

fn not_found() -> Response {
    Response {
        status: 404,
        body: String::new(),
    }
}

/// Yields once by waking itself (the request may resume on another worker).
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// An axum application whose `TraceLayer` puts the matched route in its span
/// (`make_span_with` reading `MatchedPath`): the route is there when the span is created.
async fn serve_route_in_span(router: Arc<Router>, req: Request) -> Response {
    let matched = router.at(&req.uri);
    let span = tracing::debug_span!(
        target: "tower_http::trace::make_span",
        "request",
        method = %req.method,
        uri = %req.uri,
        version = ?"HTTP/1.1",
        http.route = matched.map(|(t, _)| t),
    );
    async move {
        YieldOnce(false).await;
        match matched {
            Some((_, h)) => h(&req),
            None => not_found(),
        }
    }
    .instrument(span)
    .await
}

/// `TraceLayer`'s default span, with an empty `http.route` a routing middleware inside it
/// records once it matched (the span is entered then, as it is around every poll).
async fn serve_route_recorded(router: Arc<Router>, req: Request) -> Response {
    let span = tracing::debug_span!(
        target: "tower_http::trace::make_span",
        "request",
        method = %req.method,
        uri = %req.uri,
        version = ?"HTTP/1.1",
        http.route = tracing::field::Empty,
    );
    async move {
        let Some((route, h)) = router.at(&req.uri) else {
            return not_found();
        };
        tracing::Span::current().record("http.route", route);
        // Handled in the same poll as the record: the span's word on this thread's stack is
        // the new group's at once.
        let resp = h(&req);
        YieldOnce(false).await;
        resp
    }
    .instrument(span)
    .await
}

#[test]
fn each_route_has_its_own_row_and_the_leaking_one_holds_the_leak() {
    let guard = common::start();
    LEAKS.lock().unwrap().reserve(2 * PER_ROUTE);
    let router = Arc::new(
        Router::new()
            .route("/users/{id}", user)
            .route("/leak", leak)
            .route("/health", health),
    );
    let rt = common::runtime(2);
    // Every request its own task, as a server's connection tasks are; the two ways of putting
    // the route in the span alternate.
    let responses: Vec<Response> = rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..PER_ROUTE {
            for uri in [
                format!("/users/{i}"),
                "/leak".to_owned(),
                "/health".to_owned(),
            ] {
                let req = Request { method: "GET", uri };
                let r = router.clone();
                handles.push(if i % 2 == 0 {
                    tokio::spawn(serve_route_in_span(r, req))
                } else {
                    tokio::spawn(serve_route_recorded(r, req))
                });
            }
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    assert!(responses
        .iter()
        .all(|r| r.status == 200 && !r.body.is_empty()));
    // The responses are sent: their buffers go, and only the leak stays.
    drop(responses);

    let snap = guard.snapshot();
    let row = |route: &str| {
        snap.span_group("request", &[("http.route", route)])
            .unwrap_or_else(|| panic!("a row for {route}: {:#?}", snap.span_groups))
    };
    let (leaky, users, healthy) = (row("/leak"), row("/users/{id}"), row("/health"));
    // Exact: every byte the route's requests allocated is charged to its row, the leaked
    // blocks stay, and everything else a request allocated in its span (its response) is
    // freed. No tolerance is needed: nothing else is allocated inside the request spans.
    let leaked = (PER_ROUTE * LEAK) as i64;
    assert_eq!(leaky.mem.live_bytes(), leaked, "{leaky:#?}");
    assert_eq!(leaky.mem.live_allocations(), PER_ROUTE as i64);
    assert_eq!(users.mem.live_bytes(), 0, "{users:#?}");
    assert_eq!(healthy.mem.live_bytes(), 0, "{healthy:#?}");
    for g in [leaky, users, healthy] {
        assert_eq!(
            (g.instances, g.closed),
            (PER_ROUTE as u64, PER_ROUTE as u64),
            "every request of the route, whichever way its route got into the span: {g:#?}"
        );
        assert!(g.mem.allocations >= PER_ROUTE as u64, "{g:#?}");
        assert_eq!(g.target, "tower_http::trace::make_span");
    }
    // The groups add up to the name: by name alone the leak is one row among all requests.
    let name = snap.span_name("request").unwrap();
    let groups: Vec<_> = snap.span_groups_named("request").collect();
    assert_eq!(
        name.mem.allocated_bytes,
        groups.iter().map(|g| g.mem.allocated_bytes).sum::<u64>()
    );
    assert_eq!(
        name.mem.live_bytes(),
        groups.iter().map(|g| g.mem.live_bytes()).sum::<i64>()
    );
    assert_eq!(name.instances, 3 * PER_ROUTE as u64);
    // Spans whose route was recorded later were created in the plain `request` group and
    // moved: none is left there.
    assert!(
        snap.span_group("request", &[])
            .is_none_or(|g| g.instances == 0 && g.mem.live_bytes() == 0),
        "{:#?}",
        snap.span_group("request", &[])
    );
    // The top group by live bytes is the leaking route, and single instances say their route.
    assert_eq!(snap.top_span_groups(SortBy::Live, 1)[0].group, leaky.group);
    assert!(snap
        .spans_named("request")
        .filter(|s| s.mem.live_bytes() == LEAK as i64)
        .all(|s| s.group.field("http.route") == Some("/leak")));
    assert!(snap
        .spans_named("request")
        .any(|s| s.group.field("http.route") == Some("/leak")));
    // The report's span rows name the route.
    let report = guard.report(5);
    assert!(report.contains("request {http.route=/leak}"), "{report}");
    // In the span rows (the task rows name unnamed tasks by their first span too).
    let spans = &report[report.find("Span names by live bytes").expect("span rows")..];
    let line = spans
        .lines()
        .find(|l| l.contains("request {http.route=/leak}"))
        .unwrap();
    assert!(line.contains("97.7 KiB"), "{line}");
}

#[test]
fn a_flood_of_routes_is_bounded_and_the_rest_is_other() {
    static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let guard = common::start();
    KEPT.lock().unwrap().reserve(FLOOD_ROUTES);
    let rt = common::runtime(2);
    rt.block_on(async {
        for i in 0..FLOOD_ROUTES {
            let route = format!("/r/{i}");
            let span = tracing::debug_span!("flood", http.route = %route);
            tokio::spawn(
                async {
                    KEPT.lock().unwrap().push(vec![1u8; FLOOD_KEEP]);
                }
                .instrument(span),
            )
            .await
            .unwrap();
        }
    });
    let snap = guard.snapshot();
    let groups: Vec<_> = snap.span_groups_named("flood").collect();
    let other: Vec<_> = groups.iter().filter(|g| g.group.is_other()).collect();
    let own = groups.len() - other.len();
    // The first 100 routes (the default bound) get a row each; the other 900 share one.
    assert_eq!(own, DEFAULT_MAX_SPAN_GROUPS_PER_NAME, "{groups:#?}");
    assert_eq!(other.len(), 1);
    let rest = FLOOD_ROUTES - DEFAULT_MAX_SPAN_GROUPS_PER_NAME;
    assert_eq!(other[0].instances, rest as u64);
    assert_eq!(other[0].mem.live_bytes(), (rest * FLOOD_KEEP) as i64);
    for g in groups.iter().filter(|g| !g.group.is_other()) {
        assert_eq!(g.instances, 1);
        assert_eq!(g.mem.live_bytes(), FLOOD_KEEP as i64);
        let route = g.group.field("http.route").unwrap();
        let i: usize = route.strip_prefix("/r/").unwrap().parse().unwrap();
        assert!(
            i < DEFAULT_MAX_SPAN_GROUPS_PER_NAME,
            "requests ran one by one: {route}"
        );
    }
    // Nothing is lost to the bound: the name holds every request's bytes.
    let name = snap.span_name("flood").unwrap();
    assert_eq!(name.mem.live_bytes(), (FLOOD_ROUTES * FLOOD_KEEP) as i64);
    assert_eq!(name.instances, FLOOD_ROUTES as u64);
    assert!(guard.report(200).contains("flood {other}"));
}
