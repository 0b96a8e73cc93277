//! What stops `serve`.

/// What stopped `serve` before a shutdown was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A NATS subscription or JetStream setup failed (server down, JetStream disabled,
    /// a stream with the same name but other subjects): fix the server or configuration.
    #[error("nats: {0}")]
    Nats(String),
}

impl ServeError {
    pub(crate) fn nats(context: &str, e: impl std::fmt::Display) -> ServeError {
        ServeError::Nats(format!("{context}: {e}"))
    }
}
