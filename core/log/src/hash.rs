//! The per-stream hash chain. Each event's hash is SHA-256 over the previous event's hash
//! (32 zero bytes for a stream's first event) followed by the event's canonical bytes: the
//! compact JSON of `{data, event_id, metadata, schema_version, stream, type, version}` with
//! object keys sorted (metadata's `command_hash` only when the event has one). The global
//! position is not covered: it is assigned at commit and is checked separately
//! (contiguity), while the chain proves each stream complete and untouched.

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::types::{Metadata, StoredEvent};
use closeloop_domain::Actor;

/// The "previous hash" of a stream's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `event` chained after `prev_hash` (lowercase hex).
///
/// The canonical bytes are written straight into the hasher: the writer seals every event
/// it commits on its one thread, and building the canonical form as a `Value` first (a deep
/// copy of the data, a map per object) cost more than the hashing itself. A test checks the
/// bytes against that form (`serde_json::json!` of the fields, whose maps sort their keys).
pub fn chain_hash(prev_hash: &str, event: &StoredEvent) -> String {
    let mut hasher = Sha256::new();
    let mut prev = [0u8; 32];
    match hex::decode_to_slice(prev_hash, &mut prev) {
        Ok(()) => hasher.update(prev),
        // Not a hash of ours (a damaged row): hashed as it is, so it still cannot match.
        Err(_) => hasher.update(prev_hash.as_bytes()),
    }
    serde_json::to_writer(HashWriter(&mut hasher), &Canonical::of(event))
        .expect("events always serialize");
    hex::encode(hasher.finalize())
}

/// Feeds what is written to the hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The hashed fields of an event, declared in sorted key order (serde writes a struct's
/// fields in declaration order): compact JSON with sorted keys, as the chain is defined.
#[derive(Serialize)]
struct Canonical<'a> {
    data: &'a serde_json::Value,
    event_id: &'a Uuid,
    metadata: CanonicalMetadata<'a>,
    schema_version: u32,
    stream: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    version: u64,
}

/// [`Metadata`] with its keys sorted. (`Actor`'s own fields, `id` and `role`, already are.)
#[derive(Serialize)]
struct CanonicalMetadata<'a> {
    actor: &'a Actor,
    causation_id: &'a Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_hash: &'a Option<String>,
    command_id: &'a Uuid,
    correlation_id: &'a Uuid,
    occurred_at: &'a Timestamp,
    recorded_at: &'a Timestamp,
}

impl<'a> Canonical<'a> {
    fn of(event: &'a StoredEvent) -> Canonical<'a> {
        // Destructured so that a field added to `Metadata` fails to compile here rather
        // than silently falling outside the hash.
        let Metadata {
            command_id,
            correlation_id,
            causation_id,
            actor,
            occurred_at,
            recorded_at,
            command_hash,
        } = &event.metadata;
        Canonical {
            data: &event.data,
            event_id: &event.event_id,
            metadata: CanonicalMetadata {
                actor,
                causation_id,
                command_hash,
                command_id,
                correlation_id,
                occurred_at,
                recorded_at,
            },
            schema_version: event.schema_version,
            stream: &event.stream,
            event_type: &event.event_type,
            version: event.version,
        }
    }
}

/// A place where a stream's history does not hold together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub problem: String,
}

impl ChainBreak {
    /// A break found at `event`.
    pub fn at(event: &StoredEvent, problem: String) -> ChainBreak {
        ChainBreak {
            stream: event.stream.clone(),
            version: event.version,
            position: event.position,
            problem,
        }
    }
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} version {} (position {}): {}",
            self.stream, self.version, self.position, self.problem
        )
    }
}

/// Checks one stream's events (in version order): versions 1, 2, 3... and each hash.
pub fn verify_chain(events: &[StoredEvent]) -> Vec<ChainBreak> {
    let mut breaks = Vec::new();
    let (mut prev_version, mut prev_hash) = (0, GENESIS_HASH.to_owned());
    for event in events {
        breaks.extend(check_link(prev_version, &prev_hash, event));
        (prev_version, prev_hash) = (event.version, event.hash.clone());
    }
    breaks
}

/// The link from a stream's previous event (`prev_version`, `prev_hash`; 0 and
/// [`GENESIS_HASH`] before its first) to `event`: the next version, and the hash the chain
/// rule gives. One rule and one wording for `verify TICKET_ID` and whole-log `verify`, so the
/// two name the same break the same way.
fn check_link(prev_version: u64, prev_hash: &str, event: &StoredEvent) -> Vec<ChainBreak> {
    let mut breaks = Vec::new();
    let at = |problem: String| ChainBreak::at(event, problem);
    if event.version != prev_version + 1 {
        breaks.push(at(format!(
            "version {} follows version {prev_version}: an event is missing or out of order",
            event.version
        )));
    }
    let computed = chain_hash(prev_hash, event);
    if computed != event.hash {
        breaks.push(at(format!(
            "hash mismatch (stored {}, computed {computed}): the event or its predecessor was altered",
            event.hash
        )));
    }
    breaks
}

