//! Business time through the handler, on production rules (not the tests' trusting ones):
//! backdating bounded by role, never before the stream's last event, never in the future; a
//! property test over random command sequences; and the audit case of a `serve` started
//! weeks after a ticket's deadlines: warning and breach both recorded, every event at its
//! real decision time, and no cut of the history skipping a version.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{business_time, Role, TimeRules};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::{EventLog, StoredEvent};
use closeloop_process::scheduler::due_commands;
use closeloop_process::{ProcessConfig, ProcessManagers};
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::TableStore;
use closeloop_replay::history::{ticket_history, Cut};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

/// A clock the test moves by hand (seconds since the epoch).
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn at(t: &str) -> Clock {
        Clock(Arc::new(AtomicI64::new(
            t.parse::<Timestamp>().unwrap().as_second(),
        )))
    }
    fn now(&self) -> Timestamp {
        Timestamp::from_second(self.0.load(Ordering::SeqCst)).unwrap()
    }
    fn advance(&self, by: SignedDuration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

/// A handler on production time rules, reading `clock`.
fn handler(log: &Arc<dyn EventLog>, clock: &Clock) -> Arc<Handler> {
    let clock = clock.clone();
    Arc::new(Handler::new(
        log.clone(),
        HandlerConfig {
            clock: Arc::new(move || clock.now()),
            ..HandlerConfig::default()
        },
    ))
}

fn body(kind: &str, actor: (&str, &str), at: Option<Timestamp>, payload: Value) -> Vec<u8> {
    let mut v = json!({
        "command_id": Uuid::now_v7(),
        "type": kind,
        "actor": {"id": actor.0, "role": actor.1},
        "payload": payload,
    });
    if let Some(at) = at {
        v["occurred_at"] = json!(at);
    }
    serde_json::to_vec(&v).unwrap()
}

async fn send(
    h: &Handler,
    kind: &str,
    actor: (&str, &str),
    at: Option<Timestamp>,
    p: Value,
) -> Reply {
    h.handle_bytes(&body(kind, actor, at, p)).await
}

fn accepted(reply: &Reply) -> bool {
    matches!(reply, Reply::Accepted { .. })
}

/// The path and message of a rejection.
fn rejected_at(reply: &Reply) -> (String, String) {
    let json: Value = serde_json::from_str(&reply.to_json()).unwrap();
    assert_eq!(json["status"], "rejected", "{json}");
    (
        json["error"]["details"][0]["path"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        json["error"]["message"].as_str().unwrap().to_owned(),
    )
}

const SYS: (&str, &str) = ("setup", "system");
const CRM: (&str, &str) = ("crm", "service");
const AGENT: (&str, &str) = ("a1", "agent");

async fn setup(h: &Handler) {
    let week: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| json!({"day": d, "start": "00:00", "end": "24:00"}))
        .collect();
    for (kind, payload) in [
        (
            "define_calendar",
            json!({"calendar_id": "always", "time_zone": "UTC", "weekly_hours": week}),
        ),
        (
            "define_sla_policy",
            json!({"policy_id": "p", "match": {}, "first_response_minutes": 60,
                "resolution_minutes": 600, "calendar_id": "always", "warn_at_percent": 80}),
        ),
        (
            "register_agent",
            json!({"agent_id": "a1", "name": "A", "team": "front", "line": 1,
                "level": "senior", "team_lead": false}),
        ),
        (
            "register_agent",
            json!({"agent_id": "s1", "name": "S", "team": "spec", "line": 2,
                "level": "senior", "team_lead": false}),
        ),
    ] {
        let reply = send(h, kind, SYS, None, payload).await;
        assert!(accepted(&reply), "{kind}: {}", reply.to_json());
    }
}

fn open(ticket: Uuid) -> Value {
    json!({"ticket_id": ticket, "customer_id": "c1", "channel": "email",
        "category": "incident", "priority": "normal", "subject": "s"})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn backdating_is_bounded_by_role_and_time_never_runs_backwards() {
    runtime().block_on(async {
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let clock = Clock::at("2026-11-06T09:00:00Z");
        let h = handler(&log, &clock);
        setup(&h).await;
        let now = clock.now();
        let hour_ago = now - SignedDuration::from_hours(1);

        // A service may record an hour-old opening (a record made elsewhere).
        let ticket = Uuid::now_v7();
        assert!(accepted(
            &send(&h, "open_ticket", CRM, Some(hour_ago), open(ticket)).await
        ));
        // An agent may not claim an answer at that hour: the bound is named.
        let reply = json!({"ticket_id": ticket, "text": "hello", "visible_to_customer": true});
        let (path, message) =
            rejected_at(&send(&h, "add_note", AGENT, Some(hour_ago), reply.clone()).await);
        assert_eq!(path, "/occurred_at");
        assert!(message.contains("more than 5m before receipt"), "{message}");
        let assign = json!({"ticket_id": ticket, "agent_id": "a1"});
        let four = now - SignedDuration::from_mins(4);
        assert!(accepted(
            &send(&h, "assign_ticket", SYS, Some(four), assign).await
        ));
        let before = log.head().await.unwrap();
        // Nor in the future beyond the skew allowance.
        let later = now + SignedDuration::from_mins(10);
        let (path, message) =
            rejected_at(&send(&h, "add_note", AGENT, Some(later), reply.clone()).await);
        assert_eq!(path, "/occurred_at");
        assert!(message.contains("in the future"), "{message}");
        assert_eq!(log.head().await.unwrap(), before, "nothing appended");

        // Three minutes back is within an agent's window.
        let three = now - SignedDuration::from_mins(3);
        assert!(accepted(
            &send(&h, "add_note", AGENT, Some(three), reply.clone()).await
        ));
        // ... but after that, two minutes back is before the stream's last event.
        clock.advance(SignedDuration::from_mins(1));
        let (path, message) = rejected_at(
            &send(
                &h,
                "add_note",
                AGENT,
                Some(three - SignedDuration::from_mins(1)),
                reply.clone(),
            )
            .await,
        );
        assert_eq!(path, "/occurred_at");
        assert!(
            message.contains("before the stream's last event"),
            "{message}"
        );
        // Omitted means now.
        assert!(accepted(&send(&h, "add_note", AGENT, None, reply).await));
        let events = log
            .read_stream(&format!("ticket-{ticket}"), 0)
            .await
            .unwrap();
        let times: Vec<Timestamp> = events.iter().map(|e| e.metadata.occurred_at).collect();
        assert_eq!(times, [hour_ago, four, three, clock.now()]);
    });
}

/// One step of a random sequence: which ticket, who, the claimed time relative to the
/// clock (minutes; `None`: omitted), and how far the clock moves first.
#[derive(Debug, Clone)]
struct Step {
    ticket: usize,
    service: bool,
    claimed_min: Option<i64>,
    advance_s: i64,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..3,
        any::<bool>(),
        prop_oneof![
            Just(None),
            (-60i64 * 24 * 9..5).prop_map(Some),
            (-8i64..4).prop_map(Some)
        ],
        0i64..900,
    )
        .prop_map(|(ticket, service, claimed_min, advance_s)| Step {
            ticket,
            service,
            claimed_min,
            advance_s,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is sent, every stream's business time is monotonic and within the bounds
    /// of each command's receipt; each command is accepted exactly when the rule allows it,
    /// with the time the rule gives, and refused at `/occurred_at` otherwise.
    #[test]
    fn business_time_is_monotonic_per_stream(steps in prop::collection::vec(step(), 1..40)) {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let clock = Clock::at("2026-11-06T09:00:00Z");
            let h = handler(&log, &clock);
            setup(&h).await;
            let rules = TimeRules::default();
            let tickets: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
            let mut opened = [false; 3];
            let mut last: [Option<Timestamp>; 3] = [None; 3];
            for s in &steps {
                clock.advance(SignedDuration::from_secs(s.advance_s));
                let received = clock.now();
                let claimed = s.claimed_min.map(|m| received + SignedDuration::from_mins(m));
                let ticket = tickets[s.ticket];
                // The first command on a ticket opens it (a service); later ones are customer
                // replies (the service) or notes (the system).
                let (kind, actor, payload) = if !opened[s.ticket] {
                    ("open_ticket", CRM, open(ticket))
                } else if s.service {
                    ("record_customer_reply", CRM, json!({"ticket_id": ticket, "message": "m"}))
                } else {
                    let note = json!({"ticket_id": ticket, "text": "n", "visible_to_customer": false});
                    ("add_note", SYS, note)
                };
                let role = if actor == CRM { Role::Service } else { Role::System };
                let expected = business_time(claimed, role, received, last[s.ticket], &rules);
                let reply = send(&h, kind, actor, claimed, payload).await;
                match expected {
                    Ok(at) => {
                        prop_assert!(accepted(&reply), "{:?}: {}", s, reply.to_json());
                        let events = log.read_stream(&format!("ticket-{ticket}"), 0).await.unwrap();
                        prop_assert_eq!(events.last().unwrap().metadata.occurred_at, at);
                        opened[s.ticket] = true;
                        last[s.ticket] = Some(at);
                    }
                    Err(_) => {
                        let (path, _) = rejected_at(&reply);
                        prop_assert_eq!(path, "/occurred_at");
                    }
                }
            }
            for ticket in &tickets {
                let events = log.read_stream(&format!("ticket-{ticket}"), 0).await.unwrap();
                for pair in events.windows(2) {
                    prop_assert!(pair[0].metadata.occurred_at <= pair[1].metadata.occurred_at);
                }
            }
            Ok(())
        })?;
    }
}

/// What `serve` does when it starts: the process managers react to the log, the tables
/// catch up, the scheduler submits what is due at the clock's "now". Twice, so the
/// escalation the breach calls for is made too.
async fn serve_starts(
    h: &Arc<Handler>,
    clock: &Clock,
    tables: &Arc<MemoryTables>,
    projector: &mut TableProjector,
    managers: &mut ProcessManagers,
) {
    for _ in 0..2 {
        managers.step().await.unwrap();
        projector.catch_up().await.unwrap();
        let store: &dyn TableStore = tables.as_ref();
        for command in due_commands(store, clock.now()).await.unwrap() {
            let reply = h.handle(command).await;
            assert!(
                !matches!(reply, Reply::Rejected { .. }),
                "{}",
                reply.to_json()
            );
        }
    }
}

#[test]
fn a_serve_started_after_the_deadlines_records_them_at_its_own_time() {
    runtime().block_on(async {
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let opened_at = "2026-11-06T09:00:00Z";
        let clock = Clock::at(opened_at);
        let h = handler(&log, &clock);
        setup(&h).await;
        // Set up an hour before: the ticket's policy and agents exist when it opens.
        let ticket = Uuid::now_v7();
        assert!(accepted(
            &send(&h, "open_ticket", CRM, None, open(ticket)).await
        ));

        // No serve runs for three weeks; then one starts.
        clock.advance(SignedDuration::from_hours(24 * 21));
        let started = clock.now();
        let tables = Arc::new(MemoryTables::new());
        let mut projector =
            TableProjector::open(log.clone(), tables.clone(), TableConfig::default())
                .await
                .unwrap();
        let mut managers = ProcessManagers::new(h.clone(), ProcessConfig::default());
        serve_starts(&h, &clock, &tables, &mut projector, &mut managers).await;

        let events: Vec<StoredEvent> = log
            .read_stream(&format!("ticket-{ticket}"), 0)
            .await
            .unwrap();
        let kinds: Vec<(&str, String)> = events
            .iter()
            .map(|e| {
                (
                    e.event_type.as_str(),
                    e.data["target"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        // Each deadline's warning comes before its breach; the assignment and the
        // escalation follow.
        for target in ["first_response", "resolution"] {
            let warning = kinds
                .iter()
                .position(|k| k == &("sla_warning_raised", target.to_owned()));
            let breach = kinds
                .iter()
                .position(|k| k == &("sla_breached", target.to_owned()));
            assert!(warning.is_some() && warning < breach, "{target}: {kinds:?}");
        }
        for kind in ["ticket_assigned", "ticket_escalated"] {
            assert!(kinds.iter().any(|k| k.0 == kind), "{kind}: {kinds:?}");
        }
        // Everything after the opening happened when serve decided it, not backdated; the
        // moments the deadlines mark are in their data.
        let first_due: Timestamp = "2026-11-06T10:00:00Z".parse().unwrap();
        for e in &events[1..] {
            assert_eq!(
                e.metadata.occurred_at, started,
                "{} was backdated",
                e.event_type
            );
        }
        assert!(events
            .iter()
            .any(|e| e.event_type == "sla_breached" && e.data["due_at"] == json!(first_due)));
        for pair in events.windows(2) {
            assert!(pair[0].metadata.occurred_at <= pair[1].metadata.occurred_at);
        }

        // As of a day after the opening the ticket was just open: version 1 alone, no gap;
        // on the recorded-time axis likewise, as the log held it after the opening.
        let day_after: Timestamp = "2026-11-07T09:00:00Z".parse().unwrap();
        let as_of = ticket_history(
            log.as_ref(),
            ticket,
            Cut {
                as_of: Some(day_after),
                as_known_at: None,
            },
        )
        .await
        .unwrap();
        let versions: Vec<u64> = as_of.events.iter().map(|e| e.version).collect();
        assert_eq!(versions, [1]);
        assert_eq!(as_of.state.assignee, None);
        let known = ticket_history(
            log.as_ref(),
            ticket,
            Cut {
                as_of: None,
                as_known_at: Some(events[0].metadata.recorded_at),
            },
        )
        .await
        .unwrap();
        assert_eq!(known.events.len(), 1);
        // Every cut is a prefix: versions 1..=n with nothing skipped.
        for cut_at in events.iter().map(|e| e.metadata.occurred_at) {
            let cut = ticket_history(
                log.as_ref(),
                ticket,
                Cut {
                    as_of: Some(cut_at),
                    as_known_at: None,
                },
            )
            .await
            .unwrap();
            let versions: Vec<u64> = cut.events.iter().map(|e| e.version).collect();
            assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
        }
    });
}
