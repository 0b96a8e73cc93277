//! The customers' data keys of a SQLite log: table `customer_keys` in the log's own file
//! (see `sqlite.sql`). A connection of their own, apart from the writer thread: keys are
//! created once per customer and destroyed rarely, so they never queue behind appends; the
//! file's write lock is shared with the writer through the busy timeout.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use closeloop_log::{DataKey, Error, KeyStore};

use crate::common::{db, BUSY_TIMEOUT_MS};

const SQL_GET: &str = "SELECT key FROM customer_keys WHERE customer_id = ?1";
const SQL_INSERT: &str = "INSERT INTO customer_keys (customer_id, key, created_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (customer_id) DO NOTHING";
const SQL_DELETE: &str = "DELETE FROM customer_keys WHERE customer_id = ?1";

/// The key store of one SQLite file.
pub struct SqliteKeys {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteKeys {
    /// Opens the key store of the log at `path` (whose schema the log's open created).
    pub(crate) fn open(path: &Path) -> Result<SqliteKeys, Error> {
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(db)?;
        // A destroyed key's bytes are overwritten with zeros in the file, not left in a free
        // page for anyone with the file to read.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db)?;
        Ok(SqliteKeys {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || work(&conn.lock().expect("key connection poisoned")))
            .await
            .map_err(|e| Error::Unavailable(format!("a key store call failed: {e}")))?
            .map_err(db)
    }
}

fn key_of(bytes: Vec<u8>) -> Result<DataKey, rusqlite::Error> {
    DataKey::from_slice(&bytes).ok_or(rusqlite::Error::InvalidColumnType(
        0,
        "key".into(),
        rusqlite::types::Type::Blob,
    ))
}

#[async_trait]
impl KeyStore for SqliteKeys {
    async fn get_or_create(&self, customer_id: &str) -> Result<DataKey, Error> {
        let customer_id = customer_id.to_owned();
        self.run(move |conn| {
            let fresh = DataKey::generate();
            conn.execute(
                SQL_INSERT,
                params![
                    customer_id,
                    &fresh.0[..],
                    jiff::Timestamp::now().to_string()
                ],
            )?;
            key_of(conn.query_row(SQL_GET, params![customer_id], |row| row.get(0))?)
        })
        .await
    }

    async fn get(&self, customer_id: &str) -> Result<Option<DataKey>, Error> {
        let customer_id = customer_id.to_owned();
        self.run(move |conn| {
            conn.query_row(SQL_GET, params![customer_id], |row| {
                row.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(key_of)
            .transpose()
        })
        .await
    }

    async fn destroy(&self, customer_id: &str) -> Result<bool, Error> {
        let customer_id = customer_id.to_owned();
        self.run(move |conn| {
            let deleted = conn.execute(SQL_DELETE, params![customer_id])? > 0;
            if deleted {
                // The WAL still holds the page as it was when the key was written: copy the
                // pages back into the file and empty the WAL. Best effort: a reader holding
                // an old snapshot keeps those frames until it finishes, and the next
                // checkpoint takes them.
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(deleted)
        })
        .await
    }
}
