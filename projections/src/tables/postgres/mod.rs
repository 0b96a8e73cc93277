//! The tables on PostgreSQL (`tables.sql`), in the read-model schema (`closeloop_read`, or
//! `S_read` for a log in schema S). A commit is one transaction: the checkpoint moves only
//! if it is still where the batch began, then each table's changed rows are copied in
//! binary into a staging table and upserted from there by primary key (`copy.rs`): a
//! handful of round trips per batch whatever its size.
//!
//! - `tables.rs`: [`PostgresTables`], connecting, commits and dumps; `read.rs`: the reads;
//!   `schema.rs`: each table's columns; `copy.rs`: the binary copy and upsert of a batch's
//!   rows; `shadow.rs`: [`PostgresShadows`], the builds of a replay; `url.rs`: the schema a
//!   store URL names.

mod copy;
mod read;
mod schema;
mod shadow;
mod tables;
pub mod url;

pub use shadow::PostgresShadows;
pub use tables::PostgresTables;
