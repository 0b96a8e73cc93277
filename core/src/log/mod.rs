//! The event log: everything of `closeloop-log` (the [`EventLog`] trait, its types, the hash
//! chain, the [`memory`] backend), the [`sqlite`] and [`postgres`] backends, and [`open`]
//! (a store URL to a backend). The conformance suite every backend passes is in
//! `closeloop-testkit`.

mod open;

pub use closeloop_log::*;
pub use closeloop_postgres as postgres;
pub use closeloop_sqlite as sqlite;
pub use open::{open, open_existing};
