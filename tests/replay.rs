//! Schema evolution and `closeloop replay`.
//!
//! - `note_added` schema version 1 (no `visible_to_customer`) stored raw reads back as
//!   version 2 (internal note) through `StoredEvent::decode`, `closeloop history` and the
//!   tables, while the stored row stays byte for byte what was written and its hash chain
//!   verifies; an unknown future version is an error naming the stream and version.
//! - A replay (the tables rebuilt into a shadow, then swapped in) gives exactly the rows live
//!   processing gave (`TableStore::dump`), on SQLite and PostgreSQL; an interrupted replay
//!   leaves the live tables untouched and resumes to the same result; a replay swapped in
//!   under a running projector is never overwritten by it (fenced, it reloads and goes on);
//!   `--until` builds the tables as of a position or time under their own name, which
//!   `open_replayed` reads.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{Actor, Event, NoteAdded};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{
    verify_chain, AppendRequest, EventLog, ExpectedVersion, Metadata, NewEvent, Position,
};
use closeloop_projections::record::Record;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::shadow::Shadows;
use closeloop_projections::tables::sqlite::{SqliteShadows, SqliteTables};
use closeloop_projections::tables::{Dump, TableStore};
use closeloop_replay::rebuild::{self, ReplayConfig, Summary, Until};
use closeloop_workload::{self as workload, WorkloadConfig};
use serde_json::json;
use uuid::Uuid;

fn small(seed: u64, tickets: usize) -> workload::Workload {
    workload::generate(&WorkloadConfig {
        seed,
        tickets,
        days: 4,
        customers: 30,
        ..WorkloadConfig::default()
    })
    .expect("workload")
}

/// Submits the commands, each accepted.
async fn submit<'a>(
    handler: &Handler,
    commands: impl Iterator<Item = &'a closeloop_core::domain::CommandEnvelope>,
) {
    for envelope in commands {
        let reply = handler.handle(envelope.clone()).await;
        assert!(!matches!(reply, Reply::Rejected { .. }), "{reply:?}");
    }
}

pub(crate) fn table_config() -> TableConfig {
    TableConfig {
        batch_events_max: 64,
        cached_tickets_max: 50,
        tail_wait_ms: 10,
    }
}

/// The live projector caught up into `store`; its dump.
pub(crate) async fn fold_live(log: Arc<dyn EventLog>, store: Arc<dyn TableStore>) -> Dump {
    let mut p = TableProjector::open(log, store.clone(), table_config())
        .await
        .unwrap();
    p.catch_up().await.unwrap();
    store.dump().await.unwrap()
}

/// The tables folded from the whole log in one pass, in memory.
async fn one_pass(log: Arc<dyn EventLog>) -> Dump {
    fold_live(log, Arc::new(MemoryTables::new())).await
}

use crate::tables::assert_same;

async fn replay(
    log: &dyn EventLog,
    shadows: &dyn Shadows,
    until: Option<Until>,
    batch: usize,
    stop_after: Option<u64>,
) -> Summary {
    let mut calls = 0;
    let summary = rebuild::replay(
        log,
        shadows,
        until,
        &ReplayConfig {
            batch_events: batch,
            cached_tickets_max: 7,
            stop_after_batches: stop_after,
        },
        &AtomicBool::new(false),
        |_| calls += 1,
    )
    .await
    .unwrap();
    assert!(calls > 0 || summary.events == 0);
    summary
}

