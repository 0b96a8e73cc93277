//! The projector runtime end to end: read models built live (events folded as they are
//! appended, the runners killed and restarted at random points) equal, byte for byte, the ones
//! built in one pass from position zero; SQLite keeps state and checkpoint together; a
//! projector that cannot fold an event stops naming it while the others go on.

use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{Actor, CalendarDefined, Event, WorkingHours, CURRENT_SCHEMA_VERSION};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{
    AppendOutcome, AppendRequest, Committed, EventLog, ExpectedVersion, Filter, Metadata, NewEvent,
    Position, StoredEvent,
};
use closeloop_core::Error;
use closeloop_projections::models::{Projectors, ReadModels};
use closeloop_projections::report::ReportQuery;
use closeloop_projections::runtime::{Projection, RunnerConfig};
use closeloop_projections::store::{
    Checkpoint, CheckpointStore, MemoryStore, SqliteStore, StoreError,
};
use closeloop_workload::{self as workload, WorkloadConfig};
use proptest::prelude::*;

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

/// The three states, as stored.
fn states(m: &ReadModels) -> [String; 3] {
    [
        m.sla.read().unwrap().to_state(),
        m.satisfaction.read().unwrap().to_state(),
        m.performance.read().unwrap().to_state(),
    ]
}

async fn one_pass(log: Arc<dyn EventLog>) -> ReadModels {
    let mut p = Projectors::open(log, Arc::new(MemoryStore::new()), RunnerConfig::default())
        .await
        .unwrap();
    assert!(p.catch_up().await.is_empty());
    p.read_models()
}

fn config(batch: usize) -> RunnerConfig {
    RunnerConfig {
        batch_events_max: batch,
        save_interval_ms: 0,
        tail_wait_ms: 10,
    }
}

/// Submits the workload one command at a time; after each, does what `actions` says to the
/// live projectors: 0 nothing, 1 fold one batch of each, 2 save, 3 crash (drop without
/// saving) and restart from the store.
async fn live_run(
    seed: u64,
    tickets: usize,
    batch: usize,
    actions: &[u8],
    store: Arc<dyn CheckpointStore>,
    log: Arc<dyn EventLog>,
) -> ReadModels {
    let handler = Handler::new(log.clone(), HandlerConfig::default());
    let mut live = Projectors::open(log.clone(), store.clone(), config(batch))
        .await
        .unwrap();
    for (i, envelope) in small(seed, tickets).sequential().enumerate() {
        let reply = handler.handle(envelope.clone()).await;
        assert!(!matches!(reply, Reply::Rejected { .. }), "{reply:?}");
        match actions[i % actions.len()] {
            1 => {
                live.sla.step().await.unwrap();
                live.satisfaction.step().await.unwrap();
                live.performance.step().await.unwrap();
            }
            2 => {
                live.sla.save().await.unwrap();
                live.satisfaction.save().await.unwrap();
                live.performance.save().await.unwrap();
            }
            3 => {
                drop(live);
                live = Projectors::open(log.clone(), store.clone(), config(batch))
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
    assert!(live.catch_up().await.is_empty());
    let models = live.read_models();
    for s in &models.statuses {
        assert_eq!(s.lag(), 0, "{} lags", s.name);
        assert_eq!(s.position(), log.head().await.unwrap());
    }
    models
}

/// An in-memory log holding the `small(seed, tickets)` workload, submitted one command at a
/// time through a handler.
async fn memory_log_with(seed: u64, tickets: usize) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = Handler::new(log.clone(), HandlerConfig::default());
    for envelope in small(seed, tickets).sequential() {
        handler.handle(envelope.clone()).await;
    }
    log
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn live_with_crashes_equals_one_pass(
        seed in 0u64..1_000,
        tickets in 3usize..25,
        batch in 1usize..12,
        actions in proptest::collection::vec(0u8..4, 1..40),
    ) {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let live = live_run(seed, tickets, batch, &actions, Arc::new(MemoryStore::new()), log.clone()).await;
            let once = one_pass(log).await;
            let (a, b) = (states(&live), states(&once));
            for (x, y) in a.iter().zip(&b) {
                prop_assert_eq!(x, y);
            }
            let now: jiff::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
            for name in closeloop_projections::models::REPORTS {
                let q = ReportQuery::default();
                let mut r1 = live.report(name, &q, now).unwrap();
                let mut r2 = once.report(name, &q, now).unwrap();
                r1.as_object_mut().unwrap().remove("projectors");
                r2.as_object_mut().unwrap().remove("projectors");
                prop_assert_eq!(r1.to_string(), r2.to_string());
            }
            Ok(())
        })?;
    }
}

