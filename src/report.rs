//! `closeloop report sla|satisfaction|performance|complaints|inspections|deadlines|erasures`: catch the projectors up to the head of the
//! log, then print the report as readable tables or (`--json`) as the JSON of the query
//! `closeloop.v1.queries.report_NAME`. `closeloop report dashboard --html FILE` writes the
//! supervisor's dashboard (`crate::dashboard`) instead.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use closeloop_core::log::EventLog;
use closeloop_projections::models::ReadModels;
use closeloop_projections::period::Granularity;
use closeloop_projections::report::ReportQuery;
use closeloop_projections::runtime::Status;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::{Cursor, TableStore};
use jiff::civil::Date;
use jiff::Timestamp;
use serde_json::Value;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ReportName {
    Sla,
    Satisfaction,
    Performance,
    Complaints,
    Inspections,
    Deadlines,
    /// The data-protection officer's record of erasures (`--from`, `--to`).
    Erasures,
    /// The dashboard page of charts (`--html FILE`).
    Dashboard,
}

impl ReportName {
    fn as_str(self) -> &'static str {
        match self {
            ReportName::Dashboard => "dashboard",
            ReportName::Sla => "sla",
            ReportName::Satisfaction => "satisfaction",
            ReportName::Performance => "performance",
            ReportName::Complaints => "complaints",
            ReportName::Inspections => "inspections",
            ReportName::Deadlines => "deadlines",
            ReportName::Erasures => "erasures",
        }
    }
}

/// How `report` prints.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Which report.
    #[arg(value_enum)]
    name: ReportName,
    /// Print JSON instead of tables (the same as `--format json`).
    #[arg(long, conflicts_with_all = ["html", "format"])]
    json: bool,
    /// Output: `text` (tables), `json` (the query's JSON) or `csv` (one of the report's
    /// lists, see `--rows`).
    #[arg(long, value_enum, conflicts_with = "html")]
    format: Option<Format>,
    /// CSV: which list of the report (`compliance`, `compliance_by_team`, `timers`,
    /// `groups`, `quality_callbacks`, `agents`, `teams`, `periods`); its main one by default.
    #[arg(long, value_name = "KEY")]
    rows: Option<String>,
    /// Dashboard: write the page (self-contained HTML) to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only this team.
    #[arg(long)]
    team: Option<String>,
    /// First day (YYYY-MM-DD, UTC) included.
    #[arg(long)]
    from: Option<Date>,
    /// Last day (YYYY-MM-DD, UTC) included.
    #[arg(long)]
    to: Option<Date>,
    /// Group days by day, week, month or total [default: month; the dashboard's: week].
    #[arg(long)]
    period: Option<Granularity>,
    /// Report time for running SLA timers (RFC 3339); the wall clock when absent.
    #[arg(long)]
    at: Option<Timestamp>,
    /// Read the models `closeloop replay all --until UNTIL` built (as of that log position or
    /// time) instead of the live ones; nothing is caught up.
    #[arg(long, value_name = "UNTIL")]
    replayed: Option<closeloop_replay::rebuild::Until>,
    /// SLA: timers per page (1..=10000).
    #[arg(long, default_value_t = ReportQuery::LIMIT_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=ReportQuery::LIMIT_MAX as i64))]
    limit: u32,
    /// SLA: the page after this cursor (`timers_next_page` of the previous page).
    #[arg(long, value_parser = |s: &str| Cursor::decode(s))]
    page: Option<Cursor>,
    /// SLA: list only live timers breached or past their warning threshold.
    #[arg(long)]
    at_risk: bool,
}

/// The reports of a store: its tables, caught up to the head of its log first.
pub async fn caught_up(log: Arc<dyn EventLog>, store: &str) -> anyhow::Result<ReadModels> {
    let tables = closeloop_projections::tables::open_tables(store)
        .await
        .context("opening the read-model tables")?;
    tables_caught_up(log, tables).await
}

/// The reports of these tables, caught up to the head of the log first (a failure to fold
/// is a warning, and shows as the projector's error in every report).
pub async fn tables_caught_up(
    log: Arc<dyn EventLog>,
    tables: Arc<dyn TableStore>,
) -> anyhow::Result<ReadModels> {
    let mut projector = TableProjector::open(log, tables.clone(), TableConfig::default()).await?;
    if let Err(e) = projector.catch_up().await {
        eprintln!("warning: {e}");
    }
    Ok(ReadModels::new(tables, vec![projector.status()]))
}

