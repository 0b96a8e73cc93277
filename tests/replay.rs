//! Schema evolution and `closeloop replay`.
//!
//! - `note_added` schema version 1 (no `visible_to_customer`) stored raw reads back as
//!   version 2 (internal note) through `StoredEvent::decode`, `closeloop history` and the
//!   projections, while the stored row stays byte for byte what was written and its hash
//!   chain verifies; an unknown future version is an error naming the stream and version.
//! - A replay (blue/green rebuild, then an atomic switch) gives byte for byte the read models
//!   live processing gave, on memory, SQLite and PostgreSQL; an interrupted replay resumes and
//!   gives the same result while the live models stay untouched; `--until` builds the models
//!   as of a position into `<name>@<until>`, which `report --replayed` reads.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{Actor, Event, NoteAdded};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{
    verify_chain, AppendRequest, AsPostgres, EventLog, ExpectedVersion, Metadata, NewEvent,
    Position,
};
use closeloop_projections::models::Projectors;
use closeloop_projections::record::Record;
use closeloop_projections::runtime::{Projection, RunnerConfig};
use closeloop_projections::store::{Checkpoint, CheckpointStore, MemoryStore, SqliteStore};
use closeloop_replay::rebuild::{self, ReplayConfig, Summary, Until, REBUILD_SUFFIX};
use closeloop_workload::{self as workload, WorkloadConfig};
use serde_json::json;
use uuid::Uuid;

const NAMES: [&str; 3] = ["sla", "satisfaction", "performance"];

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

/// Live projectors caught up and saved into `store`.
async fn live(log: Arc<dyn EventLog>, store: Arc<dyn CheckpointStore>) {
    let mut p = Projectors::open(
        log,
        store,
        RunnerConfig {
            batch_events_max: 64,
            save_interval_ms: 0,
            tail_wait_ms: 10,
        },
    )
    .await
    .unwrap();
    assert!(p.catch_up().await.is_empty());
}

async fn saved(store: &dyn CheckpointStore, names: &[String]) -> Vec<Option<Checkpoint>> {
    let mut out = Vec::new();
    for n in names {
        out.push(store.load(n).await.unwrap());
    }
    out
}

fn names(suffix: &str) -> Vec<String> {
    NAMES.iter().map(|n| format!("{n}{suffix}")).collect()
}

