//! closeloop-postgres: the PostgreSQL event log (an `EventLog` of `closeloop-log`): several `closeloop` processes on one database, with no code
//! change (`--store postgres://USER@HOST/DB[?schema=NAME]`).
//!
//! This doc is the design (the schema, the gap-free ordering argument, group commit, direct
//! appends, tails); the code is split by job:
//! - `lib.rs`: [`PostgresLog`] (connecting, its [`EventLog`] implementation, reads with a
//!   retry on a lost connection), its options and statistics, and small helpers;
//! - `statements.rs`: the SQL text of one schema;
//! - `planner.rs`: the pure planner that decides a batch in memory;
//! - `writer.rs`: the writer task and its group commit; `direct.rs`: direct appends;
//! - `listen.rs`: the `LISTEN` connection that wakes `wait_beyond`;
//! - `migrate.rs`: creating and upgrading the schema;
//! - `url.rs`: store URLs, schema names and connection settings;
//! - `scan.rs`: the streaming range scan replay reads.
//!
//! # Layout
//!
//! Everything lives in one PostgreSQL schema (default `closeloop`; the URL's `schema` query
//! parameter or [`PostgresLog::connect_with_schema`] picks another, which is how every test
//! gets its own). The versioned SQL is `schemas/sql/postgres/NNNN_*.sql`, embedded in
//! `closeloop-schemas` ([`closeloop_schemas::POSTGRES_MIGRATIONS`]):
//!
//! | object | what it holds |
//! |---|---|
//! | `log_head` | one row: the position of the last committed event; its row lock orders appends |
//! | `events` | `position` (primary key), `stream`, `version` (unique per stream), `event_id`, `type`, `schema_version`, `data` and `metadata` (jsonb), `hash` (hex) |
//! | `commands` | one row per append: `command_id` (primary key), `first_position`, `last_position` |
//! | `log_identity` | one row: the log's identity (`log_id`, a UUID v4 drawn by migration 0002), immutable |
//! | `schema_migrations` | the applied migration versions |
//!
//! Indexes: `events (position)` serves position scans (`read_all`), `events (stream,
//! version)` serves stream reads and the stream-head lookup of each append, `commands
//! (command_id)` serves idempotency. Nothing else: each index is paid on every append.
//!
//! [`PostgresLog::migrate`] (the `closeloop migrate` subcommand) creates or upgrades the
//! schema: one transaction under a transaction-scoped advisory lock keyed by the schema name,
//! so several processes may run it at once; it applies the migrations newer than the highest
//! version in `schema_migrations`. [`PostgresLog::connect`] runs it only when the schema is
//! missing or behind, so `closeloop demo --store postgres://...` just works.
//!
//! # Read-only views for analysts
//!
//! Plain SQL over the log (`SELECT ... FROM closeloop.ticket_events WHERE ...`); grant an
//! analyst `USAGE` on the schema and `SELECT` on these views only. Writes through them reach
//! the `events` table and are rejected by its triggers.
//!
//! | view | columns |
//! |---|---|
//! | `event_log` | `position`, `stream`, `category`, `version`, `event_id`, `type`, `schema_version`, `occurred_at`, `recorded_at` (timestamptz), `actor_id`, `actor_role`, `command_id`, `correlation_id`, `causation_id` (uuid), `data` (jsonb), `hash`, `occurred_at_hashed`, `recorded_at_hashed` (text: the exact hashed times), `metadata` (jsonb) |
//! | `ticket_events` | `position`, `ticket_id`, `version`, `event_id`, `type`, `occurred_at`, `recorded_at`, `actor_id`, `actor_role`, `command_id`, `data`: the events of `ticket-<id>` streams |
//! | `streams` | `stream`, `category`, `version`, `events`, `first_position`, `last_position`, `first_recorded_at`, `last_recorded_at`: one row per stream |
//!
//! # Global order without gaps
//!
//! Positions are not a sequence (a sequence hands out numbers at insert time; transactions
//! then commit in any order, and a rolled-back one leaves a hole). Instead, every append
//! transaction takes the row lock of the one-row `log_head` table *before it reads
//! anything*, reads the head position p under that lock, inserts its events at p+1.., sets
//! the head to its last position, and commits. The lock is held until the transaction ends.
//!
//! Why it is correct:
//! - *Commit order is position order.* Only the lock holder assigns positions, and it
//!   commits before the next holder can read the head; so transactions commit one at a
//!   time, each taking the positions right after its predecessor's.
//! - *No gaps.* A transaction that rolls back (failure, lost connection, crash) undoes its
//!   head update together with its rows: the next holder reads the old head and reuses the
//!   same positions. Nothing is ever "skipped" and no timeout is involved.
//! - *A reader that saw p never later finds an event at or below p.* PostgreSQL makes a
//!   committing transaction visible (`ProcArrayEndTransaction`) before it releases its locks
//!   (`LockReleaseAll`, later in `CommitTransaction`). So when transaction T gets the lock,
//!   every transaction holding lower positions is already visible to every new snapshot, and
//!   any snapshot that includes T includes them too. The committed positions in any snapshot
//!   are therefore exactly 1..=head: a reader's `position > p` scan can only ever see new
//!   events above everything it saw before.
//! - *Why lock first rather than last.* With the lock taken first, everything the
//!   transaction reads afterwards (stream heads, known command ids) is exact: every append
//!   writes only while it holds the lock, and Read Committed gives each later statement a
//!   snapshot that includes the previous holder. So the expected-version and idempotency
//!   checks are decided in memory with no possible conflict later, and an append whose
//!   connection was lost can be resolved safely (below). Taking it last would shorten the
//!   critical section by one round trip but needs positions before the lock is held, so it
//!   would need a second write or optimistic re-validation of every read.
//!
//! What limits it: one append transaction at a time holds the counter, across all
//! processes; the log's write rate is (events per transaction) / (lock hold time), and the
//! hold time includes the commit's WAL flush. Group commit is what makes that fast enough:
//! each process sends all the appends waiting in it as one transaction, so one lock
//! acquisition and one WAL flush serve hundreds of appends, and batches grow by themselves
//! when load grows (while a batch commits, the next one queues up). Every writer has its
//! own connection and PostgreSQL flushes WAL for whoever holds the lock, so several
//! processes share the ceiling instead of multiplying it; they stay correct.
//!
//! # Group commit
//!
//! Each [`PostgresLog`] has one writer task with its own connection; the two run on a
//! current-thread runtime on a thread of their own (`closeloop-pg-writer`). `append` sends its
//! request and a oneshot reply over a bounded queue ([`QUEUE_APPENDS_MAX`]); the writer takes
//! the first request, drains whatever else is already queued (at most
//! [`BATCH_APPENDS_MAX`] appends and [`BATCH_EVENTS_MAX`] events) and commits the batch as
//! one transaction. Batches grow by themselves while the previous one commits; and since the
//! appenders just answered are about to send again, the writer waits a little for them
//! (at most `batch_wait_us`, [`BATCH_WAIT_US`] by default) when fewer appends are queued
//! than were outstanding around its last commit. Without that wait, N busy appenders split
//! into two cohorts that alternate, each paying its own commit; a lone appender never
//! waits. Each batch goes as follows:
//!
//! 1. Decide in memory, request by request in queue order: a command id already in the log
//!    answers `Duplicate`; otherwise the stream's head (version and hash, taking earlier
//!    requests of the same batch into account) is checked against the expected version; a
//!    failing request is answered with its own error and simply not written, so it cannot
//!    fail its neighbours, and no SAVEPOINT is needed (a savepoint per request would cost a
//!    round trip each, and beyond 64 subtransactions every snapshot in the server slows
//!    down). Accepted requests are sealed (`seal`: versions, positions, hash chain).
//! 2. Write all accepted requests with one statement: a data-modifying CTE that moves
//!    `log_head` from the head the batch was planned on to its new head *only if the head is
//!    still there*, inserts every event with `unnest` over column arrays (plain scalars for a
//!    batch of one event: cheaper for the server), inserts the command rows and
//!    `pg_notify`s the new head; then COMMIT and answer. Each statement has a plain form
//!    and a guarded one (below); the plain one serves every batch that writes all its
//!    requests, which is nearly all of them.
//!
//! The fast path does it in one round trip: the writer caches the log head and the stream
//! heads it has seen (exact as long as nobody else wrote since), plans the batch against
//! the cache, taking streams it has not seen as new and command ids as unknown, and sends the
//! statement alone (autocommit; the reply comes after the commit). What the cache cannot
//! know is checked by the statement: a command id or a new stream's version 1 that exists
//! fails a unique index, and for the requests it does not write (a failed check may be a
//! duplicate, or a stream taken as new may exist) the guarded form's `NOT EXISTS` guards
//! make it write nothing. (A batch that writes all its requests has nothing to guard, and
//! sends the plain form: the guards' plan nodes, set up at every execution even for empty
//! arrays, cost the server about a tenth of a lone append.) The guards are evaluated before
//! the statement gets the row lock, but they
//! are exact whenever the head check passes: the head moves with every commit that writes
//! anything, so an unchanged head means nothing was committed since the cache was exact.
//! If it writes nothing (another process wrote, a command id is a retry, an uncached stream
//! exists), the slow path runs: `BEGIN; SELECT ... FOR UPDATE` on `log_head`, read the
//! batch's stream heads and known command ids (pipelined with the lock: one round trip),
//! plan, then the plain statement and COMMIT (pipelined: a second round trip). When
//! the head had moved, other processes are writing, and the writer stays on the slow path
//! for a few batches rather than pay a failed fast attempt each time.
//!
//! Faults. A statement that fails with the connection alive rolls back the batch: transient
//! errors (serialization, lock, resources) retry it; any other error replays the batch's
//! appends one by one so that only the guilty one fails. If the connection is lost, the
//! outcome is unknown: the writer reconnects (within `reconnect_timeout_ms`) and retries the
//! whole batch on the slow path, where each command id is looked up under the lock. An
//! append found exactly where the lost write put it was committed by that write and is
//! answered `Committed` (as the lost reply would have been); found elsewhere, it was there
//! before (`Duplicate`); not found, it is appended now. It is never doubled. A lost write is
//! either finished before the retry reads (it held the lock, or it was killed with its
//! backend), or it can still run later ("ghost": the server had not read it yet). A ghost is
//! harmless: a slow-path ghost holds the lock since its first round trip, so the retry waits
//! for it; a fast-path ghost is guarded by the head it was planned on, and the retry,
//! deciding the same appends against that same head, writes them and moves the head past
//! the guard (if anyone else wrote, the head has moved anyway). If reconnecting fails, the
//! caller gets [`Error::Unavailable`] and retries with the same command id, which answers
//! `Duplicate` if the lost write did commit. An acknowledged append was committed (the reply
//! follows the COMMIT's response; `synchronous_commit`, `on` by default, makes it durable),
//! so a PostgreSQL restart loses none.
//!
//! # Direct appends
//!
//! Handing a lone append to the writer thread and its answer back costs two wake-ups of
//! sleeping threads per append, each tens of microseconds on a virtual machine: a good part
//! of a single committer's round trip. So an append that finds nothing else in flight, after
//! a batch that was alone too, is written by its caller's own task: it takes the writer's
//! state (the same lock the writer thread holds for each batch: with nothing in flight, the
//! thread has nothing left to do with it and lets go of it at once after its last answer),
//! and runs the same batch path on a second connection, the *direct* one, opened by
//! [`PostgresLog::connect`] on its caller's runtime (and reopened, when lost, on the runtime
//! of the direct append that finds it lost), which drives it. Nothing else differs: the
//! cached heads, the plan, the statements and the fault handling are the writer's, so every
//! argument above holds; at most one batch is written at a time, by whichever holds the
//! state. Appends that arrive meanwhile queue for the writer thread, which waits for the
//! state; as soon as appends overlap, batches go through the thread again and group commit
//! takes over. A caller that gives up during its direct append (its future is dropped)
//! leaves that append in doubt: the direct connection is then dropped, which rolls back
//! whatever it had begun and releases the row lock, and the cached heads are forgotten, so
//! the next batch reads the truth under the lock; the append itself, if it committed, is
//! found by its command id on retry.
//!
//! Both choices rest on one count, the appends in flight (`outstanding`, in
//! [`WriterStats`]). Each append's request carries its place in it and gives it back when it
//! is answered or dropped unanswered, wherever that happens (waiting for room in the queue,
//! for the state, or midway through a direct turn), so a caller that gives up can never
//! leave an append counted for ever, which would turn direct appends off and make every
//! batch wait for an append that is not coming.
//!
//! # Immutability and hashes
//!
//! Triggers reject UPDATE, DELETE (row triggers) and TRUNCATE (statement trigger) on `events`
//! and `commands`, and DELETE and TRUNCATE on `log_head` (its UPDATE is every append's
//! lock; a row trigger checking that it only moves forward would double a lone append's
//! cost, so the writer's guard and privileges keep it). Hashes are computed by the shared
//! `seal`/`chain_hash` over `serde_json` values with sorted keys; jsonb keeps strings,
//! booleans, integers and decimal numbers exactly, so a stream read back verifies. Strings
//! with U+0000 cannot be stored in PostgreSQL and are rejected before any work.
//!
//! # Tails
//!
//! `wait_beyond` listens: a dedicated connection `LISTEN`s on `<schema>_head`, which every
//! append transaction notifies with its new head, so appends of other processes wake it
//! too; the writer also publishes its own commits directly. That connection is opened by the
//! first `wait_beyond`, so a process that only appends is not woken by every commit. As a
//! safety net for notifications missed while that connection reconnects, a waiter re-reads
//! the head every [`WAIT_RECHECK_MS`]. Reads use a `deadpool` pool and retry once on a lost
//! connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use postgres_types::ToSql;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use closeloop_log::*;

