//! closeloop-postgres: the PostgreSQL event log (an `EventLog` of `closeloop-log`): several `closeloop` processes on one database, with no code
//! change (`--store postgres://USER@HOST/DB[?schema=NAME]`).
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
//! | `event_log` | `position`, `stream`, `category`, `version`, `event_id`, `type`, `schema_version`, `occurred_at`, `recorded_at` (timestamptz), `actor_id`, `actor_role`, `command_id`, `correlation_id`, `causation_id` (uuid), `data` (jsonb), `hash` |
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

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use jiff::Timestamp;
use postgres_types::{Json, ToSql};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement};
use uuid::Uuid;

use closeloop_log::*;

// The streaming read path of replay (`PostgresLog::scan`); a child module, for the pool.
mod scan;
pub use scan::{Scan, ScannedRow};

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
const STREAM_CACHE_MAX: usize = 100_000;
/// How many times a batch is retried after transient server errors before giving up.
const TRANSIENT_RETRIES_MAX: u32 = 5;
/// Batches run on the slow path after a fast-path guard failed (other writers are active).
const CONTENDED_BATCHES: u32 = 16;
/// First key of the migration advisory lock ("ClLp"); the second is the schema name's hash.
const MIGRATE_LOCK_KEY: i32 = 0x436c_4c70;
/// Server-side limit on an idle transaction of the writer: a writer that vanished mid-batch
/// (network partition) must not hold the log's lock for long.
const WRITER_IDLE_IN_TRANSACTION_MS: u64 = 10_000;

const EVENT_COLUMNS: &str =
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
    /// Appends written by their caller's own task (see "Direct appends" in the module doc).
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
struct Counters {
    batches: AtomicU64,
    appends: AtomicU64,
    direct_appends: AtomicU64,
    fast_commits: AtomicU64,
    slow_commits: AtomicU64,
    guard_misses: AtomicU64,
    connects: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, n: u64) {
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

/// An event log in PostgreSQL. Cheap to share behind an `Arc`; all methods are concurrent.
pub struct PostgresLog {
    queue: mpsc::Sender<Pending>,
    /// The writer's state: its connections, cached heads and counters. The writer thread
    /// holds it for each batch; an append with nothing else in flight takes it for its own
    /// (see "Direct appends" in the module doc).
    writer: Arc<tokio::sync::Mutex<Writer>>,
    pool: Pool,
    sql: Arc<Sql>,
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    /// The LISTEN connection's task, started by the first `wait_beyond`: a process that
    /// only appends never pays for notifications.
    listener: tokio::sync::OnceCell<AbortOnDrop>,
}

/// State shared by the log, its writer and its listener.
struct Shared {
    /// The highest head known to be committed (and so visible).
    head: watch::Sender<Position>,
    /// Appends sent to the writer and not answered yet.
    outstanding: AtomicUsize,
    /// `outstanding` when the last batch was answered (that batch included): 1 when its
    /// append was alone, so that the next one may be direct.
    outstanding_at_answer: AtomicUsize,
    counters: Counters,
}

impl Shared {
    fn publish_head(&self, head: Position) {
        self.head.send_if_modified(|known| {
            let newer = head > *known;
            if newer {
                *known = head;
            }
            newer
        });
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SQL of one schema (the schema name is validated, then quoted).
struct Sql {
    schema: String,
    channel: String,
    /// The guarded writes of a batch, and of a batch of one event ([`Writes`]).
    append: Writes,
    append_one: Writes,
    lock_head: String,
    stream_heads: String,
    commands: String,
    read_stream: String,
    read_all: String,
    read_all_filtered: String,
    head: String,
    category_heads: String,
    category_heads_to_head: String,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let s = format!("\"{schema}\"");
        // The head moves from $1 to $2 only if it is still at $1 and, when the batch leaves
        // requests unwritten, only if their command ids ($g) and the streams it took as new
        // ($n) are not in the log. (The checks look each id and stream up on its own,
        // through its index: as `EXISTS (... = ANY($n))` a generic plan may scan the whole
        // table hoping for an early match.)
        let head = |guards: Option<(usize, usize)>| {
            let guards = guards.map_or_else(String::new, |(g, n)| {
                format!(
                    "AND NOT EXISTS (SELECT 1 FROM unnest(${g}::uuid[]) AS u(id)
                                      CROSS JOIN LATERAL (
                                            SELECT 1 FROM {s}.commands AS c
                                             WHERE c.command_id = u.id LIMIT 1) AS known)
                     AND NOT EXISTS (SELECT 1 FROM unnest(${n}::text[]) AS n(stream)
                                      CROSS JOIN LATERAL (
                                            SELECT e.version FROM {s}.events AS e
                                             WHERE e.stream = n.stream
                                             ORDER BY e.version DESC LIMIT 1) AS hit)"
                )
            });
            format!(
                "UPDATE {s}.log_head SET position = $2 WHERE position = $1 {guards}
                 RETURNING position"
            )
        };
        // The guarded write of a batch (module doc, "Group commit"): `head` locks the
        // counter row and moves it only if it is still where the batch was planned; the
        // inserts and the notification happen only if it moved.
        let append = |guards| {
            format!(
                "WITH head AS ({}), appended AS (
                     INSERT INTO {s}.events ({EVENT_COLUMNS})
                     SELECT r.* FROM unnest($3::bigint[], $4::text[], $5::bigint[], $6::uuid[],
                                            $7::text[], $8::integer[], $9::jsonb[],
                                            $10::jsonb[], $11::text[]) AS r
                      WHERE EXISTS (SELECT 1 FROM head)
                 ), recorded AS (
                     INSERT INTO {s}.commands (command_id, first_position, last_position)
                     SELECT r.* FROM unnest($12::uuid[], $13::bigint[], $14::bigint[]) AS r
                      WHERE EXISTS (SELECT 1 FROM head)
                 )
                 SELECT position, pg_notify($15, position::text) FROM head",
                head(guards)
            )
        };
        // The same for a batch of one event (a lone appender's): scalars instead of
        // arrays, which costs the server noticeably less.
        let append_one = |guards| {
            format!(
                "WITH head AS ({}), appended AS (
                     INSERT INTO {s}.events ({EVENT_COLUMNS})
                     SELECT $2, $3::text, $4::bigint, $5::uuid, $6::text, $7::integer,
                            $8::jsonb, $9::jsonb, $10::text
                      WHERE EXISTS (SELECT 1 FROM head)
                 ), recorded AS (
                     INSERT INTO {s}.commands (command_id, first_position, last_position)
                     SELECT $11::uuid, $2, $2 WHERE EXISTS (SELECT 1 FROM head)
                 )
                 SELECT position, pg_notify($12, position::text) FROM head",
                head(guards)
            )
        };
        Sql {
            schema: schema.to_owned(),
            channel: format!("{schema}_head"),
            append: Writes {
                plain: append(None),
                guarded: append(Some((16, 17))),
            },
            append_one: Writes {
                plain: append_one(None),
                guarded: append_one(Some((13, 14))),
            },
            lock_head: format!("SELECT position FROM {s}.log_head FOR UPDATE"),
            stream_heads: format!(
                "SELECT s.stream, e.version, e.hash
                   FROM unnest($1::text[]) AS s(stream)
                  CROSS JOIN LATERAL (
                        SELECT version, hash FROM {s}.events
                         WHERE events.stream = s.stream
                         ORDER BY version DESC LIMIT 1) AS e"
            ),
            commands: format!(
                "SELECT c.command_id, e.stream, e.version, e.position, e.type
                   FROM {s}.commands AS c
                   JOIN {s}.events AS e
                     ON e.position BETWEEN c.first_position AND c.last_position
                  WHERE c.command_id = ANY($1::uuid[])
                  ORDER BY c.command_id, e.position"
            ),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE stream = $1 AND version > $2 ORDER BY version"
            ),
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            read_all_filtered: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE position > $1 AND split_part(stream, '-', 1) = ANY($3::text[])
                  ORDER BY position LIMIT $2"
            ),
            head: format!("SELECT position FROM {s}.log_head"),
            // The last position of each category among events after $1. Under the writer's
            // lock, "after $1" is everything up to the locked head.
            category_heads: format!(
                "SELECT split_part(stream, '-', 1), max(position) FROM {s}.events
                  WHERE position > $1 GROUP BY 1"
            ),
            // The same without the lock, up to the head of the statement's own snapshot (the
            // head row and the events it counts commit together, so the two agree).
            category_heads_to_head: format!(
                "WITH h AS (SELECT position FROM {s}.log_head)
                 SELECT h.position, c.category, c.last
                   FROM h LEFT JOIN LATERAL (
                        SELECT split_part(stream, '-', 1) AS category, max(position) AS last
                          FROM {s}.events
                         WHERE position > $1 AND position <= h.position GROUP BY 1) AS c
                     ON true"
            ),
        }
    }
}

