//! The staff performance report: per agent and per team, per period: assigned, resolved,
//! closed, reopened, escalated, first-response and resolution times in business minutes
//! (medians and percentiles), targets met per SLA target, one-touch resolutions, survey
//! ratings and justified complaints; and each agent's open load now.
//!
//! Attribution: `assigned` to the agent receiving the ticket; `resolved`, resolution time and
//! one-touch to the resolver; first-response time and each target met or missed to the
//! assignee when the timer was fulfilled (the resolver when there was none); `closed` to the
//! assignee; `reopened` to the agent who resolved it last; `escalated` to the agent it was
//! escalated away from; ratings to the rated agent; a justified complaint to each member of
//! staff the standing ruling on it charges (`complaint_charges`, dated by the ruling; a
//! superseded ruling no longer counts). Teams get what their agents get, by the ticket's
//! team at the time (for a complaint, the charged agent's team at the ruling).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::query::{ReportQuery, ScoreWeights};
use super::values::{percent, round, Labels};
use crate::clock::{target_index, TARGETS};
use crate::period::day_of_date;
use crate::tables::read::{AnyRow, Dated};
use crate::tables::{ScorecardRow, TableError, TableStore};

/// One agent's or team's figures on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perf {
    pub assigned: u32,
    pub resolved: u32,
    pub closed: u32,
    pub reopened: u32,
    pub escalated: u32,
    /// Business minutes to the first response, one per ticket answered.
    pub first_response_minutes: Vec<u32>,
    /// Business minutes to resolution (clock off while waiting for the customer).
    pub resolution_minutes: Vec<u32>,
    /// Per target (first response, next response, resolution): met, missed.
    pub sla: [[u32; 2]; 3],
    pub one_touch: u32,
    pub ratings: u32,
    pub score_sum: u32,
    pub justified_complaints: u32,
    pub excellent_ratings: u32,
    /// Quality-inspection callbacks (`source: callback`) and recorded inspections
    /// (`inspections`, their `overall`) of the agent's work, and the sum of their scores: the
    /// inspection score of the scorecard.
    #[serde(default)]
    pub inspections: u32,
    #[serde(default)]
    pub inspection_sum: u32,
    /// Follow-ups owned that fell due, recorded by their due time, and late (recorded after
    /// it, or overdue unrecorded); visits the agent entered later than the week rule.
    #[serde(default)]
    pub follow_ups_due: u32,
    #[serde(default)]
    pub follow_ups_in_time: u32,
    #[serde(default)]
    pub follow_ups_late: u32,
    #[serde(default)]
    pub visits_entered_late: u32,
}

impl Perf {
    pub fn add(&mut self, o: &Perf) {
        self.assigned += o.assigned;
        self.resolved += o.resolved;
        self.closed += o.closed;
        self.reopened += o.reopened;
        self.escalated += o.escalated;
        self.first_response_minutes
            .extend_from_slice(&o.first_response_minutes);
        self.resolution_minutes
            .extend_from_slice(&o.resolution_minutes);
        for (a, b) in self.sla.iter_mut().zip(o.sla) {
            a[0] += b[0];
            a[1] += b[1];
        }
        self.one_touch += o.one_touch;
        self.ratings += o.ratings;
        self.score_sum += o.score_sum;
        self.justified_complaints += o.justified_complaints;
        self.excellent_ratings += o.excellent_ratings;
        self.inspections += o.inspections;
        self.inspection_sum += o.inspection_sum;
        self.follow_ups_due += o.follow_ups_due;
        self.follow_ups_in_time += o.follow_ups_in_time;
        self.follow_ups_late += o.follow_ups_late;
        self.visits_entered_late += o.visits_entered_late;
    }
}

/// Median, 90th percentile (nearest rank) and mean of a list of minutes.
pub(crate) fn stats(values: &[u32]) -> Value {
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
    explain(p, w).map(|(score, _)| score)
}

