//! The projector runtime: a projector folds the log into its read model and keeps a
//! checkpoint (the last position it took into account) **together with** the model.
//!
//! - A [`Projection`] has a stable name and a version, and is a pure fold of [`Record`]s; its
//!   whole state serializes deterministically (sorted maps), so the state built live equals,
//!   byte for byte, the one built in one pass from position zero.
//! - A [`Runner`] owns one projection: it loads the saved state and checkpoint (discarding
//!   them if the version changed), catches up from the log in batches, then tails it with
//!   `wait_beyond`. After a batch it saves *(state, position)* in **one** write
//!   ([`CheckpointStore::save`], one transaction), so after any crash the saved state
//!   includes exactly the events up to the saved position: every event takes effect once.
//! - Runners are independent: each runs in its own task. One that fails to fold an event stops
//!   with [`ProjectorError::Apply`], naming the position and event type; the others go on.
//!   [`Status`] shows each projector's position, the head it last saw, its lag and its error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use closeloop_core::log::{EventLog, Filter, Position, READ_BATCH_MAX};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::record::Record;
use crate::store::CheckpointStore;

/// A read model folded from the log.
pub trait Projection: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name: the key of its checkpoint and stored state.
    const NAME: &'static str;
    /// Bumped when the fold or the state's shape changes: a stored state of another version
    /// is discarded and the model rebuilt from position zero.
    const VERSION: u32;
    /// The stream categories it reads.
    const CATEGORIES: &'static [&'static str];

    /// Folds one event. An `Err` stops the projector at this event.
    fn apply(&mut self, record: &Record) -> Result<(), String>;

    /// Called once after the state was loaded from storage, to rebuild caches that are not
    /// serialized.
    fn restored(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// The state as deterministic JSON.
    fn to_state(&self) -> String {
        serde_json::to_string(self).expect("read models are plain data and always serialize")
    }
}

/// What `serve` needs of any projector to keep it current: catch up, and show how far.
#[async_trait::async_trait]
pub trait CatchUp: Send + 'static {
    /// Folds everything up to the head; returns the position reached.
    async fn catch_up(&mut self) -> Result<Position, ProjectorError>;
    fn status(&self) -> Arc<Status>;
}

#[async_trait::async_trait]
impl<P: Projection> CatchUp for Runner<P> {
    async fn catch_up(&mut self) -> Result<Position, ProjectorError> {
        Runner::catch_up(self).await
    }

    fn status(&self) -> Arc<Status> {
        Runner::status(self)
    }
}

/// Why a projector stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProjectorError {
    /// An event could not be decoded or folded. The projector stops at it (its saved state
    /// stays before it) until the cause is fixed; other projectors go on.
    #[error("projector {projector} stopped at position {position} ({event_type}): {message}")]
    Apply {
        projector: &'static str,
        position: Position,
        event_type: String,
        message: String,
    },
    /// The log or the checkpoint store failed; retrying later may help.
    #[error("projector {projector}: {message}")]
    Store {
        projector: &'static str,
        message: String,
    },
}

