//! What every report is asked with: [`ReportQuery`] (the filters, from a query's parameters)
//! and [`ScoreWeights`] (the scorecard's default weights).

use jiff::civil::Date;
use serde::Deserialize;
use serde_json::Value;

use crate::period::{day_of_date, Granularity};

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
    /// The form of the dates `from` and `to`, as the schemas state it: `YYYY-MM-DD` and
    /// nothing else (the date parser would also read `20261026` or `2026-10-26T10:00`).
    pub const DATE_PATTERN: &'static str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
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
                "from" => query.from = date_param(value).map_err(bad)?,
                "to" => query.to = date_param(value).map_err(bad)?,
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

    /// The selected days as a span of Unix seconds.
    pub fn span(&self) -> crate::tables::Span {
        crate::tables::Span {
            from: self.from.map(|d| i64::from(day_of_date(d)) * 86_400),
            to: self.to.map(|d| (i64::from(day_of_date(d)) + 1) * 86_400),
        }
    }
}

/// A date parameter: `null`, or a valid date written as [`ReportQuery::DATE_PATTERN`] says.
fn date_param(value: &Value) -> Result<Option<Date>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text,
        other => return Err(format!("expected a date, YYYY-MM-DD; got {other}")),
    };
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(format!("`{text}` is not a date: expected YYYY-MM-DD"));
    }
    text.parse()
        .map(Some)
        .map_err(|e| format!("`{text}` is not a date: {e}"))
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
        for bad in [
            "yesterday",
            "20261101",
            "2026-11-01T10:00",
            "+002026-11-01",
            "2026-02-30",
        ] {
            let bad = serde_json::json!({"to": bad});
            assert_eq!(
                ReportQuery::from_params(bad.as_object().unwrap())
                    .unwrap_err()
                    .0,
                "/to"
            );
        }
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
}
