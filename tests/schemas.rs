//! The published JSON Schemas (draft 2020-12) under `schemas/json/`, generated from the Rust
//! types with schemars, and the drift test that keeps the checked-in files equal to what the
//! types generate. Regenerate with
//! `CLOSELOOP_UPDATE_SCHEMAS=1 cargo test --test main schemas`.
//!
//! Layout of `schemas/json/`:
//! - `command.json`: any command (one of the files below);
//! - `commands/<type>.json`: the envelope of one command type with its payload;
//! - `reply.json`: the reply to a command (and a query's `rejected` reply);
//! - `events/<type>.v<schema_version>.json`: a stored event of one type and version, as
//!   `export`, `history --json` and the events stream carry it;
//! - `queries/<name>.request.json` / `.reply.json`: every query `serve` answers
//!   (`schemas/queries.rs`);
//! - `checkpoint.json`: a signed checkpoint, as `closeloop.v1.checkpoints` carries it;
//! - `index.rs`: the list `closeloop_schemas::JSON_SCHEMAS` embeds.
//!
//! Where the wire shape is assembled from generic parts (the command envelope, the stored
//! event), a generic mirror type below describes it; a test checks that each mirror has the
//! same fields as the value the engine really sends, so the mirrors cannot drift either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use closeloop_commands::Reply;
use closeloop_core::domain::*;
use closeloop_core::log::{Metadata, StoredEvent};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde_json::{json, Value};
use uuid::Uuid;

pub(crate) mod queries;

const UPDATE_ENV: &str = "CLOSELOOP_UPDATE_SCHEMAS";

/// A command of one type: the envelope of docs/contract.md (Commands) with `P` as its payload.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct CommandOf<P> {
    /// Idempotency key: a retried command with the same id returns its first reply.
    command_id: Uuid,
    /// The command type; equal to the last token of the NATS subject.
    #[serde(rename = "type")]
    command_type: String,
    actor: Actor,
    /// Business time; the time of receipt when absent. From 2000-01-01T00:00:00Z on: the
    /// pattern states it exactly for any time in UTC, and refuses 2000-01-01 written with a
    /// positive offset and the year 9999.
    #[serde(default)]
    #[schemars(pattern(closeloop_core::domain::OCCURRED_AT_PATTERN))]
    occurred_at: Option<Timestamp>,
    /// Optimistic concurrency: the stream version the caller last saw.
    #[serde(default)]
    expected_version: Option<u64>,
    payload: P,
}

/// A stored event of one type: the envelope of docs/contract.md (Events) with `D` as its data.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct StoredEventOf<D> {
    /// Global position in the log, from 1, contiguous.
    position: u64,
    /// `<category>-<id>`.
    stream: String,
    /// Version in the stream, from 1, contiguous.
    version: u64,
    /// UUID v7; the `Nats-Msg-Id` of the published event.
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u32,
    data: D,
    metadata: Metadata,
    /// Lowercase hex SHA-256 over the previous event's hash and this event.
    hash: String,
}

/// A signed checkpoint: a line of a checkpoints file, a message on
/// `closeloop.v1.checkpoints` (`closeloop_replay::checkpoint::Checkpoint`).
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct CheckpointOf {
    format: String,
    /// The identity of the log.
    log_id: Uuid,
    /// The log's head when it was taken: it covers positions 1 to `head`.
    head: u64,
    /// When it was taken (RFC 3339, UTC); signed as written.
    created_at: Timestamp,
    /// How many streams `streams` lists.
    stream_count: u64,
    /// Lowercase hex SHA-256 over the stream heads.
    #[schemars(pattern("^[0-9a-f]{64}$"))]
    root: String,
    /// Every stream with an event at or below `head`, ascending by name:
    /// `[stream, version, hash]` as of `head`.
    streams: Vec<(String, u64, String)>,
    /// The signer's public key (hex), for information: verify with the key you hold.
    #[schemars(pattern("^[0-9a-f]{64}$"))]
    public_key: String,
    /// Hex Ed25519 signature over the lines `format`, `log_id`, `head`, `created_at`,
    /// `stream_count`, `root` (README, Signed checkpoints).
    #[schemars(pattern("^[0-9a-f]{128}$"))]
    signature: String,
}