async fn replay(
    log: &dyn EventLog,
    store: &dyn CheckpointStore,
    until: Option<Until>,
    batch: usize,
    stop_after: Option<u64>,
) -> Summary {
    let mut calls = 0;
    let summary = rebuild::replay(
        log,
        store,
        &NAMES,
        until,
        &ReplayConfig {
            batch_events: batch,
            save_interval_ms: 0,
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

/// The live models equal, byte for byte, a replay (which switches them in); an interrupted
/// replay leaves them untouched and resumes to the same result.
async fn replay_equals_live(log: Arc<dyn EventLog>, store: Arc<dyn CheckpointStore>) {
    let handler = Handler::new(log.clone(), HandlerConfig::default());
    submit(&handler, small(11, 40).sequential()).await;
    live(log.clone(), store.clone()).await;
    let live_names = names("");
    let before = saved(store.as_ref(), &live_names).await;
    assert!(before.iter().all(Option::is_some));
    let head = log.head().await.unwrap();
    assert_eq!(before[0].as_ref().unwrap().position, head);

    // Interrupted after 3 batches: the live models are untouched, the rebuild is saved.
    let partial = replay(log.as_ref(), store.as_ref(), None, 50, Some(3)).await;
    assert!(!partial.completed);
    assert!(
        partial.position > 0 && partial.position < head,
        "{partial:?}"
    );
    assert_eq!(saved(store.as_ref(), &live_names).await, before);
    let temps = names(REBUILD_SUFFIX);
    for c in saved(store.as_ref(), &temps).await {
        assert_eq!(c.expect("rebuild saved").position, partial.position);
    }

    // Running again resumes from there and switches.
    let done = replay(log.as_ref(), store.as_ref(), None, 50, None).await;
    assert!(done.completed);
    assert_eq!(done.resumed_from, partial.position);
    assert_eq!(done.position, head);
    assert_eq!(saved(store.as_ref(), &live_names).await, before);
    assert!(saved(store.as_ref(), &temps)
        .await
        .iter()
        .all(Option::is_none));

    // And from scratch, in one batch size or another, the same bytes.
    let again = replay(log.as_ref(), store.as_ref(), None, 1_000, None).await;
    assert_eq!((again.resumed_from, again.completed), (0, true));
    assert_eq!(saved(store.as_ref(), &live_names).await, before);
}

#[tokio::test]
async fn replay_equals_live_memory() {
    replay_equals_live(Arc::new(MemoryLog::new()), Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn replay_equals_live_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let log = Arc::new(SqliteLog::open(path.to_str().unwrap()).await.unwrap());
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    replay_equals_live(log, store).await;
}

mod postgres {
    use super::*;

    fn url(schema: &str) -> String {
        let base = std::env::var("CLOSELOOP_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={schema}")
    }

    /// The test's schemas (log and `_read`), dropped at the end even on a panic.
    struct Scratch(String);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let schema = self.0.clone();
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let base = std::env::var("CLOSELOOP_TEST_POSTGRES").unwrap_or_else(|_| {
                            "postgres://postgres@127.0.0.1:5432/test".to_owned()
                        });
                        let Ok((client, conn)) =
                            tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                        else {
                            return;
                        };
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!(
                                "DROP SCHEMA IF EXISTS {schema} CASCADE; \
                                 DROP SCHEMA IF EXISTS {schema}_read CASCADE;"
                            ))
                            .await;
                    })
            })
            .join();
        }
    }

    #[tokio::test]
    async fn replay_equals_live_postgres() {
        let scratch = Scratch(format!("cl_test_{}", Uuid::new_v4().simple()));
        let url = url(&scratch.0);
        let log = closeloop_core::log::open(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url}: {e}; start it with `scripts/services.sh`")
        });
        let store = closeloop_projections::store::open_store(&url)
            .await
            .unwrap();
        replay_equals_live(log, store).await;
    }

    /// From PostgreSQL, replay streams ranges of positions (`PostgresLog::scan`) and decodes
    /// the data straight from its text; in memory it pages through `read_all` and decodes
    /// `StoredEvent`s. The same commands on both give the same models, byte for byte: to
    /// the head, `--until` a position and `--until` a time, in batch sizes that cut the
    /// scan's ranges and batches at different places.
    #[tokio::test]
    async fn replay_scan_equals_paged_postgres() {
        let scratch = Scratch(format!("cl_test_{}", Uuid::new_v4().simple()));
        let url = url(&scratch.0);
        let pg = closeloop_core::log::open(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url}: {e}; start it with `scripts/services.sh`")
        });
        assert!(pg.as_postgres().is_some(), "replay takes the scan path");
        let pg_store = closeloop_projections::store::open_store(&url)
            .await
            .unwrap();
        let mem: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let mem_store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let commands: Vec<_> = small(23, 30).sequential().cloned().collect();
        for log in [&pg, &mem] {
            let handler = Handler::new(log.clone(), HandlerConfig::default());
            submit(&handler, commands.iter()).await;
        }
        let head = pg.head().await.unwrap();
        assert_eq!(head, mem.head().await.unwrap());
        let all = mem
            .read_all(0, 100_000, closeloop_core::log::Filter::All)
            .await
            .unwrap();
        let t = all[all.len() / 2].metadata.occurred_at;
        let cases = [
            (None, 7),
            (None, 10_000),
            (Some(Until::Position(head / 3)), 5),
            (Some(Until::Time(t)), 13),
        ];
        for (until, batch) in cases {
            let a = replay(pg.as_ref(), pg_store.as_ref(), until, batch, None).await;
            let b = replay(mem.as_ref(), mem_store.as_ref(), until, batch, None).await;
            assert!(a.completed && b.completed, "{until:?} {batch}");
            assert_eq!((a.position, a.events), (b.position, b.events), "{until:?}");
            let suffix = until.map_or(String::new(), |u| format!("@{u}"));
            let models = saved(pg_store.as_ref(), &names(&suffix)).await;
            assert!(models.iter().all(Option::is_some), "{until:?}");
            assert_eq!(models, saved(mem_store.as_ref(), &names(&suffix)).await);
        }
    }
}