/// A write statement in its two forms. The guards cost the server a good part of a lone
/// append (each of their plan nodes is set up at every execution), and most batches write
/// every request they hold, which leaves nothing to guard.
struct Writes {
    /// For a batch that writes all its requests and read every stream it takes as new.
    plain: String,
    /// For the others: the head moves only if the unwritten requests' command ids and the
    /// unread streams taken as new are not in the log.
    guarded: String,
}

/// [`Writes`] prepared on a connection.
struct WriteStatements {
    plain: Statement,
    guarded: Statement,
}

impl WriteStatements {
    /// The plain form with `params`, or the guarded one with the guards' two arrays after
    /// them.
    async fn run(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
        guards: Option<[&(dyn ToSql + Sync); 2]>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match guards {
            None => client.query(&self.plain, params).await,
            Some(guards) => {
                let all: Vec<_> = params.iter().chain(&guards).copied().collect();
                client.query(&self.guarded, &all).await
            }
        }
    }
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
        let (mut config, _) = parse_url(url)?;
        if let Some(name) = &options.application_name {
            config.application_name(name);
        } else if config.get_application_name().is_none() {
            config.application_name("closeloop");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if schema_version(&config, &options.schema).await? < latest_migration() {
            migrate_config(&config, &options.schema).await?;
        }

        let sql = Arc::new(Sql::new(&options.schema));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
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
            config: writer_config(&config),
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
        // direct appends will run on (see "Direct appends" in the module doc).
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
            queue,
            writer,
            pool,
            sql,
            shared,
            config,
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self
                .pool
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
}

#[async_trait]
impl EventLog for PostgresLog {
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

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    async fn find_command(&self, command_id: Uuid) -> Result<Option<Committed>, Error> {
        let ids = vec![command_id];
        let rows = self.query(&self.sql.commands, &[&ids]).await?;
        let mut found = decode_commands(&rows)?;
        Ok(found.remove(&command_id).map(|known| known.committed))
    }
}

// ---------------------------------------------------------------------------------------
// The writer: group commit.

/// One append waiting for the writer.
struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, Error>>,
    /// Where a write that lost its connection put this append's last event, had it
    /// committed: finding the command at exactly that position proves it did.
    lost_at: Option<Position>,
    /// Uncounts the append from `Shared::outstanding` when it goes.
    counted: Counted,
}

/// One append's place in `Shared::outstanding`, held by its [`Pending`]: the append stops
/// counting when its `Pending` is answered or dropped unanswered, whichever way it goes: its
/// caller gave up while it waited for room in the queue or for the writer's state, or in the
/// middle of its direct turn. One mechanism, so no path can leave an append counted for ever
/// (which would turn direct appends off and make every batch wait for one more append).
struct Counted(Arc<Shared>);