fn schema_of<T: JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn retitle(mut schema: Value, title: &str, description: Option<&str>) -> Value {
    let object = schema.as_object_mut().expect("root schemas are objects");
    object.insert("title".into(), json!(title));
    if let Some(d) = description {
        object.insert("description".into(), json!(d));
    }
    schema
}

fn set_const(schema: &mut Value, property: &str, value: Value) {
    let slot = &mut schema["properties"][property];
    let description = slot.get("description").cloned();
    *slot = json!({"const": value});
    if let Some(d) = description {
        slot["description"] = d;
    }
}

/// The schema of one command type, from its payload type.
fn command_schema<P: JsonSchema>(command_type: &str) -> Value {
    let mut schema = retitle(
        schema_of::<CommandOf<P>>(),
        command_type,
        Some(&format!(
            "The `{command_type}` command: request/reply on closeloop.v1.commands.{command_type}."
        )),
    );
    set_const(&mut schema, "type", json!(command_type));
    schema
}

/// The schema of one event type at one schema version, from its data type.
fn event_schema<D: JsonSchema>(event_type: &str, version: u32) -> Value {
    let current = current_schema_version(event_type);
    let note = if version == current {
        String::new()
    } else {
        format!(
            " Superseded by version {current}: stored events of this version are upcast on read."
        )
    };
    let mut schema = retitle(
        schema_of::<StoredEventOf<D>>(),
        event_type,
        Some(&format!(
            "A stored `{event_type}` event (schema version {version}), published on closeloop.v1.events.<stream_category>.{event_type}.{note}"
        )),
    );
    set_const(&mut schema, "type", json!(event_type));
    set_const(&mut schema, "schema_version", json!(version));
    schema
}

/// Every schema file, by path under `schemas/json/`.
fn generate() -> BTreeMap<String, Value> {
    let mut files = BTreeMap::new();
    // One schema per command and event type, from core's own lists of them.
    macro_rules! commands {
        ($($wire:literal => $payload:ty),+ $(,)?) => {{
            $(files.insert(format!("commands/{}.json", $wire), command_schema::<$payload>($wire));)+
        }};
    }
    closeloop_core::for_each_command!(commands);
    macro_rules! events {
        ($($wire:literal => $data:ty),+ $(,)?) => {{
            $(files.insert(
                format!("events/{}.v{}.json", $wire, current_schema_version($wire)),
                event_schema::<$data>($wire, current_schema_version($wire)),
            );)+
        }};
    }
    // Superseded versions stay published: stored events of them are still read (upcast).
    files.insert(
        "events/note_added.v1.json".into(),
        event_schema::<NoteAddedV1>("note_added", 1),
    );
    closeloop_core::for_each_event!(events);
    let any_command: Vec<Value> = Command::TYPES
        .iter()
        .map(|t| json!({"$ref": format!("commands/{t}.json")}))
        .collect();
    files.insert(
        "command.json".into(),
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "command",
            "description": "Any command of the public contract; `type` selects the payload.",
            "oneOf": any_command,
        }),
    );
    let any_event: Vec<Value> = Event::TYPES
        .iter()
        .map(|t| json!({"$ref": format!("events/{t}.v{}.json", current_schema_version(t))}))
        .collect();
    files.insert(
        "event.json".into(),
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "event",
            "description": "Any stored event at the current schema version; `type` selects the data.",
            "oneOf": any_event,
        }),
    );
    files.insert(
        "reply.json".into(),
        retitle(
            schema_of::<Reply>(),
            "reply",
            Some("The reply to a command (request/reply, or published on closeloop.v1.replies.<command_id>), and a query's `rejected` reply."),
        ),
    );
    queries::generate(&mut files);
    let mut checkpoint = retitle(
        schema_of::<CheckpointOf>(),
        "checkpoint",
        Some("A signed checkpoint of the log: a line of a checkpoints file (`closeloop checkpoint`), a message on closeloop.v1.checkpoints (stream CLOSELOOP_CHECKPOINTS)."),
    );
    set_const(
        &mut checkpoint,
        "format",
        json!(closeloop_replay::checkpoint::FORMAT),
    );
    files.insert("checkpoint.json".into(), checkpoint);
    files
}

