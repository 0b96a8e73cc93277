//! PostgreSQL event log: conformance, concurrency and faults.
//!
//! Needs PostgreSQL at `CLOSELOOP_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); a test that cannot connect fails and says how
//! to start it. Every test works in its own schema (`cl_test_<uuid>`), dropped afterwards, so
//! the tests run in parallel. Faults are injected without restarting the shared server (which
//! would disturb every other test running at the same time): by terminating the log's
//! backends (`pg_terminate_backend`), and through a TCP proxy that can swallow replies,
//! drop every connection and refuse new ones, which is what a client sees of a PostgreSQL
//! restart. The rest of a restart (crash recovery of committed transactions) is PostgreSQL's
//! own guarantee with `synchronous_commit = on`: an append is acknowledged only after its
//! COMMIT returned.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop_core::log::postgres::{PostgresLog, PostgresOptions};
use closeloop_core::log::{
    chain_hash, verify_chain, AppendOutcome, AppendRequest, Committed, EventLog, ExpectedVersion,
    Filter, Position, StoredEvent, GENESIS_HASH,
};
use closeloop_core::Error;
use closeloop_testkit::conformance::{
    append_request, commit, new_event, numbered_events, read_everything, stream_name, Subject,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Barrier};
use uuid::Uuid;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Set in the environment of the child processes of the concurrency test.
const CHILD_ENV: &str = "CLOSELOOP_PG_WRITER_CHILD";

fn url() -> String {
    std::env::var("CLOSELOOP_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn unreachable(error: impl std::fmt::Display) -> ! {
    panic!(
        "cannot reach PostgreSQL at {} ({error}). Start it with `scripts/services.sh` (or \
         `scripts/test.sh`), or `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) \
         main start`; set CLOSELOOP_TEST_POSTGRES to use another server.",
        url()
    )
}

/// A plain connection, as an operator or analyst with `psql` would have.
pub(crate) async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| unreachable(e));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

pub(crate) fn with_schema_param(schema: &str) -> String {
    let url = url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}schema={schema}")
}

fn unique_schema() -> String {
    format!("cl_test_{}", Uuid::new_v4().simple())
}

fn options(schema: &str) -> PostgresOptions {
    PostgresOptions {
        schema: schema.to_owned(),
        pool_size: 4,
        ..PostgresOptions::default()
    }
}

async fn connect(url: &str, options: PostgresOptions) -> PostgresLog {
    match PostgresLog::connect_with(url, options).await {
        Ok(log) => log,
        Err(Error::Unavailable(e)) => unreachable(e),
        Err(e) => panic!("connect the PostgreSQL log: {e}"),
    }
}

async fn drop_schema(schema: &str) {
    admin()
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap_or_else(|e| panic!("drop schema {schema}: {e}"));
}

/// A test's own schema, dropped (CASCADE: not a DELETE, so the triggers allow it) when the
/// test ends, even by a panic. Declare it before the logs that use it.
pub(crate) struct Scratch {
    pub(crate) schema: String,
}

impl Scratch {
    pub(crate) async fn new() -> Scratch {
        admin().await; // fail early, with instructions, if the server is down
        Scratch {
            schema: unique_schema(),
        }
    }

    fn options(&self) -> PostgresOptions {
        options(&self.schema)
    }

    pub(crate) async fn log(&self) -> PostgresLog {
        connect(&url(), self.options()).await
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop runs outside async: do it on a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(drop_schema(&schema));
        })
        .join();
    }
}

mod conformance {
    use super::*;

    async fn fresh() -> Subject {
        let schema = unique_schema();
        let log = connect(&url(), options(&schema)).await;
        Subject {
            log: Arc::new(log),
            cleanup: Some(Box::pin(async move { drop_schema(&schema).await })),
        }
    }

    closeloop_testkit::conformance_tests!(fresh);
}

/// Appends until an answer comes, retrying `Unavailable` with the same command id, as a
/// command handler does. Returns the outcome and how many tries failed.
async fn append_retrying(log: &dyn EventLog, request: &AppendRequest) -> (AppendOutcome, u32) {
    let mut failures = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match log.append(request.clone()).await {
            Ok(outcome) => return (outcome, failures),
            Err(Error::Unavailable(message)) => {
                failures += 1;
                assert!(
                    Instant::now() < deadline,
                    "still unavailable after 120 s: {message}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("append {}: {e} ({e:?})", request.command_id),
        }
    }
}

/// Checks the whole log: positions 1..=N, every stream contiguous with its chain intact
/// after the jsonb round trip, every command's events present exactly once where its
/// outcome says. Returns the events.
pub(crate) async fn assert_log_sound(
    log: &dyn EventLog,
    acknowledged: &HashMap<Uuid, (Committed, usize)>,
) -> Vec<StoredEvent> {
    let events = read_everything(log).await;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position, i as u64 + 1, "positions are 1..=N");
    }
    assert_eq!(log.head().await.expect("head"), events.len() as u64);
    let mut by_stream: HashMap<&str, Vec<StoredEvent>> = HashMap::new();
    let mut by_command: HashMap<Uuid, Vec<&StoredEvent>> = HashMap::new();
    for event in &events {
        by_stream
            .entry(&event.stream)
            .or_default()
            .push(event.clone());
        by_command
            .entry(event.metadata.command_id)
            .or_default()
            .push(event);
    }
    for (stream, stream_events) in &by_stream {
        assert_eq!(verify_chain(stream_events), vec![], "chain of {stream}");
        let read = log.read_stream(stream, 0).await.expect("read_stream");
        assert_eq!(&read, stream_events, "read_stream agrees with read_all");
    }
    for (command_id, (committed, count)) in acknowledged {
        let stored = by_command.get(command_id).map_or(&[][..], |v| &v[..]);
        assert_eq!(
            stored.len(),
            *count,
            "command {command_id}: its {count} events are stored exactly once"
        );
        let last = stored.last().expect("stored");
        assert_eq!(
            (last.position, last.version, &last.stream),
            (committed.position, committed.version, &committed.stream),
            "command {command_id} is where its acknowledgement says"
        );
        assert_eq!(
            log.find_command(*command_id).await.expect("find_command"),
            Some(committed.clone())
        );
    }
    events
}

