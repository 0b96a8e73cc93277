//! Crypto-shredding of customer data (README, "Personal data"), end to end on SQLite and
//! PostgreSQL: customer texts are stored encrypted under the customer's key and read in the
//! clear through the history; `erase_customer_data` destroys the key, after which every read
//! shows `[erased]`, the database, the export and the events the relay publishes hold no
//! clear text, `verify` passes, the tables (and so every report's figures) are unchanged,
//! a replay equals the live tables, and the key table is the only thing that changed besides
//! the appended `customer_data_erased`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::RejectionCode;
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::shred::ERASED;
use closeloop_core::log::EventLog;
use closeloop_projections::tables::shadow::Shadows;
use closeloop_projections::tables::{Dump, TableStore};
use closeloop_replay::rebuild::{self, ReplayConfig};
use closeloop_testkit::conformance::read_everything;
use closeloop_workload::{self as workload, WorkloadConfig};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::replay::fold_live;
use crate::tables::assert_same;

/// Every clear text the erased customer's records hold; none may be found after erasure.
pub(crate) const SECRETS: [&str; 7] = [
    "Zebulon Quixote-Marchetti",
    "zq-subject: my espresso machine leaks",
    "zq-description: water under the boiler",
    "zq-note: customer lives at 12 Elm Lane",
    "zq-message: a technician comes on Monday",
    "zq-resolution: gasket replaced",
    "zq-comment: slow but friendly",
];
/// Another customer's text, which the erasure leaves readable.
const KEPT: &str = "kept: the other customer's subject";

pub(crate) fn cmd(kind: &str, actor: (&str, &str), payload: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "command_id": Uuid::now_v7(),
        "type": kind,
        "actor": {"id": actor.0, "role": actor.1},
        "payload": payload,
    }))
    .expect("json")
}

const SYSTEM: (&str, &str) = ("provisioning", "system");
pub(crate) const OFFICER: (&str, &str) = ("dpo-1", "privacy_officer");

pub(crate) async fn accept(handler: &Handler, bytes: Vec<u8>) -> Reply {
    let reply = handler.handle_bytes(&bytes).await;
    assert!(
        matches!(reply, Reply::Accepted { .. }),
        "expected accepted: {}",
        reply.to_json()
    );
    reply
}

/// The erased customer's ticket, opened, worked, resolved and rated; and another
/// customer's ticket. Returns both ticket ids.
pub(crate) async fn story(handler: &Handler) -> (Uuid, Uuid) {
    let [name, subject, description, note, message, resolution, comment] = SECRETS;
    accept(
        handler,
        cmd(
            "register_customer",
            SYSTEM,
            json!({"customer_id": "cust-erase", "name": name, "grade": "standard"}),
        ),
    )
    .await;
    accept(
        handler,
        cmd(
            "register_agent",
            SYSTEM,
            json!({"agent_id": "shred-agent", "name": "Staff Name Stays", "team": "shred",
                   "line": 1, "level": "senior"}),
        ),
    )
    .await;
    let ticket = Uuid::now_v7();
    let t = ticket.to_string();
    for (kind, payload) in [
        (
            "open_ticket",
            json!({"ticket_id": t, "customer_id": "cust-erase", "channel": "email",
                   "category": "repair", "priority": "normal", "subject": subject,
                   "description": description}),
        ),
        (
            "assign_ticket",
            json!({"ticket_id": t, "agent_id": "shred-agent"}),
        ),
        (
            "add_note",
            json!({"ticket_id": t, "text": note, "visible_to_customer": false}),
        ),
        (
            "respond_to_customer",
            json!({"ticket_id": t, "message": message}),
        ),
        (
            "resolve_ticket",
            json!({"ticket_id": t, "resolution": resolution}),
        ),
        (
            "record_satisfaction",
            json!({"ticket_id": t, "score": 4, "source": "survey", "comment": comment}),
        ),
    ] {
        accept(handler, cmd(kind, SYSTEM, payload)).await;
    }
    let other = Uuid::now_v7();
    accept(
        handler,
        cmd(
            "open_ticket",
            SYSTEM,
            json!({"ticket_id": other.to_string(), "customer_id": "cust-keep",
                   "channel": "phone", "category": "inquiry", "priority": "low",
                   "subject": KEPT}),
        ),
    )
    .await;
    (ticket, other)
}

fn assert_none_in(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} holds `{secret}` in the clear"
        );
    }
}

