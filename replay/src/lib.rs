//! closeloop-replay: what auditors and analysts read back from the log.
//!
//! - `history.rs`: a ticket's complete history, and its state as of any business time.
//! - `verify.rs`: hash chains, version and position contiguity over one stream or the log.
//! - `export.rs`: stored events as JSON lines with their hashes and the log's identity.
//! - `checkpoint.rs`: Ed25519 keys, signed checkpoints of the log (identity, head, a root
//!   hash over every stream's head hash), and verification of the log against them.
//! - `rebuild.rs`: `closeloop replay`: rebuild the read side's tables from the log beside
//!   the live ones (resumable), then swap them in atomically; or build them as of a
//!   position or time, for `report --replayed`.

pub mod checkpoint;
mod error;
pub mod export;
pub mod history;
pub mod rebuild;
pub mod verify;

pub use error::Error;