// ---------------------------------------------------------------------------------------
// Schema, migrations, views, immutability.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrate_is_idempotent_and_safe_from_many_processes() {
    let scratch = Scratch::new().await;
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let schema = scratch.schema.clone();
            tokio::spawn(async move { PostgresLog::migrate_schema(&url(), &schema).await })
        })
        .collect();
    let mut applied = Vec::new();
    // Every migration, in order, each applied by exactly one of the racing processes.
    let all: Vec<(u32, &str)> = closeloop_schemas::POSTGRES_MIGRATIONS
        .iter()
        .map(|(version, name, _)| (*version, *name))
        .collect();
    for run in runs {
        let migrated = run.await.expect("task").expect("migrate");
        assert_eq!(migrated.version, all.len() as u32);
        applied.extend(migrated.applied);
    }
    assert_eq!(applied, all, "applied once in all");
    let url_with_schema = with_schema_param(&scratch.schema);
    let again = PostgresLog::migrate(&url_with_schema).await.expect("again");
    assert!(again.applied.is_empty());
    let rows = admin()
        .await
        .query(
            &format!(
                "SELECT version FROM \"{}\".schema_migrations",
                scratch.schema
            ),
            &[],
        )
        .await
        .expect("schema_migrations");
    assert_eq!(rows.len(), all.len());

    // `connect` takes the schema from the URL.
    let log = match PostgresLog::connect(&url_with_schema).await {
        Ok(log) => log,
        Err(e) => unreachable(e),
    };
    assert_eq!(log.schema(), scratch.schema);
    // The identity was drawn once, by the migration, and cannot be changed.
    let id = log.log_id().await.expect("log id");
    assert_eq!(id.get_version(), Some(uuid::Version::Random));
    let changed = admin()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".log_identity SET log_id = gen_random_uuid()",
                scratch.schema
            ),
            &[],
        )
        .await;
    assert!(changed.is_err(), "the identity must be immutable");
    assert_eq!(log.log_id().await.expect("log id"), id);
    assert!(matches!(
        PostgresLog::connect(&with_schema_param("Bad-Name")).await,
        Err(Error::UnsupportedStore(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connect_creates_the_schema_and_analysts_read_the_views() {
    let scratch = Scratch::new().await;
    let log = scratch.log().await;
    let ticket = format!("ticket-{}", Uuid::now_v7());
    let mut request = append_request(&ticket, ExpectedVersion::Exact(0), numbered_events(2));
    request.events[0].event_type = "ticket_opened".into();
    request.events[1].event_type = "ticket_assigned".into();
    let committed = commit(&log, request.clone()).await;
    commit(
        &log,
        append_request(
            &stream_name("agent"),
            ExpectedVersion::Any,
            numbered_events(1),
        ),
    )
    .await;

    let s = &scratch.schema;
    let db = admin().await;
    let rows = db
        .query(
            &format!(
                "SELECT position, ticket_id, version, type, actor_id, actor_role, \
                        occurred_at::text, command_id, data \
                   FROM \"{s}\".ticket_events ORDER BY position"
            ),
            &[],
        )
        .await
        .expect("ticket_events");
    assert_eq!(rows.len(), 2, "only the ticket's events");
    assert_eq!(rows[1].get::<_, i64>(0) as u64, committed.position);
    assert_eq!(
        rows[0].get::<_, String>(1),
        ticket.strip_prefix("ticket-").unwrap()
    );
    assert_eq!(rows[0].get::<_, String>(3), "ticket_opened");
    assert_eq!(rows[0].get::<_, String>(4), "conformance-suite");
    assert_eq!(rows[0].get::<_, String>(5), "service");
    assert!(rows[0].get::<_, String>(6).starts_with("2026-11-23"));
    assert_eq!(rows[0].get::<_, Uuid>(7), request.command_id);
    assert_eq!(rows[1].get::<_, serde_json::Value>(8), json!({"n": 1}));

    let streams = db
        .query(
            &format!(
                "SELECT stream, category, version, events, last_position \
                   FROM \"{s}\".streams ORDER BY last_position"
            ),
            &[],
        )
        .await
        .expect("streams");
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].get::<_, String>(0), ticket);
    assert_eq!(streams[0].get::<_, String>(1), "ticket");
    assert_eq!(streams[0].get::<_, i64>(2), 2);
    assert_eq!(streams[1].get::<_, String>(1), "agent");
    assert_eq!(streams[1].get::<_, i64>(4), 3);

    // An auditor recomputes the chain from the view alone: its hashed columns hold the
    // exact values (nanoseconds kept), where `recorded_at` is cut to microseconds.
    let rows = db
        .query(
            &format!(
                "SELECT stream, version, event_id, type, schema_version, data, metadata, hash, \
                        occurred_at_hashed, recorded_at_hashed \
                   FROM \"{s}\".event_log ORDER BY position"
            ),
            &[],
        )
        .await
        .expect("event_log");
    let stored = log.read_all(0, 10, Filter::All).await.expect("read_all");
    assert_eq!(rows.len(), stored.len());
    let mut previous: HashMap<String, String> = HashMap::new();
    for (row, event) in rows.iter().zip(&stored) {
        let metadata: serde_json::Value = row.get(6);
        let rebuilt = StoredEvent {
            position: event.position,
            stream: row.get(0),
            version: row.get::<_, i64>(1) as u64,
            event_id: row.get(2),
            event_type: row.get(3),
            schema_version: row.get::<_, i32>(4) as u32,
            data: row.get(5),
            metadata: serde_json::from_value(metadata).expect("the view's metadata"),
            hash: row.get(7),
        };
        let prev = previous
            .get(&rebuilt.stream)
            .cloned()
            .unwrap_or_else(|| GENESIS_HASH.to_owned());
        assert_eq!(chain_hash(&prev, &rebuilt), rebuilt.hash, "{rebuilt:?}");
        assert_eq!(rebuilt.metadata.recorded_at, event.metadata.recorded_at);
        assert_eq!(
            row.get::<_, String>(9).parse::<jiff::Timestamp>().unwrap(),
            event.metadata.recorded_at
        );
        assert_eq!(
            row.get::<_, String>(8).parse::<jiff::Timestamp>().unwrap(),
            event.metadata.occurred_at
        );
        previous.insert(rebuilt.stream.clone(), rebuilt.hash.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_reject_update_delete_and_truncate() {
    let scratch = Scratch::new().await;
    let log = scratch.log().await;
    let stream = format!("ticket-{}", Uuid::now_v7());
    for _ in 0..3 {
        commit(
            &log,
            append_request(&stream, ExpectedVersion::Any, numbered_events(2)),
        )
        .await;
    }
    let before = read_everything(&log).await;
    let s = &scratch.schema;
    let db = admin().await;
    for sql in [
        format!("UPDATE \"{s}\".events SET data = '{{\"forged\": true}}' WHERE position = 2"),
        format!("UPDATE \"{s}\".events SET hash = repeat('0', 64)"),
        format!("DELETE FROM \"{s}\".events WHERE position = 6"),
        format!("DELETE FROM \"{s}\".events"),
        format!("TRUNCATE \"{s}\".events"),
        format!("TRUNCATE \"{s}\".events, \"{s}\".commands CASCADE"),
        format!("UPDATE \"{s}\".commands SET last_position = 1"),
        format!("DELETE FROM \"{s}\".commands"),
        format!("TRUNCATE \"{s}\".commands"),
        format!("DELETE FROM \"{s}\".ticket_events"),
        format!("DELETE FROM \"{s}\".log_head"),
    ] {
        match db.batch_execute(&sql).await {
            Err(e) => {
                let message = e
                    .as_db_error()
                    .map_or(e.to_string(), |d| d.message().to_owned());
                assert!(
                    message.contains("forbidden"),
                    "`{sql}` must fail saying the log is append-only, got: {message}"
                );
            }
            Ok(()) => panic!("`{sql}` must fail"),
        }
    }
    assert_eq!(read_everything(&log).await, before, "nothing changed");
    assert_eq!(log.head().await.expect("head"), 6);
}

// ---------------------------------------------------------------------------------------
// Group commit and several writers.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_group_commit_failures_do_not_affect_batch_neighbours() {
    const APPENDS: usize = 64;
    let scratch = Scratch::new().await;
    let log = Arc::new(scratch.log().await);
    let contended = stream_name("ticket");
    let shared = stream_name("agent");
    let duplicated = append_request(
        &stream_name("sla_policy"),
        ExpectedVersion::Any,
        numbered_events(1),
    );
    let barrier = Arc::new(Barrier::new(APPENDS));
    // Five kinds, interleaved so that every batch mixes them: 0 a new stream at Exact(0)
    // (succeeds), 1 a new stream at Exact(3) (fails), 2 a contended stream at Exact(0) (one
    // wins), 3 a shared stream at Any (succeeds), 4 the same command sent many times (one
    // commits, the rest are duplicates).
    let tasks: Vec<_> = (0..APPENDS)
        .map(|i| {
            let request = match i % 5 {
                0 => append_request(
                    &stream_name("customer"),
                    ExpectedVersion::Exact(0),
                    numbered_events(2),
                ),
                1 => append_request(
                    &stream_name("customer"),
                    ExpectedVersion::Exact(3),
                    numbered_events(2),
                ),
                2 => append_request(&contended, ExpectedVersion::Exact(0), numbered_events(1)),
                3 => append_request(&shared, ExpectedVersion::Any, numbered_events(1)),
                _ => duplicated.clone(),
            };
            let (log, barrier) = (log.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let outcome = log.append(request.clone()).await;
                (i % 5, request, outcome)
            })
        })
        .collect();
    let mut acknowledged = HashMap::new();
    let (mut contended_wins, mut duplicates, mut first_of_duplicated) = (0, 0, 0);
    for task in tasks {
        let (kind, request, outcome) = task.await.expect("append task");
        match (kind, outcome) {
            (0 | 2 | 3 | 4, Ok(AppendOutcome::Committed(c))) => {
                if kind == 2 {
                    contended_wins += 1;
                }
                if kind == 4 {
                    first_of_duplicated += 1;
                }
                acknowledged.insert(request.command_id, (c, request.events.len()));
            }
            (1, Err(Error::WrongExpectedVersion { actual: 0, .. })) => {}
            (2, Err(Error::WrongExpectedVersion { actual: 1, .. })) => {}
            (4, Ok(AppendOutcome::Duplicate(_))) => duplicates += 1,
            (kind, other) => panic!("an append of kind {kind} got {other:?}"),
        }
    }
    assert_eq!(
        contended_wins, 1,
        "one Exact(0) append wins the contended stream"
    );
    assert_eq!(first_of_duplicated, 1, "a command id commits once");
    assert_eq!(duplicates, APPENDS / 5 - 1);
    assert_log_sound(&*log, &acknowledged).await;
    let stats = log.stats();
    assert!(
        stats.batches < acknowledged.len() as u64,
        "{} concurrent commits should share transactions, but took {} batches",
        acknowledged.len(),
        stats.batches
    );
}

/// Two logs on one schema (as two processes would have) writing the same stream in turn:
/// each one's cached stream heads go stale, and the guarded write must notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_writers_on_one_schema_keep_one_chain() {
    let scratch = Scratch::new().await;
    let a = scratch.log().await;
    let b = scratch.log().await;
    let stream = format!("ticket-{}", Uuid::now_v7());
    let mut acknowledged = HashMap::new();
    let mut version = 0;
    for round in 0..10u64 {
        let log = if round % 2 == 0 { &a } else { &b };
        // A stale expectation first: refused with the real version.
        if version > 0 {
            let stale = append_request(
                &stream,
                ExpectedVersion::Exact(version - 1),
                numbered_events(1),
            );
            match log.append(stale).await {
                Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, version),
                other => panic!("a stale expectation must fail, got {other:?}"),
            }
        }
        let request = append_request(&stream, ExpectedVersion::Exact(version), numbered_events(2));
        let committed = commit(log, request.clone()).await;
        assert_eq!(committed.version, version + 2);
        assert_eq!(committed.position, version + 2);
        version = committed.version;
        acknowledged.insert(request.command_id, (committed.clone(), 2));
        // The other log knows the command too.
        let other = if round % 2 == 0 { &b } else { &a };
        assert_eq!(
            other
                .append(request)
                .await
                .expect("retry through the other log"),
            AppendOutcome::Duplicate(committed)
        );
    }
    assert_log_sound(&a, &acknowledged).await;
    assert_log_sound(&b, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wait_beyond_wakes_on_appends_of_another_process() {
    let scratch = Scratch::new().await;
    let writer = scratch.log().await;
    let tail = scratch.log().await;
    for round in 1..=3u64 {
        let tail = &tail;
        // Whether the waiter starts before or after the other connection's append, it must
        // return the new head (by notification, or by its periodic re-read of the head); no
        // timing is asserted, only what it returns.
        let waiting = async move {
            tail.wait_beyond(round - 1, Duration::from_secs(30))
                .await
                .expect("wait_beyond")
        };
        let append = async {
            commit(
                &writer,
                append_request(
                    &stream_name("ticket"),
                    ExpectedVersion::Any,
                    numbered_events(1),
                ),
            )
            .await
        };
        let (head, committed) = tokio::join!(waiting, append);
        assert_eq!(committed.position, round);
        assert!(
            head >= round,
            "round {round}: wait_beyond returned head {head}"
        );
        assert_eq!(tail.head().await.expect("head"), round);
    }
}

/// The identity a writer puts in each event, so the tail can tell them apart.
fn event_key(event: &StoredEvent) -> (String, u64, u64) {
    (
        event.data["writer"].as_str().expect("writer").to_owned(),
        event.data["seq"].as_u64().expect("seq"),
        event.data["k"].as_u64().expect("k"),
    )
}

const SHARED_STREAMS: usize = 6;
const APPENDS_PER_WRITER: usize = 30;
/// Events written by one writer: appends carry 1, 2, 3, 1, 2, 3... events.
const EVENTS_PER_WRITER: usize = APPENDS_PER_WRITER * 2;

/// One writer's load: appends to overlapping streams, half with `Any`, half with an exact
/// expected version retried on conflict.
async fn write_load(log: Arc<PostgresLog>, writer: String, streams: Vec<String>) {
    let offset = writer.bytes().map(usize::from).sum::<usize>();
    let mut known: HashMap<String, u64> = HashMap::new();
    for seq in 0..APPENDS_PER_WRITER {
        let stream = &streams[(offset + seq) % streams.len()];
        let events = (0..1 + seq % 3)
            .map(|k| new_event("note_added", json!({"writer": writer, "seq": seq, "k": k})))
            .collect();
        let mut request = append_request(stream, ExpectedVersion::Any, events);
        if seq % 2 == 1 {
            request.expected = ExpectedVersion::Exact(known.get(stream).copied().unwrap_or(0));
        }
        loop {
            match log.append(request.clone()).await {
                Ok(AppendOutcome::Committed(c)) => {
                    known.insert(stream.clone(), c.version);
                    break;
                }
                Err(Error::WrongExpectedVersion { actual, .. }) => {
                    request.expected = ExpectedVersion::Exact(actual);
                }
                other => panic!("writer {writer}: append got {other:?}"),
            }
        }
    }
}

/// A child process of `postgres_writers_in_tasks_and_processes_tail_exactly_once`: started
/// by it with `CLOSELOOP_PG_WRITER_CHILD=<schema>;<child>;<stream>,<stream>...`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of postgres_writers_in_tasks_and_processes_tail_exactly_once"]
async fn writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!("writer_child runs only as a child of the concurrency test");
        return;
    };
    let mut parts = spec.split(';');
    let (schema, child, streams) = (
        parts.next().expect("schema").to_owned(),
        parts.next().expect("child").to_owned(),
        parts
            .next()
            .expect("streams")
            .split(',')
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    let log = Arc::new(connect(&url(), options(&schema)).await);
    let tasks: Vec<_> = (0..CHILD_TASKS)
        .map(|t| {
            tokio::spawn(write_load(
                log.clone(),
                format!("{child}-t{t}"),
                streams.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("child writer");
    }
}

const CHILDREN: usize = 3;
const CHILD_TASKS: usize = 4;
const PARENT_TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_writers_in_tasks_and_processes_tail_exactly_once() {
    const TOTAL: usize = (PARENT_TASKS + CHILDREN * CHILD_TASKS) * EVENTS_PER_WRITER;
    let scratch = Scratch::new().await;
    let log = Arc::new(scratch.log().await);
    let streams: Vec<String> = (0..SHARED_STREAMS).map(|_| stream_name("ticket")).collect();

    // The tail: every event exactly once, in position order, with no gap.
    let tail = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after: Position = 0;
            let deadline = Instant::now() + Duration::from_secs(240);
            while seen.len() < TOTAL {
                assert!(
                    Instant::now() < deadline,
                    "the tail saw only {} events",
                    seen.len()
                );
                let page = log
                    .read_all(after, 100, Filter::All)
                    .await
                    .expect("tail read");
                if page.is_empty() {
                    log.wait_beyond(after, Duration::from_secs(5))
                        .await
                        .expect("tail wait");
                    continue;
                }
                for event in page {
                    assert_eq!(
                        event.position,
                        after + 1,
                        "the tail saw position {} right after {after}",
                        event.position
                    );
                    after = event.position;
                    seen.push(event);
                }
            }
            seen
        })
    };

    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..CHILDREN)
        .map(|c| {
            tokio::process::Command::new(&exe)
                .args([
                    "--exact",
                    "postgres::writer_child",
                    "--ignored",
                    "--test-threads",
                    "1",
                ])
                .env(
                    CHILD_ENV,
                    format!("{};p{c};{}", scratch.schema, streams.join(",")),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a writer process")
        })
        .collect();
    // Start writing here once the children are writing too.
    let started = log
        .wait_beyond(0, Duration::from_secs(60))
        .await
        .expect("wait");
    assert!(started > 0, "no child process wrote within 60 s");
    let parent_tasks: Vec<_> = (0..PARENT_TASKS)
        .map(|t| {
            tokio::spawn(write_load(
                log.clone(),
                format!("main-t{t}"),
                streams.clone(),
            ))
        })
        .collect();
    for task in parent_tasks {
        task.await.expect("writer task");
    }
    let stats = log.stats();
    eprintln!("writer of the test process: {stats:?}");
    assert!(
        stats.guard_misses > 0,
        "the other processes wrote between this one's batches: its cached heads went stale"
    );
    for child in children {
        let output = child.wait_with_output().await.expect("child");
        assert!(
            output.status.success(),
            "a writer process failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let seen = tokio::time::timeout(Duration::from_secs(240), tail)
        .await
        .expect("the tail finished")
        .expect("tail task");
    let keys: HashSet<_> = seen.iter().map(event_key).collect();
    assert_eq!(keys.len(), TOTAL, "the tail saw every event exactly once");
    let everything = assert_log_sound(&*log, &HashMap::new()).await;
    assert_eq!(
        everything.len(),
        TOTAL,
        "positions are 1..=N with N the events written"
    );
    assert_eq!(seen, everything, "the tail saw what the log holds");
    for stream in &streams {
        let events = log.read_stream(stream, 0).await.expect("read_stream");
        assert_eq!(verify_chain(&events), vec![], "chain of {stream}");
    }
}

// ---------------------------------------------------------------------------------------
// Faults.

/// Kills the log's connections (writer, listener, readers) again and again under load:
/// every append is answered once the connection is back, none is lost, none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_terminated_connections_lose_and_double_nothing() {
    const WRITERS: usize = 8;
    const APPENDS: usize = 100;
    let scratch = Scratch::new().await;
    let app = format!("cl_kill_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let log = Arc::new(
        connect(
            &url(),
            PostgresOptions {
                application_name: Some(app.clone()),
                ..scratch.options()
            },
        )
        .await,
    );
    let streams: Vec<String> = (0..4).map(|_| stream_name("ticket")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    // Acknowledged appends: the killer strikes again only once one more has gone through,
    // so that a slow machine, where getting a connection back takes longer than the
    // killer's pace, still makes progress.
    let progress = Arc::new(AtomicU64::new(0));
    let killer = {
        let (stop, kills, app) = (stop.clone(), kills.clone(), app.clone());
        let progress = progress.clone();
        tokio::spawn(async move {
            let db = admin().await;
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(40)).await;
                let now = progress.load(Ordering::Relaxed);
                if now == seen {
                    continue;
                }
                seen = now;
                let killed: i64 = db
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                          WHERE application_name = $1",
                        &[&app],
                    )
                    .await
                    .expect("terminate")
                    .get(0);
                kills.fetch_add(killed as u64, Ordering::Relaxed);
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, streams) = (log.clone(), streams.clone());
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut acknowledged = HashMap::new();
                for i in 0..APPENDS {
                    let request = append_request(
                        &streams[(w + i) % streams.len()],
                        ExpectedVersion::Any,
                        numbered_events(1 + i % 2),
                    );
                    let (outcome, failed) = append_retrying(&*log, &request).await;
                    let c = match outcome {
                        AppendOutcome::Committed(c) => c,
                        // Only a retry after a failure may find its command already there.
                        AppendOutcome::Duplicate(c) if failed > 0 => c,
                        other => panic!("unexpected {other:?}"),
                    };
                    acknowledged.insert(request.command_id, (c, request.events.len()));
                    progress.fetch_add(1, Ordering::Relaxed);
                    // And a retry of an acknowledged command is a duplicate.
                    if i % 10 == 0 {
                        let (again, _) = append_retrying(&*log, &request).await;
                        assert!(matches!(again, AppendOutcome::Duplicate(_)));
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = HashMap::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.expect("killer");
    assert!(
        kills.load(Ordering::Relaxed) > 0,
        "no connection was killed"
    );
    assert!(log.stats().reconnects >= 1, "the writer reconnected");
    let events = assert_log_sound(&*log, &acknowledged).await;
    assert_eq!(events.len(), WRITERS * APPENDS * 3 / 2);
}

/// What PostgreSQL's clients see of a restart or a network cut, on a port of its own: in
/// `Blackhole` requests still reach the server but replies are swallowed; in `Blackhole`
/// and `Cut` new connections are refused; switching to `Cut` drops every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Open,
    Blackhole,
    Cut,
}

struct Proxy {
    port: u16,
    flow: watch::Sender<Flow>,
    /// How many client connections are piped through now.
    pipes: watch::Sender<usize>,
    task: tokio::task::JoinHandle<()>,
}

/// One piped connection, counted in `Proxy::pipes` until both its ends are closed.
struct PipeCount(watch::Sender<usize>);

impl Drop for PipeCount {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.flow.send_replace(Flow::Cut);
    }
}

impl Proxy {
    async fn start() -> Proxy {
        let config: tokio_postgres::Config = url().parse().expect("test URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            other => panic!("the proxy needs a TCP host, not {other:?}"),
        };
        let upstream = format!(
            "{host}:{}",
            config.get_ports().first().copied().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (flow, _) = watch::channel(Flow::Open);
        let flows = flow.clone();
        let pipes = watch::channel(0).0;
        let counts = pipes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *flows.borrow() != Flow::Open {
                    continue; // refused: dropped at once
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                counts.send_modify(|n| *n += 1);
                let count = PipeCount(counts.clone());
                let flow = flows.subscribe();
                tokio::spawn(async move {
                    pipe(client, server, flow).await;
                    drop(count);
                });
            }
        });
        Proxy {
            port,
            flow,
            pipes,
            task,
        }
    }

    fn set(&self, flow: Flow) {
        self.flow.send_replace(flow);
    }

    /// Drops every connection and returns once all are closed, so a `set(Flow::Open)` right
    /// after cannot be taken by a pipe for the new state before it saw the cut.
    async fn cut(&self) {
        self.set(Flow::Cut);
        let mut pipes = self.pipes.subscribe();
        tokio::time::timeout(Duration::from_secs(20), pipes.wait_for(|n| *n == 0))
            .await
            .expect("the proxy's connections close after a cut")
            .expect("the proxy is alive");
    }

    fn url(&self) -> String {
        let config: tokio_postgres::Config = url().parse().expect("test URL");
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            config.get_user().unwrap_or("postgres"),
            self.port,
            config.get_dbname().unwrap_or("postgres")
        )
    }
}

async fn pipe(client: TcpStream, server: TcpStream, mut flow: watch::Receiver<Flow>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            changed = flow.changed() => {
                if changed.is_err() || *flow.borrow() == Flow::Cut {
                    return; // both connections close
                }
            }
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if server_write.write_all(&up[..n]).await.is_err() { return },
            },
            read = server_read.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if *flow.borrow() == Flow::Open
                    && client_write.write_all(&down[..n]).await.is_err() { return },
            },
        }
    }
}