impl Counted {
    /// Counts one more append; also returns how many were in flight before it.
    fn count(shared: &Arc<Shared>) -> (usize, Counted) {
        let before = shared.outstanding.fetch_add(1, Ordering::Relaxed);
        (before, Counted(shared.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes `pending` on the caller's own task (see "Direct appends" in the module doc):
/// the batch of one goes through the writer's usual path, on the direct connection.
async fn append_direct(
    writer: tokio::sync::MutexGuard<'_, Writer>,
    pending: Pending,
    answer: oneshot::Receiver<Result<AppendOutcome, Error>>,
) -> Result<AppendOutcome, Error> {
    let mut turn = DirectTurn::begin(writer);
    Counters::bump(&turn.writer.shared.counters.direct_appends, 1);
    turn.writer.run_batch(vec![pending], None).await;
    turn.finished = true;
    drop(turn);
    match answer.await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Unavailable(
            "a direct append was not answered; retry with the same command id".into(),
        )),
    }
}

/// A direct append's hold on the writer: the direct connection is swapped in for the turn
/// and back out when it ends. A turn abandoned midway (its caller's future was dropped, by
/// a timeout say) left its append in doubt: the connection is dropped, which rolls back
/// anything it had begun, and the cached heads are forgotten, so the next batch reads the
/// truth under the lock. (The append's `Pending`, dropped with the turn, uncounts it.)
struct DirectTurn<'a> {
    writer: tokio::sync::MutexGuard<'a, Writer>,
    finished: bool,
}

impl<'a> DirectTurn<'a> {
    fn begin(mut writer: tokio::sync::MutexGuard<'a, Writer>) -> DirectTurn<'a> {
        let w = &mut *writer;
        std::mem::swap(&mut w.conn, &mut w.direct);
        DirectTurn {
            writer,
            finished: false,
        }
    }
}

impl Drop for DirectTurn<'_> {
    fn drop(&mut self) {
        let w = &mut *self.writer;
        if !self.finished {
            w.conn = None;
            w.cache.invalidate();
            w.sent.clear();
        }
        std::mem::swap(&mut w.conn, &mut w.direct);
    }
}

/// A command found in the log.
struct KnownCommand {
    committed: Committed,
}

/// The writer's view of stream heads, exact while the log head is still `head`.
#[derive(Default)]
struct HeadCache {
    head: Option<Position>,
    streams: HashMap<String, (u64, String)>,
}

impl HeadCache {
    fn invalidate(&mut self) {
        self.head = None;
        self.streams.clear();
    }

    /// What the fast path assumes of a stream: its cached head, else that it is new.
    fn lookup(&self, stream: &str) -> Known {
        match self.streams.get(stream) {
            Some((version, hash)) => Known::Head(*version, hash.clone()),
            None => Known::AssumedNew,
        }
    }

    fn remember(&mut self, stream: String, head: (u64, String)) {
        if self.streams.len() >= STREAM_CACHE_MAX && !self.streams.contains_key(&stream) {
            self.streams.clear();
        }
        self.streams.insert(stream, head);
    }

    fn apply(&mut self, plan: &Plan) {
        self.head = Some(plan.last);
        for (stream, head) in &plan.heads {
            self.remember(stream.clone(), head.clone());
        }
    }
}

/// The last position of each stream category, exact for the events at or below `through`
/// (committed events never change, so this stays true however the cache is invalidated).
/// Checks appends' [`Unchanged`] conditions. Kept equal to the cached head whenever there
/// is one, so the fast path can check conditions without reading.
#[derive(Default, Clone)]
struct CategoryHeads {
    through: Position,
    last: HashMap<String, Position>,
}

impl CategoryHeads {
    fn raise(&mut self, category: String, position: Position) {
        let last = self.last.entry(category).or_insert(0);
        *last = (*last).max(position);
    }

    fn last_of(&self, category: &str) -> Position {
        self.last.get(category).copied().unwrap_or(0)
    }
}

/// What the planner knows of a stream's head.
enum Known {
    Head(u64, String),
    /// Read under the lock: the stream has no events.
    New,
    /// Not cached: planned as new, and the write checks that it is.
    AssumedNew,
}

/// Column arrays of the rows a batch writes.
#[derive(Default)]
struct Rows {
    positions: Vec<i64>,
    streams: Vec<String>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<Value>,
    /// Serialized straight from the struct: no intermediate `Value`.
    metadata: Vec<Json<Metadata>>,
    hashes: Vec<String>,
    command_ids: Vec<Uuid>,
    command_first: Vec<i64>,
    command_last: Vec<i64>,
}

/// A batch decided in memory.
struct Plan {
    /// The log head the batch was planned on, and its new head.
    first: Position,
    last: Position,
    rows: Rows,
    /// One answer per request, in batch order.
    outcomes: Vec<Result<AppendOutcome, Error>>,
    /// The streams written and their new heads.
    heads: HashMap<String, (u64, String)>,
    /// Streams planned as new without having been read and not written by the plan: the
    /// write checks that they do not exist. (A stream the plan writes as new is checked by
    /// the unique index on `(stream, version)`: its version 1 collides if it exists.)
    assumed_new: Vec<String>,
    /// The command ids of the requests the plan does not write: the write checks that they
    /// are not in the log. (Those it writes are checked by the primary key of `commands`.)
    unwritten_ids: Vec<Uuid>,
    /// The categories' last positions once the plan is committed (through `last`).
    categories: CategoryHeads,
}

/// Decides a batch against the head `first` and the stream heads `lookup` gives.
fn plan(
    batch: &[Pending],
    first: Position,
    categories: &CategoryHeads,
    lookup: impl Fn(&str) -> Known,
    known: &HashMap<Uuid, KnownCommand>,
    recorded_at: Timestamp,
) -> Plan {
    let mut planner = Planner::new(first, categories, recorded_at);
    for pending in batch {
        planner.add(pending, &lookup, known);
    }
    planner.finish()
}

/// Decides a batch request by request, so that the writer can decide each append while it
/// waits for the next one to arrive.
struct Planner {
    first: Position,
    next: Position,
    recorded_at: Timestamp,
    rows: Rows,
    outcomes: Vec<Result<AppendOutcome, Error>>,
    heads: HashMap<String, (u64, String)>,
    accepted: HashMap<Uuid, Committed>,
    assumed_new: Vec<String>,
    /// Command ids of the requests not written, in batch order.
    unwritten_ids: Vec<Uuid>,
    categories: CategoryHeads,
}

impl Planner {
    /// `categories` must be exact through `first`.
    fn new(first: Position, categories: &CategoryHeads, recorded_at: Timestamp) -> Planner {
        debug_assert_eq!(categories.through, first);
        Planner {
            categories: categories.clone(),
            first,
            next: first + 1,
            recorded_at,
            rows: Rows::default(),
            outcomes: Vec::new(),
            heads: HashMap::new(),
            accepted: HashMap::new(),
            assumed_new: Vec::new(),
            unwritten_ids: Vec::new(),
        }
    }

