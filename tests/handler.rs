//! The command handler across processes: two handlers on one log stand for two `serve`
//! instances. Each caches the directory and the tickets it has seen; a command refused
//! against a cache that another instance has since made stale must be decided again against
//! the log, not refused (a refusal appends nothing, so no expected version or `Unchanged`
//! condition guards it).

use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::RejectionCode;
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::EventLog;
use serde_json::{json, Value};
use uuid::Uuid;

fn cmd(kind: &str, actor: (&str, &str), at: &str, payload: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "command_id": Uuid::now_v7(),
        "type": kind,
        "actor": {"id": actor.0, "role": actor.1},
        "occurred_at": at,
        "payload": payload,
    }))
    .expect("json")
}

const ADMIN: (&str, &str) = ("provisioning", "system");
const CRM: (&str, &str) = ("crm", "service");
const AGENT1: (&str, &str) = ("agent-1", "agent");
const BACKUP: (&str, &str) = ("agent-b", "agent");

async fn accept(handler: &Handler, bytes: Vec<u8>) {
    let reply = handler.handle_bytes(&bytes).await;
    assert!(
        matches!(reply, Reply::Accepted { .. }),
        "expected accepted: {}",
        reply.to_json()
    );
}

/// Two handlers on one log; agent-1 (backed up by agent-b) holds an open ticket, and both
/// handlers have seen the directory and the ticket.
async fn two_instances() -> (Arc<dyn EventLog>, Handler, Handler, Uuid) {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let one = Handler::new(log.clone(), HandlerConfig::trusting());
    let two = Handler::new(log.clone(), HandlerConfig::trusting());
    let at = "2026-11-02T08:00:00Z";
    for (id, backup) in [("agent-1", Some("agent-b")), ("agent-b", None)] {
        accept(
            &one,
            cmd(
                "register_agent",
                ADMIN,
                at,
                json!({"agent_id": id, "name": id, "team": "front", "line": 1,
                       "level": "senior", "backup_agent_id": backup}),
            ),
        )
        .await;
    }
    let ticket = Uuid::now_v7();
    accept(
        &one,
        cmd(
            "open_ticket",
            CRM,
            at,
            json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email",
                   "category": "incident", "priority": "normal", "subject": "down"}),
        ),
    )
    .await;
    accept(
        &one,
        cmd(
            "assign_ticket",
            AGENT1,
            at,
            json!({"ticket_id": ticket, "agent_id": "agent-1"}),
        ),
    )
    .await;
    // The second instance sees the directory and the ticket as they are now.
    accept(
        &two,
        cmd(
            "respond_to_customer",
            AGENT1,
            "2026-11-02T08:10:00Z",
            json!({"ticket_id": ticket, "message": "on it"}),
        ),
    )
    .await;
    (log, one, two, ticket)
}

#[tokio::test]
async fn a_refusal_against_a_directory_another_instance_changed_is_decided_again() {
    let (log, one, two, ticket) = two_instances().await;
    // Instance one records agent-1's leave: agent-b now covers agent-1's tickets.
    accept(
        &one,
        cmd(
            "set_agent_availability",
            AGENT1,
            "2026-11-03T00:00:00Z",
            json!({"agent_id": "agent-1", "available": false}),
        ),
    )
    .await;
    let head = log.head().await.expect("head");
    // Instance two's directory still has agent-1 available: deciding against it alone would
    // refuse the backup as forbidden.
    accept(
        &two,
        cmd(
            "resolve_ticket",
            BACKUP,
            "2026-11-03T09:00:00Z",
            json!({"ticket_id": ticket, "resolution": "fixed"}),
        ),
    )
    .await;
    assert_eq!(log.head().await.expect("head"), head + 1);
}

