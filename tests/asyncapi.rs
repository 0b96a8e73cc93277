//! `schemas/asyncapi.yaml`, the AsyncAPI 3.0.0 document of the NATS interface: every
//! subject `serve` (and `closeloop checkpoint --nats`) listens on or publishes to, its
//! headers, streams, messages and replies, the messages' bodies referencing the JSON Schemas
//! under `schemas/json/`.
//!
//! The document is generated here from the code: the subjects from
//! `ServeConfig::channels` and `query_subject`, the command and event types from
//! `Command::TYPES` and `Event::TYPES`, the queries from `serve.rs`'s own `queries`, the
//! header names from the constants the intakes and the relay use. The checked-in file must
//! equal what the code generates (regenerate with
//! `CLOSELOOP_UPDATE_SCHEMAS=1 cargo test --test main asyncapi`), so a subject, command,
//! event or query added to the code without the document fails here. The file is then read
//! back as any integrator would: parsed as YAML, validated against the AsyncAPI 3.0.0
//! schema, every `$ref` resolved, and its channels and messages compared with the code's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use closeloop_commands::nats::{
    auth::AUTHORIZATION, ServeConfig, DEAD_DELIVERIES_HEADER, DEAD_REASON_HEADER,
    DEAD_SUBJECT_HEADER, TIMEOUT_HEADER,
};
use closeloop_commands::relay::{LOG_ID_HEADER, POSITION_HEADER};
use closeloop_core::domain::{current_schema_version, Command, Event};
use serde_json::{json, Value};

const UPDATE_ENV: &str = "CLOSELOOP_UPDATE_SCHEMAS";
/// The AsyncAPI 3.0.0 JSON Schema, self-contained, from the `@asyncapi/specs` package
/// (version 6.11.1, Apache-2.0): `schemas/3.0.0-without-$id.json`.
const ASYNCAPI_SCHEMA: &str = "tests/data/asyncapi-3.0.0-without-id.json";
/// NATS's own headers the engine sets or reads.
const MSG_ID: &str = "Nats-Msg-Id";
const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
/// The checkpoints stream's default name (`--checkpoints-stream`).
const CHECKPOINTS_STREAM: &str = "CLOSELOOP_CHECKPOINTS";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn document_path() -> PathBuf {
    schemas_dir().join("asyncapi.yaml")
}

fn header(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// An object schema of NATS headers: `(name, schema)`, the first `required` of them
/// required.
fn headers(required: usize, fields: &[(&str, Value)]) -> Value {
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, schema)| (name.to_string(), schema.clone()))
        .collect();
    let required: Vec<&str> = fields.iter().take(required).map(|(n, _)| *n).collect();
    json!({"type": "object", "required": required, "properties": properties})
}

fn reference(to: &str) -> Value {
    json!({"$ref": to})
}