mod common;
mod direct;
mod keys;
mod listen;
mod migrate;
mod planner;
// The streaming read path of replay (`EventLog::scan`), over the log's pool.
mod scan;
mod statements;
mod url;
mod writer;

use common::*;
pub use common::{
    Migrated, PostgresOptions, WriterStats, BATCH_APPENDS_MAX, BATCH_EVENTS_MAX, BATCH_WAIT_US,
    DEFAULT_SCHEMA, QUEUE_APPENDS_MAX, SCHEMA_NAME_MAX, WAIT_RECHECK_MS,
};
use direct::*;
pub use keys::PostgresKeys;
use listen::*;
use migrate::*;
use planner::*;
pub use scan::SCAN_RANGE_POSITIONS;
use statements::*;
use url::*;
pub use url::{split_schema, Endpoint, SslMode};
use writer::*;

/// An event log in PostgreSQL. Cheap to share behind an `Arc`; all methods are concurrent.
pub struct PostgresLog {
    queue: mpsc::Sender<Pending>,
    /// The writer's state: its connections, cached heads and counters. The writer thread
    /// holds it for each batch; an append with nothing else in flight takes it for its own
    /// (see "Direct appends" in the crate doc).
    writer: Arc<tokio::sync::Mutex<Writer>>,
    pool: Pool,
    sql: Arc<Sql>,
    shared: Arc<Shared>,
    config: Endpoint,
    /// The LISTEN connection's task, started by the first `wait_beyond`: a process that
    /// only appends never pays for notifications.
    listener: tokio::sync::OnceCell<AbortOnDrop>,
    /// The customers' data keys, in the log's schema.
    keys: Arc<PostgresKeys>,
}

