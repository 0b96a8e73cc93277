//! `closeloop replay PROJECTION|all [--until TIME|POSITION]`: rebuild read models from the log
//! beside the live ones, with a progress bar, then switch atomically (closeloop-replay's
//! `rebuild.rs`). Ctrl-C stops after the current batch, saved; running again resumes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use closeloop_core::log::EventLog;
use closeloop_projections::store::open_store;
use closeloop_replay::rebuild::{self, ReplayConfig, Until};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// sla, satisfaction, performance, or all.
    projection: String,
    /// Build the model as of this log position or business time (RFC 3339) into a separate
    /// model `<name>@<until>`, leaving the live one alone (read it with
    /// `report NAME --replayed UNTIL`).
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
    let projections = rebuild::select(&args.projection)?;
    let checkpoints = open_store(store)
        .await
        .context("opening read-model storage")?;
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
        checkpoints.as_ref(),
        &projections,
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
    println!(
        "{} events in {:.2} s: {:.0} events/s{resumed}",
        summary.events,
        summary.seconds,
        summary.events_per_second()
    );
    if summary.completed {
        println!(
            "{} rebuilt to position {} and switched",
            summary.targets.join(", "),
            summary.position
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "interrupted at position {}; run the same command again to resume",
            summary.position
        );
        Ok(ExitCode::from(130))
    }
}
