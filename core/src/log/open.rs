//! Opening a log from a store URL (`--store`, env `CLOSELOOP_STORE`).

use std::sync::Arc;

use super::{memory::MemoryLog, postgres::PostgresLog, sqlite::SqliteLog, EventLog};
use crate::Error;

/// Opens `memory:`, `sqlite://PATH` or `postgres://...`.
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