pub async fn run(
    log: Arc<dyn EventLog>,
    store: &str,
    args: ReportArgs,
) -> anyhow::Result<ExitCode> {
    let models = match args.replayed {
        Some(until) => {
            let tables = closeloop_replay::rebuild::open_replayed(store, until).await?;
            let position = tables.checkpoint().await?.position;
            let status = Arc::new(Status::fixed(
                closeloop_projections::tables::NAME,
                closeloop_projections::tables::VERSION,
                position,
            ));
            ReadModels::new(tables, vec![status])
        }
        None => caught_up(log, store).await?,
    };
    let dashboard = matches!(args.name, ReportName::Dashboard);
    if dashboard != args.html.is_some() {
        anyhow::bail!("`--html FILE` goes with `report dashboard`, and only with it");
    }
    let query = ReportQuery {
        agent: args.agent,
        team: args.team,
        from: args.from,
        to: args.to,
        period: args.period.unwrap_or(if dashboard {
            Granularity::Week
        } else {
            Granularity::Month
        }),
        limit: args.limit,
        page: args.page,
        at_risk: args.at_risk,
    };
    let now = args.at.unwrap_or_else(Timestamp::now);
    if let Some(path) = &args.html {
        let page = crate::dashboard::gather(&models, &query, now)
            .await
            .context("reading the tables")?;
        std::fs::write(path, crate::dashboard::render(&page))
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(stale_or_success(&models));
    }
    let value = models
        .report(args.name.as_str(), &query, now)
        .await
        .context("reading the tables")?
        .expect("every ReportName is a report");
    let mut out = std::io::stdout().lock();
    let format = if args.json {
        Format::Json
    } else {
        args.format.unwrap_or(Format::Text)
    };
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let key = args
                .rows
                .unwrap_or_else(|| crate::csv::main_rows(args.name.as_str()).to_owned());
            let Some(rows) = value.get(&key).and_then(Value::as_array) else {
                anyhow::bail!(
                    "the {} report has no list `{key}` (--rows)",
                    args.name.as_str()
                );
            };
            out.write_all(crate::csv::to_csv(rows).as_bytes())?;
        }
        Format::Text => print(&mut out, args.name.as_str(), &value, false)?,
    }
    Ok(stale_or_success(&models))
}

/// Exit 1 if a projector failed (the report says so), else success.
fn stale_or_success(models: &ReadModels) -> ExitCode {
    if models.statuses.iter().any(|s| s.error().is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number with a fixed count of decimals (`-` for none), so a column lines up: `4.00`
/// beside `3.86`, never `4.0`.
fn fixed(v: &Value, places: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.places$}"),
        None => "-".into(),
    }
}

/// A share of `part` in `whole`, one decimal (`-` when `whole` is 0).
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}", part as f64 * 100.0 / whole as f64)
    }
}

fn rows<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

/// Prints a report value as tables. `brief` (the demo) leaves out per-agent satisfaction rows
/// and lists fewer timers.
pub fn print(out: &mut impl Write, name: &str, v: &Value, brief: bool) -> std::io::Result<()> {
    match name {
        "sla" => print_sla(out, v, brief)?,
        "satisfaction" => print_satisfaction(out, v, brief)?,
        "performance" => print_performance(out, v)?,
        "complaints" => print_complaints(out, v)?,
        "inspections" => print_inspections(out, v)?,
        "deadlines" => print_deadlines(out, v)?,
        "erasures" => print_erasures(out, v)?,
        _ => {}
    }
    for p in rows(v, "projectors") {
        if p["lag"].as_u64().unwrap_or(0) > 0 || !p["error"].is_null() {
            writeln!(
                out,
                "  STALE: projector {} at position {} of {}: {}",
                num(&p["name"]),
                num(&p["position"]),
                num(&p["head"]),
                num(&p["error"])
            )?;
        }
    }
    Ok(())
}

