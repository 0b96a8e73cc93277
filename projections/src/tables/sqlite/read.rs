//! Reads of the tables on SQLite, on the read connection. Times are RFC 3339 text, which
//! sorts as time does, so ranges compare text; a timer with no due time sorts last as
//! [`NO_DUE`].

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::decode::{self, SqlRow};
use crate::tables::read::{
    AnyRow, Compliance, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage,
};
use crate::tables::rows::*;
use crate::tables::store::{Saved, TableError, NAME};

/// Sorts after every stored time (`coalesce(due_at, NO_DUE)` is the SLA list's order, and
/// the expression of its index).
const NO_DUE: &str = "9999-12-31T23:59:59Z";

/// Rows handed over per message from the reading thread.
const SCAN_CHUNK: usize = 256;

/// The checkpoint as stored, if any.
pub(super) fn stored(conn: &Connection) -> Result<Option<Saved>, TableError> {
    let found = conn
        .query_row(
            "SELECT version, position, calendars, generation FROM table_checkpoint WHERE name = ?1",
            [NAME],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    found
        .map(|(version, position, calendars, generation)| {
            Ok(Saved {
                version: u32::try_from(version)
                    .map_err(|_| TableError::Corrupt("version".into()))?,
                position: u64::try_from(position)
                    .map_err(|_| TableError::Corrupt("position".into()))?,
                calendars,
                generation,
            })
        })
        .transpose()
}

pub(super) fn checkpoint(conn: &mut Connection) -> Result<Saved, TableError> {
    Ok(stored(conn)?.unwrap_or_else(Saved::absent))
}

/// The `WHERE` clause of a range of `column` (`?1`, `?2` bound to the span's ends).
fn range(column: &str, span: &Span) -> String {
    match (span.from, span.to) {
        (Some(_), Some(_)) => format!("{column} >= ?1 AND {column} < ?2"),
        (Some(_), None) => format!("{column} >= ?1 AND ?2 IS NULL"),
        (None, Some(_)) => format!("?1 IS NULL AND {column} < ?2"),
        (None, None) => format!("{column} IS NOT NULL AND ?1 IS NULL AND ?2 IS NULL"),
    }
}

fn scan_blocking(
    conn: &Connection,
    dated: Dated,
    span: Span,
    out: &tokio::sync::mpsc::Sender<Vec<AnyRow>>,
) -> Result<(), TableError> {
    let (table, column) = dated.table_column();
    let sql = format!("SELECT * FROM {table} WHERE {}", range(column, &span));
    let mut s = conn.prepare_cached(&sql)?;
    let mut found = s.query(params![span.text().0, span.text().1])?;
    let mut chunk = Vec::with_capacity(SCAN_CHUNK);
    while let Some(r) = found.next()? {
        chunk.push(match table {
            "tickets" => AnyRow::Ticket(TicketRow::from_row(r)?),
            "assignments" => AnyRow::Assignment(AssignmentRow::from_row(r)?),
            "resolutions" => AnyRow::Resolution(ResolutionRow::from_row(r)?),
            "satisfaction_ratings" => AnyRow::Rating(RatingRow::from_row(r)?),
            "complaint_rulings" => AnyRow::Ruling(RulingRow::from_row(r)?),
            "complaint_charges" => AnyRow::Charge(ChargeRow::from_row(r)?),
            "follow_ups" => AnyRow::FollowUp(FollowUpRow::from_row(r)?),
            "inspection_samples" => AnyRow::Sample(SampleRow::from_row(r)?),
            "inspections" => AnyRow::Inspection(InspectionRow::from_row(r)?),
            "reinspections_overdue" => AnyRow::Overdue(OverdueRow::from_row(r)?),
            "deadlines" => AnyRow::Deadline(DeadlineRow::from_row(r)?),
            _ => AnyRow::Timer(TimerRow::from_row(r)?),
        });
        if chunk.len() == SCAN_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(SCAN_CHUNK));
            if out.blocking_send(full).is_err() {
                return Ok(()); // the reader went away
            }
        }
    }
    if !chunk.is_empty() {
        let _ = out.blocking_send(chunk);
    }
    Ok(())
}

/// Streams the rows through a small channel from a blocking thread that holds the read
/// connection for the scan (one snapshot: a read transaction).
pub(super) async fn scan(
    reader: Arc<Mutex<Connection>>,
    dated: Dated,
    span: Span,
    sink: &mut (dyn FnMut(AnyRow) + Send),
) -> Result<(), TableError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::task::spawn_blocking(move || {
        let mut conn = reader.lock().expect("sqlite reader lock");
        let snapshot = conn.transaction()?;
        scan_blocking(&snapshot, dated, span, &tx)
    });
    while let Some(chunk) = rx.recv().await {
        for row in chunk {
            sink(row);
        }
    }
    task.await
        .map_err(|e| TableError::Unavailable(e.to_string()))?
}

