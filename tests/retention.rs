//! Retention end to end on SQLite and PostgreSQL (README, "Personal data", Retention): a
//! policy keeps repair customers' data 30 days after closure; two scheduler instances at once
//! erase the expired customer at the exact deadline (one second before: nothing), and the log
//! appends exactly one `customer_data_erased`. Then: the customer's key is gone and nobody
//! else's, the events before are unchanged, `verify` passes, the tables changed only by the
//! erasure's row, the erasure report lists it, a replay equals the live tables; a customer of
//! a category no policy covers, and one with an open ticket, keep their data; and the erased
//! customer, back with a new ticket, is erased again only when that one has expired.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::CommandEnvelope;
use closeloop_core::log::EventLog;
use closeloop_process::scheduler::due_commands;
use closeloop_projections::report::{erasures_report, ReportQuery};
use closeloop_projections::tables::runner::TableProjector;
use closeloop_projections::tables::shadow::Shadows;
use closeloop_projections::tables::{Dump, TableStore};
use closeloop_replay::rebuild::{self, ReplayConfig};
use closeloop_testkit::conformance::read_everything;
use jiff::Timestamp;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::replay::table_config;

const SYSTEM: (&str, &str) = ("provisioning", "system");
const OFFICER: (&str, &str) = ("dpo-1", "privacy_officer");
/// The expired customer's name: only ever stored encrypted, under their key.
const NAME: &str = "Ottilie Retention-Example";