fn print_sla(out: &mut impl Write, v: &Value, brief: bool) -> std::io::Result<()> {
    writeln!(out, "SLA compliance (as of {}):", num(&v["as_of"]))?;
    writeln!(
        out,
        "  {:<12} {:<15} {:>7} {:>9} {:>8}",
        "grade", "target", "met", "breached", "percent"
    )?;
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for c in rows(v, "compliance") {
        writeln!(
            out,
            "  {:<12} {:<15} {:>7} {:>9} {:>8}",
            num(&c["grade"]),
            num(&c["target"]),
            num(&c["met"]),
            num(&c["breached"]),
            fixed(&c["percent"], 1)
        )?;
        let t = totals.entry(num(&c["target"])).or_default();
        t.0 += c["met"].as_u64().unwrap_or(0);
        t.1 += c["breached"].as_u64().unwrap_or(0);
    }
    for (target, (met, breached)) in &totals {
        writeln!(
            out,
            "  {:<12} {:<15} {:>7} {:>9} {:>8}",
            "total",
            target,
            met,
            breached,
            share(*met, met + breached)
        )?;
    }
    let by_team = rows(v, "compliance_by_team");
    if !by_team.is_empty() {
        writeln!(out, "SLA compliance per team (the ticket's team now):")?;
        writeln!(
            out,
            "  {:<14} {:<15} {:>7} {:>9} {:>8}",
            "team", "target", "met", "breached", "percent"
        )?;
        for c in by_team {
            let team = c["team"].as_str().unwrap_or("(unassigned)");
            writeln!(
                out,
                "  {:<14} {:<15} {:>7} {:>9} {:>8}",
                team,
                num(&c["target"]),
                num(&c["met"]),
                num(&c["breached"]),
                fixed(&c["percent"], 1)
            )?;
        }
    }
    let timers = rows(v, "timers");
    let risky: Vec<&Value> = timers.iter().filter(|t| t["at_risk"] == true).collect();
    writeln!(
        out,
        "Open timers: {}; at risk or breached: {} (soonest due first):",
        num(&v["open_timers"]),
        num(&v["at_risk_timers"])
    )?;
    if !risky.is_empty() {
        writeln!(
            out,
            "  {:<36} {:<15} {:<9} {:<20} {:>13} {:<12} assignee",
            "ticket", "target", "status", "due at", "used/target", "grade"
        )?;
    }
    let limit = if brief { 10 } else { usize::MAX };
    for t in risky.iter().take(limit) {
        writeln!(
            out,
            "  {:<36} {:<15} {:<9} {:<20} {:>13} {:<12} {}",
            num(&t["ticket_id"]),
            num(&t["target"]),
            num(&t["status"]),
            num(&t["due_at"]),
            format!(
                "{}/{}",
                num(&t["business_minutes_used"]),
                num(&t["target_minutes"])
            ),
            num(&t["grade"]),
            num(&t["assignee"])
        )?;
    }
    let shown = risky.len().min(limit) as u64;
    let at_risk = v["at_risk_timers"].as_u64().unwrap_or(0);
    if at_risk > shown {
        writeln!(
            out,
            "  ... {} more (closeloop report sla --at-risk)",
            at_risk - shown
        )?;
    }
    Ok(())
}

fn print_erasures(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "Erasures of customer data, in the order recorded:")?;
    writeln!(
        out,
        "  {:<20} {:<24} {:<20} {:<12} reference",
        "erased_at", "customer", "by", "reason"
    )?;
    for r in rows(v, "erasures") {
        writeln!(
            out,
            "  {:<20} {:<24} {:<20} {:<12} {}",
            num(&r["erased_at"]),
            num(&r["customer_id"]),
            num(&r["erased_by"]),
            num(&r["reason"]),
            num(&r["reference"])
        )?;
    }
    Ok(())
}

fn print_inspections(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "Quality inspection, per agent and inspected month:")?;
    writeln!(
        out,
        "  {:<20} {:<12} {:<8} {:>5} {:>9} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>7} {:>7}",
        "agent",
        "team",
        "month",
        "drawn",
        "inspected",
        "recog",
        "effic",
        "qual",
        "overall",
        "log%",
        "failed",
        "re-due",
        "re-done"
    )?;
    for r in rows(v, "agents") {
        let d = &r["dimensions"];
        writeln!(
            out,
            "  {:<20} {:<12} {:<8} {:>5} {:>9} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>7} {:>7}",
            num(&r["agent_id"]),
            num(&r["team"]),
            num(&r["period"]),
            num(&r["drawn"]),
            num(&r["inspected"]),
            fixed(&d["recognition"], 2),
            fixed(&d["efficiency"], 2),
            fixed(&d["quality"], 2),
            fixed(&d["overall"], 2),
            fixed(&r["log_complete_percent"], 1),
            num(&r["failed"]),
            num(&r["reinspections_due"]),
            num(&r["reinspected"])
        )?;
    }
    Ok(())
}

