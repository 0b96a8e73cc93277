//! The SLA report: compliance per grade and target and the live counts (one `GROUP BY` of
//! the tables), then one page of timers, soonest due first (one indexed query).

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::query::ReportQuery;
use super::values::{percent, rfc3339};
use crate::clock::status_at;
use crate::tables::read::{Listed, TimerFilter, TimerPage};
use crate::tables::{Cursor, Folder, TableError, TableStore, TicketWork};

/// The SLA report from the tables: compliance per grade and target and the live counts
/// (one `GROUP BY`), then one page of timers, soonest due first (one indexed query); a live
/// timer's status and use are measured at `now` from its ticket's clock.
pub async fn sla_report(
    store: &dyn TableStore,
    query: &ReportQuery,
    now: Timestamp,
) -> Result<Value, TableError> {
    let now_s = now.as_second();
    let filter = TimerFilter {
        agent: query.agent.clone(),
        team: query.team.clone(),
        opened: query.span(),
    };
    let counts = store.sla_counts(&filter, now_s).await?;
    let page = TimerPage {
        filter,
        now: now_s,
        at_risk_only: query.at_risk,
        after: query.page.clone(),
        limit: query.limit.clamp(1, ReportQuery::LIMIT_MAX),
    };
    let listed = store.timers(&page).await?;
    let mut ids: Vec<uuid::Uuid> = listed.iter().map(|l| l.timer.ticket_id).collect();
    ids.dedup();
    let works: HashMap<uuid::Uuid, TicketWork> = store
        .works(&ids)
        .await?
        .into_iter()
        .filter_map(|(id, json)| Some((id, serde_json::from_str(&json).ok()?)))
        .collect();
    let saved = store.checkpoint().await?;
    let folder = Folder::restore(saved.calendars.as_deref()).map_err(TableError::Corrupt)?;
    let next_page = (listed.len() == page.limit as usize)
        .then(|| listed.last())
        .flatten()
        .map(|l| {
            Cursor {
                due_at: l.timer.due_at,
                ticket_id: l.timer.ticket_id,
                target: l.timer.target.clone(),
            }
            .encode()
        });
    let timers: Vec<Value> = listed
        .iter()
        .map(|l| timer_json(l, works.get(&l.timer.ticket_id), &folder, now_s))
        .collect();
    let by_team: Vec<Value> = crate::tables::read::by_team(&counts.compliance)
        .into_iter()
        .map(|(team, target, met, breached)| {
            json!({
                "team": team,
                "target": target,
                "met": met,
                "breached": breached,
                "percent": percent(met, met + breached),
            })
        })
        .collect();
    let compliance: Vec<Value> = crate::tables::read::in_report_order(counts.compliance)
        .into_iter()
        .map(|c| {
            json!({
                "grade": c.grade,
                "target": c.target,
                "met": c.met,
                "breached": c.breached,
                "percent": percent(c.met, c.met + c.breached),
            })
        })
        .collect();
    Ok(json!({
        "report": "sla",
        "as_of": now.to_string(),
        "timers": timers,
        "timers_next_page": next_page,
        "open_timers": counts.open,
        "at_risk_timers": counts.at_risk,
        "compliance": compliance,
        "compliance_by_team": by_team,
    }))
}

/// One listed timer: measured on its ticket's clock when the stored state has it, from the
/// row otherwise (a fulfilled timer's row holds its final figures).
fn timer_json(l: &Listed, work: Option<&TicketWork>, folder: &Folder, now: i64) -> Value {
    let row = &l.timer;
    let clocked = work.and_then(|w| {
        w.clock
            .timers
            .iter()
            .find(|t| {
                crate::clock::target_name(t.target) == row.target && t.start == row.started_at
            })
            .map(|t| (w, t))
    });
    let (status, business, calendar, warned, breach_recorded, at_risk) = match clocked {
        Some((w, t)) => {
            let status = status_at(&w.clock, t, now);
            let (business, calendar) = w.clock.used_at(t, now, &folder.calendars);
            let at_risk =
                t.is_live() && (status == "breached" || t.warn_at.is_some_and(|at| at <= now));
            (
                status,
                Some(business / 60),
                Some(calendar / 60),
                t.warned,
                t.breach_recorded,
                at_risk,
            )
        }
        None => (
            match (row.met, crate::tables::read::breached_at_now(row, now)) {
                (Some(true), _) => "fulfilled",
                (Some(false), _) | (None, true) => "breached",
                (None, false) if row.status == "paused" => "paused",
                (None, false) => "running",
            },
            row.business_minutes_used.map(i64::from),
            row.calendar_minutes_used.map(i64::from),
            row.warned_at.is_some(),
            row.breached_at.is_some(),
            crate::tables::read::at_risk_at_now(row, now),
        ),
    };
    json!({
        "ticket_id": row.ticket_id,
        "target": row.target,
        "status": status,
        "due_at": rfc3339(row.due_at),
        "warn_at": rfc3339(row.warn_at),
        "target_minutes": row.target_minutes,
        "business_minutes_used": business,
        "calendar_minutes_used": calendar,
        "started_at": rfc3339(Some(row.started_at)),
        "fulfilled_at": rfc3339(row.fulfilled_at),
        "at_risk": at_risk,
        "warned": warned,
        "breach_recorded": breach_recorded,
        "grade": row.grade,
        "priority": row.priority,
        "assignee": l.assignee,
        "team": l.team,
        "calendar_id": (!row.calendar_id.is_empty()).then_some(&row.calendar_id),
    })
}
