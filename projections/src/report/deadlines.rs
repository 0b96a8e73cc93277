//! The step-deadline report (`set_deadline`): per period of the due time, how many step
//! deadlines fell due, how many were met (done by their due time), breached (the scheduler
//! recorded the breach; `met_late` of those were done after it) and are still open, in all
//! and per kind, per agent (the owner) and per team (the owner's when it was set). The
//! manuals promise these steps to customers (a repair within three days, an on-site response
//! within two, ...), so what a supervisor reads is the share met of those decided.
//!
//! Filters: `agent` (the owner), `team`, and `from` / `to` on the due time. Memory: the
//! groups, not the rows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::query::ReportQuery;
use super::values::{percent, Labels};
use crate::tables::read::{AnyRow, Dated};
use crate::tables::{DeadlineRow, TableError, TableStore};

/// The figures of one group.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    due: u32,
    met: u32,
    breached: u32,
    met_late: u32,
    open: u32,
}

impl Counts {
    fn add(&mut self, r: &DeadlineRow) {
        self.due += 1;
        match r.status.as_str() {
            "met" => self.met += 1,
            "breached" => self.breached += 1,
            "met_late" => {
                self.breached += 1;
                self.met_late += 1;
            }
            _ => self.open += 1,
        }
    }

    fn json(&self) -> serde_json::Map<String, Value> {
        let decided = u64::from(self.met) + u64::from(self.breached);
        let Value::Object(map) = json!({
            "due": self.due,
            "met": self.met,
            "breached": self.breached,
            "met_late": self.met_late,
            "open": self.open,
            "met_percent": percent(u64::from(self.met), decided),
        }) else {
            unreachable!("a JSON object")
        };
        map
    }
}

#[derive(Debug, Default)]
struct Period {
    all: Counts,
    kinds: BTreeMap<String, Counts>,
    /// By owner: their team and figures.
    agents: BTreeMap<String, (String, Counts)>,
    teams: BTreeMap<String, Counts>,
}

/// The deadlines report from `deadlines`, over the deadlines due in the query's days.
pub async fn deadlines_report(
    store: &dyn TableStore,
    query: &ReportQuery,
) -> Result<Value, TableError> {
    let mut labels = Labels::new(query.period);
    let mut periods: BTreeMap<String, Period> = BTreeMap::new();
    let mut on_row = |row: AnyRow| {
        let AnyRow::Deadline(r) = row else { return };
        let Some(due) = r.due_at else { return };
        if query.agent.as_deref().is_some_and(|a| a != r.owner)
            || query.team.as_deref().is_some_and(|t| t != r.team)
        {
            return;
        }
        let p = periods.entry(labels.of(due)).or_default();
        p.all.add(&r);
        p.kinds.entry(r.kind.clone()).or_default().add(&r);
        let agent = p
            .agents
            .entry(r.owner.clone())
            .or_insert_with(|| (r.team.clone(), Counts::default()));
        agent.1.add(&r);
        p.teams.entry(r.team.clone()).or_default().add(&r);
    };
    store
        .scan(Dated::DeadlineDue, query.span(), &mut on_row)
        .await?;
    let named = |key: &str, name: &str, c: &Counts| {
        let mut map = serde_json::Map::new();
        map.insert(key.to_owned(), json!(name));
        map.extend(c.json());
        Value::Object(map)
    };
    let periods: Vec<Value> = periods
        .into_iter()
        .map(|(period, p)| {
            let mut map = serde_json::Map::new();
            map.insert("period".into(), json!(period));
            map.extend(p.all.json());
            let kinds: Vec<Value> = p
                .kinds
                .iter()
                .map(|(kind, c)| named("kind", kind, c))
                .collect();
            let agents: Vec<Value> = p
                .agents
                .iter()
                .map(|(agent, (team, c))| {
                    let mut v = named("agent_id", agent, c);
                    v["team"] = json!(team);
                    v
                })
                .collect();
            let teams: Vec<Value> = p
                .teams
                .iter()
                .map(|(team, c)| named("team", team, c))
                .collect();
            map.insert("kinds".into(), Value::Array(kinds));
            map.insert("agents".into(), Value::Array(agents));
            map.insert("teams".into(), Value::Array(teams));
            Value::Object(map)
        })
        .collect();
    Ok(json!({
        "report": "deadlines",
        "period": query.period,
        "periods": periods,
    }))
}