#[test]
fn sqlite_keeps_state_and_checkpoint_together() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("closeloop.db");
        let path = path.to_str().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(path).await.unwrap());
        let store: Arc<dyn CheckpointStore> = Arc::new(SqliteStore::open(path).unwrap());
        let live = live_run(11, 20, 5, &[0, 1, 1, 2, 0, 3, 1], store, log.clone()).await;
        let live_states = states(&live);
        assert_eq!(live_states, states(&one_pass(log.clone()).await));

        // A new process: the state comes back from the file at the saved position.
        drop(live);
        let store: Arc<dyn CheckpointStore> = Arc::new(SqliteStore::open(path).unwrap());
        let saved = store.load("sla").await.unwrap().unwrap();
        assert_eq!(saved.position, log.head().await.unwrap());
        let reopened = Projectors::open(log.clone(), store, config(100))
            .await
            .unwrap();
        assert_eq!(states(&reopened.read_models()), live_states);
    });
}

#[test]
fn a_failing_projector_stops_at_the_event_and_the_others_go_on() {
    runtime().block_on(async {
        let log = memory_log_with(3, 5).await;
        // A calendar no projector can use, appended behind the handler's back.
        let bad = Event::CalendarDefined(CalendarDefined {
            calendar_id: "mars".into(),
            time_zone: "Mars/Olympus_Mons".into(),
            weekly_hours: vec![WorkingHours {
                day: closeloop_core::domain::Weekday::Mon,
                start: "08:00".into(),
                end: "18:00".into(),
            }],
            holidays: vec![],
        });
        let now = jiff::Timestamp::from_second(1_790_000_000).unwrap();
        let command_id = uuid::Uuid::now_v7();
        let committed = log
            .append(AppendRequest {
                stream: "calendar-mars".into(),
                expected: ExpectedVersion::Any,
                command_id,
                events: vec![NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type: bad.event_type().into(),
                    schema_version: CURRENT_SCHEMA_VERSION,
                    data: bad.data(),
                    metadata: Metadata {
                        command_id,
                        correlation_id: command_id,
                        causation_id: command_id,
                        actor: Actor::system("test"),
                        occurred_at: now,
                        recorded_at: now,
                    },
                }],
                unchanged: None,
            })
            .await
            .unwrap();
        let bad_position = committed.committed().position;

        let mut p = Projectors::open(log.clone(), Arc::new(MemoryStore::new()), config(7))
            .await
            .unwrap();
        let failures = p.catch_up().await;
        assert_eq!(failures.len(), 2, "{failures:?}"); // sla and performance fold calendars
        let models = p.read_models();
        let sla = &models.statuses[0];
        let error = sla.error().unwrap();
        assert!(
            error.contains(&format!("position {bad_position}")),
            "{error}"
        );
        assert!(error.contains("calendar_defined"), "{error}");
        assert!(sla.position() < bad_position);
        let satisfaction = &models.statuses[1];
        assert_eq!(satisfaction.error(), None);
        assert_eq!(satisfaction.lag(), 0);
        // The report says so: staleness is never silent.
        let report = models.report("sla", &ReportQuery::default(), now).unwrap();
        assert!(report["projectors"][0]["error"].is_string());
        // The NATS query form: parameters as a JSON object.
        let params = serde_json::json!({"period": "total", "team": "front-a"});
        let value = models
            .query("satisfaction", params.as_object().unwrap(), now)
            .unwrap();
        assert!(value["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["by"] == "team" && g["key"] == "front-a"));
        let bad = serde_json::json!({"period": "fortnight"});
        assert_eq!(
            models
                .query("performance", bad.as_object().unwrap(), now)
                .unwrap_err()
                .0,
            "/period"
        );
        assert!(models.query("nope", &serde_json::Map::new(), now).is_err());
    });
}

#[test]
fn postgres_keeps_read_models_in_their_schema_with_views() {
    runtime().block_on(async {
        let base = std::env::var("CLOSELOOP_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("cl_proj_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{base}?schema={schema}");
        let log: Arc<dyn EventLog> = Arc::new(
            closeloop_core::log::postgres::PostgresLog::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base} ({e}); start it with scripts/services.sh")),
        );
        let store = closeloop_projections::pg_store::PostgresStore::connect(&url)
            .await
            .unwrap();
        assert_eq!(store.schema(), format!("{schema}_read"));
        let store: Arc<dyn CheckpointStore> = Arc::new(store);
        let live = live_run(5, 12, 4, &[1, 0, 3, 1, 2], store.clone(), log.clone()).await;
        assert_eq!(states(&live), states(&one_pass(log.clone()).await));
        let reopened = Projectors::open(log.clone(), store, config(100)).await.unwrap();
        assert_eq!(states(&reopened.read_models()), states(&live));

        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        for view in ["satisfaction_daily", "performance_daily"] {
            let n: i64 = client
                .query_one(&format!("SELECT count(*) FROM {schema}_read.{view}"), &[])
                .await
                .unwrap()
                .get(0);
            assert!(n > 0, "{view} is empty");
        }
        drop(live);
        drop(reopened);
        drop(log);
        client
            .batch_execute(&format!(
                "DROP SCHEMA {schema}_read CASCADE; DROP SCHEMA {schema} CASCADE;"
            ))
            .await
            .unwrap();
    });
}

#[test]
fn two_schedulers_write_one_breach_per_deadline() {
    use closeloop_core::log::{Filter, READ_BATCH_MAX};
    use closeloop_projections::runtime::Runner;
    use closeloop_projections::scheduler::due_commands;
    use closeloop_projections::sla::SlaModel;
    use std::collections::HashMap;

    // Several threads, so the two instances really race.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = memory_log_with(21, 40).await;
        let mut instances = Vec::new();
        for _ in 0..2 {
            let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
            let runner: Runner<SlaModel> =
                Runner::open(log.clone(), Arc::new(MemoryStore::new()), config(50))
                    .await
                    .unwrap();
            instances.push((handler, runner));
        }
        // Ticks at later and later times, both instances at once.
        let start: jiff::Timestamp = "2026-10-29T00:00:00Z".parse().unwrap();
        for hours in [0i64, 6, 12, 24, 48, 24 * 30] {
            let now = start + jiff::SignedDuration::from_hours(hours);
            let mut tasks = Vec::new();
            for (handler, runner) in &mut instances {
                runner.catch_up().await.unwrap();
                let commands = due_commands(&runner.model().read().unwrap(), now);
                let handler = handler.clone();
                tasks.push(tokio::spawn(async move {
                    for c in commands {
                        let reply = handler.handle(c).await;
                        assert!(
                            !matches!(reply, Reply::Rejected { .. }) || {
                                // A ticket resolved meanwhile refuses; nothing else may.
                                let json = reply.to_json().to_string();
                                json.contains("invalid_transition")
                            }
                        );
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        let mut seen: HashMap<(String, String, String), u32> = HashMap::new();
        let mut after = 0;
        loop {
            let batch = log
                .read_all(after, READ_BATCH_MAX, Filter::All)
                .await
                .unwrap();
            let Some(last) = batch.last() else { break };
            after = last.position;
            for e in batch {
                if e.event_type == "sla_breached" || e.event_type == "sla_warning_raised" {
                    *seen
                        .entry((
                            format!("{}/{}", e.event_type, e.data["ticket_id"]),
                            e.data["target"].to_string(),
                            e.data["due_at"].to_string(),
                        ))
                        .or_default() += 1;
                }
            }
        }
        let breaches = seen
            .keys()
            .filter(|k| k.0.starts_with("sla_breached"))
            .count();
        assert!(breaches > 0, "the workload leaves overdue tickets");
        for (deadline, n) in &seen {
            assert_eq!(*n, 1, "{deadline:?} written {n} times");
        }
    });
}

mod process {
    use super::*;
    use closeloop_commands::process::{ProcessConfig, ProcessManagers};
    use serde_json::json;

    async fn submit(
        handler: &Handler,
        actor: (&str, &str),
        kind: &str,
        payload: serde_json::Value,
    ) {
        let body = json!({
            "command_id": uuid::Uuid::now_v7(),
            "type": kind,
            "actor": {"id": actor.0, "role": actor.1},
            "payload": payload,
        });
        let reply = handler.handle_bytes(body.to_string().as_bytes()).await;
        assert!(
            !matches!(reply, Reply::Rejected { .. }),
            "{kind}: {}",
            reply.to_json()
        );
    }

    async fn ticket_state(
        log: &Arc<dyn EventLog>,
        id: uuid::Uuid,
    ) -> closeloop_core::domain::Ticket {
        let mut state = None;
        for e in log.read_stream(&format!("ticket-{id}"), 0).await.unwrap() {
            state = closeloop_core::domain::evolve(state, &e.decode().unwrap());
        }
        state.unwrap()
    }

    async fn notes(log: &Arc<dyn EventLog>, id: uuid::Uuid) -> Vec<String> {
        log.read_stream(&format!("ticket-{id}"), 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "note_added")
            .map(|e| e.data["text"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn assign_cover_return_and_escalate() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
            let sys = ("setup", "system");
            submit(
                &handler,
                sys,
                "define_calendar",
                json!({"calendar_id": "always", "time_zone": "UTC",
                "weekly_hours": [{"day": "mon", "start": "00:00", "end": "24:00"}]}),
            )
            .await;
            submit(
                &handler,
                sys,
                "define_sla_policy",
                json!({"policy_id": "p", "match": {},
                "first_response_minutes": 60, "resolution_minutes": 600, "calendar_id": "always",
                "warn_at_percent": 80}),
            )
            .await;
            for (id, line, level, lead, backup) in [
                ("lead", 1, "senior", true, None),
                ("a1", 1, "junior", false, Some("a2")),
                ("a2", 1, "senior", false, Some("a1")),
                ("s1", 2, "senior", false, None),
            ] {
                submit(
                    &handler,
                    sys,
                    "register_agent",
                    json!({"agent_id": id, "name": id,
                    "team": if line == 1 { "front" } else { "spec" }, "line": line, "level": level,
                    "team_lead": lead, "backup_agent_id": backup}),
                )
                .await;
            }
            submit(
                &handler,
                sys,
                "register_customer",
                json!({"customer_id": "vip", "name": "V", "grade": "vip_gold"}),
            )
            .await;
            let (t1, t2) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
            for (t, customer) in [(t1, "plain"), (t2, "vip")] {
                submit(
                    &handler,
                    ("crm", "service"),
                    "open_ticket",
                    json!({"ticket_id": t,
                    "customer_id": customer, "channel": "email", "category": "incident",
                    "priority": "normal", "subject": format!("about {customer}")}),
                )
                .await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }

            let mut pm = ProcessManagers::new(handler.clone(), ProcessConfig::default());
            pm.step().await.unwrap();
            assert_eq!(ticket_state(&log, t1).await.assignee.as_deref(), Some("a1"));
            assert_eq!(
                ticket_state(&log, t2).await.assignee.as_deref(),
                Some("a2"),
                "a VIP gets a senior"
            );

            // a1 goes away: their ticket moves to a2 with a handover note, and back later.
            submit(
                &handler,
                sys,
                "set_agent_availability",
                json!({"agent_id": "a1", "available": false, "backup_agent_id": "a2"}),
            )
            .await;
            pm.step().await.unwrap();
            assert_eq!(ticket_state(&log, t1).await.assignee.as_deref(), Some("a2"));
            let n = notes(&log, t1).await;
            assert!(
                n.iter()
                    .any(|x| x.starts_with("Handover: a1 is away") && x.contains(&t1.to_string())),
                "{n:?}"
            );
            submit(
                &handler,
                sys,
                "set_agent_availability",
                json!({"agent_id": "a1", "available": true}),
            )
            .await;
            pm.step().await.unwrap();
            assert_eq!(ticket_state(&log, t1).await.assignee.as_deref(), Some("a1"));
            assert!(notes(&log, t1)
                .await
                .iter()
                .any(|x| x.starts_with("Handed back: a1")));
            // Nothing more to do: the ticket stays with a1.
            pm.step().await.unwrap();
            assert_eq!(ticket_state(&log, t1).await.assignee.as_deref(), Some("a1"));

            // A breach escalates t2 one line up with the breach as its reason, and line 2 takes it.
            submit(
                &handler,
                ("sla-scheduler", "system"),
                "record_sla_breach",
                json!({"ticket_id": t2,
                "target": "first_response", "due_at": "2026-11-23T10:00:00Z"}),
            )
            .await;
            pm.step().await.unwrap();
            let state = ticket_state(&log, t2).await;
            assert_eq!(state.line, 2);
            let escalation = log
                .read_stream(&format!("ticket-{t2}"), 0)
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.event_type == "ticket_escalated")
                .unwrap();
            assert!(escalation.data["reason"]
                .as_str()
                .unwrap()
                .contains("SLA breached: first_response"));
            pm.step().await.unwrap();
            assert_eq!(ticket_state(&log, t2).await.assignee.as_deref(), Some("s1"));

            // A second instance from position zero finds nothing left to do.
            let head = log.head().await.unwrap();
            let mut other = ProcessManagers::new(handler.clone(), ProcessConfig::default());
            for reply in other.step().await.unwrap() {
                assert!(
                    !matches!(reply, Reply::Accepted { .. }),
                    "{}",
                    reply.to_json()
                );
            }
            assert_eq!(log.head().await.unwrap(), head);
        });
    }
}

#[test]
fn projectors_tail_the_log_in_their_own_tasks_and_the_scheduler_runs_alone() {
    runtime().block_on(async {
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
        let work = small(8, 15);
        let commands: Vec<_> = work.sequential().cloned().collect();
        let (half, rest) = commands.split_at(commands.len() / 2);
        for c in half {
            handler.handle(c.clone()).await;
        }
        let projectors = Projectors::open(log.clone(), Arc::new(MemoryStore::new()), config(64))
            .await
            .unwrap();
        let models = projectors.read_models();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = projectors.spawn(stopped.clone());
        // The scheduler, standalone, with its own projector and a clock a month ahead.
        let scheduler = {
            let (log, handler) = (log.clone(), handler.clone());
            tokio::spawn(closeloop_projections::scheduler::run_standalone(
                log,
                Arc::new(MemoryStore::new()),
                || "2026-12-01T00:00:00Z".parse().unwrap(),
                move |c| {
                    let handler = handler.clone();
                    async move {
                        handler.handle(c).await;
                    }
                },
                std::time::Duration::from_millis(20),
                stopped,
            ))
        };
        for c in rest {
            handler.handle(c.clone()).await;
        }
        // Wait until the scheduler has written breaches and every projector has caught up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let head = log.head().await.unwrap();
            let breaches = log
                .read_all(0, closeloop_core::log::READ_BATCH_MAX, Filter::All)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.event_type == "sla_breached")
                .count();
            let caught_up = models.statuses.iter().all(|s| s.position() == head);
            if breaches > 0 && caught_up {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if log.head().await.unwrap() == head {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no progress");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        scheduler.await.unwrap().unwrap();
        let head = log.head().await.unwrap();
        assert!(models
            .statuses
            .iter()
            .all(|s| s.position() == head && s.lag() == 0));
        assert_eq!(states(&models), states(&one_pass(log.clone()).await));
        // The breaches are part of the SLA read model now.
        let report = models
            .report(
                "sla",
                &ReportQuery::default(),
                "2026-12-01T00:00:00Z".parse().unwrap(),
            )
            .unwrap();
        assert!(report["timers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["breach_recorded"] == true));
    });
}

/// An older binary's projector never overwrites a model stored by a newer projector version
/// (one a newer binary's replay switched in), and refuses to start on it, on every store.
#[test]
fn a_newer_projector_version_is_never_overwritten() {
    use closeloop_projections::runtime::Runner;
    use closeloop_projections::sla::SlaModel;
    use StoreError;

    async fn check(store: Arc<dyn CheckpointStore>) {
        let newer = SlaModel::VERSION + 1;
        store
            .save(SlaModel::NAME, newer, 7, "{\"newer\":true}".into())
            .await
            .unwrap();
        let older = store
            .save(SlaModel::NAME, SlaModel::VERSION, 9, "{}".into())
            .await;
        assert!(
            matches!(older, Err(StoreError::Superseded { stored, ours, .. })
                if stored == newer && ours == SlaModel::VERSION),
            "{older:?}"
        );
        let kept = store.load(SlaModel::NAME).await.unwrap().unwrap();
        assert_eq!(
            (kept.version, kept.position, kept.state.as_str()),
            (newer, 7, "{\"newer\":true}")
        );
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let opened = Runner::<SlaModel>::open(log, store.clone(), RunnerConfig::default()).await;
        let error = opened
            .err()
            .expect("an older projector refuses a newer model");
        assert!(error.to_string().contains("newer"), "{error}");
        // The same or a newer version saves as before.
        store
            .save(SlaModel::NAME, newer + 1, 8, "{}".into())
            .await
            .unwrap();
        assert_eq!(
            store.load(SlaModel::NAME).await.unwrap().unwrap().version,
            newer + 1
        );
    }

    runtime().block_on(async {
        check(Arc::new(MemoryStore::new())).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.db");
        check(Arc::new(SqliteStore::open(path).unwrap())).await;
        let base = std::env::var("CLOSELOOP_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("cl_proj_{}", uuid::Uuid::new_v4().simple());
        let store = closeloop_projections::pg_store::PostgresStore::connect(&format!(
            "{base}?schema={schema}"
        ))
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {base} ({e}); start it with scripts/services.sh")
        });
        let result = tokio::spawn(check(Arc::new(store))).await;
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema}_read CASCADE"))
            .await
            .unwrap();
        result.unwrap();
    });
}

/// A checkpoint store whose first `failures` saves fail, as a store that is briefly
/// unreachable does.
struct FlakyStore {
    inner: MemoryStore,
    failures: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CheckpointStore for FlakyStore {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.load(name).await
    }

    async fn save(
        &self,
        name: &str,
        version: u32,
        position: Position,
        state: String,
    ) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let left = self.failures.load(Ordering::Relaxed);
        if left > 0 {
            self.failures.store(left - 1, Ordering::Relaxed);
            return Err(StoreError::Unavailable("the store is down".into()));
        }
        self.inner.save(name, version, position, state).await
    }

    async fn promote(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        self.inner.promote(from, to).await
    }
}

/// A projector whose store fails shows the error in its status (and so in every report)
/// while it lasts; once a catch-up succeeds the error is gone and the model is the one-pass
/// model: a transient failure is not reported as staleness for ever.
#[test]
fn a_store_error_is_shown_until_the_projector_recovers() {
    runtime().block_on(async {
        let log = memory_log_with(5, 5).await;
        let store = Arc::new(FlakyStore {
            inner: MemoryStore::new(),
            failures: std::sync::atomic::AtomicUsize::new(3),
        });
        let mut p = Projectors::open(log.clone(), store.clone(), config(7))
            .await
            .unwrap();
        let failures = p.catch_up().await;
        assert_eq!(
            failures.len(),
            3,
            "every projector's save failed: {failures:?}"
        );
        let models = p.read_models();
        for status in &models.statuses {
            let error = status.error().expect("the failure is shown");
            assert!(error.contains("the store is down"), "{error}");
        }

        assert!(p.catch_up().await.is_empty(), "the store is back");
        let models = p.read_models();
        for status in &models.statuses {
            assert_eq!(status.error(), None, "{}", status.name);
            assert_eq!(status.lag(), 0);
        }
        assert_eq!(states(&models), states(&one_pass(log).await));
    });
}

/// A log whose `head` answers one event behind: as if an append landed between a
/// projector's reading of the head and its reading of the batch.
struct HeadOneBehind(Arc<dyn EventLog>);

#[async_trait::async_trait]
impl EventLog for HeadOneBehind {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        self.0.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.0.read_stream(stream, after_version).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, Error> {
        self.0.read_all(after, limit, filter).await
    }

    async fn head(&self) -> Result<Position, Error> {
        Ok(self.0.head().await?.saturating_sub(1))
    }

    async fn wait_beyond(
        &self,
        after: Position,
        max_wait: std::time::Duration,
    ) -> Result<Position, Error> {
        self.0.wait_beyond(after, max_wait).await
    }

    async fn find_command(&self, command_id: uuid::Uuid) -> Result<Option<Committed>, Error> {
        self.0.find_command(command_id).await
    }
}

/// A projector that folds events newer than the head it last read shows a head at least at
/// its position (never "position 20 of head 19"), so a report says the same whether it was
/// made live or from the saved state.
#[test]
fn a_projector_never_shows_a_head_behind_its_position() {
    runtime().block_on(async {
        let inner = memory_log_with(9, 4).await;
        let log: Arc<dyn EventLog> = Arc::new(HeadOneBehind(inner.clone()));
        let mut p = Projectors::open(log, Arc::new(MemoryStore::new()), config(1_000))
            .await
            .unwrap();
        assert!(p.catch_up().await.is_empty());
        let head = inner.head().await.unwrap();
        for status in &p.read_models().statuses {
            assert!(
                status.head() >= status.position(),
                "{}: position {} of head {}",
                status.name,
                status.position(),
                status.head()
            );
            assert_eq!(status.lag(), 0, "{}", status.name);
        }
        // The projector whose categories hold the last event got there despite the stale head.
        assert!(p
            .read_models()
            .statuses
            .iter()
            .any(|s| s.position() == head && s.head() == head));
    });
}
