//! `closeloop demo`: generate a seeded workload, drive it through the real command handler into
//! the chosen store, then print what the log now says.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::workload::{self, WorkloadConfig};
use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::domain::{Grade, TicketStatus};
use closeloop_core::log::{EventLog, Filter, READ_BATCH_MAX};
use closeloop_projections::summary::TicketSummary;
use indicatif::{ProgressBar, ProgressStyle};

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
    println!(
        "Generating a workload: {} tickets from {} customers over {} days (seed {}), 5 teams on 3 support lines.",
        config.tickets, config.customers, config.days, config.seed
    );
    let workload = workload::generate(&config)?;
    let total = workload.len();
    println!(
        "Driving {total} commands through the command handler into {store} ({} tickets at a time).",
        args.concurrency
    );
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("  {bar:40} {pos}/{len} commands  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
    let started = Instant::now();
    let progress_bar = bar.clone();
    let stats = workload::run(handler, &workload, args.concurrency, move |done| {
        progress_bar.set_position(done as u64)
    })
    .await;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Done in {seconds:.1} s ({:.0} commands/s): {} accepted, {} duplicates, {} rejected.",
        total as f64 / seconds.max(1e-9),
        stats.accepted,
        stats.duplicates,
        stats.rejected
    );
    if stats.duplicates > 0 {
        println!("  (duplicates: this store already held this seed's commands; each was answered with its first reply and appended nothing)");
    }
    for r in &stats.rejections {
        println!("  rejected: {r}");
    }

    println!("\nReading the log back...");
    let mut summary = TicketSummary::default();
    let mut after = 0;
    loop {
        let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for stored in &batch {
            summary.apply(stored, &stored.decode()?);
        }
    }
    summary.finish();
    print_summary(&summary);

    let models = crate::report::caught_up(log.clone(), store).await?;
    let query = closeloop_projections::report::ReportQuery {
        period: closeloop_projections::period::Granularity::Total,
        ..Default::default()
    };
    let report_time = config.start + jiff::SignedDuration::from_hours(24 * i64::from(config.days));
    println!("\nReports at the end of the simulated period ({report_time}):");
    for name in closeloop_projections::models::REPORTS {
        let value = models
            .report(name, &query, report_time)
            .expect("a known report");
        let mut out = std::io::stdout().lock();
        writeln!(out)?;
        crate::report::print(&mut out, name, &value, true)?;
    }

    let report = closeloop_replay::verify::verify_log(log.as_ref(), |_| {}).await?;
    println!(
        "\nAudit: {} events in {} streams; {}.",
        report.events,
        report.streams,
        if report.ok() {
            "every hash chain intact, versions and positions contiguous"
        } else {
            "BREAKS FOUND (run `closeloop verify`)"
        }
    );
    Ok(if stats.rejected == 0 && report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(s: &TicketSummary) {
    println!(
        "Tickets by state and customer grade ({} tickets, {} events):",
        s.tickets, s.events
    );
    print!("  {:<18}", "state");
    for g in Grade::ALL {
        print!("{:>12}", g.as_str());
    }
    println!("{:>8}", "total");
    for status in TicketStatus::ALL {
        let row = s.by_status.get(status);
        print!("  {:<18}", status.as_str());
        let mut total = 0;
        for g in Grade::ALL {
            let n = row.and_then(|r| r.get(g)).copied().unwrap_or(0);
            total += n;
            print!("{n:>12}");
        }
        println!("{total:>8}");
    }
    println!(
        "Escalations: {}   Reopenings: {}",
        s.escalations, s.reopenings
    );
    match s.survey_mean() {
        Some(mean) => println!(
            "Satisfaction: mean survey score {mean:.2} / 5 over {} surveys; {} quality-inspection callbacks",
            s.survey_ratings, s.callback_ratings
        ),
        None => println!("Satisfaction: no surveys answered"),
    }
}
