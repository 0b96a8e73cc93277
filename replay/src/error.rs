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
}
