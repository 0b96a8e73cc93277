//! [`EventLog`], the trait every backend implements, and [`paged_scan`], the scan of any
//! backend through `read_all`, for a backend without a faster path (memory, and test
//! doubles).

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::Error;
use crate::keys::{DataKey, KeyStore};
use crate::scan::{Scan, ScanBatch, ScannedEvent};
use crate::types::*;

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

    /// Appends `request` whose events were sealed (in part) under `new_keys`, customers'
    /// data keys made for it because the customers had none stored: each is stored unless
    /// the customer has a key by then, in which case nothing is appended and the answer is
    /// [`Error::KeyTaken`] (seal again under the stored key and retry).
    ///
    /// Why: a new customer's first command would otherwise wait for one commit to store the
    /// key and a second for the append. A backend that can stores the keys in the append's
    /// own transaction (SQLite); this default stores them first, each durable on its own
    /// (memory, PostgreSQL), which leaves a stored key unused if the append then fails:
    /// harmless, the customer's next events are sealed under it.
    async fn append_with_keys(
        &self,
        request: AppendRequest,
        new_keys: Vec<(String, DataKey)>,
    ) -> Result<AppendOutcome, Error> {
        for (customer_id, key) in new_keys {
            if self.keys().store(&customer_id, &key).await? != key {
                return Err(Error::KeyTaken { customer_id });
            }
        }
        self.append(request).await
    }

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

/// The scan of any log through [`EventLog::read_all`]: one page per batch, each page read
/// only when the stream is polled.
pub fn paged_scan<'a, L: EventLog + ?Sized>(
    log: &'a L,
    after: Position,
    end: Position,
    filter: Filter<'a>,
    batch_events: usize,
) -> Scan<'a> {
    let limit = batch_events.clamp(1, READ_BATCH_MAX);
    Box::pin(futures::stream::try_unfold(
        after,
        move |after| async move {
            if after >= end {
                return Ok(None);
            }
            let page = log.read_all(after, limit, filter).await?;
            let full = page.len() >= limit;
            let events: Vec<ScannedEvent> = page
                .iter()
                .take_while(|e| e.position <= end)
                .map(ScannedEvent::of)
                .collect();
            // Positions are contiguous and in commit order: a short page, or one that went
            // beyond `end`, has seen every event up to `end`, matching or not.
            let through = match events.last() {
                Some(last) if full && events.len() == page.len() && last.position < end => {
                    last.position
                }
                _ => end,
            };
            Ok(Some((ScanBatch { events, through }, through)))
        },
    ))
}