async fn command_committed_on_server(schema: &str, command_id: Uuid) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let db = admin().await;
    while Instant::now() < deadline {
        let found = db
            .query(
                &format!("SELECT 1 FROM \"{schema}\".commands WHERE command_id = $1"),
                &[&command_id],
            )
            .await
            .expect("look up the command");
        if !found.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Sends `request` through `proxy` with the server's replies swallowed, and returns once
/// the server has committed it: the append's task is still waiting for its reply.
async fn append_whose_reply_is_lost(
    log: &Arc<PostgresLog>,
    proxy: &Proxy,
    schema: &str,
    request: &AppendRequest,
) -> tokio::task::JoinHandle<Result<AppendOutcome, Error>> {
    proxy.set(Flow::Blackhole);
    let pending = {
        let (log, request) = (log.clone(), request.clone());
        tokio::spawn(async move { log.append(request).await })
    };
    assert!(
        command_committed_on_server(schema, request.command_id).await,
        "the append reached the server and committed"
    );
    pending
}

/// A log connected through a proxy, in a scratch schema, with one event committed on a
/// fresh stream: where the lost-reply tests begin.
struct Proxied {
    scratch: Scratch,
    proxy: Proxy,
    log: Arc<PostgresLog>,
    stream: String,
    /// The first append and its outcome.
    first: (AppendRequest, Committed),
}

impl Proxied {
    /// With `options` applied to the scratch schema's defaults.
    async fn start(options: impl FnOnce(PostgresOptions) -> PostgresOptions) -> Proxied {
        let scratch = Scratch::new().await;
        let proxy = Proxy::start().await;
        let log = Arc::new(connect(&proxy.url(), options(scratch.options())).await);
        let stream = stream_name("ticket");
        let request = append_request(&stream, ExpectedVersion::Any, numbered_events(1));
        let committed = commit(&*log, request.clone()).await;
        Proxied {
            scratch,
            proxy,
            log,
            stream,
            first: (request, committed),
        }
    }

    /// [`append_whose_reply_is_lost`] on this log.
    async fn lose_reply_of(
        &self,
        request: &AppendRequest,
    ) -> tokio::task::JoinHandle<Result<AppendOutcome, Error>> {
        append_whose_reply_is_lost(&self.log, &self.proxy, &self.scratch.schema, request).await
    }
}

/// The server commits an append but its reply is lost and the server stays unreachable:
/// the caller is told the outcome is unknown, and its retry with the same command id
/// answers `Duplicate` with the first outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unknown_outcome_then_retry_answers_duplicate() {
    let t = Proxied::start(|options| PostgresOptions {
        reconnect_timeout_ms: 300,
        ..options
    })
    .await;
    let (proxy, log) = (&t.proxy, t.log.clone());
    let request = append_request(&t.stream, ExpectedVersion::Exact(1), numbered_events(2));
    let pending = t.lose_reply_of(&request).await;
    proxy.set(Flow::Cut);
    match pending.await.expect("append task") {
        Err(Error::Unavailable(message)) => assert!(
            message.contains("unknown") && message.contains("same command id"),
            "the error says the outcome is unknown: {message}"
        ),
        other => panic!("a lost reply with no way back: expected Unavailable, got {other:?}"),
    }
    proxy.set(Flow::Open);
    let (outcome, _) = append_retrying(&*log, &request).await;
    let AppendOutcome::Duplicate(first) = outcome else {
        panic!("the retry of a committed append must be a duplicate, got {outcome:?}");
    };
    assert_eq!((first.version, first.position), (3, 3));
    let acknowledged = HashMap::from([(request.command_id, (first, 2))]);
    let events = assert_log_sound(&*log, &acknowledged).await;
    assert_eq!(events.len(), 3, "nothing doubled");
}