#[derive(Debug, Default)]
pub struct LogVerifier {
    heads: std::collections::HashMap<String, (u64, String)>,
    last_position: u64,
    /// Events checked so far.
    pub events: u64,
}

impl LogVerifier {
    pub fn new() -> LogVerifier {
        LogVerifier::default()
    }

    /// Number of streams seen so far.
    pub fn streams(&self) -> usize {
        self.heads.len()
    }

    /// Checks the next event of the log.
    pub fn check(&mut self, event: &StoredEvent) -> Vec<ChainBreak> {
        let mut breaks = Vec::new();
        let at = |problem: String| ChainBreak::at(event, problem);
        if event.position != self.last_position + 1 {
            breaks.push(at(format!(
                "position {} follows position {}: the global order has a gap or is out of order",
                event.position, self.last_position
            )));
        }
        self.last_position = event.position;
        self.events += 1;
        let (prev_version, prev_hash) = self
            .heads
            .get(&event.stream)
            .cloned()
            .unwrap_or((0, GENESIS_HASH.to_owned()));
        breaks.extend(check_link(prev_version, &prev_hash, event));
        self.heads
            .insert(event.stream.clone(), (event.version, event.hash.clone()));
        breaks
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{seal, AppendRequest, ExpectedVersion, Metadata, NewEvent};
    use closeloop_domain::{Actor, Role};

    /// Two streams interleaved in one log: positions 1..=6, three events each.
    fn log() -> Vec<StoredEvent> {
        let at: jiff::Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        let event = |n: u64| NewEvent {
            event_id: uuid::Uuid::from_u128(u128::from(n)),
            event_type: "note_added".into(),
            schema_version: 1,
            data: serde_json::json!({"n": n}),
            metadata: Metadata {
                command_id: uuid::Uuid::from_u128(1000 + u128::from(n)),
                correlation_id: uuid::Uuid::nil(),
                causation_id: uuid::Uuid::nil(),
                actor: Actor {
                    id: "a".into(),
                    role: Role::System,
                },
                occurred_at: at,
                recorded_at: at,
                command_hash: None,
            },
        };
        let mut out = Vec::new();
        let mut heads = std::collections::HashMap::<&str, (u64, String)>::new();
        for n in 0..6u64 {
            let stream = if n % 2 == 0 { "ticket-a" } else { "ticket-b" };
            let (version, prev) = heads
                .get(stream)
                .cloned()
                .unwrap_or((0, GENESIS_HASH.to_owned()));
            let request = AppendRequest {
                stream: stream.into(),
                expected: ExpectedVersion::Any,
                command_id: uuid::Uuid::from_u128(u128::from(n)),
                events: vec![event(n)],
                unchanged: None,
            };
            let sealed = seal(&request, version, n + 1, prev, at);
            heads.insert(stream, (sealed[0].version, sealed[0].hash.clone()));
            out.extend(sealed);
        }
        out
    }

    /// The chain's definition, built the slow way: a `Value` whose maps sort their keys.
    fn reference_hash(prev_hash: &str, event: &StoredEvent) -> String {
        let canonical = serde_json::json!({
            "stream": event.stream,
            "version": event.version,
            "event_id": event.event_id,
            "type": event.event_type,
            "schema_version": event.schema_version,
            "data": event.data,
            "metadata": event.metadata,
        });
        let mut hasher = Sha256::new();
        hasher.update(hex::decode(prev_hash).unwrap_or_else(|_| prev_hash.as_bytes().to_vec()));
        hasher.update(serde_json::to_vec(&canonical).unwrap());
        hex::encode(hasher.finalize())
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e12f64..1e12).prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_hash_is_that_of_the_sorted_canonical_json(
            data in json_value(),
            stream in ".{0,16}",
            event_type in "[a-z_]{1,16}",
            actor_id in ".{0,10}",
            role in 0..Role::ALL.len(),
            version in any::<u64>(),
            schema_version in any::<u32>(),
            ids in any::<[u128; 4]>(),
            seconds in 0i64..4_000_000_000,
            nanos in 0i32..1_000_000_000,
            prev in prop_oneof![
                Just(GENESIS_HASH.to_owned()),
                "[0-9a-f]{64}".prop_map(String::from),
                ".{0,70}".prop_map(String::from),
            ],
        ) {
            let at = jiff::Timestamp::new(seconds, nanos).unwrap();
            let role = Role::ALL[role];
            let event = StoredEvent {
                position: 7,
                stream,
                version,
                event_id: uuid::Uuid::from_u128(ids[0]),
                event_type,
                schema_version,
                data,
                metadata: Metadata {
                    command_id: uuid::Uuid::from_u128(ids[1]),
                    correlation_id: uuid::Uuid::from_u128(ids[2]),
                    causation_id: uuid::Uuid::from_u128(ids[3]),
                    actor: Actor { id: actor_id, role },
                    occurred_at: at,
                    recorded_at: at + jiff::SignedDuration::from_millis(1),
                    command_hash: None,
                },
                hash: String::new(),
            };
            prop_assert_eq!(chain_hash(&prev, &event), reference_hash(&prev, &event));
        }
    }

