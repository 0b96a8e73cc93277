//! The log's types: positions and limits, requests and stored events, outcomes and
//! filters. A leaf: every other module of the log imports it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use closeloop_domain::Actor;

use crate::error::Error;

/// A global position in the log; the first event is at 1, so 0 means "before everything".
pub type Position = u64;

/// Most events one append may carry (TigerBeetle-style explicit limit).
pub const APPEND_EVENTS_MAX: usize = 64;
/// Most events one `read_all` batch returns, whatever the caller asks.
pub const READ_BATCH_MAX: usize = 10_000;

/// What the appender believes about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream's current version must be exactly this; 0 means the stream must not exist.
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who did what, when and why: stored beside every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Metadata {
    pub command_id: Uuid,
    /// The conversation this event belongs to (the first command's id unless told).
    pub correlation_id: Uuid,
    /// What directly caused it: the command id, or the event id for process managers.
    pub causation_id: Uuid,
    pub actor: Actor,
    /// Business time: when it happened in the world.
    pub occurred_at: Timestamp,
    /// When the log stored it; set by the backend at append.
    pub recorded_at: Timestamp,
    /// Lowercase hex SHA-256 of the command's canonical content without its id (see the
    /// handler's `idempotency` module): a retry under the same id with other content is
    /// refused rather than answered with this append's reply. Absent on events written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_hash: Option<String>,
}

/// An event ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// UUID v7, so ids sort by creation time.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    /// `recorded_at` is overwritten by the backend.
    pub metadata: Metadata,
}

/// An event as stored: the envelope of docs/contract.md, "Events".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub position: Position,
    pub stream: String,
    pub version: u64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
    /// Lowercase hex SHA-256 over the previous hash and this event's canonical bytes.
    pub hash: String,
}

impl StoredEvent {
    /// The stream's category: the part of its name before the first `-`.
    pub fn category(&self) -> &str {
        stream_category(&self.stream)
    }
}

/// The category of a stream name (`ticket-0190...` -> `ticket`).
pub fn stream_category(stream: &str) -> &str {
    stream
        .split_once('-')
        .map_or(stream, |(category, _)| category)
}

/// One atomic append.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    /// Unique in the log: a second append with the same id returns the first's outcome.
    pub command_id: Uuid,
    pub events: Vec<NewEvent>,
    /// A condition on other streams, checked atomically with the append (see [`Unchanged`]).
    pub unchanged: Option<Unchanged>,
}

/// "No event of these stream categories was appended after `after`": a condition an append
/// can carry, checked in the same atomic step as its expected version.
///
/// Why: the handler decides ticket commands against the directory (agents, customers,
/// calendars, policies), which lives in other streams and may be changed by another process.
/// Re-reading it before every command would cost a round trip per command; instead the
/// handler decides against the directory as of position `after` and lets the log refuse the
/// append with [`Error::Changed`] if the directory moved since. It then catches up and
/// decides again. Committed appends are thereby always consistent with the directory as of
/// their own commit, which is stronger than "as of when the command arrived".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unchanged {
    pub categories: &'static [&'static str],
    pub after: Position,
}

impl Unchanged {
    /// Checks the condition against the last position of each category (`last_of`): the
    /// first category that moved, as the error to return.
    pub fn check(
        &self,
        mut last_of: impl FnMut(&str) -> Result<Position, Error>,
    ) -> Result<(), Error> {
        for category in self.categories {
            let last = last_of(category)?;
            if last > self.after {
                return Err(Error::Changed {
                    category: (*category).to_owned(),
                    position: last,
                    after: self.after,
                });
            }
        }
        Ok(())
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub stream: String,
    /// Version of the append's last event.
    pub version: u64,
    /// Position of the append's last event.
    pub position: Position,
    /// The appended event types, in order.
    pub events: Vec<String>,
}

/// One idempotency record: the command id of an append and the positions it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub command_id: Uuid,
    pub first_position: Position,
    pub last_position: Position,
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended now.
    Committed(Committed),
    /// The command id was already in the log: nothing appended; here is the first outcome.
    Duplicate(Committed),
}

impl AppendOutcome {
    pub fn committed(&self) -> &Committed {
        match self {
            AppendOutcome::Committed(c) | AppendOutcome::Duplicate(c) => c,
        }
    }
}

/// Which events a `read_all` returns.
#[derive(Debug, Clone, Copy, Default)]
pub enum Filter<'a> {
    #[default]
    All,
    /// Only events whose stream is in one of these categories.
    Categories(&'a [&'a str]),
}

impl Filter<'_> {
    pub fn accepts(&self, stream: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Categories(c) => c.contains(&stream_category(stream)),
        }
    }
}

impl StoredEvent {
    /// The domain event, upcast from its stored schema version.
    pub fn decode(&self) -> Result<closeloop_domain::Event, Error> {
        closeloop_domain::upcast(&self.event_type, self.schema_version, self.data.clone()).map_err(
            |e| {
                Error::Corrupt(format!(
                    "{} version {} (position {}): {e}",
                    self.stream, self.version, self.position
                ))
            },
        )
    }
}
