//! The workload's one error.

/// Why no workload could be generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config asks for something impossible (zero days, zero customers): change it.
    #[error("invalid workload: {0}")]
    Invalid(String),
}