/// The same lost reply, but the server is back within the writer's reconnect budget: the
/// writer finds the command by its id and answers `Committed`, as if the reply had arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_reply_is_resolved_by_command_id_inside_the_writer() {
    let t = Proxied::start(|options| options).await;
    let (proxy, log) = (&t.proxy, t.log.clone());
    let request = append_request(&t.stream, ExpectedVersion::Exact(1), numbered_events(2));
    let pending = t.lose_reply_of(&request).await;
    proxy.cut().await;
    proxy.set(Flow::Open);
    let committed = match pending.await.expect("append task") {
        Ok(AppendOutcome::Committed(c)) => c,
        other => panic!("expected Committed after the writer resolved it, got {other:?}"),
    };
    assert_eq!((committed.version, committed.position), (3, 3));
    assert_eq!(
        log.append(request.clone()).await.expect("retry"),
        AppendOutcome::Duplicate(committed.clone())
    );
    let acknowledged = HashMap::from([(request.command_id, (committed, 2))]);
    assert_eq!(assert_log_sound(&*log, &acknowledged).await.len(), 3);
    assert!(log.stats().reconnects >= 1);
}

/// A lone append is written by its caller's own task (a direct append); when that caller
/// gives up while the write is in flight (its future dropped, as a timeout does), the append
/// is left in doubt but nothing is lost, doubled or blocked: the next append reconnects and
/// reads the truth under the lock, the retry with the same command id answers `Duplicate`,
/// and lone appends are direct again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_abandoned_direct_append_is_resolved_and_doubles_nothing() {
    let t = Proxied::start(|options| options).await;
    let (proxy, log, stream) = (&t.proxy, t.log.clone(), t.stream.as_str());
    let (first_request, first) = t.first.clone();
    let before = log.stats();
    assert_eq!(
        before.direct_appends, 1,
        "a lone append is direct: {before:?}"
    );

    let request = append_request(stream, ExpectedVersion::Exact(1), numbered_events(2));
    let abandoned = t.lose_reply_of(&request).await;
    abandoned.abort();
    assert!(
        abandoned.await.expect_err("aborted").is_cancelled(),
        "the caller gave up before any answer"
    );
    // No cut: the abandoned turn dropped its connection itself (`reconnects` below).
    proxy.set(Flow::Open);

    let (outcome, _) = append_retrying(&*log, &request).await;
    let AppendOutcome::Duplicate(retried) = outcome else {
        panic!("the abandoned append committed: its retry must be a duplicate, got {outcome:?}");
    };
    assert_eq!((retried.version, retried.position), (3, 3));
    let next_request = append_request(stream, ExpectedVersion::Exact(3), numbered_events(1));
    let next = commit(&*log, next_request.clone()).await;
    assert_eq!((next.version, next.position), (4, 4));
    let after = log.stats();
    assert!(
        after.reconnects >= 1,
        "the dropped connection was reopened: {after:?}"
    );
    assert_eq!(
        after.direct_appends,
        before.direct_appends + 3,
        "the abandoned append, its retry and the next one were all direct: nothing was \
         left outstanding ({after:?})"
    );
    let acknowledged = HashMap::from([
        (first_request.command_id, (first, 1)),
        (request.command_id, (retried, 2)),
        (next_request.command_id, (next, 1)),
    ]);
    assert_eq!(assert_log_sound(&*log, &acknowledged).await.len(), 4);
}