/// `--until P` gives the models as of P in `<name>@P`, the live ones untouched.
#[tokio::test]
async fn replay_until_position_is_the_model_as_of_then() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let handler = Handler::new(log.clone(), HandlerConfig::default());
    let commands: Vec<_> = small(5, 40).sequential().cloned().collect();
    let half = commands.len() / 2;
    submit(&handler, commands[..half].iter()).await;
    // The live models as of P, saved aside under `<name>@P` names by hand.
    let as_of: Position = log.head().await.unwrap();
    let then: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    live(log.clone(), then.clone()).await;
    let expected = saved(then.as_ref(), &names("")).await;
    submit(&handler, commands[half..].iter()).await;
    live(log.clone(), store.clone()).await;
    let live_now = saved(store.as_ref(), &names("")).await;
    assert!(log.head().await.unwrap() > as_of);

    let until = Until::Position(as_of);
    let summary = replay(log.as_ref(), store.as_ref(), Some(until), 37, None).await;
    assert!(summary.completed);
    assert_eq!(summary.position, as_of);
    assert_eq!(summary.targets, names(&format!("@{as_of}")));
    assert_eq!(
        saved(store.as_ref(), &names(&format!("@{as_of}"))).await,
        expected
    );
    assert_eq!(saved(store.as_ref(), &names("")).await, live_now);

    // Read back as a report.
    let models = rebuild::load_models(store.as_ref(), until).await.unwrap();
    let status = models.status_json();
    assert_eq!(status[0]["position"], json!(as_of));
    assert_eq!(
        models.sla.read().unwrap().to_state(),
        expected[0].as_ref().unwrap().state
    );

    // `--until TIME`: the log as it stood then, i.e. everything before the first event that
    // occurred after TIME: the same model as `--until` that position.
    let all = log
        .read_all(0, 100_000, closeloop_core::log::Filter::All)
        .await
        .unwrap();
    let t = all[all.len() / 3].metadata.occurred_at;
    let stop = all
        .iter()
        .find(|e| e.metadata.occurred_at > t)
        .map_or(all.len() as Position, |e| e.position - 1);
    let by_time = replay(log.as_ref(), store.as_ref(), Some(Until::Time(t)), 29, None).await;
    assert_eq!((by_time.position, by_time.completed), (stop, true));
    let by_position = replay(
        log.as_ref(),
        store.as_ref(),
        Some(Until::Position(stop)),
        1_000,
        None,
    )
    .await;
    assert_eq!(by_position.position, stop);
    let time_models = saved(store.as_ref(), &names(&format!("@{t}"))).await;
    assert!(time_models.iter().all(Option::is_some));
    assert_eq!(
        time_models,
        saved(store.as_ref(), &names(&format!("@{stop}"))).await
    );

    // `--until TIME` parses, and a time before everything is the empty model.
    assert_eq!("1200".parse::<Until>().unwrap(), Until::Position(1200));
    let t: Until = "2000-01-01T00:00:00Z".parse().unwrap();
    let s = replay(log.as_ref(), store.as_ref(), Some(t), 100, None).await;
    assert_eq!((s.position, s.completed), (0, true));
    assert!("yesterday".parse::<Until>().is_err());
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
    let handler = Handler::new(log.clone(), HandlerConfig::default());
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
    let committed = log
        .append(AppendRequest {
            stream: ticket.clone(),
            expected: ExpectedVersion::Any,
            command_id: Uuid::now_v7(),
            events: vec![raw_note(Uuid::now_v7(), 1, v1.clone())],
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

    // The projections fold it (live and by replay), and the engine keeps working on the
    // ticket.
    let store: Arc<dyn CheckpointStore> = Arc::new(SqliteStore::open(&path).unwrap());
    live(log.clone(), store.clone()).await;
    let live_models = saved(store.as_ref(), &names("")).await;
    let summary = replay(log.as_ref(), store.as_ref(), None, 100, None).await;
    assert!(summary.completed);
    assert_eq!(saved(store.as_ref(), &names("")).await, live_models);
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

/// The binary: `replay all --until P` then `report NAME --replayed P`.
#[test]
fn cli_replay_until_then_report() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(&url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "demo",
        "--tickets",
        "60",
        "--days",
        "3",
        "--customers",
        "20",
    ]);
    let summary = run(&["replay", "all", "--until", "300"]);
    assert!(summary.contains("events/s"), "{summary}");
    assert!(summary.contains("sla@300"), "{summary}");
    let report: serde_json::Value =
        serde_json::from_str(&run(&["report", "sla", "--replayed", "300", "--json"])).unwrap();
    assert_eq!(report["projectors"][0]["position"], json!(300));
    let live = run(&["replay", "all"]);
    assert!(live.contains("switched"), "{live}");
}
