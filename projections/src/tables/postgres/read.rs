//! Reads of the tables on PostgreSQL. Rows come back as `to_jsonb(row)` text and decode with
//! the rows' own serde (as the dump does), so a column is named in one place. Parameters
//! travel as text and are cast in SQL (`$n::text::timestamptz`); a timer with no due time
//! sorts last (`coalesce(due_at, 'infinity')`, the expression of the SLA list's index).

use futures::{pin_mut, TryStreamExt};
use serde::de::DeserializeOwned;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::tables::read::{
    AnyRow, Compliance, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage,
};
use crate::tables::rows::*;
use crate::tables::store::{Saved, TableError, NAME};

/// The checkpoint row as stored, if there is one (`lock`: `FOR UPDATE` or nothing): what
/// `open` starts from and what reports read.
pub(super) async fn stored(
    client: &impl tokio_postgres::GenericClient,
    s: &str,
    lock: &str,
) -> Result<Option<Saved>, TableError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT version, position, calendars, generation FROM {s}.table_checkpoint WHERE name = $1 {lock}"
            ),
            &[&NAME],
        )
        .await?;
    row.map(|r| {
        Ok(Saved {
            version: u32::try_from(r.get::<_, i32>(0))
                .map_err(|_| TableError::Corrupt("version".into()))?,
            position: u64::try_from(r.get::<_, i64>(1))
                .map_err(|_| TableError::Corrupt("position".into()))?,
            calendars: r.get(2),
            generation: r.get(3),
        })
    })
    .transpose()
}

pub(super) fn decode<T: DeserializeOwned>(table: &str, text: &str) -> Result<T, TableError> {
    serde_json::from_str(text).map_err(|e| TableError::Corrupt(format!("{table}: {e}")))
}

pub(super) async fn checkpoint(client: &Client, s: &str) -> Result<Saved, TableError> {
    Ok(stored(client, s, "").await?.unwrap_or_else(Saved::absent))
}

pub(super) async fn scan(
    client: &Client,
    s: &str,
    dated: Dated,
    span: Span,
    sink: &mut (dyn FnMut(AnyRow) + Send),
) -> Result<(), TableError> {
    let (table, column) = dated.table_column();
    let mut sql = format!("SELECT to_jsonb(t)::text FROM {s}.{table} t WHERE {column} IS NOT NULL");
    let (from, to) = span.text();
    let mut params: Vec<String> = Vec::new();
    for (bound, op) in [(from, ">="), (to, "<")] {
        if let Some(b) = bound {
            params.push(b);
            sql.push_str(&format!(
                " AND {column} {op} ${}::text::timestamptz",
                params.len()
            ));
        }
    }
    let rows = client.query_raw(&sql, params.iter()).await?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let text: &str = row.get(0);
        sink(match table {
            "tickets" => AnyRow::Ticket(decode(table, text)?),
            "assignments" => AnyRow::Assignment(decode(table, text)?),
            "resolutions" => AnyRow::Resolution(decode(table, text)?),
            "satisfaction_ratings" => AnyRow::Rating(decode(table, text)?),
            "complaint_rulings" => AnyRow::Ruling(decode(table, text)?),
            "complaint_charges" => AnyRow::Charge(decode(table, text)?),
            "follow_ups" => AnyRow::FollowUp(decode(table, text)?),
            "deadlines" => AnyRow::Deadline(decode(table, text)?),
            "inspection_samples" => AnyRow::Sample(decode(table, text)?),
            "inspections" => AnyRow::Inspection(decode(table, text)?),
            "reinspections_overdue" => AnyRow::Overdue(decode(table, text)?),
            _ => AnyRow::Timer(decode(table, text)?),
        });
    }
    Ok(())
}

pub(super) async fn agents(client: &Client, s: &str) -> Result<Vec<AgentRow>, TableError> {
    let rows = client
        .query(
            &format!("SELECT to_jsonb(t)::text FROM {s}.agents t ORDER BY agent_id COLLATE \"C\""),
            &[],
        )
        .await?;
    rows.iter().map(|r| decode("agents", r.get(0))).collect()
}

