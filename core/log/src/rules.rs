//! The append rules: the one decision every backend makes for an append, written once so
//! that the memory, SQLite and PostgreSQL logs cannot drift apart. A backend gathers what it
//! knows (the command id's earlier outcome, the stream's head, the categories' heads, the
//! next free position) in its own way (a map, a query inside its write transaction, the
//! PostgreSQL planner's caches) and [`decide`] answers, in this order:
//!
//! 1. the command id was appended before: [`Decision::Duplicate`] with the first outcome,
//!    whatever the stream's state now;
//! 2. the stream is not at the expected version: [`Error::WrongExpectedVersion`];
//! 3. a category of the [`Unchanged`](crate::Unchanged) condition moved:
//!    [`Error::Changed`];
//! 4. otherwise the events, sealed (positions from `next_position`, versions after the
//!    stream's, hash-chained after its last hash), and the outcome once they are written:
//!    [`Decision::Sealed`].
//!
//! Limits of the request itself ([`check_request`](crate::check_request)) are checked before,
//! once per append, outside any lock.

use jiff::Timestamp;

use crate::{
    check_expected, committed_of, seal, AppendRequest, Committed, Error, Position, StoredEvent,
    GENESIS_HASH,
};

/// What an append comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The command id was already appended: nothing to write; the first append's outcome.
    Duplicate(Committed),
    /// The events to write, in order, and the append's outcome once they are.
    Sealed(Vec<StoredEvent>, Committed),
}

/// Decides `request`. `existing` is the outcome of an earlier append with its command id, if
/// any. `stream_head` gives the stream's current version and last hash (`None`: the stream
/// has no events); it is asked only when the command id is new. `category_head` gives the
/// position of a category's last event (0 if none); it is asked only for the categories of
/// the request's `unchanged` condition, in order, until one has moved. `next_position` is
/// the position of the first event if the append is written; `recorded_at` is stamped on
/// every event.
pub fn decide(
    request: &AppendRequest,
    existing: Option<Committed>,
    stream_head: impl FnOnce() -> Result<Option<(u64, String)>, Error>,
    category_head: impl FnMut(&str) -> Result<Position, Error>,
    next_position: Position,
    recorded_at: Timestamp,
) -> Result<Decision, Error> {
    if let Some(first) = existing {
        return Ok(Decision::Duplicate(first));
    }
    let (current, prev_hash) = stream_head()?.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
    check_expected(&request.stream, request.expected, current)?;
    if let Some(unchanged) = &request.unchanged {
        unchanged.check(category_head)?;
    }
    let sealed = seal(request, current, next_position, prev_hash, recorded_at);
    let committed = committed_of(&sealed);
    Ok(Decision::Sealed(sealed, committed))
}

#[cfg(test)]
mod tests {
    use closeloop_domain::{Actor, Role};
    use uuid::Uuid;

    use super::*;
    use crate::{chain_hash, ExpectedVersion, Metadata, NewEvent, Unchanged};

    fn request(stream: &str, expected: ExpectedVersion, events: usize) -> AppendRequest {
        let command_id = Uuid::now_v7();
        let metadata = Metadata {
            command_id,
            correlation_id: command_id,
            causation_id: command_id,
            actor: Actor {
                id: "tester".into(),
                role: Role::System,
            },
            occurred_at: Timestamp::UNIX_EPOCH,
            recorded_at: Timestamp::UNIX_EPOCH,
            command_hash: None,
        };
        AppendRequest {
            stream: stream.into(),
            expected,
            command_id,
            events: (0..events)
                .map(|i| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: format!("happened_{i}"),
                    schema_version: 1,
                    data: serde_json::json!({ "i": i }),
                    metadata: metadata.clone(),
                })
                .collect(),
            unchanged: None,
        }
    }

    fn never<T>() -> Result<T, Error> {
        panic!("not to be asked")
    }

    #[test]
    fn a_known_command_id_is_a_duplicate_without_looking_at_the_stream() {
        let first = Committed {
            stream: "ticket-1".into(),
            version: 3,
            position: 9,
            events: vec!["opened".into()],
        };
        let r = request("ticket-1", ExpectedVersion::Exact(0), 1);
        let decision = decide(
            &r,
            Some(first.clone()),
            never,
            |_| never(),
            10,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(decision.unwrap(), Decision::Duplicate(first));
    }

    #[test]
    fn a_new_stream_starts_at_version_one_after_the_genesis_hash() {
        let r = request("ticket-1", ExpectedVersion::Exact(0), 3);
        let Decision::Sealed(sealed, committed) =
            decide(&r, None, || Ok(None), |_| never(), 5, Timestamp::UNIX_EPOCH).unwrap()
        else {
            panic!("sealed")
        };
        let positions: Vec<_> = sealed.iter().map(|e| (e.position, e.version)).collect();
        assert_eq!(positions, [(5, 1), (6, 2), (7, 3)]);
        assert_eq!(sealed[0].hash, chain_hash(GENESIS_HASH, &sealed[0]));
        assert_eq!(sealed[2].hash, chain_hash(&sealed[1].hash, &sealed[2]));
        assert_eq!((committed.version, committed.position), (3, 7));
        assert_eq!(committed.events, ["happened_0", "happened_1", "happened_2"]);
    }

    #[test]
    fn an_existing_stream_continues_its_versions_and_chain() {
        let r = request("ticket-1", ExpectedVersion::Exact(4), 1);
        let Decision::Sealed(sealed, _) = decide(
            &r,
            None,
            || Ok(Some((4, "ab".repeat(32)))),
            |_| never(),
            20,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap() else {
            panic!("sealed")
        };
        assert_eq!((sealed[0].version, sealed[0].position), (5, 20));
        assert_eq!(sealed[0].hash, chain_hash(&"ab".repeat(32), &sealed[0]));
    }

    #[test]
    fn a_wrong_expected_version_is_refused_before_the_condition() {
        let mut r = request("ticket-1", ExpectedVersion::Exact(1), 1);
        r.unchanged = Some(Unchanged {
            categories: &["agent"],
            after: 0,
        });
        let error = decide(&r, None, || Ok(None), |_| never(), 1, Timestamp::UNIX_EPOCH);
        assert!(matches!(
            error,
            Err(Error::WrongExpectedVersion { actual: 0, .. })
        ));
    }

    #[test]
    fn a_moved_category_is_refused() {
        let mut r = request("ticket-1", ExpectedVersion::Any, 1);
        r.unchanged = Some(Unchanged {
            categories: &["agent", "customer"],
            after: 4,
        });
        let heads = |category: &str| Ok(if category == "customer" { 7 } else { 4 });
        let error = decide(&r, None, || Ok(None), heads, 8, Timestamp::UNIX_EPOCH);
        match error {
            Err(Error::Changed {
                category,
                position,
                after,
            }) => assert_eq!((category.as_str(), position, after), ("customer", 7, 4)),
            other => panic!("expected Changed, got {other:?}"),
        }
        let unmoved = |_: &str| Ok(4);
        assert!(matches!(
            decide(&r, None, || Ok(None), unmoved, 8, Timestamp::UNIX_EPOCH),
            Ok(Decision::Sealed(..))
        ));
    }
}
