//! `closeloop replay tables|all [--until TIME|POSITION]`: rebuild the read side's tables from
//! the log beside the live ones, with progress on stderr (`progress.rs`), then swap them in
//! atomically (closeloop-replay's `rebuild.rs`). Ctrl-C stops after the current batch, committed;
//! running again resumes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use closeloop_core::log::EventLog;
use closeloop_projections::tables::CATEGORIES;
use closeloop_replay::rebuild::{self, ReplayConfig, Stage, Summary, Until};

use crate::progress::{grouped, Phase};

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
    let config = ReplayConfig {
        batch_events: args.batch,
        ..ReplayConfig::default()
    };
    let finishing = if args.until.is_some() {
        "replay: building indexes and marking the build complete"
    } else {
        "replay: building indexes and swapping the tables in"
    };
    // Each stage of the replay is a phase of its own: the folding phase counts positions,
    // the save and the finish count nothing but still show they are alive.
    let mut phase = Some((
        Stage::Folding,
        Phase::start("replay: reading and folding the log", "positions", None),
    ));
    let mut folded = 0;
    let summary = rebuild::replay(
        log.as_ref(),
        shadows.as_ref(),
        args.until,
        &config,
        &cancel,
        |p| {
            if phase.as_ref().is_some_and(|(stage, _)| *stage != p.stage) {
                if let Some((_, done)) = phase.take() {
                    done.finish(if folded > 0 || p.stage == Stage::Saving {
                        format!(
                            "{} events of the tables' categories folded",
                            grouped(folded)
                        )
                    } else {
                        String::new()
                    });
                }
                let next = match p.stage {
                    Stage::Folding => {
                        Phase::start("replay: reading and folding the log", "positions", None)
                    }
                    Stage::Saving => Phase::start("replay: saving the last save point", "", None),
                    Stage::Finishing => Phase::start(finishing, "", None),
                };
                phase = Some((p.stage, next));
                folded = 0;
            }
            if let Some((Stage::Folding, bar)) = &phase {
                bar.set_total(p.end.saturating_sub(p.start));
                bar.set_position(p.position.saturating_sub(p.start));
                bar.set_message(format!("{} events folded", grouped(p.events)));
                folded = p.events;
            }
        },
    )
    .await;
    let summary = summary?;
    if let Some((_, last)) = phase.take() {
        last.finish("");
    }
    for line in summary_lines(&summary) {
        outln!("{line}")?;
    }
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

/// What a replay read and folded, in words: the log's positions it went through (each one
/// event) and, of those, the events of the tables' categories, which it folded; the others
/// (SLA policies, inspectors, complaint causes) feed no table and are skipped, so
/// "378,688 events folded" of a log of 379,495 is not a loss.
fn summary_lines(summary: &Summary) -> Vec<String> {
    let from = summary.resumed_from + 1;
    let read = if summary.positions() == 0 {
        format!(
            "nothing to replay: the tables are already at position {}",
            grouped(summary.position)
        )
    } else {
        format!(
            "replayed log positions {} to {} ({} events) in {:.2} s: {} events/s{}",
            grouped(from),
            grouped(summary.position),
            grouped(summary.positions()),
            summary.seconds,
            grouped((summary.positions() as f64 / summary.seconds.max(1e-9)).round() as u64),
            if summary.resumed_from > 0 {
                format!(
                    " (resumed: positions up to {} were folded by an earlier run)",
                    grouped(summary.resumed_from)
                )
            } else {
                String::new()
            }
        )
    };
    let folded = format!(
        "folded {} of them, the events of the tables' categories ({}); the other {} (SLA policies and other categories no table reads) were skipped",
        grouped(summary.events),
        CATEGORIES.join(", "),
        grouped(summary.skipped())
    );
    if summary.positions() == 0 {
        vec![read]
    } else {
        vec![read, folded]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(resumed_from: u64, position: u64, events: u64) -> Summary {
        Summary {
            target: "t".into(),
            resumed_from,
            position,
            events,
            seconds: 2.0,
            completed: true,
        }
    }

    #[test]
    fn the_summary_explains_folded_against_read() {
        let lines = summary_lines(&summary(0, 379_495, 378_688));
        assert_eq!(
            lines[0],
            "replayed log positions 1 to 379,495 (379,495 events) in 2.00 s: 189,748 events/s"
        );
        assert!(
            lines[1].starts_with(
                "folded 378,688 of them, the events of the tables' categories (ticket, "
            ) && lines[1].contains("the other 807 (SLA policies"),
            "{}",
            lines[1]
        );
        let resumed = summary_lines(&summary(1_000, 3_000, 1_990));
        assert!(resumed[0].starts_with("replayed log positions 1,001 to 3,000 (2,000 events)"));
        assert!(
            resumed[0].contains("resumed: positions up to 1,000"),
            "{}",
            resumed[0]
        );
        assert!(resumed[1].contains("the other 10 "), "{}", resumed[1]);
        let nothing = summary_lines(&summary(50, 50, 0));
        assert_eq!(
            nothing,
            vec!["nothing to replay: the tables are already at position 50"]
        );
    }
}
