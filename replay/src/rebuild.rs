//! `closeloop replay tables|all [--until TIME|POSITION]`: rebuilds the read side's tables
//! from position zero beside the live ones, then swaps them in atomically (blue/green).
//!
//! - The rebuild folds the log with the tables' own pure fold (`tables::fold`), so (principle
//!   2) it ends with exactly the rows live processing gave at the same position. It reads
//!   the log with [`EventLog::scan`] (streamed ranges, the data decoded once straight into
//!   its event type, by the reader) one batch ahead of the fold, which runs on a blocking
//!   thread, while the previous batch's rows are being written: reading and decoding,
//!   folding, and writing overlap.
//! - It writes into a build of the tables ([`Shadows`]: a sibling SQLite file, or a
//!   PostgreSQL schema `<read schema>_rebuild`), bulk-loaded (secondary indexes built at
//!   the end), with its own checkpoint, moved with the ticket states at save points (every
//!   [`SAVE_EVERY_BATCHES`] batches, and when stopped): a replay stopped by Ctrl-C or a
//!   crash resumes from the last one when run again.
//! - At the end the build is swapped in atomically ([`Shadows::finish`]); a running `serve`'s
//!   projector is fenced by the new tables' generation, reloads and goes on from their
//!   checkpoint, never overwriting them.
//! - With `--until` the build is kept under a name of its own (`<read>_until_<slug>`, a
//!   file `<path>.until-<slug>`), the live tables left alone; [`open_replayed`] reads it.
//!
//! Memory: at most [`READ_AHEAD_BATCHES`] + 2 batches of events, the states of at most
//! [`ReplayConfig::cached_tickets_max`] tickets, the rows changed since the last save point,
//! and those of at most [`COMMITS_IN_FLIGHT`] save points being committed.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use closeloop_core::log::{EventLog, Filter, Position, ScanBatch, ScannedEvent, READ_BATCH_MAX};
use closeloop_projections::record::Record;
use closeloop_projections::tables::open_shadows;
use closeloop_projections::tables::shadow::{Build, Shadows};
use closeloop_projections::tables::{Changes, Folder, TableStore, TicketWork, CATEGORIES, NAME};
use futures::StreamExt;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::Error;

/// The projections `closeloop replay` rebuilds, by name: the registry `replay NAME` checks.
pub const PROJECTIONS: &[&str] = &[NAME];

/// Where a replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The model after folding every event up to and including this position.
    Position(Position),
    /// The model of the log as it stood at this business time: every event before the first
    /// one that occurred (`occurred_at`) after it.
    Time(Timestamp),
}

impl FromStr for Until {
    type Err = String;

    fn from_str(s: &str) -> Result<Until, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Until::Position)
                .map_err(|e| format!("position `{s}`: {e}"));
        }
        s.parse().map(Until::Time).map_err(|e| {
            format!(
                "`{s}` is neither a log position nor an RFC 3339 time (2026-11-01T00:00:00Z): {e}"
            )
        })
    }
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::Position(p) => write!(f, "{p}"),
            Until::Time(t) => write!(f, "{t}"),
        }
    }
}

impl Until {
    /// The name of the tables as of this point, in file and schema names: the position, or
    /// the time as `20261101t000000z` (with `_` and nanoseconds when it has any).
    pub fn slug(&self) -> String {
        match self {
            Until::Position(p) => p.to_string(),
            Until::Time(t) => {
                let mut slug = t.strftime("%Y%m%dt%H%M%S").to_string();
                let nanos = t.subsec_nanosecond().unsigned_abs();
                if nanos != 0 {
                    slug.push_str(&format!("_{nanos:09}"));
                }
                slug.push('z');
                slug
            }
        }
    }
}

/// The projections `replay NAME` selects: one of [`PROJECTIONS`], or `all`.
pub fn select(name: &str) -> Result<Vec<&'static str>, Error> {
    match name {
        "all" => Ok(PROJECTIONS.to_vec()),
        other => PROJECTIONS
            .iter()
            .find(|p| **p == other)
            .map(|p| vec![*p])
            .ok_or_else(|| Error::UnknownProjection {
                name: other.to_owned(),
                known: PROJECTIONS.join(", "),
            }),
    }
}

