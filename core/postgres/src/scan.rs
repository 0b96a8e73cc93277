//! Streaming scans of the PostgreSQL log, for replay (`closeloop replay`).
//!
//! [`EventLog::read_all`] pages through the log: one query per batch, every row buffered and
//! then decoded into a [`StoredEvent`] whose `data` and `metadata` become
//! `serde_json::Value`s, which a projection then decodes a second time into its own types.
//! While the client decodes a page, PostgreSQL is idle; while PostgreSQL reads, the client is.
//! A rebuild of read models needs none of that:
//!
//! - [`PostgresLog::scan`] is **one** query over a range of positions whose rows are
//!   streamed as PostgreSQL sends them (tokio-postgres `query_raw`), so the server produces
//!   rows while the client decodes the previous ones. Memory stays bounded: tokio-postgres
//!   hands rows over through a channel of one message and stops reading the socket while
//!   it is full, so PostgreSQL in turn blocks on its full socket.
//! - It selects only what a fold uses: position, stream, type, schema version, the data as
//!   JSON **text** (so a caller decodes it once, straight into its own types) and
//!   `metadata->>'occurred_at'`; not the event id, version, hash, or the rest of the
//!   metadata, which PostgreSQL would otherwise have to print for nothing.
//! - A [`ScannedRow`] borrows its fields from the received message: nothing is copied until
//!   the caller decodes.
//!
//! A scan's query holds one snapshot for as long as it runs, and a long-lived snapshot holds
//! back vacuum for the whole database (e.g. the dead versions of the `log_head` row that
//! every append leaves). Callers therefore scan a long log in bounded ranges of positions,
//! one query each. Positions are contiguous and in commit order (the crate's doc), so ranges up to a head read earlier see exactly the events of that
//! range, whatever the snapshot.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use super::{pg, saturate_i64, to_u64, Error, Filter, Position, PostgresLog};

/// The columns a scan selects, in [`ScannedRow`]'s order.
const SCAN_COLUMNS: &str = "position, stream, type, schema_version, data::text, \
                            metadata->>'occurred_at'";

/// One event of a [`PostgresLog::scan`]: the fields a fold needs, borrowed from the row as
/// received.
pub struct ScannedRow(Row);

impl ScannedRow {
    /// The event's global position.
    pub fn position(&self) -> Result<Position, Error> {
        to_u64(self.0.try_get(0).map_err(pg)?, "position")
    }

    /// The stream's name (`ticket-<id>`, ...).
    pub fn stream(&self) -> Result<&str, Error> {
        self.0.try_get(1).map_err(pg)
    }

    /// The event type (`ticket_opened`, ...).
    pub fn event_type(&self) -> Result<&str, Error> {
        self.0.try_get(2).map_err(pg)
    }

    /// The schema version the data was written at.
    pub fn schema_version(&self) -> Result<u32, Error> {
        let v: i32 = self.0.try_get(3).map_err(pg)?;
        u32::try_from(v).map_err(|_| Error::Corrupt(format!("schema version {v}")))
    }

    /// The event's data as JSON text (PostgreSQL's rendering of the stored jsonb: the same
    /// values `read_all` returns as a `serde_json::Value`).
    pub fn data_json(&self) -> Result<&str, Error> {
        self.0.try_get(4).map_err(pg)
    }

    /// `metadata.occurred_at` as stored: RFC 3339 text, as `jiff::Timestamp` serializes it.
    pub fn occurred_at(&self) -> Result<&str, Error> {
        let text: Option<&str> = self.0.try_get(5).map_err(pg)?;
        text.ok_or_else(|| Error::Corrupt("an event's metadata has no occurred_at".into()))
    }
}

/// A running [`PostgresLog::scan`]: its rows in position order, then `None`.
pub struct Scan {
    rows: std::pin::Pin<Box<RowStream>>,
    /// Held for the scan's duration, so no other read is queued behind it on the connection.
    _client: deadpool_postgres::Object,
}

impl Scan {
    /// The next row; `None` when the range is exhausted.
    pub async fn next(&mut self) -> Option<Result<ScannedRow, Error>> {
        use futures::StreamExt;
        self.rows
            .next()
            .await
            .map(|row| row.map(ScannedRow).map_err(pg))
    }
}

impl PostgresLog {
    /// Streams the events with `after < position <= end` that pass `filter`, in position
    /// order, with one query (see the module doc). `end` should be at most a head read
    /// earlier, and `end - after` bounded, since the query holds its snapshot until the last
    /// row is read. Dropping the [`Scan`] early is allowed; the connection then discards
    /// the rest of the range before its next use.
    pub async fn scan(
        &self,
        after: Position,
        end: Position,
        filter: Filter<'_>,
    ) -> Result<Scan, Error> {
        let s = format!("\"{}\"", self.schema());
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
        let (client, rows) = self
            .on_connection(&sql, |client, statement| async move {
                let rows = client.query_raw(&statement, params.iter().copied()).await;
                (client, rows)
            })
            .await?;
        Ok(Scan {
            rows: Box::pin(rows),
            _client: client,
        })
    }
}
