//! The per-stream hash chain. Each event's hash is SHA-256 over the previous event's hash
//! (32 zero bytes for a stream's first event) followed by the event's canonical bytes: the
//! compact JSON of `{data, event_id, metadata, schema_version, stream, type, version}` with
//! object keys sorted. The global position is not covered: it is assigned at commit and is
//! checked separately (contiguity), while the chain proves each stream complete and untouched.

use sha2::{Digest, Sha256};

use super::StoredEvent;

/// The "previous hash" of a stream's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `event` chained after `prev_hash` (lowercase hex).
pub fn chain_hash(prev_hash: &str, event: &StoredEvent) -> String {
    // serde_json's Value keeps object keys in a BTreeMap (no `preserve_order`), so the
    // serialization below is canonical: sorted keys, no whitespace.
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
    hasher.update(serde_json::to_vec(&canonical).expect("JSON values always serialize"));
    hex::encode(hasher.finalize())
}

/// A place where a stream's history does not hold together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub problem: String,
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
    let mut prev = GENESIS_HASH.to_owned();
    for (i, event) in events.iter().enumerate() {
        let expected_version = i as u64 + 1;
        if event.version != expected_version {
            breaks.push(ChainBreak {
                stream: event.stream.clone(),
                version: event.version,
                position: event.position,
                problem: format!(
                    "expected version {expected_version}: an event is missing or out of order"
                ),
            });
        }
        let computed = chain_hash(&prev, event);
        if computed != event.hash {
            breaks.push(ChainBreak {
                stream: event.stream.clone(),
                version: event.version,
                position: event.position,
                problem: format!(
                    "hash mismatch: stored {}, computed {computed}: the event or its predecessor was altered",
                    event.hash
                ),
            });
        }
        prev = event.hash.clone();
    }
    breaks
}

/// Checks a whole log read in position order, one event at a time, holding only each
/// stream's head: positions must run 1, 2, 3... with no gap, each stream's versions 1, 2,
/// 3..., and each hash must chain from the stream's previous one.
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
        let at = |problem: String| ChainBreak {
            stream: event.stream.clone(),
            version: event.version,
            position: event.position,
            problem,
        };
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
        if event.version != prev_version + 1 {
            breaks.push(at(format!(
                "version {} follows version {prev_version}: an event is missing or out of order",
                event.version
            )));
        }
        let computed = chain_hash(&prev_hash, event);
        if computed != event.hash {
            breaks.push(at(format!(
                "hash mismatch (stored {}, computed {computed}): the event or its predecessor was altered",
                event.hash
            )));
        }
        self.heads
            .insert(event.stream.clone(), (event.version, event.hash.clone()));
        breaks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, Role};
    use crate::log::{seal, AppendRequest, ExpectedVersion, Metadata, NewEvent};

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
