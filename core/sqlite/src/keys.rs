//! The customers' data keys of a SQLite log: table `customer_keys` in the log's own file
//! (see `sqlite.sql`). Keys are written by the log's writer thread: a new customer's key
//! with the append that first uses it, in that append's savepoint (`append_with_keys`), and
//! a key asked for on its own (`store`) in the transaction of the batch at hand; one fsync
//! either way, and no second writer waiting for the file's lock. Reading a key and
//! destroying one (rare) use a connection of their own.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use closeloop_log::{DataKey, Error, KeyStore};

use crate::common::{db, Job, BUSY_TIMEOUT_MS};

const SQL_GET: &str = "SELECT key FROM customer_keys WHERE customer_id = ?1";
const SQL_INSERT: &str = "INSERT INTO customer_keys (customer_id, key, created_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (customer_id) DO NOTHING";
const SQL_DELETE: &str = "DELETE FROM customer_keys WHERE customer_id = ?1";

/// The key store of one SQLite file.
pub struct SqliteKeys {
    conn: Arc<Mutex<Connection>>,
    /// The log's writer; weak, so the store kept by a caller never keeps the writer thread
    /// (and the file) open after the log is dropped.
    writer: mpsc::WeakSender<Job>,
}

/// Stores `fresh` as the customer's key unless one is stored; the stored key. Run by the
/// writer thread inside its batch's transaction.
pub(crate) fn store(
    conn: &Connection,
    customer_id: &str,
    fresh: &DataKey,
) -> Result<DataKey, rusqlite::Error> {
    conn.prepare_cached(SQL_INSERT)?.execute(params![
        customer_id,
        &fresh.0[..],
        jiff::Timestamp::now().to_string()
    ])?;
    key_of(
        conn.prepare_cached(SQL_GET)?
            .query_row(params![customer_id], |row| row.get(0))?,
    )
}

impl SqliteKeys {
    /// Opens the key store of the log at `path` (whose schema the log's open created), whose
    /// writer thread takes `writer`'s jobs.
    pub(crate) fn open(path: &Path, writer: mpsc::WeakSender<Job>) -> Result<SqliteKeys, Error> {
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(db)?;
        // A destroyed key's bytes are overwritten with zeros in the file, not left in a free
        // page for anyone with the file to read.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db)?;
        Ok(SqliteKeys {
            conn: Arc::new(Mutex::new(conn)),
            writer,
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
    async fn store(&self, customer_id: &str, key: &DataKey) -> Result<DataKey, Error> {
        let writer = self
            .writer
            .upgrade()
            .ok_or_else(|| Error::Unavailable("the SQLite log is closed".into()))?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(Job::Key {
                customer_id: customer_id.to_owned(),
                fresh: key.clone(),
                reply,
            })
            .await
            .map_err(|_| Error::Unavailable("the SQLite writer thread has stopped".into()))?;
        drop(writer);
        answer.await.map_err(|_| {
            Error::Unavailable("the SQLite writer thread stopped before storing the key".into())
        })?
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
