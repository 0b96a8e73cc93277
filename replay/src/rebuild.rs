//! `closeloop replay PROJECTION|all [--until TIME|POSITION]`: rebuilds read models from
//! position zero into a **new** version of the model while the live one keeps serving, then
//! switches atomically (blue/green).
//!
//! - The rebuild folds the log in bounded batches (at most `batch_events` per read) into a
//!   row of the checkpoint store under a temporary name, `<target>~rebuild`, with its own
//!   checkpoint: it is saved every `save_interval_ms` at most and when interrupted, so an
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

use closeloop_core::log::postgres::{PostgresLog, ScannedRow};
use closeloop_core::log::AsPostgres;
use closeloop_core::log::{
    stream_category, EventLog, Filter, Position, StoredEvent, READ_BATCH_MAX,
};
use closeloop_projections::fact::{FoldLean, Lean};
use closeloop_projections::models::REPORTS;
use closeloop_projections::performance::PerformanceModel;
use closeloop_projections::record::Record;
use closeloop_projections::report::ScoreWeights;
use closeloop_projections::runtime::{Projection, Status};
use closeloop_projections::satisfaction::SatisfactionModel;
use closeloop_projections::sla::SlaModel;
use closeloop_projections::store::CheckpointStore;
use jiff::Timestamp;
use tokio::sync::mpsc;

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
    /// Save the rebuild's state and checkpoint at most this often (milliseconds), further
    /// apart when saves are slow (`SAVE_SPACING`), and not when the replay is about to end
    /// anyway (`ends_within`). A periodic save only matters if the process dies (Ctrl-C
    /// saves at once), and each one rewrites the whole models: the default, 30 s, bounds
    /// what a crash loses to about half a minute of replay, where 2 s had cost a
    /// million-event replay a fifth of its time (1.4 s of 6.6 s), and 10 s a 10 M-event
    /// replay 8 s of 57 s.
    pub save_interval_ms: u64,
    /// Stop (as if interrupted, after saving) after this many batches; for tests.
    pub stop_after_batches: Option<u64>,
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            batch_events: READ_BATCH_MAX,
            save_interval_ms: 30_000,
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
    /// Folds one event in its lean form (what the report folds read).
    fn apply(&mut self, lean: &Lean) -> Result<(), String>;
    fn version(&self) -> u32;
    fn state(&self) -> String;
}

struct Slot<P: Projection> {
    model: P,
    position: Position,
}

impl<P: Projection + FoldLean> Rebuilding for Slot<P> {
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
    fn apply(&mut self, lean: &Lean) -> Result<(), String> {
        self.model.fold_lean(lean)
    }
    fn version(&self) -> u32 {
        P::VERSION
    }
    fn state(&self) -> String {
        self.model.to_state()
    }
}

