//! The crate's one error enum.

use closeloop_core::log::Position;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed or holds an event this build cannot read; see the inner error.
    #[error(transparent)]
    Log(#[from] closeloop_core::Error),
    /// No such ticket: nothing to show.
    #[error("no ticket {0}")]
    TicketNotFound(uuid::Uuid),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    /// The read-model tables (live or being rebuilt) failed; see the inner error.
    #[error("read-model tables: {0}")]
    Tables(#[from] closeloop_projections::tables::TableError),
    /// `replay NAME` with a name that is not a projection.
    #[error("no projection `{name}`: {known}, or all")]
    UnknownProjection { name: String, known: String },
    /// `--until POSITION` beyond the log's head: the tables "as of" it would be those of
    /// the head, under a name that says otherwise.
    #[error("--until {until} is beyond the log's head, position {head}")]
    UntilBeyondHead { until: Position, head: Position },
    /// An event could not be decoded or folded; the rebuild stays committed before its
    /// batch.
    #[error("projection {projection} stopped at position {position}: {message}")]
    Fold {
        projection: &'static str,
        position: Position,
        message: String,
    },
    /// A stored state this code cannot read.
    #[error("corrupt read model {0}")]
    Corrupt(String),
    /// Tables (or a model) asked for by name that no replay completed.
    #[error("nothing replayed as of {0}: run `closeloop replay all --until ...` first")]
    NotReplayed(String),
}
