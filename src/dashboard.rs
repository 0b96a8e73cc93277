//! The supervisor's dashboard: one self-contained HTML page of charts drawn from the reports
//! (`closeloop report dashboard --html FILE`, and `GET /` of `serve --http`).
//!
//! [`gather`] reads the reports a page needs through `ReadModels::report`, with the filters
//! of one [`ReportQuery`] the caller has already restricted to what its reader may see (every
//! query it derives keeps that query's `agent` and `team`); [`render`] is pure: it turns what
//! was gathered into HTML with the charts as inline SVG, so the page needs no network, no
//! script and no font to be read, and a mail attachment or an archived copy shows exactly what
//! was served. Every text that comes from the data (names of agents, teams, grades) is
//! HTML-escaped, since it comes from outside.
//!
//! The page holds:
//! - SLA compliance per grade over time, one line chart per target: the SLA report has no
//!   period of its own, so it is asked once per period, for the timers started in it;
//! - the at-risk list: live timers breached or past their warning (at most [`AT_RISK_MAX`]);
//! - satisfaction per team: the mean survey score per period, and the distribution of scores
//!   1 to 5 over the whole window;
//! - the performance scorecard per agent over the whole window: the points of each part
//!   (results, basic service work, daily discipline, bonus) and the deduction.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use closeloop_projections::models::ReadModels;
use closeloop_projections::period::{day_of_date, Granularity};
use closeloop_projections::report::ReportQuery;
use closeloop_projections::tables::TableError;
use jiff::civil::Date;
use jiff::Timestamp;
use serde_json::Value;

/// The most periods one page charts (the most recent ones): a page stays small and a
/// request asks the SLA report at most this many times.
pub const PERIODS_MAX: usize = 60;
/// The most at-risk timers listed.
pub const AT_RISK_MAX: u32 = 50;
/// The most agents on the scorecard (the best scores first).
pub const AGENTS_MAX: usize = 300;
/// The longest window, in days, whose periods are listed from its bounds.
const WINDOW_DAYS_MAX: i32 = 3_660;

/// Colours of the series, in order (chosen to stay apart for common colour blindness).
const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
/// Colours of the scores 1 to 5, from bad to good.
const SCORE_COLOURS: [&str; 5] = ["#d73027", "#fc8d59", "#fee08b", "#91cf60", "#1a9850"];
/// Colours of the scorecard's parts.
const PART_COLOURS: [(&str, &str); 4] = [
    ("results", "#1f77b4"),
    ("basic", "#2ca02c"),
    ("discipline", "#9467bd"),
    ("bonus", "#bcbd22"),
];

/// A named line of a chart: one value per period, none where nothing was measured.
pub type Series = (String, Vec<Option<f64>>);

/// Everything one page shows.
#[derive(Debug, Default)]
pub struct Dashboard {
    /// The report time.
    pub as_of: String,
    /// Whose rows: `all`, `team T` or `agent A`.
    pub scope: String,
    pub period: String,
    /// The periods charted, oldest first.
    pub periods: Vec<String>,
    /// SLA compliance percent: target -> grade -> one value per period (none without timers).
    pub sla: BTreeMap<String, Vec<Series>>,
    /// The at-risk timers (the SLA report's rows) and how many there are in all.
    pub at_risk: Vec<Value>,
    pub at_risk_total: u64,
    /// Per team: mean survey score per period, and the count of each score 1..=5.
    pub satisfaction: Vec<TeamSatisfaction>,
    /// Per agent, the best scores first.
    pub scorecard: Vec<AgentScore>,
    /// Projectors that lag or failed: the page says its figures may be stale.
    pub stale: Vec<String>,
}

#[derive(Debug, Default)]
pub struct TeamSatisfaction {
    pub team: String,
    pub means: Vec<Option<f64>>,
    pub distribution: [u64; 5],
}

#[derive(Debug, Default)]
pub struct AgentScore {
    pub agent: String,
    pub team: String,
    pub score: Option<f64>,
    /// Points of results, basic, discipline and bonus (as [`PART_COLOURS`]).
    pub parts: [f64; 4],
    pub deduction: f64,
    pub scorecard: String,
}

