//! The types of [`EventLog::scan`], the streaming range scan a rebuild of the read side reads
//! the log with, and [`paged_scan`]: the scan of any backend through `read_all`, for a
//! backend without a faster path (memory, and test doubles).

use futures::stream::BoxStream;
use jiff::Timestamp;

use crate::{stream_category, Error, EventLog, Filter, Position, StoredEvent, READ_BATCH_MAX};

/// One event of a scan: what a fold reads, no more (not the event id, version, hash or the
/// rest of the metadata, which a backend would otherwise have to read and decode for
/// nothing). The data stays JSON text, so the caller decodes it once, straight into its own
/// types.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedEvent {
    pub position: Position,
    pub stream: String,
    pub event_type: String,
    pub schema_version: u32,
    /// The event's data as JSON text: the same value [`StoredEvent::data`] holds, in the
    /// backend's rendering (key order and spacing may differ).
    pub data: String,
    /// Business time (`metadata.occurred_at`).
    pub occurred_at: Timestamp,
}

impl ScannedEvent {
    /// The scanned form of a stored event.
    pub fn of(stored: &StoredEvent) -> ScannedEvent {
        ScannedEvent {
            position: stored.position,
            stream: stored.stream.clone(),
            event_type: stored.event_type.clone(),
            schema_version: stored.schema_version,
            data: stored.data.to_string(),
            occurred_at: stored.metadata.occurred_at,
        }
    }

    /// The stream's category (`ticket`, ...).
    pub fn category(&self) -> &str {
        stream_category(&self.stream)
    }
}

/// One batch of a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanBatch {
    /// The batch's events that pass the filter, in position order (possibly none).
    pub events: Vec<ScannedEvent>,
    /// Every event up to this position that passes the filter is in this batch or an
    /// earlier one: a caller's checkpoint may move here even when `events` is empty.
    pub through: Position,
}

/// A running scan: its batches, then the end of the stream. Dropping it early is allowed.
pub type Scan<'a> = BoxStream<'a, Result<ScanBatch, Error>>;

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
