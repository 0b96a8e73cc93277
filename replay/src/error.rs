//! The crate's one error enum.

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
    /// The read-model storage failed; retrying later may help.
    #[error("read-model storage: {0}")]
    Store(#[from] closeloop_projections::store::StoreError),
    /// `replay NAME` with a name that is not a projection.
    #[error("no projection `{0}`: sla, satisfaction, performance or all")]
    UnknownProjection(String),
    /// An event could not be decoded or folded; the rebuild stays saved before it.
    #[error("projection {projection} stopped at position {position}: {message}")]
    Fold {
        projection: &'static str,
        position: closeloop_core::log::Position,
        message: String,
    },
    /// A saved model this code cannot read.
    #[error("corrupt read model {0}")]
    Corrupt(String),
    /// A model asked for by name that no replay wrote.
    #[error("no replayed model {0}: run `closeloop replay all --until ...` first")]
    NotReplayed(String),
}
