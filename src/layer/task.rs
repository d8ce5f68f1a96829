//! Naming tasks without `tokio_unstable`: a wrapper future in the manner of tokio-metrics'
//! `Instrumented`. Its first poll learns the task's id and reports the start with the name and
//! the spawn location; its drop (when the task completes or is aborted) reports the end.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let handle = heapspan::spawn("cache-refresher", async { 40 + 2 });
//! assert_eq!(handle.await.unwrap(), 42);
//! # }
//! ```

use std::future::Future;
use std::panic::Location as StdLocation;
use std::pin::Pin;
use std::task::{Context, Poll};
#[cfg(feature = "tokio-metrics")]
use std::time::Instant;

use pin_project::{pin_project, pinned_drop};

use super::names;
use crate::aggregator::events::{self, Event, Loc};
use crate::aggregator::snapshot::{TaskKey, TaskSource};
use crate::alloc;
use crate::alloc::{key, InternalScope};

/// A future that names the task polling it. Created by [`instrument`] or [`spawn`].
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct Instrumented<F> {
    /// `None` only once dropped (in `PinnedDrop`, before the end is reported).
    #[pin]
    inner: Option<F>,
    name: &'static str,
    dyn_name: Option<String>,
    location: &'static StdLocation<'static>,
    /// The task and its name index, from the first poll on.
    task: Option<(TaskKey, u16)>,
    /// Poll count and time of this task's name (feature `tokio-metrics`).
    #[cfg(feature = "tokio-metrics")]
    polls: Option<&'static crate::export::task_polls::PollStats>,
}

/// Wraps `fut` so that the task that polls it is named `name`, with the caller's location as
/// its spawn location. Wrap a task's *root* future (what you pass to `tokio::spawn`), as
/// [`spawn`] does: dropping the wrapper reports the task's end.
#[track_caller]
pub fn instrument<F: Future>(name: impl Into<TaskName>, fut: F) -> Instrumented<F> {
    let (name, dyn_name) = match name.into() {
        TaskName::Static(s) => (s, None),
        TaskName::Owned(s) => ("", Some(s)),
    };
    Instrumented {
        inner: Some(fut),
        name,
        dyn_name,
        location: StdLocation::caller(),
        task: None,
        #[cfg(feature = "tokio-metrics")]
        polls: None,
    }
}

/// Spawns `fut` on the current tokio runtime as a task named `name`. Panics outside a runtime,
/// like `tokio::spawn`.
#[track_caller]
pub fn spawn<F>(name: impl Into<TaskName>, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(instrument(name, fut))
}

/// A task name: a `&'static str` (no allocation) or a `String`.
#[derive(Debug)]
pub enum TaskName {
    /// A static name.
    Static(&'static str),
    /// An owned name.
    Owned(String),
}

impl From<&'static str> for TaskName {
    fn from(s: &'static str) -> Self {
        TaskName::Static(s)
    }
}

impl From<String> for TaskName {
    fn from(s: String) -> Self {
        TaskName::Owned(s)
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.task.is_none() {
            if let Some(id) = tokio::task::try_id() {
                let _scope = InternalScope::enter();
                let task = TaskKey {
                    id: key::task_id_u64(id),
                };
                let name = match this.dyn_name.take() {
                    Some(n) => names::task_index(&n),
                    None => names::static_task_index(this.name),
                };
                *this.task = Some((task, name));
                #[cfg(feature = "tokio-metrics")]
                {
                    *this.polls = Some(crate::export::task_polls::slot(&names::task_name(name)));
                }
                if events::enabled() {
                    events::send(Event::TaskStart {
                        task,
                        name,
                        location: Some(Loc::Static(this.location)),
                        source: TaskSource::Wrapper,
                        future_size: std::mem::size_of::<F>() as u64,
                    });
                }
            }
        }
        if let Some((task, _)) = *this.task {
            super::polls::record(task.id);
        }
        // The task's allocations carry its name while it is polled here.
        let _named = this.task.map(|(task, name)| NamedPoll::enter(task, name));
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Pending;
        };
        #[cfg(feature = "tokio-metrics")]
        if let Some(stats) = *this.polls {
            let start = Instant::now();
            let r = inner.poll(cx);
            stats.record(start.elapsed());
            return r;
        }
        inner.poll(cx)
    }
}

#[pinned_drop]
impl<F> PinnedDrop for Instrumented<F> {
    fn drop(self: Pin<&mut Self>) {
        let mut this = self.project();
        // Drop the task's future first (in place, as pinning requires): what its destructor
        // frees or allocates still belongs to the running task, before the end is reported.
        let named = this.task.map(|(task, name)| NamedPoll::enter(task, name));
        this.inner.set(None);
        drop(named);
        if let Some((task, _)) = *this.task {
            events::send(Event::TaskEnd { task });
        }
    }
}

/// The task's name on this thread's allocations, for one poll (or the drop).
struct NamedPoll;

impl NamedPoll {
    fn enter(task: TaskKey, name: u16) -> Self {
        alloc::enter_task_name(task.id, name);
        NamedPoll
    }
}

impl Drop for NamedPoll {
    fn drop(&mut self) {
        alloc::exit_task_name();
    }
}
