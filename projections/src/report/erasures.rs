//! The erasure report, for the data-protection officer: every `customer_data_erased` in a
//! period (`from` and `to`, UTC days, both included), in the order they were recorded: which
//! customer, when, by whom, why (`retention` for the retention scheduler's, the request's
//! ground for the privacy officer's) and the reference (the policy, or the request's case
//! number). Read from the `customer_erasures` table; the other filters do not apply.
//! Memory: the rows of the period (an erasure is a rare event).

use serde_json::{json, Value};

use super::query::ReportQuery;
use crate::period::day_of_date;
use crate::tables::{rfc3339, TableError, TableStore};

/// 9999-01-01T00:00:00Z: after every erasure, and within the times jiff and PostgreSQL hold.
const END_OF_TIME: i64 = 253_370_764_800;

/// The erasures report from `customer_erasures`.
pub async fn erasures_report(
    store: &dyn TableStore,
    query: &ReportQuery,
) -> Result<Value, TableError> {
    let start = |d| i64::from(day_of_date(d)) * 86_400;
    // Open ends as times every store reads (SQLite compares text, PostgreSQL casts it).
    let from = query.from.map_or(0, start);
    let until = query.to.map_or(END_OF_TIME, |d| start(d) + 86_400);
    let rows: Vec<Value> = store
        .erasures(from, until)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "customer_id": e.customer_id,
                "erased_at": rfc3339(e.erased_at),
                "erased_by": e.erased_by,
                "reason": e.reason,
                "reference": e.reference,
                "position": e.position,
            })
        })
        .collect();
    Ok(json!({
        "report": "erasures",
        "from": query.from.map(|d| d.to_string()),
        "to": query.to.map(|d| d.to_string()),
        "erasures": rows,
    }))
}