/// The live tables equal a replay (which swaps its build in); an interrupted replay leaves
/// them untouched and resumes to the same result.
async fn replay_equals_live(
    log: Arc<dyn EventLog>,
    store: Arc<dyn TableStore>,
    shadows: &dyn Shadows,
) {
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    submit(&handler, small(11, 40).sequential()).await;
    let before = fold_live(log.clone(), store.clone()).await;
    assert!(!before.tickets.is_empty());
    // The workload's batch problem: three incidents linked `caused_by` the problem ticket
    // and a duplicate merged into it, each recorded on both tickets.
    let relations = |relation: &str| {
        before
            .ticket_links
            .iter()
            .filter(|l| l.relation == relation)
            .count()
    };
    assert_eq!((relations("caused_by"), relations("causes")), (3, 3));
    assert_eq!((relations("merged_into"), relations("merged_from")), (1, 1));
    let head = log.head().await.unwrap();
    assert_eq!(store.open().await.unwrap().position, head);

    // Interrupted after 3 batches: the live tables are untouched, the build is kept.
    let partial = replay(log.as_ref(), shadows, None, 50, Some(3)).await;
    assert!(!partial.completed);
    assert!(
        partial.position > 0 && partial.position < head,
        "{partial:?}"
    );
    assert_same(&store.dump().await.unwrap(), &before);

    // Running again resumes from there and swaps.
    let done = replay(log.as_ref(), shadows, None, 50, None).await;
    assert!(done.completed);
    assert_eq!(done.resumed_from, partial.position);
    assert_eq!(done.position, head);
    assert_same(&store.dump().await.unwrap(), &before);
    assert_eq!(store.open().await.unwrap().position, head);

    // And from scratch, in another batch size, the same rows.
    let again = replay(log.as_ref(), shadows, None, 1_000, None).await;
    assert_eq!((again.resumed_from, again.completed), (0, true));
    assert_same(&store.dump().await.unwrap(), &before);
    assert_same(&before, &one_pass(log).await);
}

/// A projector tailing the live tables while a replay is swapped in: its next commit is
/// fenced (the new tables' generation is not the one it read), it reloads and goes on from
/// the swapped checkpoint; it never writes what it folded from the old tables into the new.
async fn swapped_under_a_projector(
    log: Arc<dyn EventLog>,
    store: Arc<dyn TableStore>,
    shadows: &dyn Shadows,
) {
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    let commands: Vec<_> = small(17, 30).sequential().cloned().collect();
    let third = commands.len() / 3;
    submit(&handler, commands[..third].iter()).await;
    let mut projector = TableProjector::open(log.clone(), store.clone(), table_config())
        .await
        .unwrap();
    projector.catch_up().await.unwrap();
    let at = log.head().await.unwrap();
    let generation = store.open().await.unwrap().generation;

    // Swapped in at the very position the projector stands at.
    let swapped = replay(log.as_ref(), shadows, None, 40, None).await;
    assert_eq!((swapped.position, swapped.completed), (at, true));
    let new = store.open().await.unwrap();
    assert_eq!(new.position, at);
    assert_ne!(new.generation, generation, "a swap brings a new generation");

    submit(&handler, commands[third..2 * third].iter()).await;
    projector.step().await.unwrap();
    assert_eq!(
        projector.fenced(),
        1,
        "the projector's stale commit is fenced"
    );
    let kept = store.open().await.unwrap();
    assert_eq!(
        (kept.position, &kept.generation),
        (at, &new.generation),
        "nothing written"
    );
    // It goes on from the swapped checkpoint.
    submit(&handler, commands[2 * third..].iter()).await;
    projector.catch_up().await.unwrap();
    assert_eq!(projector.fenced(), 1);
    assert_eq!(
        store.open().await.unwrap().position,
        log.head().await.unwrap()
    );
    assert_same(&store.dump().await.unwrap(), &one_pass(log).await);
}

