//! What the log and its key store share: the busy timeout of their connections, the
//! mapping of SQLite's errors, and the work both hand to the writer thread.

use closeloop_log::{AppendOutcome, AppendRequest, DataKey, Error};
use tokio::sync::oneshot;

/// How long a connection waits for a lock held by another connection before failing with
/// `SQLITE_BUSY`: covers a checkpoint or a long reader, not a second writing process.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// An SQLite error the log does not classify, as [`Error::Backend`].
pub(crate) fn db(error: rusqlite::Error) -> Error {
    Error::backend("sqlite", error)
}

/// Work on its way to the writer.
pub(crate) enum Job {
    /// An append, with the data keys its events were sealed under that are new (stored in
    /// the append's own savepoint: see [`closeloop_log::EventLog::append_with_keys`]).
    Append {
        request: AppendRequest,
        keys: Vec<(String, DataKey)>,
        reply: oneshot::Sender<Result<AppendOutcome, Error>>,
    },
    /// Stores `fresh` as the customer's data key unless one is stored; answers the stored
    /// one. Why through the writer: a key is written in the batch's transaction, under its
    /// one fsync, instead of by a second connection that would wait for the writer's lock
    /// (SQLite's busy handler sleeps for milliseconds) while the appends that need the key
    /// wait for it.
    Key {
        customer_id: String,
        fresh: DataKey,
        reply: oneshot::Sender<Result<DataKey, Error>>,
    },
}

impl Job {
    /// Whether the caller stopped waiting for the answer.
    pub(crate) fn abandoned(&self) -> bool {
        match self {
            Job::Append { reply, .. } => reply.is_closed(),
            Job::Key { reply, .. } => reply.is_closed(),
        }
    }
}