/// The score and how it was made: each part's value (0..100, the mean of the figures it is
/// made of that exist), its weight and the points it gives; the bonus and deduction items,
/// their rate, cap and points. `None` with nothing to score.
pub fn explain(p: &Perf, w: &ScoreWeights) -> Option<(f64, Value)> {
    let pct = |a: u32, b: u32| (b > 0).then(|| (f64::from(a) * 100.0 / f64::from(b)).min(100.0));
    let mean = |xs: &[Option<f64>]| {
        let got: Vec<f64> = xs.iter().flatten().copied().collect();
        (!got.is_empty()).then(|| got.iter().sum::<f64>() / got.len() as f64)
    };
    let (met, total) = p
        .sla
        .iter()
        .fold((0, 0), |(m, t), [a, b]| (m + a, t + a + b));
    let sla = pct(met, total);
    let satisfaction =
        (p.ratings > 0).then(|| f64::from(p.score_sum) * 20.0 / f64::from(p.ratings));
    let inspection =
        (p.inspections > 0).then(|| f64::from(p.inspection_sum) * 20.0 / f64::from(p.inspections));
    let results = mean(&[sla, satisfaction, inspection]);
    let resolution_rate = pct(p.resolved, p.assigned);
    let one_touch_rate = pct(p.one_touch, p.resolved);
    let follow_up_rate = pct(p.follow_ups_in_time, p.follow_ups_due);
    let basic = mean(&[resolution_rate, one_touch_rate, follow_up_rate]);
    let reopen_rate = pct(p.reopened, p.resolved);
    let discipline = reopen_rate.map(|r| 100.0 - r);
    if results.is_none() && basic.is_none() && discipline.is_none() {
        return None;
    }
    let bonus =
        (f64::from(p.excellent_ratings) * w.bonus_per_excellent_rating).min(w.bonus_cap_points);
    let deduction = (f64::from(p.justified_complaints) * w.deduction_per_justified_complaint)
        .min(w.deduction_cap_points);
    // A part with no figure counts as nothing (results, basic) or as spotless (discipline,
    // which only loses points for reopened work).
    let results_points = results.unwrap_or(0.0) * w.results_percent / 100.0;
    let basic_points = basic.unwrap_or(0.0) * w.basic_percent / 100.0;
    let discipline_points = discipline.unwrap_or(100.0) * w.discipline_percent / 100.0;
    let score = round(
        (results_points + basic_points + discipline_points + bonus - deduction).max(0.0),
        1,
    );
    let r = |x: Option<f64>| x.map(|x| round(x, 1));
    let part = |value: Option<f64>, weight: f64, points: f64, of: Value| json!({"value": r(value), "weight_percent": weight, "points": round(points, 2), "of": of});
    let explained = json!({
        "results": part(results, w.results_percent, results_points, json!({
            "sla_percent": r(sla), "satisfaction": r(satisfaction), "inspection": r(inspection),
        })),
        "basic": part(basic, w.basic_percent, basic_points, json!({
            "resolution_rate": r(resolution_rate), "one_touch_rate": r(one_touch_rate),
            "follow_ups_in_time_rate": r(follow_up_rate),
        })),
        "discipline": part(discipline, w.discipline_percent, discipline_points, json!({
            "reopen_rate": r(reopen_rate),
        })),
        "bonus": {
            "items": p.excellent_ratings, "per_item": w.bonus_per_excellent_rating,
            "cap": w.bonus_cap_points, "points": round(bonus, 2),
        },
        "deduction": {
            "items": p.justified_complaints, "per_item": w.deduction_per_justified_complaint,
            "cap": w.deduction_cap_points, "points": round(deduction, 2),
        },
    });
    Some((score, explained))
}

/// The scorecards defined in the log, and the configured weights for a team and day no
/// scorecard covers.
pub struct Scorecards {
    /// (team, first day in force, weights, the definition as the report names it).
    defined: Vec<(String, i32, ScoreWeights, Value)>,
    fallback: ScoreWeights,
}