/// `--until P` gives the tables as of P under their own name, the live ones untouched; so
/// does `--until TIME` (everything before the first event that occurred after TIME).
async fn until_is_the_tables_as_of_then(
    url: &str,
    log: Arc<dyn EventLog>,
    store: Arc<dyn TableStore>,
    shadows: &dyn Shadows,
) {
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    let commands: Vec<_> = small(5, 40).sequential().cloned().collect();
    let half = commands.len() / 2;
    submit(&handler, commands[..half].iter()).await;
    let as_of: Position = log.head().await.unwrap();
    let expected = one_pass(log.clone()).await;
    submit(&handler, commands[half..].iter()).await;
    let live_now = fold_live(log.clone(), store.clone()).await;
    assert!(log.head().await.unwrap() > as_of);

    let until = Until::Position(as_of);
    assert!(matches!(
        rebuild::open_replayed(url, until).await,
        Err(closeloop_replay::Error::NotReplayed(_))
    ));
    let partial = replay(log.as_ref(), shadows, Some(until), 37, Some(2)).await;
    assert!(!partial.completed);
    assert!(
        matches!(
            rebuild::open_replayed(url, until).await,
            Err(closeloop_replay::Error::NotReplayed(_))
        ),
        "an interrupted build is not read"
    );
    let summary = replay(log.as_ref(), shadows, Some(until), 37, None).await;
    assert!(summary.completed);
    assert_eq!(summary.position, as_of);
    let replayed = rebuild::open_replayed(url, until).await.unwrap();
    assert_eq!(replayed.open().await.unwrap().position, as_of);
    assert_same(&replayed.dump().await.unwrap(), &expected);
    assert_same(&store.dump().await.unwrap(), &live_now);

    // `--until TIME`: the same tables as `--until` the position before the first event
    // that occurred after TIME.
    let all = log
        .read_all(0, 100_000, closeloop_core::log::Filter::All)
        .await
        .unwrap();
    let t = all[all.len() / 3].metadata.occurred_at;
    let stop = all
        .iter()
        .find(|e| e.metadata.occurred_at > t)
        .map_or(all.len() as Position, |e| e.position - 1);
    let by_time = replay(log.as_ref(), shadows, Some(Until::Time(t)), 29, None).await;
    assert_eq!((by_time.position, by_time.completed), (stop, true));
    let by_position = replay(
        log.as_ref(),
        shadows,
        Some(Until::Position(stop)),
        1_000,
        None,
    )
    .await;
    assert_eq!(by_position.position, stop);
    let time_tables = rebuild::open_replayed(url, Until::Time(t)).await.unwrap();
    let position_tables = rebuild::open_replayed(url, Until::Position(stop))
        .await
        .unwrap();
    assert_same(
        &time_tables.dump().await.unwrap(),
        &position_tables.dump().await.unwrap(),
    );

    // Beyond the head: refused.
    let head = log.head().await.unwrap();
    let beyond = rebuild::replay(
        log.as_ref(),
        shadows,
        Some(Until::Position(head + 1)),
        &ReplayConfig::default(),
        &AtomicBool::new(false),
        |_| {},
    )
    .await;
    assert!(matches!(
        beyond,
        Err(closeloop_replay::Error::UntilBeyondHead { .. })
    ));
}

/// A fresh SQLite log, its live tables and its shadows, in a temporary directory.
async fn sqlite() -> (
    tempfile::TempDir,
    String,
    Arc<dyn EventLog>,
    Arc<dyn TableStore>,
    SqliteShadows,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(path.to_str().unwrap()).await.unwrap());
    let store: Arc<dyn TableStore> = Arc::new(SqliteTables::open(&path).unwrap());
    let shadows = SqliteShadows::new(&path).unwrap();
    (
        dir,
        format!("sqlite://{}", path.display()),
        log,
        store,
        shadows,
    )
}

#[tokio::test]
async fn replay_equals_live_sqlite() {
    let (_dir, _url, log, store, shadows) = sqlite().await;
    replay_equals_live(log, store, &shadows).await;
}

#[tokio::test]
async fn replay_swapped_under_a_projector_sqlite() {
    let (_dir, _url, log, store, shadows) = sqlite().await;
    swapped_under_a_projector(log, store, &shadows).await;
}

#[tokio::test]
async fn replay_until_sqlite() {
    let (_dir, url, log, store, shadows) = sqlite().await;
    until_is_the_tables_as_of_then(&url, log, store, &shadows).await;
}

/// A log in memory has no tables to rebuild: refused by name.
#[tokio::test]
async fn replay_of_a_memory_store_is_refused() {
    let e = rebuild::shadows("memory:").await.err().unwrap().to_string();
    assert!(e.contains("memory:"), "{e}");
    let _ = MemoryLog::new();
}

pub(crate) mod postgres {
    use super::*;
    use closeloop_projections::tables::postgres::{PostgresShadows, PostgresTables};