/// The document, from the code.
fn document() -> Value {
    let config = ServeConfig::default();
    let channel_list = config.channels();
    let address = |id: &str| -> String {
        channel_list
            .iter()
            .find(|(c, _)| *c == id)
            .unwrap_or_else(|| panic!("ServeConfig::channels has no `{id}`: describe it here"))
            .1
            .clone()
    };
    for (id, _) in &channel_list {
        assert!(
            [
                "commands",
                "durable_commands",
                "command_replies",
                "dead_letters",
                "events",
                "checkpoints"
            ]
            .contains(id),
            "ServeConfig::channels has `{id}`, which this document does not describe: add it"
        );
    }
    let queries = crate::schemas::queries::served();
    let token = json!({"$ref": "#/components/securitySchemes/token"});
    let queue = json!({"nats": {"queue": config.queue_group, "bindingVersion": "0.1.0"}});
    let authorization = || {
        json!({"type": "string", "pattern": "^[Bb][Ee][Aa][Rr][Ee][Rr] +[^ ]",
               "description": "`Bearer <jwt>`: who acts (components.securitySchemes.token). Missing or invalid: a `rejected` reply, code `unauthorized`, `command_id` null."})
    };

    let mut messages = serde_json::Map::new();
    let mut command_messages = serde_json::Map::new();
    let mut durable_messages = serde_json::Map::new();
    for t in Command::TYPES {
        let payload = reference(&format!("json/commands/{t}.json"));
        messages.insert(
            format!("command_{t}"),
            json!({
                "name": t,
                "title": format!("{t} (request/reply)"),
                "summary": format!("The `{t}` command; the reply is its result."),
                "headers": reference("#/components/schemas/command_headers"),
                "payload": payload,
            }),
        );
        messages.insert(
            format!("durable_command_{t}"),
            json!({
                "name": t,
                "title": format!("{t} (durable)"),
                "summary": format!("The `{t}` command, kept by JetStream once the publish is acknowledged; the reply follows on the command_replies channel."),
                "headers": reference("#/components/schemas/durable_command_headers"),
                "payload": payload,
            }),
        );
        command_messages.insert(
            t.to_string(),
            reference(&format!("#/components/messages/command_{t}")),
        );
        durable_messages.insert(
            t.to_string(),
            reference(&format!("#/components/messages/durable_command_{t}")),
        );
    }
    let mut event_messages = serde_json::Map::new();
    for t in Event::TYPES {
        let version = current_schema_version(t);
        messages.insert(
            format!("event_{t}"),
            json!({
                "name": t,
                "title": t,
                "summary": format!("A stored `{t}` event (schema version {version}), as `export` prints it."),
                "headers": reference("#/components/schemas/event_headers"),
                "payload": reference(&format!("json/events/{t}.v{version}.json")),
            }),
        );
        event_messages.insert(
            t.to_string(),
            reference(&format!("#/components/messages/event_{t}")),
        );
    }
    messages.insert(
        "reply".into(),
        json!({
            "name": "reply",
            "title": "Reply",
            "summary": "A command's result (`accepted`, `duplicate` or `rejected`), and the refusal of a query (`rejected`, `command_id` null).",
            "payload": reference("json/reply.json"),
        }),
    );
    messages.insert(
        "dead_letter".into(),
        json!({
            "name": "dead_letter",
            "title": "Dead letter",
            "summary": "A durable command that kept failing, as it was published (its headers without Authorization), with why.",
            "headers": reference("#/components/schemas/dead_letter_headers"),
            "payload": reference("json/command.json"),
        }),
    );
    messages.insert(
        "checkpoint".into(),
        json!({
            "name": "checkpoint",
            "title": "Signed checkpoint",
            "summary": "A signed checkpoint of the log (README, Signed checkpoints).",
            "headers": reference("#/components/schemas/checkpoint_headers"),
            "payload": reference("json/checkpoint.json"),
        }),
    );
    let mut inbox_messages = serde_json::Map::new();
    inbox_messages.insert("reply".into(), reference("#/components/messages/reply"));
    let mut channels = serde_json::Map::new();
    let mut operations = serde_json::Map::new();
    for name in &queries {
        messages.insert(
            format!("query_{name}_request"),
            json!({
                "name": format!("{name} request"),
                "title": format!("{name} request"),
                "headers": reference("#/components/schemas/query_headers"),
                "payload": reference(&format!("json/queries/{name}.request.json")),
            }),
        );
        messages.insert(
            format!("query_{name}_reply"),
            json!({
                "name": format!("{name} reply"),
                "title": format!("{name} reply"),
                "payload": reference(&format!("json/queries/{name}.reply.json")),
            }),
        );
        inbox_messages.insert(
            format!("{name}_reply"),
            reference(&format!("#/components/messages/query_{name}_reply")),
        );
        channels.insert(
            format!("query_{name}"),
            json!({
                "address": config.query_subject(name),
                "title": format!("Query {name}"),
                "description": "Request/reply (queue group `closeloop`).",
                "messages": {"request": reference(&format!("#/components/messages/query_{name}_request"))},
            }),
        );
        operations.insert(
            format!("answer_{name}"),
            json!({
                "action": "receive",
                "channel": reference(&format!("#/channels/query_{name}")),
                "title": format!("Answer {name}"),
                "summary": "Closeloop answers the query on the request's reply subject: its reply, or a `rejected` reply.",
                "security": [token],
                "bindings": queue,
                "reply": {
                    "channel": reference("#/channels/inbox"),
                    "messages": [
                        reference(&format!("#/channels/inbox/messages/{name}_reply")),
                        reference("#/channels/inbox/messages/reply"),
                    ],
                },
            }),
        );
    }

    let command_type = json!({
        "enum": Command::TYPES,
        "description": "The command type: equal to the body's `type`.",
    });
    channels.insert(
        "commands".into(),
        json!({
            "address": address("commands"),
            "title": "Commands (request/reply)",
            "description": "A command by request/reply (queue group `closeloop`); the reply on the request's reply subject is its result. The last token must equal the body's `type`. Past --in-flight-max commands in flight, a command is answered `unavailable` at once.",
            "parameters": {"type": command_type},
            "messages": command_messages,
        }),
    );
    channels.insert(
        "durable_commands".into(),
        json!({
            "address": address("durable_commands"),
            "title": "Commands (durable intake)",
            "description": format!("Durable intake: publish with JetStream to the stream {} (a work queue, one shared pull consumer `{}`); the publish acknowledgement means stored. Subscribe to the command_replies channel before publishing. Commands of one ticket are applied in publication order.", config.commands_stream, config.consumer_name),
            "parameters": {"type": command_type},
            "messages": durable_messages,
            "x-jetstream": {"stream": config.commands_stream, "consumer": config.consumer_name, "retention": "workqueue"},
        }),
    );
    channels.insert(
        "command_replies".into(),
        json!({
            "address": address("command_replies"),
            "title": "Replies to durable commands",
            "description": "The reply to a durable command, published when an instance has committed or refused it (plain NATS: subscribe before publishing the command). A redelivered command may be answered again, `duplicate`.",
            "parameters": {"command_id": {"description": "The command's `command_id`.", "location": "$message.payload#/command_id"}},
            "messages": {"reply": reference("#/components/messages/reply")},
        }),
    );
    channels.insert(
        "dead_letters".into(),
        json!({
            "address": address("dead_letters"),
            "title": "Dead letters",
            "description": format!("Durable commands that failed with kind `bug`, or with kind `retryable` on each of --durable-attempts-max deliveries: answered `rejected` on command_replies and copied to the stream {} (kept 30 days or 1 GiB). Nothing of them was appended.", config.dead_letter_stream),
            "parameters": {"type": command_type},
            "messages": {"dead_letter": reference("#/components/messages/dead_letter")},
            "x-jetstream": {"stream": config.dead_letter_stream},
        }),
    );
    channels.insert(
        "events".into(),
        json!({
            "address": address("events"),
            "title": "Events",
            "description": format!("Every stored event, in log order, in the stream {} (the relay, one instance at a time). Delivery is at least once: de-duplicate by `event_id`, or resume after the highest `position` applied.", config.events_stream),
            "parameters": {
                "stream_category": {"description": "The first part of the event's stream: `ticket`, `agent`, `customer`, `calendar`, `sla_policy`, …", "location": "$message.payload#/stream"},
                "event_type": {"enum": Event::TYPES, "description": "The event's `type`.", "location": "$message.payload#/type"},
            },
            "messages": event_messages,
            "x-jetstream": {"stream": config.events_stream},
        }),
    );
    channels.insert(
        "checkpoints".into(),
        json!({
            "address": address("checkpoints"),
            "title": "Signed checkpoints",
            "description": format!("Signed checkpoints of the log, appended to the stream {CHECKPOINTS_STREAM} (deletes and purges denied) by `serve --checkpoint-key` and `closeloop checkpoint --nats`."),
            "messages": {"checkpoint": reference("#/components/messages/checkpoint")},
            "x-jetstream": {"stream": CHECKPOINTS_STREAM},
        }),
    );
    channels.insert(
        "inbox".into(),
        json!({
            "address": null,
            "title": "Reply subject",
            "description": "The requester's reply subject (a NATS inbox) of a request/reply command or query.",
            "messages": inbox_messages,
        }),
    );

    operations.insert(
        "handle_command".into(),
        json!({
            "action": "receive",
            "channel": reference("#/channels/commands"),
            "title": "Handle a command",
            "summary": "Closeloop decides the command and answers with its result.",
            "security": [token],
            "bindings": queue,
            "reply": {
                "channel": reference("#/channels/inbox"),
                "messages": [reference("#/channels/inbox/messages/reply")],
            },
        }),
    );
    operations.insert(
        "handle_durable_command".into(),
        json!({
            "action": "receive",
            "channel": reference("#/channels/durable_commands"),
            "title": "Handle a durable command",
            "summary": "Closeloop takes the command from the commands stream, decides it, acknowledges it after the append committed (or the refusal), and publishes the reply.",
            "security": [token],
            "reply": {
                "channel": reference("#/channels/command_replies"),
                "messages": [reference("#/channels/command_replies/messages/reply")],
            },
        }),
    );
    operations.insert(
        "dead_letter_command".into(),
        json!({
            "action": "send",
            "channel": reference("#/channels/dead_letters"),
            "title": "Dead-letter a durable command",
        }),
    );
    operations.insert(
        "publish_event".into(),
        json!({
            "action": "send",
            "channel": reference("#/channels/events"),
            "title": "Publish the log",
            "summary": "The relay publishes every stored event in position order.",
        }),
    );
    operations.insert(
        "publish_checkpoint".into(),
        json!({
            "action": "send",
            "channel": reference("#/channels/checkpoints"),
            "title": "Publish a signed checkpoint",
        }),
    );

    let schemas = json!({
        "command_headers": headers(1, &[
            (AUTHORIZATION, authorization()),
            (TIMEOUT_HEADER, json!({"type": "string", "pattern": "^[0-9]+$",
                "description": "Optional: milliseconds, 1 to 300000 (default --command-timeout-ms, 30000); past it the command is answered `unavailable` and never appended later."})),
        ]),
        "durable_command_headers": headers(2, &[
            (AUTHORIZATION, json!({"$ref": "#/components/schemas/command_headers/properties/Authorization"})),
            (MSG_ID, header("The command's `command_id`: JetStream drops a re-publication inside the duplicate window (10 minutes); after it Closeloop answers `duplicate`.")),
        ]),
        "query_headers": headers(1, &[(AUTHORIZATION, json!({"$ref": "#/components/schemas/command_headers/properties/Authorization"}))]),
        "event_headers": headers(4, &[
            (MSG_ID, header("The event's `event_id`: JetStream drops the relay's own re-publications; de-duplicate by it.")),
            (POSITION_HEADER, json!({"type": "string", "pattern": "^[1-9][0-9]*$", "description": "The event's position in the log (also `position` in the body)."})),
            (LOG_ID_HEADER, json!({"type": "string", "format": "uuid", "description": "The identity of the log the event came from."})),
            (EXPECTED_LAST_SEQUENCE, json!({"type": "string", "pattern": "^[0-9]+$", "description": "The condition JetStream checked on the relay's publish (the stream's last sequence before it): the relay's checkpoint, not for consumers."})),
        ]),
        "dead_letter_headers": headers(3, &[
            (DEAD_REASON_HEADER, header("Why it was dead-lettered (one line).")),
            (DEAD_DELIVERIES_HEADER, json!({"type": "string", "pattern": "^[0-9]+$", "description": "Deliveries made."})),
            (DEAD_SUBJECT_HEADER, header("The subject it was published on.")),
            (MSG_ID, header("The command's `Nats-Msg-Id`, as published.")),
        ]),
        "checkpoint_headers": headers(2, &[
            (MSG_ID, header("The checkpoint's `signature`: a re-publication is stored once.")),
            (LOG_ID_HEADER, json!({"type": "string", "format": "uuid", "description": "The identity of the log."})),
        ]),
    });

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Closeloop",
            "version": "1.0.0",
            "description": "The NATS interface of Closeloop, an event-sourced ticketing engine (README, Integrating from another service). Subjects start with `serve --subject-prefix`, `closeloop.v1` by default; stream names are flags too. Every command and query carries `Authorization: Bearer <jwt>`. Message bodies are JSON, described by the JSON Schemas (draft 2020-12) under `json/`. Generated from the code by the tests (tests/asyncapi.rs); do not edit.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "Any NATS server with JetStream (`closeloop --nats URL serve`); `tls://` with --nats-ca, --nats-cert, --nats-key.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A NATS header `Authorization: Bearer <jwt>` on every command (request/reply and durable) and query: a JWT signed (EdDSA or ES256) by a key listed in serve's --auth-keys file, header `kid` naming the key, claims `sub` (the actor's id), `role` and `exp` (plus `iss`/`aud` when serve requires them). A body `actor` must equal the token's. The role `system` is never accepted.",
                }
            },
        },
    })
}

