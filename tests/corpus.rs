//! A corpus of hostile commands: real commands of every type the seeded workload sends, each
//! broken in each of a list of ways that no parser may let through (unknown fields, missing
//! or mistyped ids, a non-object actor, an unknown role, duplicate keys, a NUL, a time out of
//! range or not a time, truncated JSON...). `cli` sends it through `submit`, `nats` over
//! request/reply: every one must be refused, nothing appended, nothing crash.

use std::collections::BTreeMap;

use closeloop_workload::{self as workload, WorkloadConfig};
use serde_json::{json, Value};

/// How each command is broken: a name and the change.
type Break = (&'static str, fn(&mut Value) -> Option<String>);

const BREAKS: &[Break] = &[
    ("unknown top-level field", |v| {
        v["bogus"] = json!(1);
        None
    }),
    ("unknown payload field", |v| {
        v["payload"]["bogus"] = json!(1);
        None
    }),
    ("no command_id", |v| {
        v.as_object_mut()?.remove("command_id");
        None
    }),
    ("command_id not a UUID", |v| {
        v["command_id"] = json!("not-a-uuid");
        None
    }),
    ("unknown type", |v| {
        v["type"] = json!("no_such_command");
        None
    }),
    ("actor an array", |v| {
        v["actor"] = json!(["crm", "service"]);
        None
    }),
    ("unknown role", |v| {
        v["actor"]["role"] = json!("root");
        None
    }),
    ("NUL in the actor id", |v| {
        v["actor"]["id"] = json!("crm\u{0}");
        None
    }),
    ("business time before 2000", |v| {
        v["occurred_at"] = json!("1999-12-31T23:59:59Z");
        None
    }),
    ("business time not a time", |v| {
        v["occurred_at"] = json!("yesterday");
        None
    }),
    ("negative expected version", |v| {
        v["expected_version"] = json!(-1);
        None
    }),
    ("payload an array", |v| {
        v["payload"] = json!([]);
        None
    }),
    ("duplicate key", |v| {
        let text = v.to_string();
        Some(format!("{{\"type\":\"open_ticket\",{}", &text[1..]))
    }),
    ("truncated", |v| {
        let text = v.to_string();
        Some(text[..text.len() - 2].to_owned())
    }),
];

/// (the command's original type, its broken bytes, how it was broken), at least 300.
pub fn bad_commands() -> Vec<(String, Vec<u8>, &'static str)> {
    let workload = workload::generate(&WorkloadConfig {
        seed: 11,
        tickets: 40,
        days: 3,
        customers: 20,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    // Up to three commands of each type the workload sends.
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for envelope in workload.sequential() {
        let value = serde_json::to_value(envelope).expect("commands serialize");
        let kind = value["type"].as_str().expect("a type").to_owned();
        let bucket = by_type.entry(kind).or_default();
        if bucket.len() < 3 {
            bucket.push(value);
        }
    }
    let mut out = Vec::new();
    for (kind, commands) in &by_type {
        for command in commands {
            for (name, break_it) in BREAKS {
                let mut broken = command.clone();
                let bytes = break_it(&mut broken).unwrap_or_else(|| broken.to_string());
                out.push((kind.clone(), bytes.into_bytes(), *name));
            }
        }
    }
    assert!(out.len() >= 300, "the corpus holds {} commands", out.len());
    out
}