fn print_deadlines(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "Step deadlines, per {} of the due time:",
        num(&v["period"])
    )?;
    let header = |out: &mut dyn Write, by: &str| {
        writeln!(
            out,
            "  {:<10} {:<20} {:>5} {:>5} {:>8} {:>8} {:>5} {:>6}",
            "period", by, "due", "met", "breached", "met late", "open", "met%"
        )
    };
    let line = |out: &mut dyn Write, period: &Value, name: &Value, r: &Value| {
        writeln!(
            out,
            "  {:<10} {:<20} {:>5} {:>5} {:>8} {:>8} {:>5} {:>6}",
            num(period),
            num(name),
            num(&r["due"]),
            num(&r["met"]),
            num(&r["breached"]),
            num(&r["met_late"]),
            num(&r["open"]),
            fixed(&r["met_percent"], 1)
        )
    };
    for (list, key, by) in [
        ("kinds", "kind", "kind"),
        ("agents", "agent_id", "agent"),
        ("teams", "team", "team"),
    ] {
        header(out, by)?;
        for p in rows(v, "periods") {
            for r in rows(p, list) {
                line(out, &p["period"], &r[key], r)?;
            }
        }
    }
    Ok(())
}

fn print_complaints(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "Complaints, per {} of receipt:", num(&v["period"]))?;
    writeln!(
        out,
        "  {:<10} {:>8} {:>8} {:>6} {:>9} {:>10} {:>16} {:>16}",
        "period",
        "received",
        "resolved",
        "ruled",
        "justified",
        "justified%",
        "to ruling (med)",
        "to resolved (med)"
    )?;
    let median = |s: &Value| match s["median"].as_f64() {
        Some(m) => format!("{:.0} min", m),
        None => "-".into(),
    };
    for p in rows(v, "periods") {
        writeln!(
            out,
            "  {:<10} {:>8} {:>8} {:>6} {:>9} {:>10} {:>16} {:>16}",
            num(&p["period"]),
            num(&p["received"]),
            num(&p["resolved"]),
            num(&p["ruled"]),
            num(&p["justified"]),
            fixed(&p["justified_percent"], 1),
            median(&p["minutes_to_first_ruling"]),
            median(&p["minutes_to_resolution"])
        )?;
        for c in rows(p, "causes") {
            writeln!(
                out,
                "    cause {:<24} ruled {:>5}, justified {:>5} ({}%)",
                num(&c["cause"]),
                num(&c["ruled"]),
                num(&c["justified"]),
                fixed(&c["justified_percent"], 1)
            )?;
        }
    }
    Ok(())
}

