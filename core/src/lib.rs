//! closeloop-core: the ticket domain and the event log under one name, a facade over the
//! crates in `core/` so that the rest of the workspace keeps one dependency and one path:
//!
//! - [`domain`] is `closeloop-domain` (`core/domain`), the pure domain: commands, events,
//!   `decide`, `evolve`, authorization and policy selection. No IO, no clock, no randomness:
//!   time and ids arrive in the command or the context, so every decision can be
//!   property-tested by the thousand.
//! - [`log`] is `closeloop-log` (`core/log`), the event log: the [`log::EventLog`] trait, its
//!   types, the per-stream hash chain and the memory backend; plus the backends
//!   [`log::sqlite`] (`closeloop-sqlite`, `core/sqlite`) and [`log::postgres`]
//!   (`closeloop-postgres`, `core/postgres`), and [`log::open`], which opens any of them from
//!   a store URL (it lives here because it needs every backend).
//! - [`Error`] is the log's error ([`closeloop_log::Error`]).

pub use closeloop_domain as domain;
pub use closeloop_domain::{for_each_command, for_each_event};
pub use closeloop_log::Error;

pub mod log;