/// Loads the rebuild saved under `temp` (same projection version), or starts empty.
async fn resume<P: Projection + FoldLean>(
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

/// Batches' worth of positions one PostgreSQL scan query covers (see [`PostgresLog::scan`]):
/// with the default batch, 160,000 positions, about a second of reading. Long enough that
/// starting a query (one round trip) is noise; short enough that the query's snapshot,
/// which holds back vacuum, is short-lived, and that a batch of a rare category reaches the
/// fold (progress, Ctrl-C) at least once per range.
pub const SCAN_RANGE_BATCHES: u64 = 16;

/// Saves rewrite whole models, whose size grows with the tickets: after a save that took
/// `d`, the next periodic one waits at least `SAVE_SPACING * d` (and `save_interval_ms`),
/// so saving takes at most 1 / (1 + `SAVE_SPACING`) of a replay's time whatever the size.
/// (With a fixed interval, a long log's replay ends up doing little but saving.)
pub const SAVE_SPACING: u32 = 8;

/// Batches read ahead of the fold: the reader fills the next batch while the fold works on
/// the current one. With the batch being filled and the one being folded, at most
/// `READ_AHEAD_BATCHES + 2` batches are in memory.
pub const READ_AHEAD_BATCHES: usize = 1;

/// Rebuilds `projections` (names from [`select`]) from the log into their targets, resuming
/// a rebuild an earlier run left. `cancel` turning true stops it after the current batch,
/// saved; `progress` is called after every batch.
///
/// Reading and folding overlap: a reader (polled on this task) reads and decodes batches
/// into a bounded channel while the fold of the previous batch runs on a blocking thread,
/// so on a PostgreSQL log the server, the decoding and the fold use the cores at once. From
/// PostgreSQL the reader streams ranges of positions with [`PostgresLog::scan`] and decodes
/// each event's data once, straight into its type; other backends are read with
/// [`EventLog::read_all`], batch by batch.
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
    let start = slots.iter().map(|s| s.position()).min().unwrap_or(0);
    let reading = Reading {
        log,
        until: match until {
            Some(Until::Position(p)) => Some(p),
            _ => None,
        },
        limit: config.batch_events.clamp(1, READ_BATCH_MAX),
        filter,
        categories: &categories,
        need_time: matches!(until, Some(Until::Time(_))),
    };
    let (tx, mut rx) = mpsc::channel(READ_AHEAD_BATCHES);
    let mut fold = Folding {
        slots,
        after: start,
        events: 0,
        batches: 0,
        completed: false,
    };
    let mut last_save = Instant::now();
    let mut save_every = Duration::from_millis(config.save_interval_ms);
    let mut saved_at = start;
    let folded = {
        let reader = async move {
            if let Err(e) = reading.read(start, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        };
        let folder = async {
            loop {
                if cancel.load(Ordering::Acquire)
                    || config.stop_after_batches.is_some_and(|n| fold.batches >= n)
                {
                    break;
                }
                let (mut events, mut through, mut end) = match rx.recv().await {
                    Some(Ok(Read::Batch {
                        events,
                        through,
                        end,
                    })) => (events, through, end),
                    Some(Ok(Read::End(end))) => {
                        fold.after = fold.after.max(end);
                        fold.completed = true;
                        break;
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(Error::Corrupt(
                            "the log reader stopped before the end".into(),
                        ))
                    }
                };
                let mut reached = false;
                if let Some(Until::Time(t)) = until {
                    if let Some(i) = events
                        .iter()
                        .position(|e| e.occurred_at.is_some_and(|at| at > t))
                    {
                        // The log as it stood at `t` ends before this event.
                        through = events[i].position - 1;
                        end = through;
                        events.truncate(i);
                        reached = true;
                    }
                }
                let count = events.len() as u64;
                // Fold on a blocking thread; meanwhile this task keeps polling the reader.
                let mut slots = std::mem::take(&mut fold.slots);
                let (slots, result) = tokio::task::spawn_blocking(move || {
                    let result = fold_batch(&mut slots, &events);
                    (slots, result)
                })
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                fold.slots = slots;
                result?;
                fold.events += count;
                fold.batches += 1;
                fold.after = through;
                for slot in fold.slots.iter_mut() {
                    slot.set_position(slot.position().max(through));
                }
                progress(&Progress {
                    position: through,
                    end,
                    start,
                    events: fold.events,
                });
                if reached {
                    fold.completed = true;
                    break;
                }
                if last_save.elapsed() >= save_every
                    && !ends_within(save_every, started.elapsed(), start, through, end)
                {
                    let saving = Instant::now();
                    fold.slots = save(store, std::mem::take(&mut fold.slots), &temps).await?;
                    last_save = Instant::now();
                    save_every = Duration::from_millis(config.save_interval_ms)
                        .max(saving.elapsed() * SAVE_SPACING);
                    saved_at = through;
                }
            }
            Ok(())
        };
        tokio::pin!(reader, folder);
        tokio::select! {
            biased;
            done = &mut folder => done,
            () = &mut reader => folder.await,
        }
        // The reader (and a scan it may hold) is dropped here.
    };
    folded?;
    let Folding {
        slots,
        after,
        events,
        completed,
        ..
    } = fold;
    if completed || saved_at != after {
        save(store, slots, &temps).await?;
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

/// The fold's side of a replay.
struct Folding {
    slots: Vec<Box<dyn Rebuilding>>,
    /// Every event up to here is folded (or not for any selected projection).
    after: Position,
    /// Events folded by this run.
    events: u64,
    batches: u64,
    completed: bool,
}

/// One event read for a rebuild.
struct Scanned {
    position: Position,
    /// Business time, read only for `--until TIME`.
    occurred_at: Option<Timestamp>,
    /// Its stream's category, if a selected projection folds it; `None` for one read only
    /// for `--until TIME`.
    category: Option<&'static str>,
    body: Body,
}

enum Body {
    /// Decoded from a stored event (backends other than PostgreSQL).
    Record(Record),
    /// The serialized envelope, decoded into its lean form by the fold (PostgreSQL): the
    /// decoding then runs on the fold's thread, beside the reader's, and borrows from it.
    Json(Vec<u8>),
    /// It does not decode; an error only if a projection that has not seen it yet folds it.
    Failed(String),
    /// A category no selected projection folds.
    Skipped,
}

impl Reading<'_> {
    /// The selected category that `stream` belongs to, if any.
    fn category_of(&self, stream: &str) -> Option<&'static str> {
        let category = stream_category(stream);
        self.categories.iter().copied().find(|c| *c == category)
    }
}

/// What the reader hands to the fold.
enum Read {
    /// Every event with a position up to `through` (and beyond the previous batch) that
    /// passes the filter, in position order; `end` is where the reader is heading.
    Batch {
        events: Vec<Scanned>,
        through: Position,
        end: Position,
    },
    /// Everything up to this position (the head, or `--until`) has been handed over.
    End(Position),
}

/// The reader's side of a replay.
struct Reading<'a> {
    log: &'a dyn EventLog,
    /// `--until POSITION`.
    until: Option<Position>,
    /// Events per batch.
    limit: usize,
    filter: Filter<'a>,
    /// The categories the selected projections fold: only their events are decoded.
    categories: &'a [&'static str],
    /// `--until TIME`: read every event's business time.
    need_time: bool,
}