fn json_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/json")
}

/// The text of every generated file, `index.rs` included.
fn rendered() -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = generate()
        .into_iter()
        .map(|(path, schema)| {
            let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
            text.push('\n');
            (path, text)
        })
        .collect();
    let mut index = String::from(
        "// Generated by `CLOSELOOP_UPDATE_SCHEMAS=1 cargo test --test main schemas`; do not edit.\n&[\n",
    );
    for path in files.keys() {
        index.push_str(&format!(
            "    (\"{path}\", include_str!(\"../json/{path}\")),\n"
        ));
    }
    index.push_str("]\n");
    files.insert("index.rs".into(), index);
    files
}

fn on_disk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            on_disk(&path, &format!("{prefix}{name}/"), out);
        } else {
            out.insert(
                format!("{prefix}{name}"),
                std::fs::read_to_string(&path).unwrap_or_default(),
            );
        }
    }
}

#[test]
fn schemas_checked_in_match_the_rust_types() {
    let wanted = rendered();
    let dir = json_dir();
    let mut found = BTreeMap::new();
    on_disk(&dir, "", &mut found);
    if std::env::var(UPDATE_ENV).as_deref() == Ok("1") {
        for stale in found.keys().filter(|p| !wanted.contains_key(*p)) {
            std::fs::remove_file(dir.join(stale)).expect("remove a stale schema");
        }
        for (path, text) in &wanted {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
            if found.get(path) != Some(text) {
                std::fs::write(&file, text).expect("write a schema");
            }
        }
        return;
    }
    let mut problems = Vec::new();
    for (path, text) in &wanted {
        match found.get(path) {
            None => problems.push(format!("missing: schemas/json/{path}")),
            Some(t) if t != text => problems.push(format!("stale: schemas/json/{path}")),
            Some(_) => {}
        }
    }
    for path in found.keys().filter(|p| !wanted.contains_key(*p)) {
        problems.push(format!("not generated by any type: schemas/json/{path}"));
    }
    assert!(
        problems.is_empty(),
        "the checked-in JSON Schemas differ from what the Rust types generate:\n  {}\n\
         Regenerate with `{UPDATE_ENV}=1 cargo test --test main schemas` and check in schemas/json/.",
        problems.join("\n  ")
    );
    // What the crate embeds is what is on disk.
    let embedded: BTreeMap<String, String> = closeloop_schemas::JSON_SCHEMAS
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let mut expected = wanted.clone();
    expected.remove("index.rs");
    assert!(
        embedded == expected,
        "closeloop_schemas::JSON_SCHEMAS is stale: rebuild after regenerating"
    );
}

