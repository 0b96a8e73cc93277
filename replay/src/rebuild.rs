//! `closeloop replay PROJECTION|all [--until TIME|POSITION]`: rebuilds read models from
//! position zero into a **new** version of the model while the live one keeps serving, then
//! switches atomically (blue/green).
//!
//! - The rebuild folds the log in bounded batches (at most `batch_events` per read) into a
//!   row of the checkpoint store under a temporary name, `<target>~rebuild`, with its own
//!   checkpoint: it is saved at most every `save_interval_ms` and when interrupted, so an
//!   interrupted replay (Ctrl-C, a crash) continues where it stopped when run again.
//! - When the rebuild reaches its end (the head of the log, or `--until`), every temporary
//!   row is promoted to its target with [`CheckpointStore::promote`]: one transaction per
//!   projection replaces the target row, so readers see the old model or the new one.
//! - Without `--until` the target is the live model (`sla`, ...). With `--until` it is a
//!   separate model as of that point, `<name>@<until>` (e.g. `sla@1200`,
//!   `sla@2026-11-01T00:00:00Z`), and the live one is left alone; [`load_models`] reads it
//!   back (`closeloop report NAME --replayed UNTIL`).
//! - All selected projections are folded in one pass over the log: each event is read and
//!   decoded once. The fold is the projections' own `apply`, so (principle 2) the result is
//!   byte for byte the model live processing gave at the same position.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use closeloop_core::log::{stream_category, EventLog, Filter, Position, READ_BATCH_MAX};
use closeloop_projections::models::{ReadModels, REPORTS};
use closeloop_projections::performance::PerformanceModel;
use closeloop_projections::record::Record;
use closeloop_projections::report::ScoreWeights;
use closeloop_projections::runtime::{Projection, Status};
use closeloop_projections::satisfaction::SatisfactionModel;
use closeloop_projections::sla::SlaModel;
use closeloop_projections::store::CheckpointStore;
use jiff::Timestamp;

use crate::Error;

/// Suffix of the row a rebuild writes before it is promoted.
pub const REBUILD_SUFFIX: &str = "~rebuild";

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
    /// The name of the model of `projection` as of this point: `<projection>@<until>`.
    pub fn target(&self, projection: &str) -> String {
        format!("{projection}@{self}")
    }
}

/// The projections `closeloop replay` knows: `sla`, `satisfaction`, `performance`, or `all`.
pub fn select(name: &str) -> Result<Vec<&'static str>, Error> {
    match name {
        "all" => Ok(REPORTS.to_vec()),
        other => REPORTS
            .iter()
            .find(|r| **r == other)
            .map(|r| vec![*r])
            .ok_or_else(|| Error::UnknownProjection(other.to_owned())),
    }
}

/// Tunables, each with its unit.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Events read per batch (at most [`READ_BATCH_MAX`]).
    pub batch_events: usize,
    /// Save the rebuild's state and checkpoint at least this often (milliseconds).
    pub save_interval_ms: u64,
    /// Stop (as if interrupted, after saving) after this many batches; for tests.
    pub stop_after_batches: Option<u64>,
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            batch_events: READ_BATCH_MAX,
            save_interval_ms: 2_000,
            stop_after_batches: None,
        }
    }
}

/// How far a replay is, after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Last position folded.
    pub position: Position,
    /// Where it will stop as far as known now (the head of the log, or `--until`).
    pub end: Position,
    /// Where this run started (a resumed rebuild starts past 0).
    pub start: Position,
    /// Events folded by this run.
    pub events: u64,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The models written (after the switch), or to be written (when interrupted).
    pub targets: Vec<String>,
    /// Position this run started after (0, or where an interrupted rebuild had stopped).
    pub resumed_from: Position,
    /// The position the models reflect.
    pub position: Position,
    /// Events read and folded by this run.
    pub events: u64,
    pub seconds: f64,
    /// False when interrupted: the rebuild is saved and continues on the next run.
    pub completed: bool,
}

impl Summary {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One projection being rebuilt (type-erased so several fold in one pass).
trait Rebuilding: Send {
    fn name(&self) -> &'static str;
    fn categories(&self) -> &'static [&'static str];
    fn position(&self) -> Position;
    fn set_position(&mut self, position: Position);
    fn apply(&mut self, record: &Record) -> Result<(), String>;
    fn version(&self) -> u32;
    fn state(&self) -> String;
}

struct Slot<P: Projection> {
    model: P,
    position: Position,
}

impl<P: Projection> Rebuilding for Slot<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn categories(&self) -> &'static [&'static str] {
        P::CATEGORIES
    }
    fn position(&self) -> Position {
        self.position
    }
    fn set_position(&mut self, position: Position) {
        self.position = position;
    }
    fn apply(&mut self, record: &Record) -> Result<(), String> {
        self.model.apply(record)
    }
    fn version(&self) -> u32 {
        P::VERSION
    }
    fn state(&self) -> String {
        self.model.to_state()
    }
}