    /// Decides the next request of the batch.
    fn add(
        &mut self,
        pending: &Pending,
        lookup: impl Fn(&str) -> Known,
        known: &HashMap<Uuid, KnownCommand>,
    ) {
        let outcome = self.decide(pending, lookup, known);
        if !matches!(outcome, Ok(AppendOutcome::Committed(_))) {
            self.unwritten_ids.push(pending.request.command_id);
        }
        self.outcomes.push(outcome);
    }

    fn decide(
        &mut self,
        pending: &Pending,
        lookup: impl Fn(&str) -> Known,
        known: &HashMap<Uuid, KnownCommand>,
    ) -> Result<AppendOutcome, Error> {
        let request = &pending.request;
        if let Some(found) = known.get(&request.command_id) {
            // Ours if a write of this very append lost its reply but committed (the command
            // sits where that write put it): answer as that reply would have. Otherwise
            // it was there before: a retry.
            let ours = pending.lost_at == Some(found.committed.position);
            return Ok(if ours {
                AppendOutcome::Committed(found.committed.clone())
            } else {
                AppendOutcome::Duplicate(found.committed.clone())
            });
        }
        if let Some(first_outcome) = self.accepted.get(&request.command_id) {
            return Ok(AppendOutcome::Duplicate(first_outcome.clone()));
        }
        let (current, prev_hash) = match self.heads.get(&request.stream) {
            Some((version, hash)) => (*version, hash.clone()),
            None => match lookup(&request.stream) {
                Known::Head(version, hash) => (version, hash),
                Known::New => (0, GENESIS_HASH.to_owned()),
                Known::AssumedNew => {
                    self.assumed_new.push(request.stream.clone());
                    (0, GENESIS_HASH.to_owned())
                }
            },
        };
        check_expected(&request.stream, request.expected, current)?;
        if let Some(unchanged) = &request.unchanged {
            unchanged.check(|category| Ok(self.categories.last_of(category)))?;
        }
        let next = self.next;
        let sealed = seal(request, current, next, prev_hash, self.recorded_at);
        let committed = committed_of(&sealed);
        let last = sealed.last().expect("an append has at least one event");
        debug_assert_eq!(last.position, next + sealed.len() as u64 - 1);
        self.heads
            .insert(request.stream.clone(), (last.version, last.hash.clone()));
        let rows = &mut self.rows;
        rows.command_ids.push(request.command_id);
        rows.command_first.push(to_i64(next));
        rows.command_last.push(to_i64(committed.position));
        self.next += sealed.len() as u64;
        for event in sealed {
            rows.positions.push(to_i64(event.position));
            rows.versions.push(to_i64(event.version));
            rows.event_ids.push(event.event_id);
            rows.schema_versions.push(event.schema_version as i32);
            rows.metadata.push(Json(event.metadata));
            rows.streams.push(event.stream);
            rows.types.push(event.event_type);
            rows.data.push(event.data);
            rows.hashes.push(event.hash);
        }
        self.categories.raise(
            stream_category(&request.stream).to_owned(),
            committed.position,
        );
        self.accepted.insert(request.command_id, committed.clone());
        Ok(AppendOutcome::Committed(committed))
    }

    fn finish(mut self) -> Plan {
        assert_eq!(
            self.rows.positions.len() as u64,
            self.next - self.first - 1,
            "a plan's positions are contiguous from its head"
        );
        let heads = &self.heads;
        self.assumed_new
            .retain(|stream| !heads.contains_key(stream));
        self.categories.through = self.next - 1;
        Plan {
            categories: self.categories,
            first: self.first,
            last: self.next - 1,
            rows: self.rows,
            outcomes: self.outcomes,
            heads: self.heads,
            assumed_new: self.assumed_new,
            unwritten_ids: self.unwritten_ids,
        }
    }
}

/// For each request of a planned batch, the position of its last event if the plan writes it.
fn sent_positions(plan: &Plan) -> Vec<Option<Position>> {
    plan.outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(AppendOutcome::Committed(c)) => Some(c.position),
            _ => None,
        })
        .collect()
}

/// Why a batch attempt failed.
enum Failure {
    /// The connection is gone: the outcome of what was sent is unknown.
    Connection(tokio_postgres::Error),
    /// The server refused for now (serialization, lock, resources): nothing was written.
    Transient(String),
    /// The server rejected the batch: nothing was written; some request is at fault.
    Rejected(Error),
}

/// The writer connection and its prepared statements.
struct WriterConn {
    client: Client,
    append: WriteStatements,
    append_one: WriteStatements,
    lock_head: Statement,
    stream_heads: Statement,
    commands: Statement,
    category_heads: Statement,
}