/// The mirrors describe exactly the fields the engine sends.
#[test]
fn schemas_mirror_types_have_the_fields_of_the_real_values() {
    fn properties(schema: &Value) -> Vec<String> {
        let mut keys: Vec<String> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }
    fn keys(value: &Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    }
    let files = generate();
    let actor = Actor {
        id: "agent-1".into(),
        role: Role::Agent,
    };
    let ticket = Uuid::new_v4();
    let command = CommandEnvelope {
        command_id: Uuid::new_v4(),
        actor: actor.clone(),
        occurred_at: Some("2026-11-23T09:15:00Z".parse().unwrap()),
        expected_version: Some(1),
        command: Command::CloseTicket(CloseTicket { ticket_id: ticket }),
    };
    let sent = serde_json::to_value(&command).unwrap();
    assert_eq!(
        properties(&files["commands/close_ticket.json"]),
        keys(&sent)
    );
    let parsed = parse_command(&serde_json::to_vec(&sent).unwrap()).expect("round trip");
    assert_eq!(parsed, command);

    let stored = StoredEvent {
        position: 1,
        stream: format!("ticket-{ticket}"),
        version: 1,
        event_id: Uuid::now_v7(),
        event_type: "ticket_closed".into(),
        schema_version: CURRENT_SCHEMA_VERSION,
        data: json!({"ticket_id": ticket}),
        metadata: Metadata {
            command_id: command.command_id,
            correlation_id: command.command_id,
            causation_id: command.command_id,
            actor,
            occurred_at: Timestamp::UNIX_EPOCH,
            recorded_at: Timestamp::UNIX_EPOCH,
            command_hash: None,
        },
        hash: "00".into(),
    };
    let stored = serde_json::to_value(&stored).unwrap();
    assert_eq!(
        properties(&files[&format!("events/ticket_closed.v{CURRENT_SCHEMA_VERSION}.json")]),
        keys(&stored)
    );
}

/// A real signed checkpoint, as the checkpoints stream carries it, follows `checkpoint.json`
/// with every field declared.
#[tokio::test]
async fn schemas_checkpoint_follows_its_schema() {
    use closeloop_core::log::memory::MemoryLog;
    use closeloop_core::log::EventLog;
    let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(MemoryLog::new());
    crate::nats::provision(&log, &[crate::nats::register_agent("agent-1", "blue")]).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let checkpoint = closeloop_replay::checkpoint::take(log.as_ref(), &key)
        .await
        .expect("a checkpoint");
    let value = serde_json::to_value(&checkpoint).expect("serializes");
    assert_eq!(
        value["streams"].as_array().map(Vec::len),
        Some(1),
        "{value}"
    );
    let schema = queries::strict(&queries::checked_in("checkpoint.json"));
    let found = queries::errors(&queries::validator(&schema), &value);
    assert!(found.is_empty(), "{value}: {found:?}");
}

/// Every file is a draft 2020-12 schema with a title.
#[test]
fn schemas_are_draft_2020_12() {
    for (path, schema) in generate() {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{path}"
        );
        assert!(schema["title"].is_string(), "{path} has a title");
    }
}

