//! The read side's runtime end to end, on the tables: a projector that cannot fold an event
//! stops naming it and every report says so; a store failure shows until the projector
//! recovers; two SLA schedulers write one breach per deadline; the projector tails the log
//! while the scheduler runs alone; tables of a newer version are never overwritten; the
//! process managers; a status never shows a head behind its position.

use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{Actor, CalendarDefined, Event, WorkingHours, CURRENT_SCHEMA_VERSION};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::{
    AppendOutcome, AppendRequest, Committed, EventLog, ExpectedVersion, Filter, Metadata, NewEvent,
    Position, StoredEvent,
};
use closeloop_core::Error;
use closeloop_projections::models::{QueryError, ReadModels};
use closeloop_projections::report::ReportQuery;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::{Dump, TableError, TableStore};
use closeloop_workload::{self as workload, WorkloadConfig};

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

fn config(batch: usize) -> TableConfig {
    TableConfig {
        batch_events_max: batch,
        cached_tickets_max: 1_000,
        tail_wait_ms: 10,
    }
}

/// The tables folded from the whole log in one pass, in memory.
async fn one_pass(log: Arc<dyn EventLog>) -> Dump {
    let tables = Arc::new(MemoryTables::new());
    let mut p = TableProjector::open(log, tables.clone(), config(1_000))
        .await
        .unwrap();
    p.catch_up().await.unwrap();
    tables.dump().await.unwrap()
}

/// An in-memory log holding the `small(seed, tickets)` workload, submitted one command at a
/// time through a handler.
async fn memory_log_with(seed: u64, tickets: usize) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
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

#[test]
fn a_failing_projector_stops_at_the_event_and_every_report_says_so() {
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
            working_days: vec![],
            hours_overrides: vec![],
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
                        command_hash: None,
                    },
                }],
                unchanged: None,
            })
            .await
            .unwrap();
        let bad_position = committed.committed().position;

        let tables = Arc::new(MemoryTables::new());
        let mut p = TableProjector::open(log.clone(), tables.clone(), config(7))
            .await
            .unwrap();
        let error = p.catch_up().await.unwrap_err().to_string();
        assert!(
            error.contains(&format!("position {bad_position}")),
            "{error}"
        );
        assert!(error.contains("calendar_defined"), "{error}");
        let status = p.status();
        assert_eq!(status.error().as_deref(), Some(error.as_str()));
        // The tables stay before the event, with everything before it folded, and the
        // projector does not go past it.
        let stopped = status.position();
        assert!(stopped < bad_position && stopped > 0);
        assert!(p.catch_up().await.is_err());
        assert_eq!(tables.checkpoint().await.unwrap().position, stopped);
        assert!(!tables.dump().await.unwrap().tickets.is_empty());
        let models = ReadModels::new(tables.clone(), vec![status]);
        // The report says so: staleness is never silent.
        let report = models
            .report("sla", &ReportQuery::default(), now)
            .await
            .unwrap()
            .unwrap();
        assert!(report["projectors"][0]["error"].is_string());
        // The NATS query form: parameters as a JSON object.
        let params = serde_json::json!({"period": "total", "team": "front-a"});
        let value = models
            .query("satisfaction", params.as_object().unwrap(), now)
            .await
            .unwrap();
        let groups = value["groups"].as_array().unwrap();
        assert!(!groups.is_empty());
        assert!(groups
            .iter()
            .all(|g| g["by"] == "team" && g["key"] == "front-a"));
        let bad = serde_json::json!({"period": "fortnight"});
        assert!(matches!(
            models.query("performance", bad.as_object().unwrap(), now).await,
            Err(QueryError::Invalid(at, _)) if at == "/period"
        ));
        let bad = serde_json::json!({"limit": 0});
        assert!(matches!(
            models.query("sla", bad.as_object().unwrap(), now).await,
            Err(QueryError::Invalid(at, _)) if at == "/limit"
        ));
        let bad = serde_json::json!({"page": "yesterday"});
        assert!(matches!(
            models.query("sla", bad.as_object().unwrap(), now).await,
            Err(QueryError::Invalid(at, _)) if at == "/page"
        ));
        assert!(matches!(
            models.query("nope", &serde_json::Map::new(), now).await,
            Err(QueryError::Unknown(_))
        ));
    });
}