impl WriterConn {
    fn failure(&self, error: tokio_postgres::Error) -> Failure {
        if is_connection_error(&error, self.client.is_closed()) {
            return Failure::Connection(error);
        }
        let code = error.code().cloned();
        match code {
            Some(code) if is_transient(&code) => Failure::Transient(describe(&error)),
            Some(code) if code.code().starts_with("22") => Failure::Rejected(Error::InvalidAppend(
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
            )),
            _ => Failure::Rejected(pg(error)),
        }
    }
}

struct Writer {
    config: tokio_postgres::Config,
    sql: Arc<Sql>,
    options: PostgresOptions,
    /// The connection of the batch being written: the writer thread's own, or during a
    /// direct append the caller's (the two are swapped for the turn).
    conn: Option<WriterConn>,
    /// The connection of direct appends while the writer thread has the turn; it lives on
    /// the runtime that opened it (`connect`'s caller's, or that of the direct append that
    /// had to reopen it).
    direct: Option<WriterConn>,
    cache: HeadCache,
    categories: CategoryHeads,
    /// Batches left to run on the slow path.
    contended: u32,
    shared: Arc<Shared>,
    /// The most appends outstanding when the last batch was answered.
    outstanding_seen: usize,
    /// For the write in flight: the last position it gives each append of the batch (None
    /// for those it does not write).
    sent: Vec<Option<Position>>,
}