impl Scorecards {
    pub fn new(rows: Vec<ScorecardRow>, fallback: &ScoreWeights) -> Scorecards {
        let defined = rows
            .into_iter()
            .filter_map(|r| {
                let day = day_of_date(r.effective_from.parse().ok()?);
                let source = json!({
                    "team": (!r.team.is_empty()).then_some(r.team.as_str()),
                    "effective_from": r.effective_from,
                });
                let weights = ScoreWeights {
                    results_percent: f64::from(r.results_percent),
                    basic_percent: f64::from(r.basic_percent),
                    discipline_percent: f64::from(r.discipline_percent),
                    bonus_per_excellent_rating: r.bonus_per_excellent_rating,
                    bonus_cap_points: r.bonus_cap_points,
                    deduction_per_justified_complaint: r.deduction_per_justified_complaint,
                    deduction_cap_points: r.deduction_cap_points,
                };
                Some((r.team, day, weights, source))
            })
            .collect();
        Scorecards {
            defined,
            fallback: fallback.clone(),
        }
    }

    /// The weights in force for `team` on `day`: the team's latest scorecard from that day
    /// or before, else the organisation's, else the configured weights; and which it was.
    pub fn pick(&self, team: &str, day: Option<i32>) -> (&ScoreWeights, Value) {
        let latest = |of: &str| {
            self.defined
                .iter()
                .filter(|(t, from, ..)| t == of && day.is_some_and(|d| *from <= d))
                .max_by_key(|(_, from, ..)| *from)
        };
        match latest(team).or_else(|| latest("")) {
            Some((_, _, weights, source)) => (weights, source.clone()),
            None => (&self.fallback, json!("configured")),
        }
    }
}