/// How far a projector is; shared with whoever displays it.
#[derive(Debug)]
pub struct Status {
    pub name: &'static str,
    pub version: u32,
    position: AtomicU64,
    head: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Status {
    fn new(name: &'static str, version: u32) -> Status {
        Status {
            name,
            version,
            position: AtomicU64::new(0),
            head: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    /// The status of a model loaded as saved and not running (a replay target such as
    /// `sla@<until>`): fixed at `position`, which is also its head.
    pub fn fixed(name: &'static str, version: u32, position: Position) -> Status {
        let status = Status::new(name, version);
        status.position.store(position, Ordering::Release);
        status.head.store(position, Ordering::Release);
        status
    }

    /// The last position folded into the model.
    pub fn position(&self) -> Position {
        self.position.load(Ordering::Acquire)
    }

    /// The head of the log when the projector last looked.
    pub fn head(&self) -> Position {
        self.head.load(Ordering::Acquire)
    }

    /// Positions behind the head (as last seen).
    pub fn lag(&self) -> u64 {
        self.head().saturating_sub(self.position())
    }

    pub(crate) fn set_position(&self, position: Position) {
        self.position.store(position, Ordering::Release);
        self.head.fetch_max(position, Ordering::AcqRel);
    }

    pub(crate) fn raise_head(&self, head: Position) {
        self.head.fetch_max(head, Ordering::AcqRel);
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        *self.error.lock().expect("status lock") = error;
    }

    /// Why it stopped, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("status lock").clone()
    }
}

/// Tunables, each with its unit.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events read per batch (at most [`READ_BATCH_MAX`]).
    pub batch_events_max: usize,
    /// Save state and checkpoint at least this often while events flow.
    pub save_interval_ms: u64,
    /// How long one `wait_beyond` waits while tailing.
    pub tail_wait_ms: u64,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            batch_events_max: READ_BATCH_MAX,
            save_interval_ms: 1_000,
            tail_wait_ms: 500,
        }
    }
}

/// One projector: its model, its checkpoint, its status.
pub struct Runner<P: Projection> {
    log: Arc<dyn EventLog>,
    store: Arc<dyn CheckpointStore>,
    model: Arc<RwLock<P>>,
    status: Arc<Status>,
    config: RunnerConfig,
    /// Position of the last save.
    saved: Position,
    last_save: Instant,
    /// Set when an event could not be folded: the runner folds nothing more.
    failed: Option<ProjectorError>,
}

impl<P: Projection> Runner<P> {
    /// Loads the projector's saved state and checkpoint (or starts empty).
    pub async fn open(
        log: Arc<dyn EventLog>,
        store: Arc<dyn CheckpointStore>,
        config: RunnerConfig,
    ) -> Result<Runner<P>, ProjectorError> {
        let store_err = |message: String| ProjectorError::Store {
            projector: P::NAME,
            message,
        };
        let loaded = store
            .load(P::NAME)
            .await
            .map_err(|e| store_err(e.to_string()))?;
        let (model, position) = match loaded {
            Some(c) if c.version == P::VERSION => {
                let mut model: P = serde_json::from_str(&c.state)
                    .map_err(|e| store_err(format!("stored state unreadable: {e}")))?;
                model.restored().map_err(store_err)?;
                (model, c.position)
            }
            Some(c) if c.version > P::VERSION => {
                return Err(store_err(
                    crate::store::superseded(P::NAME, c.version, P::VERSION).to_string(),
                ))
            }
            Some(c) => {
                tracing::info!(
                    projector = P::NAME,
                    stored = c.version,
                    current = P::VERSION,
                    "projector version changed: rebuilding from position 0"
                );
                (P::default(), 0)
            }
            None => (P::default(), 0),
        };
        let status = Arc::new(Status::new(P::NAME, P::VERSION));
        status.position.store(position, Ordering::Release);
        Ok(Runner {
            log,
            store,
            model: Arc::new(RwLock::new(model)),
            status,
            config,
            saved: position,
            last_save: Instant::now(),
            failed: None,
        })
    }