#[tokio::test]
async fn a_refusal_against_a_ticket_another_instance_changed_is_decided_again() {
    let (log, one, two, ticket) = two_instances().await;
    accept(
        &one,
        cmd(
            "resolve_ticket",
            AGENT1,
            "2026-11-02T09:00:00Z",
            json!({"ticket_id": ticket, "resolution": "fixed"}),
        ),
    )
    .await;
    // Instance two's cached ticket is still in progress, where a rating is refused.
    accept(
        &two,
        cmd(
            "record_satisfaction",
            CRM,
            "2026-11-02T10:00:00Z",
            json!({"ticket_id": ticket, "score": 5, "source": "survey"}),
        ),
    )
    .await;
    // A refusal that stands after the recheck is still a refusal, and appends nothing.
    let head = log.head().await.expect("head");
    let reply = two
        .handle_bytes(&cmd(
            "record_satisfaction",
            CRM,
            "2026-11-02T10:05:00Z",
            json!({"ticket_id": ticket, "score": 4, "source": "survey"}),
        ))
        .await;
    assert!(
        matches!(reply, Reply::Rejected { .. }),
        "a second survey rating for one resolution is refused: {}",
        reply.to_json()
    );
    assert_eq!(log.head().await.expect("head"), head);
}

fn with_id(kind: &str, actor: (&str, &str), at: &str, id: Uuid, payload: Value) -> Vec<u8> {
    let mut command: Value = serde_json::from_slice(&cmd(kind, actor, at, payload)).expect("json");
    command["command_id"] = json!(id);
    serde_json::to_vec(&command).expect("json")
}

/// Issue 14, item 2: an agent who knows the id the SLA scheduler will use for a breach
/// cannot take it first and so erase the breach. The scheduler's own command under that id is
/// still appended, not answered with the agent's reply.
#[tokio::test]
async fn an_outside_command_cannot_squat_the_schedulers_id() {
    let (log, one, _two, ticket) = two_instances().await;
    let due: jiff::Timestamp = "2026-11-02T12:00:00Z".parse().expect("time");
    let breach_id = closeloop_process::scheduler::command_id(
        ticket,
        closeloop_core::domain::SlaTarget::Resolution,
        due,
        true,
    );
    let squat = one
        .handle_bytes(&with_id(
            "add_note",
            AGENT1,
            "2026-11-02T08:20:00Z",
            breach_id,
            json!({"ticket_id": ticket, "text": "mine now"}),
        ))
        .await;
    assert!(
        matches!(squat, Reply::Accepted { .. }),
        "{}",
        squat.to_json()
    );
    let head = log.head().await.expect("head");
    let breach = one
        .handle_bytes(&with_id(
            "record_sla_breach",
            (closeloop_process::scheduler::ACTOR_ID, "system"),
            "2026-11-02T12:00:01Z",
            breach_id,
            json!({"ticket_id": ticket, "target": "resolution", "due_at": due}),
        ))
        .await;
    let Reply::Accepted { events, .. } = &breach else {
        panic!(
            "the scheduler's breach must be appended: {}",
            breach.to_json()
        );
    };
    assert!(events.iter().any(|e| e == "sla_breached"), "{events:?}");
    assert!(log.head().await.expect("head") > head);
}

/// A command id is bound to its command: a retry with the same content gets the first
/// reply, other content under the same id is refused at `/command_id` and appends nothing,
/// and another actor's use of the same id is a command of its own.
#[tokio::test]
async fn a_command_id_is_bound_to_its_actor_and_content() {
    let (log, one, two, ticket) = two_instances().await;
    let id = Uuid::now_v7();
    let note = |actor, text: &str| {
        with_id(
            "add_note",
            actor,
            "2026-11-02T08:30:00Z",
            id,
            json!({"ticket_id": ticket, "text": text}),
        )
    };
    let first = one.handle_bytes(&note(AGENT1, "called back")).await;
    let Reply::Accepted { position, .. } = first else {
        panic!("{}", first.to_json());
    };
    let head = log.head().await.expect("head");

    // The same command again, on the other instance: the first reply, nothing appended.
    let retry = two.handle_bytes(&note(AGENT1, "called back")).await;
    assert!(
        matches!(retry, Reply::Duplicate { position: p, .. } if p == position),
        "{}",
        retry.to_json()
    );

    // Other content under the same id: refused, naming the field, nothing appended.
    for instance in [&one, &two] {
        let other = instance.handle_bytes(&note(AGENT1, "never called")).await;
        let error = other
            .rejection()
            .unwrap_or_else(|| panic!("{}", other.to_json()));
        assert_eq!(error.code, RejectionCode::Conflict, "{}", other.to_json());
        assert_eq!(error.details[0].path, "/command_id", "{}", other.to_json());
    }
    assert_eq!(log.head().await.expect("head"), head);

    // Another actor's command under the same id is its own command.
    let other_actor = one
        .handle_bytes(&with_id(
            "open_ticket",
            CRM,
            "2026-11-02T08:40:00Z",
            id,
            json!({"ticket_id": Uuid::now_v7(), "customer_id": "c-2", "channel": "phone",
                   "category": "inquiry", "priority": "low", "subject": "bill"}),
        ))
        .await;
    assert!(
        matches!(other_actor, Reply::Accepted { .. }),
        "{}",
        other_actor.to_json()
    );
    assert_eq!(log.head().await.expect("head"), head + 1);
}

