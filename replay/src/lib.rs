//! closeloop-replay: what auditors and analysts read back from the log.
//!
//! - `history.rs`: a ticket's complete history, and its state as of any business time.
//! - `verify.rs`: hash chains, version and position contiguity over one stream or the log.
//! - `export.rs`: stored events as JSON lines with their hashes.

mod error;
pub mod export;
pub mod history;
pub mod verify;

pub use error::Error;
