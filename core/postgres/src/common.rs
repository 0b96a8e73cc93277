//! What the modules of the PostgreSQL log share: its limits and options, the state its
//! writer, listener and appends share ([`Shared`], [`Pending`]), the conversions and error
//! mapping of every query, and the pool's retried statement (`on_connection`). A leaf: it
//! imports none of the crate's other modules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use closeloop_log::*;

/// The schema used when neither the URL nor the caller names one.
pub const DEFAULT_SCHEMA: &str = "closeloop";
/// Most appends one group-commit transaction carries.
pub const BATCH_APPENDS_MAX: usize = 512;
/// Most events one group-commit transaction carries.
pub const BATCH_EVENTS_MAX: usize = 8_192;
/// Default longest wait of the writer for appends about to arrive (`batch_wait_us`).
pub const BATCH_WAIT_US: u64 = 500;
/// Most appends waiting for the writer; `append` waits for room beyond that (backpressure).
pub const QUEUE_APPENDS_MAX: usize = 4_096;
/// How often a waiting tail re-reads the head, in case a notification was missed.
pub const WAIT_RECHECK_MS: u64 = 1_000;
/// Longest schema name: the notification channel `<schema>_head` must fit in 63 bytes.
pub const SCHEMA_NAME_MAX: usize = 48;
/// Most stream heads the writer caches; beyond that the cache starts over.
pub(crate) const STREAM_CACHE_MAX: usize = 100_000;
/// How many times a batch is retried after transient server errors before giving up.
pub(crate) const TRANSIENT_RETRIES_MAX: u32 = 5;
/// Batches run on the slow path after a fast-path guard failed (other writers are active).
pub(crate) const CONTENDED_BATCHES: u32 = 16;
/// First key of the migration advisory lock ("ClLp"); the second is the schema name's hash.
pub(crate) const MIGRATE_LOCK_KEY: i32 = 0x436c_4c70;
/// Server-side limit on an idle transaction of the writer: a writer that vanished mid-batch
/// (network partition) must not hold the log's lock for long.
pub(crate) const WRITER_IDLE_IN_TRANSACTION_MS: u64 = 10_000;
/// Longest an append waits for a lock (the head's row, above all) before it fails as
/// `Unavailable` and appends nothing: a stalled head must not hold appends whose callers
/// have given up, to commit them all once it is released.
pub(crate) const WRITER_LOCK_TIMEOUT_MS: u64 = 2_000;

pub(crate) const EVENT_COLUMNS: &str =
    "position, stream, version, event_id, type, schema_version, data, metadata, hash";

/// How a [`PostgresLog`] is set up; [`Default`] gives the production values.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The PostgreSQL schema holding the log: `[a-z_][a-z0-9_]*`, at most
    /// [`SCHEMA_NAME_MAX`] bytes.
    pub schema: String,
    /// `application_name` of every connection (visible in `pg_stat_activity`); `None` keeps
    /// the URL's, or `closeloop`.
    pub application_name: Option<String>,
    /// Most appends per group-commit transaction (at most [`BATCH_APPENDS_MAX`]).
    pub batch_appends_max: usize,
    /// Most events per group-commit transaction (at most [`BATCH_EVENTS_MAX`]).
    pub batch_events_max: usize,
    /// Longest the writer waits for more appends when fewer are queued than were
    /// outstanding around its last commit (their senders, just answered, are about to send
    /// again). 0 never waits: only what is already queued goes into a batch.
    pub batch_wait_us: u64,
    /// Appends queued for the writer before `append` waits.
    pub queue_appends_max: usize,
    /// Connections for reads.
    pub pool_size: usize,
    /// How long the writer tries to reconnect before failing the appends it holds with
    /// [`Error::Unavailable`].
    pub reconnect_timeout_ms: u64,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: DEFAULT_SCHEMA.to_owned(),
            application_name: None,
            batch_appends_max: BATCH_APPENDS_MAX,
            batch_events_max: BATCH_EVENTS_MAX,
            batch_wait_us: BATCH_WAIT_US,
            queue_appends_max: QUEUE_APPENDS_MAX,
            pool_size: 8,
            reconnect_timeout_ms: 30_000,
        }
    }
}