fn print_satisfaction(out: &mut impl Write, v: &Value, brief: bool) -> std::io::Result<()> {
    writeln!(out, "Satisfaction (surveys), per {}:", num(&v["period"]))?;
    writeln!(
        out,
        "  {:<9} {:<20} {:<10} {:>7} {:>5} {:>10} {:>22} {:>9} {:>10} {:>10} {:>9}",
        "by",
        "key",
        "period",
        "ratings",
        "mean",
        "satisfied%",
        "distribution 1/2/3/4/5",
        "response%",
        "complaint%",
        "confirmed%",
        "rejected%"
    )?;
    for g in rows(v, "groups") {
        if brief && g["by"] == "agent" {
            continue;
        }
        let d = &g["distribution"];
        writeln!(
            out,
            "  {:<9} {:<20} {:<10} {:>7} {:>5} {:>10} {:>22} {:>9} {:>10} {:>10} {:>9}",
            num(&g["by"]),
            num(&g["key"]),
            num(&g["period"]),
            num(&g["ratings"]),
            fixed(&g["mean"], 2),
            fixed(&g["satisfied_percent"], 1),
            format!(
                "{}/{}/{}/{}/{}",
                num(&d["1"]),
                num(&d["2"]),
                num(&d["3"]),
                num(&d["4"]),
                num(&d["5"])
            ),
            fixed(&g["response_rate_percent"], 1),
            fixed(&g["complaint_rate_percent"], 1),
            fixed(&g["confirmation_rate_percent"], 1),
            fixed(&g["rejection_rate_percent"], 1)
        )?;
    }
    if brief {
        writeln!(out, "  (per-agent rows: closeloop report satisfaction)")?;
    }
    let callbacks = rows(v, "quality_callbacks");
    if !callbacks.is_empty() {
        writeln!(out, "Quality-inspection callbacks:")?;
        writeln!(
            out,
            "  {:<9} {:<20} {:<10} {:>9} {:>11} {:>10} {:>7} {:>7}",
            "by", "key", "period", "callbacks", "recognition", "efficiency", "quality", "overall"
        )?;
        for c in callbacks {
            if brief && !matches!(c["by"].as_str(), Some("team")) {
                continue;
            }
            let d = &c["dimensions"];
            writeln!(
                out,
                "  {:<9} {:<20} {:<10} {:>9} {:>11} {:>10} {:>7} {:>7}",
                num(&c["by"]),
                num(&c["key"]),
                num(&c["period"]),
                num(&c["callbacks"]),
                fixed(&d["recognition"], 2),
                fixed(&d["efficiency"], 2),
                fixed(&d["quality"], 2),
                fixed(&d["overall"], 2)
            )?;
        }
    }
    Ok(())
}

fn print_performance(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    let header = |out: &mut dyn Write, first: &str| {
        writeln!(
            out,
            "  {:<20} {:<12} {:<10} {:>5} {:>5} {:>5} {:>5} {:>12} {:>12} {:>5} {:>6} {:>5} {:>5} {:>6}",
            first, "team", "period", "asgn", "res", "reop", "esc", "1st resp p50/90", "resol p50/90", "sla%", "1touch", "sat", "open", "score"
        )
    };
    // `open` is the load now, not a figure of the period: shown once per agent or team.
    let line = |out: &mut dyn Write, first: &Value, r: &Value, open: bool| {
        writeln!(
            out,
            "  {:<20} {:<12} {:<10} {:>5} {:>5} {:>5} {:>5} {:>12} {:>12} {:>5} {:>6} {:>5} {:>5} {:>6}",
            num(first),
            num(&r["team"]),
            num(&r["period"]),
            num(&r["assigned"]),
            num(&r["resolved"]),
            num(&r["reopened"]),
            num(&r["escalated"]),
            format!(
                "{}/{}",
                fixed(&r["first_response_minutes"]["median"], 0),
                fixed(&r["first_response_minutes"]["p90"], 0)
            ),
            format!(
                "{}/{}",
                fixed(&r["resolution_minutes"]["median"], 0),
                fixed(&r["resolution_minutes"]["p90"], 0)
            ),
            fixed(&r["sla_percent"], 1),
            fixed(&r["one_touch_percent"], 1),
            fixed(&r["satisfaction_mean"], 2),
            if open { num(&r["open_now"]) } else { String::new() },
            fixed(&r["score"], 1)
        )
    };
    writeln!(
        out,
        "Staff performance per {} (times in business minutes):",
        num(&v["period"])
    )?;
    header(out, "agent")?;
    let mut previous = None;
    for r in rows(v, "agents") {
        let first = previous != Some(&r["agent_id"]);
        line(out, &r["agent_id"], r, first)?;
        previous = Some(&r["agent_id"]);
    }
    writeln!(out, "Teams:")?;
    header(out, "")?;
    let mut previous = None;
    let mut totals = [0u64; 4];
    for r in rows(v, "teams") {
        let first = previous != Some(&r["team"]);
        line(out, &Value::String(String::new()), r, first)?;
        previous = Some(&r["team"]);
        for (total, key) in totals
            .iter_mut()
            .zip(["assigned", "resolved", "reopened", "escalated"])
        {
            *total += r[key].as_u64().unwrap_or(0);
        }
    }
    writeln!(
        out,
        "  {:<20} {:<12} {:<10} {:>5} {:>5} {:>5} {:>5}",
        "", "total", "", totals[0], totals[1], totals[2], totals[3]
    )?;
    Ok(())
}