    /// The live model (read it under the lock).
    pub fn model(&self) -> Arc<RwLock<P>> {
        self.model.clone()
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    fn store_err(e: impl std::fmt::Display) -> ProjectorError {
        ProjectorError::Store {
            projector: P::NAME,
            message: e.to_string(),
        }
    }

    /// Reads and folds one batch; returns how many events it folded (0: caught up with the
    /// head it saw).
    pub async fn step(&mut self) -> Result<usize, ProjectorError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let after = self.status.position();
        let head = self.log.head().await.map_err(Self::store_err)?;
        self.status.head.fetch_max(head, Ordering::AcqRel);
        if head <= after {
            return Ok(0);
        }
        let limit = self.config.batch_events_max.clamp(1, READ_BATCH_MAX);
        let batch = self
            .log
            .read_all(after, limit, Filter::Categories(P::CATEGORIES))
            .await
            .map_err(Self::store_err)?;
        let mut position = after;
        let mut failure = None;
        {
            let mut model = self.model.write().expect("model lock poisoned");
            for stored in &batch {
                let failed = |message: String| ProjectorError::Apply {
                    projector: P::NAME,
                    position: stored.position,
                    event_type: stored.event_type.clone(),
                    message,
                };
                let folded = Record::from_stored(stored)
                    .map_err(|e| failed(e.message))
                    .and_then(|record| model.apply(&record).map_err(failed));
                match folded {
                    Ok(()) => position = stored.position,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        // The batch may hold events appended after `head` was read: the head is at least
        // as far as the last of them (else the status would show a head behind its position).
        self.status.head.fetch_max(position, Ordering::AcqRel);
        if let Some(e) = failure {
            // The model holds exactly the events up to `position`: saving stays consistent.
            self.status.position.store(position, Ordering::Release);
            self.failed = Some(e.clone());
            return Err(e);
        }
        // Positions are contiguous and in commit order: a short batch read after seeing
        // `head` has seen every event up to `head`, matching or not.
        if batch.len() < limit {
            position = position.max(head);
        }
        self.status.position.store(position, Ordering::Release);
        Ok(batch.len())
    }

    /// Saves the model and its position in one write, if anything changed since the last
    /// save.
    pub async fn save(&mut self) -> Result<(), ProjectorError> {
        let position = self.status.position();
        if position == self.saved {
            return Ok(());
        }
        let state = self.model.read().expect("model lock poisoned").to_state();
        self.store
            .save(P::NAME, P::VERSION, position, state)
            .await
            .map_err(Self::store_err)?;
        self.saved = position;
        self.last_save = Instant::now();
        Ok(())
    }

    /// Folds everything up to the head, then saves. Returns the position reached.
    pub async fn catch_up(&mut self) -> Result<Position, ProjectorError> {
        let result = self.catch_up_inner().await;
        self.record(result)
    }

    async fn catch_up_inner(&mut self) -> Result<Position, ProjectorError> {
        loop {
            let folded = self.step().await?;
            if folded == 0 || self.status.lag() == 0 {
                break;
            }
            if self.last_save.elapsed() >= Duration::from_millis(self.config.save_interval_ms) {
                self.save().await?;
            }
        }
        self.save().await?;
        Ok(self.status.position())
    }

    /// Shows the outcome in the status. A store error (the log or the checkpoint store
    /// unreachable for a while) is shown until a later catch-up succeeds; an event it could
    /// not fold stays shown, since the projector never passes it.
    fn record<T>(&self, result: Result<T, ProjectorError>) -> Result<T, ProjectorError> {
        let mut error = self.status.error.lock().expect("status lock");
        match &result {
            Err(e) => {
                tracing::error!(projector = P::NAME, error = %e, "projector stopped");
                *error = Some(e.to_string());
            }
            Ok(_) if self.failed.is_none() => *error = None,
            Ok(_) => {}
        }
        drop(error);
        result
    }

    /// Catches up, then tails the log until `shutdown` turns true; saves before returning.
    pub async fn run(
        mut self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ProjectorError> {
        let result = async {
            self.catch_up_inner().await?;
            while !*shutdown.borrow() {
                let wait = Duration::from_millis(self.config.tail_wait_ms);
                tokio::select! {
                    head = self.log.wait_beyond(self.status.position(), wait) => {
                        let head = head.map_err(Self::store_err)?;
                        self.status.head.fetch_max(head, Ordering::AcqRel);
                    }
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            break; // nobody can ask us to stop any more: stop now
                        }
                    }
                }
                while self.step().await? > 0 {
                    if self.last_save.elapsed()
                        >= Duration::from_millis(self.config.save_interval_ms)
                    {
                        self.save().await?;
                    }
                }
                self.save().await?;
            }
            Ok(())
        }
        .await;
        self.record(result)
    }
}