pub(super) async fn open_load(client: &Client, s: &str) -> Result<Vec<(String, i64)>, TableError> {
    let rows = client
        .query(
            &format!(
                "SELECT assignee, count(*) FROM {s}.tickets
                  WHERE status NOT IN ('resolved', 'closed') AND assignee IS NOT NULL
                  GROUP BY assignee ORDER BY assignee COLLATE \"C\""
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The filter of a ticket `k` as `$1`..`$4` (assignee, team, opened from, opened before).
const TICKET_FILTER: &str = "($1::text IS NULL OR k.assignee = $1::text)
   AND ($2::text IS NULL OR k.team = $2::text)
   AND ($3::text IS NULL OR k.opened_at >= $3::text::timestamptz)
   AND ($4::text IS NULL OR k.opened_at < $4::text::timestamptz)";

fn filter_params(f: &TimerFilter) -> [Option<String>; 4] {
    let (from, to) = f.opened.text();
    [f.agent.clone(), f.team.clone(), from, to]
}

pub(super) async fn sla_counts(
    client: &Client,
    s: &str,
    filter: &TimerFilter,
    now: i64,
) -> Result<SlaCounts, TableError> {
    let sql = format!(
        "SELECT t.grade, t.target, k.team,
                count(*) FILTER (WHERE t.met),
                count(*) FILTER (WHERE NOT t.met OR (t.met IS NULL AND t.latest
                         AND (t.status = 'breached' OR t.due_at <= $5::text::timestamptz))),
                count(*) FILTER (WHERE t.met IS NULL AND t.latest),
                count(*) FILTER (WHERE t.met IS NULL AND t.latest AND (t.status = 'breached'
                         OR t.due_at <= $5::text::timestamptz OR t.warn_at <= $5::text::timestamptz))
           FROM {s}.sla_timers t JOIN {s}.tickets k ON k.ticket_id = t.ticket_id
          WHERE {TICKET_FILTER}
          GROUP BY t.grade, t.target, k.team"
    );
    let [a, b, c, d] = filter_params(filter);
    let now = rfc3339(now);
    let params: [&(dyn ToSql + Sync); 5] = [&a, &b, &c, &d, &now];
    let mut counts = SlaCounts::default();
    for r in client.query(&sql, &params).await? {
        let count = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
        counts.compliance.push(Compliance {
            grade: r.get(0),
            target: r.get(1),
            team: r.get(2),
            met: count(3),
            breached: count(4),
        });
        counts.open += count(5);
        counts.at_risk += count(6);
    }
    Ok(counts)
}

pub(super) async fn timers(
    client: &Client,
    s: &str,
    page: &TimerPage,
) -> Result<Vec<Listed>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(t)::text, k.assignee, k.team
           FROM {s}.sla_timers t JOIN {s}.tickets k ON k.ticket_id = t.ticket_id
          WHERE t.latest AND {TICKET_FILTER}
            AND (NOT $6::bool OR (t.fulfilled_at IS NULL AND (t.status = 'breached'
                 OR t.due_at <= $5::text::timestamptz OR t.warn_at <= $5::text::timestamptz)))
            AND ($7::text IS NULL OR (coalesce(t.due_at, 'infinity'::timestamptz), t.ticket_id, t.target)
                 > ($7::text::timestamptz, $8::text::uuid, $9::text))
          ORDER BY coalesce(t.due_at, 'infinity'::timestamptz), t.ticket_id, t.target
          LIMIT $10::bigint"
    );
    let [a, b, c, d] = filter_params(&page.filter);
    let now = rfc3339(page.now);
    let (due, id, target) = match &page.after {
        Some(after) => (
            Some(after.due_at.map_or("infinity".to_owned(), rfc3339)),
            Some(after.ticket_id.to_string()),
            Some(after.target.clone()),
        ),
        None => (None, None, None),
    };
    let limit = i64::from(page.limit);
    let params: [&(dyn ToSql + Sync); 10] = [
        &a,
        &b,
        &c,
        &d,
        &now,
        &page.at_risk_only,
        &due,
        &id,
        &target,
        &limit,
    ];
    client
        .query(&sql, &params)
        .await?
        .iter()
        .map(|r| {
            Ok(Listed {
                timer: decode("sla_timers", r.get(0))?,
                assignee: r.get(1),
                team: r.get(2),
            })
        })
        .collect()
}

/// One page of the scheduler's rows: `sql` takes the bound (`$1`, text) and the page size
/// (`$2`) and selects each row as JSON of `table`'s row.
async fn page<T: DeserializeOwned>(
    client: &Client,
    sql: &str,
    bound: &str,
    limit: u32,
    table: &str,
) -> Result<Vec<T>, TableError> {
    client
        .query(sql, &[&bound, &i64::from(limit)])
        .await?
        .iter()
        .map(|r| decode(table, r.get(0)))
        .collect()
}

pub(super) async fn retention_policies(
    client: &Client,
    s: &str,
) -> Result<Vec<RetentionPolicyRow>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(p)::text FROM {s}.retention_policies p ORDER BY p.policy_id COLLATE \"C\""
    );
    client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|r| decode("retention_policies", r.get(0)))
        .collect()
}

