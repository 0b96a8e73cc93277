//! The pure helpers every backend uses to check and seal an append, so that all of them
//! decide the same way and compute the same bytes.

use jiff::Timestamp;

use crate::error::Error;
use crate::hash::chain_hash;
use crate::types::*;

/// Checks an append request against the log's limits before any backend work.
pub fn check_request(request: &AppendRequest) -> Result<(), Error> {
    if request.events.is_empty() {
        return Err(Error::InvalidAppend(
            "an append needs at least one event".into(),
        ));
    }
    if request.events.len() > APPEND_EVENTS_MAX {
        return Err(Error::InvalidAppend(format!(
            "{} events in one append; at most {APPEND_EVENTS_MAX}",
            request.events.len()
        )));
    }
    match request.stream.split_once('-') {
        Some((category, id)) if !category.is_empty() && !id.is_empty() => Ok(()),
        _ => Err(Error::InvalidAppend(format!(
            "stream name `{}` is not `<category>-<id>`",
            request.stream
        ))),
    }
}

/// Builds the stored form of an append's events, chaining hashes from `prev_hash`.
/// Shared by every backend so that all compute the same bytes.
pub fn seal(
    request: &AppendRequest,
    current_version: u64,
    first_position: Position,
    mut prev_hash: String,
    recorded_at: Timestamp,
) -> Vec<StoredEvent> {
    let mut sealed = Vec::with_capacity(request.events.len());
    for (i, event) in request.events.iter().enumerate() {
        let mut metadata = event.metadata.clone();
        metadata.recorded_at = recorded_at;
        let mut stored = StoredEvent {
            position: first_position + i as u64,
            stream: request.stream.clone(),
            version: current_version + 1 + i as u64,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: event.data.clone(),
            metadata,
            hash: String::new(),
        };
        stored.hash = chain_hash(&prev_hash, &stored);
        prev_hash = stored.hash.clone();
        sealed.push(stored);
    }
    sealed
}

/// Checks `expected` against the stream's current version.
pub fn check_expected(stream: &str, expected: ExpectedVersion, actual: u64) -> Result<(), Error> {
    match expected {
        ExpectedVersion::Exact(v) if v != actual => Err(Error::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected: v.to_string(),
            actual,
        }),
        _ => Ok(()),
    }
}

/// The outcome summary of sealed events.
pub fn committed_of(events: &[StoredEvent]) -> Committed {
    let last = events.last().expect("an append has at least one event");
    Committed {
        stream: last.stream.clone(),
        version: last.version,
        position: last.position,
        events: events.iter().map(|e| e.event_type.clone()).collect(),
    }
}
