//! The quality-inspection report (docs/domain.md, Quality inspection): per agent and
//! inspected month (the sample's `period`, whatever the report's `period` grouping), the
//! samples drawn and their items, the items inspected, the mean of each callback dimension,
//! the share of complete service logs, visits verified of those checked, failures, and the
//! re-inspections they call for: due in the next month, and done there (a later sample's
//! inspection of the same ticket).
//!
//! Filters: `agent`, `team` (the agent's at the draw), and `from` / `to` as months (a
//! sample of November is in when `from` is in or before November and `to` in or after it).
//! Memory: one group per agent and month; the samples and inspections are few (a handful
//! per agent and month).

use std::collections::{BTreeMap, BTreeSet};

use closeloop_core::domain::next_month;
use serde_json::{json, Value};
use uuid::Uuid;

use super::query::ReportQuery;
use super::values::{percent, round};
use crate::period::{day_of_date, Granularity};
use crate::tables::read::{AnyRow, Dated};
use crate::tables::{Span, TableError, TableStore};

#[derive(Debug, Default)]
struct Group {
    team: String,
    samples: u32,
    drawn: u32,
    inspected: u32,
    dimension_sums: [u32; 4],
    log_complete: u32,
    visits_checked: u32,
    visits_verified: u32,
    failed: u32,
    /// Failed items the scheduler found not inspected again in the next month.
    reinspections_overdue: u32,
    /// Failed tickets, due again next month, and whether that happened.
    failed_tickets: BTreeSet<Uuid>,
}

/// The inspections report from `inspection_samples` and `inspections`.
pub async fn inspections_report(
    store: &dyn TableStore,
    query: &ReportQuery,
) -> Result<Value, TableError> {
    let month = |d: Option<jiff::civil::Date>| d.map(|d| Granularity::Month.label(day_of_date(d)));
    let (from, to) = (month(query.from), month(query.to));
    let keep = |agent: &str, team: &str, period: &str| {
        query.agent.as_deref().is_none_or(|a| a == agent)
            && query.team.as_deref().is_none_or(|t| t == team)
            && from.as_deref().is_none_or(|f| period >= f)
            && to.as_deref().is_none_or(|t| period <= t)
    };
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    // (agent, month, ticket) of every inspection: whether a failure was inspected again.
    let mut inspected_in: BTreeSet<(String, String, Uuid)> = BTreeSet::new();
    let mut on_sample = |row: AnyRow| {
        let AnyRow::Sample(s) = row else { return };
        if !keep(&s.agent_id, &s.team, &s.period) {
            return;
        }
        let g = groups.entry((s.agent_id, s.period)).or_default();
        g.team = s.team;
        g.samples += 1;
        g.drawn += s.items;
    };
    store
        .scan(Dated::SampleDrawn, Span::default(), &mut on_sample)
        .await?;
    let mut on_inspection = |row: AnyRow| {
        let AnyRow::Inspection(i) = row else { return };
        inspected_in.insert((i.agent_id.clone(), i.period.clone(), i.ticket_id));
        if !keep(&i.agent_id, &i.team, &i.period) {
            return;
        }
        let g = groups.entry((i.agent_id, i.period)).or_default();
        g.team = i.team;
        g.inspected += 1;
        for (sum, v) in
            g.dimension_sums
                .iter_mut()
                .zip([i.recognition, i.efficiency, i.quality, i.overall])
        {
            *sum += u32::from(v);
        }
        g.log_complete += u32::from(i.log_complete);
        if let Some(verified) = i.visit_verified {
            g.visits_checked += 1;
            g.visits_verified += u32::from(verified);
        }
        if i.verdict == "fail" {
            g.failed += 1;
            g.failed_tickets.insert(i.ticket_id);
        }
    };
    store
        .scan(Dated::Inspected, Span::default(), &mut on_inspection)
        .await?;
    let mut on_overdue = |row: AnyRow| {
        let AnyRow::Overdue(o) = row else { return };
        if keep(&o.agent_id, &o.team, &o.period) {
            groups
                .entry((o.agent_id, o.period))
                .or_default()
                .reinspections_overdue += 1;
        }
    };
    store
        .scan(Dated::ReinspectionOverdue, Span::default(), &mut on_overdue)
        .await?;
    let rows: Vec<Value> = groups
        .into_iter()
        .map(|((agent, period), g)| {
            let next = next_month(&period);
            let reinspected = g
                .failed_tickets
                .iter()
                .filter(|t| inspected_in.contains(&(agent.clone(), next.clone(), **t)))
                .count();
            let mean = |i: usize| {
                (g.inspected > 0)
                    .then(|| round(f64::from(g.dimension_sums[i]) / f64::from(g.inspected), 2))
            };
            json!({
                "agent_id": agent,
                "team": g.team,
                "period": period,
                "samples": g.samples,
                "drawn": g.drawn,
                "inspected": g.inspected,
                "dimensions": {
                    "recognition": mean(0), "efficiency": mean(1), "quality": mean(2),
                    "overall": mean(3),
                },
                "log_complete_percent": percent(u64::from(g.log_complete), u64::from(g.inspected)),
                "visits_checked": g.visits_checked,
                "visits_verified": g.visits_verified,
                "failed": g.failed,
                "reinspections_due": g.failed_tickets.len(),
                "reinspected": reinspected,
                "reinspections_overdue": g.reinspections_overdue,
                "reinspect_in": next,
            })
        })
        .collect();
    Ok(json!({"report": "inspections", "agents": rows}))
}

/// The candidates of a draw: the tickets `agent` resolved in `month` (its span), each once,
/// in id order: what `draw_inspection_sample` takes.
pub async fn inspection_candidates(
    store: &dyn TableStore,
    agent: &str,
    month: Span,
) -> Result<Vec<Uuid>, TableError> {
    let mut found = BTreeSet::new();
    let mut on_row = |row: AnyRow| {
        if let AnyRow::Resolution(r) = row {
            if r.resolved_by == agent {
                found.insert(r.ticket_id);
            }
        }
    };
    store.scan(Dated::Resolved, month, &mut on_row).await?;
    Ok(found.into_iter().collect())
}
