//! The complaints report: per period of receipt (the complaint ticket's opening), how many
//! complaints came in, were resolved and were ruled on; how many standing rulings found them
//! justified, in all and per cause; and how long the complaint waited for its first ruling
//! and for its resolution (calendar minutes from receipt: the customer's wait, which decides
//! whether a complaining customer stays, docs/domain.md, Complaints).
//!
//! Filters: `team` and `agent` select complaints by the ticket's team and assignee (for a
//! ruling, as they were at the ruling). Memory: the groups, not the rows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::performance::stats;
use super::query::ReportQuery;
use super::values::{percent, Labels};
use crate::tables::read::{AnyRow, Dated};
use crate::tables::{TableError, TableStore};

/// One period's figures.
#[derive(Debug, Default)]
struct Period {
    received: u32,
    resolved: u32,
    minutes_to_resolution: Vec<u32>,
    /// Complaints with a standing ruling, and of those, the justified.
    ruled: u32,
    justified: u32,
    minutes_to_ruling: Vec<u32>,
    /// Per cause of the standing ruling: (ruled, justified).
    causes: BTreeMap<String, (u32, u32)>,
}

fn minutes(from: i64, to: i64) -> u32 {
    u32::try_from((to - from).max(0) / 60).unwrap_or(u32::MAX)
}

/// The complaints report from `tickets` (receipt, resolution) and `complaint_rulings`, both
/// over the complaints received in the query's days.
pub async fn complaints_report(
    store: &dyn TableStore,
    query: &ReportQuery,
) -> Result<Value, TableError> {
    let span = query.span();
    let keep = |assignee: Option<&str>, team: Option<&str>| {
        query.agent.as_deref().is_none_or(|a| assignee == Some(a))
            && query.team.as_deref().is_none_or(|t| team == Some(t))
    };
    let mut labels = Labels::new(query.period);
    let mut periods: BTreeMap<String, Period> = BTreeMap::new();
    let mut on_ticket = |row: AnyRow| {
        let AnyRow::Ticket(t) = row else { return };
        if t.category != "complaint" || !keep(t.assignee.as_deref(), t.team.as_deref()) {
            return;
        }
        let p = periods.entry(labels.of(t.opened_at)).or_default();
        p.received += 1;
        if let Some(resolved) = t.resolved_at {
            p.resolved += 1;
            p.minutes_to_resolution.push(minutes(t.opened_at, resolved));
        }
    };
    store
        .scan(Dated::TicketOpened, span, &mut on_ticket)
        .await?;
    let mut on_ruling = |row: AnyRow| {
        let AnyRow::Ruling(r) = row else { return };
        if !keep(r.assignee.as_deref(), r.team.as_deref()) {
            return;
        }
        let p = periods.entry(labels.of(r.complained_at)).or_default();
        if r.ruling == 1 {
            p.minutes_to_ruling
                .push(minutes(r.complained_at, r.ruled_at));
        }
        if r.superseded_at.is_none() {
            let justified = u32::from(r.justified);
            p.ruled += 1;
            p.justified += justified;
            let cause = p.causes.entry(r.cause.clone()).or_default();
            cause.0 += 1;
            cause.1 += justified;
        }
    };
    store
        .scan(Dated::RulingComplained, span, &mut on_ruling)
        .await?;
    let periods: Vec<Value> = periods
        .into_iter()
        .map(|(period, p)| {
            let causes: Vec<Value> = p
                .causes
                .iter()
                .map(|(cause, (ruled, justified))| {
                    json!({
                        "cause": cause,
                        "ruled": ruled,
                        "justified": justified,
                        "justified_percent": percent(u64::from(*justified), u64::from(*ruled)),
                    })
                })
                .collect();
            json!({
                "period": period,
                "received": p.received,
                "resolved": p.resolved,
                "ruled": p.ruled,
                "justified": p.justified,
                "justified_percent": percent(u64::from(p.justified), u64::from(p.ruled)),
                "minutes_to_first_ruling": stats(&p.minutes_to_ruling),
                "minutes_to_resolution": stats(&p.minutes_to_resolution),
                "causes": causes,
            })
        })
        .collect();
    Ok(json!({
        "report": "complaints",
        "period": query.period,
        "periods": periods,
    }))
}