/// The retention scheduler's candidates (see `TableStore::retention_candidates`), as on
/// SQLite: an index-only scan of `tickets_by_customer`, and the latest erasure through
/// `customer_erasures_by_customer`.
pub(super) async fn retention_candidates(
    client: &Client,
    s: &str,
    closed_before: i64,
) -> Result<Vec<ClosureRow>, TableError> {
    let sql = format!(
        "WITH kinds AS (
             SELECT customer_id, category, grade, max(closed_at) AS last_closed_at,
                    count(*) FILTER (WHERE status <> 'closed' OR closed_at IS NULL) AS unclosed
               FROM {s}.tickets
              GROUP BY customer_id, category, grade),
         customers AS (
             SELECT customer_id, max(last_closed_at) AS last_closed_at
               FROM kinds
              GROUP BY customer_id
             HAVING sum(unclosed) = 0 AND max(last_closed_at) <= $1::text::timestamptz)
         SELECT jsonb_build_object('customer_id', k.customer_id, 'category', k.category,
                                   'grade', k.grade, 'last_closed_at', k.last_closed_at)::text
           FROM kinds k JOIN customers c ON c.customer_id = k.customer_id
          WHERE NOT EXISTS (SELECT 1 FROM {s}.customer_erasures e
                             WHERE e.customer_id = c.customer_id
                               AND e.erased_at >= c.last_closed_at)
          ORDER BY k.customer_id COLLATE \"C\", k.category COLLATE \"C\", k.grade COLLATE \"C\""
    );
    client
        .query(&sql, &[&rfc3339(closed_before)])
        .await?
        .iter()
        .map(|r| decode("tickets", r.get(0)))
        .collect()
}

pub(super) async fn erasures(
    client: &Client,
    s: &str,
    from: i64,
    until: i64,
) -> Result<Vec<ErasureRow>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(e)::text FROM {s}.customer_erasures e
          WHERE e.erased_at >= $1::text::timestamptz AND e.erased_at < $2::text::timestamptz
          ORDER BY e.erased_at, e.position"
    );
    client
        .query(&sql, &[&rfc3339(from), &rfc3339(until)])
        .await?
        .iter()
        .map(|r| decode("customer_erasures", r.get(0)))
        .collect()
}