/// A hot ticket: 16 writers at once on one ticket through one handler, none naming an
/// expected version, all accepted (their turns are serialized, so none conflicts), each
/// appended once, versions contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_on_one_ticket_never_conflict() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
    let at = "2026-11-02T08:00:00Z";
    let ticket = Uuid::now_v7();
    accept(
        &handler,
        cmd(
            "open_ticket",
            CRM,
            at,
            json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email",
                   "category": "incident", "priority": "high", "subject": "hot"}),
        ),
    )
    .await;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let handler = handler.clone();
        writers.spawn(async move {
            for n in 0..20 {
                let note = json!({"ticket_id": ticket, "text": format!("{writer}/{n}")});
                accept(&handler, cmd("add_note", ADMIN, at, note)).await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer");
    }
    let events = log
        .read_stream(&format!("ticket-{ticket}"), 0)
        .await
        .expect("read");
    assert_eq!(events.len(), 1 + 16 * 20);
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=321).collect::<Vec<_>>());
}

/// The path a refusal names, and its code.
async fn refused(handler: &Handler, bytes: Vec<u8>) -> (String, String) {
    let reply: Value =
        serde_json::from_str(&handler.handle_bytes(&bytes).await.to_json()).expect("a reply");
    assert_eq!(reply["status"], "rejected", "{reply}");
    (
        reply["error"]["code"].as_str().unwrap().to_owned(),
        reply["error"]["details"][0]["path"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// Least privilege: a supervisor changes only agents of their own team; grades and account
/// managers are provisioning's; a service acts only on the tickets it opened.
#[tokio::test]
async fn legitimate_roles_cannot_over_reach() {
    let (log, handler, _, ticket) = two_instances().await;
    let at = "2026-11-02T08:00:00Z";
    let register = |id: &str, team: &str, lead: bool| {
        json!({"agent_id": id, "name": id, "team": team, "line": 1, "level": "senior",
               "team_lead": lead})
    };
    for (id, team) in [("lead-front", "front"), ("lead-spec", "spec")] {
        accept(
            &handler,
            cmd("register_agent", ADMIN, at, register(id, team, true)),
        )
        .await;
    }
    let head = log.head().await.unwrap();
    let lead = ("lead-front", "supervisor");
    // Taking another team's agent into one's own team, or demoting its lead: refused.
    for payload in [
        register("lead-spec", "front", false),
        register("lead-spec", "front", true),
    ] {
        let (code, path) = refused(&handler, cmd("register_agent", lead, at, payload)).await;
        assert_eq!(
            (code.as_str(), path.as_str()),
            ("forbidden", "/payload/agent_id")
        );
    }
    let (code, path) = refused(
        &handler,
        cmd(
            "register_agent",
            lead,
            at,
            register("lead-spec", "spec", false),
        ),
    )
    .await;
    assert_eq!(
        (code.as_str(), path.as_str()),
        ("forbidden", "/payload/team")
    );
    // A service creates standard customers only.
    let customer = |id: &str, grade: &str, manager: Option<&str>| json!({"customer_id": id, "name": id, "grade": grade, "account_manager_id": manager});
    for (payload, path) in [
        (customer("c-9", "vip_gold", None), "/payload/grade"),
        (
            customer("c-9", "standard", Some("agent-1")),
            "/payload/account_manager_id",
        ),
    ] {
        let (code, at_path) = refused(&handler, cmd("register_customer", CRM, at, payload)).await;
        assert_eq!((code.as_str(), at_path.as_str()), ("forbidden", path));
    }
    assert_eq!(log.head().await.unwrap(), head, "nothing appended");
    accept(
        &handler,
        cmd(
            "register_customer",
            CRM,
            at,
            customer("c-9", "standard", None),
        ),
    )
    .await;
    let (_, path) = refused(
        &handler,
        cmd(
            "register_customer",
            CRM,
            at,
            customer("c-9", "standard", None),
        ),
    )
    .await;
    assert_eq!(
        path, "/payload/customer_id",
        "a service does not change a customer"
    );
    accept(
        &handler,
        cmd(
            "register_customer",
            ADMIN,
            at,
            customer("c-9", "vip_gold", Some("agent-1")),
        ),
    )
    .await;
    // Another service may not speak for the customer of a ticket it did not open.
    let other = ("helpdesk", "service");
    let reply = json!({"ticket_id": ticket, "message": "still down"});
    let later = "2026-11-02T09:00:00Z";
    let answer = handler
        .handle_bytes(&cmd("record_customer_reply", other, later, reply.clone()))
        .await
        .to_json();
    assert!(answer.contains("\"forbidden\""), "{answer}");
    accept(&handler, cmd("record_customer_reply", CRM, later, reply)).await;
}

/// A link is recorded on both tickets; a merge closes the source to commands, naming the
/// target, and records `ticket_merged` on the target exactly once, even when the command is
/// retried after a crash left the target's event out.
#[tokio::test]
async fn links_and_merges_are_recorded_on_both_tickets_once() {
    let (log, one, _two, problem) = two_instances().await;
    let at = "2026-11-02T09:00:00Z";
    let mut open = Vec::new();
    for _ in 0..3 {
        let ticket = Uuid::now_v7();
        accept(
            &one,
            cmd(
                "open_ticket",
                CRM,
                at,
                json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "phone",
                       "category": "incident", "priority": "normal", "subject": "down too"}),
            ),
        )
        .await;
        open.push(ticket);
    }
    let (incident, duplicate, late) = (open[0], open[1], open[2]);
    accept(
        &one,
        cmd(
            "link_tickets",
            ADMIN,
            "2026-11-02T09:05:00Z",
            json!({"ticket_id": incident, "other_ticket_id": problem, "relation": "caused_by"}),
        ),
    )
    .await;
    let types = |events: Vec<closeloop_core::log::StoredEvent>| -> Vec<(String, Value)> {
        events.into_iter().map(|e| (e.event_type, e.data)).collect()
    };
    let on_problem = types(
        log.read_stream(&format!("ticket-{problem}"), 0)
            .await
            .unwrap(),
    );
    let last = on_problem.last().unwrap();
    assert_eq!(last.0, "ticket_linked");
    assert_eq!(last.1["relation"], "causes");
    assert_eq!(last.1["other_ticket_id"], incident.to_string());

    // The merge, then its retry: one `ticket_merged` on the target.
    let merge = cmd(
        "merge_ticket",
        AGENT1,
        "2026-11-02T09:10:00Z",
        json!({"ticket_id": duplicate, "into_ticket_id": problem, "reason": "same outage"}),
    );
    // agent-1 holds the problem, not the unassigned duplicate; an agent acts on the
    // unassigned tickets of their line.
    accept(&one, merge.clone()).await;
    let reply = one.handle_bytes(&merge).await;
    assert!(
        matches!(reply, Reply::Duplicate { .. }),
        "{}",
        reply.to_json()
    );
    let merged =
        |events: &[(String, Value)]| events.iter().filter(|(t, _)| t == "ticket_merged").count();
    let on_problem = types(
        log.read_stream(&format!("ticket-{problem}"), 0)
            .await
            .unwrap(),
    );
    assert_eq!(merged(&on_problem), 1);
    assert_eq!(
        on_problem.last().unwrap().1["from_ticket_id"],
        duplicate.to_string()
    );

    // The merged ticket refuses every command, naming the target; it still reads.
    let reply: Value = serde_json::from_str(
        &one.handle_bytes(&cmd(
            "add_note",
            ADMIN,
            "2026-11-02T09:20:00Z",
            json!({"ticket_id": duplicate, "text": "more"}),
        ))
        .await
        .to_json(),
    )
    .unwrap();
    assert_eq!(reply["error"]["code"], "invalid_transition", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&problem.to_string()),
        "{reply}"
    );
    let on_duplicate = types(
        log.read_stream(&format!("ticket-{duplicate}"), 0)
            .await
            .unwrap(),
    );
    assert_eq!(on_duplicate.last().unwrap().0, "ticket_merged_into");
    // Nobody links to or merges into a merged ticket.
    assert_eq!(
        refused(
            &one,
            cmd(
                "link_tickets",
                ADMIN,
                "2026-11-02T09:20:00Z",
                json!({"ticket_id": incident, "other_ticket_id": duplicate, "relation": "related"}),
            ),
        )
        .await,
        (
            "invalid_transition".to_owned(),
            "/payload/other_ticket_id".to_owned()
        )
    );

    // A crash after the source's append: the source has its event, the target none. The
    // command's retry appends the target's event.
    let id = Uuid::now_v7();
    let crashed = json!({
        "command_id": id, "type": "merge_ticket",
        "actor": {"id": "provisioning", "role": "system"},
        "occurred_at": "2026-11-02T09:30:00Z",
        "payload": {"ticket_id": late, "into_ticket_id": problem, "reason": "same outage"},
    });
    let envelope = closeloop_core::domain::parse_command(&serde_json::to_vec(&crashed).unwrap())
        .expect("a command");
    let event =
        closeloop_core::domain::Event::TicketMergedInto(closeloop_core::domain::TicketMergedInto {
            ticket_id: late,
            into_ticket_id: problem,
            reason: "same outage".into(),
        });
    let occurred_at: jiff::Timestamp = "2026-11-02T09:30:00Z".parse().unwrap();
    log.append(closeloop_core::log::AppendRequest {
        stream: format!("ticket-{late}"),
        expected: closeloop_core::log::ExpectedVersion::Any,
        command_id: closeloop_core::domain::idempotency_key(&envelope.actor, id),
        events: vec![closeloop_core::log::NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.data(),
            metadata: closeloop_core::log::Metadata {
                command_id: id,
                correlation_id: id,
                causation_id: id,
                actor: envelope.actor.clone(),
                occurred_at,
                recorded_at: occurred_at,
                command_hash: None,
            },
        }],
        unchanged: None,
    })
    .await
    .unwrap();
    let before = types(
        log.read_stream(&format!("ticket-{problem}"), 0)
            .await
            .unwrap(),
    );
    assert_eq!(merged(&before), 1);
    let reply = one
        .handle_bytes(&serde_json::to_vec(&crashed).unwrap())
        .await;
    assert!(
        matches!(reply, Reply::Duplicate { .. }),
        "{}",
        reply.to_json()
    );
    let after = types(
        log.read_stream(&format!("ticket-{problem}"), 0)
            .await
            .unwrap(),
    );
    assert_eq!(merged(&after), 2);
    assert_eq!(after.last().unwrap().1["from_ticket_id"], late.to_string());
    // A second retry appends nothing more.
    one.handle_bytes(&serde_json::to_vec(&crashed).unwrap())
        .await;
    let again = types(
        log.read_stream(&format!("ticket-{problem}"), 0)
            .await
            .unwrap(),
    );
    assert_eq!(again.len(), after.len());
}