fn perf_row(
    p: &Perf,
    open_now: i64,
    (w, scorecard): (&ScoreWeights, Value),
) -> serde_json::Map<String, Value> {
    let (met, total) = p.sla.iter().fold((0u64, 0u64), |(m, t), [a, b]| {
        (m + u64::from(*a), t + u64::from(a + b))
    });
    let explained = explain(p, w);
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
        "follow_ups_due": p.follow_ups_due,
        "follow_ups_in_time": p.follow_ups_in_time,
        "follow_ups_late": p.follow_ups_late,
        "visits_entered_late": p.visits_entered_late,
        "inspections": p.inspections,
        "inspection_mean": (p.inspections > 0).then(|| round(f64::from(p.inspection_sum) / f64::from(p.inspections), 2)),
        "justified_complaints": p.justified_complaints,
        "open_now": open_now,
        "score": explained.as_ref().map(|(score, _)| *score),
        "score_parts": explained.map(|(_, parts)| parts),
        "scorecard": scorecard,
    });
    match json {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
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
        Dated::Charged,
        Dated::FollowUpDue,
        Dated::Inspected,
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
                        p.excellent_ratings += u32::from(score == 5);
                    },
                );
            }
            (Dated::Rated, AnyRow::Rating(r)) if r.source == "callback" => {
                let score = u32::from(r.score);
                bump(
                    r.agent_id.as_deref(),
                    r.team.as_deref(),
                    r.rated_at,
                    &mut labels,
                    &|p| {
                        p.inspections += 1;
                        p.inspection_sum += score;
                    },
                );
            }
            (Dated::Inspected, AnyRow::Inspection(i)) => {
                let overall = u32::from(i.overall);
                bump(
                    Some(&i.agent_id),
                    Some(&i.team),
                    i.inspected_at,
                    &mut labels,
                    &|p| {
                        p.inspections += 1;
                        p.inspection_sum += overall;
                    },
                );
            }
            (Dated::FollowUpDue, AnyRow::FollowUp(f)) => {
                let in_time = u32::from(f.in_time == Some(true));
                let late = u32::from(
                    f.in_time == Some(false) || (f.recorded_at.is_none() && f.overdue_at.is_some()),
                );
                bump(Some(&f.owner), Some(&f.team), f.due_by, &mut labels, &|p| {
                    p.follow_ups_due += 1;
                    p.follow_ups_in_time += in_time;
                    p.follow_ups_late += late;
                });
                if let (Some(true), Some(recorder)) = (f.entered_late, f.recorded_by.as_deref()) {
                    let team = registered.get(recorder).map(String::as_str);
                    bump(Some(recorder), team, f.due_by, &mut labels, &|p| {
                        p.visits_entered_late += 1
                    });
                }
            }
            (Dated::Charged, AnyRow::Charge(c)) if c.superseded_at.is_none() => {
                bump(
                    Some(&c.agent_id),
                    Some(&c.team),
                    c.ruled_at,
                    &mut labels,
                    &|p| p.justified_complaints += 1,
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
    let scorecards = Scorecards::new(store.scorecards().await?, weights);
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
            let day = labels.scoring_day(&period);
            row.extend(perf_row(&p, load, scorecards.pick(team_of(&agent), day)));
            Value::Object(row)
        })
        .collect();
    let team_rows: Vec<Value> = teams
        .into_iter()
        .map(|((team, period), p)| {
            let mut row = serde_json::Map::new();
            row.insert("team".into(), json!(team));
            row.insert("period".into(), json!(period));
            let day = labels.scoring_day(&period);
            row.extend(perf_row(
                &p,
                team_load.get(team.as_str()).copied().unwrap_or(0),
                scorecards.pick(&team, day),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_scorecard_in_force_on_the_day_and_its_explanation() {
        use crate::period::{day_of_date, Granularity};
        let row = |team: &str, from: &str, results: u8| ScorecardRow {
            team: team.into(),
            effective_from: from.into(),
            results_percent: results,
            basic_percent: 100 - results,
            discipline_percent: 0,
            bonus_per_excellent_rating: 1.0,
            bonus_cap_points: 10.0,
            deduction_per_justified_complaint: 5.0,
            deduction_cap_points: 10.0,
            defined_at: 0,
        };
        let cards = Scorecards::new(
            vec![row("", "2026-11-01", 60), row("alpha", "2026-12-01", 70)],
            &ScoreWeights::default(),
        );
        let day = |d: &str| Some(day_of_date(d.parse().unwrap()));
        assert_eq!(
            cards.pick("alpha", day("2026-10-31")).1,
            json!("configured")
        );
        assert_eq!(
            cards.pick("alpha", day("2026-11-30")).0.results_percent,
            60.0
        );
        assert_eq!(
            cards.pick("alpha", day("2026-12-01")).0.results_percent,
            70.0
        );
        assert_eq!(
            cards.pick("beta", day("2026-12-01")).0.results_percent,
            60.0
        );
        assert_eq!(
            cards.pick("alpha", day("2026-12-01")).1,
            json!({"team": "alpha", "effective_from": "2026-12-01"})
        );
        // Weeks start on Monday, months on the first.
        let thu = day_of_date("2026-11-26".parse().unwrap());
        assert_eq!(Granularity::Week.start(thu), thu - 3);
        assert_eq!(Granularity::Month.start(thu), thu - 25);

        // SLA 100, satisfaction 80, inspection 60: results 80; basic 100; discipline 100.
        let p = Perf {
            assigned: 4,
            resolved: 4,
            one_touch: 4,
            sla: [[4, 0], [0, 0], [0, 0]],
            ratings: 2,
            score_sum: 8,
            inspections: 1,
            inspection_sum: 3,
            excellent_ratings: 3,
            justified_complaints: 3,
            ..Perf::default()
        };
        let (w, _) = cards.pick("alpha", day("2026-12-02"));
        let (score, parts) = explain(&p, w).unwrap();
        // 80 x 70 % + 100 x 30 % + 3 x 1 bonus - min(3 x 5, 10) deduction.
        assert_eq!(score, 56.0 + 30.0 + 3.0 - 10.0);
        assert_eq!(parts["results"]["value"], 80.0);
        assert_eq!(parts["results"]["of"]["inspection"], 60.0);
        assert_eq!(parts["results"]["points"], 56.0);
        assert_eq!(parts["deduction"]["points"], 10.0);
        assert_eq!(parts["deduction"]["items"], 3);
    }
}
