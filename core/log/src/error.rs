//! The log's one error enum: what can go wrong outside the pure domain (which answers with
//! a [`Rejection`](closeloop_domain::Rejection) instead). It carries no database driver's
//! types: a backend reports a driver failure it does not classify as [`Error::Backend`], with
//! the driver's error boxed as its source.

/// Errors of the event log and its backends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream is not at the version the append expected. The caller reloads the stream
    /// and decides again (or reports `conflict` when the caller gave the version).
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    WrongExpectedVersion {
        stream: String,
        expected: String,
        actual: u64,
    },
    /// An append's [`crate::Unchanged`] condition failed: an event of `category` was
    /// appended at `position`, after `after`. The caller catches up and decides again.
    #[error("an event of category {category} was appended at position {position}, after position {after} that the append was decided on")]
    Changed {
        category: String,
        position: u64,
        after: u64,
    },
    /// An append carried a new data key for a customer who has another one by now (stored by
    /// a concurrent append since the caller looked): nothing was appended nor stored. The
    /// caller reads the stored key, seals again and retries.
    #[error("customer {customer_id} has a data key already: seal under it and retry")]
    KeyTaken { customer_id: String },
    /// An append broke a limit or an invariant of the log (too many events, empty batch,
    /// bad stream name). A bug in the caller: not retried.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A store URL that names no backend; fix the configuration.
    #[error("unsupported store URL `{0}`: expected sqlite://PATH, postgres://... or memory:")]
    UnsupportedStore(String),
    /// Opened to read, the store holds no log: a missing SQLite file, or a PostgreSQL schema
    /// never migrated. Reading it would report an empty log that does not exist, so nothing
    /// is created; the message names the store and how to create one.
    #[error("{0}")]
    NoStore(String),
    /// The store cannot be reached or failed transiently; retry with the same command id.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something the log cannot have written (corrupt row, unknown
    /// event type). Reported, never silently skipped.
    #[error("corrupt stored event: {0}")]
    Corrupt(String),
    /// The backend's database driver failed in a way the backend does not classify (a query
    /// error, an unexpected constraint violation): `backend` names it (`sqlite`, `postgres`),
    /// `source` is the driver's error. Not transient: the same request would fail the same
    /// way, so it is reported, not retried (a failure the backend knows to be transient, such
    /// as a lost connection, is [`Error::Unavailable`] instead).
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A [`Error::Backend`] error of the driver of `backend`.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Whether retrying the same request (with the same command id) may succeed: true only for
    /// [`Error::Unavailable`]. [`Error::WrongExpectedVersion`] and [`Error::Changed`] call for
    /// reading and deciding again instead; every other error is reported.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}