/// Reads what the page shows. `query` is already restricted to what the reader may see; its
/// `period` groups the charts over time and its `from`/`to` bound the window.
pub async fn gather(
    models: &ReadModels,
    query: &ReportQuery,
    now: Timestamp,
) -> Result<Dashboard, TableError> {
    let granularity = query.period;
    let ask = |name: &'static str, q: ReportQuery| async move {
        Ok::<Value, TableError>(
            models
                .report(name, &q, now)
                .await?
                .expect("a report of REPORTS"),
        )
    };
    let satisfaction = ask("satisfaction", query.clone()).await?;
    let periods = periods(query, &satisfaction);

    let mut sla: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>> = BTreeMap::new();
    let mut grades: Vec<String> = Vec::new();
    for (i, label) in periods.iter().enumerate() {
        let (from, to) = bounds(granularity, label);
        let mut q = query.clone();
        q.from = latest(from, query.from);
        q.to = earliest(to, query.to);
        q.limit = 1;
        q.page = None;
        q.at_risk = false;
        let report = ask("sla", q).await?;
        for row in rows(&report, "compliance") {
            let (Some(grade), Some(target)) = (row["grade"].as_str(), row["target"].as_str())
            else {
                continue;
            };
            if !grades.iter().any(|g| g == grade) {
                grades.push(grade.to_owned());
            }
            let series = sla
                .entry(target.to_owned())
                .or_default()
                .entry(grade.to_owned())
                .or_insert_with(|| vec![None; periods.len()]);
            series[i] = row["percent"].as_f64();
        }
    }
    // Grades in the order the report lists them (best customers first), not by name.
    let sla = sla
        .into_iter()
        .map(|(target, mut by_grade)| {
            let series = grades
                .iter()
                .filter_map(|g| by_grade.remove(g).map(|s| (g.clone(), s)))
                .collect();
            (target, series)
        })
        .collect();

    let mut risky = query.clone();
    risky.at_risk = true;
    risky.limit = AT_RISK_MAX;
    risky.page = None;
    let at_risk = ask("sla", risky).await?;

    let mut whole = query.clone();
    whole.period = Granularity::Total;
    let performance = ask("performance", whole).await?;

    let mut stale = Vec::new();
    for p in rows(&performance, "projectors") {
        if p["lag"].as_u64().unwrap_or(0) > 0 || !p["error"].is_null() {
            stale.push(format!(
                "projector {} at position {} of {}{}",
                text(&p["name"]),
                text(&p["position"]),
                text(&p["head"]),
                p["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(Dashboard {
        as_of: now.to_string(),
        scope: match (&query.agent, &query.team) {
            (Some(agent), _) => format!("agent {agent}"),
            (None, Some(team)) => format!("team {team}"),
            (None, None) => "all teams".to_owned(),
        },
        period: text(&satisfaction["period"]),
        satisfaction: team_satisfaction(&satisfaction, &periods),
        periods,
        sla,
        at_risk_total: at_risk["at_risk_timers"].as_u64().unwrap_or(0),
        at_risk: rows(&at_risk, "timers")
            .iter()
            .filter(|t| t["at_risk"] == true)
            .cloned()
            .collect(),
        scorecard: scorecard(&performance),
        stale,
    })
}

fn rows<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn latest(a: Option<Date>, b: Option<Date>) -> Option<Date> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn earliest(a: Option<Date>, b: Option<Date>) -> Option<Date> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The periods to chart: every period of the window when both its ends are given, else the
/// periods the satisfaction report found tickets in; the latest [`PERIODS_MAX`].
fn periods(query: &ReportQuery, satisfaction: &Value) -> Vec<String> {
    let mut labels: Vec<String> = match (query.from, query.to) {
        (Some(from), Some(to)) if query.period != Granularity::Total => {
            let (first, last) = (day_of_date(from), day_of_date(to));
            let first = first.max(last - WINDOW_DAYS_MAX);
            let mut labels: Vec<String> = Vec::new();
            for day in first..=last {
                let label = query.period.label(day);
                if labels.last() != Some(&label) {
                    labels.push(label);
                }
            }
            labels
        }
        _ => {
            let mut labels: Vec<String> = rows(satisfaction, "groups")
                .iter()
                .filter_map(|g| g["period"].as_str().map(str::to_owned))
                .collect();
            labels.sort();
            labels.dedup();
            labels
        }
    };
    if labels.len() > PERIODS_MAX {
        labels.drain(..labels.len() - PERIODS_MAX);
    }
    labels
}

/// The first and last day of the period `label` names (`Granularity::label`'s forms);
/// `total` (or a label not understood) is unbounded.
pub fn bounds(granularity: Granularity, label: &str) -> (Option<Date>, Option<Date>) {
    let parsed = match granularity {
        Granularity::Day => label.parse::<Date>().ok().map(|d| (d, d)),
        Granularity::Week => label.split_once("-W").and_then(|(year, week)| {
            let monday = jiff::civil::ISOWeekDate::new(
                year.parse().ok()?,
                week.parse().ok()?,
                jiff::civil::Weekday::Monday,
            )
            .ok()?
            .date();
            Some((monday, monday.checked_add(jiff::Span::new().days(6)).ok()?))
        }),
        Granularity::Month => label.split_once('-').and_then(|(year, month)| {
            let first = Date::new(year.parse().ok()?, month.parse().ok()?, 1).ok()?;
            Some((first, first.last_of_month()))
        }),
        Granularity::Total => None,
    };
    match parsed {
        Some((from, to)) => (Some(from), Some(to)),
        None => (None, None),
    }
}

fn team_satisfaction(report: &Value, periods: &[String]) -> Vec<TeamSatisfaction> {
    let mut teams: BTreeMap<String, TeamSatisfaction> = BTreeMap::new();
    for g in rows(report, "groups").iter().filter(|g| g["by"] == "team") {
        let Some(team) = g["key"].as_str() else {
            continue;
        };
        let entry = teams
            .entry(team.to_owned())
            .or_insert_with(|| TeamSatisfaction {
                team: team.to_owned(),
                means: vec![None; periods.len()],
                distribution: [0; 5],
            });
        if let Some(i) = periods.iter().position(|p| g["period"] == p.as_str()) {
            entry.means[i] = g["mean"].as_f64();
            for (score, count) in entry.distribution.iter_mut().enumerate() {
                *count += g["distribution"][(score + 1).to_string()]
                    .as_u64()
                    .unwrap_or(0);
            }
        }
    }
    teams.into_values().collect()
}

fn scorecard(performance: &Value) -> Vec<AgentScore> {
    let mut agents: Vec<AgentScore> = rows(performance, "agents")
        .iter()
        .map(|r| {
            let parts = &r["score_parts"];
            let points = |part: &str| parts[part]["points"].as_f64().unwrap_or(0.0);
            AgentScore {
                agent: text(&r["agent_id"]),
                team: text(&r["team"]),
                score: r["score"].as_f64(),
                parts: PART_COLOURS.map(|(part, _)| points(part)),
                deduction: points("deduction"),
                scorecard: scorecard_name(&r["scorecard"]),
            }
        })
        .collect();
    agents.sort_by(|a, b| {
        b.score
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.score.unwrap_or(f64::NEG_INFINITY))
            .then_with(|| a.agent.cmp(&b.agent))
    });
    agents.truncate(AGENTS_MAX);
    agents
}

/// Which scorecard scored a row: `configured`, or the one defined for a team (or, with no
/// team, for the organisation) and the day it took effect.
fn scorecard_name(v: &Value) -> String {
    match (v["team"].as_str(), v["effective_from"].as_str()) {
        (Some(""), Some(from)) => format!("the organisation's scorecard from {from}"),
        (Some(team), Some(from)) => format!("team {team}'s scorecard from {from}"),
        _ => match v.as_str() {
            Some("configured") => "the configured weights".to_owned(),
            _ => text(v),
        },
    }
}

/// `s` safe in HTML text and in attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}\
h3{font-size:14px;margin:12px 0 4px}.meta{color:#555;font-size:13px}\
.stale{background:#fde0dc;padding:6px 10px;border:1px solid #d62728}\
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}\
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}\
th{background:#f3f3f3}td.n{text-align:right}svg text{font-size:11px;fill:#333}";

/// The page.
pub fn render(d: &Dashboard) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Closeloop dashboard</title><style>{STYLE}</style></head><body>\
         <h1>Closeloop: supervisor's dashboard</h1>\
         <p class=\"meta\">As of {} &middot; {} &middot; per {} &middot; periods {}</p>",
        escape(&d.as_of),
        escape(&d.scope),
        escape(&d.period),
        match (d.periods.first(), d.periods.last()) {
            (Some(a), Some(b)) => format!("{} to {}", escape(a), escape(b)),
            _ => "none".to_owned(),
        }
    );
    for s in &d.stale {
        let _ = write!(
            h,
            "<p class=\"stale\">STALE: {} (the figures may be behind the log)</p>",
            escape(s)
        );
    }

    h.push_str("<h2>SLA compliance per grade (% of timers met, by period started)</h2><div class=\"charts\">");
    if d.sla.is_empty() {
        h.push_str("<p>No SLA timers in these periods.</p>");
    }
    for (target, series) in &d.sla {
        let _ = write!(h, "<figure><h3>{}</h3>", escape(target));
        h.push_str(&line_chart(
            &format!("sla-{target}"),
            &d.periods,
            series,
            (0.0, 100.0),
            "%",
        ));
        h.push_str("</figure>");
    }
    h.push_str("</div>");

    h.push_str(&at_risk_table(d));

    h.push_str("<h2>Satisfaction per team (surveys)</h2><div class=\"charts\">");
    if d.satisfaction.is_empty() {
        h.push_str("<p>No survey ratings in these periods.</p>");
    } else {
        let means: Vec<Series> = d
            .satisfaction
            .iter()
            .map(|t| (t.team.clone(), t.means.clone()))
            .collect();
        h.push_str("<figure><h3>Mean score per period (1 to 5)</h3>");
        h.push_str(&line_chart(
            "satisfaction-trend",
            &d.periods,
            &means,
            (1.0, 5.0),
            "",
        ));
        h.push_str("</figure><figure><h3>Distribution of scores over the window</h3>");
        h.push_str(&distribution_chart(&d.satisfaction));
        h.push_str("</figure>");
    }
    h.push_str("</div>");

    h.push_str("<h2>Performance scorecard per agent (the whole window)</h2>");
    if d.scorecard.is_empty() {
        h.push_str("<p>No agent rows.</p>");
    } else {
        h.push_str(&scorecard_chart(&d.scorecard));
    }
    h.push_str("</body></html>\n");
    h
}