impl PostgresLog {
    /// Connects to `url` (`postgres://...`), in the schema named by its `schema` query
    /// parameter or [`DEFAULT_SCHEMA`]; creates or upgrades the schema if needed.
    pub async fn connect(url: &str) -> Result<PostgresLog, Error> {
        let (_, schema) = parse_url(url)?;
        let options = PostgresOptions {
            schema: schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
            ..PostgresOptions::default()
        };
        PostgresLog::connect_with(url, options).await
    }

    /// Like [`PostgresLog::connect`], but never creates the schema: [`Error::NoStore`] when
    /// it was never migrated (for commands that only read the log). A schema behind the
    /// latest migration is still upgraded, as `connect` does.
    pub async fn connect_existing(url: &str) -> Result<PostgresLog, Error> {
        let (config, schema) = parse_url(url)?;
        let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        check_schema_name(url, &schema)?;
        if schema_version(&config, &schema).await? == 0 {
            return Err(Error::NoStore(format!(
                "no event log in schema `{schema}` of {}: `closeloop migrate --store URL` \
                 creates it (so do `closeloop demo` and `closeloop submit`)",
                redact(url)
            )));
        }
        PostgresLog::connect(url).await
    }

    /// Connects with the log in `schema` (whatever the URL says).
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<PostgresLog, Error> {
        let options = PostgresOptions {
            schema: schema.to_owned(),
            ..PostgresOptions::default()
        };
        PostgresLog::connect_with(url, options).await
    }