pub(super) async fn due_absences(
    client: &Client,
    s: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<AbsenceRow>, TableError> {
    // Two index scans (`absences_to_start`, `absences_to_end`), merged by their moment.
    let sql = format!(
        "SELECT row FROM (
             SELECT to_jsonb(a)::text AS row, a.from_at AS moment, a.absence_id FROM {s}.absences a
              WHERE a.state = 'planned' AND a.from_at <= $1::text::timestamptz
             UNION ALL
             SELECT to_jsonb(a)::text, a.until_at, a.absence_id FROM {s}.absences a
              WHERE a.state = 'started' AND a.until_at <= $1::text::timestamptz) due
          ORDER BY moment, absence_id
          LIMIT $2::bigint"
    );
    page(client, &sql, &rfc3339(now), limit, "absences").await
}

pub(super) async fn due_deadlines(
    client: &Client,
    s: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<DeadlineRow>, TableError> {
    // The partial index `deadlines_open` holds only the steps not done and not breached.
    let sql = format!(
        "SELECT to_jsonb(d)::text FROM {s}.deadlines d
          WHERE d.met_at IS NULL AND d.breached_at IS NULL
            AND ((d.warned_at IS NULL AND d.warn_at <= $1::text::timestamptz)
                 OR d.due_at <= $1::text::timestamptz)
          ORDER BY d.due_at, d.ticket_id, d.deadline
          LIMIT $2::bigint"
    );
    page(client, &sql, &rfc3339(now), limit, "deadlines").await
}

pub(super) async fn due_follow_ups(
    client: &Client,
    s: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<FollowUpRow>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(f)::text FROM {s}.follow_ups f
          WHERE recorded_at IS NULL
            AND ((warned_at IS NULL AND warn_at <= $1::text::timestamptz)
              OR (overdue_at IS NULL AND due_by <= $1::text::timestamptz))
          ORDER BY warn_at, ticket_id, follow_up
          LIMIT $2::bigint"
    );
    page(client, &sql, &rfc3339(now), limit, "follow_ups").await
}

pub(super) async fn due_reinspections(
    client: &Client,
    s: &str,
    month: &str,
    limit: u32,
) -> Result<Vec<InspectionRow>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(i)::text FROM {s}.inspections i
          WHERE i.verdict = 'fail' AND i.reinspect_in < $1::text
            AND NOT EXISTS (SELECT 1 FROM {s}.reinspections_overdue o
                             WHERE o.sample_id = i.sample_id AND o.ticket_id = i.ticket_id)
            AND NOT EXISTS (SELECT 1 FROM {s}.inspections j
                             WHERE j.ticket_id = i.ticket_id AND j.agent_id = i.agent_id
                               AND j.period = i.reinspect_in)
          ORDER BY i.reinspect_in COLLATE \"C\", i.sample_id, i.ticket_id
          LIMIT $2::bigint"
    );
    page(client, &sql, month, limit, "inspections").await
}

pub(super) async fn due_answers(
    client: &Client,
    s: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<ResolutionRow>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(r)::text FROM {s}.resolutions r
          WHERE answer IS NULL AND NOT reopened_later AND closed_at IS NULL
            AND answer_due_at < $1::text::timestamptz
          ORDER BY answer_due_at, ticket_id
          LIMIT $2::bigint"
    );
    page(client, &sql, &rfc3339(now), limit, "resolutions").await
}

pub(super) async fn due_timers(
    client: &Client,
    s: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<TimerRow>, TableError> {
    let sql = format!(
        "SELECT to_jsonb(t)::text FROM {s}.sla_timers t JOIN {s}.tickets k ON k.ticket_id = t.ticket_id
          WHERE t.fulfilled_at IS NULL AND t.status <> 'cancelled'
            AND t.latest AND t.status <> 'breached'
            AND (t.due_at < $1::text::timestamptz
                 OR (t.warn_at <= $1::text::timestamptz AND t.warned_at IS NULL))
            AND k.status NOT IN ('resolved', 'closed')
          ORDER BY coalesce(t.due_at, 'infinity'::timestamptz), t.ticket_id, t.target
          LIMIT $2::bigint"
    );
    page(client, &sql, &rfc3339(now), limit, "sla_timers").await
}
