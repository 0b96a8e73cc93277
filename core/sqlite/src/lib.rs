//! closeloop-sqlite: the SQLite backend of the event log (an `EventLog` of `closeloop-log`),
//! the embedded default (`--store sqlite://PATH`), one file on one machine.
//!
//! Layout of the work:
//! - **One writer thread** owns the only write connection. Appends travel to it over a bounded
//!   channel, each with a oneshot for its reply. The writer drains up to
//!   [`BATCH_APPENDS_MAX`] waiting appends and runs them in **one** transaction (group commit:
//!   one fsync for the whole batch instead of one per append, which is what bounds SQLite's
//!   write throughput with `synchronous=FULL`). Each append runs inside its own `SAVEPOINT`, so
//!   an append that fails its expected-version check, repeats a command id, or hits an error of
//!   its own is rolled back alone and its batch neighbours still commit. Replies are sent only
//!   after `COMMIT` returned, so an acknowledged append is durable.
//! - Because one thread assigns positions (`max(position) + 1`) inside the write transaction,
//!   positions are contiguous and in commit order: a reader after position p can never later
//!   find an event at or below p.
//! - **Reads** run on separate read-only connections (WAL lets them proceed while the writer
//!   commits), from a small pool, on tokio's blocking threads.
//! - `head` and `wait_beyond` follow a `watch` channel that the writer updates after each
//!   commit. It sees only appends made through this [`SqliteLog`]: several processes (or
//!   several `SqliteLog`s) writing one file is not a supported deployment; use PostgreSQL for
//!   that.
//!
//! The schema (`sqlite.sql`, beside this file) makes `events` and `commands` append-only with
//! triggers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use closeloop_log::*;

mod common;
mod keys;

pub use common::BUSY_TIMEOUT_MS;
use common::{db, Job};
pub use keys::SqliteKeys;

/// Most appends the writer commits in one transaction. Bounds the latency one batch adds to
/// its last append and the work redone if a commit fails; 256 appends of up to
/// [`APPEND_EVENTS_MAX`] events each is at most 16,384 events per transaction.
pub const BATCH_APPENDS_MAX: usize = 256;
/// Most appends waiting for the writer; beyond this, `append` waits (backpressure) instead of
/// queueing without bound.
pub const QUEUE_APPENDS_MAX: usize = 4 * BATCH_APPENDS_MAX;
/// Most reads running at once (each holds one read-only connection and one blocking thread).
pub const READERS_MAX: usize = 8;

/// The schema version this code creates and understands (`PRAGMA user_version`); 2 added
/// the log's identity (`log_identity`), 3 the customers' data keys (`customer_keys`), so a
/// build that would append customer texts in the clear refuses a file that encrypts them.
const SCHEMA_VERSION: i64 = 3;
/// The schema, idempotent (`CREATE ... IF NOT EXISTS`).
const SCHEMA_SQL: &str = include_str!("sqlite.sql");

/// The columns of `events` in the order [`decode_event`] reads them.
const EVENT_COLUMNS: &str =
    "position, stream, version, event_id, type, schema_version, data, metadata, hash";

const SQL_HEAD: &str = "SELECT COALESCE(MAX(position), 0) FROM events";
/// The last position of a category (index `events_category_position`).
const SQL_CATEGORY_HEAD: &str = "SELECT COALESCE(MAX(position), 0) FROM events WHERE category = ?1";
/// Gives the log its identity if it has none yet (a new file, or one from schema version 1).
const SQL_INSERT_LOG_ID: &str = "INSERT INTO log_identity (singleton, log_id, created_at) \
     SELECT 1, ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM log_identity)";
const SQL_LOG_ID: &str = "SELECT log_id FROM log_identity WHERE singleton = 1";
const SQL_COMMAND_RECORDS: &str = "SELECT command_id, position, json_array_length(events) \
     FROM commands WHERE position > ?1 ORDER BY position LIMIT ?2";
const SQL_FIND_COMMAND: &str =
    "SELECT stream, version, position, events FROM commands WHERE command_id = ?1";
const SQL_STREAM_TIP: &str =
    "SELECT version, hash FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1";
const SQL_INSERT_EVENT: &str = "INSERT INTO events \
     (position, stream, category, version, event_id, type, schema_version, data, metadata, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const SQL_INSERT_COMMAND: &str =
    "INSERT INTO commands (command_id, stream, version, position, events) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// An event log in one SQLite file.