impl Writer {
    async fn connect(&mut self) -> Result<(), tokio_postgres::Error> {
        self.conn = None;
        self.cache.invalidate();
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres writer connection ended: {}", describe(&e));
            }
        });
        // Everything the writer needs before its first batch goes out in one pipelined
        // round trip: a writer whose connections keep being cut must be able to get back
        // to work in the briefest window.
        //
        // The query learns the categories' last positions without the lock, so that the
        // scan under the lock (in `slow`) only covers what was appended since: at start,
        // the whole log.
        let through = to_i64(self.categories.through);
        let params: [&(dyn ToSql + Sync); 1] = [&through];
        let sql = &self.sql;
        let (
            append,
            append_guarded,
            append_one,
            append_one_guarded,
            lock_head,
            stream_heads,
            commands,
            category_heads,
            rows,
        ) = tokio::try_join!(
            client.prepare(&sql.append.plain),
            client.prepare(&sql.append.guarded),
            client.prepare(&sql.append_one.plain),
            client.prepare(&sql.append_one.guarded),
            client.prepare(&sql.lock_head),
            client.prepare(&sql.stream_heads),
            client.prepare(&sql.commands),
            client.prepare(&sql.category_heads),
            client.query(&sql.category_heads_to_head, &params),
        )?;
        for row in &rows {
            let head: i64 = row.get(0);
            self.categories.through = self.categories.through.max(head.max(0) as u64);
            if let (Some(category), Some(last)) = (
                row.get::<_, Option<String>>(1),
                row.get::<_, Option<i64>>(2),
            ) {
                self.categories.raise(category, last.max(0) as u64);
            }
        }
        self.conn = Some(WriterConn {
            client,
            append: WriteStatements {
                plain: append,
                guarded: append_guarded,
            },
            append_one: WriteStatements {
                plain: append_one,
                guarded: append_one_guarded,
            },
            lock_head,
            stream_heads,
            commands,
            category_heads,
        });
        Counters::bump(&self.shared.counters.connects, 1);
        Ok(())
    }

    /// Collects batches and commits them, until every `PostgresLog` handle is dropped and
    /// the queue is drained.
    async fn run(
        state: Arc<tokio::sync::Mutex<Writer>>,
        options: &PostgresOptions,
        mut queue: mpsc::Receiver<Pending>,
    ) {
        let appends_max = options.batch_appends_max.clamp(1, BATCH_APPENDS_MAX);
        let events_max = options.batch_events_max.clamp(1, BATCH_EVENTS_MAX);
        let wait = Duration::from_micros(options.batch_wait_us);
        let mut carried: Option<Pending> = None;
        // How many appends are expected per batch: a peak of the appends outstanding when
        // batches were answered, decaying when load drops.
        let mut expected: usize = 1;
        loop {
            let first = match carried.take() {
                Some(pending) => pending,
                None => match queue.recv().await {
                    Some(pending) => pending,
                    None => return,
                },
            };
            // A direct append may have the turn: it ends within one append's round trips.
            let mut this = state.lock().await;
            let deadline = tokio::time::Instant::now() + wait;
            let target = expected.clamp(1, appends_max);
            let mut events = first.request.events.len();
            // On the fast path, each append is decided as it arrives, while the next ones
            // are still on their way.
            let mut planner = this.fast_planner();
            this.preplan(&mut planner, &first);
            let mut batch = vec![first];
            while batch.len() < appends_max {
                let next = match queue.try_recv() {
                    Ok(pending) => pending,
                    Err(_) if wait.is_zero() || batch.len() >= target => break,
                    Err(_) => match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(pending)) => pending,
                        _ => break,
                    },
                };
                if events + next.request.events.len() > events_max {
                    carried = Some(next);
                    break;
                }
                events += next.request.events.len();
                this.preplan(&mut planner, &next);
                batch.push(next);
            }
            this.run_batch(batch, planner.map(Planner::finish)).await;
            expected = this.outstanding_seen.max(expected - expected / 8);
            this.outstanding_seen = 0;
        }
    }

    /// A planner for the fast path, if the writer is on it.
    fn fast_planner(&self) -> Option<Planner> {
        match self.cache.head {
            Some(head) if self.contended == 0 => {
                Some(Planner::new(head, &self.categories, Timestamp::now()))
            }
            _ => None,
        }
    }

    /// Decides `pending` on the fast path against the cached heads.
    fn preplan(&self, planner: &mut Option<Planner>, pending: &Pending) {
        if let Some(planner) = planner {
            planner.add(pending, |stream| self.cache.lookup(stream), &HashMap::new());
        }
    }

    /// Commits one batch and answers each of its appends. `planned` is the batch decided
    /// on the fast path while it was collected.
    async fn run_batch(&mut self, mut batch: Vec<Pending>, mut planned: Option<Plan>) {
        Counters::bump(&self.shared.counters.batches, 1);
        let mut reconnect_deadline: Option<Instant> = None;
        let mut transient_retries = 0;
        loop {
            if self.conn.is_none() {
                let deadline = *reconnect_deadline.get_or_insert_with(|| {
                    Instant::now() + Duration::from_millis(self.options.reconnect_timeout_ms)
                });
                if let Err(e) = self.reconnect(deadline).await {
                    let reason = format!("cannot reach PostgreSQL: {}", describe(&e));
                    self.fail_all(batch, &reason);
                    return;
                }
                Counters::bump(&self.shared.counters.reconnects, 1);
            }
            match self.attempt(&batch, planned.take()).await {
                Ok(outcomes) => {
                    self.answer(batch, outcomes);
                    return;
                }
                Err(Failure::Connection(e)) => {
                    tracing::warn!(
                        "postgres writer lost its connection during a batch of {} appends \
                         ({}); reconnecting and resolving them by command id",
                        batch.len(),
                        describe(&e)
                    );
                    self.conn = None;
                    self.cache.invalidate();
                    for (pending, sent) in batch.iter_mut().zip(self.sent.drain(..)) {
                        if sent.is_some() {
                            pending.lost_at = sent;
                        }
                    }
                }
                Err(Failure::Transient(e)) => {
                    self.rollback().await;
                    transient_retries += 1;
                    if transient_retries > TRANSIENT_RETRIES_MAX {
                        self.fail_all(batch, &format!("PostgreSQL keeps refusing: {e}"));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5 << transient_retries)).await;
                }
                Err(Failure::Rejected(e)) => {
                    self.rollback().await;
                    self.cache.invalidate();
                    if batch.len() == 1 {
                        self.answer(batch, vec![Err(e)]);
                    } else {
                        // Find the guilty append: replay them one by one.
                        tracing::warn!(
                            "postgres rejected a batch ({e}); replaying it append by append"
                        );
                        for pending in batch {
                            Box::pin(self.run_batch(vec![pending], None)).await;
                        }
                    }
                    return;
                }
            }
        }
    }

    async fn reconnect(&mut self, deadline: Instant) -> Result<(), tokio_postgres::Error> {
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.connect().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + backoff >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!("postgres writer reconnect failed: {}", describe(&e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn rollback(&mut self) {
        if let Some(conn) = &self.conn {
            if conn.client.batch_execute("ROLLBACK").await.is_err() {
                self.conn = None;
                self.cache.invalidate();
            }
        }
    }

    fn answer(&mut self, batch: Vec<Pending>, outcomes: Vec<Result<AppendOutcome, Error>>) {
        assert_eq!(batch.len(), outcomes.len());
        // This batch plus what queued up while it committed.
        let outstanding = self.shared.outstanding.load(Ordering::Relaxed);
        self.outstanding_seen = self.outstanding_seen.max(outstanding);
        self.shared
            .outstanding_at_answer
            .store(outstanding, Ordering::Relaxed);
        Counters::bump(&self.shared.counters.appends, batch.len() as u64);
        // Every append of the batch is uncounted before any caller hears: one that appends
        // again at once must not find its batch neighbours still in flight.
        let replies: Vec<_> = batch
            .into_iter()
            .map(|Pending { reply, counted, .. }| {
                drop(counted);
                reply
            })
            .collect();
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have given up waiting; the outcome stands regardless.
            let _ = reply.send(outcome);
        }
    }

    fn fail_all(&mut self, batch: Vec<Pending>, reason: &str) {
        let outcomes = batch
            .iter()
            .map(|pending| {
                Err(Error::Unavailable(if pending.lost_at.is_some() {
                    format!(
                        "{reason}; the connection was lost during this append, so its \
                         outcome is unknown: retry with the same command id (it answers \
                         `duplicate` if the append was committed)"
                    )
                } else {
                    format!("{reason}; nothing was appended")
                }))
            })
            .collect();
        self.answer(batch, outcomes);
    }

    /// One try at a batch: the fast path if the cache is trusted, else the slow path.
    async fn attempt(
        &mut self,
        batch: &[Pending],
        planned: Option<Plan>,
    ) -> Result<Vec<Result<AppendOutcome, Error>>, Failure> {
        let recorded_at = Timestamp::now();
        self.sent.clear();
        if self.contended > 0 {
            self.contended -= 1;
        } else if let Some(head) = self.cache.head {
            let plan = match planned {
                Some(plan) if plan.first == head && plan.outcomes.len() == batch.len() => plan,
                _ => plan(
                    batch,
                    head,
                    &self.categories,
                    |stream| self.cache.lookup(stream),
                    &HashMap::new(),
                    recorded_at,
                ),
            };
            if !plan.rows.positions.is_empty() {
                self.sent = sent_positions(&plan);
                let conn = self.conn.as_ref().expect("connected before an attempt");
                let written = match self
                    .write(conn, &plan, &plan.unwritten_ids, &plan.assumed_new)
                    .await
                {
                    Ok(written) => written,
                    Err(e) => match conn.failure(e) {
                        Failure::Connection(e) => return Err(Failure::Connection(e)),
                        // The statement (its own transaction) wrote nothing. Most likely a
                        // command id or a stream taken as new exists (a unique index said
                        // so); whatever it was, the slow path decides exactly.
                        Failure::Transient(_) | Failure::Rejected(_) => false,
                    },
                };
                // Answered: whatever was sent is no longer in doubt.
                self.sent.clear();
                if written {
                    Counters::bump(&self.shared.counters.fast_commits, 1);
                    self.committed(&plan);
                    return Ok(plan.outcomes);
                }
                // Someone else wrote, a command id is a retry, or an uncached stream exists:
                // nothing was written; decide again from the database itself.
                Counters::bump(&self.shared.counters.guard_misses, 1);
                self.contended = CONTENDED_BATCHES;
            }
        }
        self.slow(batch, recorded_at).await
    }

    /// The batch under the lock: one round trip to lock and read, one to write and commit.
    async fn slow(
        &mut self,
        batch: &[Pending],
        recorded_at: Timestamp,
    ) -> Result<Vec<Result<AppendOutcome, Error>>, Failure> {
        let conn = self.conn.as_ref().expect("connected before an attempt");
        let mut seen = HashSet::new();
        let streams: Vec<&str> = batch
            .iter()
            .map(|p| p.request.stream.as_str())
            .filter(|s| seen.insert(*s))
            .collect();
        let ids: Vec<Uuid> = batch.iter().map(|p| p.request.command_id).collect();
        // Pipelined: the reads run after the lock is granted, each with a snapshot that
        // includes the previous lock holder's commit.
        let through = to_i64(self.categories.through);
        let heads_params: [&(dyn ToSql + Sync); 1] = [&streams];
        let commands_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let categories_params: [&(dyn ToSql + Sync); 1] = [&through];
        let (begin, locked, heads, commands, categories) = tokio::join!(
            conn.client.batch_execute("BEGIN"),
            conn.client.query_one(&conn.lock_head, &[]),
            conn.client.query(&conn.stream_heads, &heads_params),
            conn.client.query(&conn.commands, &commands_params),
            conn.client.query(&conn.category_heads, &categories_params),
        );
        let failure = |e| conn.failure(e);
        begin.map_err(failure)?;
        let locked = locked.map_err(failure)?;
        let heads = heads.map_err(failure)?;
        let commands = commands.map_err(failure)?;
        let categories = categories.map_err(failure)?;
        let locked = to_u64(locked.get::<_, i64>(0), "log head").map_err(Failure::Rejected)?;
        for row in &categories {
            let last = to_u64(row.get::<_, i64>(1), "position").map_err(Failure::Rejected)?;
            self.categories.raise(row.get(0), last);
        }
        self.categories.through = self.categories.through.max(locked);
        let mut read = HashMap::with_capacity(heads.len());
        for row in &heads {
            let stream: String = row.get(0);
            let version = to_u64(row.get::<_, i64>(1), "version").map_err(Failure::Rejected)?;
            read.insert(stream, (version, row.get::<_, String>(2)));
        }
        let known = decode_commands(&commands).map_err(Failure::Rejected)?;

        if self.cache.head == Some(locked) {
            // Nobody else wrote since our last commit: the fast path will do.
            self.contended = 0;
        } else {
            self.cache.streams.clear();
        }
        self.cache.head = Some(locked);
        let plan = plan(
            batch,
            locked,
            &self.categories,
            |stream| match read.get(stream) {
                Some((version, hash)) => Known::Head(*version, hash.clone()),
                None => Known::New,
            },
            &known,
            recorded_at,
        );
        for (stream, head) in read {
            self.cache.remember(stream, head);
        }
        let conn = self.conn.as_ref().expect("connected before an attempt");
        if plan.rows.positions.is_empty() {
            conn.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| conn.failure(e))?;
            return Ok(plan.outcomes);
        }
        self.sent = sent_positions(&plan);
        let (written, commit) = tokio::join!(
            self.write(conn, &plan, &[], &[]),
            conn.client.batch_execute("COMMIT"),
        );
        let written = written.map_err(|e| conn.failure(e))?;
        commit.map_err(|e| conn.failure(e))?;
        if !written {
            // Impossible while we hold the lock; nothing was written, so retrying is safe.
            tracing::error!("postgres log head moved under the writer's lock; retrying");
            self.cache.invalidate();
            return Err(Failure::Transient(
                "the log head moved under the writer's lock".into(),
            ));
        }
        Counters::bump(&self.shared.counters.slow_commits, 1);
        self.committed(&plan);
        Ok(plan.outcomes)
    }

    /// The guarded write of a planned batch; false when the guard failed (nothing written).
    async fn write(
        &self,
        conn: &WriterConn,
        plan: &Plan,
        guard_ids: &[Uuid],
        assumed_new: &[String],
    ) -> Result<bool, tokio_postgres::Error> {
        let r = &plan.rows;
        let first = to_i64(plan.first);
        let last = to_i64(plan.last);
        let guarded = !guard_ids.is_empty() || !assumed_new.is_empty();
        let guards = guarded.then_some([&guard_ids as &(dyn ToSql + Sync), &assumed_new]);
        let rows = if r.positions.len() == 1 {
            let params: [&(dyn ToSql + Sync); 12] = [
                &first,
                &last,
                &r.streams[0],
                &r.versions[0],
                &r.event_ids[0],
                &r.types[0],
                &r.schema_versions[0],
                &r.data[0],
                &r.metadata[0],
                &r.hashes[0],
                &r.command_ids[0],
                &self.sql.channel,
            ];
            conn.append_one.run(&conn.client, &params, guards).await?
        } else {
            let params: [&(dyn ToSql + Sync); 15] = [
                &first,
                &last,
                &r.positions,
                &r.streams,
                &r.versions,
                &r.event_ids,
                &r.types,
                &r.schema_versions,
                &r.data,
                &r.metadata,
                &r.hashes,
                &r.command_ids,
                &r.command_first,
                &r.command_last,
                &self.sql.channel,
            ];
            conn.append.run(&conn.client, &params, guards).await?
        };
        Ok(!rows.is_empty())
    }

    fn committed(&mut self, plan: &Plan) {
        self.cache.apply(plan);
        self.categories = plan.categories.clone();
        self.shared.publish_head(plan.last);
    }
}

