//! The types of [`EventLog::scan`](crate::EventLog::scan), the streaming range scan a
//! rebuild of the read side reads the log with (the paged scan of a backend without a faster
//! path is `event_log.rs`'s `paged_scan`).

use futures::stream::BoxStream;
use jiff::Timestamp;

use crate::error::Error;
use crate::types::{stream_category, Position, StoredEvent};

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