pub struct SqliteLog {
    path: PathBuf,
    /// Appends to the writer thread; `None` only while dropping (closing it stops the thread).
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    /// The head as of the writer's last commit.
    head: watch::Receiver<Position>,
    readers: Arc<Readers>,
    /// Transactions the writer has committed (group-commit observability for tests/benches).
    batches_committed: Arc<AtomicU64>,
    /// The customers' data keys, in the same file.
    keys: Arc<SqliteKeys>,
}

impl SqliteLog {
    /// Opens (creating if missing) the log in the file at `path`, and starts its writer thread.
    pub async fn open(path: &str) -> Result<SqliteLog, Error> {
        let path = PathBuf::from(path);
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_writer(&path))
                .await
                .map_err(|e| Error::Unavailable(format!("opening the SQLite log failed: {e}")))??
        };
        let (conn, head_at_open) = opened;
        let (jobs_tx, jobs_rx) = mpsc::channel(QUEUE_APPENDS_MAX);
        let (head_tx, head_rx) = watch::channel(head_at_open);
        let batches_committed = Arc::new(AtomicU64::new(0));
        let writer = {
            let batches_committed = batches_committed.clone();
            std::thread::Builder::new()
                .name("closeloop-sqlite-writer".into())
                .spawn(move || writer_loop(conn, jobs_rx, head_tx, batches_committed))
                .map_err(|e| {
                    Error::Unavailable(format!("cannot start the SQLite writer thread: {e}"))
                })?
        };
        tracing::debug!(path = %path.display(), head = head_at_open, "sqlite log open");
        let keys = {
            let path = path.clone();
            let jobs = jobs_tx.downgrade();
            tokio::task::spawn_blocking(move || SqliteKeys::open(&path, jobs))
                .await
                .map_err(|e| Error::Unavailable(format!("opening the key store failed: {e}")))??
        };
        Ok(SqliteLog {
            keys: Arc::new(keys),
            readers: Arc::new(Readers {
                path: path.clone(),
                idle: Mutex::new(Vec::with_capacity(READERS_MAX)),
                permits: Arc::new(Semaphore::new(READERS_MAX)),
            }),
            path,
            jobs: Some(jobs_tx),
            writer: Some(writer),
            head: head_rx,
            batches_committed,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many write transactions (batches of appends) have committed since open. Fewer
    /// batches than appends means group commit is sharing fsyncs.
    pub fn batches_committed(&self) -> u64 {
        self.batches_committed.load(Ordering::Relaxed)
    }

    /// Runs `read` on a pooled read-only connection on a blocking thread.
    async fn read<T, F>(&self, read: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the SQLite reader pool is closed".into()))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(permit, read))
            .await
            .map_err(|e| Error::Unavailable(format!("an SQLite read failed: {e}")))?
    }
}

impl Drop for SqliteLog {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop once it has finished (and answered) the
        // batch in hand; joining means the file is closed when `drop` returns, so the same
        // path can be reopened at once.
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "the SQLite writer thread panicked");
            }
        }
    }
}

