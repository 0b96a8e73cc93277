//! The crate's one error enum: what can go wrong outside the pure domain (which answers with
//! a [`Rejection`](crate::domain::Rejection) instead).

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
    /// An append's [`crate::log::Unchanged`] condition failed: an event of `category` was
    /// appended at `position`, after `after`. The caller catches up and decides again.
    #[error("an event of category {category} was appended at position {position}, after position {after} that the append was decided on")]
    Changed {
        category: String,
        position: u64,
        after: u64,
    },
    /// An append broke a limit or an invariant of the log (too many events, empty batch,
    /// bad stream name). A bug in the caller: not retried.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A store URL that names no backend; fix the configuration.
    #[error("unsupported store URL `{0}`: expected sqlite://PATH, postgres://... or memory:")]
    UnsupportedStore(String),
    /// The store cannot be reached or failed transiently; retry with the same command id.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something the log cannot have written (corrupt row, unknown
    /// event type). Reported, never silently skipped.
    #[error("corrupt stored event: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}
