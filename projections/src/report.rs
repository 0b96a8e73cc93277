//! The reports: JSON values read from the read models, the same for `closeloop report NAME
//! --json` and the query `closeloop.v1.queries.report_NAME`. Their fields are the stable
//! minimum of docs/contract.md (Reports) plus a few more. "Now" (for running timers) and the filters are explicit
//! parameters; nothing here reads a clock.

use std::collections::BTreeMap;

use closeloop_core::domain::Grade;
use jiff::civil::Date;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::status_at;
use crate::performance::{Perf, PerformanceModel, Who};
use crate::period::{day_of, day_of_date, Granularity};
use crate::satisfaction::{By, Callbacks, Ratings, SatisfactionModel};
use crate::sla::{target_index, SlaModel, TARGETS};

/// Filters of every report. Unknown fields are ignored (a query request also carries `actor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReportQuery {
    /// Only this agent's rows (SLA: tickets assigned to them).
    #[serde(default)]
    pub agent: Option<String>,
    /// Only this team's rows (SLA: tickets of the team; performance: the team and its agents).
    #[serde(default)]
    pub team: Option<String>,
    /// First UTC day included (SLA: timers started on or after it).
    #[serde(default)]
    pub from: Option<Date>,
    /// Last UTC day included.
    #[serde(default)]
    pub to: Option<Date>,
    /// How days are grouped in satisfaction and performance: day, week, month (default) or
    /// total.
    #[serde(default)]
    pub period: Granularity,
}

impl ReportQuery {
    /// The parameters a report query accepts.
    pub const PARAMS: &'static [&'static str] = &["agent", "team", "from", "to", "period"];

    /// Decodes a query request's parameters (without `actor`); an unknown or malformed field
    /// is an error naming it (as a JSON Pointer) and saying why.
    pub fn from_params(
        params: &serde_json::Map<String, Value>,
    ) -> Result<ReportQuery, (String, String)> {
        if let Some(unknown) = params.keys().find(|k| !Self::PARAMS.contains(&k.as_str())) {
            return Err((
                format!("/{unknown}"),
                format!("unknown field; expected actor, {}", Self::PARAMS.join(", ")),
            ));
        }
        let mut query = ReportQuery::default();
        for (key, value) in params {
            let bad = |e: String| (format!("/{key}"), e);
            match key.as_str() {
                "agent" => {
                    query.agent =
                        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?
                }
                "team" => {
                    query.team =
                        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?
                }
                "from" => {
                    query.from =
                        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?
                }
                "to" => {
                    query.to =
                        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?
                }
                _ => {
                    query.period = serde_json::from_value::<Option<Granularity>>(value.clone())
                        .map_err(|e| bad(e.to_string()))?
                        .unwrap_or_default()
                }
            }
        }
        Ok(query)
    }

    fn day_range(&self) -> (i32, i32) {
        (
            self.from.map_or(i32::MIN, day_of_date),
            self.to.map_or(i32::MAX, day_of_date),
        )
    }

    fn in_range(&self, day: i32) -> bool {
        let (from, to) = self.day_range();
        from <= day && day <= to
    }
}

/// How the scorecard weighs an agent's figures. Configuration, not code: docs/domain.md's
/// (Staff performance) 60 % results, 30 % basic service work, 10 % daily discipline, bonus and deduction each
/// capped at 10 points, are only the default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ScoreWeights {
    /// Results: mean of SLA compliance and satisfaction (mean score x 20), in percent.
    pub results_percent: f64,
    /// Basic service work: mean of resolution rate (resolved / assigned) and one-touch rate.
    pub basic_percent: f64,
    /// Daily discipline: 100 minus the reopen rate (reopened / resolved).
    pub discipline_percent: f64,
    /// Points per survey rating of 5.
    pub bonus_per_excellent_rating: f64,
    pub bonus_cap_points: f64,
    /// Points taken per justified complaint.
    pub deduction_per_justified_complaint: f64,
    pub deduction_cap_points: f64,
}