/// Tunables, each with its unit.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Events read, folded and committed per batch (at most [`READ_BATCH_MAX`]). The
    /// checkpoint moves every [`SAVE_EVERY_BATCHES`] batches: what a crash costs at most.
    pub batch_events: usize,
    /// Ticket states kept between batches (tickets). A replay from zero never reads a
    /// state back until the cache is first emptied, so the larger, the fewer reads.
    pub cached_tickets_max: usize,
    /// Stop (as if interrupted) after this many batches; for tests.
    pub stop_after_batches: Option<u64>,
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            batch_events: READ_BATCH_MAX,
            cached_tickets_max: 100_000,
            stop_after_batches: None,
        }
    }
}

/// What a replay is doing: it folds batches, then saves, then finishes the build. The steps
/// after the fold can take long on a large log (the last save point's commit, the indexes),
/// so they are announced, not left to look like a stalled fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading and folding the log, batch by batch.
    Folding,
    /// Every batch folded (or stopped): the last save point is being committed.
    Saving,
    /// Saved and complete: building the indexes, then swapping the build in (or marking
    /// an `--until` build complete).
    Finishing,
}

/// How far a replay is: after each batch ([`Stage::Folding`]), and as each later stage
/// begins.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub stage: Stage,
    /// Last position folded.
    pub position: Position,
    /// Where it will stop as far as known now (the head of the log, or `--until`).
    pub end: Position,
    /// Where this run started (a resumed rebuild starts past 0).
    pub start: Position,
    /// Events folded by this run: those of the tables' categories ([`CATEGORIES`]) among
    /// the positions read.
    pub events: u64,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Where the tables were built (and, without `--until`, swapped in from).
    pub target: String,
    /// Position this run started after (0, or where an interrupted rebuild had stopped).
    pub resumed_from: Position,
    /// The position the tables reflect.
    pub position: Position,
    /// Events folded by this run: those of the tables' categories ([`CATEGORIES`]) among
    /// the positions after `resumed_from` up to `position`; the others (SLA policies,
    /// inspectors, ...) feed no table and are skipped (see [`Summary::skipped`]).
    pub events: u64,
    pub seconds: f64,
    /// False when interrupted: the build is kept and continues on the next run.
    pub completed: bool,
}

impl Summary {
    /// The log positions this run went through (every position holds one event).
    pub fn positions(&self) -> u64 {
        self.position.saturating_sub(self.resumed_from)
    }

