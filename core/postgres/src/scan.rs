//! The streaming range scan of the PostgreSQL log ([`EventLog::scan`], what replay reads).
//!
//! [`EventLog::read_all`] pages through the log: one query per batch, every row buffered and
//! then decoded into a [`StoredEvent`](closeloop_log::StoredEvent) whose `data` and `metadata`
//! become `serde_json::Value`s, which a projection then decodes a second time into its own
//! types. While the client decodes a page, PostgreSQL is idle; while PostgreSQL reads, the
//! client is. A rebuild of the read side needs none of that:
//!
//! - A scan runs **one** query per range of [`SCAN_RANGE_POSITIONS`] positions whose rows
//!   are streamed as PostgreSQL sends them (tokio-postgres `query_raw`), so the server
//!   produces rows while the client decodes the previous ones. Memory stays bounded:
//!   tokio-postgres hands rows over through a channel of one message and stops reading the
//!   socket while it is full, so PostgreSQL in turn blocks on its full socket; the scan
//!   holds at most the batch it is filling.
//! - It selects only what a fold uses: position, stream, type, schema version, the data as
//!   JSON **text** (so a caller decodes it once, straight into its own types) and
//!   `metadata->>'occurred_at'`; not the event id, version, hash, or the rest of the
//!   metadata, which PostgreSQL would otherwise have to print for nothing.
//!
//! A query holds one snapshot for as long as it runs, and a long-lived snapshot holds back
//! vacuum for the whole database (e.g. the dead versions of the `log_head` row that every
//! append leaves): hence bounded ranges, one query each. Positions are contiguous and in
//! commit order (the crate's doc), so ranges up to a head read earlier see exactly the
//! events of that range, whatever the snapshot.

use closeloop_log::{Scan, ScanBatch, ScannedEvent, READ_BATCH_MAX};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use crate::common::{on_connection, pg, saturate_i64, to_u64};
use closeloop_log::{Error, Filter, Position};
use deadpool_postgres::Pool;

/// Positions one scan query covers: about a second of reading. Long enough that starting a
/// query (one round trip) is noise; short enough that its snapshot, which holds back
/// vacuum, is short-lived, and that a filtered scan of a rare category hands a batch (its
/// progress) to its caller at least once per range.
pub const SCAN_RANGE_POSITIONS: u64 = 160_000;

/// The columns a scan selects, in [`ScannedRow`]'s order.
const SCAN_COLUMNS: &str = "position, stream, type, schema_version, data::text, \
                            metadata->>'occurred_at'";

/// One row of a range query: the fields a fold needs, borrowed from the row as received.
struct ScannedRow(Row);

impl ScannedRow {
    /// The event's global position.
    fn position(&self) -> Result<Position, Error> {
        to_u64(self.0.try_get(0).map_err(pg)?, "position")
    }

    /// The stream's name (`ticket-<id>`, ...).
    fn stream(&self) -> Result<&str, Error> {
        self.0.try_get(1).map_err(pg)
    }

    /// The event type (`ticket_opened`, ...).
    fn event_type(&self) -> Result<&str, Error> {
        self.0.try_get(2).map_err(pg)
    }

    /// The schema version the data was written at.
    fn schema_version(&self) -> Result<u32, Error> {
        let v: i32 = self.0.try_get(3).map_err(pg)?;
        u32::try_from(v).map_err(|_| Error::Corrupt(format!("schema version {v}")))
    }

    /// The event's data as JSON text (PostgreSQL's rendering of the stored jsonb: the same
    /// values `read_all` returns as a `serde_json::Value`).
    fn data_json(&self) -> Result<&str, Error> {
        self.0.try_get(4).map_err(pg)
    }

    /// `metadata.occurred_at` as stored: RFC 3339 text, as `jiff::Timestamp` serializes it.
    fn occurred_at(&self) -> Result<&str, Error> {
        let text: Option<&str> = self.0.try_get(5).map_err(pg)?;
        text.ok_or_else(|| Error::Corrupt("an event's metadata has no occurred_at".into()))
    }
}

/// A running range query: its rows in position order, then `None`.
struct Rows {
    rows: std::pin::Pin<Box<RowStream>>,
    /// Held for the scan's duration, so no other read is queued behind it on the connection.
    _client: deadpool_postgres::Object,
}