/// Opens the write connection, sets it up and creates the schema; returns it with the head.
fn open_writer(path: &Path) -> Result<(Connection, Position), Error> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(db)?;
    // WAL: readers do not block the writer nor the writer readers. It needs a real file:
    // `:memory:` (journal mode "memory") could not be shared with the read connections.
    let journal_mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unavailable(format!(
            "{}: SQLite refused WAL journal mode (got `{journal_mode}`); the log needs a file \
             on a local file system",
            path.display()
        )));
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged append survives a power
    // loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;

    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db)?;
    if found > SCHEMA_VERSION {
        return Err(Error::Unavailable(format!(
            "{}: schema version {found} is newer than this build understands ({SCHEMA_VERSION}); \
             use a newer closeloop",
            path.display()
        )));
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let created = conn
        .execute_batch(SCHEMA_SQL)
        .and_then(|()| {
            conn.execute(
                SQL_INSERT_LOG_ID,
                params![
                    Uuid::new_v4().to_string(),
                    jiff::Timestamp::now().to_string()
                ],
            )
        })
        .and_then(|_| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
        .and_then(|()| conn.execute_batch("COMMIT"));
    if let Err(e) = created {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Err(db(e));
    }
    let head: i64 = conn.query_row(SQL_HEAD, [], |row| row.get(0)).map_err(db)?;
    let head = position_of(head).map_err(|e| Error::Corrupt(format!("head: {e}")))?;
    Ok((conn, head))
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// The writer thread: takes the appends waiting, commits them as one batch, answers, repeats.
/// Returns when every sender is gone (the log was dropped).
fn writer_loop(
    conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    head: watch::Sender<Position>,
    batches_committed: Arc<AtomicU64>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_APPENDS_MAX);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH_APPENDS_MAX {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A caller that stopped waiting before its append was written (its deadline passed)
        // was told nothing was appended: it is not written late.
        batch.retain(|job| !job.abandoned());
        if batch.is_empty() {
            continue;
        }
        let keys: Vec<(&str, &DataKey)> = batch
            .iter()
            .filter_map(|job| match job {
                Job::Key {
                    customer_id, fresh, ..
                } => Some((customer_id.as_str(), fresh)),
                Job::Append { .. } => None,
            })
            .collect();
        let requests = batch.iter().filter_map(|job| match job {
            Job::Append { request, keys, .. } => Some((request, keys.as_slice())),
            Job::Key { .. } => None,
        });
        let written = write_batch(&conn, &keys, requests);
        drop(keys);
        let (outcomes, stored) = match written {
            Ok(written) => {
                batches_committed.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(
                    appends = batch.len(),
                    head = written.head,
                    "sqlite batch committed"
                );
                // Publish the head before answering: whoever sees its append acknowledged
                // then sees a head at or beyond it.
                head.send_if_modified(|current| {
                    let moved = written.head > *current;
                    if moved {
                        *current = written.head;
                    }
                    moved
                });
                (written.outcomes, written.keys)
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                        tracing::error!(error = %rollback, "sqlite rollback after a failed batch failed");
                    }
                }
                tracing::error!(error = %e, jobs = batch.len(), "sqlite batch failed; nothing in it was written");
                let failed = || {
                    Error::Unavailable(format!(
                        "the SQLite write transaction failed and wrote nothing ({e}); retry \
                         (an append with the same command id)"
                    ))
                };
                let appends = batch
                    .iter()
                    .filter(|job| matches!(job, Job::Append { .. }))
                    .count();
                (
                    (0..appends).map(|_| Err(failed())).collect(),
                    (0..batch.len() - appends).map(|_| Err(failed())).collect(),
                )
            }
        };
        let (mut outcomes, mut stored) = (outcomes.into_iter(), stored.into_iter());
        for job in batch.drain(..) {
            // A caller that stopped waiting still had its append committed; a retry with the
            // same command id finds it.
            match job {
                Job::Append { reply, .. } => {
                    let _ = reply.send(outcomes.next().expect("one outcome per append"));
                }
                Job::Key { reply, .. } => {
                    let _ = reply.send(stored.next().expect("one answer per key"));
                }
            }
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the SQLite write connection failed");
    }
}

/// What one committed batch did.
struct Written {
    /// One per request, in order.
    outcomes: Vec<Result<AppendOutcome, Error>>,
    /// The stored key of each customer in the batch's keys, in order.
    keys: Vec<Result<DataKey, Error>>,
    /// The last position after the commit.
    head: Position,
}