fn fmt_value(v: f64, unit: &str) -> String {
    format!("{v:.1}{unit}")
}

/// A line chart: one polyline per series (broken where a value is missing), a dot with its
/// value as a tooltip per point, the periods along x, a legend below.
fn line_chart(
    id: &str,
    periods: &[String],
    series: &[Series],
    (low, high): (f64, f64),
    unit: &str,
) -> String {
    const W: f64 = 520.0;
    const PLOT_H: f64 = 180.0;
    const LEFT: f64 = 40.0;
    const TOP: f64 = 10.0;
    const RIGHT: f64 = 30.0;
    let legend_rows = series.len().div_ceil(4);
    let height = TOP + PLOT_H + 40.0 + 16.0 * legend_rows as f64;
    let plot_w = W - LEFT - RIGHT;
    let n = periods.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + PLOT_H * (1.0 - ((v - low) / (high - low)).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" data-chart=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\" role=\"img\">",
        escape(id)
    );
    for step in 0..=4 {
        let v = low + (high - low) * step as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y(v) + 4.0,
            if high - low > 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            },
            y = y(v)
        );
    }
    // At most a dozen period labels, evenly spaced, so they never overlap.
    let every = n.div_ceil(12).max(1);
    for (i, p) in periods.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x(i),
                TOP + PLOT_H + 14.0,
                escape(p)
            );
        }
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, s: &mut String| {
            if run.len() > 1 {
                let _ = write!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                    run.join(" ")
                );
            }
            run.clear();
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(*v))),
                None => flush(&mut run, &mut s),
            }
        }
        flush(&mut run, &mut s);
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\">\
                     <title>{} {}: {}</title></circle>",
                    x(i),
                    y(*v),
                    escape(name),
                    escape(periods.get(i).map_or("", String::as_str)),
                    fmt_value(*v, unit)
                );
            }
        }
        let (lx, ly) = (
            LEFT + (k % 4) as f64 * 120.0,
            TOP + PLOT_H + 34.0 + 16.0 * (k / 4) as f64,
        );
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{ly}\">{}</text>",
            ly - 9.0,
            lx + 14.0,
            escape(name)
        );
    }
    if series.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>",
            LEFT + plot_w / 2.0,
            TOP + PLOT_H / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