/// Loads the rebuild saved under `temp` (same projection version), or starts empty.
async fn resume<P: Projection>(
    store: &dyn CheckpointStore,
    temp: &str,
) -> Result<Box<dyn Rebuilding>, Error> {
    let slot = match store.load(temp).await? {
        Some(c) if c.version == P::VERSION => {
            let mut model: P = serde_json::from_str(&c.state)
                .map_err(|e| Error::Corrupt(format!("{temp}: {e}")))?;
            model
                .restored()
                .map_err(|e| Error::Corrupt(format!("{temp}: {e}")))?;
            Slot {
                model,
                position: c.position,
            }
        }
        _ => Slot {
            model: P::default(),
            position: 0,
        },
    };
    Ok(Box::new(slot))
}

async fn open_slot(
    store: &dyn CheckpointStore,
    name: &str,
    temp: &str,
) -> Result<Box<dyn Rebuilding>, Error> {
    if name == SlaModel::NAME {
        resume::<SlaModel>(store, temp).await
    } else if name == SatisfactionModel::NAME {
        resume::<SatisfactionModel>(store, temp).await
    } else if name == PerformanceModel::NAME {
        resume::<PerformanceModel>(store, temp).await
    } else {
        Err(Error::UnknownProjection(name.to_owned()))
    }
}

/// The name a projection's model is written to: the live name, or `<name>@<until>`.
pub fn target_name(projection: &str, until: Option<Until>) -> String {
    until.map_or_else(|| projection.to_owned(), |u| u.target(projection))
}