/// Issue 17, an exact contract: the published command schemas and the parser judge a corpus
/// of edge cases alike. The corpus is every command type the demo workload sends (plus the
/// inspection commands), each field of each payload (and the actor's id) replaced in turn by
/// values at and beyond the limits: empty, white space alone (the Unicode kinds included), a
/// control character, lengths at and past each limit, numbers at and past each bound, a
/// number for a string, a repeated list item; and the envelope's `occurred_at` at and past
/// its bound (2000-01-01T00:00:00Z), in UTC and with offsets. A command the schema accepts and the parser
/// refuses is allowed only for a rule across fields, which JSON Schema cannot state; named
/// below by the path and words of its refusal.
#[test]
fn the_schemas_and_the_parser_agree_on_a_corpus() {
    use closeloop_workload::{self as workload, WorkloadConfig};

    /// Refusals the schemas cannot state: (path prefix, words of the message).
    const ACROSS_FIELDS: &[(&str, &str)] = &[
        ("/payload/time_zone", "IANA"),
        (
            "/payload/first_response_minutes",
            "must not exceed resolution_minutes",
        ),
        ("/payload/weekly_hours/", "must be after start"),
        ("/payload/working_days/", "must be after start"),
        ("/payload/hours_overrides/", "must be after start"),
        ("/payload/working_days/", "listed twice"),
        ("/payload/hours_overrides/", "listed twice"),
        ("/payload", "must be 100"),
        ("/payload/causes/", "listed twice"),
        ("/payload/charged", "unjustified"),
        ("/payload/backup_agent_id", "their own backup"),
        ("/payload/effective_from", "2000-01-01"),
        ("/payload/warn_before_minutes", "less than the duration"),
        ("/payload/business_minutes", "needs its default duration"),
        ("/payload/business_hours", "give the duration once"),
        ("/payload/due_at", "give the due time once"),
    ];

    let dir = json_dir().join("commands");
    let mut validators = BTreeMap::new();
    for name in Command::TYPES {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("a command schema"),
        )
        .expect("JSON");
        validators.insert(
            name.to_string(),
            jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .expect("a valid schema"),
        );
    }

    let work = workload::generate(&WorkloadConfig {
        seed: 5,
        tickets: 60,
        days: 3,
        customers: 20,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    let mut baselines: BTreeMap<String, Value> = BTreeMap::new();
    for envelope in work.sequential() {
        let value = serde_json::to_value(envelope).expect("serializes");
        let kind = value["type"].as_str().expect("type").to_owned();
        baselines.entry(kind).or_insert(value);
    }
    let ticket = Uuid::now_v7();
    for (kind, payload) in [
        (
            "draw_inspection_sample",
            json!({"sample_id": Uuid::now_v7(), "period": "2026-11", "agent_id": "a1",
                   "size": 3, "seed": 7, "candidates": [ticket, Uuid::now_v7()],
                   "reinspect": [Uuid::now_v7()]}),
        ),
        (
            "record_inspection",
            json!({"sample_id": Uuid::now_v7(), "ticket_id": ticket,
                   "dimensions": {"recognition": 1, "efficiency": 5, "quality": 3, "overall": 4},
                   "log_complete": true, "visit_verified": false, "verdict": "fail",
                   "note": "log lacks the outcome"}),
        ),
        (
            "set_agent_availability",
            json!({"agent_id": "a1", "available": false, "backup_agent_id": "a2"}),
        ),
    ] {
        baselines.entry(kind.to_owned()).or_insert(json!({
            "command_id": Uuid::now_v7(), "type": kind,
            "actor": {"id": "qa-1", "role": "inspector"}, "payload": payload,
        }));
    }

    let strings = [
        json!(""),
        json!(" "),
        json!("\u{a0}\u{3000}"),
        json!("\u{85}"),
        json!("\u{feff}"),
        json!("a b"),
        json!("a\u{7}b"),
        json!("ok"),
        json!("x".repeat(40)),
        json!("x".repeat(41)),
        json!("x".repeat(128)),
        json!("x".repeat(129)),
        json!("x".repeat(200)),
        json!("x".repeat(201)),
        json!("x".repeat(16_000)),
        json!("x".repeat(16_001)),
        json!("2026-13"),
        json!("1999-12"),
        json!("24:00"),
        json!("23:60"),
        json!(5),
    ];
    let numbers = [
        json!(-1),
        json!(0),
        json!(1),
        json!(3),
        json!(4),
        json!(5),
        json!(6),
        json!(10),
        json!(11),
        json!(29),
        json!(30),
        json!(50),
        json!(51),
        json!(59),
        json!(60),
        json!(61),
        json!(99),
        json!(100),
        json!(101),
        json!(525_600),
        json!(525_601),
        json!(10.5),
        json!(-0.5),
        json!("1"),
    ];
    /// Business times at and past `OCCURRED_AT_MIN` (and the last a timestamp holds): the
    /// schema and the parser judge these alike.
    const OCCURRED_AT: &[&str] = &[
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:00:00.000000001Z",
        "2000-01-01T00:00:00+00:00",
        "2000-01-01T00:00:00-05:00",
        "2000-01-02T00:00:00+05:00",
        "2000-02-01T00:00:00Z",
        "2026-11-23T09:15:00Z",
        "9998-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "1999-12-31T23:59:59.999999999Z",
        "2000-01-01T00:30:00+01:00",
        "1999-12-31T23:00:00-00:30",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-11-23",
        "2026-11-23T09:15:00",
        "2026-13-01T00:00:00Z",
    ];
    /// Times the parser accepts and the schema's pattern refuses: in the bound's own day
    /// with an offset that a pattern cannot weigh, and in the year 9999 (the schema's
    /// `occurred_at` description says so).
    const OCCURRED_AT_STRICTER: &[&str] = &[
        "2000-01-01T05:00:00+01:00",
        "1999-12-31T23:30:00-01:00",
        "9999-01-01T00:00:00Z",
    ];
    let (mut checked, mut across, mut both_accept, mut both_refuse) = (0, 0, 0, 0);
    let mut stricter = 0;
    let mut disagreements = Vec::new();
    for (kind, baseline) in &baselines {
        let validator = &validators[kind];
        assert!(
            validator.is_valid(baseline),
            "{kind}'s baseline is refused by its schema"
        );
        let mut cases: Vec<Value> = Vec::new();
        let mut paths = Vec::new();
        leaves(&baseline["payload"], "/payload", &mut paths);
        paths.push(("/actor/id".to_owned(), baseline["actor"]["id"].clone()));
        // The envelope's business time, at and past its bound.
        for at in OCCURRED_AT.iter().chain(OCCURRED_AT_STRICTER) {
            let mut case = baseline.clone();
            case["occurred_at"] = json!(at);
            cases.push(case);
        }
        for at in [Value::Null, json!(5), json!("")] {
            let mut case = baseline.clone();
            case["occurred_at"] = at;
            cases.push(case);
        }
        for (path, value) in paths {
            let replacements: Vec<Value> = match &value {
                Value::String(_) => strings.to_vec(),
                Value::Number(_) => numbers.to_vec(),
                Value::Array(items) if !items.is_empty() => vec![
                    json!([]),
                    Value::Array(vec![items[0].clone(), items[0].clone()]),
                    Value::Array(vec![items[0].clone(); 11]),
                    Value::Array(vec![items[0].clone(); 101]),
                ],
                _ => continue,
            };
            for replacement in replacements {
                let mut case = baseline.clone();
                *case.pointer_mut(&path).expect("the path exists") = replacement;
                cases.push(case);
            }
        }
        for case in cases {
            checked += 1;
            let schema_ok = validator.is_valid(&case);
            let parsed = parse_command(case.to_string().as_bytes());
            match (schema_ok, &parsed) {
                (true, Ok(_)) => both_accept += 1,
                (false, Err(_)) => both_refuse += 1,
                (true, Err(failure)) => {
                    let across_fields = failure.rejection.details.iter().all(|d| {
                        ACROSS_FIELDS.iter().any(|(path, words)| {
                            d.path.starts_with(path) && d.message.contains(words)
                        })
                    });
                    if across_fields {
                        across += 1;
                    } else {
                        disagreements.push(format!(
                            "{kind}: the schema accepts, the parser refuses: {:?}",
                            failure.rejection.details
                        ));
                    }
                }
                (false, Ok(_))
                    if case["occurred_at"]
                        .as_str()
                        .is_some_and(|at| OCCURRED_AT_STRICTER.contains(&at)) =>
                {
                    stricter += 1
                }
                (false, Ok(_)) => {
                    let errors: Vec<String> = validator
                        .iter_errors(&case)
                        .map(|e| {
                            let text = e.to_string();
                            format!("{} at {}", &text[..text.len().min(80)], e.instance_path)
                        })
                        .collect();
                    disagreements.push(format!(
                        "{kind}: the parser accepts, the schema refuses: {errors:?}"
                    ));
                }
            }
        }
    }
    assert!(checked > 2_000, "only {checked} cases");
    // The stricter times are each met once per command type, and no other case is.
    assert_eq!(stricter, baselines.len() * OCCURRED_AT_STRICTER.len());
    // Not vacuous: many cases on each side of the limits.
    assert!(
        both_accept > 300 && both_refuse > 1_000,
        "{both_accept} accepted and {both_refuse} refused by both"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {checked} cases judged differently ({across} refused for rules across fields):\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .map(|d| d.chars().take(240).collect::<String>())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every leaf and list of `value` (objects walked), with its JSON Pointer.
fn leaves(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                leaves(v, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            out.push((path.to_owned(), value.clone()));
            for (i, v) in items.iter().enumerate() {
                if v.is_object() {
                    leaves(v, &format!("{path}/{i}"), out);
                }
            }
        }
        other => out.push((path.to_owned(), other.clone())),
    }
}

/// Free texts that hold no personal data: names of teams and complaint causes, and the
/// ground of an erasure (kept for the data-protection officer's report, after the data).
const NOT_PERSONAL_TEXTS: &[(&str, &str)] = &[
    ("erase_customer_data", "reason"),
    ("define_complaint_causes", "label"),
    ("complaint_causes_defined", "label"),
    ("define_scorecard", "team"),
    ("scorecard_defined", "team"),
    ("register_agent", "team"),
    ("agent_registered", "team"),
];

/// The `(message, field, kind)` of every property marked `x-personal-data` in `schema`.
fn personal_fields(message: &str, schema: &Value, out: &mut BTreeSet<(String, String, String)>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                for (field, property) in properties {
                    if let Some(kind) = property.get("x-personal-data").and_then(Value::as_str) {
                        out.insert((message.to_owned(), field.clone(), kind.to_owned()));
                    }
                    let free_text =
                        property.get("pattern").and_then(Value::as_str) == Some(TEXT_PATTERN);
                    assert!(
                        !free_text
                            || property.get("x-personal-data").is_some()
                            || NOT_PERSONAL_TEXTS.contains(&(message, field.as_str())),
                        "{message}: the free text `{field}` is not classified: mark it \
                         `x-personal-data` or list it in NOT_PERSONAL_TEXTS"
                    );
                }
            }
            for value in map.values() {
                personal_fields(message, value, out);
            }
        }
        Value::Array(items) => {
            for value in items {
                personal_fields(message, value, out);
            }
        }
        _ => {}
    }
}

