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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// SLA: at most this many timers per page (1..=[`ReportQuery::LIMIT_MAX`], default
    /// [`ReportQuery::LIMIT_DEFAULT`]).
    #[serde(default = "limit_default")]
    pub limit: u32,
    /// SLA: the page after this cursor (a previous page's `timers_next_page`).
    #[serde(skip)]
    pub page: Option<crate::tables::Cursor>,
    /// SLA: list only live timers breached or past their warning threshold.
    #[serde(default)]
    pub at_risk: bool,
}

fn limit_default() -> u32 {
    ReportQuery::LIMIT_DEFAULT
}

impl Default for ReportQuery {
    fn default() -> ReportQuery {
        ReportQuery {
            agent: None,
            team: None,
            from: None,
            to: None,
            period: Granularity::default(),
            limit: ReportQuery::LIMIT_DEFAULT,
            page: None,
            at_risk: false,
        }
    }
}

impl ReportQuery {
    /// The parameters a report query accepts.
    pub const PARAMS: &'static [&'static str] = &[
        "agent", "team", "from", "to", "period", "limit", "page", "at_risk",
    ];
    /// Timers per page of the SLA report when no `limit` is given.
    pub const LIMIT_DEFAULT: u32 = 1_000;
    /// The most timers one page may hold: a reply stays a few megabytes at most.
    pub const LIMIT_MAX: u32 = 10_000;

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
                "limit" => {
                    let limit: u32 =
                        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
                    if !(1..=Self::LIMIT_MAX).contains(&limit) {
                        return Err(bad(format!("must be 1..={}", Self::LIMIT_MAX)));
                    }
                    query.limit = limit;
                }
                "page" => {
                    let text: Option<String> =
                        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
                    query.page = text
                        .map(|t| crate::tables::Cursor::decode(&t))
                        .transpose()
                        .map_err(bad)?;
                }
                "at_risk" => {
                    query.at_risk =
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

    /// The selected days as a span of Unix seconds.
    pub fn span(&self) -> crate::tables::Span {
        crate::tables::Span {
            from: self.from.map(|d| i64::from(day_of_date(d)) * 86_400),
            to: self.to.map(|d| (i64::from(day_of_date(d)) + 1) * 86_400),
        }
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
pub fn legacy_sla_report(model: &SlaModel, query: &ReportQuery, now: Timestamp) -> Value {
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
pub fn legacy_satisfaction_report(model: &SatisfactionModel, query: &ReportQuery) -> Value {
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
    render_satisfaction(
        groups
            .into_iter()
            .map(|((by, k, p), r)| ((by, k.to_owned(), p), r))
            .collect(),
        callbacks
            .into_iter()
            .map(|((by, k, p), c)| ((by, k.to_owned(), p), c))
            .collect(),
        query,
    )
}

fn render_satisfaction(
    groups: BTreeMap<(By, String, String), Ratings>,
    callbacks: BTreeMap<(By, String, String), Callbacks>,
    query: &ReportQuery,
) -> Value {
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
pub fn legacy_performance_report(
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

// ---------------------------------------------------------------------------------------
// The reports from the tables.

use std::collections::HashMap;

use crate::tables::read::{AnyRow, Dated, Listed, TimerFilter, TimerPage};
use crate::tables::{Cursor, Folder, TableError, TableStore, TicketWork};

/// Period labels by day, computed once per day a report meets.
#[derive(Default)]
struct Labels {
    period: Granularity,
    by_day: HashMap<i32, String>,
}

impl Labels {
    fn new(period: Granularity) -> Labels {
        Labels {
            period,
            by_day: HashMap::new(),
        }
    }

    fn of(&mut self, at: i64) -> String {
        let day = day_of(at);
        let period = self.period;
        self.by_day
            .entry(day)
            .or_insert_with(|| period.label(day))
            .clone()
    }
}

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
            .find(|t| crate::sla::target_name(t.target) == row.target && t.start == row.started_at)
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

/// The satisfaction report from the tables: the rows of the selected days (tickets opened,
/// assignments begun, resolutions, ratings), streamed and counted into groups by agent,
/// team, category, grade and channel per period. Memory: the groups, not the rows.
pub async fn satisfaction_report(
    store: &dyn TableStore,
    query: &ReportQuery,
) -> Result<Value, TableError> {
    let span = query.span();
    let keep = |by: By, key: &str| match by {
        By::Agent => query.agent.as_deref().is_none_or(|a| key == a) && query.team.is_none(),
        By::Team => query.team.as_deref().is_none_or(|x| key == x) && query.agent.is_none(),
        _ => query.agent.is_none() && query.team.is_none(),
    };
    let mut labels = Labels::new(query.period);
    let mut groups: BTreeMap<(By, String, String), Ratings> = BTreeMap::new();
    let mut callbacks: BTreeMap<(By, String, String), Callbacks> = BTreeMap::new();
    let mut bump = |by: By, key: &str, at: i64, labels: &mut Labels, f: &dyn Fn(&mut Ratings)| {
        if keep(by, key) {
            f(groups
                .entry((by, key.to_owned(), labels.of(at)))
                .or_default());
        }
    };
    let complaint = |category: &str| u32::from(category == "complaint");
    for dated in [
        Dated::TicketOpened,
        Dated::AssignmentStarted,
        Dated::Resolved,
        Dated::Rated,
    ] {
        let mut on_row = |row: AnyRow| match row {
            AnyRow::Ticket(t) => {
                let c = complaint(&t.category);
                for (by, key) in [
                    (By::Category, &t.category),
                    (By::Grade, &t.grade),
                    (By::Channel, &t.channel),
                ] {
                    bump(by, key, t.opened_at, &mut labels, &|r| {
                        r.tickets += 1;
                        r.complaints += c;
                    });
                }
            }
            AnyRow::Assignment(a) if a.started_by == "assigned" => {
                let c = complaint(&a.category);
                for (by, key) in [(By::Agent, &a.agent_id), (By::Team, &a.team)] {
                    bump(by, key, a.from_at, &mut labels, &|r| {
                        r.tickets += 1;
                        r.complaints += c;
                    });
                }
            }
            AnyRow::Resolution(r) => {
                let groups = [
                    Some((By::Agent, &r.resolved_by)),
                    r.team.as_ref().map(|t| (By::Team, t)),
                    Some((By::Category, &r.category)),
                    Some((By::Grade, &r.grade)),
                    Some((By::Channel, &r.channel)),
                ];
                for (by, key) in groups.into_iter().flatten() {
                    bump(by, key, r.resolved_at, &mut labels, &|g| g.resolutions += 1);
                }
            }
            AnyRow::Rating(r) => {
                let groups = [
                    Some((By::Category, &r.category)),
                    Some((By::Grade, &r.grade)),
                    Some((By::Channel, &r.channel)),
                    r.agent_id.as_ref().map(|a| (By::Agent, a)),
                    r.team.as_ref().map(|t| (By::Team, t)),
                ];
                let score = u32::from(r.score);
                for (by, key) in groups.into_iter().flatten() {
                    if r.source == "survey" {
                        bump(by, key, r.rated_at, &mut labels, &|g| {
                            g.ratings += 1;
                            g.score_sum += score;
                            g.distribution[(score - 1) as usize] += 1;
                        });
                    } else if keep(by, key) {
                        let c = callbacks
                            .entry((by, key.clone(), labels.of(r.rated_at)))
                            .or_default();
                        c.callbacks += 1;
                        c.score_sum += score;
                        if let (Some(a), Some(b), Some(q), Some(o)) =
                            (r.recognition, r.efficiency, r.quality, r.overall)
                        {
                            c.with_dimensions += 1;
                            for (sum, v) in c.dimension_sums.iter_mut().zip([a, b, q, o]) {
                                *sum += u32::from(v);
                            }
                        }
                    }
                }
            }
            _ => {}
        };
        store.scan(dated, span, &mut on_row).await?;
    }
    Ok(render_satisfaction(groups, callbacks, query))
}

/// The performance report from the tables: assignments begun and ended by escalation,
/// resolutions and reopenings, closures, survey ratings and fulfilled timers of the selected
/// days, credited as docs/domain.md says (see `tables/rows.rs` for who each row credits);
/// open load now from the open tickets. Memory: the groups and their lists of minutes.
pub async fn performance_report(
    store: &dyn TableStore,
    query: &ReportQuery,
    weights: &ScoreWeights,
) -> Result<Value, TableError> {
    let span = query.span();
    let registered: HashMap<String, String> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.agent_id, a.team))
        .collect();
    let team_of = |agent: &str| registered.get(agent).map_or("", String::as_str);
    let mut labels = Labels::new(query.period);
    let mut agents: BTreeMap<(String, String), Perf> = BTreeMap::new();
    let mut teams: BTreeMap<(String, String), Perf> = BTreeMap::new();
    let mut bump = |agent: Option<&str>,
                    team: Option<&str>,
                    at: i64,
                    labels: &mut Labels,
                    f: &dyn Fn(&mut Perf)| {
        if let Some(a) = agent {
            let skip = query.agent.as_deref().is_some_and(|q| q != a)
                || query.team.as_deref().is_some_and(|t| t != team_of(a));
            if !skip {
                f(agents.entry((a.to_owned(), labels.of(at))).or_default());
            }
        }
        if let Some(t) = team {
            if query.agent.is_none() && query.team.as_deref().is_none_or(|q| q == t) {
                f(teams.entry((t.to_owned(), labels.of(at))).or_default());
            }
        }
    };
    for dated in [
        Dated::AssignmentStarted,
        Dated::AssignmentEnded,
        Dated::Resolved,
        Dated::Reopened,
        Dated::TicketClosed,
        Dated::Rated,
        Dated::TimerFulfilled,
    ] {
        let mut on_row = |row: AnyRow| match (dated, row) {
            (Dated::AssignmentStarted, AnyRow::Assignment(a)) if a.started_by == "assigned" => {
                bump(
                    Some(&a.agent_id),
                    Some(&a.team),
                    a.from_at,
                    &mut labels,
                    &|p| p.assigned += 1,
                );
            }
            (Dated::AssignmentEnded, AnyRow::Assignment(a))
                if a.ended_by.as_deref() == Some("escalated") =>
            {
                let at = a.until_at.unwrap_or(a.from_at);
                bump(Some(&a.agent_id), Some(&a.team), at, &mut labels, &|p| {
                    p.escalated += 1
                });
            }
            (Dated::Resolved, AnyRow::Resolution(r)) => {
                let one_touch = u32::from(r.one_touch);
                bump(
                    Some(&r.resolved_by),
                    r.team.as_deref(),
                    r.resolved_at,
                    &mut labels,
                    &|p| {
                        p.resolved += 1;
                        p.one_touch += one_touch;
                    },
                );
            }
            (Dated::Reopened, AnyRow::Resolution(r)) => {
                let at = r.reopened_at.unwrap_or(r.resolved_at);
                bump(
                    Some(&r.resolved_by),
                    r.team.as_deref(),
                    at,
                    &mut labels,
                    &|p| p.reopened += 1,
                );
            }
            (Dated::TicketClosed, AnyRow::Ticket(t)) => {
                let at = t.closed_at.unwrap_or(t.opened_at);
                bump(
                    t.assignee.as_deref(),
                    t.team.as_deref(),
                    at,
                    &mut labels,
                    &|p| p.closed += 1,
                );
            }
            (Dated::Rated, AnyRow::Rating(r)) if r.source == "survey" => {
                let score = u32::from(r.score);
                bump(
                    r.agent_id.as_deref(),
                    r.team.as_deref(),
                    r.rated_at,
                    &mut labels,
                    &|p| {
                        p.ratings += 1;
                        p.score_sum += score;
                        p.justified_complaints += u32::from(score <= 2);
                        p.excellent_ratings += u32::from(score == 5);
                    },
                );
            }
            (Dated::TimerFulfilled, AnyRow::Timer(t)) => {
                let Some(met) = t.met else { return };
                let i = match t.target.as_str() {
                    "first_response" => 0,
                    "next_response" => 1,
                    _ => 2,
                };
                let minutes = t.business_minutes_used.unwrap_or(0);
                let at = t.fulfilled_at.unwrap_or(t.started_at);
                bump(
                    t.agent_id.as_deref(),
                    t.team.as_deref(),
                    at,
                    &mut labels,
                    &|p| {
                        p.sla[i][usize::from(!met)] += 1;
                        match i {
                            0 => p.first_response_minutes.push(minutes),
                            2 => p.resolution_minutes.push(minutes),
                            _ => {}
                        }
                    },
                );
            }
            _ => {}
        };
        store.scan(dated, span, &mut on_row).await?;
    }
    let open: HashMap<String, i64> = store.open_load().await?.into_iter().collect();
    let open_now = |agent: &str| open.get(agent).copied().unwrap_or(0);
    let mut team_load: BTreeMap<&str, i64> = BTreeMap::new();
    for (agent, team) in &registered {
        *team_load.entry(team.as_str()).or_default() += open_now(agent);
    }
    let agent_rows: Vec<Value> = agents
        .into_iter()
        .map(|((agent, period), p)| {
            let mut row = serde_json::Map::new();
            row.insert("agent_id".into(), json!(agent));
            row.insert("team".into(), json!(team_of(&agent)));
            row.insert("period".into(), json!(period));
            let load = if registered.contains_key(&agent) {
                open_now(&agent)
            } else {
                0
            };
            row.extend(perf_row(&p, load, weights));
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
                team_load.get(team.as_str()).copied().unwrap_or(0),
                weights,
            ));
            Value::Object(row)
        })
        .collect();
    Ok(json!({
        "report": "performance",
        "period": query.period,
        "agents": agent_rows,
        "teams": team_rows,
    }))
}