pub(super) fn open_load(conn: &mut Connection) -> Result<Vec<(String, i64)>, TableError> {
    let mut s = conn.prepare_cached(
        "SELECT assignee, count(*) FROM tickets
          WHERE status NOT IN ('resolved', 'closed') AND assignee IS NOT NULL
          GROUP BY assignee ORDER BY assignee",
    )?;
    let load = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(load)
}

/// The filter of a ticket `k` as `?1`..`?4` (assignee, team, opened from, opened before).
const TICKET_FILTER: &str = "(?1 IS NULL OR k.assignee = ?1) AND (?2 IS NULL OR k.team = ?2)
   AND (?3 IS NULL OR k.opened_at >= ?3) AND (?4 IS NULL OR k.opened_at < ?4)";

fn filter_params(f: &TimerFilter) -> [Option<String>; 4] {
    let (from, to) = f.opened.text();
    [f.agent.clone(), f.team.clone(), from, to]
}

pub(super) fn sla_counts(
    conn: &mut Connection,
    filter: &TimerFilter,
    now: i64,
) -> Result<SlaCounts, TableError> {
    let sql = format!(
        "SELECT t.grade, t.target, k.team,
                sum(CASE WHEN t.met THEN 1 ELSE 0 END),
                sum(CASE WHEN NOT t.met OR (t.met IS NULL AND t.latest
                         AND (t.status = 'breached' OR t.due_at <= ?5)) THEN 1 ELSE 0 END),
                sum(CASE WHEN t.met IS NULL AND t.latest THEN 1 ELSE 0 END),
                sum(CASE WHEN t.met IS NULL AND t.latest AND (t.status = 'breached'
                         OR t.due_at <= ?5 OR t.warn_at <= ?5) THEN 1 ELSE 0 END)
           FROM sla_timers t JOIN tickets k ON k.ticket_id = t.ticket_id
          WHERE {TICKET_FILTER}
          GROUP BY t.grade, t.target, k.team"
    );
    let [a, b, c, d] = filter_params(filter);
    let mut s = conn.prepare_cached(&sql)?;
    let mut counts = SlaCounts::default();
    let mut found = s.query(params![a, b, c, d, rfc3339(now)])?;
    while let Some(r) = found.next()? {
        counts.compliance.push(Compliance {
            grade: r.get(0)?,
            target: r.get(1)?,
            team: r.get(2)?,
            met: r.get(3)?,
            breached: r.get(4)?,
        });
        counts.open += r.get::<_, u64>(5)?;
        counts.at_risk += r.get::<_, u64>(6)?;
    }
    Ok(counts)
}

