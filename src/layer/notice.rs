//! Saying so, once per process on stderr, when heapspan's layer and a running heapspan do not
//! meet: the layer sees spans but heapspan was never started (or was stopped), or heapspan runs
//! while the global subscriber lacks the layer. Both are silent otherwise: counting goes on,
//! and span rows stay empty or nothing is counted at all.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the layer may see spans with heapspan not running before it says so: startup code
/// often opens spans before it starts heapspan, and shutdown code after the guard is gone.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

static GRACE_MS: AtomicU64 = AtomicU64::new(DEFAULT_GRACE.as_millis() as u64);
/// heapspan runs (between a successful start and the guard's drop).
static RUNNING: AtomicBool = AtomicBool::new(false);
/// When the guard was dropped.
static STOPPED_AT: OnceLock<Instant> = OnceLock::new();
/// The first span the layer saw with heapspan never started.
static FIRST_UNSTARTED_SPAN: OnceLock<Instant> = OnceLock::new();
/// The layer was put in a subscriber.
static LAYER_REGISTERED: AtomicBool = AtomicBool::new(false);
/// The layer has seen a span.
static SPAN_SEEN: AtomicBool = AtomicBool::new(false);
static WARNED_NOT_RUNNING: AtomicBool = AtomicBool::new(false);
static WARNED_NO_LAYER: AtomicBool = AtomicBool::new(false);

/// For heapspan's tests: how long the layer sees spans with heapspan not running before it
/// warns (10 s by default).
#[doc(hidden)]
pub fn set_notice_grace(d: Duration) {
    GRACE_MS.store(d.as_millis() as u64, Ordering::Relaxed);
}

fn grace() -> Duration {
    Duration::from_millis(GRACE_MS.load(Ordering::Relaxed))
}

/// heapspan has started.
pub(crate) fn started() {
    RUNNING.store(true, Ordering::Relaxed);
}

/// heapspan's guard is being dropped.
pub(crate) fn stopped() {
    RUNNING.store(false, Ordering::Relaxed);
    let _ = STOPPED_AT.set(Instant::now());
}

/// The layer was added to a subscriber.
pub(crate) fn layer_registered() {
    LAYER_REGISTERED.store(true, Ordering::Relaxed);
}

/// The layer sees a new span. Two relaxed loads while heapspan runs.
pub(crate) fn span_seen() {
    if !SPAN_SEEN.load(Ordering::Relaxed) {
        SPAN_SEEN.store(true, Ordering::Relaxed);
    }
    if RUNNING.load(Ordering::Relaxed) || WARNED_NOT_RUNNING.load(Ordering::Relaxed) {
        return;
    }
    let (since, stopped) = match STOPPED_AT.get() {
        Some(t) => (*t, true),
        None => (*FIRST_UNSTARTED_SPAN.get_or_init(Instant::now), false),
    };
    if since.elapsed() < grace() || WARNED_NOT_RUNNING.swap(true, Ordering::Relaxed) {
        return;
    }
    let _scope = crate::alloc::InternalScope::enter();
    eprintln!("{}", not_running_message(stopped));
}

fn not_running_message(stopped: bool) -> &'static str {
    if stopped {
        "heapspan: heapspan's tracing layer still sees spans after heapspan stopped (its Guard \
         was dropped): nothing is counted any more. Keep the guard alive for as long as memory \
         should be attributed (`let _guard = heapspan::builder().start()?;`; `let _ = ...` drops \
         it at once)."
    } else {
        "heapspan: heapspan's tracing layer sees spans, but heapspan was never started: nothing \
         is counted. Start it with `let _guard = heapspan::builder().start()?;` and keep the \
         guard (or use `heapspan::init()`, which installs the layer too); if heapspan is off on \
         purpose, leave its layer out (`Option::<heapspan::MemoryLayer>::None` is a layer that \
         does nothing)."
    }
}

/// Called with heapspan running, on the application's threads (at start, from the guard's
/// snapshots and window cuts, when the guard is dropped: heapspan's own threads run with no
/// subscriber, so only the application's see its subscriber): if the layer has seen no span
/// and is in no subscriber while the thread's subscriber (the global one, usually) is set
/// (spans go to it, heapspan never hears of them), or, unless `at_start` (the application may
/// install its subscriber right after), while tokio's spans are on (`tokio_unstable`: task
/// names come through the layer), say so once.
pub(crate) fn check_layer(at_start: bool) {
    if WARNED_NO_LAYER.load(Ordering::Relaxed)
        || SPAN_SEEN.load(Ordering::Relaxed)
        || LAYER_REGISTERED.load(Ordering::Relaxed)
    {
        return;
    }
    let subscriber =
        tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>());
    if !(subscriber || (cfg!(tokio_unstable) && !at_start))
        || WARNED_NO_LAYER.swap(true, Ordering::Relaxed)
    {
        return;
    }
    let _scope = crate::alloc::InternalScope::enter();
    eprintln!("{}", no_layer_message(subscriber));
}

fn no_layer_message(global: bool) -> &'static str {
    if global {
        "heapspan: heapspan is running, but its tracing layer is not in the subscriber: \
         allocations are not attributed to spans (and, with `--cfg tokio_unstable`, tasks get \
         no names from tokio). Add it to your subscriber: \
         `tracing_subscriber::registry().with(heapspan::layer())...`."
    } else {
        "heapspan: heapspan is running with `--cfg tokio_unstable`, but its tracing layer is in \
         no subscriber: tasks get no names from tokio, and spans are not attributed. Install it: \
         `tracing_subscriber::registry().with(heapspan::layer()).init()` (or use \
         `heapspan::init()`)."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        assert!(not_running_message(false).contains("heapspan::builder().start()"));
        assert!(not_running_message(false).contains("off on purpose"));
        assert!(not_running_message(true).contains("`let _ = ...` drops it at once"));
        assert!(no_layer_message(true).contains(".with(heapspan::layer())"));
        assert!(no_layer_message(false).contains("tokio_unstable"));
    }
}
