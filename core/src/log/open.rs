//! Opening a log from a store URL (`--store`, env `CLOSELOOP_STORE`).

use std::sync::Arc;

use closeloop_log::memory::MemoryLog;
use closeloop_log::{Error, EventLog};
use closeloop_postgres::PostgresLog;
use closeloop_sqlite::SqliteLog;

/// Opens `memory:`, `sqlite://PATH` or `postgres://...`, creating the log if it is missing.
pub async fn open(url: &str) -> Result<Arc<dyn EventLog>, Error> {
    if url == "memory:" || url == "memory://" {
        Ok(Arc::new(MemoryLog::new()))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteLog::open(path).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresLog::connect(url).await?))
    } else {
        Err(Error::UnsupportedStore(url.to_owned()))
    }
}

/// Opens an existing log to read it, creating nothing: [`Error::NoStore`] for a SQLite file
/// that does not exist (checked before SQLite could create it), a PostgreSQL schema never
/// migrated, or `memory:` (a new, empty log in every process, so a reader would always find
/// nothing). The message names the store and how to create one.
pub async fn open_existing(url: &str) -> Result<Arc<dyn EventLog>, Error> {
    if url == "memory:" || url == "memory://" {
        Err(Error::NoStore(format!(
            "{url} is a new, empty log in every process: there is nothing to read; \
             use a sqlite:// or postgres:// store"
        )))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoStore(format!(
                "no event log at {url}: the file {path} does not exist (check --store or \
                 CLOSELOOP_STORE; `closeloop submit` or `closeloop demo` creates one)"
            ))),
            _ => Ok(Arc::new(SqliteLog::open(path).await?)),
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresLog::connect_existing(url).await?))
    } else {
        Err(Error::UnsupportedStore(url.to_owned()))
    }
}
