//! The tables on SQLite (`tables.sql`), in the log's own file, through a connection of their
//! own. A commit is one `IMMEDIATE` transaction: the checkpoint moves only if it is still
//! where the batch began, then every changed row is upserted with cached statements.
//!
//! - `tables.rs`: [`SqliteTables`], opening, commits and dumps; `read.rs`: the reads, on the
//!   read connection; `decode.rs`: how a row is read back; `shadow.rs`: [`SqliteShadows`],
//!   the builds of a replay, beside the log's file.

mod decode;
mod read;
mod shadow;
mod tables;

pub use shadow::SqliteShadows;
pub use tables::{SqliteTables, BUSY_TIMEOUT_MS};
