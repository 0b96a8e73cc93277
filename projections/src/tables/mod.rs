//! The read side as tables: the analysts' fact tables (`tickets`, `sla_timers`,
//! `assignments`, `resolutions`, `satisfaction_ratings`, `agents`), folded from the log one
//! batch at a time and written with their checkpoint in one transaction.
//!
//! - `store.rs`: [`TableStore`], the trait every store implements, its checkpoint and its
//!   errors: the leaf the stores and their users import (this module only declares the
//!   others, re-exports what callers use, and opens a store by URL).
//! - `rows.rs`: one struct per table (the public contract: the README documents each column).
//! - `fold.rs`: the pure fold: an event and its ticket's state in, changed rows out.
//! - `memory.rs`: the reference store, in memory; `sqlite/` and `postgres/` (each a `mod.rs`
//!   and its `tables.sql`): the same tables in SQL. One conformance suite
//!   (`tests/tables.rs`) checks that every store ends with the same rows.
//! - `shadow.rs` (and each backend's `shadow.rs`): the tables a replay builds beside the
//!   live ones, and how they are switched in.
//! - `runner.rs`: the projector: loads the states of the tickets a batch touches (a bounded
//!   cache keeps the hot ones), folds, and commits rows and checkpoint together, guarded by
//!   the position it started from.
//!
//! Why tables: a model kept as one document must be held whole in memory and rewritten whole
//! at every save, so the cost of one event grew with every ticket ever seen. Here a batch
//! writes only the rows of the tickets it touches, memory holds a bounded cache, and
//! analysts query plain columns with plain SQL.

pub mod fold;
pub mod memory;
pub mod postgres;
pub mod read;
pub mod rows;
pub mod runner;
pub mod shadow;
pub mod sqlite;
pub mod store;

use std::sync::Arc;

pub use fold::{Changes, Folder, TicketWork, CATEGORIES};
pub use read::{
    AnyRow, Compliance, Cursor, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage,
};
pub use rows::*;
pub use store::{new_generation, Saved, TableError, TableStore, NAME, VERSION};

use shadow::Shadows;

/// The tables of a `--store` URL: in memory for `memory:`, in the log's own file for
/// `sqlite://PATH`, in the read-model schema for `postgres://...`.
pub async fn open_tables(url: &str) -> Result<Arc<dyn TableStore>, TableError> {
    if url == "memory:" || url == "memory://" {
        Ok(Arc::new(memory::MemoryTables::new()))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.to_owned();
        let tables = tokio::task::spawn_blocking(move || sqlite::SqliteTables::open(path))
            .await
            .map_err(|e| TableError::Unavailable(e.to_string()))??;
        Ok(Arc::new(tables))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresTables::connect(url).await?))
    } else {
        Err(TableError::Unavailable(format!(
            "no read-model tables for store `{url}`"
        )))
    }
}

/// The shadows of a `--store` URL: beside the log's file for `sqlite://PATH`, in schemas
/// beside the read-model schema for `postgres://...`. A `memory:` store keeps nothing a
/// replay could rebuild or a later process read.
pub async fn open_shadows(url: &str) -> Result<Box<dyn Shadows>, TableError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(sqlite::SqliteShadows::new(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PostgresShadows::connect(url).await?))
    } else {
        Err(TableError::Invalid(format!(
            "store `{url}` keeps no read-model tables to rebuild: replay needs sqlite:// or postgres://"
        )))
    }
}