    pub(crate) fn base() -> String {
        std::env::var("CLOSELOOP_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    fn url(schema: &str) -> String {
        let base = base();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={schema}")
    }

    /// The test's schemas (the log's, `_read` and every build beside it), dropped at the end
    /// even on a panic. Short names: a build's schema name must fit in 63 bytes.
    pub(crate) struct Scratch(pub(crate) String);

    impl Scratch {
        pub(crate) fn new() -> Scratch {
            Scratch(format!(
                "clr_{}",
                &Uuid::new_v4().simple().to_string()[..16]
            ))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let schema = self.0.clone();
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let Ok((client, conn)) =
                            tokio_postgres::connect(&base(), tokio_postgres::NoTls).await
                        else {
                            return;
                        };
                        tokio::spawn(conn);
                        let Ok(rows) = client
                            .query(
                                "SELECT nspname::text FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $1 || '\\_%'",
                                &[&schema],
                            )
                            .await
                        else {
                            return;
                        };
                        for row in rows {
                            let name: String = row.get(0);
                            let _ = client
                                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                                .await;
                        }
                    })
            })
            .join();
        }
    }

    pub(crate) async fn open(
        scratch: &Scratch,
    ) -> (
        String,
        Arc<dyn EventLog>,
        Arc<dyn TableStore>,
        PostgresShadows,
    ) {
        let url = url(&scratch.0);
        let log = closeloop_core::log::open(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url}: {e}; start it with `scripts/services.sh`")
        });
        let store: Arc<dyn TableStore> = Arc::new(PostgresTables::connect(&url).await.unwrap());
        let shadows = PostgresShadows::connect(&url).await.unwrap();
        (url, log, store, shadows)
    }

    /// The indexes of the read schema, with their definitions (schema names left out).
    async fn indexes(scratch: &Scratch) -> Vec<(String, String)> {
        let (client, conn) = tokio_postgres::connect(&base(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let schema = format!("{}_read", scratch.0);
        client
            .query(
                "SELECT indexname::text, replace(indexdef, $1 || '.', '')
                   FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
                &[&schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    #[tokio::test]
    async fn replay_equals_live_postgres() {
        let scratch = Scratch::new();
        let (_url, log, store, shadows) = open(&scratch).await;
        replay_equals_live(log, store.clone(), &shadows).await;
        // The build dropped its secondary indexes while it filled and made them again (on
        // two connections) before the swap: the swapped-in tables have every index the
        // projector's own tables have.
        let swapped = indexes(&scratch).await;
        assert!(
            swapped.iter().any(|(name, _)| name == "deadlines_open"),
            "{swapped:?}"
        );
        let fresh = Scratch::new();
        let (_url, _log, _store, _shadows) = open(&fresh).await;
        assert_eq!(swapped, indexes(&fresh).await);
    }

    #[tokio::test]
    async fn replay_swapped_under_a_projector_postgres() {
        let scratch = Scratch::new();
        let (_url, log, store, shadows) = open(&scratch).await;
        swapped_under_a_projector(log, store, &shadows).await;
    }

    #[tokio::test]
    async fn replay_until_postgres() {
        let scratch = Scratch::new();
        let (url, log, store, shadows) = open(&scratch).await;
        until_is_the_tables_as_of_then(&url, log, store, &shadows).await;
    }
}

fn raw_note(command_id: Uuid, schema_version: u32, data: serde_json::Value) -> NewEvent {
    let at: jiff::Timestamp = "2026-10-27T12:00:00Z".parse().unwrap();
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "note_added".into(),
        schema_version,
        data,
        metadata: Metadata {
            command_id,
            correlation_id: command_id,
            causation_id: command_id,
            actor: Actor::system("release-1"),
            occurred_at: at,
            recorded_at: at,
            command_hash: None,
        },
    }
}

fn stored_row(path: &std::path::Path, position: Position) -> (i64, String, String) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT schema_version, data, hash FROM events WHERE position = ?1",
        [position as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// A `note_added` of schema version 1 reads as version 2, everywhere, and is never rewritten.
#[tokio::test]
async fn note_added_v1_is_upcast_on_read_and_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let url = format!("sqlite://{}", path.display());
    let log = Arc::new(SqliteLog::open(path.to_str().unwrap()).await.unwrap());
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    submit(&handler, small(3, 4).sequential()).await;
    let ticket = log
        .read_all(
            0,
            10_000,
            closeloop_core::log::Filter::Categories(&["ticket"]),
        )
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "ticket_opened")
        .expect("a ticket")
        .stream;
    let ticket_id = ticket.strip_prefix("ticket-").unwrap().to_owned();

    // The first release wrote notes without `visible_to_customer`, as schema version 1.
    let v1 = json!({"ticket_id": ticket_id, "text": "called the customer back"});
    let command_id = Uuid::now_v7();
    let committed = log
        .append(AppendRequest {
            stream: ticket.clone(),
            expected: ExpectedVersion::Any,
            command_id,
            events: vec![raw_note(command_id, 1, v1.clone())],
            unchanged: None,
        })
        .await
        .unwrap()
        .committed()
        .clone();
    let position = committed.position;
    let row = stored_row(&path, position);
    assert_eq!(row.0, 1);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&row.1).unwrap(),
        v1
    );

    // StoredEvent::decode: version 2, an internal note.
    let events = log.read_stream(&ticket, 0).await.unwrap();
    let stored = events.iter().find(|e| e.position == position).unwrap();
    assert_eq!(stored.schema_version, 1);
    let expected = Event::NoteAdded(NoteAdded {
        ticket_id: ticket_id.parse().unwrap(),
        text: "called the customer back".into(),
        visible_to_customer: false,
    });
    assert_eq!(stored.decode().unwrap(), expected);
    assert_eq!(expected.schema_version(), 2);
    // The projections' decoders, from the stored event and from its JSON (fast path).
    assert_eq!(Record::from_stored(stored).unwrap().event, expected);
    let bytes = serde_json::to_vec(stored).unwrap();
    assert_eq!(Record::from_json(&bytes).unwrap().event, expected);

    // The tables fold it (live and by replay), and the engine keeps working on the ticket.
    let store: Arc<dyn TableStore> = Arc::new(SqliteTables::open(&path).unwrap());
    let live_tables = fold_live(log.clone(), store.clone()).await;
    let shadows = SqliteShadows::new(&path).unwrap();
    let summary = replay(log.as_ref(), &shadows, None, 100, None).await;
    assert!(summary.completed);
    assert_same(&store.dump().await.unwrap(), &live_tables);
    assert!(verify_chain(&log.read_stream(&ticket, 0).await.unwrap()).is_empty());

    // `closeloop history`: the note, as an internal note.
    drop(handler);
    let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &url, "history", &ticket_id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("internal note: called the customer back"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &url, "history", &ticket_id, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["position"] == json!(position))
        .unwrap();
    // History shows the stored record as stored (its hash verifies).
    assert_eq!(
        (shown["schema_version"].clone(), shown["data"].clone()),
        (json!(1), v1.clone())
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &url, "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // The stored row is unchanged, byte for byte.
    assert_eq!(stored_row(&path, position), row);

    // A future version this build does not know: an error naming the stream and version.
    let other = log
        .append(AppendRequest {
            stream: ticket.clone(),
            expected: ExpectedVersion::Any,
            command_id: Uuid::now_v7(),
            events: vec![raw_note(Uuid::now_v7(), 3, v1.clone())],
            unchanged: None,
        })
        .await
        .unwrap()
        .committed()
        .clone();
    let events = log.read_stream(&ticket, 0).await.unwrap();
    let future = events
        .iter()
        .find(|e| e.position == other.position)
        .unwrap();
    let e = future.decode().unwrap_err().to_string();
    assert!(e.contains(&ticket), "{e}");
    assert!(e.contains(&format!("version {}", other.version)), "{e}");
    assert!(e.contains("schema version 3"), "{e}");
}

/// The binary: `replay all --until P`, read back with `open_replayed`; `replay tables`
/// swaps; an unknown name is refused, naming the known ones.
#[test]
fn cli_replay_until_then_all() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(&url)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&[
        "demo",
        "--tickets",
        "60",
        "--days",
        "3",
        "--customers",
        "20",
    ]);
    let summary = ok(&["replay", "all", "--until", "300"]);
    assert!(summary.contains("events/s"), "{summary}");
    assert!(summary.contains("until-300"), "{summary}");
    let position = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let tables = rebuild::open_replayed(&url, Until::Position(300))
            .await
            .unwrap();
        tables.open().await.unwrap().position
    });
    assert_eq!(position, 300);
    let live = ok(&["replay", "tables"]);
    assert!(live.contains("switched"), "{live}");
    let refused = run(&["replay", "sla"]);
    assert!(!refused.status.success());
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("sla") && e.contains("tables"), "{e}");
}