    /// The events among [`Summary::positions`] of categories no table reads: not folded.
    pub fn skipped(&self) -> u64 {
        self.positions().saturating_sub(self.events)
    }

    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Batches between save points (see `Fold::saved`): at batches of [`READ_BATCH_MAX`] events,
/// a crash costs at most this many batches folded again, and memory holds at most the rows
/// this many batches change.
pub const SAVE_EVERY_BATCHES: u64 = 10;

/// Save points committed one after the other while the fold goes on: the fold waits only
/// when this many are still in flight. Why more than one: a save point's commit (PostgreSQL
/// copying in its rows) takes about as long as folding the batches before it, and with one
/// in flight each side waited for the other.
pub const COMMITS_IN_FLIGHT: usize = 2;

/// Batches read ahead of the fold: the reader fills the next batch while the fold works on
/// the current one.
pub const READ_AHEAD_BATCHES: usize = 1;

/// What the reader hands to the fold: batches already decoded, so decoding the next batch
/// overlaps with folding this one instead of lengthening the fold's critical path.
enum Read {
    Batch(Decoded),
    /// Everything up to this position (the head, or `--until`) has been handed over.
    End(Position),
}

/// A batch of the log, decoded: the events of the tables' categories, and how far the read
/// looked.
struct Decoded {
    records: Vec<Record>,
    through: Position,
    /// `--until TIME` is reached in this batch: nothing after it is folded.
    reached: bool,
}

type Sender = mpsc::Sender<Result<Read, Error>>;

/// Rebuilds the tables from the log into the build of `until` (the live tables' shadow
/// without it), resuming what an earlier run left, then finishes it: swaps it in, or keeps
/// it complete under its name. `cancel` turning true stops after the current batch, whose
/// commit is awaited (the next run resumes after it); `progress` is called after each batch.
pub async fn replay(
    log: &dyn EventLog,
    shadows: &dyn Shadows,
    until: Option<Until>,
    config: &ReplayConfig,
    cancel: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<Summary, Error> {
    let started = Instant::now();
    let build = until.map_or(Build::Live, |u| Build::AsOf(u.slug()));
    let head = log.head().await?;
    if let Some(Until::Position(p)) = until {
        if p > head {
            return Err(Error::UntilBeyondHead { until: p, head });
        }
    }
    let store = shadows.open(&build).await?;
    let saved = store.open().await?;
    let start = saved.position;
    if let Some(Until::Position(p)) = until {
        if start > p {
            return Err(Error::Corrupt(format!(
                "{} is at position {start}, beyond --until {p}",
                shadows.describe(&build)
            )));
        }
    }
    let mut fold = Fold {
        folder: Folder::restore(saved.calendars.as_deref()).map_err(|e| {
            Error::Corrupt(format!("calendars of {}: {e}", shadows.describe(&build)))
        })?,
        store,
        generation: saved.generation,
        works: HashMap::new(),
        // Nothing folded yet: every state there is, is in the cache.
        cache_complete: start == 0,
        cached_max: config.cached_tickets_max.max(1),
        position: start,
        saved: start,
        unsaved: Changes::default(),
        since_save: 0,
        pending: None,
        landing: Default::default(),
        events: 0,
        batches: 0,
    };
    // With `--until TIME` every event is read: the first one that occurred after TIME ends
    // the replay, whatever its category.
    let filter = match until {
        Some(Until::Time(_)) => Filter::All,
        _ => Filter::Categories(CATEGORIES),
    };
    let limit = config.batch_events.clamp(1, READ_BATCH_MAX);
    let (tx, mut rx) = mpsc::channel(READ_AHEAD_BATCHES);
    let mut completed = false;
    let mut end_seen = head;
    let folded = {
        let reader = async {
            if let Err(e) = read(log, start, until, filter, limit, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        };
        let folding = async {
            loop {
                if cancel.load(Ordering::Acquire)
                    || config.stop_after_batches.is_some_and(|n| fold.batches >= n)
                {
                    return Ok(());
                }
                let Decoded {
                    records,
                    through,
                    reached,
                } = match rx.recv().await {
                    Some(Ok(Read::Batch(batch))) => batch,
                    Some(Ok(Read::End(end))) => {
                        end_seen = end;
                        completed = true;
                        return Ok(());
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(Error::Corrupt(
                            "the log reader stopped before the end".into(),
                        ))
                    }
                };
                fold.batch(records, through).await?;
                end_seen = end_seen.max(through);
                progress(&Progress {
                    stage: Stage::Folding,
                    position: through,
                    end: match until {
                        Some(Until::Position(p)) => p,
                        _ => end_seen,
                    },
                    start,
                    events: fold.events,
                });
                if reached {
                    completed = true;
                    return Ok(());
                }
            }
        };
        tokio::pin!(reader, folding);
        tokio::select! {
            biased;
            done = &mut folding => done,
            () = &mut reader => folding.await,
        }
        // The reader (and the scan it may hold) is dropped here.
    };
    // Whatever happened, the batch being written lands (or fails) before this returns.
    let written = fold.settle().await;
    folded?;
    written?;
    let mut stage = |stage, fold: &Fold| {
        progress(&Progress {
            stage,
            position: fold.position,
            end: match until {
                Some(Until::Position(p)) => p,
                // `--until TIME` ends at the last event before it, wherever the reader was.
                Some(Until::Time(_)) if completed => fold.position,
                _ => end_seen.max(fold.position),
            },
            start,
            events: fold.events,
        })
    };
    // Stopped or done: a save point, so the next run resumes here (or the build is whole).
    stage(Stage::Saving, &fold);
    fold.save().await?;
    if completed {
        stage(Stage::Finishing, &fold);
    }
    let Fold {
        saved: position,
        events,
        ..
    } = fold;
    if completed {
        shadows.finish(&build).await?;
    }
    Ok(Summary {
        target: shadows.describe(&build),
        resumed_from: start,
        position,
        events,
        seconds: started.elapsed().as_secs_f64(),
        completed,
    })
}

/// Hands every event after `after` over in batches, up to `--until POSITION`, or up to the
/// head (read again until it stops moving), then [`Read::End`]. Returns early, `Ok`, when
/// the fold has stopped listening.
async fn read(
    log: &dyn EventLog,
    mut after: Position,
    until: Option<Until>,
    filter: Filter<'_>,
    limit: usize,
    tx: &Sender,
) -> Result<(), Error> {
    loop {
        let end = match until {
            Some(Until::Position(p)) => p,
            _ => log.head().await?,
        };
        if after >= end {
            let _ = tx.send(Ok(Read::End(after))).await;
            return Ok(());
        }
        let mut scan = log.scan(after, end, filter, limit);
        while let Some(batch) = scan.next().await {
            let ScanBatch {
                mut events,
                mut through,
            } = batch?;
            after = through;
            let mut reached = false;
            if let Some(Until::Time(t)) = until {
                if let Some(i) = events.iter().position(|e| e.occurred_at > t) {
                    // The log as it stood at `t` ends before this event.
                    through = events[i].position - 1;
                    events.truncate(i);
                    reached = true;
                }
            }
            let records = tokio::task::spawn_blocking(move || decode(&events))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            let decoded = Decoded {
                records,
                through,
                reached,
            };
            if tx.send(Ok(Read::Batch(decoded))).await.is_err() || reached {
                return Ok(());
            }
        }
    }
}

/// The fold's side of a replay: the fold's state, and the commits in flight.
struct Fold {
    folder: Folder,
    store: Arc<dyn TableStore>,
    generation: String,
    works: HashMap<Uuid, TicketWork>,
    /// Every ticket state stored is also in `works` (a replay from zero that has not
    /// emptied its cache yet): a ticket missing from it has none, nothing to read.
    cache_complete: bool,
    cached_max: usize,
    /// The last position folded.
    position: Position,
    /// The build's checkpoint: the last save point. Nothing is written between save points;
    /// a save point writes the rows and the ticket states changed since the last one and
    /// moves the checkpoint, in one transaction.
    saved: Position,
    /// What changed since the last save point: rows (each kept as the last batch left it,
    /// so a row changed by many batches is written once) and the tickets whose state changed.
    unsaved: Changes,
    /// Batches committed since the last save point.
    since_save: u64,
    /// The latest commit in flight, if any: it waits for the one before it, so awaiting it
    /// awaits every commit started (and passes on the first failure).
    pending: Option<JoinHandle<Result<(), Error>>>,
    /// When each commit in flight is done (or failed), oldest first: at most
    /// [`COMMITS_IN_FLIGHT`], so the rows held for them stay bounded.
    landing: std::collections::VecDeque<tokio::sync::oneshot::Receiver<()>>,
    events: u64,
    batches: u64,
}

impl Fold {
    /// Waits for every commit in flight.
    async fn settle(&mut self) -> Result<(), Error> {
        self.landing.clear();
        match self.pending.take() {
            Some(commit) => commit
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            None => Ok(()),
        }
    }

    /// Waits until fewer than [`COMMITS_IN_FLIGHT`] commits are in flight; a failed one
    /// stops the replay here (its error, from [`Fold::settle`]).
    async fn make_room(&mut self) -> Result<(), Error> {
        while self.landing.len() >= COMMITS_IN_FLIGHT {
            let oldest = self.landing.pop_front().expect("a commit in flight");
            if oldest.await.is_err() {
                return self.settle().await;
            }
        }
        Ok(())
    }

    /// A save point: the states of the tickets changed since the last one, and the
    /// checkpoint moved to the last position folded, in one commit (after those in flight).
    async fn save(&mut self) -> Result<(), Error> {
        self.settle().await?;
        self.start_save();
        self.settle().await
    }

    /// Starts the commit of a save point (to run after those in flight): every row
    /// changed since the last one, the states of the tickets changed, and the checkpoint
    /// moved to the last position folded.
    fn start_save(&mut self) {
        let mut changes = std::mem::take(&mut self.unsaved);
        if self.position == self.saved && changes == Changes::default() {
            return;
        }
        self.folder.finish(&mut changes, &self.works);
        let (store, generation, from, to) = (
            self.store.clone(),
            self.generation.clone(),
            self.saved,
            self.position,
        );
        let previous = self.pending.take();
        let (landed, landing) = tokio::sync::oneshot::channel();
        self.landing.push_back(landing);
        self.pending = Some(tokio::spawn(async move {
            // In order: a save point's checkpoint moves from where the one before left it.
            if let Some(previous) = previous {
                previous
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            }
            let done = store
                .commit(&generation, from, to, changes)
                .await
                .map_err(Error::from);
            let _ = landed.send(());
            done
        }));
        self.saved = to;
        self.since_save = 0;
    }

    /// Folds one decoded batch (on a blocking thread); at a save point, starts its commit,
    /// which moves the checkpoint to `through` once the commits before it have landed.
    async fn batch(&mut self, records: Vec<Record>, through: Position) -> Result<(), Error> {
        let mut missing: Vec<Uuid> = records
            .iter()
            .filter_map(Record::ticket_id)
            .filter(|id| !self.works.contains_key(id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if self.works.len() + missing.len() > self.cached_max {
            // The cached states are the only copy of what changed since the last save
            // point: store them before forgetting them.
            self.save().await?;
            self.works.clear();
            self.cache_complete = false;
            missing = records.iter().filter_map(Record::ticket_id).collect();
            missing.sort_unstable();
            missing.dedup();
        }
        if !self.cache_complete && !missing.is_empty() {
            for (id, state) in self.store.works(&missing).await? {
                let work: TicketWork = serde_json::from_str(&state)
                    .map_err(|e| Error::Corrupt(format!("stored state of ticket {id}: {e}")))?;
                self.works.insert(id, work);
            }
        }
        let count = records.len() as u64;
        let mut folder = std::mem::take(&mut self.folder);
        let mut works = std::mem::take(&mut self.works);
        let (folder, works, changes) = tokio::task::spawn_blocking(move || {
            let mut changes = Changes::default();
            let result = records.iter().try_for_each(|record| {
                folder
                    .fold(record, &mut works, &mut changes)
                    .map_err(|message| Error::Fold {
                        projection: NAME,
                        position: record.position,
                        message,
                    })
            });
            result.map(|()| (folder, works, changes))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        self.folder = folder;
        self.works = works;
        self.unsaved.merge(changes);
        self.position = self.position.max(through);
        self.since_save += 1;
        if self.since_save >= SAVE_EVERY_BATCHES {
            self.make_room().await?;
            self.start_save();
        }
        self.events += count;
        self.batches += 1;
        Ok(())
    }
}

/// The batch's events of the tables' categories, decoded.
fn decode(events: &[ScannedEvent]) -> Result<Vec<Record>, Error> {
    events
        .iter()
        .filter(|e| CATEGORIES.contains(&e.category()))
        .map(|e| {
            Record::from_scanned(e).map_err(|d| Error::Fold {
                projection: NAME,
                position: d.position,
                message: format!("{}: {}", d.event_type, d.message),
            })
        })
        .collect()
}

/// The tables a replay with `--until until` built (`closeloop replay all --until UNTIL`),
/// for `closeloop report ... --replayed UNTIL`: [`Error::NotReplayed`] when no replay
/// completed them.
pub async fn open_replayed(store_url: &str, until: Until) -> Result<Arc<dyn TableStore>, Error> {
    let shadows = open_shadows(store_url).await?;
    let build = Build::AsOf(until.slug());
    shadows
        .open_complete(&until.slug())
        .await?
        .ok_or_else(|| Error::NotReplayed(format!("{until} ({})", shadows.describe(&build))))
}

/// Where the live tables of a `--store` URL are rebuilt: for [`replay`].
pub async fn shadows(store_url: &str) -> Result<Box<dyn Shadows>, Error> {
    Ok(open_shadows(store_url).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_parses_and_names_its_build() {
        assert_eq!("1200".parse::<Until>().unwrap(), Until::Position(1200));
        assert_eq!(Until::Position(1200).slug(), "1200");
        let t: Until = "2026-11-01T00:00:00Z".parse().unwrap();
        assert_eq!(t.slug(), "20261101t000000z");
        let t: Until = "2026-11-01T08:30:05.25+01:00".parse().unwrap();
        assert_eq!(t.slug(), "20261101t073005_250000000z");
        assert!("yesterday".parse::<Until>().is_err());
        assert!("".parse::<Until>().is_err());
        for u in [Until::Position(7), t] {
            Build::AsOf(u.slug()).check().unwrap();
        }
    }

    #[test]
    fn select_knows_the_registry() {
        assert_eq!(select("all").unwrap(), vec!["tables"]);
        assert_eq!(select("tables").unwrap(), vec!["tables"]);
        let e = select("sla").unwrap_err().to_string();
        assert!(e.contains("sla") && e.contains("tables"), "{e}");
    }
}