    /// Connects with explicit options (`options.schema` wins over the URL's).
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresLog, Error> {
        check_schema_name(url, &options.schema)?;
        let (mut endpoint, _) = parse_url(url)?;
        let config = &mut endpoint.config;
        if let Some(name) = &options.application_name {
            config.application_name(name);
        } else if config.get_application_name().is_none() {
            config.application_name("closeloop");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if schema_version(&endpoint, &options.schema).await? < latest_migration() {
            migrate_config(&endpoint, &options.schema).await?;
        }

        let sql = Arc::new(Sql::new(&options.schema));
        let manager = Manager::from_config(
            endpoint.config.clone(),
            endpoint.tls(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| Error::Unavailable(format!("cannot build the connection pool: {e}")))?;
        let shared = Arc::new(Shared {
            head: watch::channel(0).0,
            outstanding: AtomicUsize::new(0),
            outstanding_at_answer: AtomicUsize::new(0),
            counters: Counters::default(),
        });

        let mut writer = Writer {
            config: writer_config(&endpoint),
            sql: sql.clone(),
            options: options.clone(),
            conn: None,
            direct: None,
            cache: HeadCache::default(),
            categories: CategoryHeads::default(),
            contended: 0,
            shared: shared.clone(),
            outstanding_seen: 0,
            sent: Vec::new(),
        };
        // The direct connection first, here on the caller's runtime, which is the one its
        // direct appends will run on (see "Direct appends" in the crate doc).
        writer
            .connect()
            .await
            .map_err(|e| unavailable("cannot open the writer connection", &e))?;
        writer.direct = writer.conn.take();
        let (queue, rx) = mpsc::channel(options.queue_appends_max.max(1));
        // The writer and its connection run on a runtime of their own, on one thread: the
        // hand-offs between them (a query out, its result back, for every batch) are then
        // plain task switches on that thread rather than wake-ups of other worker threads,
        // which cost a lone committer a good part of its round trip.
        let (ready, connected) = oneshot::channel();
        std::thread::Builder::new()
            .name("closeloop-pg-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(Error::Unavailable(format!(
                            "cannot start the PostgreSQL writer's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match writer.connect().await {
                        Ok(()) => {
                            let options = writer.options.clone();
                            let state = Arc::new(tokio::sync::Mutex::new(writer));
                            let _ = ready.send(Ok(state.clone()));
                            Writer::run(state, &options, rx).await;
                        }
                        Err(e) => {
                            let _ = ready
                                .send(Err(unavailable("cannot open the writer connection", &e)));
                        }
                    }
                });
            })
            .map_err(|e| Error::Unavailable(format!("cannot start the PostgreSQL writer: {e}")))?;
        let writer = connected.await.map_err(|_| {
            Error::Unavailable("the PostgreSQL writer stopped while connecting".into())
        })??;

        let log = PostgresLog {
            keys: Arc::new(PostgresKeys::new(pool.clone(), &options.schema)),
            queue,
            writer,
            pool,
            sql,
            shared,
            config: endpoint,
            listener: tokio::sync::OnceCell::new(),
        };
        let head = log.head().await?;
        log.shared.publish_head(head);
        Ok(log)
    }

    /// Creates or upgrades the schema named by the URL (`schema` parameter, else
    /// [`DEFAULT_SCHEMA`]). Safe to run from several processes at once.
    pub async fn migrate(url: &str) -> Result<Migrated, Error> {
        let (config, schema) = parse_url(url)?;
        let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        check_schema_name(url, &schema)?;
        migrate_config(&config, &schema).await
    }

    /// Creates or upgrades `schema`.
    pub async fn migrate_schema(url: &str, schema: &str) -> Result<Migrated, Error> {
        check_schema_name(url, schema)?;
        let (config, _) = parse_url(url)?;
        migrate_config(&config, schema).await
    }

    /// The PostgreSQL schema holding this log.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            batches: c.batches.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            direct_appends: c.direct_appends.load(Ordering::Relaxed),
            fast_commits: c.fast_commits.load(Ordering::Relaxed),
            slow_commits: c.slow_commits.load(Ordering::Relaxed),
            guard_misses: c.guard_misses.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            outstanding: self.shared.outstanding.load(Ordering::Relaxed),
        }
    }

    /// Starts the listener once, and waits until it listens.
    async fn listen(&self) -> Result<(), Error> {
        self.listener
            .get_or_try_init(|| async {
                let (ready_tx, ready_rx) = oneshot::channel();
                let task = AbortOnDrop(tokio::spawn(listen(
                    self.config.clone(),
                    self.sql.clone(),
                    self.shared.clone(),
                    ready_tx,
                )));
                match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
                    Ok(Ok(Ok(()))) => Ok(task),
                    Ok(Ok(Err(e))) => Err(unavailable("cannot listen for new events", &e)),
                    _ => Err(Error::Unavailable(
                        "the event listener did not start".into(),
                    )),
                }
            })
            .await
            .map(|_| ())
    }

    /// Runs one read query on a pooled connection (see [`PostgresLog::on_connection`]).
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let (_, rows) = self
            .on_connection(sql, |client, statement| async move {
                let rows = client.query(&statement, params).await;
                (client, rows)
            })
            .await?;
        Ok(rows)
    }

    /// Runs `run` with `sql` prepared on a pooled connection, and once more on another if
    /// that one turns out to be lost (a pooled connection can die between two uses: a
    /// server restart, a terminated backend). Gives the connection back with the result,
    /// for results that go on reading from it (a scan's row stream).
    pub(crate) async fn on_connection<T, F, Fut>(
        &self,
        sql: &str,
        run: F,
    ) -> Result<(deadpool_postgres::Object, T), Error>
    where
        F: Fn(deadpool_postgres::Object, Statement) -> Fut,
        Fut: std::future::Future<
            Output = (deadpool_postgres::Object, Result<T, tokio_postgres::Error>),
        >,
    {
        on_connection(&self.pool, sql, run).await
    }
}