impl Rows {
    /// The next row; `None` when the range is exhausted.
    async fn next(&mut self) -> Option<Result<ScannedRow, Error>> {
        use futures::StreamExt;
        self.rows
            .next()
            .await
            .map(|row| row.map(ScannedRow).map_err(pg))
    }
}

/// Streams the events with `after < position <= end` that pass `filter`, in position
/// order, with one query (see the module doc). `end - after` should be bounded, since
/// the query holds its snapshot until the last row is read. Dropping the [`Rows`] early
/// is allowed; the connection then discards the rest of the range before its next use.
async fn range(
    pool: &Pool,
    schema: &str,
    after: Position,
    end: Position,
    filter: Filter<'_>,
) -> Result<Rows, Error> {
    let s = format!("\"{schema}\"");
    let (after, end) = (saturate_i64(after), saturate_i64(end));
    let (sql, categories) = match filter {
        Filter::All => (
            format!(
                "SELECT {SCAN_COLUMNS} FROM {s}.events
                      WHERE position > $1::bigint AND position <= $2::bigint ORDER BY position"
            ),
            None,
        ),
        Filter::Categories(c) => (
            format!(
                "SELECT {SCAN_COLUMNS} FROM {s}.events
                      WHERE position > $1::bigint AND position <= $2::bigint
                        AND split_part(stream, '-', 1) = ANY($3::text[])
                      ORDER BY position"
            ),
            Some(c),
        ),
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &end];
    if let Some(c) = &categories {
        params.push(c);
    }
    let params = &params;
    let (client, rows) = on_connection(pool, &sql, |client, statement| async move {
        let rows = client.query_raw(&statement, params.iter().copied()).await;
        (client, rows)
    })
    .await?;
    Ok(Rows {
        rows: Box::pin(rows),
        _client: client,
    })
}

/// Where a running scan is.
struct Cursor {
    /// Every matching event up to here has been handed over.
    sent: Position,
    /// The end of the range being read, and its rows (`None` between ranges).
    range: Option<(Position, Rows)>,
}

impl ScannedRow {
    fn event(&self) -> Result<ScannedEvent, Error> {
        let position = self.position()?;
        let occurred_at = self.occurred_at()?;
        Ok(ScannedEvent {
            position,
            stream: self.stream()?.to_owned(),
            event_type: self.event_type()?.to_owned(),
            schema_version: self.schema_version()?,
            data: self.data_json()?.to_owned(),
            occurred_at: occurred_at.parse().map_err(|e| {
                Error::Corrupt(format!(
                    "occurred_at of the event at position {position}: {e}"
                ))
            })?,
        })
    }
}

/// [`EventLog::scan`](closeloop_log::EventLog::scan) for PostgreSQL: ranges of
/// [`SCAN_RANGE_POSITIONS`], one query each, cut into batches as the rows arrive.
pub(crate) fn scan<'a>(
    pool: &'a Pool,
    schema: &'a str,
    after: Position,
    end: Position,
    filter: Filter<'a>,
    batch_events: usize,
) -> Scan<'a> {
    let limit = batch_events.clamp(1, READ_BATCH_MAX);
    let cursor = Cursor {
        sent: after,
        range: None,
    };
    Box::pin(futures::stream::try_unfold(
        cursor,
        move |mut cursor| async move {
            let mut events = Vec::with_capacity(limit);
            loop {
                if cursor.sent >= end {
                    return Ok(None);
                }
                let (to, rows) = match &mut cursor.range {
                    Some((to, rows)) => (*to, rows),
                    None => {
                        let from = cursor.sent;
                        let to = end.min(from.saturating_add(SCAN_RANGE_POSITIONS));
                        let rows = range(pool, schema, from, to, filter).await?;
                        let (to, rows) = cursor.range.insert((to, rows));
                        (*to, rows)
                    }
                };
                match rows.next().await {
                    Some(row) => {
                        events.push(row?.event()?);
                        if events.len() >= limit {
                            let through = events.last().map_or(to, |e| e.position);
                            cursor.sent = through;
                            return Ok(Some((ScanBatch { events, through }, cursor)));
                        }
                    }
                    None => {
                        // The range is done: hand over what there is, so that a caller's
                        // progress never waits for more than one range.
                        cursor.range = None;
                        cursor.sent = to;
                        return Ok(Some((
                            ScanBatch {
                                events,
                                through: to,
                            },
                            cursor,
                        )));
                    }
                }
            }
        },
    ))
}