type Sender = mpsc::Sender<Result<Read, Error>>;

impl Reading<'_> {
    /// Hands every event after `after` over in batches, up to the head (re-read until it
    /// stops moving) or `--until`, then [`Read::End`]. Returns early, `Ok`, when the fold
    /// has stopped listening.
    async fn read(&self, mut after: Position, tx: &Sender) -> Result<(), Error> {
        loop {
            let head = self.log.head().await?;
            let end = self.until.map_or(head, |p| p.min(head));
            if after >= end {
                let _ = tx.send(Ok(Read::End(end))).await;
                return Ok(());
            }
            let reached = match self.log.as_postgres() {
                Some(pg) => self.scan(pg, after, end, tx).await?,
                None => self.page(after, end, tx).await?,
            };
            match reached {
                Some(p) => after = p,
                None => return Ok(()),
            }
        }
    }

    /// PostgreSQL: streams `(after, end]` in ranges of [`SCAN_RANGE_BATCHES`] batches'
    /// worth of positions, one query each. Returns `end`, or `None` if the fold stopped
    /// listening.
    async fn scan(
        &self,
        pg: &PostgresLog,
        after: Position,
        end: Position,
        tx: &Sender,
    ) -> Result<Option<Position>, Error> {
        let mut events = Vec::with_capacity(self.limit);
        let (mut from, mut sent) = (after, after);
        while from < end {
            let to = end.min(from.saturating_add(self.limit as u64 * SCAN_RANGE_BATCHES));
            let mut scan = pg.scan(from, to, self.filter).await?;
            while let Some(row) = scan.next().await {
                events.push(self.decode_row(&row?)?);
                if events.len() >= self.limit {
                    let through = events.last().map_or(from, |e: &Scanned| e.position);
                    let batch = std::mem::replace(&mut events, Vec::with_capacity(self.limit));
                    if !send(tx, batch, through, end).await {
                        return Ok(None);
                    }
                    sent = through;
                }
            }
            from = to;
            // The range is done: hand over what there is, so that progress and Ctrl-C never
            // wait for more than one range.
            if sent < to {
                let batch = std::mem::replace(&mut events, Vec::with_capacity(self.limit));
                if !send(tx, batch, to, end).await {
                    return Ok(None);
                }
                sent = to;
            }
        }
        Ok(Some(end))
    }

    /// Other backends: `read_all` batches up to `end`. Returns `end`, or `None` if the fold
    /// stopped listening.
    async fn page(
        &self,
        mut after: Position,
        end: Position,
        tx: &Sender,
    ) -> Result<Option<Position>, Error> {
        while after < end {
            let batch = self.log.read_all(after, self.limit, self.filter).await?;
            let (full, read) = (batch.len() >= self.limit, batch.len());
            let events: Vec<Scanned> = batch
                .into_iter()
                .filter(|e| e.position <= end)
                .map(|e| self.decode_stored(e))
                .collect();
            // Positions are contiguous and in commit order: a short batch, or one that
            // reached `end`, has seen everything up to `end`, matching or not.
            let reached =
                !full || events.len() < read || events.last().is_none_or(|e| e.position >= end);
            let through = match events.last() {
                Some(e) if !reached => e.position,
                _ => end,
            };
            if !send(tx, events, through, end).await {
                return Ok(None);
            }
            after = through;
        }
        Ok(Some(end))
    }

    fn decode_stored(&self, stored: StoredEvent) -> Scanned {
        let occurred_at = self.need_time.then_some(stored.metadata.occurred_at);
        let category = self.category_of(&stored.stream);
        let body = match category {
            Some(_) => match Record::from_stored(&stored) {
                Ok(record) => Body::Record(record),
                Err(e) => Body::Failed(e.to_string()),
            },
            None => Body::Skipped,
        };
        Scanned {
            position: stored.position,
            occurred_at,
            category,
            body,
        }
    }

    /// Prepares a scanned row for the fold: its fields are written as the JSON envelope
    /// [`Lean::from_json`] reads (the data as PostgreSQL printed it, unparsed), which the
    /// fold decodes once, straight into the lean form, the way live processing does, with
    /// the same upcasting; nothing goes through a `serde_json::Value`.
    fn decode_row(&self, row: &ScannedRow) -> Result<Scanned, Error> {
        let position = row.position()?;
        let stream = row.stream()?;
        let occurred_at = row.occurred_at()?;
        let time = if self.need_time {
            Some(occurred_at.parse::<Timestamp>().map_err(|e| {
                Error::Corrupt(format!(
                    "occurred_at of the event at position {position}: {e}"
                ))
            })?)
        } else {
            None
        };
        let category = self.category_of(stream);
        let body = match category {
            Some(_) => {
                let mut envelope = Vec::with_capacity(ENVELOPE_BYTES + row.data_json()?.len());
                write_envelope(
                    &mut envelope,
                    position,
                    stream,
                    row.event_type()?,
                    row.schema_version()?,
                    row.data_json()?,
                    occurred_at,
                );
                Body::Json(envelope)
            }
            None => Body::Skipped,
        };
        Ok(Scanned {
            position,
            occurred_at: time,
            category,
            body,
        })
    }
}