pub(super) fn timers(conn: &mut Connection, page: &TimerPage) -> Result<Vec<Listed>, TableError> {
    let sql = format!(
        "SELECT t.*, k.assignee, k.team
           FROM sla_timers t JOIN tickets k ON k.ticket_id = t.ticket_id
          WHERE t.latest = 1 AND {TICKET_FILTER}
            AND (?6 = 0 OR (t.fulfilled_at IS NULL
                 AND (t.status = 'breached' OR t.due_at <= ?5 OR t.warn_at <= ?5)))
            AND (?7 IS NULL OR (coalesce(t.due_at, '{NO_DUE}'), t.ticket_id, t.target) > (?7, ?8, ?9))
          ORDER BY coalesce(t.due_at, '{NO_DUE}'), t.ticket_id, t.target
          LIMIT ?10"
    );
    let [a, b, c, d] = filter_params(&page.filter);
    let (due, id, target) = match &page.after {
        Some(after) => (
            Some(after.due_at.map_or(NO_DUE.to_owned(), rfc3339)),
            Some(after.ticket_id.to_string()),
            Some(after.target.clone()),
        ),
        None => (None, None, None),
    };
    let mut s = conn.prepare_cached(&sql)?;
    let listed = s
        .query_map(
            params![
                a,
                b,
                c,
                d,
                rfc3339(page.now),
                page.at_risk_only,
                due,
                id,
                target,
                page.limit
            ],
            |r| {
                Ok(Listed {
                    timer: TimerRow::from_row(r)?,
                    assignee: r.get(20)?,
                    team: r.get(21)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(listed)
}

/// One page of the scheduler's rows: `statement` takes the bound (`?1`) and the page size
/// (`?2`).
fn page<T: SqlRow>(
    statement: &mut rusqlite::CachedStatement,
    bound: impl rusqlite::ToSql,
    limit: u32,
) -> Result<Vec<T>, TableError> {
    Ok(statement
        .query_map(params![bound, limit], T::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The retention scheduler's candidates (see [`TableStore::retention_candidates`]): one pass
/// over the covering index `tickets_by_customer`, grouped per customer and then per
/// (category, grade); the latest erasure through `customer_erasures_by_customer`.
pub(super) fn retention_candidates(
    conn: &mut Connection,
    closed_before: i64,
) -> Result<Vec<ClosureRow>, TableError> {
    let mut s = conn.prepare_cached(RETENTION_CANDIDATES)?;
    let found = s
        .query_map(params![rfc3339(closed_before)], |r| {
            Ok(ClosureRow {
                customer_id: r.get(0)?,
                category: r.get(1)?,
                grade: r.get(2)?,
                last_closed_at: decode::time(r, 3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

/// `?1`: the latest closure a candidate may have. Shared in spirit with PostgreSQL's.
const RETENTION_CANDIDATES: &str = "
    WITH kinds AS (
        SELECT customer_id, category, grade, MAX(closed_at) AS last_closed_at,
               SUM(CASE WHEN status = 'closed' AND closed_at IS NOT NULL THEN 0 ELSE 1 END)
                   AS unclosed
          FROM tickets
         GROUP BY customer_id, category, grade),
    customers AS (
        SELECT customer_id, MAX(last_closed_at) AS last_closed_at
          FROM kinds
         GROUP BY customer_id
        HAVING SUM(unclosed) = 0 AND MAX(last_closed_at) <= ?1)
    SELECT k.customer_id, k.category, k.grade, k.last_closed_at
      FROM kinds k JOIN customers c ON c.customer_id = k.customer_id
     WHERE NOT EXISTS (SELECT 1 FROM customer_erasures e
                        WHERE e.customer_id = c.customer_id
                          AND e.erased_at >= c.last_closed_at)
     ORDER BY k.customer_id, k.category, k.grade";

pub(super) fn due_absences(
    conn: &mut Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<AbsenceRow>, TableError> {
    // Two index scans (`absences_to_start`, `absences_to_end`), merged by their moment.
    let mut s = conn.prepare_cached(
        "SELECT * FROM (
             SELECT *, from_at AS moment FROM absences WHERE state = 'planned' AND from_at <= ?1
             UNION ALL
             SELECT *, until_at AS moment FROM absences WHERE state = 'started' AND until_at <= ?1)
          ORDER BY moment, absence_id
          LIMIT ?2",
    )?;
    page(&mut s, rfc3339(now), limit)
}

pub(super) fn due_deadlines(
    conn: &mut Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<DeadlineRow>, TableError> {
    // The partial index `deadlines_open` holds only the steps not done and not breached.
    let mut s = conn.prepare_cached(
        "SELECT * FROM deadlines
          WHERE met_at IS NULL AND breached_at IS NULL
            AND ((warned_at IS NULL AND warn_at <= ?1) OR due_at <= ?1)
          ORDER BY due_at, ticket_id, deadline
          LIMIT ?2",
    )?;
    page(&mut s, rfc3339(now), limit)
}

pub(super) fn due_follow_ups(
    conn: &mut Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<FollowUpRow>, TableError> {
    let mut s = conn.prepare_cached(
        "SELECT * FROM follow_ups
          WHERE recorded_at IS NULL
            AND ((warned_at IS NULL AND warn_at <= ?1) OR (overdue_at IS NULL AND due_by <= ?1))
          ORDER BY warn_at, ticket_id, follow_up
          LIMIT ?2",
    )?;
    page(&mut s, rfc3339(now), limit)
}

pub(super) fn due_reinspections(
    conn: &mut Connection,
    month: &str,
    limit: u32,
) -> Result<Vec<InspectionRow>, TableError> {
    let mut s = conn.prepare_cached(
        "SELECT i.* FROM inspections i
          WHERE i.verdict = 'fail' AND i.reinspect_in < ?1
            AND NOT EXISTS (SELECT 1 FROM reinspections_overdue o
                             WHERE o.sample_id = i.sample_id AND o.ticket_id = i.ticket_id)
            AND NOT EXISTS (SELECT 1 FROM inspections j
                             WHERE j.ticket_id = i.ticket_id AND j.agent_id = i.agent_id
                               AND j.period = i.reinspect_in)
          ORDER BY i.reinspect_in, i.sample_id, i.ticket_id
          LIMIT ?2",
    )?;
    page(&mut s, month, limit)
}

pub(super) fn due_answers(
    conn: &mut Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<ResolutionRow>, TableError> {
    let mut s = conn.prepare_cached(
        "SELECT * FROM resolutions
          WHERE answer IS NULL AND reopened_later = 0 AND closed_at IS NULL AND answer_due_at < ?1
          ORDER BY answer_due_at, ticket_id
          LIMIT ?2",
    )?;
    page(&mut s, rfc3339(now), limit)
}

pub(super) fn due_timers(
    conn: &mut Connection,
    now: i64,
    limit: u32,
) -> Result<Vec<TimerRow>, TableError> {
    let sql = format!(
        "SELECT t.* FROM sla_timers t JOIN tickets k ON k.ticket_id = t.ticket_id
          WHERE t.fulfilled_at IS NULL AND t.status <> 'cancelled'
            AND t.latest = 1 AND t.status <> 'breached'
            AND (t.due_at < ?1 OR (t.warn_at <= ?1 AND t.warned_at IS NULL))
            AND k.status NOT IN ('resolved', 'closed')
          ORDER BY coalesce(t.due_at, '{NO_DUE}'), t.ticket_id, t.target
          LIMIT ?2"
    );
    let mut s = conn.prepare_cached(&sql)?;
    page(&mut s, rfc3339(now), limit)
}