/// Rebuilds `projections` (names from [`select`]) from the log into their targets, resuming
/// a rebuild an earlier run left. `cancel` turning true stops it after the current batch,
/// saved; `progress` is called after every batch.
pub async fn replay(
    log: &dyn EventLog,
    store: &dyn CheckpointStore,
    projections: &[&'static str],
    until: Option<Until>,
    config: &ReplayConfig,
    cancel: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<Summary, Error> {
    let started = Instant::now();
    let targets: Vec<String> = projections.iter().map(|p| target_name(p, until)).collect();
    let temps: Vec<String> = targets
        .iter()
        .map(|t| format!("{t}{REBUILD_SUFFIX}"))
        .collect();
    let mut slots = Vec::with_capacity(projections.len());
    for (name, temp) in projections.iter().zip(&temps) {
        slots.push(open_slot(store, name, temp).await?);
    }
    let mut categories: Vec<&'static str> = Vec::new();
    for slot in &slots {
        for c in slot.categories() {
            if !categories.contains(c) {
                categories.push(c);
            }
        }
    }
    // With `--until TIME` every event is read: the first one that occurred after TIME ends
    // the replay whatever its category, so the bound does not depend on which projections
    // are selected.
    let filter = match until {
        Some(Until::Time(_)) => Filter::All,
        _ => Filter::Categories(&categories),
    };
    let limit = config.batch_events.clamp(1, READ_BATCH_MAX);
    let start = slots.iter().map(|s| s.position()).min().unwrap_or(0);
    let mut after = start;
    let mut events = 0u64;
    let mut batches = 0u64;
    let mut last_save = Instant::now();
    let mut saved_at = start;
    // A `--until TIME` bound becomes a position once the first later event is seen.
    let mut end_fixed = match until {
        Some(Until::Position(p)) => Some(p),
        _ => None,
    };
    let mut completed = false;
    // The next batch, read while the previous one was folded: (read after, result).
    let mut prefetched = None;
    while !completed {
        if cancel.load(Ordering::Acquire) || config.stop_after_batches.is_some_and(|n| batches >= n)
        {
            break;
        }
        let head = log.head().await?;
        let end = end_fixed.map_or(head, |p| p.min(head));
        if after >= end {
            after = after.max(end);
            completed = true;
            break;
        }
        let mut batch = match prefetched.take() {
            Some((from, read)) if from == after => read?,
            _ => log.read_all(after, limit, filter).await?,
        };
        let (full, read) = (batch.len() >= limit, batch.len());
        batch.retain(|e| e.position <= end);
        let mut reached =
            !full || batch.len() < read || batch.last().is_none_or(|e| e.position >= end);
        if let Some(Until::Time(t)) = until {
            if let Some(i) = batch.iter().position(|e| e.metadata.occurred_at > t) {
                let stop = batch[i].position - 1;
                end_fixed = Some(stop);
                batch.truncate(i);
                reached = true;
            }
        }
        let folded = batch.len();
        let last = batch.last().map(|e| e.position);
        // Fold this batch on a blocking thread while the next one is read (the read is
        // what costs most); the next read is the one the next turn would make.
        let next_after = last.filter(|_| !reached);
        let fold = tokio::task::spawn_blocking(move || {
            let result = fold_batch(&mut slots, &batch);
            (slots, result)
        });
        let next = async {
            match next_after {
                Some(from) => Some((from, log.read_all(from, limit, filter).await)),
                None => None,
            }
        };
        let (fold, next) = tokio::join!(fold, next);
        let (returned, result) = fold.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        slots = returned;
        result?;
        prefetched = next;
        events += folded as u64;
        batches += 1;
        after = if reached {
            // Positions are contiguous and in commit order: a short batch read after seeing
            // `end` has seen everything up to `end`, matching or not.
            end_fixed.map_or(end, |p| p.min(end))
        } else {
            last.unwrap_or(after)
        };
        for slot in slots.iter_mut() {
            slot.set_position(slot.position().max(after));
        }
        progress(&Progress {
            position: after,
            end: end_fixed.map_or(end, |p| p.min(end)),
            start,
            events,
        });
        if last_save.elapsed() >= Duration::from_millis(config.save_interval_ms) {
            save(store, &slots, &temps).await?;
            last_save = Instant::now();
            saved_at = after;
        }
    }
    if completed || saved_at != after {
        save(store, &slots, &temps).await?;
    }
    if completed {
        for (temp, target) in temps.iter().zip(&targets) {
            if !store.promote(temp, target).await? {
                return Err(Error::Corrupt(format!(
                    "rebuild {temp} vanished before the switch"
                )));
            }
        }
    }
    Ok(Summary {
        targets,
        resumed_from: start,
        position: after,
        events,
        seconds: started.elapsed().as_secs_f64(),
        completed,
    })
}

/// Folds one batch into every slot that has not seen its events yet (each event decoded
/// once), and moves every slot's position past it.
fn fold_batch(
    slots: &mut [Box<dyn Rebuilding>],
    batch: &[closeloop_core::log::StoredEvent],
) -> Result<(), Error> {
    for stored in batch {
        let mut record = None;
        for slot in slots.iter_mut() {
            if slot.position() >= stored.position
                || !slot.categories().contains(&stream_category(&stored.stream))
            {
                continue;
            }
            if record.is_none() {
                record = Some(Record::from_stored(stored).map_err(|e| Error::Fold {
                    projection: slot.name(),
                    position: stored.position,
                    message: e.to_string(),
                })?);
            }
            let r = record.as_ref().expect("decoded above");
            slot.apply(r).map_err(|message| Error::Fold {
                projection: slot.name(),
                position: stored.position,
                message,
            })?;
        }
        for slot in slots.iter_mut() {
            slot.set_position(slot.position().max(stored.position));
        }
    }
    Ok(())
}

async fn save(
    store: &dyn CheckpointStore,
    slots: &[Box<dyn Rebuilding>],
    temps: &[String],
) -> Result<(), Error> {
    for (slot, temp) in slots.iter().zip(temps) {
        store
            .save(temp, slot.version(), slot.position(), slot.state())
            .await?;
    }
    Ok(())
}

fn load_model<P: Projection>(
    name: &str,
    checkpoint: Option<closeloop_projections::store::Checkpoint>,
) -> Result<(Arc<RwLock<P>>, Arc<Status>), Error> {
    let c = checkpoint.ok_or_else(|| Error::NotReplayed(name.to_owned()))?;
    if c.version != P::VERSION {
        return Err(Error::NotReplayed(format!(
            "{name} (saved at projection version {}, this build folds version {}: replay again)",
            c.version,
            P::VERSION
        )));
    }
    let mut model: P =
        serde_json::from_str(&c.state).map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
    model
        .restored()
        .map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
    Ok((
        Arc::new(RwLock::new(model)),
        Arc::new(Status::fixed(P::NAME, P::VERSION, c.position)),
    ))
}

/// The read models a replay with `--until until` wrote (`<name>@<until>`), as saved: for
/// `closeloop report NAME --replayed UNTIL`. Every report model must have been replayed
/// (`closeloop replay all --until UNTIL`).
pub async fn load_models(store: &dyn CheckpointStore, until: Until) -> Result<ReadModels, Error> {
    let sla_name = until.target(SlaModel::NAME);
    let sat_name = until.target(SatisfactionModel::NAME);
    let perf_name = until.target(PerformanceModel::NAME);
    let (sla, s1) = load_model::<SlaModel>(&sla_name, store.load(&sla_name).await?)?;
    let (satisfaction, s2) =
        load_model::<SatisfactionModel>(&sat_name, store.load(&sat_name).await?)?;
    let (performance, s3) =
        load_model::<PerformanceModel>(&perf_name, store.load(&perf_name).await?)?;
    Ok(ReadModels {
        sla,
        satisfaction,
        performance,
        statuses: vec![s1, s2, s3],
        weights: ScoreWeights::default(),
    })
}