/// Appends whose callers give up while they wait for room in the writer's queue leave
/// nothing behind: they are not counted as in flight afterwards (which would turn direct
/// appends off and make every batch wait for them), and the appends around them commit.
/// The queue holds one append; a direct append whose reply is swallowed holds the writer's
/// state, so behind it the writer thread holds one append (taken from the queue, waiting for
/// the state), the queue one more, and the rest wait for room until their callers give up.
/// Which appends take those two places is up to the scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_abandoned_while_queued_are_uncounted() {
    const GIVEN_UP: usize = 6;
    /// The writer thread's hand and the queue's one place.
    const PLACES: usize = 2;
    let t = Proxied::start(|options| PostgresOptions {
        queue_appends_max: 1,
        ..options
    })
    .await;
    let log = t.log.clone();
    let held = append_request(&t.stream, ExpectedVersion::Exact(1), numbered_events(1));
    let held_task = t.lose_reply_of(&held).await;
    // Appends of one event each to new streams, each in a task of its own.
    let spawn_appends = |count: usize| {
        let requests: Vec<AppendRequest> = (0..count)
            .map(|_| {
                append_request(
                    &stream_name("ticket"),
                    ExpectedVersion::Any,
                    numbered_events(1),
                )
            })
            .collect();
        let tasks: Vec<_> = requests
            .iter()
            .map(|request| {
                let (log, request) = (log.clone(), request.clone());
                tokio::spawn(async move { log.append(request).await })
            })
            .collect();
        (requests, tasks)
    };
    let (kept, kept_tasks) = spawn_appends(2);
    let (given_up, given_up_tasks) = spawn_appends(GIVEN_UP);
    let all = 1 + kept.len() + GIVEN_UP;
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.stats().outstanding < all {
        assert!(
            Instant::now() < deadline,
            "appends in flight: {:?}",
            log.stats()
        );
        tokio::time::sleep(Duration::from_millis(1)).await; // poll interval
    }
    for task in given_up_tasks {
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
    }
    // At most PLACES of those given up had been taken in; the others were waiting for room.
    assert!(
        log.stats().outstanding <= 1 + kept.len() + PLACES,
        "appends given up while waiting for room are uncounted: {:?}",
        log.stats()
    );

    // Let the held append's connection go: it is resolved by its command id, then the
    // writer thread commits the rest.
    t.proxy.cut().await;
    t.proxy.set(Flow::Open);
    let mut acknowledged = HashMap::from([(t.first.0.command_id, (t.first.1.clone(), 1))]);
    match held_task.await.expect("append task") {
        Ok(AppendOutcome::Committed(c)) => acknowledged.insert(held.command_id, (c, 1)),
        other => panic!("the held append is resolved by its command id: {other:?}"),
    };
    for (request, task) in kept.iter().zip(kept_tasks) {
        match task.await.expect("append task") {
            Ok(AppendOutcome::Committed(c)) => acknowledged.insert(request.command_id, (c, 1)),
            other => panic!("an append behind the held one commits: {other:?}"),
        };
    }
    assert_eq!(log.stats().outstanding, 0, "{:?}", log.stats());

    // Lone appends are direct again (after one through the writer thread, whose batch is
    // then alone).
    for _ in 0..2 {
        let request = append_request(&t.stream, ExpectedVersion::Any, numbered_events(1));
        acknowledged.insert(
            request.command_id,
            (commit(&*log, request.clone()).await, 1),
        );
    }
    let before = log.stats().direct_appends;
    let request = append_request(&t.stream, ExpectedVersion::Any, numbered_events(1));
    acknowledged.insert(
        request.command_id,
        (commit(&*log, request.clone()).await, 1),
    );
    assert_eq!(log.stats().direct_appends, before + 1, "{:?}", log.stats());

    // Every acknowledged append once; of those given up, at most those that were taken in.
    let events = assert_log_sound(&*log, &acknowledged).await;
    let written: HashSet<Uuid> = events.iter().map(|e| e.metadata.command_id).collect();
    let queued = given_up
        .iter()
        .filter(|r| written.contains(&r.command_id))
        .count();
    assert!(
        queued <= PLACES,
        "{queued} appends given up while waiting for room were written"
    );
    assert_eq!(events.len(), acknowledged.len() + queued);
}