/// Stores `keys` (each unless the customer has one) and runs `requests`, in one
/// transaction, each in its own savepoint, and commits.
///
/// The outer `Err` means the transaction itself failed (could not begin, a savepoint could not
/// be rolled back, or `COMMIT` failed): nothing of the batch is stored and the caller rolls
/// back. Otherwise each request has its own outcome; failed requests changed nothing.
fn write_batch<'a>(
    conn: &Connection,
    keys: &[(&str, &DataKey)],
    requests: impl IntoIterator<Item = (&'a AppendRequest, &'a [(String, DataKey)])>,
) -> Result<Written, rusqlite::Error> {
    // IMMEDIATE takes the write lock now, so no statement below can fail with SQLITE_BUSY
    // halfway through the batch.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut stored = Vec::with_capacity(keys.len());
    for (customer_id, fresh) in keys {
        conn.execute_batch("SAVEPOINT key")?;
        match keys::store(conn, customer_id, fresh) {
            Ok(key) => {
                conn.execute_batch("RELEASE key")?;
                stored.push(Ok(key));
            }
            Err(e) => {
                conn.execute_batch("ROLLBACK TO key; RELEASE key")?;
                stored.push(Err(db(e)));
            }
        }
    }
    let head: i64 = conn.query_row(SQL_HEAD, [], |row| row.get(0))?;
    let mut head = u64::try_from(head).unwrap_or(0);
    let mut outcomes = Vec::new();
    for (request, new_keys) in requests {
        conn.execute_batch("SAVEPOINT append")?;
        match store_new_keys(conn, new_keys).and_then(|()| append_one(conn, request, head)) {
            Ok(outcome) => {
                conn.execute_batch("RELEASE append")?;
                if let AppendOutcome::Committed(committed) = &outcome {
                    assert_eq!(
                        committed.position,
                        head + request.events.len() as u64,
                        "positions must stay contiguous"
                    );
                    head = committed.position;
                }
                outcomes.push(Ok(outcome));
            }
            Err(e) => {
                // Undo this append only; the ones before it in the batch stay.
                conn.execute_batch("ROLLBACK TO append; RELEASE append")?;
                outcomes.push(Err(e));
            }
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(Written {
        outcomes,
        keys: stored,
        head,
    })
}

/// Stores the data keys an append's events were sealed under, unless a customer has a
/// different one by now ([`Error::KeyTaken`]: the append's savepoint is rolled back).
fn store_new_keys(conn: &Connection, new_keys: &[(String, DataKey)]) -> Result<(), Error> {
    for (customer_id, key) in new_keys {
        if keys::store(conn, customer_id, key).map_err(db)? != *key {
            return Err(Error::KeyTaken {
                customer_id: customer_id.clone(),
            });
        }
    }
    Ok(())
}

/// One append inside the batch's transaction; `head` is the last position so far.
fn append_one(
    conn: &Connection,
    request: &AppendRequest,
    head: Position,
) -> Result<AppendOutcome, Error> {
    // Idempotency first: a retried command gets its first outcome even if the stream has
    // moved on since (and even when the first append was earlier in this very batch).
    let existing = find_command(conn, request.command_id)?;
    let stream_head = || {
        let tip = conn
            .prepare_cached(SQL_STREAM_TIP)
            .map_err(db)?
            .query_row(params![request.stream], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .optional()
            .map_err(db)?;
        tip.map(|(version, hash)| {
            let version = u64::try_from(version).map_err(|_| {
                Error::Corrupt(format!("stream {}: version {version}", request.stream))
            })?;
            Ok((version, hash))
        })
        .transpose()
    };
    // Inside the batch's write transaction: no other writer can append in between.
    let mut last_of = None;
    let category_head = |category: &str| {
        let last_of = match &mut last_of {
            Some(statement) => statement,
            None => last_of.insert(conn.prepare_cached(SQL_CATEGORY_HEAD).map_err(db)?),
        };
        let last: i64 = last_of
            .query_row(params![category], |row| row.get(0))
            .map_err(db)?;
        position_of(last).map_err(|e| Error::Corrupt(format!("category {category}: {e}")))
    };
    let (sealed, committed) = match rules::decide(
        request,
        existing,
        stream_head,
        category_head,
        head + 1,
        jiff::Timestamp::now(),
    )? {
        rules::Decision::Duplicate(first) => return Ok(AppendOutcome::Duplicate(first)),
        rules::Decision::Sealed(sealed, committed) => (sealed, committed),
    };
    let category = stream_category(&request.stream);
    let mut insert = conn.prepare_cached(SQL_INSERT_EVENT).map_err(db)?;
    for event in &sealed {
        let data = serde_json::to_string(&event.data)
            .map_err(|e| Error::InvalidAppend(format!("event data is not JSON: {e}")))?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| Error::InvalidAppend(format!("event metadata is not JSON: {e}")))?;
        let inserted = insert.execute(params![
            sql_int(event.position)?,
            event.stream,
            category,
            sql_int(event.version)?,
            event.event_id.to_string(),
            event.event_type,
            event.schema_version,
            data,
            metadata,
            event.hash,
        ]);
        if let Err(e) = inserted {
            return Err(match &e {
                rusqlite::Error::SqliteFailure(_, Some(message))
                    if message.contains("events.event_id") =>
                {
                    Error::InvalidAppend(format!(
                        "event id {} is already stored: event ids are unique in the log",
                        event.event_id
                    ))
                }
                _ => db(e),
            });
        }
    }
    let types = serde_json::to_string(&committed.events)
        .map_err(|e| Error::InvalidAppend(format!("event types: {e}")))?;
    conn.prepare_cached(SQL_INSERT_COMMAND)
        .map_err(db)?
        .execute(params![
            request.command_id.to_string(),
            committed.stream,
            sql_int(committed.version)?,
            sql_int(committed.position)?,
            types,
        ])
        .map_err(db)?;
    Ok(AppendOutcome::Committed(committed))
}

/// A log number as an SQLite integer (i64); beyond i64::MAX is not a number this log reaches.
fn sql_int(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::InvalidAppend(format!("{n} does not fit in SQLite")))
}

/// A bound given by a caller (`after`), clamped into SQLite's integers.
fn sql_bound(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Readers.

/// The read-only connections, opened on demand and kept for reuse.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Bounds reads in flight (and so open read connections) to [`READERS_MAX`].
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Runs `read` on an idle connection (or a new one); keeps the connection afterwards.
    fn with<T>(
        &self,
        permit: OwnedSemaphorePermit,
        read: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        // A connection is returned only after a complete read; the permit bounds how many
        // exist, so the pool never holds more than READERS_MAX.
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        drop(permit);
        result
    }

    fn open(&self) -> Result<Connection, Error> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(db)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(db)?;
        Ok(conn)
    }
}