/// One bar per team, split into the shares of scores 1 to 5.
fn distribution_chart(teams: &[TeamSatisfaction]) -> String {
    const W: f64 = 520.0;
    const LEFT: f64 = 110.0;
    const BAR_W: f64 = 360.0;
    const ROW_H: f64 = 22.0;
    let height = 30.0 + ROW_H * teams.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" data-chart=\"satisfaction-distribution\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" \
         viewBox=\"0 0 {W} {height}\" role=\"img\">"
    );
    for (score, colour) in SCORE_COLOURS.iter().enumerate() {
        let lx = LEFT + score as f64 * 50.0;
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"2\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"11\">{}</text>",
            lx + 14.0,
            score + 1
        );
    }
    for (row, team) in teams.iter().enumerate() {
        let top = 24.0 + ROW_H * row as f64;
        let total: u64 = team.distribution.iter().sum();
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            top + 12.0,
            escape(&team.team)
        );
        let mut at = LEFT;
        for (score, count) in team.distribution.iter().enumerate() {
            if total == 0 || *count == 0 {
                continue;
            }
            let width = BAR_W * *count as f64 / total as f64;
            let _ = write!(
                s,
                "<rect x=\"{at:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"16\" \
                 fill=\"{}\"><title>{}: score {}: {} of {} ({:.1}%)</title></rect>",
                SCORE_COLOURS[score],
                escape(&team.team),
                score + 1,
                count,
                total,
                *count as f64 * 100.0 / total as f64
            );
            at += width;
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\">{total}</text>",
            LEFT + BAR_W + 6.0,
            top + 12.0
        );
    }
    s.push_str("</svg>");
    s
}