/// The README's classification of personal data, as `(message, field, kind)`.
fn readme_classification() -> BTreeSet<(String, String, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let (_, rest) = readme
        .split_once("<!-- personal-data:begin -->")
        .expect("the README's personal-data table");
    let (table, _) = rest
        .split_once("<!-- personal-data:end -->")
        .expect("the end of the personal-data table");
    let names = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut rows = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (messages, fields, kind) = (names(cells[1]), names(cells[2]), cells[3]);
        for message in &messages {
            for field in &fields {
                rows.insert((message.clone(), field.clone(), kind.to_owned()));
            }
        }
    }
    rows
}

/// Every field holding personal data says so in its schema (`x-personal-data`: `customer`
/// or `staff`), exactly as the README's table classifies it, and every free text of a
/// command (or event sharing a command's type) is either classified or named here as
/// holding none.
#[test]
fn schemas_classify_personal_data_as_the_readme_does() {
    let mut found = BTreeSet::new();
    for (path, schema) in generate() {
        let message = match path.split_once('/') {
            Some(("commands", file)) => file.trim_end_matches(".json"),
            Some(("events", file)) => file.split(".v").next().expect("a versioned file"),
            _ => continue,
        };
        personal_fields(message, &schema, &mut found);
    }
    let expected = readme_classification();
    assert!(
        expected.len() > 30,
        "the README's table was read: {expected:?}"
    );
    assert_eq!(
        found.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "marked in the schemas, missing from the README's table"
    );
    assert_eq!(
        expected.difference(&found).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "in the README's table, not marked in the schemas"
    );
}