/// What a reader inside Closeloop sees of a ticket (`closeloop history --json`).
async fn history_json(log: &dyn EventLog, ticket: Uuid) -> String {
    let history = closeloop_replay::history::ticket_history(log, ticket, Default::default())
        .await
        .unwrap();
    serde_json::to_string(&history).unwrap()
}

async fn verified(log: &dyn EventLog) {
    let report = closeloop_replay::verify::verify_log(log, |_| {})
        .await
        .unwrap();
    assert!(report.ok(), "verify: {:?}", report.breaks);
}

async fn export(log: &dyn EventLog) -> String {
    let mut out = Vec::new();
    closeloop_replay::export::export(log, None, None, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// The whole story on one backend. `raw` reads every byte the backend stores (its files, or
/// its tables as text), for the grep.
pub(crate) async fn erasure_end_to_end<F, Fut>(
    log: Arc<dyn EventLog>,
    store: Arc<dyn TableStore>,
    shadows: &dyn Shadows,
    raw: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    let work = workload::generate(&WorkloadConfig {
        seed: 5,
        tickets: 20,
        days: 3,
        customers: 10,
        ..WorkloadConfig::default()
    })
    .unwrap();
    for envelope in work.sequential() {
        let reply = handler.handle(envelope.clone()).await;
        assert!(!matches!(reply, Reply::Rejected { .. }), "{reply:?}");
    }
    let (ticket, other) = story(&handler).await;

    // Before: stored encrypted, read in the clear inside Closeloop.
    let stored = read_everything(log.as_ref()).await;
    let stored_text = serde_json::to_string(&stored).unwrap();
    assert_none_in("the stored events", &stored_text);
    assert!(stored_text.contains("enc:v1:cust-erase:"));
    assert!(
        stored_text.contains("Staff Name Stays"),
        "staff names are not customer data"
    );
    let before = history_json(log.as_ref(), ticket).await;
    for secret in &SECRETS[1..] {
        assert!(
            before.contains(secret),
            "history lacks `{secret}`: {before}"
        );
    }
    assert!(history_json(log.as_ref(), other).await.contains(KEPT));
    // The workload's merge: the target's `ticket_merged` is sealed under the target's
    // customer's key (not the source's) and opens in its history.
    let merged = stored
        .iter()
        .find(|e| e.event_type == "ticket_merged")
        .expect("the workload merges a ticket");
    assert!(merged.data["reason"]
        .as_str()
        .unwrap()
        .starts_with("enc:v1:"));
    let target: Uuid = merged.stream["ticket-".len()..].parse().unwrap();
    let target_history = history_json(log.as_ref(), target).await;
    assert!(!target_history.contains("enc:v1:"), "{target_history}");
    assert!(!target_history.contains(ERASED), "{target_history}");
    assert_none_in("the export", &export(log.as_ref()).await);
    verified(log.as_ref()).await;
    let tables_before = fold_live(log.clone(), store.clone()).await;
    assert!(log.keys().get("cust-erase").await.unwrap().is_some());

    // Only the system and a privacy officer erase.
    let erase = json!({"customer_id": "cust-erase", "reason": "erasure request under the retention policy",
                       "reference": "DPO-2026-0042"});
    for actor in [
        ("shred-agent", "agent"),
        ("lead", "supervisor"),
        ("audit", "auditor"),
    ] {
        let reply = handler
            .handle_bytes(&cmd("erase_customer_data", actor, erase.clone()))
            .await;
        match reply {
            Reply::Rejected { ref error, .. } => {
                assert_eq!(error.code, RejectionCode::Forbidden, "{}", reply.to_json())
            }
            other => panic!("{actor:?} erased: {}", other.to_json()),
        }
    }
    let request = cmd("erase_customer_data", OFFICER, erase);
    accept(&handler, request.clone()).await;
    // A retry is answered as the first, and destroys nothing more.
    assert!(matches!(
        handler.handle_bytes(&request).await,
        Reply::Duplicate { .. }
    ));
    assert!(log.keys().get("cust-erase").await.unwrap().is_none());

    // After: the events are those before plus the erasure record, byte for byte.
    let after = read_everything(log.as_ref()).await;
    assert_eq!(after.len(), stored.len() + 1);
    assert_eq!(after[..stored.len()], stored[..]);
    assert_eq!(after.last().unwrap().event_type, "customer_data_erased");
    verified(log.as_ref()).await;

    // Every read shows the marker, never ciphertext; the other customer is untouched.
    let history = history_json(log.as_ref(), ticket).await;
    assert_none_in("the history", &history);
    assert!(!history.contains("enc:v1:"), "{history}");
    let h = closeloop_replay::history::ticket_history(log.as_ref(), ticket, Default::default())
        .await
        .unwrap();
    assert_eq!(h.state.subject, ERASED);
    let notes: Vec<&Value> = h
        .events
        .iter()
        .filter(|e| e.event_type == "note_added")
        .map(|e| &e.data["text"])
        .collect();
    assert_eq!(notes, [&json!(ERASED)]);
    assert!(history_json(log.as_ref(), other).await.contains(KEPT));

    // The export and the database hold no clear text (they never did), nor any key.
    let exported = export(log.as_ref()).await;
    assert_none_in("the export", &exported);
    assert_none_in("the database", &raw().await);

    // Nothing else changed: the tables (every report's source) are as before but for the
    // erasure's own record, and a replay from the log equals them.
    let tables_after = fold_live(log.clone(), store.clone()).await;
    let erasures = &tables_after.customer_erasures;
    assert_eq!(erasures.len(), 1, "one erasure recorded: {erasures:?}");
    assert_eq!(erasures[0].customer_id, "cust-erase");
    let tables_before = Dump {
        customer_erasures: erasures.clone(),
        ..tables_before
    };
    assert_same(&tables_after, &tables_before);
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
    assert_same(&store.dump().await.unwrap(), &tables_before);

    // New data for the customer after the erasure is readable again (a new key).
    accept(
        &handler,
        cmd(
            "add_note",
            SYSTEM,
            json!({"ticket_id": ticket.to_string(), "text": "after erasure", "visible_to_customer": false}),
        ),
    )
    .await;
    assert!(history_json(log.as_ref(), ticket)
        .await
        .contains("after erasure"));
}

#[tokio::test]
async fn erasure_end_to_end_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let log: Arc<dyn EventLog> = Arc::new(
        closeloop_core::log::sqlite::SqliteLog::open(path.to_str().unwrap())
            .await
            .unwrap(),
    );
    let store: Arc<dyn TableStore> =
        Arc::new(closeloop_projections::tables::sqlite::SqliteTables::open(&path).unwrap());
    let shadows = closeloop_projections::tables::sqlite::SqliteShadows::new(&path).unwrap();
    let files = dir.path().to_owned();
    erasure_end_to_end(log, store, &shadows, || {
        let files = files.clone();
        async move {
            // Every file of the database (the main file, its WAL and shared memory).
            let mut all = String::new();
            for entry in std::fs::read_dir(&files).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
            all
        }
    })
    .await;
}

#[tokio::test]
async fn a_memory_log_stores_customer_texts_encrypted() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    let (ticket, _) = story(&handler).await;
    let stored = serde_json::to_string(&read_everything(log.as_ref()).await).unwrap();
    assert_none_in("the stored events", &stored);
    let history = history_json(log.as_ref(), ticket).await;
    assert!(history.contains(SECRETS[1]), "{history}");
}

