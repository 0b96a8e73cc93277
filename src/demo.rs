//! `closeloop demo`: generate a seeded workload, drive it through the real command handler into
//! the chosen store, hour by simulated hour with the SLA scheduler after each hour (so
//! warnings and breaches are part of the audited history), then print what the log now says.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{Command, Event, Grade, TicketStatus};
use closeloop_core::log::{EventLog, Filter, READ_BATCH_MAX};
use closeloop_process::scheduler;
use closeloop_projections::summary::TicketSummary;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::TableStore;
use closeloop_workload::{self as workload, WorkloadConfig};
use jiff::Timestamp;

use crate::progress::{grouped, Phase};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Tickets to generate.
    #[arg(long, default_value_t = 3_000)]
    tickets: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 28)]
    days: u32,
    /// Customers to register.
    #[arg(long, default_value_t = 800)]
    customers: usize,
    /// Seed: the same seed gives the same commands.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Tickets worked on concurrently.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

pub async fn run(log: Arc<dyn EventLog>, store: &str, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let config = WorkloadConfig {
        seed: args.seed,
        tickets: args.tickets,
        days: args.days,
        customers: args.customers,
        ..WorkloadConfig::default()
    };
    outln!(
        "Generating a workload: {} tickets from {} customers over {} days (seed {}), 5 teams on 3 support lines.",
        config.tickets, config.customers, config.days, config.seed
    )?;
    // Generated day by day while it runs: held whole, 50,000 tickets' commands alone took
    // about 240 MiB. What is generated here is the setup; the days follow as they start.
    let generating = Phase::start("demo: generating the workload's setup", "", None);
    let workload = workload::generate_lazy(&config)?;
    generating.finish("each simulated day is generated as it starts");
    outln!(
        "Driving it through the command handler into {store} ({} tickets at a time), each simulated day generated as it starts.",
        args.concurrency
    )?;
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
    let tables = closeloop_projections::tables::open_tables(store).await?;
    let scheduler = Arc::new(tokio::sync::Mutex::new(
        Scheduler::open(log.clone(), tables.clone(), handler.clone()).await?,
    ));
    let started = Instant::now();
    // The commands' total is known only at the end: the phase counts simulated hours.
    let bar = Arc::new(Phase::start(
        "demo: running the workload",
        "simulated hours",
        Some(u64::from(config.days) * 24),
    ));
    let progress_bar = bar.clone();
    let on_tick = {
        let (scheduler, bar, start) = (scheduler.clone(), bar.clone(), config.start);
        move |now: Timestamp| {
            bar.set_position(now.duration_since(start).as_hours().unsigned_abs());
            let scheduler = scheduler.clone();
            async move { scheduler.lock().await.tick(now).await }
        }
    };
    let inspector = handler.clone();
    let stats = workload::run_with_ticks(
        handler,
        workload,
        args.concurrency,
        jiff::SignedDuration::from_mins(TICK_MINUTES),
        move |done| progress_bar.set_message(format!("{} commands", grouped(done as u64))),
        on_tick,
    )
    .await;
    let total = stats.accepted + stats.duplicates + stats.rejected;
    bar.finish(format!(
        "{} commands, {} rejected",
        grouped(total as u64),
        grouped(stats.rejected as u64)
    ));
    let scheduled = scheduler.lock().await.counts.clone();
    let seconds = started.elapsed().as_secs_f64();
    outln!(
        "Done in {seconds:.1} s ({total} commands, {:.0} commands/s): {} accepted, {} duplicates, {} rejected.",
        total as f64 / seconds.max(1e-9),
        stats.accepted,
        stats.duplicates,
        stats.rejected
    )?;
    if stats.duplicates > 0 {
        outln!("  (duplicates: this store already held this seed's commands; each was answered with its first reply and appended nothing)")?;
    }
    for r in &stats.rejections {
        outln!("  rejected: {r}")?;
    }
    outln!(
        "SLA scheduler, run after every simulated {TICK_MINUTES} minutes: {} warnings and {} breaches recorded (role system){}.",
        scheduled.warnings,
        scheduled.breaches,
        if scheduled.duplicates > 0 {
            format!(", {} already in the log", scheduled.duplicates)
        } else {
            String::new()
        }
    )?;
    if scheduled.absences > 0 {
        outln!(
            "  planned absences: {} starts and ends recorded at their moments",
            scheduled.absences
        )?;
    }
    if scheduled.deadlines > 0 {
        outln!(
            "  step deadlines: {} warnings and breaches recorded",
            scheduled.deadlines
        )?;
    }
    if scheduled.refused > 0 {
        outln!(
            "  {} scheduler commands refused: the ticket was resolved or closed within the same tick (expected to be rare; not workload rejections)",
            scheduled.refused
        )?;
    }
    if let Some(e) = &scheduled.error {
        outln!("  the tables' projector stopped: {e}")?;
    }

    let months = months_of(config.start, config.days);
    let inspecting = Phase::start("demo: quality-inspection programme", "agents", None);
    let (samples, inspected, failed) = inspect(
        &inspecting,
        &inspector,
        log.clone(),
        tables.clone(),
        config.seed,
        &months,
        config.start + jiff::SignedDuration::from_hours(24 * i64::from(config.days)),
    )
    .await?;
    inspecting.finish(format!("{samples} samples, {inspected} tickets inspected"));
    outln!(
        "Quality inspection: {samples} monthly samples drawn, {inspected} tickets inspected, {failed} failed (due again the next month)."
    )?;

    outln!("\nReading the log back...")?;
    let reading = Phase::start(
        "demo: reading the log back",
        "events",
        Some(log.head().await?),
    );
    let mut summary = TicketSummary::default();
    let (mut warnings, mut breaches) = (0, 0);
    let mut after = 0;
    loop {
        let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        reading.set_position(after);
        for stored in &batch {
            let event = stored.decode()?;
            match &event {
                Event::SlaWarningRaised(_) => warnings += 1,
                Event::SlaBreached(_) => breaches += 1,
                _ => {}
            }
            summary.apply(stored, &event);
        }
    }
    summary.finish();
    reading.finish(format!("{} tickets", grouped(summary.tickets)));
    print_summary(&summary)?;
    outln!("SLA events in the log: {warnings} warnings, {breaches} breaches")?;

    let reporting = Phase::start(
        "demo: computing the reports",
        "reports",
        Some(closeloop_projections::models::REPORTS.len() as u64),
    );
    reporting.set_message("catching the tables up with the log");
    let models = crate::report::tables_caught_up(log.clone(), tables).await?;
    let query = closeloop_projections::report::ReportQuery {
        period: closeloop_projections::period::Granularity::Total,
        ..Default::default()
    };
    let report_time = config.start + jiff::SignedDuration::from_hours(24 * i64::from(config.days));
    let mut values = Vec::new();
    for name in closeloop_projections::models::REPORTS {
        reporting.set_message(format!("{name} report"));
        let value = models
            .report(name, &query, report_time)
            .await?
            .expect("a known report");
        values.push((name, value));
        reporting.inc(1);
    }
    reporting.finish("");
    outln!("\nReports at the end of the simulated period ({report_time}):")?;
    for (name, value) in values {
        let mut out = std::io::stdout().lock();
        writeln!(out)?;
        crate::report::print(&mut out, name, &value, true)?;
    }

    let verifying = Phase::start("demo: verifying the log", "events", Some(log.head().await?));
    let report =
        closeloop_replay::verify::verify_log(log.as_ref(), |n| verifying.set_position(n)).await?;
    verifying.finish(if report.ok() {
        "intact"
    } else {
        "BREAKS FOUND"
    });
    outln!(
        "\nAudit: {} events in {} streams; {}.",
        report.events,
        report.streams,
        if report.ok() {
            "every hash chain intact, versions and positions contiguous"
        } else {
            "BREAKS FOUND (run `closeloop verify`)"
        }
    )?;
    Ok(
        if stats.rejected == 0 && scheduled.error.is_none() && report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// Simulated minutes between two runs of the SLA scheduler.
const TICK_MINUTES: i64 = 60;

/// What the demo's SLA scheduler submitted.
#[derive(Debug, Clone, Default)]
struct ScheduledCounts {
    warnings: usize,
    breaches: usize,
    duplicates: usize,
    /// Planned absences started and ended (`start_absence`, `end_absence`).
    absences: usize,
    /// Step deadlines warned of and breached (`raise_deadline_warning`,
    /// `record_deadline_breach`).
    deadlines: usize,
    /// Refused by the domain: the ticket was no longer open.
    refused: usize,
    /// The SLA projector stopped (nothing more is scheduled).
    error: Option<String>,
}

/// The SLA scheduler in simulated time: after each tick of the workload, the tables'
/// projector catches up with the log (so the tables are kept as `serve` keeps them, batch by
/// batch) and what is due at the tick's end goes through the handler, as `closeloop schedule`
/// does with the wall clock.
struct Scheduler {
    projector: TableProjector,
    tables: Arc<dyn TableStore>,
    handler: Arc<Handler>,
    counts: ScheduledCounts,
}

impl Scheduler {
    async fn open(
        log: Arc<dyn EventLog>,
        tables: Arc<dyn TableStore>,
        handler: Arc<Handler>,
    ) -> anyhow::Result<Scheduler> {
        Ok(Scheduler {
            projector: TableProjector::open(log, tables.clone(), TableConfig::default()).await?,
            tables,
            handler,
            counts: ScheduledCounts::default(),
        })
    }

    async fn tick(&mut self, now: Timestamp) {
        if self.counts.error.is_some() {
            return;
        }
        loop {
            if let Err(e) = self.projector.catch_up().await {
                self.counts.error = Some(e.to_string());
                return;
            }
            let due = match scheduler::due_commands(self.tables.as_ref(), now).await {
                Ok(due) => due,
                Err(e) => {
                    self.counts.error = Some(e.to_string());
                    return;
                }
            };
            let (submitted, mut accepted) = (due.len(), 0);
            for envelope in due {
                let breach = matches!(envelope.command, Command::RecordSlaBreach(_));
                let absence = matches!(
                    envelope.command,
                    Command::StartAbsence(_) | Command::EndAbsence(_)
                );
                let deadline = matches!(
                    envelope.command,
                    Command::RaiseDeadlineWarning(_) | Command::RecordDeadlineBreach(_)
                );
                match self.handler.handle_at(envelope, now).await {
                    Reply::Accepted { .. } if breach => self.counts.breaches += 1,
                    Reply::Accepted { .. } if absence => self.counts.absences += 1,
                    Reply::Accepted { .. } if deadline => self.counts.deadlines += 1,
                    Reply::Accepted { .. } => self.counts.warnings += 1,
                    Reply::Duplicate { .. } => self.counts.duplicates += 1,
                    Reply::Rejected { .. } => {
                        self.counts.refused += 1;
                        continue;
                    }
                }
                accepted += 1;
            }
            // A full batch leaves more for this tick; stop when a round changes nothing.
            if submitted < scheduler::TICK_COMMANDS_MAX || accepted == 0 {
                return;
            }
        }
    }
}

/// The months (`YYYY-MM` and their span of Unix seconds) the simulated days touch.
fn months_of(start: Timestamp, days: u32) -> Vec<(String, closeloop_projections::tables::Span)> {
    let utc = jiff::tz::TimeZone::UTC;
    let first = start.to_zoned(utc.clone()).date().first_of_month();
    let end = start + jiff::SignedDuration::from_hours(24 * i64::from(days));
    let mut months = Vec::new();
    let mut month = first;
    loop {
        let from = month.to_zoned(utc.clone()).map(|z| z.timestamp());
        let next = month.saturating_add(jiff::Span::new().months(1));
        let to = next.to_zoned(utc.clone()).map(|z| z.timestamp());
        let (Ok(from), Ok(to)) = (from, to) else {
            break;
        };
        if from >= end {
            break;
        }
        months.push((
            closeloop_projections::period::Granularity::Month
                .label(closeloop_projections::period::day_of_date(month)),
            closeloop_projections::tables::Span {
                from: Some(from.as_second()),
                to: Some(to.as_second()),
            },
        ));
        month = next;
    }
    months
}

/// The demo's monthly quality-inspection programme, run once the simulated days are done:
/// for every agent and month, the inspector draws three of the tickets the agent resolved
/// that month (seeded by the workload's seed, so the same demo draws the same tickets), adds
/// those that failed the month before, and inspects them. The scores are the demo's own: derived from each ticket's id, about one
/// in eight failed. Returns (samples, inspections, failures).
async fn inspect(
    progress: &Phase,
    handler: &Handler,
    log: Arc<dyn EventLog>,
    tables: Arc<dyn TableStore>,
    seed: u64,
    months: &[(String, closeloop_projections::tables::Span)],
    at: Timestamp,
) -> anyhow::Result<(u32, u32, u32)> {
    use closeloop_core::domain::{
        Actor, CommandEnvelope, Dimensions, DrawInspectionSample, RecordInspection, Role, Verdict,
    };
    progress.set_message("catching the tables up with the log");
    crate::report::tables_caught_up(log, tables.clone()).await?;
    let inspector = Actor {
        id: closeloop_workload::INSPECTOR.into(),
        role: Role::Inspector,
    };
    let namespace = uuid::Uuid::from_u64_pair(seed, 0x1_5bec);
    let submit = |command: Command| {
        let key = format!("{command:?}");
        CommandEnvelope {
            command_id: uuid::Uuid::new_v5(&namespace, key.as_bytes()),
            actor: inspector.clone(),
            occurred_at: Some(at),
            expected_version: None,
            command,
        }
    };
    let (mut samples, mut inspected, mut failed) = (0, 0, 0);
    let agents = tables.agents().await?;
    progress.set_total(agents.len() as u64);
    for agent in agents {
        progress.set_message(format!("{inspected} tickets inspected"));
        // What failed last month is inspected again this month.
        let mut failed_before: Vec<uuid::Uuid> = Vec::new();
        for (month, span) in months {
            let candidates = closeloop_projections::report::inspection_candidates(
                tables.as_ref(),
                &agent.agent_id,
                *span,
            )
            .await?;
            if candidates.is_empty() {
                continue;
            }
            let reinspect = std::mem::take(&mut failed_before);
            // A command holds at most INSPECTION_CANDIDATES_MAX candidates. Keeping those whose
            // draw keys sort first changes nothing drawn: the draw takes the first keys.
            let candidates = if candidates.len() > closeloop_core::domain::INSPECTION_CANDIDATES_MAX
            {
                closeloop_core::domain::draw_items(
                    seed,
                    &candidates,
                    closeloop_core::domain::INSPECTION_CANDIDATES_MAX as u32,
                )
            } else {
                candidates
            };
            let sample_id =
                uuid::Uuid::new_v5(&namespace, format!("{}/{month}", agent.agent_id).as_bytes());
            let again = reinspect.clone();
            let sample = DrawInspectionSample {
                sample_id,
                period: month.clone(),
                agent_id: agent.agent_id.clone(),
                size: 3,
                seed,
                candidates,
                reinspect,
            };
            let items = sample.items();
            // Received at the simulated time, as the workload's commands are.
            let draw = submit(Command::DrawInspectionSample(sample));
            let reply = handler.handle_at(draw, at).await;
            if !matches!(reply, Reply::Accepted { .. } | Reply::Duplicate { .. }) {
                anyhow::bail!("drawing an inspection sample: {}", reply.to_json());
            }
            samples += 1;
            for ticket_id in items {
                let b = ticket_id.as_bytes();
                let score = |i: usize| 2 + b[i] % 4;
                // A ticket inspected again was put right: it passes.
                let verdict = if b[15] % 8 == 0 && !again.contains(&ticket_id) {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                };
                let reply = handler
                    .handle_at(
                        submit(Command::RecordInspection(RecordInspection {
                            sample_id,
                            ticket_id,
                            dimensions: Dimensions {
                                recognition: score(10),
                                efficiency: score(11),
                                quality: score(12),
                                overall: score(13),
                            },
                            log_complete: b[14] % 6 != 0,
                            visit_verified: None,
                            verdict,
                            note: "Called the customer back and read the service log.".into(),
                        })),
                        at,
                    )
                    .await;
                if !matches!(reply, Reply::Accepted { .. } | Reply::Duplicate { .. }) {
                    anyhow::bail!("recording an inspection: {}", reply.to_json());
                }
                inspected += 1;
                if verdict == Verdict::Fail {
                    failed += 1;
                    failed_before.push(ticket_id);
                }
            }
        }
        progress.inc(1);
    }
    Ok((samples, inspected, failed))
}

fn print_summary(s: &TicketSummary) -> std::io::Result<()> {
    outln!(
        "Tickets by state and customer grade ({} tickets, {} events):",
        s.tickets,
        s.events
    )?;
    out!("  {:<18}", "state")?;
    for g in Grade::ALL {
        out!("{:>12}", g.as_str())?;
    }
    outln!("{:>8}", "total")?;
    for status in TicketStatus::ALL {
        let row = s.by_status.get(status);
        out!("  {:<18}", status.as_str())?;
        let mut total = 0;
        for g in Grade::ALL {
            let n = row.and_then(|r| r.get(g)).copied().unwrap_or(0);
            total += n;
            out!("{n:>12}")?;
        }
        outln!("{total:>8}")?;
    }
    outln!(
        "Escalations: {}   Reopenings: {}",
        s.escalations,
        s.reopenings
    )?;
    match s.survey_mean() {
        Some(mean) => outln!(
            "Satisfaction: mean survey score {mean:.2} / 5 over {} surveys; {} quality-inspection callbacks",
            s.survey_ratings, s.callback_ratings
        )?,
        None => outln!("Satisfaction: no surveys answered")?,
    }
    outln!(
        "Customers' answers: {} resolutions confirmed, {} rejected (reopened); {} tickets closed unconfirmed after the wait",
        s.confirmations,
        s.rejections,
        s.auto_closed_unconfirmed
    )?;
    outln!(
        "Complaint rulings: {} ({} justified), {} of them superseding an earlier ruling",
        s.rulings,
        s.rulings_justified,
        s.rulings_superseding
    )?;
    outln!(
        "Follow-ups: {} planned, {} recorded, {} marked overdue by the scheduler; {} visits entered after the week rule",
        s.follow_ups,
        s.follow_ups_recorded,
        s.follow_ups_overdue,
        s.visits_entered_late
    )?;
    outln!(
        "Step deadlines: {} set, {} met in time, {} breached by the scheduler ({} repairs flagged for exchange), {} completed after their breach (closeloop report deadlines)",
        s.deadlines,
        s.deadlines_met,
        s.deadlines_breached,
        s.exchanges_flagged,
        s.deadlines_met_late
    )?;
    Ok(())
}