    /// The worked example of the README ("Checking the log with your own tools"): its
    /// canonical bytes and hash, as an auditor recomputes them in another language.
    #[test]
    fn the_readmes_worked_example_holds() {
        let id = |s: &str| s.parse::<uuid::Uuid>().unwrap();
        let command = id("0190c7b8-0000-7000-8000-0000000000a1");
        let event = StoredEvent {
            position: 4,
            stream: "ticket-0190c7b8-0000-7000-8000-000000000001".into(),
            version: 1,
            event_id: id("0190c7b8-0000-7000-8000-0000000000e1"),
            event_type: "note_added".into(),
            schema_version: 2,
            data: serde_json::json!({
                "visible_to_customer": false,
                "text": "Caf\u{e9} \"B\"\nline 2",
                "ticket_id": "0190c7b8-0000-7000-8000-000000000001",
            }),
            metadata: Metadata {
                command_id: command,
                correlation_id: command,
                causation_id: command,
                actor: Actor {
                    id: "agent-1".into(),
                    role: Role::Agent,
                },
                occurred_at: "2026-11-23T09:12:00Z".parse().unwrap(),
                recorded_at: "2026-11-23T09:12:00.5001Z".parse().unwrap(),
                command_hash: None,
            },
            hash: String::new(),
        };
        let mut bytes = Vec::new();
        serde_json::to_writer(&mut bytes, &Canonical::of(&event)).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"data":{"text":"Café \"B\"\nline 2","ticket_id":"0190c7b8-0000-7000-8000-000000000001","visible_to_customer":false},"event_id":"0190c7b8-0000-7000-8000-0000000000e1","metadata":{"actor":{"id":"agent-1","role":"agent"},"causation_id":"0190c7b8-0000-7000-8000-0000000000a1","command_id":"0190c7b8-0000-7000-8000-0000000000a1","correlation_id":"0190c7b8-0000-7000-8000-0000000000a1","occurred_at":"2026-11-23T09:12:00Z","recorded_at":"2026-11-23T09:12:00.5001Z"},"schema_version":2,"stream":"ticket-0190c7b8-0000-7000-8000-000000000001","type":"note_added","version":1}"#
        );
        assert_eq!(
            chain_hash(GENESIS_HASH, &event),
            "8b81be090b020121439cb53b78f4cfd112a64e2bab8486c542833c5b86e2d173"
        );
    }

    fn check_all(events: &[StoredEvent]) -> Vec<ChainBreak> {
        let mut verifier = LogVerifier::new();
        events.iter().flat_map(|e| verifier.check(e)).collect()
    }

    #[test]
    fn an_untouched_log_verifies() {
        assert_eq!(check_all(&log()), vec![]);
        let a: Vec<_> = log()
            .into_iter()
            .filter(|e| e.stream == "ticket-a")
            .collect();
        assert_eq!(verify_chain(&a), vec![]);
    }

    #[test]
    fn a_changed_byte_is_named() {
        let mut events = log();
        events[2].data = serde_json::json!({"n": 3});
        let breaks = check_all(&events);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert_eq!(
            (breaks[0].stream.as_str(), breaks[0].version),
            ("ticket-a", 2)
        );
        assert!(breaks[0].problem.contains("hash mismatch"));
    }

    #[test]
    fn a_removed_event_is_named() {
        let mut events = log();
        events.remove(2); // ticket-a version 2, position 3
        let breaks = check_all(&events);
        assert!(
            breaks
                .iter()
                .any(|b| b.stream == "ticket-a" && b.version == 3 && b.problem.contains("missing")),
            "{breaks:?}"
        );
        assert!(
            breaks
                .iter()
                .any(|b| b.position == 4 && b.problem.contains("gap")),
            "{breaks:?}"
        );
        let a: Vec<_> = events
            .into_iter()
            .filter(|e| e.stream == "ticket-a")
            .collect();
        assert!(!verify_chain(&a).is_empty());
    }

    #[test]
    fn a_swapped_pair_is_named() {
        let mut events: Vec<_> = log()
            .into_iter()
            .filter(|e| e.stream == "ticket-b")
            .collect();
        events.swap(0, 1);
        let breaks = verify_chain(&events);
        assert!(
            breaks
                .iter()
                .any(|b| b.stream == "ticket-b" && b.version == 2),
            "{breaks:?}"
        );
        let mut whole = log();
        whole.swap(1, 3); // ticket-b versions 1 and 2 trade places in the log
        let breaks = check_all(&whole);
        assert!(
            breaks
                .iter()
                .any(|b| b.stream == "ticket-b" && b.problem.contains("out of order")),
            "{breaks:?}"
        );
    }
}
