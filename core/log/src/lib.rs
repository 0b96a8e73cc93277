//! closeloop-log: the event log, the only truth (docs/contract.md, principle 2). One trait,
//! [`EventLog`], that every backend implements: [`memory`] here (always available, the
//! reference), SQLite (`closeloop-sqlite`, the embedded default) and PostgreSQL
//! (`closeloop-postgres`, many processes on one database). Every backend passes the same
//! conformance suite (`closeloop-testkit`).
//!
//! Layout:
//! - `lib.rs` (this file): the trait and its types (requests, stored events, outcomes,
//!   filters), the limits, and the pure helpers every backend uses to check and seal an
//!   append, so that all of them decide the same way and compute the same bytes;
//! - `error.rs`: the log's one [`Error`] enum, free of any database driver's types;
//! - `hash.rs`: the per-stream SHA-256 hash chain;
//! - `rules.rs`: the append rules, one pure function every backend calls to decide an append;
//! - `memory.rs`: the in-memory backend;
//! - `subscription.rs`: [`Subscription`], the one way to follow the log (catch up, next
//!   batch, wait for news or shutdown), with the short-batch rule written once;
//! - `shutdown.rs`: [`Shutdown`], the one stop signal every follower of the log takes;
//! - `scan.rs`: [`EventLog::scan`]'s types ([`ScannedEvent`], [`ScanBatch`]) and the paged
//!   scan a backend without a faster path uses.
//!
//! Invariants every backend keeps:
//! - an append is atomic: all of its events or none, checked against its expected version;
//! - stream versions start at 1 and are contiguous;
//! - global positions start at 1, are strictly increasing in commit order and contiguous, so a
//!   reader that has seen position p never later finds an event at or below p;
//! - a `command_id` appends at most once; a retry gets the first append's outcome;
//! - each stream is a SHA-256 hash chain (`hash.rs`).

mod error;
mod hash;
mod keys;
pub mod memory;
pub mod rules;
mod scan;
pub mod shred;
mod shutdown;
mod subscription;

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use closeloop_domain::Actor;

pub use error::Error;
pub use keys::{DataKey, KeyStore, MemoryKeys};

pub use scan::{paged_scan, Scan, ScanBatch, ScannedEvent};
pub use shutdown::{Shutdown, Trigger};
pub use subscription::{Batch, Subscription, Waited};

pub use hash::{chain_hash, verify_chain, ChainBreak, LogVerifier, GENESIS_HASH};

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

/// The event log. All methods are safe to call concurrently.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The customers' data keys kept beside this log (in its own database), which
    /// crypto-shredding destroys ([`shred`]): the handler seals customer fields under them
    /// before appending, and the read boundaries open them.
    fn keys(&self) -> std::sync::Arc<dyn KeyStore>;

    /// Appends atomically, or fails with [`Error::WrongExpectedVersion`] (or
    /// [`Error::Changed`] when its [`Unchanged`] condition does not hold) and appends nothing.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error>;

    /// The stream's events with version greater than `after_version`, in version order.
    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, Error>;

    /// Up to `limit` (at most [`READ_BATCH_MAX`]) of the stream's events with version
    /// greater than `after_version`, in version order: a long stream read a page at a time,
    /// so a reader's memory does not grow with the stream.
    async fn read_stream_page(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let mut events = self.read_stream(stream, after_version).await?;
        events.truncate(limit.min(READ_BATCH_MAX));
        Ok(events)
    }

    /// Up to `limit` (at most [`READ_BATCH_MAX`]) events with position greater than `after`
    /// that pass `filter`, in position order.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, Error>;

    /// The position of the last committed event (0 for an empty log).
    async fn head(&self) -> Result<Position, Error>;

    /// Waits until the head is beyond `after` or `max_wait` passes; returns the head. This is
    /// how tails wait for new events without busy polling.
    async fn wait_beyond(&self, after: Position, max_wait: Duration) -> Result<Position, Error>;

    /// The outcome of the append made with this command id, if any.
    async fn find_command(&self, command_id: Uuid) -> Result<Option<Committed>, Error>;

    /// Up to `limit` (at most [`READ_BATCH_MAX`]) idempotency records whose last position is
    /// greater than `after`, in position order. Every append writes one, so on an untouched
    /// log they tile positions 1..=head exactly; `verify` checks that they do.
    async fn command_records(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, Error>;

    /// The log's identity: a random UUID (v4) drawn when the log was created and stored in
    /// it, never changed afterwards (a log that predates it gets one when it is migrated).
    ///
    /// Why: everything that leaves the log (exports, the events stream, signed checkpoints)
    /// carries it, so a copy can be told apart from another log's, and the relay can refuse
    /// to continue a stream another log filled. A restored backup keeps its id: it is the
    /// same log, older, which the relay detects by comparing event ids instead.
    async fn log_id(&self) -> Result<Uuid, Error>;

    /// Streams the events with `after < position <= end` that pass `filter`, in position
    /// order, in batches of at most `batch_events` (clamped to 1..=[`READ_BATCH_MAX`]).
    ///
    /// Why beside `read_all`: a rebuild of the read side reads the whole log once, and paging
    /// costs a query (PostgreSQL: a round trip during which the client idles) and a full
    /// decoding of every event's data into a `serde_json::Value` per page. A scan is lazy
    /// (nothing is read before the stream is polled, and a backend reads at most one batch
    /// ahead of its caller, so memory stays bounded), carries each event's data as JSON
    /// text for the caller to decode once into its own types, and tells with each batch how
    /// far it has looked ([`ScanBatch::through`]), so a caller filtering a rare category
    /// still sees progress. `end` should be at most a head read earlier: beyond it nothing
    /// is promised. The last batch has `through == end`; an empty range yields no batch.
    fn scan<'a>(
        &'a self,
        after: Position,
        end: Position,
        filter: Filter<'a>,
        batch_events: usize,
    ) -> Scan<'a> {
        paged_scan(self, after, end, filter, batch_events)
    }
}

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