/// One bar per agent: the points of each part stacked, the deduction as a red band taken off
/// the end, the score written after it.
fn scorecard_chart(agents: &[AgentScore]) -> String {
    const W: f64 = 720.0;
    const LEFT: f64 = 200.0;
    const BAR_W: f64 = 420.0;
    const ROW_H: f64 = 18.0;
    const POINTS_MAX: f64 = 110.0;
    let height = 30.0 + ROW_H * agents.len() as f64;
    let scale = |points: f64| BAR_W * points.max(0.0) / POINTS_MAX;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" data-chart=\"scorecard\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\" role=\"img\">"
    );
    for (k, (part, colour)) in PART_COLOURS
        .iter()
        .chain(&[("deduction", "#d62728")])
        .enumerate()
    {
        let lx = LEFT + k as f64 * 90.0;
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"2\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"11\">{part}</text>",
            lx + 14.0
        );
    }
    for (row, a) in agents.iter().enumerate() {
        let top = 22.0 + ROW_H * row as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{} ({})</text>",
            LEFT - 6.0,
            top + 11.0,
            escape(&a.agent),
            escape(&a.team)
        );
        let mut at = LEFT;
        for (points, (part, colour)) in a.parts.iter().zip(PART_COLOURS) {
            let width = scale(*points);
            if width <= 0.0 {
                continue;
            }
            let _ = write!(
                s,
                "<rect x=\"{at:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"13\" \
                 fill=\"{colour}\"><title>{}: {part} {points:.1} points</title></rect>",
                escape(&a.agent)
            );
            at += width;
        }
        if a.deduction > 0.0 {
            let width = scale(a.deduction).min(at - LEFT);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"13\" \
                 fill=\"#d62728\" fill-opacity=\"0.75\"><title>{}: deduction {:.1} \
                 points</title></rect>",
                at - width,
                escape(&a.agent),
                a.deduction
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}<title>scored with {}</title></text>",
            at + 6.0,
            top + 11.0,
            match a.score {
                Some(score) => format!("{score:.1}"),
                None => "-".to_owned(),
            },
            escape(&a.scorecard)
        );
    }
    s.push_str("</svg>");
    s
}

