//! What the log and its key store share: the busy timeout of their connections and the
//! mapping of SQLite's errors.

use closeloop_log::Error;

/// How long a connection waits for a lock held by another connection before failing with
/// `SQLITE_BUSY`: covers a checkpoint or a long reader, not a second writing process.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// An SQLite error the log does not classify, as [`Error::Backend`].
pub(crate) fn db(error: rusqlite::Error) -> Error {
    Error::backend("sqlite", error)
}