// ---------------------------------------------------------------------------------------
// The listener: wakes `wait_beyond` on every commit, from any process.

async fn listen(
    config: tokio_postgres::Config,
    sql: Arc<Sql>,
    shared: Arc<Shared>,
    ready: oneshot::Sender<Result<(), tokio_postgres::Error>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        match listen_once(&config, &sql, &shared, &mut ready).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                    return;
                }
                tracing::debug!("postgres listener: {}", describe(&e));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Listens until the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    sql: &Sql,
    shared: &Arc<Shared>,
    ready: &mut Option<oneshot::Sender<Result<(), tokio_postgres::Error>>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let notified = shared.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Ok(head) = n.payload().parse::<Position>() {
                        notified.publish_head(head);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let setup = async {
        client
            .batch_execute(&format!("LISTEN \"{}\"", sql.channel))
            .await?;
        let row = client.query_one(&sql.head, &[]).await?;
        Ok::<_, tokio_postgres::Error>(row.get::<_, i64>(0))
    };
    let head = match setup.await {
        Ok(head) => head,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    shared.publish_head(head.max(0) as Position);
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    let ended = driver.await;
    drop(client);
    match ended {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Migrations.

fn latest_migration() -> u32 {
    closeloop_schemas::POSTGRES_MIGRATIONS
        .last()
        .map_or(0, |(version, _, _)| *version)
}

/// The schema's applied version; 0 when it does not exist. Read-only.
async fn schema_version(config: &tokio_postgres::Config, schema: &str) -> Result<u32, Error> {
    let client = connect_plain(config).await?;
    let table = format!("\"{schema}\".schema_migrations");
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(pg)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: i32 = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    Ok(version.max(0) as u32)
}

async fn migrate_config(config: &tokio_postgres::Config, schema: &str) -> Result<Migrated, Error> {
    let mut client = connect_plain(config).await?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&MIGRATE_LOCK_KEY, &schema],
    )
    .await
    .map_err(pg)?;
    let s = format!("\"{schema}\"");
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await
    .map_err(pg)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations"),
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    tx.execute("SELECT set_config('search_path', $1, true)", &[&s])
        .await
        .map_err(pg)?;
    let mut applied = Vec::new();
    for &(version, name, sql) in closeloop_schemas::POSTGRES_MIGRATIONS {
        if version as i64 <= current as i64 {
            continue;
        }
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO {s}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&(version as i32), &name],
        )
        .await
        .map_err(pg)?;
        applied.push((version, name));
    }
    tx.commit().await.map_err(pg)?;
    for (version, name) in &applied {
        tracing::info!("postgres schema {schema}: applied migration {version} {name}");
    }
    Ok(Migrated {
        schema: schema.to_owned(),
        version: applied
            .last()
            .map_or(current.max(0) as u32, |(version, _)| *version),
        applied,
    })
}

