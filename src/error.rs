//! Errors.

/// Everything that can go wrong when starting heapspan (and when rendering an HTML report from
/// a file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// heapspan was already started in this process (it can run once per process: the
    /// allocator is process-wide).
    #[error("heapspan is already started in this process; it can be started once")]
    AlreadyStarted,
    /// The allocator wrapper is not the global allocator, so nothing would be counted.
    #[error(
        "heapspan's allocator is not installed: add `#[global_allocator] static ALLOC: \
         heapspan::Allocator = heapspan::Allocator::system();` to your binary"
    )]
    AllocatorNotInstalled,
    /// A setting has a value heapspan does not accept.
    #[error("invalid value {value:?} for {setting}: expected {expected}")]
    InvalidConfig {
        /// The setting: a builder method or an environment variable.
        setting: &'static str,
        /// The rejected value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// [`crate::init`] could not install its subscriber because another global default is set.
    #[error("a global tracing subscriber is already set; add heapspan::layer() to it and use heapspan::builder().start()")]
    SubscriberAlreadySet,
    /// An exporter could not be built (the OTLP JSON file cannot be opened, a header is not
    /// valid for the transport, the transport failed to initialise).
    #[error("could not set up {what}: {detail}")]
    Export {
        /// What could not be set up.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The HTML view could not be made: its input could not be read or holds no OTLP JSON
    /// line, or the page could not be written
    /// ([`export::html::render_otlp_file`](crate::export::html::render_otlp_file)).
    #[error("HTML report: could not {what} {}: {detail}", path.display())]
    HtmlReport {
        /// `read` (the OTLP JSON file) or `write` (the page).
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        detail: String,
    },
    /// heapspan could not start its background thread.
    #[error("could not start heapspan's {thread} thread: {source}")]
    Thread {
        /// Which thread.
        thread: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with heapspan's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_setting_and_what_is_accepted() {
        let e = Error::InvalidConfig {
            setting: "HEAPSPAN_FOLD_INTERVAL_MS",
            value: "soon".into(),
            expected: "a whole number of milliseconds from 1 to 60000",
        };
        assert_eq!(
            e.to_string(),
            "invalid value \"soon\" for HEAPSPAN_FOLD_INTERVAL_MS: expected a whole number of \
             milliseconds from 1 to 60000"
        );
        assert!(Error::AllocatorNotInstalled
            .to_string()
            .contains("#[global_allocator]"));
        let e = Error::HtmlReport {
            what: "read",
            path: "run.jsonl".into(),
            detail: "no OTLP JSON line in it".into(),
        };
        assert_eq!(
            e.to_string(),
            "HTML report: could not read run.jsonl: no OTLP JSON line in it"
        );
    }
}
