//! Where projectors keep their state and checkpoint: in the store's own database.
//!
//! - [`MemoryStore`]: with `--store memory:`; nothing survives the process.
//! - [`SqliteStore`]: with `--store sqlite://PATH`, the table `projections` (see `store.sql`)
//!   in the log's own file, through its own connection.
//! - [`crate::pg_store::PostgresStore`]: with `--store postgres://...`, the schema
//!   `closeloop_read` (see `pg_store.sql`), with views for analysts.
//!
//! Every store writes a projector's state and position in one transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeloop_core::log::Position;
use dashmap::DashMap;

/// A projector's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub version: u32,
    pub position: Position,
    /// The model as JSON.
    pub state: String,
}

/// What can go wrong storing read models.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (locked past the busy timeout, disk full, ...): retry later.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row that this code cannot have written.
    #[error("corrupt checkpoint of {0}")]
    Corrupt(String),
    /// A store URL without read-model storage.
    #[error("no read-model storage for store `{0}`")]
    Unsupported(String),
    /// PostgreSQL failed or cannot be reached: retry later.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The store could not be reached or a background task failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The stored model was written by a newer version of its projector (a replay by a
    /// newer binary was switched in): this process must leave it alone. Not retried: run
    /// the newer binary.
    #[error("{name} is stored at projector version {stored}, newer than this binary's {ours}: run the newer binary")]
    Superseded {
        name: String,
        stored: u32,
        ours: u32,
    },
    /// A model's state is larger than one value of the store holds. Models are stored as
    /// one JSON document each, and the SLA model grows by about 750 bytes per ticket.
    #[error("{name}'s state is {bytes} bytes, more than one {store} value holds ({limit} bytes): a model this large needs row-by-row storage")]
    TooLarge {
        name: String,
        bytes: usize,
        limit: usize,
        store: &'static str,
    },
}

/// Saves and loads projector states.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError>;
    /// Replaces the projector's state and position atomically (one transaction), unless
    /// the stored state is of a newer projector version: then nothing changes and the error
    /// is [`StoreError::Superseded`] (an older `serve` never overwrites a model rebuilt and
    /// switched in by a newer binary).
    async fn save(
        &self,
        name: &str,
        version: u32,
        position: Position,
        state: String,
    ) -> Result<(), StoreError>;
    /// Blue/green switch: moves the state saved under `from` (a rebuild) to `to`, replacing
    /// what `to` held, in one transaction: readers of `to` see the old model or the new one,
    /// never a mix or nothing. Returns false (and changes nothing) when `from` is absent.
    async fn promote(&self, from: &str, to: &str) -> Result<bool, StoreError>;
}

/// States kept in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    states: DashMap<String, Checkpoint>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

#[async_trait::async_trait]
impl CheckpointStore for MemoryStore {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.states.get(name).map(|c| c.clone()))
    }

    async fn save(
        &self,
        name: &str,
        version: u32,
        position: Position,
        state: String,
    ) -> Result<(), StoreError> {
        match self.states.entry(name.to_owned()) {
            dashmap::Entry::Occupied(e) if e.get().version > version => {
                Err(superseded(name, e.get().version, version))
            }
            entry => {
                entry.insert(Checkpoint {
                    version,
                    position,
                    state,
                });
                Ok(())
            }
        }
    }

    async fn promote(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        // Insert first, then remove: a reader of `to` sees the old state or the new one.
        let Some(rebuilt) = self.states.get(from).map(|c| c.clone()) else {
            return Ok(false);
        };
        self.states.insert(to.to_owned(), rebuilt);
        self.states.remove(from);
        Ok(true)
    }
}

/// How long a save waits for the log's writer to release the file.
pub const BUSY_TIMEOUT_MS: u64 = 10_000;

