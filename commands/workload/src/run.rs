//! Driving a generated workload through the real command handler, counting the replies.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use closeloop_commands::{Handler, Reply};
use closeloop_core::domain::CommandEnvelope;
use jiff::{SignedDuration, Timestamp};

use crate::generate::{Day, LazyWorkload, Workload, MINUTES_PER_DAY};

/// Hands one command to the handler as received at its own business time: in a simulation
/// each command arrives when it occurs, so none is backdated or sent from the future (the
/// handler's clock is the wall clock, weeks after the simulated ones).
async fn receive(handler: &Handler, envelope: CommandEnvelope) -> Reply {
    let received = envelope.occurred_at.unwrap_or_else(Timestamp::now);
    handler.handle_at(envelope, received).await
}

/// Counts of what a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// The first few rejections, for the report.
    pub rejections: Vec<String>,
}

/// Drives a workload held whole through the handler: setup in order, then day by day with up
/// to `concurrency` tickets in flight. `progress` is called with the number of commands done.
pub async fn run(
    handler: Arc<Handler>,
    workload: &Workload,
    concurrency: usize,
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> RunStats {
    drive(
        handler,
        &workload.setup,
        dated(workload.start, workload.days.iter().cloned()),
        concurrency,
        SignedDuration::from_mins(MINUTES_PER_DAY),
        progress,
        |_| std::future::ready(()),
    )
    .await
}

/// Like [`run`] for a workload generated day by day, each day dropped once run (so memory
/// holds one day of commands), and with each day cut into ticks of `tick` (a day when `tick`
/// is a day or more): a day's directory commands first, then tick by tick the tickets'
/// commands that occur before the tick's end (each ticket in order, different tickets
/// concurrently), then `on_tick(end of the tick)`, awaited before the next tick starts. The
/// hook's own commands are not counted in the returned stats.
pub async fn run_with_ticks<F, Fut>(
    handler: Arc<Handler>,
    workload: LazyWorkload,
    concurrency: usize,
    tick: SignedDuration,
    progress: impl Fn(usize) + Send + Sync + 'static,
    on_tick: F,
) -> RunStats
where
    F: FnMut(Timestamp) -> Fut,
    Fut: Future<Output = ()>,
{
    drive(
        handler,
        &workload.setup,
        dated(workload.start, workload.days),
        concurrency,
        tick,
        progress,
        on_tick,
    )
    .await
}

/// Each day with the instant it starts.
fn dated(
    start: Timestamp,
    days: impl Iterator<Item = Day>,
) -> impl Iterator<Item = (Timestamp, Day)> {
    let day_length = SignedDuration::from_mins(MINUTES_PER_DAY);
    days.enumerate()
        .map(move |(n, day)| (start + day_length * n as i32, day))
}

/// [`run_with_ticks`] over the setup and the dated days, taking each day's commands out of
/// it as they are due (moved, not copied).
async fn drive<F, Fut>(
    handler: Arc<Handler>,
    setup: &[CommandEnvelope],
    days: impl Iterator<Item = (Timestamp, Day)>,
    concurrency: usize,
    tick: SignedDuration,
    progress: impl Fn(usize) + Send + Sync + 'static,
    mut on_tick: F,
) -> RunStats
where
    F: FnMut(Timestamp) -> Fut,
    Fut: Future<Output = ()>,
{
    let day_length = SignedDuration::from_mins(MINUTES_PER_DAY);
    let tick = tick.clamp(SignedDuration::from_secs(1), day_length);
    let progress = Arc::new(progress);
    let done = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(std::sync::Mutex::new(RunStats::default()));
    let record = {
        let stats = stats.clone();
        move |reply: &Reply| {
            let mut s = stats.lock().expect("stats lock");
            match reply {
                Reply::Accepted { .. } => s.accepted += 1,
                Reply::Duplicate { .. } => s.duplicates += 1,
                Reply::Rejected { error, .. } => {
                    s.rejected += 1;
                    if s.rejections.len() < 10 {
                        s.rejections
                            .push(serde_json::to_string(error).unwrap_or_default());
                    }
                }
            }
        }
    };
    for envelope in setup {
        record(&receive(&handler, envelope.clone()).await);
        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
    }
    for (day_start, day) in days {
        for envelope in day.directory {
            record(&receive(&handler, envelope).await);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
        }
        let day_end = day_start + day_length;
        // What is left of each ticket's lane (lanes are in time order).
        let mut left = day.tickets;
        let mut tick_end = day_start;
        while tick_end < day_end {
            tick_end = (tick_end + tick).min(day_end);
            let mut lanes = Vec::new();
            for lane in &mut left {
                // The last tick takes whatever is left (a command stamped past midnight).
                let due = if tick_end == day_end {
                    lane.len()
                } else {
                    lane.iter()
                        .take_while(|e| e.occurred_at.is_none_or(|at| at < tick_end))
                        .count()
                };
                if due > 0 {
                    lanes.push(lane.drain(..due).collect::<Vec<_>>());
                }
            }
            let queue = Arc::new(std::sync::Mutex::new(lanes));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (queue, handler, done, progress, record) = (
                    queue.clone(),
                    handler.clone(),
                    done.clone(),
                    progress.clone(),
                    record.clone(),
                );
                workers.spawn(async move {
                    loop {
                        let Some(lane) = queue.lock().expect("queue lock").pop() else {
                            break;
                        };
                        for envelope in lane {
                            record(&receive(&handler, envelope).await);
                            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                        }
                    }
                });
            }
            while let Some(joined) = workers.join_next().await {
                joined.expect("workload worker panicked");
            }
            on_tick(tick_end).await;
        }
    }
    let stats = stats.lock().expect("stats lock").clone();
    stats
}
