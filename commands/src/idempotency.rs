//! Idempotency keys bound to their command, and out of reach of other actors.
//!
//! A `command_id` makes a retry safe: the log appends each id at most once and answers a
//! retry with the first append's outcome. Two rules keep that from being abused:
//!
//! - **Scoped by actor.** The log's key of a command from outside ([`log_key`]) is derived
//!   from the actor's id and the command id, so nobody can take an id another actor will use:
//!   the engine's own commands (role `system`, never accepted from outside) keep their
//!   predictable ids in a space no outside command reaches, and an agent cannot pre-empt a
//!   service's id either.
//! - **Bound to the content.** Every event carries the SHA-256 of its command's canonical
//!   content ([`content_hash`]); a command whose id is known but whose content differs is
//!   refused (`conflict` at `/command_id`) instead of being answered with another command's
//!   reply.

use closeloop_core::domain::CommandEnvelope;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The key the log deduplicates `envelope` by (the domain's
/// [`idempotency_key`](closeloop_core::domain::idempotency_key)): its own id for the engine's
/// commands (role `system`), a UUID v5 of the actor's id and the command id for everyone
/// else's.
pub fn log_key(envelope: &CommandEnvelope) -> Uuid {
    closeloop_core::domain::idempotency_key(&envelope.actor, envelope.command_id)
}

/// Lowercase hex SHA-256 of `envelope` without its `command_id`, as compact JSON with object
/// keys sorted: actor, business time, expected version, type and payload. The keys come out
/// sorted because `serde_json::Value`'s maps keep them sorted, the property the log's hash
/// chain is defined by too (`closeloop_log::hash`).
pub fn content_hash(envelope: &CommandEnvelope) -> String {
    let mut value = serde_json::to_value(envelope).expect("commands serialize");
    if let Value::Object(map) = &mut value {
        map.remove("command_id");
    }
    let bytes = serde_json::to_vec(&value).expect("values serialize");
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use closeloop_core::domain::{Actor, Command, Role};

    use super::*;

    fn note(actor: Actor, text: &str) -> CommandEnvelope {
        let command: Command = serde_json::from_value(serde_json::json!({
            "type": "add_note",
            "payload": {"ticket_id": "0190a0b0-0000-7000-8000-000000000001", "text": text}
        }))
        .expect("a note command");
        CommandEnvelope {
            command_id: Uuid::from_u128(7),
            actor,
            occurred_at: None,
            expected_version: None,
            command,
        }
    }

    #[test]
    fn the_engines_ids_are_its_own_and_others_are_scoped_by_actor() {
        let system = note(Actor::system("sla-scheduler"), "x");
        assert_eq!(log_key(&system), system.command_id);
        let agent = note(
            Actor {
                id: "a-1".into(),
                role: Role::Agent,
            },
            "x",
        );
        let other = note(
            Actor {
                id: "a-2".into(),
                role: Role::Agent,
            },
            "x",
        );
        assert_ne!(log_key(&agent), agent.command_id);
        assert_ne!(log_key(&agent), log_key(&other));
        assert_eq!(log_key(&agent), log_key(&agent.clone()));
    }

    #[test]
    fn the_hash_covers_the_content_but_not_the_id() {
        let a = note(
            Actor {
                id: "a-1".into(),
                role: Role::Agent,
            },
            "x",
        );
        let mut renamed = a.clone();
        renamed.command_id = Uuid::from_u128(8);
        assert_eq!(content_hash(&a), content_hash(&renamed));
        assert_ne!(content_hash(&a), content_hash(&note(a.actor.clone(), "y")));
        let mut later = a.clone();
        later.occurred_at = Some("2026-11-02T00:00:00Z".parse().unwrap());
        assert_ne!(content_hash(&a), content_hash(&later));
        assert_eq!(content_hash(&a).len(), 64);
    }

    /// The hashed bytes are the compact JSON with every object's keys sorted, written out
    /// here by hand: an auditor can recompute the hash from the command as sent.
    #[test]
    fn the_hash_is_that_of_the_sorted_compact_json() {
        let a = note(
            Actor {
                id: "a-1".into(),
                role: Role::Agent,
            },
            "x",
        );
        let canonical = concat!(
            r#"{"actor":{"id":"a-1","role":"agent"},"expected_version":null,"occurred_at":null,"#,
            r#""payload":{"text":"x","ticket_id":"0190a0b0-0000-7000-8000-000000000001","#,
            r#""visible_to_customer":false},"type":"add_note"}"#
        );
        assert_eq!(content_hash(&a), hex::encode(Sha256::digest(canonical)));
    }
}