fn at_risk_table(d: &Dashboard) -> String {
    let mut s = format!(
        "<h2>At risk: live timers breached or past their warning ({} in all)</h2>",
        d.at_risk_total
    );
    if d.at_risk.is_empty() {
        s.push_str("<p>None.</p>");
        return s;
    }
    s.push_str(
        "<table data-table=\"at-risk\"><tr><th>ticket</th><th>target</th><th>status</th>\
         <th>due at</th><th>business minutes used / target</th><th>grade</th><th>team</th>\
         <th>assignee</th></tr>",
    );
    for t in &d.at_risk {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{} / {}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&text(&t["ticket_id"])),
            escape(&text(&t["target"])),
            escape(&text(&t["status"])),
            escape(&text(&t["due_at"])),
            escape(&text(&t["business_minutes_used"])),
            escape(&text(&t["target_minutes"])),
            escape(&text(&t["grade"])),
            escape(&text(&t["team"])),
            escape(&text(&t["assignee"]))
        );
    }
    s.push_str("</table>");
    if d.at_risk_total > d.at_risk.len() as u64 {
        let _ = write!(
            s,
            "<p>&hellip; {} more (<code>closeloop report sla --at-risk</code>).</p>",
            d.at_risk_total - d.at_risk.len() as u64
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_of_each_label_form() {
        let d = |s: &str| Some(s.parse::<Date>().unwrap());
        assert_eq!(
            bounds(Granularity::Day, "2026-11-23"),
            (d("2026-11-23"), d("2026-11-23"))
        );
        assert_eq!(
            bounds(Granularity::Week, "2026-W48"),
            (d("2026-11-23"), d("2026-11-29"))
        );
        assert_eq!(
            bounds(Granularity::Month, "2026-02"),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(bounds(Granularity::Total, "total"), (None, None));
        // Each label's bounds hold exactly the days with that label.
        for g in [Granularity::Day, Granularity::Week, Granularity::Month] {
            let day = day_of_date("2026-12-31".parse().unwrap());
            let (from, to) = bounds(g, &g.label(day));
            let (from, to) = (day_of_date(from.unwrap()), day_of_date(to.unwrap()));
            assert!(from <= day && day <= to);
            assert_eq!(g.label(from), g.label(day));
            assert_ne!(g.label(from - 1), g.label(day));
            assert_ne!(g.label(to + 1), g.label(day));
        }
    }

    #[test]
    fn text_from_the_data_is_escaped() {
        let d = Dashboard {
            scope: "team <b>".into(),
            periods: vec!["2026-11".into()],
            sla: BTreeMap::from([(
                "first_response".to_owned(),
                vec![("<script>alert(1)</script>".to_owned(), vec![Some(50.0)])],
            )]),
            satisfaction: vec![TeamSatisfaction {
                team: "a&b\"'".into(),
                means: vec![Some(4.0)],
                distribution: [1, 0, 0, 2, 3],
            }],
            scorecard: vec![AgentScore {
                agent: "<img onerror=x>".into(),
                team: "t".into(),
                score: Some(80.0),
                parts: [40.0, 20.0, 10.0, 10.0],
                deduction: 0.0,
                scorecard: "default".into(),
            }],
            ..Dashboard::default()
        };
        let page = render(&d);
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&amp;b&quot;&#39;"));
        // Self-contained: nothing is fetched.
        for fetch in ["src=", "href=", "@import", "url("] {
            assert!(!page.contains(fetch), "the page fetches something: {fetch}");
        }
        assert_eq!(page.matches("<svg").count(), 4);
    }
}