/// Counters of the writer task, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches handled (committed or not).
    pub batches: u64,
    /// Appends answered.
    pub appends: u64,
    /// Appends written by their caller's own task (see "Direct appends" in the crate doc).
    pub direct_appends: u64,
    /// Batches committed in one round trip against the cached heads.
    pub fast_commits: u64,
    /// Batches committed after reading the heads under the lock.
    pub slow_commits: u64,
    /// Fast-path writes whose guard failed (another process wrote since, a command id was
    /// a retry, or an uncached stream existed): nothing written, the slow path followed.
    pub guard_misses: u64,
    /// Writer connections opened: the writer thread's and the direct one at start, and
    /// every reconnection.
    pub connects: u64,
    /// Writer connections opened again after one was lost (or dropped, by an abandoned
    /// direct append).
    pub reconnects: u64,
    /// Appends in flight now: taken by `append` and not yet answered or given up by their
    /// callers. 0 whenever the log is idle.
    pub outstanding: usize,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) direct_appends: AtomicU64,
    pub(crate) fast_commits: AtomicU64,
    pub(crate) slow_commits: AtomicU64,
    pub(crate) guard_misses: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub schema: String,
    /// The migrations applied by this run, oldest first (empty when up to date).
    pub applied: Vec<(u32, &'static str)>,
    /// The schema's version afterwards.
    pub version: u32,
}

/// State shared by the log, its writer and its listener.
pub(crate) struct Shared {
    /// The highest head known to be committed (and so visible).
    pub(crate) head: watch::Sender<Position>,
    /// Appends sent to the writer and not answered yet.
    pub(crate) outstanding: AtomicUsize,
    /// `outstanding` when the last batch was answered (that batch included): 1 when its
    /// append was alone, so that the next one may be direct.
    pub(crate) outstanding_at_answer: AtomicUsize,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn publish_head(&self, head: Position) {
        self.head.send_if_modified(|known| {
            let newer = head > *known;
            if newer {
                *known = head;
            }
            newer
        });
    }
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One append waiting for the writer.
pub(crate) struct Pending {
    pub(crate) request: AppendRequest,
    pub(crate) reply: oneshot::Sender<Result<AppendOutcome, Error>>,
    /// Where a write that lost its connection put this append's last event, had it
    /// committed: finding the command at exactly that position proves it did.
    pub(crate) lost_at: Option<Position>,
    /// Uncounts the append from `Shared::outstanding` when it goes.
    pub(crate) counted: Counted,
}

/// One append's place in `Shared::outstanding`, held by its [`Pending`]: the append stops
/// counting when its `Pending` is answered or dropped unanswered, whichever way it goes: its
/// caller gave up while it waited for room in the queue or for the writer's state, or in the
/// middle of its direct turn. One mechanism, so no path can leave an append counted for ever
/// (which would turn direct appends off and make every batch wait for one more append).
pub(crate) struct Counted(pub(crate) Arc<Shared>);

impl Counted {
    /// Counts one more append; also returns how many were in flight before it.
    pub(crate) fn count(shared: &Arc<Shared>) -> (usize, Counted) {
        let before = shared.outstanding.fetch_add(1, Ordering::Relaxed);
        (before, Counted(shared.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A command found in the log.
pub(crate) struct KnownCommand {
    pub(crate) committed: Committed,
}

/// Rejects what PostgreSQL cannot store, before any work (and before it could fail a batch).
pub(crate) fn check_storable(request: &AppendRequest) -> Result<(), Error> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    let nul = |what: &str| {
        Err(Error::InvalidAppend(format!(
            "{what} contains U+0000, which PostgreSQL cannot store"
        )))
    };
    if request.stream.contains('\0') {
        return nul("the stream name");
    }
    for event in &request.events {
        if event.event_type.contains('\0') {
            return nul("an event type");
        }
        if event.metadata.actor.id.contains('\0') {
            return nul("the actor id");
        }
        if has_nul(&event.data) {
            return nul("event data");
        }
        if event.schema_version > i32::MAX as u32 {
            return Err(Error::InvalidAppend(format!(
                "schema version {} is out of range",
                event.schema_version
            )));
        }
    }
    Ok(())
}

pub(crate) fn is_connection_error(error: &tokio_postgres::Error, client_closed: bool) -> bool {
    if client_closed || error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let class = &code.code()[..2];
            (class == "08" || class == "57") && *code != SqlState::QUERY_CANCELED
        }
        // No SQLSTATE: IO, protocol or timeout trouble on the wire.
        None => {
            let mut source = std::error::Error::source(error);
            while let Some(inner) = source {
                if inner.is::<std::io::Error>() {
                    return true;
                }
                source = inner.source();
            }
            false
        }
    }
}

pub(crate) fn is_transient(code: &SqlState) -> bool {
    let class = &code.code()[..2];
    class == "40" || class == "53" || class == "55" || *code == SqlState::QUERY_CANCELED
}

pub(crate) fn unavailable(what: &str, error: &tokio_postgres::Error) -> Error {
    Error::Unavailable(format!("{what}: {}", describe(error)))
}

/// A PostgreSQL error the log does not classify, as [`Error::Backend`].
pub(crate) fn pg(error: tokio_postgres::Error) -> Error {
    Error::backend("postgres", error)
}

/// A query bound: beyond any stored value is as good as `i64::MAX`.
pub(crate) fn saturate_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An error with its cause: tokio-postgres's own message is only its kind ("db error").
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    }
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).expect("positions and versions fit in a bigint")
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("negative {what} {value}")))
}