fn rendered() -> String {
    let text = serde_yaml::to_string(&document()).expect("the document serializes");
    format!("# Generated by `{UPDATE_ENV}=1 cargo test --test main asyncapi` from the code; do not edit.\n{text}")
}

/// The checked-in document is what the code generates.
#[test]
fn asyncapi_document_is_generated_from_the_code() {
    let wanted = rendered();
    let path = document_path();
    if std::env::var(UPDATE_ENV).as_deref() == Ok("1") {
        std::fs::write(&path, &wanted).expect("write schemas/asyncapi.yaml");
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == wanted,
        "schemas/asyncapi.yaml differs from what the code generates (a subject, command, \
         event, query or header changed): regenerate with `{UPDATE_ENV}=1 cargo test --test \
         main asyncapi` and check it in"
    );
}

/// The checked-in document, parsed from YAML as an integrator's tools would.
fn parsed() -> Value {
    let text = std::fs::read_to_string(document_path()).expect("schemas/asyncapi.yaml");
    serde_yaml::from_str(&text).expect("schemas/asyncapi.yaml is YAML")
}

/// Every `$ref` in `value` (with the JSON Pointer of where it is).
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    if let Some(to) = v.as_str() {
                        out.push((at.to_owned(), to.to_owned()));
                    }
                } else {
                    refs(v, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The document is AsyncAPI 3.0.0 (valid against its JSON Schema), and every `$ref` in it,
/// and in the JSON Schemas it references, resolves to an existing file and place.
#[test]
fn asyncapi_document_is_valid_asyncapi_3_and_its_references_resolve() {
    let doc = parsed();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(ASYNCAPI_SCHEMA))
            .expect("the AsyncAPI 3.0.0 schema"),
    )
    .expect("JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&meta)
        .expect("the AsyncAPI schema compiles");
    let invalid: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| {
            let text = e.to_string();
            format!("{} at {}", &text[..text.len().min(200)], e.instance_path)
        })
        .take(20)
        .collect();
    assert!(
        invalid.is_empty(),
        "not AsyncAPI 3.0.0:\n{}",
        invalid.join("\n")
    );
    // Not vacuous: the schema refuses a document with an operation that is neither sent nor
    // received.
    let mut broken = doc.clone();
    broken["operations"]["handle_command"]["action"] = json!("listen");
    assert!(
        !validator.is_valid(&broken),
        "the AsyncAPI schema checks operations"
    );

    // Each file reached, by path under schemas/, with the references found in it.
    let mut pending: Vec<(String, Value)> = vec![("asyncapi.yaml".into(), doc)];
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let mut resolved = 0;
    while let Some((file, value)) = pending.pop() {
        let mut found = Vec::new();
        refs(&value, "", &mut found);
        for (at, to) in found {
            let (path, fragment) = to.split_once('#').unwrap_or((&to, ""));
            let (target_file, target) = if path.is_empty() {
                (file.clone(), value.clone())
            } else {
                let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
                let joined = dir.join(path);
                let name = joined.to_string_lossy().into_owned();
                match std::fs::read_to_string(schemas_dir().join(&name)) {
                    Err(e) => {
                        problems.push(format!("{file}{at}: {to}: {e}"));
                        continue;
                    }
                    Ok(text) => match serde_json::from_str::<Value>(&text) {
                        Err(e) => {
                            problems.push(format!("{file}{at}: {to}: not JSON: {e}"));
                            continue;
                        }
                        Ok(target) => {
                            if seen.insert(name.clone()) {
                                pending.push((name.clone(), target.clone()));
                            }
                            (name, target)
                        }
                    },
                }
            };
            if !fragment.is_empty() && target.pointer(fragment).is_none() {
                problems.push(format!("{file}{at}: {to}: no {fragment} in {target_file}"));
                continue;
            }
            resolved += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "unresolved references:\n{}",
        problems.join("\n")
    );
    // Every command, event, query and reply schema is reached from the document.
    let published: BTreeSet<String> = closeloop_schemas::JSON_SCHEMAS
        .iter()
        .map(|(path, _)| format!("json/{path}"))
        .collect();
    let superseded: BTreeSet<String> = published
        .iter()
        .filter(|p| !seen.contains(*p))
        .cloned()
        .collect();
    assert!(
        superseded
            .iter()
            .all(|p| p == "json/events/note_added.v1.json" || p == "json/event.json"),
        "schemas no message of the document uses: {superseded:?}"
    );
    assert!(resolved > 200, "only {resolved} references");
}

/// The document's channels are exactly the code's subjects, and every command type, event
/// type and query the code has is a message of it.
#[test]
fn asyncapi_document_has_every_subject_command_event_and_query_of_the_code() {
    let doc = parsed();
    let config = ServeConfig::default();
    let queries = crate::schemas::queries::served();
    let mut wanted: BTreeMap<String, Value> = config
        .channels()
        .into_iter()
        .map(|(id, address)| (id.to_owned(), json!(address)))
        .collect();
    for name in &queries {
        wanted.insert(format!("query_{name}"), json!(config.query_subject(name)));
    }
    wanted.insert("inbox".into(), Value::Null);
    let found: BTreeMap<String, Value> = doc["channels"]
        .as_object()
        .expect("channels")
        .iter()
        .map(|(id, channel)| (id.clone(), channel["address"].clone()))
        .collect();
    assert_eq!(
        found, wanted,
        "the document's channels are not the code's subjects"
    );

    let keys = |channel: &str| -> BTreeSet<String> {
        doc["channels"][channel]["messages"]
            .as_object()
            .unwrap_or_else(|| panic!("{channel} has messages"))
            .keys()
            .cloned()
            .collect()
    };
    let commands: BTreeSet<String> = Command::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(keys("commands"), commands);
    assert_eq!(keys("durable_commands"), commands);
    let events: BTreeSet<String> = Event::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(keys("events"), events);
    for t in Event::TYPES {
        assert_eq!(
            doc["components"]["messages"][format!("event_{t}")]["payload"]["$ref"],
            format!("json/events/{t}.v{}.json", current_schema_version(t)),
            "{t} is published at its current schema version"
        );
    }
    for name in &queries {
        assert!(
            keys("inbox").contains(&format!("{name}_reply")),
            "{name}'s reply"
        );
        let operation = &doc["operations"][format!("answer_{name}")];
        assert_eq!(operation["action"], "receive", "{name}");
        assert_eq!(
            operation["channel"]["$ref"],
            format!("#/channels/query_{name}")
        );
    }
    // The relay's headers, as the README's header table lists them.
    let event_headers: BTreeSet<String> = doc["components"]["schemas"]["event_headers"]
        ["properties"]
        .as_object()
        .expect("event headers")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        event_headers,
        [
            MSG_ID,
            POSITION_HEADER,
            LOG_ID_HEADER,
            EXPECTED_LAST_SEQUENCE
        ]
        .map(String::from)
        .into()
    );
    // Every header of the README's table ("Every header") is in the document.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = readme
        .split("### Every header")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("the README's header table");
    let documented: BTreeSet<String> = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .values()
        .filter_map(|schema| schema["properties"].as_object())
        .flat_map(|properties| properties.keys().cloned())
        .collect();
    let mut listed = 0;
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let name = row[3..].split([':', '`']).next().expect("a header name");
        listed += 1;
        assert!(
            documented.contains(name),
            "the README's header {name} is not in schemas/asyncapi.yaml"
        );
    }
    assert!(listed >= 7, "{listed} headers in the README's table");
    // Every operation is on a channel of the document.
    for (id, operation) in doc["operations"].as_object().expect("operations") {
        let to = operation["channel"]["$ref"].as_str().expect("a channel");
        let channel = to.strip_prefix("#/channels/").expect("a channel reference");
        assert!(found.contains_key(channel), "{id}: {to}");
    }
}