/// Idempotency records after `after`, in position order ([`EventLog::command_records`]).
fn command_records(
    conn: &Connection,
    after: Position,
    limit: usize,
) -> Result<Vec<CommandRecord>, Error> {
    let mut statement = conn.prepare_cached(SQL_COMMAND_RECORDS).map_err(db)?;
    let rows = statement
        .query_map(
            params![sql_bound(after), limit.min(READ_BATCH_MAX) as i64],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            },
        )
        .map_err(db)?;
    let mut records = Vec::new();
    for row in rows {
        let (id, last, count) = row.map_err(db)?;
        let command_id = Uuid::parse_str(&id)
            .map_err(|e| Error::Corrupt(format!("command record `{id}`: {e}")))?;
        let bad = |what: &str| Error::Corrupt(format!("command record {command_id}: {what}"));
        let last = u64::try_from(last).map_err(|_| bad("negative position"))?;
        let count = u64::try_from(count).map_err(|_| bad("negative event count"))?;
        records.push(CommandRecord {
            command_id,
            first_position: (last + 1)
                .checked_sub(count)
                .ok_or_else(|| bad("more events than positions"))?,
            last_position: last,
        });
    }
    Ok(records)
}

/// The outcome recorded for `command_id`, if any.
fn find_command(conn: &Connection, command_id: Uuid) -> Result<Option<Committed>, Error> {
    let row = conn
        .prepare_cached(SQL_FIND_COMMAND)
        .map_err(db)?
        .query_row(params![command_id.to_string()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .optional()
        .map_err(|e| corrupt_command(command_id, &e))?;
    let Some((stream, version, position, events)) = row else {
        return Ok(None);
    };
    Ok(Some(Committed {
        stream,
        version: u64::try_from(version)
            .map_err(|e| corrupt_command(command_id, &format!("version {version}: {e}")))?,
        position: position_of(position).map_err(|e| corrupt_command(command_id, &e))?,
        events: serde_json::from_str(&events)
            .map_err(|e| corrupt_command(command_id, &format!("event types: {e}")))?,
    }))
}

fn corrupt_command(command_id: Uuid, problem: &dyn std::fmt::Display) -> Error {
    Error::Corrupt(format!("command {command_id}: {problem}"))
}

/// A stored position: 1 or more (0 only as "nothing yet" for the head).
fn position_of(raw: i64) -> Result<Position, String> {
    u64::try_from(raw).map_err(|_| format!("position {raw} is negative"))
}

/// Runs an events query and decodes every row.
fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, Error> {
    let mut statement = conn.prepare_cached(sql).map_err(db)?;
    let mut rows = statement.query(params).map_err(db)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(db)? {
        events.push(decode_event(row)?);
    }
    Ok(events)
}

/// One `events` row (columns as in [`EVENT_COLUMNS`]). Anything the writer cannot have
/// stored is `Error::Corrupt` naming the position: reported, never a panic.
fn decode_event(row: &rusqlite::Row<'_>) -> Result<StoredEvent, Error> {
    let position: i64 = row
        .get(0)
        .map_err(|e| Error::Corrupt(format!("an event row has no readable position: {e}")))?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::Corrupt(format!("position {position}: {what}: {e}"))
    };
    let text = |i: usize, what: &str| row.get::<_, String>(i).map_err(|e| corrupt(what, &e));
    let int = |i: usize, what: &str| row.get::<_, i64>(i).map_err(|e| corrupt(what, &e));

    let stream = text(1, "stream")?;
    let version = int(2, "version")?;
    let event_id = text(3, "event_id")?;
    let event_type = text(4, "type")?;
    let schema_version = int(5, "schema_version")?;
    let data = text(6, "data")?;
    let metadata = text(7, "metadata")?;
    let hash = text(8, "hash")?;
    Ok(StoredEvent {
        position: u64::try_from(position)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| corrupt("position", &"not a positive integer"))?,
        stream,
        version: u64::try_from(version)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| corrupt("version", &format!("{version} is not a positive integer")))?,
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt("event_id", &e))?,
        event_type,
        schema_version: u32::try_from(schema_version)
            .map_err(|e| corrupt("schema_version", &format!("{schema_version}: {e}")))?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data is not JSON", &e))?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| corrupt("metadata is not valid", &e))?,
        hash,
    })
}