/// States in the `projections` table of an SQLite file.
pub struct SqliteStore {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        conn.execute_batch(include_str!("store.sql"))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

impl SqliteStore {
    fn load_blocking(
        conn: &rusqlite::Connection,
        name: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        use rusqlite::OptionalExtension;
        let row = conn
            .query_row(
                "SELECT version, position, state FROM projections WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(version, position, state)| {
            Ok(Checkpoint {
                version: u32::try_from(version).map_err(|_| StoreError::Corrupt(name.into()))?,
                position: u64::try_from(position).map_err(|_| StoreError::Corrupt(name.into()))?,
                state,
            })
        })
        .transpose()
    }
}

#[async_trait::async_trait]
impl CheckpointStore for SqliteStore {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let (conn, name) = (self.conn.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            SqliteStore::load_blocking(&conn.lock().expect("sqlite store lock poisoned"), &name)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn save(
        &self,
        name: &str,
        version: u32,
        position: Position,
        state: String,
    ) -> Result<(), StoreError> {
        check_size(name, &state, SQLITE_VALUE_MAX, "SQLite")?;
        let (conn, name) = (self.conn.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().expect("sqlite store lock poisoned");
            let saved = conn.execute(
                "INSERT INTO projections (name, version, position, state) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                     position = excluded.position, state = excluded.state
                 WHERE projections.version <= excluded.version",
                rusqlite::params![name, i64::from(version), position as i64, state],
            )?;
            if saved == 0 {
                let stored = SqliteStore::load_blocking(&conn, &name)?.map_or(0, |c| c.version);
                return Err(superseded(&name, stored, version));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn promote(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        let (conn, from, to) = (self.conn.clone(), from.to_owned(), to.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().expect("sqlite store lock poisoned");
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let moved = tx.execute(
                "INSERT INTO projections (name, version, position, state)
                 SELECT ?2, version, position, state FROM projections WHERE name = ?1 AND true
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                     position = excluded.position, state = excluded.state",
                rusqlite::params![from, to],
            )?;
            tx.execute("DELETE FROM projections WHERE name = ?1", [&from])?;
            tx.commit()?;
            Ok(moved > 0)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

/// Refuses a state larger than `limit` bytes with an error that names the model and the
/// limit: the store's own error for it names neither (PostgreSQL refuses the message, SQLite
/// answers "string or blob too big").
pub(crate) fn check_size(
    name: &str,
    state: &str,
    limit: usize,
    store: &'static str,
) -> Result<(), StoreError> {
    if state.len() > limit {
        return Err(StoreError::TooLarge {
            name: name.to_owned(),
            bytes: state.len(),
            limit,
            store,
        });
    }
    Ok(())
}

/// Most bytes of one SQLite value (its default `SQLITE_MAX_LENGTH`).
pub(crate) const SQLITE_VALUE_MAX: usize = 1_000_000_000;

pub(crate) fn superseded(name: &str, stored: u32, ours: u32) -> StoreError {
    StoreError::Superseded {
        name: name.to_owned(),
        stored,
        ours,
    }
}

/// The read-model storage of a `--store` URL.
pub async fn open_store(url: &str) -> Result<Arc<dyn CheckpointStore>, StoreError> {
    if url == "memory:" || url == "memory://" {
        Ok(Arc::new(MemoryStore::new()))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.to_owned();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            crate::pg_store::PostgresStore::connect(url).await?,
        ))
    } else {
        Err(StoreError::Unsupported(url.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_over_the_limit_is_refused_naming_model_and_limit() {
        assert!(check_size("sla", "0123456789", 10, "PostgreSQL").is_ok());
        let e = check_size("sla", "0123456789a", 10, "PostgreSQL").unwrap_err();
        assert!(matches!(
            &e,
            StoreError::TooLarge { name, bytes: 11, limit: 10, store: "PostgreSQL" } if name == "sla"
        ));
        let message = e.to_string();
        assert!(
            message.contains("sla") && message.contains("10 bytes"),
            "{message}"
        );
    }
}