impl Default for ScoreWeights {
    fn default() -> ScoreWeights {
        ScoreWeights {
            results_percent: 60.0,
            basic_percent: 30.0,
            discipline_percent: 10.0,
            bonus_per_excellent_rating: 0.5,
            bonus_cap_points: 10.0,
            deduction_per_justified_complaint: 2.0,
            deduction_cap_points: 10.0,
        }
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn percent(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!(round(part as f64 * 100.0 / whole as f64, 1))
    }
}

fn rfc3339(seconds: Option<i64>) -> Value {
    seconds
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or(Value::Null, |t| json!(t.to_string()))
}

/// The SLA report: every timer (soonest due first), then compliance per grade and target.
pub fn sla_report(model: &SlaModel, query: &ReportQuery, now: Timestamp) -> Value {
    let now_s = now.as_second();
    let mut rows = Vec::new();
    // (grade, target) -> (met, breached)
    let mut compliance: BTreeMap<(Grade, usize), (u64, u64)> = BTreeMap::new();
    for (id, t) in model.tickets() {
        let assignee = t.assignee.map(|a| model.name(a));
        let team = t.team.map(|x| model.name(x));
        if query.agent.as_deref().is_some_and(|a| assignee != Some(a))
            || query.team.as_deref().is_some_and(|x| team != Some(x))
            || !query.in_range(day_of(t.clock.opened_at))
        {
            continue;
        }
        for (i, [met, missed]) in t.done.iter().enumerate() {
            let c = compliance.entry((t.grade, i)).or_default();
            c.0 += u64::from(*met);
            c.1 += u64::from(*missed);
        }
        for timer in &t.clock.timers {
            let status = status_at(&t.clock, timer, now_s);
            if timer.is_live() && status == "breached" {
                compliance
                    .entry((t.grade, target_index(timer.target)))
                    .or_default()
                    .1 += 1;
            }
            let (business, calendar) = model.used_at(t, timer, now_s);
            let at_risk = timer.is_live()
                && (status == "breached" || timer.warn_at.is_some_and(|w| w <= now_s));
            rows.push((
                timer.due_at.unwrap_or(i64::MAX),
                *id,
                target_index(timer.target),
                json!({
                    "ticket_id": id,
                    "target": timer.target,
                    "status": status,
                    "due_at": rfc3339(timer.due_at),
                    "warn_at": rfc3339(timer.warn_at),
                    "target_minutes": timer.target_minutes,
                    "business_minutes_used": business / 60,
                    "calendar_minutes_used": calendar / 60,
                    "started_at": rfc3339(Some(timer.start)),
                    "fulfilled_at": rfc3339(timer.stop),
                    "at_risk": at_risk,
                    "warned": timer.warned,
                    "breach_recorded": timer.breach_recorded,
                    "grade": t.grade,
                    "priority": t.priority,
                    "assignee": assignee,
                    "team": team,
                    "calendar_id": t.clock.sla.as_ref().map(|s| model.calendars().name(s.calendar)),
                }),
            ));
        }
    }
    rows.sort_by_key(|a| (a.0, a.1, a.2));
    let compliance: Vec<Value> = compliance
        .into_iter()
        .filter(|(_, (met, breached))| met + breached > 0)
        .map(|((grade, i), (met, breached))| {
            json!({
                "grade": grade,
                "target": TARGETS[i],
                "met": met,
                "breached": breached,
                "percent": percent(met, met + breached),
            })
        })
        .collect();
    json!({
        "report": "sla",
        "as_of": now.to_string(),
        "timers": rows.into_iter().map(|r| r.3).collect::<Vec<_>>(),
        "compliance": compliance,
    })
}

/// The satisfaction report: survey groups by agent, team, category, grade and channel per
/// period; quality-inspection callbacks apart.
pub fn satisfaction_report(model: &SatisfactionModel, query: &ReportQuery) -> Value {
    let names = model.names();
    let keep = |by: By, key: u32| match by {
        By::Agent => {
            query.agent.as_deref().is_none_or(|a| names.name(key) == a) && query.team.is_none()
        }
        By::Team => {
            query.team.as_deref().is_none_or(|x| names.name(key) == x) && query.agent.is_none()
        }
        _ => query.agent.is_none() && query.team.is_none(),
    };
    let mut groups: BTreeMap<(By, &str, String), Ratings> = BTreeMap::new();
    for ((by, key, day), r) in model.ratings() {
        if keep(*by, *key) && query.in_range(*day) {
            groups
                .entry((*by, names.name(*key), query.period.label(*day)))
                .or_default()
                .add(r);
        }
    }
    let mut callbacks: BTreeMap<(By, &str, String), Callbacks> = BTreeMap::new();
    for ((by, key, day), c) in model.callbacks() {
        if keep(*by, *key) && query.in_range(*day) {
            callbacks
                .entry((*by, names.name(*key), query.period.label(*day)))
                .or_default()
                .add(c);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|((by, key, period), r)| {
            let satisfied = u64::from(r.distribution[3] + r.distribution[4]);
            json!({
                "by": by.as_str(),
                "key": key,
                "period": period,
                "ratings": r.ratings,
                "mean": (r.ratings > 0).then(|| round(f64::from(r.score_sum) / f64::from(r.ratings), 2)),
                "satisfied_percent": percent(satisfied, u64::from(r.ratings)),
                "distribution": {
                    "1": r.distribution[0], "2": r.distribution[1], "3": r.distribution[2],
                    "4": r.distribution[3], "5": r.distribution[4],
                },
                "resolutions": r.resolutions,
                "response_rate_percent": percent(u64::from(r.ratings), u64::from(r.resolutions)),
                "tickets": r.tickets,
                "complaints": r.complaints,
                "complaint_rate_percent": percent(u64::from(r.complaints), u64::from(r.tickets)),
            })
        })
        .collect();
    let callbacks: Vec<Value> = callbacks
        .into_iter()
        .map(|((by, key, period), c)| {
            let dim = |i: usize| {
                (c.with_dimensions > 0)
                    .then(|| round(f64::from(c.dimension_sums[i]) / f64::from(c.with_dimensions), 2))
            };
            json!({
                "by": by.as_str(),
                "key": key,
                "period": period,
                "callbacks": c.callbacks,
                "mean": (c.callbacks > 0).then(|| round(f64::from(c.score_sum) / f64::from(c.callbacks), 2)),
                "dimensions": {
                    "recognition": dim(0), "efficiency": dim(1), "quality": dim(2), "overall": dim(3),
                },
            })
        })
        .collect();
    json!({
        "report": "satisfaction",
        "period": query.period,
        "groups": groups,
        "quality_callbacks": callbacks,
    })
}

/// Median, 90th percentile (nearest rank) and mean of a list of minutes.
fn stats(values: &[u32]) -> Value {
    if values.is_empty() {
        return json!({"median": null, "p90": null, "mean": null, "count": 0});
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    let median = if n % 2 == 1 {
        f64::from(v[n / 2])
    } else {
        (f64::from(v[n / 2 - 1]) + f64::from(v[n / 2])) / 2.0
    };
    let p90 = v[(n * 9).div_ceil(10).max(1) - 1];
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    json!({"median": median, "p90": p90, "mean": round(mean, 1), "count": n})
}

/// The scorecard of one row's figures; `None` with nothing to score.
pub fn score(p: &Perf, w: &ScoreWeights) -> Option<f64> {
    let pct = |a: u32, b: u32| (b > 0).then(|| (f64::from(a) * 100.0 / f64::from(b)).min(100.0));
    let mean = |xs: &[Option<f64>]| {
        let got: Vec<f64> = xs.iter().flatten().copied().collect();
        (!got.is_empty()).then(|| got.iter().sum::<f64>() / got.len() as f64)
    };
    let (met, total) = p
        .sla
        .iter()
        .fold((0, 0), |(m, t), [a, b]| (m + a, t + a + b));
    let satisfaction =
        (p.ratings > 0).then(|| f64::from(p.score_sum) * 20.0 / f64::from(p.ratings));
    let results = mean(&[pct(met, total), satisfaction]);
    let basic = mean(&[pct(p.resolved, p.assigned), pct(p.one_touch, p.resolved)]);
    let discipline = pct(p.reopened, p.resolved).map(|r| 100.0 - r);
    if results.is_none() && basic.is_none() && discipline.is_none() {
        return None;
    }
    let bonus =
        (f64::from(p.excellent_ratings) * w.bonus_per_excellent_rating).min(w.bonus_cap_points);
    let deduction = (f64::from(p.justified_complaints) * w.deduction_per_justified_complaint)
        .min(w.deduction_cap_points);
    let total = results.unwrap_or(0.0) * w.results_percent / 100.0
        + basic.unwrap_or(0.0) * w.basic_percent / 100.0
        + discipline.unwrap_or(100.0) * w.discipline_percent / 100.0
        + bonus
        - deduction;
    Some(round(total.max(0.0), 1))
}

fn perf_row(p: &Perf, open_now: i64, w: &ScoreWeights) -> serde_json::Map<String, Value> {
    let (met, total) = p.sla.iter().fold((0u64, 0u64), |(m, t), [a, b]| {
        (m + u64::from(*a), t + u64::from(a + b))
    });
    let by_target: serde_json::Map<String, Value> = TARGETS
        .iter()
        .map(|t| {
            let [a, b] = p.sla[target_index(*t)];
            (
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                percent(u64::from(a), u64::from(a + b)),
            )
        })
        .collect();
    let json = json!({
        "assigned": p.assigned,
        "resolved": p.resolved,
        "closed": p.closed,
        "reopened": p.reopened,
        "escalated": p.escalated,
        "first_response_minutes": stats(&p.first_response_minutes),
        "resolution_minutes": stats(&p.resolution_minutes),
        "sla_percent": percent(met, total),
        "sla_percent_by_target": by_target,
        "one_touch_percent": percent(u64::from(p.one_touch), u64::from(p.resolved)),
        "ratings": p.ratings,
        "satisfaction_mean": (p.ratings > 0).then(|| round(f64::from(p.score_sum) / f64::from(p.ratings), 2)),
        "justified_complaints": p.justified_complaints,
        "open_now": open_now,
        "score": score(p, w),
    });
    match json {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
}

/// The performance report: one row per agent and period, one per team and period.
pub fn performance_report(
    model: &PerformanceModel,
    query: &ReportQuery,
    weights: &ScoreWeights,
) -> Value {
    let names = model.names();
    let mut agents: BTreeMap<(&str, String), Perf> = BTreeMap::new();
    let mut teams: BTreeMap<(&str, String), Perf> = BTreeMap::new();
    let team_name = |agent: u32| model.team_of(agent).map_or("", |t| names.name(t));
    for ((who, key, day), p) in model.days() {
        if !query.in_range(*day) {
            continue;
        }
        let name = names.name(*key);
        let label = query.period.label(*day);
        match who {
            Who::Agent => {
                if query.agent.as_deref().is_some_and(|a| a != name)
                    || query.team.as_deref().is_some_and(|t| t != team_name(*key))
                {
                    continue;
                }
                agents.entry((name, label)).or_default().add(p);
            }
            Who::Team => {
                if query.agent.is_some() || query.team.as_deref().is_some_and(|t| t != name) {
                    continue;
                }
                teams.entry((name, label)).or_default().add(p);
            }
        }
    }
    let mut team_load: BTreeMap<&str, i64> = BTreeMap::new();
    for agent in model.agents() {
        *team_load.entry(team_name(agent)).or_default() += model.open_now(agent);
    }
    let agent_rows: Vec<Value> = agents
        .into_iter()
        .map(|((agent, period), p)| {
            let id = names.find(agent).unwrap_or(u32::MAX);
            let mut row = serde_json::Map::new();
            row.insert("agent_id".into(), json!(agent));
            row.insert("team".into(), json!(team_name(id)));
            row.insert("period".into(), json!(period));
            row.extend(perf_row(&p, model.open_now(id), weights));
            Value::Object(row)
        })
        .collect();
    let team_rows: Vec<Value> = teams
        .into_iter()
        .map(|((team, period), p)| {
            let mut row = serde_json::Map::new();
            row.insert("team".into(), json!(team));
            row.insert("period".into(), json!(period));
            row.extend(perf_row(
                &p,
                team_load.get(team).copied().unwrap_or(0),
                weights,
            ));
            Value::Object(row)
        })
        .collect();
    json!({
        "report": "performance",
        "period": query.period,
        "agents": agent_rows,
        "teams": team_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        let params = serde_json::json!({"agent": "a1", "from": "2026-11-01", "period": "week"});
        let q = ReportQuery::from_params(params.as_object().unwrap()).unwrap();
        assert_eq!(q.agent.as_deref(), Some("a1"));
        assert_eq!(q.from, Some("2026-11-01".parse().unwrap()));
        assert_eq!(q.period, Granularity::Week);
        let bad = serde_json::json!({"from": "yesterday"});
        assert_eq!(
            ReportQuery::from_params(bad.as_object().unwrap())
                .unwrap_err()
                .0,
            "/from"
        );
        let unknown = serde_json::json!({"colour": 1});
        assert_eq!(
            ReportQuery::from_params(unknown.as_object().unwrap())
                .unwrap_err()
                .0,
            "/colour"
        );
    }

    #[test]
    fn stats_and_score() {
        assert_eq!(stats(&[5, 1, 3, 2, 4, 6, 7, 8, 9, 10])["median"], 5.5);
        assert_eq!(stats(&[5, 1, 3, 2, 4, 6, 7, 8, 9, 10])["p90"], 9);
        assert_eq!(stats(&[5, 1, 3])["median"], 3.0);
        let p = Perf {
            assigned: 10,
            resolved: 10,
            one_touch: 10,
            sla: [[10, 0], [0, 0], [10, 0]],
            ratings: 4,
            score_sum: 20,
            excellent_ratings: 4,
            justified_complaints: 1,
            ..Perf::default()
        };
        // 100 x 60 % + 100 x 30 % + 100 x 10 % + 4 x 0.5 bonus - 1 x 2 deduction.
        assert_eq!(score(&p, &ScoreWeights::default()), Some(100.0));
        let weights = ScoreWeights {
            deduction_per_justified_complaint: 50.0,
            ..ScoreWeights::default()
        };
        // The deduction is capped at 10 points.
        assert_eq!(score(&p, &weights), Some(92.0));
    }
}