#[async_trait]
impl EventLog for PostgresLog {
    fn keys(&self) -> Arc<dyn KeyStore> {
        self.keys.clone()
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        check_request(&request)?;
        check_storable(&request)?;
        let (reply, answer) = oneshot::channel();
        let (in_flight, counted) = Counted::count(&self.shared);
        let pending = Pending {
            request,
            reply,
            lost_at: None,
            counted,
        };
        if in_flight == 0 && self.shared.outstanding_at_answer.load(Ordering::Relaxed) <= 1 {
            // Nothing in flight: the writer thread, if it holds the state, is only finishing
            // the batch it has just answered.
            let writer = self.writer.lock().await;
            return append_direct(writer, pending, answer).await;
        }
        if self.queue.send(pending).await.is_err() {
            return Err(Error::Unavailable(
                "the PostgreSQL writer has stopped".into(),
            ));
        }
        answer.await.map_err(|_| {
            Error::Unavailable(
                "the PostgreSQL writer stopped during this append: its outcome is unknown; \
                 retry with the same command id"
                    .into(),
            )
        })?
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        let after = saturate_i64(after_version);
        let rows = self
            .query(&self.sql.read_stream, &[&stream, &after])
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let after = saturate_i64(after_version);
        let limit = limit.min(READ_BATCH_MAX) as i64;
        let rows = self
            .query(&self.sql.read_stream_page, &[&stream, &after, &limit])
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let limit = limit.min(READ_BATCH_MAX) as i64;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = saturate_i64(after);
        let rows = match filter {
            Filter::All => self.query(&self.sql.read_all, &[&after, &limit]).await?,
            Filter::Categories(categories) => {
                self.query(&self.sql.read_all_filtered, &[&after, &limit, &categories])
                    .await?
            }
        };
        rows.iter().map(decode_event).collect()
    }