async fn send(handler: &Handler, actor: (&str, &str), at: &str, kind: &str, payload: Value) {
    let body = json!({
        "command_id": Uuid::now_v7(),
        "type": kind,
        "actor": {"id": actor.0, "role": actor.1},
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

/// A repair (or other `category`) ticket of `customer`, opened, resolved and closed at
/// `closed` (opened an hour before).
async fn closed_ticket(handler: &Handler, customer: &str, category: &str, closed: &str) -> Uuid {
    let at: Timestamp = closed.parse().unwrap();
    let opened = (at - jiff::SignedDuration::from_hours(1)).to_string();
    let id = Uuid::now_v7();
    send(
        handler,
        SYSTEM,
        &opened,
        "open_ticket",
        json!({"ticket_id": id, "customer_id": customer, "channel": "email",
               "category": category, "priority": "normal", "subject": "a broken kettle"}),
    )
    .await;
    send(
        handler,
        SYSTEM,
        &opened,
        "assign_ticket",
        json!({"ticket_id": id, "agent_id": "ret-agent"}),
    )
    .await;
    send(
        handler,
        SYSTEM,
        &opened,
        "resolve_ticket",
        json!({"ticket_id": id, "resolution": "replaced"}),
    )
    .await;
    send(
        handler,
        SYSTEM,
        closed,
        "close_ticket",
        json!({"ticket_id": id}),
    )
    .await;
    id
}

async fn verified(log: &dyn EventLog) {
    let report = closeloop_replay::verify::verify_log(log, |_| {})
        .await
        .unwrap();
    assert!(report.ok(), "verify: {:?}", report.breaks);
}

/// One scheduler instance: its table reads and its command handler.
pub(crate) struct Instance {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) tables: Arc<dyn TableStore>,
}

/// The erasures both instances find due at `now` (each from its own reads), submitted by
/// both at once at `now` (the test's clock is simulated); returns how many were accepted
/// and the commands the first instance found.
async fn tick(
    instances: &[(Instance, Handler); 2],
    projector: &mut TableProjector,
    now: &str,
) -> (usize, Vec<CommandEnvelope>) {
    projector.catch_up().await.unwrap();
    let now: Timestamp = now.parse().unwrap();
    let due = |tables: Arc<dyn TableStore>| async move {
        due_commands(tables.as_ref(), now)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.command.command_type() == "erase_customer_data")
            .map(|mut c| {
                c.occurred_at = Some(now);
                c
            })
            .collect::<Vec<_>>()
    };
    let [(a, handler_a), (b, handler_b)] = instances;
    let (due_a, due_b) = tokio::join!(due(a.tables.clone()), due(b.tables.clone()));
    assert_eq!(due_a, due_b, "both instances build the same commands");
    let (x, y) = tokio::join!(submit(handler_a, due_a.clone()), submit(handler_b, due_b));
    projector.catch_up().await.unwrap();
    (x + y, due_a)
}

/// Submits `commands` through `handler`; returns how many were accepted (the others are
/// duplicates: another instance's were first).
async fn submit(handler: &Handler, commands: Vec<CommandEnvelope>) -> usize {
    let mut accepted = 0;
    for command in commands {
        match handler.handle(command).await {
            Reply::Accepted { .. } => accepted += 1,
            Reply::Duplicate { .. } => {}
            other => panic!("{}", other.to_json()),
        }
    }
    accepted
}

/// `dump` without its erasures.
fn without_erasures(dump: &Dump) -> Dump {
    Dump {
        customer_erasures: Vec::new(),
        ..dump.clone()
    }
}

pub(crate) async fn retention_end_to_end(instances: [Instance; 2], shadows: &dyn Shadows) {
    let log = instances[0].log.clone();
    let store = instances[0].tables.clone();
    let instances = instances.map(|i| {
        let handler = Handler::new(i.log.clone(), HandlerConfig::trusting());
        (i, handler)
    });
    let handler = &instances[0].1;
    send(
        handler,
        SYSTEM,
        "2025-01-01T00:00:00Z",
        "register_agent",
        json!({"agent_id": "ret-agent", "name": "Staff", "team": "ret", "line": 1,
               "level": "senior"}),
    )
    .await;
    // The privacy officer's policy: repairs kept 30 days after closure. Nothing for inquiries.
    send(
        handler,
        OFFICER,
        "2025-01-01T00:00:00Z",
        "define_retention_policy",
        json!({"policy_id": "repairs-30", "match": {"category": "repair"}, "keep_days": 30,
               "effective_from": "2025-01-01T00:00:00Z"}),
    )
    .await;
    send(
        handler,
        SYSTEM,
        "2025-03-01T00:00:00Z",
        "register_customer",
        json!({"customer_id": "cust-ret", "name": NAME, "grade": "standard"}),
    )
    .await;
    closed_ticket(handler, "cust-ret", "repair", "2025-03-02T10:00:00Z").await;
    closed_ticket(handler, "cust-ret", "repair", "2025-03-03T10:00:00Z").await;
    // No policy covers inquiries: kept however old.
    closed_ticket(handler, "cust-inquiry", "inquiry", "2025-03-03T10:00:00Z").await;
    // Not every ticket closed: kept.
    closed_ticket(handler, "cust-open", "repair", "2025-03-03T10:00:00Z").await;
    send(
        handler,
        SYSTEM,
        "2025-03-03T10:00:00Z",
        "open_ticket",
        json!({"ticket_id": Uuid::now_v7(), "customer_id": "cust-open", "channel": "phone",
               "category": "repair", "priority": "low", "subject": "still waiting"}),
    )
    .await;

    let mut projector = TableProjector::open(log.clone(), store.clone(), table_config())
        .await
        .unwrap();
    // The deadline is the latest closure's: 2025-03-03T10:00:00Z + 30 days.
    let (accepted, due) = tick(&instances, &mut projector, "2025-04-02T09:59:59Z").await;
    assert_eq!((accepted, due.len()), (0, 0), "one second before: nothing");
    let before = read_everything(log.as_ref()).await;
    let tables_before = store.dump().await.unwrap();
    for customer in ["cust-ret", "cust-inquiry", "cust-open"] {
        assert!(
            log.keys().get(customer).await.unwrap().is_some(),
            "{customer}"
        );
    }
    let (accepted, due) = tick(&instances, &mut projector, "2025-04-02T10:00:00Z").await;
    assert_eq!(accepted, 1, "two instances, one erasure: {due:?}");
    assert_eq!(
        serde_json::to_value(&due[0].command).unwrap()["payload"],
        json!({"customer_id": "cust-ret", "reason": "retention", "reference": "repairs-30"})
    );

    // The log: the events before, unchanged, and one `customer_data_erased`.
    let after = read_everything(log.as_ref()).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    let erased = after.last().unwrap();
    assert_eq!(
        (erased.event_type.as_str(), erased.stream.as_str()),
        ("customer_data_erased", "customer-cust-ret")
    );
    assert_eq!(erased.data["erased_by"], "sla-scheduler");
    assert_eq!(
        erased.metadata.occurred_at,
        "2025-04-02T10:00:00Z".parse::<Timestamp>().unwrap()
    );
    verified(log.as_ref()).await;
    // The key table: the expired customer's row gone, the others' kept.
    assert!(log.keys().get("cust-ret").await.unwrap().is_none());
    for customer in ["cust-inquiry", "cust-open"] {
        assert!(
            log.keys().get(customer).await.unwrap().is_some(),
            "{customer}"
        );
    }
    // The tables: only the erasure's row is new.
    let tables_after = store.dump().await.unwrap();
    assert_eq!(
        without_erasures(&tables_after),
        without_erasures(&tables_before)
    );
    assert_eq!(tables_after.customer_erasures.len(), 1);
    // Erased since the last closure: never again, however late.
    let (accepted, due) = tick(&instances, &mut projector, "2025-04-30T00:00:00Z").await;
    assert_eq!((accepted, due.len()), (0, 0));

    // The report for the data-protection officer.
    let report = erasures_report(
        store.as_ref(),
        &ReportQuery {
            from: Some("2025-04-02".parse().unwrap()),
            to: Some("2025-04-02".parse().unwrap()),
            ..ReportQuery::default()
        },
    )
    .await
    .unwrap();
    let rows = report["erasures"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["customer_id"], "cust-ret");
    assert_eq!(rows[0]["erased_at"], "2025-04-02T10:00:00Z");
    assert_eq!(rows[0]["erased_by"], "sla-scheduler");
    assert_eq!(rows[0]["reason"], "retention");
    assert_eq!(rows[0]["reference"], "repairs-30");
    let earlier = erasures_report(
        store.as_ref(),
        &ReportQuery {
            to: Some("2025-04-01".parse().unwrap()),
            ..ReportQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(earlier["erasures"], json!([]), "{earlier}");

    // Back with a new ticket: erased again only once that one has expired too.
    closed_ticket(handler, "cust-ret", "repair", "2025-05-02T10:00:00Z").await;
    assert!(log.keys().get("cust-ret").await.unwrap().is_some());
    let (accepted, _) = tick(&instances, &mut projector, "2025-06-01T09:59:59Z").await;
    assert_eq!(accepted, 0);
    let (accepted, _) = tick(&instances, &mut projector, "2025-06-01T10:00:00Z").await;
    assert_eq!(accepted, 1);
    assert!(log.keys().get("cust-ret").await.unwrap().is_none());
    let all = erasures_report(store.as_ref(), &ReportQuery::default())
        .await
        .unwrap();
    assert_eq!(all["erasures"].as_array().unwrap().len(), 2, "{all}");
    verified(log.as_ref()).await;

    // A replay from the log equals the live tables.
    let live = store.dump().await.unwrap();
    rebuild::replay(
        log.as_ref(),
        shadows,
        None,
        &ReplayConfig::default(),
        &AtomicBool::new(false),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(store.dump().await.unwrap(), live);
}

#[tokio::test]
async fn retention_erases_at_the_deadline_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let log: Arc<dyn EventLog> = Arc::new(
            closeloop_core::log::sqlite::SqliteLog::open(path.to_str().unwrap())
                .await
                .unwrap(),
        );
        let tables: Arc<dyn TableStore> =
            Arc::new(closeloop_projections::tables::sqlite::SqliteTables::open(&path).unwrap());
        instances.push(Instance { log, tables });
    }
    let shadows = closeloop_projections::tables::sqlite::SqliteShadows::new(&path).unwrap();
    let instances: [Instance; 2] = instances.try_into().ok().unwrap();
    retention_end_to_end(instances, &shadows).await;
}

#[tokio::test]
async fn retention_erases_at_the_deadline_once_on_postgres() {
    use crate::replay::postgres::{open, Scratch};
    let scratch = Scratch::new();
    let (url, log, tables, shadows) = open(&scratch).await;
    // The second instance: its own connection to the same log; it reads the same tables.
    let second = Instance {
        log: closeloop_core::log::open(&url).await.unwrap(),
        tables: tables.clone(),
    };
    retention_end_to_end([Instance { log, tables }, second], &shadows).await;
}
