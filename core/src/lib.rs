//! closeloop-core: the ticket domain and the event log.
//!
//! - [`domain`] is pure: commands, events, `decide`, `evolve`, authorization and policy
//!   selection. No IO, no clock, no randomness: time and ids arrive in the command or the
//!   context, so every decision can be property-tested by the thousand.
//! - [`log`] is the event log: the [`log::EventLog`] trait and its backends (memory, SQLite,
//!   PostgreSQL), the per-stream hash chain, and (feature `conformance`) the suite every
//!   backend passes.

pub mod domain;
mod error;
pub mod log;

pub use error::Error;