/// One batch of a scan: the events with `from < position <= to` (of the categories, a JSON
/// array, when given), at most `limit`.
fn scan_batch(
    conn: &Connection,
    from: i64,
    to: i64,
    limit: usize,
    categories: Option<&str>,
) -> Result<Vec<ScannedEvent>, Error> {
    const COLUMNS: &str =
        "position, stream, type, schema_version, data, json_extract(metadata, '$.occurred_at')";
    let mut statement = match categories {
        None => conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE position > ?1 AND position <= ?2 \
             ORDER BY position LIMIT ?3"
        )),
        Some(_) => conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE position > ?1 AND position <= ?2 \
               AND category IN (SELECT value FROM json_each(?4)) \
             ORDER BY position LIMIT ?3"
        )),
    }
    .map_err(db)?;
    let limit = limit as i64;
    let mut rows = match categories {
        None => statement.query(params![from, to, limit]),
        Some(c) => statement.query(params![from, to, limit, c]),
    }
    .map_err(db)?;
    let mut events = Vec::with_capacity(limit as usize);
    while let Some(row) = rows.next().map_err(db)? {
        let position: i64 = row.get(0).map_err(db)?;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            Error::Corrupt(format!("position {position}: {what}: {e}"))
        };
        let schema_version: i64 = row.get(3).map_err(db)?;
        let occurred_at: Option<String> = row.get(5).map_err(db)?;
        events.push(ScannedEvent {
            position: u64::try_from(position).map_err(|e| corrupt("position", &e))?,
            stream: row.get(1).map_err(db)?,
            event_type: row.get(2).map_err(db)?,
            schema_version: u32::try_from(schema_version)
                .map_err(|e| corrupt("schema_version", &e))?,
            data: row.get(4).map_err(db)?,
            occurred_at: occurred_at
                .ok_or_else(|| corrupt("metadata", &"no occurred_at"))?
                .parse()
                .map_err(|e| corrupt("occurred_at", &e))?,
        });
    }
    Ok(events)
}

#[async_trait]
impl EventLog for SqliteLog {
    fn keys(&self) -> Arc<dyn KeyStore> {
        self.keys.clone()
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        self.append_with_keys(request, Vec::new()).await
    }