/// The envelope's bytes besides the event's data, as allocated up front.
const ENVELOPE_BYTES: usize = 192;

/// The stored-event JSON envelope, with the fields [`Lean::from_json`] reads, in the
/// order the log writes them (type and schema version before data: its one-pass path).
fn write_envelope(
    out: &mut Vec<u8>,
    position: Position,
    stream: &str,
    event_type: &str,
    schema_version: u32,
    data_json: &str,
    occurred_at: &str,
) {
    use std::io::Write;
    let text = |out: &mut Vec<u8>, s: &str| {
        serde_json::to_writer(&mut *out, s).expect("a string serializes into a Vec")
    };
    write!(out, "{{\"position\":{position},\"stream\":").expect("writing into a Vec");
    text(out, stream);
    out.extend_from_slice(b",\"type\":");
    text(out, event_type);
    write!(out, ",\"schema_version\":{schema_version},\"data\":").expect("writing into a Vec");
    out.extend_from_slice(data_json.as_bytes());
    out.extend_from_slice(b",\"metadata\":{\"occurred_at\":");
    text(out, occurred_at);
    out.extend_from_slice(b"}}");
}

/// Sends a batch; false when the fold has stopped listening.
async fn send(tx: &Sender, events: Vec<Scanned>, through: Position, end: Position) -> bool {
    tx.send(Ok(Read::Batch {
        events,
        through,
        end,
    }))
    .await
    .is_ok()
}