/// The writer's connection settings: the user's, plus its server-side limit on an idle
/// transaction, sent in the startup packet rather than as a statement of its own.
fn writer_config(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    let limit = format!("-c idle_in_transaction_session_timeout={WRITER_IDLE_IN_TRANSACTION_MS}");
    let options = match config.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {limit}"),
        _ => limit,
    };
    config.options(&options);
    config
}

async fn connect_plain(config: &tokio_postgres::Config) -> Result<Client, Error> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| unavailable("cannot connect to PostgreSQL", &e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Splits our own `schema` parameter off a PostgreSQL URL and parses the rest.
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Option<String>), Error> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| Error::UnsupportedStore(format!("{} ({e})", redact(url))))?;
    Ok((config, schema))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

fn check_schema_name(url: &str, schema: &str) -> Result<(), Error> {
    let mut chars = schema.chars();
    let valid = schema.len() <= SCHEMA_NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with("pg_");
    if valid {
        Ok(())
    } else {
        Err(Error::UnsupportedStore(format!(
            "{} (schema name `{schema}`: use [a-z_][a-z0-9_]*, at most {SCHEMA_NAME_MAX} bytes, not pg_*)",
            redact(url)
        )))
    }
}

/// Rejects what PostgreSQL cannot store, before any work (and before it could fail a batch).
fn check_storable(request: &AppendRequest) -> Result<(), Error> {
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

fn is_connection_error(error: &tokio_postgres::Error, client_closed: bool) -> bool {
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

fn is_transient(code: &SqlState) -> bool {
    let class = &code.code()[..2];
    class == "40" || class == "53" || class == "55" || *code == SqlState::QUERY_CANCELED
}

fn unavailable(what: &str, error: &tokio_postgres::Error) -> Error {
    Error::Unavailable(format!("{what}: {}", describe(error)))
}

/// A PostgreSQL error the log does not classify, as [`Error::Backend`].
fn pg(error: tokio_postgres::Error) -> Error {
    Error::backend("postgres", error)
}

/// A query bound: beyond any stored value is as good as `i64::MAX`.
fn saturate_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An error with its cause: tokio-postgres's own message is only its kind ("db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).expect("positions and versions fit in a bigint")
}

fn to_u64(value: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("negative {what} {value}")))
}

fn decode_event(row: &Row) -> Result<StoredEvent, Error> {
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
fn decode_commands(rows: &[Row]) -> Result<HashMap<Uuid, KnownCommand>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_ours_and_the_rest_goes_to_postgres() {
        let (config, schema) =
            parse_url("postgres://u:secret@h:5433/db?schema=cl_a&application_name=x").unwrap();
        assert_eq!(schema.as_deref(), Some("cl_a"));
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_ports(), &[5433]);
        let (_, none) = parse_url("postgres://u@h/db").unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn the_writer_limits_idle_transactions_and_keeps_the_users_options() {
        let limit = "-c idle_in_transaction_session_timeout=10000";
        let (plain, _) = parse_url("postgres://u@h/db").unwrap();
        assert_eq!(writer_config(&plain).get_options(), Some(limit));
        let (theirs, _) = parse_url("postgres://u@h/db?options=-c%20work_mem%3D8MB").unwrap();
        assert_eq!(
            writer_config(&theirs).get_options(),
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