#[tokio::test]
async fn erasure_end_to_end_postgres() {
    use crate::replay::postgres::{base, open, Scratch};
    let scratch = Scratch::new();
    let (_url, log, store, shadows) = open(&scratch).await;
    let schema = scratch.0.clone();
    erasure_end_to_end(log, store, &shadows, || {
        let schema = schema.clone();
        async move {
            // Every row of every table of the test's schemas, as text.
            let (client, conn) = tokio_postgres::connect(&base(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let tables = client
                .query(
                    "SELECT table_schema::text, table_name::text FROM information_schema.tables
                      WHERE table_schema = $1 OR table_schema LIKE $1 || '\\_%'",
                    &[&schema],
                )
                .await
                .unwrap();
            assert!(tables.len() > 5, "the schema's tables: {tables:?}");
            let mut all = String::new();
            for table in tables {
                let (s, t): (String, String) = (table.get(0), table.get(1));
                for row in client
                    .query(&format!("SELECT r::text FROM \"{s}\".\"{t}\" r"), &[])
                    .await
                    .unwrap()
                {
                    all.push_str(row.get::<_, &str>(0));
                    all.push('\n');
                }
            }
            all
        }
    })
    .await;
}

/// The fields the log encrypts are the published schemas' `"x-personal-data": "customer"`
/// fields, event type by event type (one list: `customer_fields` reads the same annotations).
#[test]
fn the_encrypted_fields_are_the_schemas_customer_fields() {
    let mut checked = 0;
    for (path, schema) in closeloop_schemas::JSON_SCHEMAS {
        let Some(name) = path.strip_prefix("events/") else {
            continue;
        };
        let event_type = name.split(".v").next().unwrap();
        let schema: Value = serde_json::from_str(schema).unwrap();
        let data = schema["properties"]["data"]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .unwrap_or_else(|| panic!("{path}: data is a $ref"));
        let marked: Vec<String> = schema["$defs"][data]["properties"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, p)| p["x-personal-data"] == "customer")
            .map(|(field, _)| field.clone())
            .collect();
        let mut encrypted = closeloop_core::domain::customer_fields(event_type).to_vec();
        let mut marked = marked;
        encrypted.sort();
        marked.sort();
        assert_eq!(encrypted, marked, "{path}");
        checked += 1;
    }
    assert!(checked >= closeloop_core::domain::Event::TYPES.len());
}

/// Two instances: one erases the customer while the other holds the customer's key in its
/// cache. The other's next command is refused by its `Unchanged` condition, catches the
/// directory up, meets `customer_data_erased` and drops the key: what it writes then is
/// sealed under a new key and readable, and what came before reads `[erased]`.
#[tokio::test]
async fn an_erasure_by_one_instance_evicts_the_key_cached_by_another() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let one = Handler::new(log.clone(), HandlerConfig::trusting());
    let two = Handler::new(log.clone(), HandlerConfig::trusting());
    let (ticket, _) = story(&one).await;
    let note = |text: &str| {
        cmd(
            "add_note",
            SYSTEM,
            json!({"ticket_id": ticket.to_string(), "text": text, "visible_to_customer": false}),
        )
    };
    accept(&two, note("zq-note: cached by the second instance")).await;
    accept(
        &one,
        cmd(
            "erase_customer_data",
            OFFICER,
            json!({"customer_id": "cust-erase", "reason": "request", "reference": "DPO-7"}),
        ),
    )
    .await;
    accept(&two, note("after the erasure, second instance")).await;
    let history = history_json(log.as_ref(), ticket).await;
    assert!(
        history.contains("after the erasure, second instance"),
        "{history}"
    );
    assert_none_in("the history", &history);
    assert!(
        !history.contains("cached by the second instance"),
        "{history}"
    );
}

