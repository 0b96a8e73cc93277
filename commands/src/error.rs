//! The crate's one error enum.

/// What can stop the write side outside of a command's own rejection (which is a [`Reply`](crate::Reply)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event log failed; see the inner error for whether a retry helps.
    #[error(transparent)]
    Log(#[from] closeloop_core::Error),
}