    /// In one savepoint of the writer's transaction: the keys, then the append.
    async fn append_with_keys(
        &self,
        request: AppendRequest,
        keys: Vec<(String, DataKey)>,
    ) -> Result<AppendOutcome, Error> {
        check_request(&request)?;
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the SQLite log is closing".into()))?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::Append {
            request,
            keys,
            reply,
        })
        .await
        .map_err(|_| Error::Unavailable("the SQLite writer thread has stopped".into()))?;
        answer.await.map_err(|_| {
            Error::Unavailable(
                "the SQLite writer thread stopped before answering; the append may have \
                 committed: retry with the same command id"
                    .into(),
            )
        })?
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        let stream = stream.to_owned();
        self.read(move |conn| {
            query_events(
                conn,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE stream = ?1 AND version > ?2 ORDER BY version"
                ),
                params![stream, sql_bound(after_version)],
            )
        })
        .await
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let stream = stream.to_owned();
        let limit = limit.min(READ_BATCH_MAX) as i64;
        self.read(move |conn| {
            query_events(
                conn,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE stream = ?1 AND version > ?2 ORDER BY version LIMIT ?3"
                ),
                params![stream, sql_bound(after_version), limit],
            )
        })
        .await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let limit = limit.min(READ_BATCH_MAX) as i64;
        let after = sql_bound(after);
        match filter {
            Filter::All => {
                self.read(move |conn| {
                    query_events(
                        conn,
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM events \
                             WHERE position > ?1 ORDER BY position LIMIT ?2"
                        ),
                        params![after, limit],
                    )
                })
                .await
            }
            Filter::Categories([]) => Ok(Vec::new()),
            Filter::Categories(categories) => {
                // The categories travel as one JSON array parameter: one cached statement
                // whatever their number, and no SQL built from caller strings.
                let categories = serde_json::to_string(categories)
                    .map_err(|e| Error::InvalidAppend(format!("categories: {e}")))?;
                self.read(move |conn| {
                    query_events(
                        conn,
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM events \
                             WHERE position > ?1 \
                               AND category IN (SELECT value FROM json_each(?3)) \
                             ORDER BY position LIMIT ?2"
                        ),
                        params![after, limit, categories],
                    )
                })
                .await
            }
        }
    }

    /// One query per batch on a pooled reader (read when polled), selecting only the
    /// scanned columns: the data stays the text it is stored as, never a `Value`.
    fn scan<'a>(
        &'a self,
        after: Position,
        end: Position,
        filter: Filter<'a>,
        batch_events: usize,
    ) -> Scan<'a> {
        let limit = batch_events.clamp(1, READ_BATCH_MAX);
        // The categories travel as one JSON array parameter, as in `read_all`.
        let categories = match filter {
            Filter::All => None,
            Filter::Categories(c) => Some(serde_json::to_string(c).unwrap_or_default()),
        };
        Box::pin(futures::stream::try_unfold(after, move |after| {
            let categories = categories.clone();
            async move {
                if after >= end {
                    return Ok(None);
                }
                let (from, to) = (sql_bound(after), sql_bound(end));
                let events = self
                    .read(move |conn| scan_batch(conn, from, to, limit, categories.as_deref()))
                    .await?;
                let through = match events.last() {
                    Some(last) if events.len() >= limit => last.position,
                    _ => end,
                };
                Ok(Some((ScanBatch { events, through }, through)))
            }
        }))
    }

    async fn head(&self) -> Result<Position, Error> {
        Ok(*self.head.borrow())
    }

    async fn wait_beyond(&self, after: Position, max_wait: Duration) -> Result<Position, Error> {
        let mut head = self.head.clone();
        // `wait_for` yields a borrow of the value: drop it at once (it holds the channel's
        // read lock) and keep only whether the channel closed.
        let waited = tokio::time::timeout(max_wait, head.wait_for(|head| *head > after))
            .await
            .map(|found| found.is_ok());
        match waited {
            Ok(true) | Err(_) => Ok(*head.borrow()),
            // The writer is gone: the head can never move again. Say so rather than return
            // at once forever (which would turn a tail's wait loop into a busy loop).
            Ok(false) => Err(Error::Unavailable(
                "the SQLite writer thread has stopped".into(),
            )),
        }
    }

    async fn log_id(&self) -> Result<Uuid, Error> {
        self.read(|conn| {
            let id: Option<String> = conn
                .query_row(SQL_LOG_ID, [], |row| row.get(0))
                .optional()
                .map_err(db)?;
            let id = id.ok_or_else(|| {
                Error::Corrupt("the log has no identity: its log_identity row is missing".into())
            })?;
            id.parse().map_err(|e| {
                Error::Corrupt(format!("the log's identity `{id}` is not a UUID: {e}"))
            })
        })
        .await
    }

    async fn find_command(&self, command_id: Uuid) -> Result<Option<Committed>, Error> {
        self.read(move |conn| find_command(conn, command_id)).await
    }

    async fn command_records(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, Error> {
        self.read(move |conn| command_records(conn, after, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_domain::{Actor, Role};

    fn request(stream: &str, expected: ExpectedVersion, events: usize) -> AppendRequest {
        let command_id = Uuid::now_v7();
        let metadata = Metadata {
            command_id,
            correlation_id: command_id,
            causation_id: command_id,
            actor: Actor {
                id: "unit".into(),
                role: Role::System,
            },
            occurred_at: jiff::Timestamp::UNIX_EPOCH,
            recorded_at: jiff::Timestamp::UNIX_EPOCH,
            command_hash: None,
        };
        AppendRequest {
            stream: stream.into(),
            expected,
            command_id,
            events: (0..events)
                .map(|i| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: format!("thing_happened_{i}"),
                    schema_version: 1,
                    data: serde_json::json!({ "i": i }),
                    metadata: metadata.clone(),
                })
                .collect(),
            unchanged: None,
        }
    }

    /// The savepoints, deterministically: one batch in which some appends fail and the others
    /// (before and after them) commit, and a duplicate of an append earlier in the batch.
    #[test]
    fn a_failing_append_rolls_back_alone_within_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, head) = open_writer(&dir.path().join("log.db")).unwrap();
        assert_eq!(head, 0);

        let a1 = request("ticket-a", ExpectedVersion::Exact(0), 2);
        let b_wrong = request("ticket-b", ExpectedVersion::Exact(3), 1);
        let a2 = request("ticket-a", ExpectedVersion::Exact(2), 1);
        let a1_again = AppendRequest {
            stream: "ticket-other".into(),
            ..a1.clone()
        };
        let a_stale = request("ticket-a", ExpectedVersion::Exact(2), 5);
        let mut duplicate_event = request("ticket-c", ExpectedVersion::Any, 2);
        duplicate_event.events[1].event_id = a1.events[0].event_id;
        let c = request("ticket-c", ExpectedVersion::Any, 1);

        let batch = [
            &a1,
            &b_wrong,
            &a2,
            &a1_again,
            &a_stale,
            &duplicate_event,
            &c,
        ];
        let written = write_batch(&conn, &[], batch.map(|r| (r, &[][..]))).unwrap();
        let outcomes = written.outcomes;
        let committed = |i: usize| match &outcomes[i] {
            Ok(AppendOutcome::Committed(c)) => (c.version, c.position),
            other => panic!("append {i}: expected Committed, got {other:?}"),
        };
        assert_eq!(committed(0), (2, 2));
        assert!(matches!(
            outcomes[1],
            Err(Error::WrongExpectedVersion { actual: 0, .. })
        ));
        assert_eq!(committed(2), (3, 3));
        assert_eq!(
            outcomes[3].as_ref().unwrap(),
            &AppendOutcome::Duplicate(Committed {
                stream: "ticket-a".into(),
                version: 2,
                position: 2,
                events: vec!["thing_happened_0".into(), "thing_happened_1".into()],
            })
        );
        assert!(matches!(
            outcomes[4],
            Err(Error::WrongExpectedVersion { actual: 3, .. })
        ));
        assert!(
            matches!(&outcomes[5], Err(Error::InvalidAppend(m)) if m.contains("already stored")),
            "{:?}",
            outcomes[5]
        );
        // The failed append's first event was inserted before its second failed: the savepoint
        // undid it, so c lands right after a2.
        assert_eq!(committed(6), (1, 4));
        assert_eq!(written.head, 4);
        assert!(conn.is_autocommit(), "the batch transaction is closed");

        let positions: Vec<(i64, String, i64)> = conn
            .prepare("SELECT position, stream, version FROM events ORDER BY position")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            positions,
            vec![
                (1, "ticket-a".into(), 1),
                (2, "ticket-a".into(), 2),
                (3, "ticket-a".into(), 3),
                (4, "ticket-c".into(), 1),
            ]
        );
        let commands: i64 = conn
            .query_row("SELECT COUNT(*) FROM commands", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            commands, 3,
            "only committed appends record their command id"
        );
    }

    #[test]
    fn reopening_keeps_the_schema_and_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let (conn, _) = open_writer(&path).unwrap();
        write_batch(
            &conn,
            &[],
            [(&request("ticket-a", ExpectedVersion::Any, 3), &[][..])],
        )
        .unwrap();
        drop(conn);
        let (conn, head) = open_writer(&path).unwrap();
        assert_eq!(head, 3);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(open_writer(&path), Err(Error::Unavailable(m)) if m.contains("newer")));
    }
}