pub(crate) fn decode_event(row: &Row) -> Result<StoredEvent, Error> {
    let position = to_u64(row.try_get(0).map_err(pg)?, "position")?;
    let metadata: Value = row.try_get(7).map_err(pg)?;
    let metadata = serde_json::from_value(metadata).map_err(|e| {
        Error::Corrupt(format!("metadata of the event at position {position}: {e}"))
    })?;
    let schema_version: i32 = row.try_get(5).map_err(pg)?;
    Ok(StoredEvent {
        position,
        stream: row.try_get(1).map_err(pg)?,
        version: to_u64(row.try_get(2).map_err(pg)?, "version")?,
        event_id: row.try_get(3).map_err(pg)?,
        event_type: row.try_get(4).map_err(pg)?,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            Error::Corrupt(format!(
                "schema version {schema_version} at position {position}"
            ))
        })?,
        data: row.try_get(6).map_err(pg)?,
        metadata,
        hash: row.try_get(8).map_err(pg)?,
    })
}

/// Rows of the `commands` query (ordered by command id, then position) as outcomes.
pub(crate) fn decode_commands(rows: &[Row]) -> Result<HashMap<Uuid, KnownCommand>, Error> {
    let mut found: HashMap<Uuid, KnownCommand> = HashMap::new();
    for row in rows {
        let command_id: Uuid = row.try_get(0).map_err(pg)?;
        let stream: String = row.try_get(1).map_err(pg)?;
        let version = to_u64(row.try_get(2).map_err(pg)?, "version")?;
        let position = to_u64(row.try_get(3).map_err(pg)?, "position")?;
        let event_type: String = row.try_get(4).map_err(pg)?;
        let entry = found.entry(command_id).or_insert_with(|| KnownCommand {
            committed: Committed {
                stream: stream.clone(),
                version,
                position,
                events: Vec::new(),
            },
        });
        entry.committed.stream = stream;
        entry.committed.version = version;
        entry.committed.position = position;
        entry.committed.events.push(event_type);
    }
    Ok(found)
}

/// Runs `run` with a pooled connection and `sql` prepared on it, retrying once on a lost
/// connection.
pub(crate) async fn on_connection<T, F, Fut>(
    pool: &Pool,
    sql: &str,
    run: F,
) -> Result<(deadpool_postgres::Object, T), Error>
where
    F: Fn(deadpool_postgres::Object, Statement) -> Fut,
    Fut:
        std::future::Future<Output = (deadpool_postgres::Object, Result<T, tokio_postgres::Error>)>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let client = pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("no PostgreSQL connection: {e}")))?;
        let (client, result) = match client.prepare_cached(sql).await {
            Ok(statement) => run(client, statement).await,
            Err(e) => (client, Err(e)),
        };
        match result {
            Ok(value) => return Ok((client, value)),
            Err(e) if is_connection_error(&e, client.is_closed()) => {
                if attempt >= 2 {
                    return Err(unavailable("lost the PostgreSQL connection", &e));
                }
            }
            Err(e) => return Err(pg(e)),
        }
    }
}