/// Folds one batch into every slot that has not seen its events yet, and moves every
/// slot's position past it.
fn fold_batch(slots: &mut [Box<dyn Rebuilding>], batch: &[Scanned]) -> Result<(), Error> {
    for scanned in batch {
        let position = scanned.position;
        let wants = |slot: &dyn Rebuilding| {
            slot.position() < position
                && scanned
                    .category
                    .is_some_and(|c| slot.categories().contains(&c))
        };
        // Decoded once, and only if some projection has not folded it yet.
        if let Some(first) = slots.iter().find(|s| wants(s.as_ref())) {
            let fold_error = |projection: &'static str, message: String| Error::Fold {
                projection,
                position,
                message,
            };
            let lean = match &scanned.body {
                Body::Record(record) => record.lean(),
                Body::Json(json) => {
                    Lean::from_json(json).map_err(|e| fold_error(first.name(), e.to_string()))?
                }
                Body::Failed(message) => return Err(fold_error(first.name(), message.clone())),
                Body::Skipped => unreachable!("every selected projection's category is read"),
            };
            for slot in slots.iter_mut() {
                if wants(slot.as_ref()) {
                    slot.apply(&lean)
                        .map_err(|message| fold_error(slot.name(), message))?;
                }
            }
        }
        for slot in slots.iter_mut() {
            slot.set_position(slot.position().max(position));
        }
    }
    Ok(())
}

/// Whether, at the pace so far (`through - start` positions in `elapsed`), the replay
/// reaches `end` within `window`. A periodic save is then skipped: the final save comes as
/// soon, so a crash still loses no more than about `window` of work, and the save (a
/// whole-model rewrite) is not done twice in a row.
fn ends_within(
    window: Duration,
    elapsed: Duration,
    start: Position,
    through: Position,
    end: Position,
) -> bool {
    let done = through.saturating_sub(start);
    if end <= through || done == 0 {
        return end <= through;
    }
    let left = (end - through) as f64 * elapsed.as_secs_f64() / done as f64;
    left < window.as_secs_f64()
}

/// Saves every slot under its temporary name, and hands the slots back.
///
/// The models are serialized at once, each on a thread of its own, and each is written as
/// soon as its text is ready: a save is a whole-model rewrite (2 GB of JSON for the three
/// models of a 10 M-event log), and one after the other the serializing and the writing
/// each waited for the other. This holds every model's text at once, which the memory
/// bound in the README counts.
async fn save(
    store: &dyn CheckpointStore,
    slots: Vec<Box<dyn Rebuilding>>,
    temps: &[String],
) -> Result<Vec<Box<dyn Rebuilding>>, Error> {
    let heads: Vec<(u32, Position)> = slots.iter().map(|s| (s.version(), s.position())).collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let serializing = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let threads: Vec<_> = slots
                .into_iter()
                .enumerate()
                .map(|(i, slot)| {
                    let tx = tx.clone();
                    scope.spawn(move || {
                        // The receiver only goes away when a write failed: nothing to do.
                        let _ = tx.send((i, slot.state()));
                        slot
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect::<Vec<_>>()
        })
    });
    while let Some((i, state)) = rx.recv().await {
        let (version, position) = heads[i];
        store.save(&temps[i], version, position, state).await?;
    }
    serializing
        .await
        .map_err(|e| std::panic::resume_unwind(e.into_panic()))
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

/// The tables a replay with `--until until` wrote. Interim: the replay of the tables lands
/// next; until then nothing was replayed into tables.
pub async fn open_replayed(
    _store: &str,
    until: Until,
) -> Result<std::sync::Arc<dyn closeloop_projections::tables::TableStore>, Error> {
    Err(Error::NotReplayed(until.target("tables")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periodic_save_is_skipped_only_when_the_end_is_nearer_than_the_interval() {
        let s = Duration::from_secs;
        // 100 positions in 10 s: 50 left take 5 s.
        assert!(ends_within(s(10), s(10), 0, 100, 150));
        assert!(!ends_within(s(4), s(10), 0, 100, 150));
        // Resumed at 1,000: only what this run folded sets the pace.
        assert!(!ends_within(s(10), s(10), 1_000, 1_010, 1_100));
        // Nothing folded yet: no pace to go by.
        assert!(!ends_within(s(10), s(10), 7, 7, 100));
        // At the end already.
        assert!(ends_within(s(0), s(10), 0, 100, 100));
        // An interval of zero always saves.
        assert!(!ends_within(Duration::ZERO, s(10), 0, 99, 100));
    }
}