/// A new customer's first commands, at once through two handlers (as two instances would):
/// each handler makes a key for the customer and carries it with its append; one append
/// stores its key, the others are refused (`KeyTaken`) and seal again under it. Every
/// command is accepted, and every ticket's subject opens under the one stored key.
async fn first_commands_of_a_new_customer_agree(log: Arc<dyn EventLog>) {
    let handlers = [
        Arc::new(Handler::new(log.clone(), HandlerConfig::trusting())),
        Arc::new(Handler::new(log.clone(), HandlerConfig::trusting())),
    ];
    let customer = format!("cust-new-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut opened = Vec::new();
    for i in 0..16 {
        let (handler, barrier) = (handlers[i % 2].clone(), barrier.clone());
        let ticket = Uuid::now_v7();
        let bytes = cmd(
            "open_ticket",
            SYSTEM,
            json!({"ticket_id": ticket.to_string(), "customer_id": customer, "channel": "email",
                   "category": "repair", "priority": "normal",
                   "subject": format!("first words {i}")}),
        );
        opened.push((
            i,
            ticket,
            tokio::spawn(async move {
                barrier.wait().await;
                handler.handle_bytes(&bytes).await
            }),
        ));
    }
    for (i, ticket, reply) in opened {
        let reply = reply.await.unwrap();
        assert!(
            matches!(reply, Reply::Accepted { .. }),
            "command {i}: {}",
            reply.to_json()
        );
        let history = history_json(log.as_ref(), ticket).await;
        assert!(
            history.contains(&format!("first words {i}")),
            "ticket {i} does not open: {history}"
        );
    }
    assert!(log.keys().get(&customer).await.unwrap().is_some());
}

#[tokio::test]
async fn first_commands_of_a_new_customer_agree_in_memory() {
    first_commands_of_a_new_customer_agree(Arc::new(MemoryLog::new())).await;
}

#[tokio::test]
async fn first_commands_of_a_new_customer_agree_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let log = closeloop_core::log::sqlite::SqliteLog::open(path.to_str().unwrap())
        .await
        .unwrap();
    first_commands_of_a_new_customer_agree(Arc::new(log)).await;
}

#[tokio::test]
async fn first_commands_of_a_new_customer_agree_on_postgres() {
    use crate::replay::postgres::{open, Scratch};
    let scratch = Scratch::new();
    let (_url, log, _store, _shadows) = open(&scratch).await;
    first_commands_of_a_new_customer_agree(log).await;
}