/// Lone appends are direct (written by their callers' tasks) and overlapping ones go
/// through the writer thread: a load that keeps switching between the two hands the writer's
/// state back and forth, and the log stays exact (every append once, positions 1..=N,
/// every stream's chain intact).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_direct_and_batched_appends_interleave_exactly() {
    const ROUNDS: usize = 10;
    const LONE: usize = 5;
    const BURST: usize = 32;
    let scratch = Scratch::new().await;
    let log = Arc::new(connect(&url(), scratch.options()).await);
    let streams: Vec<String> = (0..4).map(|_| stream_name("ticket")).collect();
    let mut acknowledged = HashMap::new();
    for _ in 0..ROUNDS {
        for i in 0..LONE {
            let request = append_request(
                &streams[i % streams.len()],
                ExpectedVersion::Any,
                numbered_events(1 + i % 2),
            );
            let committed = commit(&*log, request.clone()).await;
            acknowledged.insert(request.command_id, (committed, request.events.len()));
        }
        let barrier = Arc::new(Barrier::new(BURST));
        let burst: Vec<_> = (0..BURST)
            .map(|k| {
                let (log, barrier) = (log.clone(), barrier.clone());
                let request = append_request(
                    &streams[k % streams.len()],
                    ExpectedVersion::Any,
                    numbered_events(1),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    let committed = commit(&*log, request.clone()).await;
                    (request, committed)
                })
            })
            .collect();
        for task in burst {
            let (request, committed) = task.await.expect("append task");
            acknowledged.insert(request.command_id, (committed, request.events.len()));
        }
    }
    let stats = log.stats();
    // After a burst, the first lone append goes through the thread (its batch was not
    // alone); the others of its round are direct.
    assert!(
        stats.direct_appends >= (ROUNDS * (LONE - 1)) as u64,
        "lone appends are direct: {stats:?}"
    );
    assert!(
        stats.batches < stats.appends,
        "the bursts shared transactions: {stats:?}"
    );
    let events = assert_log_sound(&*log, &acknowledged).await;
    assert_eq!(acknowledged.len(), ROUNDS * (LONE + BURST));
    assert_eq!(events.len(), ROUNDS * (LONE + LONE / 2 + BURST));
}

