//! `closeloop replay tables|all [--until TIME|POSITION]`: rebuild the read side's tables from
//! the log beside the live ones, with a progress bar, then swap them in atomically
//! (closeloop-replay's `rebuild.rs`). Ctrl-C stops after the current batch, committed;
//! running again resumes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use closeloop_core::log::EventLog;
use closeloop_replay::rebuild::{self, ReplayConfig, Until};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// tables, or all.
    projection: String,
    /// Build the tables as of this log position or business time (RFC 3339) under a name
    /// of their own (`<read schema>_until_<until>`, or a file `<path>.until-<until>`),
    /// leaving the live ones alone (read them with `report NAME --replayed UNTIL`).
    #[arg(long)]
    until: Option<Until>,
    /// Events read per batch.
    #[arg(long, default_value_t = closeloop_core::log::READ_BATCH_MAX)]
    batch: usize,
}

pub async fn run(
    log: Arc<dyn EventLog>,
    store: &str,
    args: ReplayArgs,
) -> anyhow::Result<ExitCode> {
    rebuild::select(&args.projection)?;
    let shadows = rebuild::shadows(store)
        .await
        .context("opening the read-model tables")?;
    let cancel = Arc::new(AtomicBool::new(false));
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.store(true, Ordering::Release);
        }
    });
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events  {per_sec}  ~{eta} left",
        )
        .expect("a valid template"),
    );
    let config = ReplayConfig {
        batch_events: args.batch,
        ..ReplayConfig::default()
    };
    let summary = rebuild::replay(
        log.as_ref(),
        shadows.as_ref(),
        args.until,
        &config,
        &cancel,
        |p| {
            bar.set_length(p.end.saturating_sub(p.start));
            bar.set_position(p.position.saturating_sub(p.start));
        },
    )
    .await;
    bar.finish_and_clear();
    let summary = summary?;
    let resumed = if summary.resumed_from > 0 {
        format!(" (resumed after position {})", summary.resumed_from)
    } else {
        String::new()
    };
    outln!(
        "{} events in {:.2} s: {:.0} events/s{resumed}",
        summary.events,
        summary.seconds,
        summary.events_per_second()
    )?;
    if summary.completed && args.until.is_some() {
        outln!(
            "tables built as of position {} in {}",
            summary.position,
            summary.target
        )?;
        Ok(ExitCode::SUCCESS)
    } else if summary.completed {
        outln!(
            "tables rebuilt to position {} in {} and switched",
            summary.position,
            summary.target
        )?;
        Ok(ExitCode::SUCCESS)
    } else {
        outln!(
            "interrupted at position {}; run the same command again to resume",
            summary.position
        )?;
        Ok(ExitCode::from(130))
    }
}