    async fn head(&self) -> Result<Position, Error> {
        let rows = self.query(&self.sql.head, &[]).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::Corrupt("the log_head row is missing".into()))?;
        let head = to_u64(row.try_get::<_, i64>(0).map_err(pg)?, "log head")?;
        self.shared.publish_head(head);
        Ok(head)
    }

    async fn wait_beyond(&self, after: Position, max_wait: Duration) -> Result<Position, Error> {
        let mut known = self.shared.head.subscribe();
        let current = *known.borrow_and_update();
        if current > after {
            return Ok(current);
        }
        let deadline = Instant::now() + max_wait;
        // Listening before reading the head: a commit after the read is notified.
        self.listen().await?;
        let mut head = self.head().await?;
        while head <= after {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let slice = (deadline - now).min(Duration::from_millis(WAIT_RECHECK_MS));
            let woke = tokio::time::timeout(slice, known.wait_for(|h| *h > after))
                .await
                .map(|seen| seen.map(|h| *h));
            match woke {
                Ok(Ok(h)) => return Ok(h),
                // The log is being dropped: nothing more will come from it.
                Ok(Err(_)) => break,
                // A slice passed without a notification: ask the database itself.
                Err(_) => head = self.head().await?,
            }
        }
        Ok(head)
    }

    fn scan<'a>(
        &'a self,
        after: Position,
        end: Position,
        filter: Filter<'a>,
        batch_events: usize,
    ) -> closeloop_log::Scan<'a> {
        scan::scan(&self.pool, self.schema(), after, end, filter, batch_events)
    }

    async fn log_id(&self) -> Result<Uuid, Error> {
        let rows = self.query(&self.sql.log_id, &[]).await?;
        let row = rows.first().ok_or_else(|| {
            Error::Corrupt("the log has no identity: its log_identity row is missing".into())
        })?;
        row.try_get::<_, Uuid>(0).map_err(pg)
    }

    async fn command_records(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, Error> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = limit.min(READ_BATCH_MAX) as i64;
        let rows = self
            .query(&self.sql.command_records, &[&after, &limit])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(CommandRecord {
                    command_id: row.try_get(0).map_err(pg)?,
                    first_position: to_u64(row.try_get(1).map_err(pg)?, "first_position")?,
                    last_position: to_u64(row.try_get(2).map_err(pg)?, "last_position")?,
                })
            })
            .collect()
    }

    async fn find_command(&self, command_id: Uuid) -> Result<Option<Committed>, Error> {
        let ids = vec![command_id];
        let rows = self.query(&self.sql.commands, &[&ids]).await?;
        let mut found = decode_commands(&rows)?;
        Ok(found.remove(&command_id).map(|known| known.committed))
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_ours_and_the_rest_goes_to_postgres() {
        let (config, schema) =
            parse_url("postgres://u:secret@h:5433/db?schema=cl_a&application_name=x").unwrap();
        assert_eq!(schema.as_deref(), Some("cl_a"));
        assert_eq!(config.config.get_application_name(), Some("x"));
        assert_eq!(config.config.get_ports(), &[5433]);
        let (_, none) = parse_url("postgres://u@h/db").unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn sslmode_is_plain_or_verified_and_its_files_are_checked() {
        let mode = |url: &str| parse_url(url).map(|(e, _)| e.ssl);
        for plain in ["", "?sslmode=disable", "?sslmode=allow", "?sslmode=prefer"] {
            assert_eq!(
                mode(&format!("postgres://u@h/db{plain}")).unwrap(),
                SslMode::Plain
            );
        }
        for verified in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://u@h/db?sslmode={verified}&schema=s");
            let (endpoint, schema) = parse_url(&url).unwrap();
            assert_eq!(endpoint.ssl, SslMode::Verified);
            assert_eq!(
                endpoint.config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
            assert_eq!(schema.as_deref(), Some("s"));
        }
        let refused = |url: &str| match parse_url(url) {
            Err(Error::UnsupportedStore(why)) => why,
            other => panic!("{url}: {other:?}"),
        };
        assert!(refused("postgres://u@h/db?sslmode=maybe").contains("sslmode `maybe`"));
        let missing = refused("postgres://u:pw@h/db?sslmode=require&sslrootcert=%2Fno%2Fca.pem");
        assert!(missing.contains("sslrootcert `/no/ca.pem`"), "{missing}");
        assert!(
            !missing.contains("pw"),
            "the password is redacted: {missing}"
        );
        let alone = refused("postgres://u@h/db?sslmode=require&sslcert=/c.pem");
        assert!(alone.contains("sslcert and sslkey go together"), "{alone}");
    }

    #[test]
    fn the_writer_limits_idle_transactions_and_keeps_the_users_options() {
        let limit = "-c idle_in_transaction_session_timeout=10000 -c lock_timeout=2000";
        let (plain, _) = parse_url("postgres://u@h/db").unwrap();
        assert_eq!(writer_config(&plain).config.get_options(), Some(limit));
        let (theirs, _) = parse_url("postgres://u@h/db?options=-c%20work_mem%3D8MB").unwrap();
        assert_eq!(
            writer_config(&theirs).config.get_options(),
            Some(format!("-c work_mem=8MB {limit}").as_str())
        );
    }

    #[test]
    fn schema_names_are_checked_and_urls_redacted() {
        assert!(check_schema_name("postgres://h/db", "closeloop").is_ok());
        assert!(check_schema_name("postgres://h/db", "cl_test_0123abcd").is_ok());
        for bad in ["", "Closeloop", "a-b", "a\"b", "pg_x", &"x".repeat(49)] {
            assert!(check_schema_name("postgres://h/db", bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact("postgres://me:pw@h/db"),
            "postgres://me:***@h/db".to_owned()
        );
    }

    #[test]
    fn the_migrations_are_contiguous_from_one() {
        for (i, (version, _, sql)) in closeloop_schemas::POSTGRES_MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(
                !sql.contains("closeloop."),
                "migrations name objects unqualified"
            );
        }
    }
}