/// An outage in the middle of a load (every connection dropped, the server unreachable for
/// longer than the writer waits): appends caught in it fail with `Unavailable`, their
/// callers retry with the same command id, and in the end every command is in the log
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_under_load_loses_nothing_acknowledged() {
    const WRITERS: usize = 6;
    const APPENDS: usize = 60;
    let scratch = Scratch::new().await;
    let proxy = Proxy::start().await;
    let log = Arc::new(
        connect(
            &proxy.url(),
            PostgresOptions {
                reconnect_timeout_ms: 200,
                ..scratch.options()
            },
        )
        .await,
    );
    let streams: Vec<String> = (0..3).map(|_| stream_name("ticket")).collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, streams) = (log.clone(), streams.clone());
            tokio::spawn(async move {
                let mut acknowledged = HashMap::new();
                let mut failures = 0;
                for i in 0..APPENDS {
                    let request = append_request(
                        &streams[(w + i) % streams.len()],
                        ExpectedVersion::Any,
                        numbered_events(1 + i % 3),
                    );
                    let (outcome, failed) = append_retrying(&*log, &request).await;
                    failures += failed;
                    let committed = match outcome {
                        AppendOutcome::Committed(c) => c,
                        // Only a retry after a failure may find its command already there.
                        AppendOutcome::Duplicate(c) if failed > 0 => c,
                        other => panic!("unexpected {other:?}"),
                    };
                    acknowledged.insert(request.command_id, (committed, request.events.len()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (acknowledged, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.set(Flow::Cut);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    proxy.set(Flow::Open);
    let mut acknowledged = HashMap::new();
    let mut failures = 0;
    for writer in writers {
        let (acked, failed) = writer.await.expect("writer");
        acknowledged.extend(acked);
        failures += failed;
    }
    assert!(failures > 0, "the outage was not noticed by any append");
    let events = assert_log_sound(&*log, &acknowledged).await;
    assert_eq!(events.len(), WRITERS * APPENDS * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_server_is_unavailable_with_the_cause() {
    // Port 1 on localhost: nothing listens there.
    match PostgresLog::connect("postgres://postgres@127.0.0.1:1/test").await {
        Err(Error::Unavailable(message)) => assert!(
            message.contains("cannot connect") && message.contains("refused"),
            "the message names what failed and why: {message}"
        ),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("nothing listens on port 1"),
    }
}