#[test]
fn two_schedulers_write_one_breach_per_deadline() {
    use closeloop_core::log::READ_BATCH_MAX;
    use closeloop_process::scheduler::due_commands;
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
            let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
            let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
            let projector = TableProjector::open(log.clone(), tables.clone(), config(50))
                .await
                .unwrap();
            instances.push((handler, tables, projector));
        }
        // Ticks at later and later times, both instances at once.
        let start: jiff::Timestamp = "2026-10-29T00:00:00Z".parse().unwrap();
        for hours in [0i64, 6, 12, 24, 48, 24 * 30] {
            let now = start + jiff::SignedDuration::from_hours(hours);
            let mut tasks = Vec::new();
            for (handler, tables, projector) in &mut instances {
                projector.catch_up().await.unwrap();
                let commands = due_commands(tables.as_ref(), now).await.unwrap();
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
    use closeloop_process::{ProcessConfig, ProcessManagers};
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
        let mut events = log.read_stream(&format!("ticket-{id}"), 0).await.unwrap();
        // Stored encrypted: opened as a history read opens them.
        closeloop_core::log::shred::unseal(log.keys().as_ref(), &mut events)
            .await
            .unwrap();
        events
            .into_iter()
            .filter(|e| e.event_type == "note_added")
            .map(|e| e.data["text"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn assign_cover_return_and_escalate() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
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

            // A duplicate merged into t1: nobody is assigned to it.
            let t3 = uuid::Uuid::now_v7();
            submit(
                &handler,
                ("crm", "service"),
                "open_ticket",
                json!({"ticket_id": t3,
                "customer_id": "plain", "channel": "web", "category": "incident",
                "priority": "normal", "subject": "about plain, again"}),
            )
            .await;
            submit(
                &handler,
                sys,
                "merge_ticket",
                json!({"ticket_id": t3, "into_ticket_id": t1, "reason": "the same request"}),
            )
            .await;

            let mut pm = ProcessManagers::new(handler.clone(), ProcessConfig::default());
            let replies = pm.step().await.unwrap();
            assert!(
                replies.iter().all(|r| !matches!(r, Reply::Rejected { .. })),
                "{replies:?}"
            );
            assert_eq!(ticket_state(&log, t3).await.assignee, None);
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
            let mut events = log.read_stream(&format!("ticket-{t2}"), 0).await.unwrap();
            closeloop_core::log::shred::unseal(log.keys().as_ref(), &mut events)
                .await
                .unwrap();
            let escalation = events
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

/// A planned absence end to end, on each table backend: planned ahead, started by the
/// scheduler at its `from` and not before, the agent's open ticket moved to the backup with a
/// handover note, ended at its `until`, the ticket handed back; each moment acted on once.
pub(crate) mod absences {
    use super::*;
    use closeloop_process::scheduler::due_commands;
    use closeloop_process::{ProcessConfig, ProcessManagers};
    use closeloop_projections::tables::sqlite::SqliteTables;
    use serde_json::json;

    async fn send(
        handler: &Handler,
        actor: (&str, &str),
        at: &str,
        kind: &str,
        payload: serde_json::Value,
    ) -> Reply {
        let mut body = json!({
            "command_id": uuid::Uuid::now_v7(),
            "type": kind,
            "actor": {"id": actor.0, "role": actor.1},
            "payload": payload,
        });
        // "": at receipt (after the process managers' own commands, which act then).
        if !at.is_empty() {
            body["occurred_at"] = json!(at);
        }
        handler.handle_bytes(body.to_string().as_bytes()).await
    }

    async fn submit(
        handler: &Handler,
        actor: (&str, &str),
        at: &str,
        kind: &str,
        payload: serde_json::Value,
    ) {
        let reply = send(handler, actor, at, kind, payload).await;
        assert!(
            matches!(reply, Reply::Accepted { .. }),
            "{kind}: {}",
            reply.to_json()
        );
    }

    /// The scheduler's absence commands due at `now`, submitted twice at `now` (the test's
    /// clock is simulated); returns their types.
    async fn tick(
        handler: &Handler,
        projector: &mut TableProjector,
        tables: &dyn TableStore,
        now: &str,
    ) -> Vec<&'static str> {
        projector.catch_up().await.unwrap();
        let now: jiff::Timestamp = now.parse().unwrap();
        let due: Vec<_> = due_commands(tables, now)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.command.command_type().ends_with("_absence"))
            .collect();
        let mut accepted = 0;
        for command in due.iter().chain(due.iter()) {
            let mut command = command.clone();
            command.occurred_at = Some(now);
            let reply = handler.handle(command).await;
            match reply {
                Reply::Accepted { .. } => accepted += 1,
                Reply::Duplicate { .. } => {}
                other => panic!("{}", other.to_json()),
            }
        }
        assert_eq!(accepted, due.len(), "each moment is acted on once");
        projector.catch_up().await.unwrap();
        due.iter().map(|c| c.command.command_type()).collect()
    }

    async fn assignee(log: &Arc<dyn EventLog>, id: uuid::Uuid) -> Option<String> {
        let mut state = None;
        for e in log.read_stream(&format!("ticket-{id}"), 0).await.unwrap() {
            state = closeloop_core::domain::evolve(state, &e.decode().unwrap());
        }
        state.unwrap().assignee
    }

    async fn notes(log: &Arc<dyn EventLog>, id: uuid::Uuid) -> Vec<String> {
        let mut events = log.read_stream(&format!("ticket-{id}"), 0).await.unwrap();
        // Stored encrypted: opened as a history read opens them.
        closeloop_core::log::shred::unseal(log.keys().as_ref(), &mut events)
            .await
            .unwrap();
        events
            .into_iter()
            .filter(|e| e.event_type == "note_added")
            .map(|e| e.data["text"].as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) async fn run(tables: Arc<dyn TableStore>) {
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
        let sys = ("setup", "system");
        let t0 = "2026-11-02T09:00:00Z";
        for (id, backup) in [("a1", "a2"), ("a2", "a1")] {
            submit(
                &handler,
                sys,
                t0,
                "register_agent",
                json!({"agent_id": id, "name": id, "team": "front", "line": 1,
                       "level": "senior", "backup_agent_id": backup}),
            )
            .await;
        }
        let ticket = uuid::Uuid::now_v7();
        submit(
            &handler,
            ("crm", "service"),
            t0,
            "open_ticket",
            json!({"ticket_id": ticket, "customer_id": "c1", "channel": "email",
                   "category": "incident", "priority": "normal", "subject": "router"}),
        )
        .await;
        submit(
            &handler,
            sys,
            t0,
            "assign_ticket",
            json!({"ticket_id": ticket, "agent_id": "a1"}),
        )
        .await;
        let absence = uuid::Uuid::now_v7();
        submit(
            &handler,
            ("a1", "agent"),
            "2026-11-02T10:00:00Z",
            "plan_absence",
            json!({"absence_id": absence, "agent_id": "a1", "from": "2026-11-10T00:00:00Z",
                   "until": "2026-11-20T00:00:00Z", "reason": "training"}),
        )
        .await;

        let mut projector = TableProjector::open(log.clone(), tables.clone(), config(16))
            .await
            .unwrap();
        let config = ProcessConfig {
            auto_assign: None,
            ..ProcessConfig::default()
        };
        let mut pm = ProcessManagers::new(handler.clone(), config);
        // Before its start nothing is due and nothing moves.
        assert!(tick(
            &handler,
            &mut projector,
            tables.as_ref(),
            "2026-11-09T23:59:59Z"
        )
        .await
        .is_empty());
        pm.step().await.unwrap();
        assert_eq!(assignee(&log, ticket).await.as_deref(), Some("a1"));
        // At its start: started once, and coverage hands the ticket over with the note.
        assert_eq!(
            tick(
                &handler,
                &mut projector,
                tables.as_ref(),
                "2026-11-10T00:00:00Z"
            )
            .await,
            ["start_absence"]
        );
        assert!(tick(
            &handler,
            &mut projector,
            tables.as_ref(),
            "2026-11-10T00:01:00Z"
        )
        .await
        .is_empty());
        pm.step().await.unwrap();
        assert_eq!(assignee(&log, ticket).await.as_deref(), Some("a2"));
        let n = notes(&log, ticket).await;
        assert!(
            n.iter().any(|x| x.starts_with(
                "Handover: a1 is away (training) until 2026-11-20T00:00:00Z; a2 takes over"
            ) && x.contains(&ticket.to_string())),
            "{n:?}"
        );
        // Away, a1 still answers a question in an internal note; the customer hears from a2.
        submit(
            &handler,
            ("a1", "agent"),
            "",
            "add_note",
            json!({"ticket_id": ticket, "text": "the router was swapped in October"}),
        )
        .await;
        let reply = send(
            &handler,
            ("a1", "agent"),
            "",
            "respond_to_customer",
            json!({"ticket_id": ticket, "message": "hello"}),
        )
        .await;
        assert!(
            matches!(reply, Reply::Rejected { .. }),
            "{}",
            reply.to_json()
        );
        let rows = tables.dump().await.unwrap().absences;
        assert_eq!(
            (rows.len(), rows[0].state.as_str(), rows[0].reason.as_str()),
            (1, "started", "training")
        );
        // At its end: ended once, and the ticket goes back to a1.
        assert!(tick(
            &handler,
            &mut projector,
            tables.as_ref(),
            "2026-11-19T23:59:59Z"
        )
        .await
        .is_empty());
        assert_eq!(
            tick(
                &handler,
                &mut projector,
                tables.as_ref(),
                "2026-11-20T00:00:00Z"
            )
            .await,
            ["end_absence"]
        );
        pm.step().await.unwrap();
        assert_eq!(assignee(&log, ticket).await.as_deref(), Some("a1"));
        assert!(notes(&log, ticket)
            .await
            .iter()
            .any(|x| x.starts_with("Handed back: a1")));
        assert_eq!(tables.dump().await.unwrap().absences[0].state, "ended");
        assert!(tick(
            &handler,
            &mut projector,
            tables.as_ref(),
            "2026-12-01T00:00:00Z"
        )
        .await
        .is_empty());
        // The live tables equal a replay of the log.
        assert_eq!(tables.dump().await.unwrap(), one_pass(log.clone()).await);
    }

    #[test]
    fn a_planned_absence_hands_over_and_back_at_its_moments_in_memory() {
        runtime().block_on(run(Arc::new(MemoryTables::new())));
    }

    #[test]
    fn a_planned_absence_hands_over_and_back_at_its_moments_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tables.db");
        runtime().block_on(async {
            let tables = SqliteTables::open(&path).unwrap();
            run(Arc::new(tables)).await
        });
    }
}

#[test]
fn the_projector_tails_the_log_and_the_scheduler_runs_alone() {
    runtime().block_on(async {
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
        let work = small(8, 15);
        let commands: Vec<_> = work.sequential().cloned().collect();
        let (half, rest) = commands.split_at(commands.len() / 2);
        for c in half {
            handler.handle(c.clone()).await;
        }
        let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
        let projector = TableProjector::open(log.clone(), tables.clone(), config(64))
            .await
            .unwrap();
        let status = projector.status();
        let (stop, stopped) = closeloop_core::log::Shutdown::new();
        let tailing = tokio::spawn(projector.run(stopped.clone()));
        // The scheduler, standalone, keeping its own tables, with a clock a month ahead.
        let scheduler = {
            let (log, handler) = (log.clone(), handler.clone());
            tokio::spawn(closeloop_process::scheduler::run_standalone(
                log,
                Arc::new(MemoryTables::new()),
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
        // Wait until the scheduler has written breaches and the projector has folded them.
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
            if breaches > 0 && status.position() == head {
                // Quiet: the scheduler has nothing more due (every breach it would submit
                // is in the log and folded).
                let due = closeloop_process::scheduler::due_commands(
                    tables.as_ref(),
                    "2026-12-01T00:00:00Z".parse().unwrap(),
                )
                .await
                .unwrap();
                if due.is_empty() && log.head().await.unwrap() == head {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no progress");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll interval
        }
        stop.fire();
        tailing.await.unwrap().unwrap();
        scheduler.await.unwrap().unwrap();
        let head = log.head().await.unwrap();
        assert_eq!((status.position(), status.lag()), (head, 0));
        assert_eq!(tables.dump().await.unwrap(), one_pass(log.clone()).await);
        // The breaches are in the tables now.
        let report = ReadModels::new(tables.clone(), vec![])
            .report(
                "sla",
                &ReportQuery::default(),
                "2026-12-01T00:00:00Z".parse().unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(report["timers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["breach_recorded"] == true));
    });
}

/// An older binary's projector never writes into tables a newer projector version built (a
/// newer binary's replay switched them in): it refuses to start, and the rows stay.
#[test]
fn tables_of_a_newer_version_are_never_overwritten() {
    use closeloop_projections::tables::sqlite::SqliteTables;
    runtime().block_on(async {
        let log = memory_log_with(4, 5).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tables.db");
        let tables = Arc::new(SqliteTables::open(&path).unwrap());
        let mut p = TableProjector::open(log.clone(), tables.clone(), config(100))
            .await
            .unwrap();
        p.catch_up().await.unwrap();
        drop(p);
        let before = tables.dump().await.unwrap();
        let newer = closeloop_projections::tables::VERSION + 1;
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE table_checkpoint SET version = ?1", [newer])
            .unwrap();
        let opened = TableProjector::open(log.clone(), tables.clone(), config(100)).await;
        let error = opened
            .err()
            .expect("an older projector refuses newer tables");
        assert!(error.to_string().contains("newer"), "{error}");
        assert!(matches!(
            tables.open().await,
            Err(TableError::Superseded { stored, .. }) if stored == newer
        ));
        assert_eq!(tables.dump().await.unwrap(), before);
    });
}

/// A table store whose first `failures` commits fail, as a database that is briefly
/// unreachable does; everything else goes to the memory reference.
struct FlakyTables {
    inner: MemoryTables,
    failures: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl TableStore for FlakyTables {
    async fn open(&self) -> Result<closeloop_projections::tables::Saved, TableError> {
        self.inner.open().await
    }
    async fn works(&self, ids: &[uuid::Uuid]) -> Result<Vec<(uuid::Uuid, String)>, TableError> {
        self.inner.works(ids).await
    }
    async fn commit(
        &self,
        generation: &str,
        from: Position,
        to: Position,
        changes: closeloop_projections::tables::Changes,
    ) -> Result<(), TableError> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(TableError::Unavailable("the store is down".into()));
        }
        self.inner.commit(generation, from, to, changes).await
    }
    async fn dump(&self) -> Result<Dump, TableError> {
        self.inner.dump().await
    }
    async fn checkpoint(&self) -> Result<closeloop_projections::tables::Saved, TableError> {
        self.inner.checkpoint().await
    }
    async fn scan(
        &self,
        dated: closeloop_projections::tables::Dated,
        span: closeloop_projections::tables::Span,
        sink: &mut (dyn FnMut(closeloop_projections::tables::AnyRow) + Send),
    ) -> Result<(), TableError> {
        self.inner.scan(dated, span, sink).await
    }
    async fn agents(&self) -> Result<Vec<closeloop_projections::tables::AgentRow>, TableError> {
        self.inner.agents().await
    }
    async fn scorecards(
        &self,
    ) -> Result<Vec<closeloop_projections::tables::ScorecardRow>, TableError> {
        self.inner.scorecards().await
    }
    async fn due_follow_ups(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<closeloop_projections::tables::FollowUpRow>, TableError> {
        self.inner.due_follow_ups(now, limit).await
    }
    async fn due_reinspections(
        &self,
        month: &str,
        limit: u32,
    ) -> Result<Vec<closeloop_projections::tables::InspectionRow>, TableError> {
        self.inner.due_reinspections(month, limit).await
    }
    async fn due_deadlines(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<closeloop_projections::tables::DeadlineRow>, TableError> {
        self.inner.due_deadlines(now, limit).await
    }
    async fn due_absences(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<closeloop_projections::tables::AbsenceRow>, TableError> {
        self.inner.due_absences(now, limit).await
    }
    async fn retention_policies(
        &self,
    ) -> Result<Vec<closeloop_projections::tables::RetentionPolicyRow>, TableError> {
        self.inner.retention_policies().await
    }
    async fn retention_candidates(
        &self,
        closed_before: i64,
    ) -> Result<Vec<closeloop_projections::tables::ClosureRow>, TableError> {
        self.inner.retention_candidates(closed_before).await
    }
    async fn erasures(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<closeloop_projections::tables::ErasureRow>, TableError> {
        self.inner.erasures(from, until).await
    }
    async fn open_load(&self) -> Result<Vec<(String, i64)>, TableError> {
        self.inner.open_load().await
    }
    async fn sla_counts(
        &self,
        filter: &closeloop_projections::tables::TimerFilter,
        now: i64,
    ) -> Result<closeloop_projections::tables::SlaCounts, TableError> {
        self.inner.sla_counts(filter, now).await
    }
    async fn timers(
        &self,
        page: &closeloop_projections::tables::TimerPage,
    ) -> Result<Vec<closeloop_projections::tables::Listed>, TableError> {
        self.inner.timers(page).await
    }
    async fn due_timers(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<closeloop_projections::tables::TimerRow>, TableError> {
        self.inner.due_timers(now, limit).await
    }

    async fn due_answers(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<closeloop_projections::tables::ResolutionRow>, TableError> {
        self.inner.due_answers(now, limit).await
    }
}

#[test]
fn a_store_error_is_shown_until_the_projector_recovers() {
    runtime().block_on(async {
        let log = memory_log_with(5, 5).await;
        let tables = Arc::new(FlakyTables {
            inner: MemoryTables::new(),
            failures: std::sync::atomic::AtomicUsize::new(1),
        });
        let mut p = TableProjector::open(log.clone(), tables.clone(), config(7))
            .await
            .unwrap();
        let error = p.catch_up().await.unwrap_err().to_string();
        assert!(error.contains("the store is down"), "{error}");
        let shown = p.status().error().expect("the failure is shown");
        assert!(shown.contains("the store is down"), "{shown}");

        p.catch_up().await.expect("the store is back");
        assert_eq!(p.status().error(), None);
        assert_eq!(p.status().lag(), 0);
        assert_eq!(tables.dump().await.unwrap(), one_pass(log).await);
    });
}

/// A log whose `head` answers one event behind: as if an append landed between a
/// projector's reading of the head and its reading of the batch.
struct HeadOneBehind(Arc<dyn EventLog>);

#[async_trait::async_trait]
impl EventLog for HeadOneBehind {
    fn keys(&self) -> Arc<dyn closeloop_core::log::KeyStore> {
        self.0.keys()
    }

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

    async fn command_records(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<closeloop_core::log::CommandRecord>, Error> {
        self.0.command_records(after, limit).await
    }

    async fn log_id(&self) -> Result<uuid::Uuid, Error> {
        self.0.log_id().await
    }
}

/// A projector that folds events newer than the head it last read shows a head at least at
/// its position (never "position 20 of head 19").
#[test]
fn a_projector_never_shows_a_head_behind_its_position() {
    runtime().block_on(async {
        let inner = memory_log_with(9, 4).await;
        let log: Arc<dyn EventLog> = Arc::new(HeadOneBehind(inner.clone()));
        let mut p = TableProjector::open(log, Arc::new(MemoryTables::new()), config(1_000))
            .await
            .unwrap();
        p.catch_up().await.unwrap();
        let status = p.status();
        assert!(
            status.head() >= status.position(),
            "position {} of head {}",
            status.position(),
            status.head()
        );
        assert_eq!(status.lag(), 0);
        assert_eq!(status.position(), inner.head().await.unwrap());
    });
}

/// The customer's answer to a resolution end to end: the `resolutions` row records it, the
/// wait ends at the close of the policy's working days, the scheduler then closes an
/// unanswered ticket once (however often it asks), and the satisfaction report counts it.
mod confirmation {
    use super::*;
    use closeloop_process::scheduler::due_commands;
    use closeloop_projections::report::satisfaction_report;
    use serde_json::json;

    async fn submit(
        handler: &Handler,
        role: &str,
        at: &str,
        kind: &str,
        payload: serde_json::Value,
    ) {
        let body = json!({
            "command_id": uuid::Uuid::now_v7(),
            "type": kind,
            "actor": {"id": format!("{role}-1"), "role": role},
            "occurred_at": at,
            "payload": payload,
        });
        let reply = handler.handle_bytes(body.to_string().as_bytes()).await;
        assert!(
            matches!(reply, Reply::Accepted { .. }),
            "{kind}: {}",
            reply.to_json()
        );
    }

    async fn resolved_ticket(handler: &Handler, id: uuid::Uuid) {
        let t = json!(id);
        submit(
            handler,
            "system",
            "2026-11-23T09:00:00Z",
            "open_ticket",
            json!({"ticket_id": t,
            "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "normal",
            "subject": "printer"}),
        )
        .await;
        submit(
            handler,
            "system",
            "2026-11-23T09:10:00Z",
            "assign_ticket",
            json!({"ticket_id": t, "agent_id": "a1"}),
        )
        .await;
        submit(
            handler,
            "system",
            "2026-11-23T10:00:00Z",
            "resolve_ticket",
            json!({"ticket_id": t, "resolution": "new toner"}),
        )
        .await;
    }

    #[test]
    fn an_unanswered_resolution_is_closed_once_after_its_working_days() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
            let setup = "2026-11-20T08:00:00Z";
            let weekdays: Vec<_> = ["mon", "tue", "wed", "thu", "fri"]
                .iter()
                .map(|d| json!({"day": d, "start": "09:00", "end": "17:00"}))
                .collect();
            submit(
                &handler,
                "system",
                setup,
                "define_calendar",
                json!({"calendar_id": "office",
                "time_zone": "UTC", "weekly_hours": weekdays, "holidays": ["2026-11-24"]}),
            )
            .await;
            submit(
                &handler,
                "system",
                setup,
                "define_sla_policy",
                json!({"policy_id": "p",
                "match": {}, "first_response_minutes": 60, "resolution_minutes": 600,
                "calendar_id": "office", "warn_at_percent": 80, "confirmation_wait_days": 2}),
            )
            .await;
            submit(
                &handler,
                "system",
                setup,
                "register_agent",
                json!({"agent_id": "a1",
                "name": "A One", "team": "alpha", "line": 1, "level": "senior"}),
            )
            .await;
            let (silent, confirmed, rejected) = (
                uuid::Uuid::now_v7(),
                uuid::Uuid::now_v7(),
                uuid::Uuid::now_v7(),
            );
            for id in [silent, confirmed, rejected] {
                resolved_ticket(&handler, id).await;
            }
            submit(
                &handler,
                "service",
                "2026-11-23T12:00:00Z",
                "confirm_resolution",
                json!({"ticket_id": confirmed}),
            )
            .await;
            submit(
                &handler,
                "service",
                "2026-11-23T12:00:00Z",
                "reject_resolution",
                json!({"ticket_id": rejected, "reason": "still streaky"}),
            )
            .await;

            let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
            let mut projector = TableProjector::open(log.clone(), tables.clone(), config(7))
                .await
                .unwrap();
            projector.catch_up().await.unwrap();
            let row = |dump: &Dump, id| {
                dump.resolutions
                    .iter()
                    .find(|r| r.ticket_id == id)
                    .cloned()
                    .unwrap()
            };
            let dump = tables.dump().await.unwrap();
            // Resolved Monday 23rd; Tuesday is a holiday: Wednesday (1), Thursday (2) 17:00.
            let due = closeloop_projections::tables::parse_time("2026-11-26T17:00:00Z").unwrap();
            assert_eq!(row(&dump, silent).answer_due_at, Some(due));
            assert_eq!(row(&dump, confirmed).answer.as_deref(), Some("confirmed"));
            let r = row(&dump, rejected);
            assert_eq!(r.answer.as_deref(), Some("rejected"));
            assert!(r.reopened_later);

            // The reopened ticket's SLA timers are due too: only the closes matter here.
            let closes = |commands: Vec<closeloop_core::domain::CommandEnvelope>| {
                commands
                    .into_iter()
                    .filter(|c| c.command.command_type() == "close_unconfirmed")
                    .collect::<Vec<_>>()
            };
            let before: jiff::Timestamp = "2026-11-26T16:59:00Z".parse().unwrap();
            assert!(closes(due_commands(tables.as_ref(), before).await.unwrap()).is_empty());
            let after: jiff::Timestamp = "2026-11-26T17:01:00Z".parse().unwrap();
            let commands = closes(due_commands(tables.as_ref(), after).await.unwrap());
            assert_eq!(commands.len(), 1, "{commands:?}");
            assert_eq!(commands[0].command.ticket_id(), Some(silent));
            // Asked twice (two instances, or a tick before the tables caught up): appended once.
            let first = handler.handle(commands[0].clone()).await;
            assert!(
                matches!(first, Reply::Accepted { .. }),
                "{}",
                first.to_json()
            );
            let again = handler.handle(commands[0].clone()).await;
            assert!(
                matches!(again, Reply::Duplicate { .. }),
                "{}",
                again.to_json()
            );
            projector.catch_up().await.unwrap();
            assert!(closes(due_commands(tables.as_ref(), after).await.unwrap()).is_empty());
            let dump = tables.dump().await.unwrap();
            let r = row(&dump, silent);
            assert_eq!(r.close_reason.as_deref(), Some("auto_closed_unconfirmed"));
            assert!(r.closed_at.is_some());

            let report = satisfaction_report(tables.as_ref(), &ReportQuery::default())
                .await
                .unwrap();
            let team = report["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["by"] == "team" && g["key"] == "alpha")
                .unwrap();
            assert_eq!(team["resolutions"], 3);
            assert_eq!(team["confirmed"], 1);
            assert_eq!(team["rejected"], 1);
            assert_eq!(team["auto_closed_unconfirmed"], 1);
            assert_eq!(team["closed_before_answer"], 0);
            assert_eq!(team["confirmation_rate_percent"], 33.3);

            // Replay equals live.
            assert_eq!(one_pass(log.clone()).await, tables.dump().await.unwrap());
        });
    }
}

/// Complaint rulings (docs/domain.md, Complaints): a hand-computed scenario through the
/// handler, the tables, the complaints and performance reports, and a replay.
mod complaints {
    use super::*;
    use closeloop_projections::report::{complaints_report, performance_report, ScoreWeights};
    use serde_json::{json, Value};

    pub(super) async fn send(
        handler: &Handler,
        role: &str,
        at: &str,
        kind: &str,
        payload: Value,
    ) -> Reply {
        let body = json!({
            "command_id": uuid::Uuid::now_v7(),
            "type": kind,
            "actor": {"id": format!("{role}-1"), "role": role},
            "occurred_at": at,
            "payload": payload,
        });
        handler.handle_bytes(body.to_string().as_bytes()).await
    }

    pub(super) async fn submit(
        handler: &Handler,
        role: &str,
        at: &str,
        kind: &str,
        payload: Value,
    ) {
        let reply = send(handler, role, at, kind, payload).await;
        assert!(
            matches!(reply, Reply::Accepted { .. }),
            "{kind}: {}",
            reply.to_json()
        );
    }

    /// A ticket opened at 09:00 on 23 November, assigned to `agent` at 09:10, and resolved
    /// at `resolved` (if given).
    pub(super) async fn ticket(
        handler: &Handler,
        id: uuid::Uuid,
        category: &str,
        agent: &str,
        resolved: Option<&str>,
    ) {
        submit(
            handler,
            "system",
            "2026-11-23T09:00:00Z",
            "open_ticket",
            json!({"ticket_id": id, "customer_id": "c-1", "channel": "phone",
                   "category": category, "priority": "normal", "subject": "rude answer"}),
        )
        .await;
        submit(
            handler,
            "system",
            "2026-11-23T09:10:00Z",
            "assign_ticket",
            json!({"ticket_id": id, "agent_id": agent}),
        )
        .await;
        if let Some(at) = resolved {
            submit(
                handler,
                "system",
                at,
                "resolve_ticket",
                json!({"ticket_id": id, "resolution": "apologised"}),
            )
            .await;
        }
    }

    fn ruling(id: uuid::Uuid, justified: bool, cause: &str, charged: &[&str]) -> Value {
        json!({"ticket_id": id, "justified": justified, "cause": cause, "charged": charged,
               "note": "heard both sides"})
    }

    #[test]
    fn rulings_count_in_the_complaints_and_performance_reports_and_replay_equals_live() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
            let setup = "2026-11-20T08:00:00Z";
            for (agent, lead) in [("a1", false), ("a2", false), ("supervisor-1", true)] {
                submit(
                    &handler,
                    "system",
                    setup,
                    "register_agent",
                    json!({"agent_id": agent, "name": agent, "team": "alpha", "line": 1,
                           "level": "senior", "team_lead": lead}),
                )
                .await;
            }
            submit(
                &handler,
                "system",
                setup,
                "register_inspector",
                json!({"inspector_id": "inspector-1", "name": "Quality"}),
            )
            .await;
            submit(
                &handler,
                "system",
                setup,
                "define_complaint_causes",
                json!({"causes": [
                    {"code": "rude_staff", "label": "Staff were impolite"},
                    {"code": "unfounded", "label": "Nothing was wrong"},
                ]}),
            )
            .await;
            let (c1, c2, c3, c4) = (
                uuid::Uuid::now_v7(),
                uuid::Uuid::now_v7(),
                uuid::Uuid::now_v7(),
                uuid::Uuid::now_v7(),
            );
            ticket(
                &handler,
                c1,
                "complaint",
                "a1",
                Some("2026-11-23T10:00:00Z"),
            )
            .await;
            ticket(
                &handler,
                c2,
                "complaint",
                "a2",
                Some("2026-11-23T11:00:00Z"),
            )
            .await;
            ticket(&handler, c3, "incident", "a1", None).await;
            ticket(&handler, c4, "complaint", "a2", None).await;
            // c1: the lead finds it justified and charges a1 (180 minutes after receipt);
            // the inspector overrules the next day.
            submit(
                &handler,
                "supervisor",
                "2026-11-23T12:00:00Z",
                "rule_complaint",
                ruling(c1, true, "rude_staff", &["a1"]),
            )
            .await;
            submit(
                &handler,
                "inspector",
                "2026-11-24T09:00:00Z",
                "rule_complaint",
                ruling(c1, false, "unfounded", &[]),
            )
            .await;
            // c2: justified, a2 charged, 240 minutes after receipt.
            submit(
                &handler,
                "inspector",
                "2026-11-23T13:00:00Z",
                "rule_complaint",
                ruling(c2, true, "rude_staff", &["a2"]),
            )
            .await;
            // An incident is no complaint; an unknown cause and an agent are refused.
            let refused = [
                send(
                    &handler,
                    "inspector",
                    "2026-11-23T13:00:00Z",
                    "rule_complaint",
                    ruling(c3, false, "unfounded", &[]),
                )
                .await,
                send(
                    &handler,
                    "inspector",
                    "2026-11-23T13:00:00Z",
                    "rule_complaint",
                    ruling(c4, false, "weather", &[]),
                )
                .await,
                send(
                    &handler,
                    "agent",
                    "2026-11-23T13:00:00Z",
                    "rule_complaint",
                    ruling(c4, false, "unfounded", &[]),
                )
                .await,
            ];
            let codes: Vec<_> = refused
                .iter()
                .map(|r| match r {
                    Reply::Rejected { error, .. } => error.code,
                    other => panic!("accepted: {}", other.to_json()),
                })
                .collect();
            use closeloop_core::domain::RejectionCode::*;
            assert_eq!(codes, [InvalidTransition, NotFound, Forbidden]);

            let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
            let mut projector = TableProjector::open(log.clone(), tables.clone(), config(5))
                .await
                .unwrap();
            projector.catch_up().await.unwrap();
            let dump = tables.dump().await.unwrap();
            let at = |t: &str| closeloop_projections::tables::parse_time(t).unwrap();
            assert_eq!(dump.complaint_rulings.len(), 3);
            let first = dump
                .complaint_rulings
                .iter()
                .find(|r| r.ticket_id == c1 && r.ruling == 1)
                .unwrap();
            assert_eq!(first.superseded_at, Some(at("2026-11-24T09:00:00Z")));
            assert_eq!(first.ruled_by, "supervisor-1");
            assert_eq!(first.ruled_by_role, "supervisor");
            assert_eq!(first.complained_at, at("2026-11-23T09:00:00Z"));
            let charges: Vec<_> = dump
                .complaint_charges
                .iter()
                .map(|c| (c.agent_id.as_str(), c.superseded_at.is_some()))
                .collect();
            assert_eq!(charges.len(), 2);
            assert!(charges.contains(&("a1", true)) && charges.contains(&("a2", false)));

            let report = complaints_report(tables.as_ref(), &ReportQuery::default())
                .await
                .unwrap();
            let period = &report["periods"][0];
            assert_eq!(period["period"], "2026-11");
            assert_eq!(period["received"], 3);
            assert_eq!(period["resolved"], 2);
            assert_eq!(period["ruled"], 2);
            assert_eq!(period["justified"], 1);
            assert_eq!(period["justified_percent"], 50.0);
            assert_eq!(period["minutes_to_first_ruling"]["median"], 210.0);
            assert_eq!(period["minutes_to_first_ruling"]["count"], 2);
            assert_eq!(period["minutes_to_resolution"]["median"], 90.0);
            assert_eq!(
                period["causes"],
                json!([
                    {"cause": "rude_staff", "ruled": 1, "justified": 1, "justified_percent": 100.0},
                    {"cause": "unfounded", "ruled": 1, "justified": 0, "justified_percent": 0.0},
                ])
            );
            // Filtered by agent: the complaints in a2's care.
            let a2 = ReportQuery {
                agent: Some("a2".into()),
                ..ReportQuery::default()
            };
            let report = complaints_report(tables.as_ref(), &a2).await.unwrap();
            assert_eq!(report["periods"][0]["received"], 2);
            assert_eq!(report["periods"][0]["ruled"], 1);

            // Performance counts the standing charges only: a2's, not a1's overruled one.
            let perf = performance_report(
                tables.as_ref(),
                &ReportQuery::default(),
                &ScoreWeights::default(),
            )
            .await
            .unwrap();
            let complaints_of = |agent: &str| -> u64 {
                perf["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["agent_id"] == agent)
                    .map(|r| r["justified_complaints"].as_u64().unwrap())
                    .sum()
            };
            assert_eq!(complaints_of("a1"), 0);
            assert_eq!(complaints_of("a2"), 1);

            // Replay equals live.
            assert_eq!(one_pass(log.clone()).await, dump);
        });
    }
}

/// Scorecards (docs/domain.md, Staff performance): each period is scored with the scorecard
/// in force on its first day, the team's before the organisation's, and the JSON says which
/// and how.
mod scorecards {
    use super::complaints::{send, submit, ticket};
    use super::*;
    use closeloop_projections::report::{performance_report, ScoreWeights};
    use serde_json::{json, Value};

    fn scorecard(
        team: Option<&str>,
        from: &str,
        parts: [u8; 3],
        bonus: f64,
        deduction: f64,
    ) -> Value {
        let mut card = json!({
            "effective_from": from, "results_percent": parts[0], "basic_percent": parts[1],
            "discipline_percent": parts[2], "bonus_per_excellent_rating": bonus,
            "bonus_cap_points": 10, "deduction_per_justified_complaint": deduction,
            "deduction_cap_points": 10,
        });
        if let Some(team) = team {
            card["team"] = json!(team);
        }
        card
    }

    #[test]
    fn each_period_is_scored_with_the_scorecard_in_force_then_and_replay_equals_live() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
            let setup = "2026-11-01T08:00:00Z";
            for (agent, lead) in [("a1", false), ("supervisor-1", true)] {
                submit(
                    &handler,
                    "system",
                    setup,
                    "register_agent",
                    json!({"agent_id": agent, "name": agent, "team": "alpha", "line": 1,
                           "level": "senior", "team_lead": lead}),
                )
                .await;
            }
            submit(
                &handler,
                "system",
                setup,
                "define_scorecard",
                scorecard(None, "2026-11-01", [60, 30, 10], 0.5, 2.0),
            )
            .await;
            // The lead sets the team's own from December; not another team's, and not one
            // outside the manual's bounds (refused with the field's path).
            submit(
                &handler,
                "supervisor",
                setup,
                "define_scorecard",
                scorecard(Some("alpha"), "2026-12-01", [70, 30, 0], 1.0, 5.0),
            )
            .await;
            let refused = send(
                &handler,
                "supervisor",
                setup,
                "define_scorecard",
                scorecard(Some("beta"), "2026-12-01", [70, 30, 0], 1.0, 5.0),
            )
            .await;
            assert!(
                matches!(refused, Reply::Rejected { .. }),
                "{}",
                refused.to_json()
            );
            let refused = send(
                &handler,
                "system",
                setup,
                "define_scorecard",
                scorecard(None, "2026-12-01", [50, 40, 10], 1.0, 5.0),
            )
            .await;
            let Reply::Rejected { error, .. } = refused else {
                panic!("accepted: {}", refused.to_json())
            };
            assert_eq!(error.details[0].path, "/payload/results_percent");

            // November: resolved, nothing rated. December: resolved and rated 5.
            let (nov, dec) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
            ticket(
                &handler,
                nov,
                "incident",
                "a1",
                Some("2026-11-23T10:00:00Z"),
            )
            .await;
            for (kind, at, payload) in [
                (
                    "open_ticket",
                    "2026-12-02T09:00:00Z",
                    json!({"ticket_id": dec, "customer_id": "c-1", "channel": "phone",
                           "category": "incident", "priority": "normal", "subject": "again"}),
                ),
                (
                    "assign_ticket",
                    "2026-12-02T09:10:00Z",
                    json!({"ticket_id": dec, "agent_id": "a1"}),
                ),
                (
                    "resolve_ticket",
                    "2026-12-02T10:00:00Z",
                    json!({"ticket_id": dec, "resolution": "done"}),
                ),
            ] {
                submit(&handler, "system", at, kind, payload).await;
            }
            submit(
                &handler,
                "service",
                "2026-12-02T11:00:00Z",
                "record_satisfaction",
                json!({"ticket_id": dec, "score": 5, "source": "survey"}),
            )
            .await;

            let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
            let mut projector = TableProjector::open(log.clone(), tables.clone(), config(3))
                .await
                .unwrap();
            projector.catch_up().await.unwrap();
            let dump = tables.dump().await.unwrap();
            assert_eq!(dump.scorecards.len(), 2);
            let perf = performance_report(
                tables.as_ref(),
                &ReportQuery::default(),
                &ScoreWeights::default(),
            )
            .await
            .unwrap();
            let row = |period: &str| {
                perf["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["agent_id"] == "a1" && r["period"] == period)
                    .cloned()
                    .unwrap()
            };
            // November, the organisation's: no results figure (0), basic 100 x 30 %,
            // discipline 100 x 10 %.
            let november = row("2026-11");
            assert_eq!(
                november["scorecard"],
                json!({"team": null, "effective_from": "2026-11-01"})
            );
            assert_eq!(november["score"], 40.0);
            assert_eq!(november["score_parts"]["basic"]["points"], 30.0);
            // December, the team's: satisfaction 100 x 70 %, basic 100 x 30 %, a bonus of 1.
            let december = row("2026-12");
            assert_eq!(
                december["scorecard"],
                json!({"team": "alpha", "effective_from": "2026-12-01"})
            );
            assert_eq!(december["score"], 101.0);
            assert_eq!(
                december["score_parts"]["results"]["of"]["satisfaction"],
                100.0
            );
            assert_eq!(december["score_parts"]["bonus"]["points"], 1.0);

            // Replay equals live.
            assert_eq!(one_pass(log.clone()).await, dump);
        });
    }
}

/// Follow-ups (docs/domain.md, Follow-ups): planned and recorded through the handler, warned
/// of and marked overdue by the scheduler exactly once, counted per owner in the performance
/// report, and replayed.
mod follow_ups {
    use super::complaints::{send, submit, ticket};
    use super::*;
    use closeloop_process::scheduler::due_commands;
    use closeloop_projections::report::{performance_report, ScoreWeights};
    use serde_json::json;

    #[test]
    fn follow_ups_are_warned_of_marked_overdue_once_and_counted_per_owner() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
            for (agent, lead) in [("agent-1", false), ("supervisor-1", true)] {
                submit(
                    &handler,
                    "system",
                    "2026-11-20T08:00:00Z",
                    "register_agent",
                    json!({"agent_id": agent, "name": agent, "team": "alpha", "line": 1,
                           "level": "senior", "team_lead": lead}),
                )
                .await;
            }
            let id = uuid::Uuid::now_v7();
            ticket(
                &handler,
                id,
                "repair",
                "agent-1",
                Some("2026-11-23T10:00:00Z"),
            )
            .await;
            // A call due on the 25th (made on time) and a visit due on the 27th (made on the
            // 26th, entered nine days later, after its due time).
            for (kind, due_by) in [
                ("call", "2026-11-25T10:00:00Z"),
                ("visit", "2026-11-27T10:00:00Z"),
            ] {
                submit(
                    &handler,
                    "supervisor",
                    "2026-11-23T11:00:00Z",
                    "schedule_follow_up",
                    json!({"ticket_id": id, "kind": kind, "due_by": due_by, "owner": "agent-1"}),
                )
                .await;
            }
            submit(
                &handler,
                "agent",
                "2026-11-24T15:00:00Z",
                "record_follow_up",
                json!({"ticket_id": id, "follow_up": 1, "outcome": "satisfied",
                       "summary": "all fine"}),
            )
            .await;
            let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
            let mut projector = TableProjector::open(log.clone(), tables.clone(), config(4))
                .await
                .unwrap();
            projector.catch_up().await.unwrap();

            // At 11:00 on the 27th the visit is past its warning (10:00 on the 26th) and its
            // due time: a warning, then the overdue mark; asked twice, appended once.
            let now: jiff::Timestamp = "2026-11-27T11:00:00Z".parse().unwrap();
            // (The resolution waits for its answer too: only the follow-ups matter here.)
            let follow_up_commands = |due: Vec<closeloop_core::domain::CommandEnvelope>| {
                due.into_iter()
                    .filter(|c| c.command.command_type().contains("follow_up"))
                    .collect::<Vec<_>>()
            };
            let due = follow_up_commands(due_commands(tables.as_ref(), now).await.unwrap());
            let kinds: Vec<_> = due.iter().map(|c| c.command.command_type()).collect();
            assert_eq!(
                kinds,
                ["raise_follow_up_warning", "record_follow_up_overdue"]
            );
            // The test's clock is simulated: the scheduler's commands act at its "now".
            for command in due.iter().chain(due.iter()) {
                let mut command = command.clone();
                command.occurred_at = Some(now);
                let reply = handler.handle(command).await;
                assert!(
                    matches!(reply, Reply::Accepted { .. } | Reply::Duplicate { .. }),
                    "{}",
                    reply.to_json()
                );
            }
            projector.catch_up().await.unwrap();
            assert!(
                follow_up_commands(due_commands(tables.as_ref(), now).await.unwrap()).is_empty()
            );
            // The visit took place on the 26th and is entered on 5 December by the lead: late
            // on both counts, and the log says by whom. A service may not record it.
            let reply = send(
                &handler,
                "service",
                "2026-12-05T09:00:00Z",
                "record_follow_up",
                json!({"ticket_id": id, "follow_up": 2, "outcome": "issue_found",
                       "summary": "door hinge loose", "visited_at": "2026-11-26T09:00:00Z",
                       "signed": true}),
            )
            .await;
            assert!(
                matches!(reply, Reply::Rejected { .. }),
                "{}",
                reply.to_json()
            );
            let before = log
                .read_stream(&format!("ticket-{id}"), 0)
                .await
                .unwrap()
                .len();
            submit(
                &handler,
                "supervisor",
                "2026-12-05T09:00:00Z",
                "record_follow_up",
                json!({"ticket_id": id, "follow_up": 2, "outcome": "issue_found",
                       "summary": "door hinge loose", "visited_at": "2026-11-26T09:00:00Z",
                       "signed": true}),
            )
            .await;
            let after = log.read_stream(&format!("ticket-{id}"), 0).await.unwrap();
            assert_eq!(after.len(), before + 1);
            projector.catch_up().await.unwrap();

            let dump = tables.dump().await.unwrap();
            let rows = &dump.follow_ups;
            assert_eq!(rows.len(), 2);
            let (call, visit) = (&rows[0], &rows[1]);
            assert_eq!((call.kind.as_str(), call.in_time), ("call", Some(true)));
            assert_eq!(call.warned_at, None);
            assert_eq!(visit.kind, "visit");
            assert_eq!(visit.in_time, Some(false));
            assert_eq!(visit.entered_late, Some(true));
            assert_eq!(visit.signed, Some(true));
            assert_eq!(visit.recorded_by.as_deref(), Some("supervisor-1"));
            assert!(visit.warned_at.is_some() && visit.overdue_at.is_some());

            let perf = performance_report(
                tables.as_ref(),
                &ReportQuery {
                    period: closeloop_projections::period::Granularity::Total,
                    ..ReportQuery::default()
                },
                &ScoreWeights::default(),
            )
            .await
            .unwrap();
            let owner = perf["agents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["agent_id"] == "agent-1")
                .unwrap();
            assert_eq!(owner["follow_ups_due"], 2);
            assert_eq!(owner["follow_ups_in_time"], 1);
            assert_eq!(owner["follow_ups_late"], 1);
            assert_eq!(
                owner["score_parts"]["basic"]["of"]["follow_ups_in_time_rate"],
                50.0
            );
            let lead = perf["agents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["agent_id"] == "supervisor-1")
                .unwrap();
            assert_eq!(lead["visits_entered_late"], 1);

            // Replay equals live.
            assert_eq!(one_pass(log.clone()).await, dump);
        });
    }
}

/// Quality inspection (docs/domain.md, Quality inspection): a reproducible draw, inspections,
/// a failure inspected again the next month, the report's figures, and a replay.
mod inspections {
    use super::complaints::{send, submit, ticket};
    use super::*;
    use closeloop_core::domain::draw_items;
    use closeloop_process::scheduler::due_commands;
    use closeloop_projections::report::{inspection_candidates, inspections_report};
    use closeloop_projections::tables::Span;
    use serde_json::json;

    fn dims(overall: u8) -> serde_json::Value {
        json!({"recognition": 4, "efficiency": 3, "quality": 5, "overall": overall})
    }

    #[test]
    fn samples_are_drawn_reproducibly_inspected_once_and_failures_again_next_month() {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
            submit(
                &handler,
                "system",
                "2026-11-01T08:00:00Z",
                "register_agent",
                json!({"agent_id": "agent-1", "name": "A", "team": "alpha", "line": 1,
                       "level": "senior"}),
            )
            .await;
            submit(
                &handler,
                "system",
                "2026-11-01T08:00:00Z",
                "register_inspector",
                json!({"inspector_id": "inspector-1", "name": "Quality"}),
            )
            .await;
            let ids: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::now_v7()).collect();
            for id in &ids {
                ticket(
                    &handler,
                    *id,
                    "incident",
                    "agent-1",
                    Some("2026-11-23T10:00:00Z"),
                )
                .await;
            }
            let tables: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
            let mut projector = TableProjector::open(log.clone(), tables.clone(), config(5))
                .await
                .unwrap();
            projector.catch_up().await.unwrap();
            let at = |t: &str| closeloop_projections::tables::parse_time(t).unwrap();
            let november = Span {
                from: Some(at("2026-11-01T00:00:00Z")),
                to: Some(at("2026-12-01T00:00:00Z")),
            };
            let candidates = inspection_candidates(tables.as_ref(), "agent-1", november)
                .await
                .unwrap();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(candidates, sorted);

            // The inspector draws two; the event names exactly those the seed picks.
            let sample = uuid::Uuid::now_v7();
            submit(
                &handler,
                "inspector",
                "2026-12-01T09:00:00Z",
                "draw_inspection_sample",
                json!({"sample_id": sample, "period": "2026-11", "agent_id": "agent-1",
                       "size": 2, "seed": 99, "candidates": candidates}),
            )
            .await;
            let drawn = draw_items(99, &candidates, 2);
            let events = log
                .read_stream(&format!("inspection-{sample}"), 0)
                .await
                .unwrap();
            let Event::InspectionSampleDrawn(e) = events[0].decode().unwrap() else {
                panic!("not a draw")
            };
            assert_eq!(e.items, drawn);
            // The agent inspected may not inspect; a ticket not drawn is refused.
            let not_drawn = *candidates.iter().find(|c| !drawn.contains(c)).unwrap();
            for (role, ticket_id) in [("agent", drawn[0]), ("inspector", not_drawn)] {
                let reply = send(
                    &handler,
                    role,
                    "2026-12-01T10:00:00Z",
                    "record_inspection",
                    json!({"sample_id": sample, "ticket_id": ticket_id, "dimensions": dims(4),
                           "log_complete": true, "verdict": "pass", "note": "ok"}),
                )
                .await;
                assert!(
                    matches!(reply, Reply::Rejected { .. }),
                    "{}",
                    reply.to_json()
                );
            }
            // One passes with a complete log; one fails with an incomplete one.
            for (ticket_id, overall, complete, verdict) in
                [(drawn[0], 5, true, "pass"), (drawn[1], 2, false, "fail")]
            {
                submit(
                    &handler,
                    "inspector",
                    "2026-12-01T10:00:00Z",
                    "record_inspection",
                    json!({"sample_id": sample, "ticket_id": ticket_id,
                           "dimensions": dims(overall), "log_complete": complete,
                           "verdict": verdict, "note": "called back"}),
                )
                .await;
            }
            // December's sample takes the failed ticket again, besides its draw.
            let again = uuid::Uuid::now_v7();
            submit(
                &handler,
                "inspector",
                "2026-12-05T09:00:00Z",
                "draw_inspection_sample",
                json!({"sample_id": again, "period": "2026-12", "agent_id": "agent-1",
                       "size": 1, "seed": 1, "candidates": candidates,
                       "reinspect": [drawn[1]]}),
            )
            .await;
            let events = log
                .read_stream(&format!("inspection-{again}"), 0)
                .await
                .unwrap();
            let Event::InspectionSampleDrawn(e) = events[0].decode().unwrap() else {
                panic!("not a draw")
            };
            assert_eq!(e.items.len(), 2);
            assert_eq!(e.items[0], drawn[1]);
            let december_other = e.items[1];
            submit(
                &handler,
                "inspector",
                "2026-12-05T10:00:00Z",
                "record_inspection",
                json!({"sample_id": again, "ticket_id": drawn[1], "dimensions": dims(4),
                       "log_complete": true, "verdict": "pass", "note": "fixed"}),
            )
            .await;
            // December's other item fails, and is never inspected in January.
            submit(
                &handler,
                "inspector",
                "2026-12-05T10:00:00Z",
                "record_inspection",
                json!({"sample_id": again, "ticket_id": december_other, "dimensions": dims(2),
                       "log_complete": false, "verdict": "fail", "note": "no record"}),
            )
            .await;
            projector.catch_up().await.unwrap();
            // On 1 February its re-inspection is overdue (November's failure was done in
            // December): the scheduler marks it once.
            let overdue = |due: Vec<closeloop_core::domain::CommandEnvelope>| {
                due.into_iter()
                    .filter(|c| c.command.command_type() == "record_reinspection_overdue")
                    .collect::<Vec<_>>()
            };
            let january: jiff::Timestamp = "2027-01-15T00:00:00Z".parse().unwrap();
            assert!(overdue(due_commands(tables.as_ref(), january).await.unwrap()).is_empty());
            let february: jiff::Timestamp = "2027-02-01T00:00:00Z".parse().unwrap();
            let due = overdue(due_commands(tables.as_ref(), february).await.unwrap());
            assert_eq!(due.len(), 1);
            for _ in 0..2 {
                let reply = handler.handle(due[0].clone()).await;
                assert!(
                    matches!(reply, Reply::Accepted { .. } | Reply::Duplicate { .. }),
                    "{}",
                    reply.to_json()
                );
            }
            projector.catch_up().await.unwrap();
            assert!(overdue(due_commands(tables.as_ref(), february).await.unwrap()).is_empty());
            projector.catch_up().await.unwrap();
            let dump = tables.dump().await.unwrap();
            assert_eq!(dump.inspection_samples.len(), 2);
            assert_eq!(
                dump.inspection_samples[1].items + dump.inspection_samples[0].items,
                4
            );
            assert_eq!(dump.inspections.len(), 4);
            assert_eq!(dump.reinspections_overdue.len(), 1);
            assert_eq!(dump.reinspections_overdue[0].due_in, "2027-01");
            let failed = dump
                .inspections
                .iter()
                .find(|i| i.verdict == "fail" && i.period == "2026-11")
                .unwrap();
            assert_eq!(failed.reinspect_in.as_deref(), Some("2026-12"));

            let report = inspections_report(tables.as_ref(), &ReportQuery::default())
                .await
                .unwrap();
            let nov = &report["agents"][0];
            assert_eq!(nov["period"], "2026-11");
            assert_eq!(nov["drawn"], 2);
            assert_eq!(nov["inspected"], 2);
            assert_eq!(nov["dimensions"]["overall"], 3.5);
            assert_eq!(nov["dimensions"]["quality"], 5.0);
            assert_eq!(nov["log_complete_percent"], 50.0);
            assert_eq!(nov["failed"], 1);
            assert_eq!(nov["reinspections_due"], 1);
            assert_eq!(nov["reinspected"], 1);
            assert_eq!(report["agents"][1]["period"], "2026-12");
            assert_eq!(report["agents"][1]["drawn"], 2);
            assert_eq!(report["agents"][1]["failed"], 1);
            assert_eq!(report["agents"][1]["reinspections_overdue"], 1);
            assert_eq!(report["agents"][0]["reinspections_overdue"], 0);

            // The inspections count in the scorecard's inspection score:
            // (5 + 2 + 4 + 2) / 4 x 20.
            let perf = closeloop_projections::report::performance_report(
                tables.as_ref(),
                &ReportQuery {
                    period: closeloop_projections::period::Granularity::Total,
                    ..ReportQuery::default()
                },
                &closeloop_projections::report::ScoreWeights::default(),
            )
            .await
            .unwrap();
            let row = &perf["agents"][0];
            assert_eq!(row["inspections"], 4);
            assert_eq!(row["score_parts"]["results"]["of"]["inspection"], 65.0);

            // Replay equals live.
            assert_eq!(one_pass(log.clone()).await, dump);
        });
    }
}

/// Step deadlines (`set_deadline`): a hand-computed scenario through the handler, the
/// `deadlines` table, the scheduler (each warning and breach once, a retry a duplicate), the
/// consequence of a breached repair, the deadlines report, and a replay.
pub(crate) mod step_deadlines {
    use super::complaints::{send, submit, ticket};
    use super::*;
    use closeloop_process::scheduler::due_commands;
    use closeloop_projections::report::deadlines_report;
    use closeloop_projections::tables::parse_time;
    use closeloop_projections::tables::sqlite::SqliteTables;
    use serde_json::json;

    fn at(text: &str) -> Option<i64> {
        Some(parse_time(text).unwrap())
    }

    #[test]
    fn step_deadlines_are_warned_of_and_breached_once_and_reported_per_kind_agent_and_team() {
        runtime().block_on(run(Arc::new(MemoryTables::new())));
    }

    #[test]
    fn step_deadlines_are_warned_of_and_breached_once_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tables.db");
        runtime().block_on(async {
            let tables = SqliteTables::open(&path).unwrap();
            run(Arc::new(tables)).await
        });
    }

    /// The scenario on `tables` (any store: the scheduler's reads are each store's own).
    pub(crate) async fn run(tables: Arc<dyn TableStore>) {
        {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
            let setup = "2026-11-20T08:00:00Z";
            for (agent, lead) in [("agent-1", false), ("supervisor-1", true)] {
                submit(
                    &handler,
                    "system",
                    setup,
                    "register_agent",
                    json!({"agent_id": agent, "name": agent, "team": "alpha", "line": 1,
                           "level": "senior", "team_lead": lead}),
                )
                .await;
            }
            let weekdays: Vec<_> = ["mon", "tue", "wed", "thu", "fri"]
                .iter()
                .map(|d| json!({"day": d, "start": "09:00", "end": "17:00"}))
                .collect();
            submit(
                &handler,
                "system",
                setup,
                "define_calendar",
                json!({"calendar_id": "office", "time_zone": "UTC", "weekly_hours": weekdays}),
            )
            .await;
            let every_day: Vec<_> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .map(|d| json!({"day": d, "start": "00:00", "end": "24:00"}))
                .collect();
            submit(
                &handler,
                "system",
                setup,
                "define_calendar",
                json!({"calendar_id": "always", "time_zone": "UTC", "weekly_hours": every_day}),
            )
            .await;
            // The kinds are configuration: a repair in three days (24x7), warned four hours
            // before, an exchange when breached; paperwork in 8 office hours, warned an hour
            // before. A supervisor defines them as other reference data; an agent may not.
            submit(
                &handler,
                "supervisor",
                setup,
                "define_deadline_kind",
                json!({"kind": "repair", "business_hours": 72, "calendar_id": "always",
                       "warn_before_minutes": 240, "on_breach": "flag_exchange"}),
            )
            .await;
            submit(
                &handler,
                "system",
                setup,
                "define_deadline_kind",
                json!({"kind": "paperwork", "business_minutes": 480, "calendar_id": "office",
                       "warn_before_minutes": 60}),
            )
            .await;
            let refused = send(
                &handler,
                "agent",
                setup,
                "define_deadline_kind",
                json!({"kind": "visit_record", "business_hours": 168}),
            )
            .await;
            assert!(
                matches!(refused, Reply::Rejected { .. }),
                "{}",
                refused.to_json()
            );

            // A repair ticket of agent-1's, opened Monday 23 November 09:00, never resolved in
            // time.
            let id = uuid::Uuid::now_v7();
            ticket(&handler, id, "repair", "agent-1", None).await;
            // 1: the repair, set by its owner at 10:00 Monday: due Thursday 10:00 (72 hours
            // 24x7), warned at 06:00.
            submit(
                &handler,
                "agent",
                "2026-11-23T10:00:00Z",
                "set_deadline",
                json!({"ticket_id": id, "kind": "repair", "owner": "agent-1"}),
            )
            .await;
            // 2: paperwork of the lead's, set Monday 16:00: one office hour Monday, seven
            // Tuesday: due Tuesday 16:00, warned at 15:00. Done Tuesday 12:00: met.
            submit(
                &handler,
                "supervisor",
                "2026-11-23T16:00:00Z",
                "set_deadline",
                json!({"ticket_id": id, "kind": "paperwork", "owner": "supervisor-1"}),
            )
            .await;
            // 3: paperwork of agent-1's due at a time, Wednesday 12:00: 12 office hours from
            // Monday 16:00, so the warning is 11 office hours on: Wednesday 11:00.
            submit(
                &handler,
                "supervisor",
                "2026-11-23T16:00:00Z",
                "set_deadline",
                json!({"ticket_id": id, "kind": "paperwork", "owner": "agent-1",
                       "due_at": "2026-11-25T12:00:00Z"}),
            )
            .await;
            // A service sets no deadline.
            let refused = send(
                &handler,
                "service",
                "2026-11-23T16:30:00Z",
                "set_deadline",
                json!({"ticket_id": id, "kind": "paperwork", "owner": "agent-1"}),
            )
            .await;
            assert!(
                matches!(refused, Reply::Rejected { .. }),
                "{}",
                refused.to_json()
            );
            submit(
                &handler,
                "supervisor",
                "2026-11-24T12:00:00Z",
                "complete_deadline",
                json!({"ticket_id": id, "deadline": 2}),
            )
            .await;

            let mut projector = TableProjector::open(log.clone(), tables.clone(), config(3))
                .await
                .unwrap();
            projector.catch_up().await.unwrap();
            let dump = tables.dump().await.unwrap();
            let rows = &dump.deadlines;
            assert_eq!(rows.len(), 3);
            fn times(
                r: &closeloop_projections::tables::DeadlineRow,
            ) -> (i64, Option<i64>, Option<i64>, &str) {
                (r.set_at, r.due_at, r.warn_at, r.status.as_str())
            }
            assert_eq!(
                times(&rows[0]),
                (
                    at("2026-11-23T10:00:00Z").unwrap(),
                    at("2026-11-26T10:00:00Z"),
                    at("2026-11-26T06:00:00Z"),
                    "open"
                )
            );
            assert_eq!(
                times(&rows[1]),
                (
                    at("2026-11-23T16:00:00Z").unwrap(),
                    at("2026-11-24T16:00:00Z"),
                    at("2026-11-24T15:00:00Z"),
                    "met"
                )
            );
            assert_eq!(rows[1].met_at, at("2026-11-24T12:00:00Z"));
            assert_eq!(
                (rows[1].owner.as_str(), rows[1].team.as_str()),
                ("supervisor-1", "alpha")
            );
            assert_eq!(
                times(&rows[2]),
                (
                    at("2026-11-23T16:00:00Z").unwrap(),
                    at("2026-11-25T12:00:00Z"),
                    at("2026-11-25T11:00:00Z"),
                    "open"
                )
            );

            // Thursday 11:00: both open deadlines are past their warning and their due time:
            // the paperwork (due first) then the repair, a warning before each breach; asked
            // twice (two instances, a retry), appended once.
            let deadline_commands = |due: Vec<closeloop_core::domain::CommandEnvelope>| {
                due.into_iter()
                    .filter(|c| c.command.command_type().contains("deadline"))
                    .collect::<Vec<_>>()
            };
            let early: jiff::Timestamp = "2026-11-24T14:59:00Z".parse().unwrap();
            assert!(
                deadline_commands(due_commands(tables.as_ref(), early).await.unwrap()).is_empty()
            );
            let now: jiff::Timestamp = "2026-11-26T11:00:00Z".parse().unwrap();
            let due = deadline_commands(due_commands(tables.as_ref(), now).await.unwrap());
            let marks: Vec<_> = due
                .iter()
                .map(|c| match &c.command {
                    closeloop_core::domain::Command::RaiseDeadlineWarning(w) => {
                        ("warning", w.deadline)
                    }
                    closeloop_core::domain::Command::RecordDeadlineBreach(b) => {
                        ("breach", b.deadline)
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                marks,
                [("warning", 3), ("breach", 3), ("warning", 1), ("breach", 1)]
            );
            let before = log
                .read_stream(&format!("ticket-{id}"), 0)
                .await
                .unwrap()
                .len();
            for command in due.iter().chain(due.iter()) {
                let mut command = command.clone();
                command.occurred_at = Some(now);
                let reply = handler.handle(command).await;
                assert!(
                    matches!(reply, Reply::Accepted { .. } | Reply::Duplicate { .. }),
                    "{}",
                    reply.to_json()
                );
            }
            let events = log.read_stream(&format!("ticket-{id}"), 0).await.unwrap();
            assert_eq!(events.len(), before + 4, "four marks, once each");
            projector.catch_up().await.unwrap();
            assert!(
                deadline_commands(due_commands(tables.as_ref(), now).await.unwrap()).is_empty()
            );

            // The breached repair flagged the ticket for exchange: its state says so, and the
            // breach names the consequence.
            let state = events
                .iter()
                .fold(None, |s, e| {
                    closeloop_core::domain::evolve(s, &e.decode().unwrap())
                })
                .unwrap();
            assert!(state.exchange_flagged);
            // The repair is done after all, late; the ticket is settled as an exchange.
            submit(
                &handler,
                "agent",
                "2026-11-26T12:00:00Z",
                "complete_deadline",
                json!({"ticket_id": id, "deadline": 1}),
            )
            .await;
            submit(
                &handler,
                "agent",
                "2026-11-26T12:30:00Z",
                "resolve_ticket",
                json!({"ticket_id": id, "resolution": "unit exchanged", "outcome": "exchanged"}),
            )
            .await;
            projector.catch_up().await.unwrap();
            let dump = tables.dump().await.unwrap();
            let rows = &dump.deadlines;
            assert_eq!(rows[0].status, "met_late");
            assert_eq!(rows[0].consequence.as_deref(), Some("flag_exchange"));
            assert_eq!(rows[0].warned_at, Some(now.as_second()));
            assert_eq!(rows[0].breached_at, Some(now.as_second()));
            assert_eq!(rows[0].met_at, at("2026-11-26T12:00:00Z"));
            assert_eq!(rows[2].status, "breached");
            assert_eq!(rows[2].consequence, None);

            // The report: three due in November; one met, two breached (one of them done
            // late): a third met. Per kind, per owner and per team.
            let report = deadlines_report(tables.as_ref(), &ReportQuery::default())
                .await
                .unwrap();
            let periods = report["periods"].as_array().unwrap();
            assert_eq!(periods.len(), 1);
            let p = &periods[0];
            assert_eq!(p["period"], "2026-11");
            assert_eq!(
                (
                    &p["due"],
                    &p["met"],
                    &p["breached"],
                    &p["met_late"],
                    &p["open"]
                ),
                (&json!(3), &json!(1), &json!(2), &json!(1), &json!(0))
            );
            assert_eq!(p["met_percent"], 33.3);
            let find = |list: &str, key: &str, name: &str| {
                p[list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r[key] == name)
                    .cloned()
                    .unwrap()
            };
            let paperwork = find("kinds", "kind", "paperwork");
            assert_eq!(
                (&paperwork["due"], &paperwork["met_percent"]),
                (&json!(2), &json!(50.0))
            );
            let repair = find("kinds", "kind", "repair");
            assert_eq!(
                (
                    &repair["breached"],
                    &repair["met_late"],
                    &repair["met_percent"]
                ),
                (&json!(1), &json!(1), &json!(0.0))
            );
            let agent = find("agents", "agent_id", "agent-1");
            assert_eq!((&agent["due"], &agent["breached"]), (&json!(2), &json!(2)));
            assert_eq!(agent["team"], "alpha");
            let lead = find("agents", "agent_id", "supervisor-1");
            assert_eq!(
                (&lead["met"], &lead["met_percent"]),
                (&json!(1), &json!(100.0))
            );
            let team = find("teams", "team", "alpha");
            assert_eq!((&team["due"], &team["met"]), (&json!(3), &json!(1)));
            // Filtered to the lead: theirs alone.
            let theirs = deadlines_report(
                tables.as_ref(),
                &ReportQuery {
                    agent: Some("supervisor-1".into()),
                    ..ReportQuery::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(theirs["periods"][0]["due"], 1);

            // Replay equals live.
            assert_eq!(one_pass(log.clone()).await, dump);
        }
    }
}
