//! The tables' projector: catch up from the log in batches, tail it, and commit each batch's
//! rows with the checkpoint in one transaction, guarded by the position the batch began at.
//! It follows the log through one [`Subscription`], moved to the checkpoint before every read
//! and every wait; [`TableProjector::tail`] is the one tail loop of the tables (`serve`'s
//! projector job and [`TableProjector::run`] both run it).
//!
//! Memory is bounded: ticket states are loaded for the tickets a batch touches (one query)
//! and kept in a cache of at most [`TableConfig::cached_tickets_max`] tickets, emptied when
//! full (the next batches load what they need again). Nothing else is held.
//!
//! Exactly once: a commit moves the checkpoint from `from` to `to` only if it is still at
//! `from`. A second writer on the same tables (two `serve` instances, or a replay swapped
//! in) makes the other's next commit fail with [`TableError::Fenced`]; that writer drops its
//! cache and batch, reloads the checkpoint and goes on from there, so no event takes effect
//! twice and none is skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use closeloop_core::log::{EventLog, Filter, Position, Shutdown, Subscription, Waited};
use uuid::Uuid;

use super::fold::{Changes, Folder, TicketWork, CATEGORIES};
use super::store::{TableError, TableStore, NAME, VERSION};
use crate::record::Record;
use crate::runtime::{ProjectorError, Status};

/// Tunables, each with its unit.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Events read and committed per batch (at most [`READ_BATCH_MAX`](closeloop_core::log::READ_BATCH_MAX)).
    pub batch_events_max: usize,
    /// Ticket states kept between batches.
    pub cached_tickets_max: usize,
    /// How long one wait for new events lasts while tailing.
    pub tail_wait_ms: u64,
}

impl Default for TableConfig {
    fn default() -> TableConfig {
        TableConfig {
            batch_events_max: 2_000,
            cached_tickets_max: 20_000,
            tail_wait_ms: 500,
        }
    }
}

/// The projector of the analysts' tables.
pub struct TableProjector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn TableStore>,
    config: TableConfig,
    /// Where the projector reads and waits: moved to the checkpoint (the truth: a fenced or
    /// failed commit leaves it elsewhere) before every read and every wait.
    subscription: Subscription,
    folder: Folder,
    works: HashMap<Uuid, TicketWork>,
    /// The generation of the tables the checkpoint and the cached states were read from.
    generation: String,
    /// Commits refused because another writer (or a replay's swap) moved the checkpoint.
    fenced: u64,
    status: Arc<Status>,
    /// Set when an event could not be folded: nothing more is folded.
    failed: Option<ProjectorError>,
}

fn store_err(e: impl std::fmt::Display) -> ProjectorError {
    ProjectorError::Store {
        projector: NAME,
        message: e.to_string(),
    }
}

impl TableProjector {
    /// Opens the tables (creating them) and loads the checkpoint.
    pub async fn open(
        log: Arc<dyn EventLog>,
        store: Arc<dyn TableStore>,
        config: TableConfig,
    ) -> Result<TableProjector, ProjectorError> {
        let status = Arc::new(Status::fixed(NAME, VERSION, 0));
        let subscription =
            Subscription::after(0, Filter::Categories(CATEGORIES), config.batch_events_max);
        let mut projector = TableProjector {
            log,
            store,
            config,
            subscription,
            folder: Folder::default(),
            works: HashMap::new(),
            generation: String::new(),
            fenced: 0,
            status,
            failed: None,
        };
        projector.reload().await?;
        Ok(projector)
    }

    /// Reads the checkpoint and the calendars again, and forgets every cached state.
    async fn reload(&mut self) -> Result<(), ProjectorError> {
        let saved = self.store.open().await.map_err(store_err)?;
        self.folder = Folder::restore(saved.calendars.as_deref()).map_err(store_err)?;
        self.works.clear();
        self.generation = saved.generation;
        self.status.set_position(saved.position);
        Ok(())
    }

    /// How many commits were fenced (and their batches dropped) since opening.
    pub fn fenced(&self) -> u64 {
        self.fenced
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Reads, folds and commits one batch; returns how many events it folded (0: caught up
    /// with the head it saw).
    pub async fn step(&mut self) -> Result<usize, ProjectorError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // The checkpoint is the truth: a fenced or failed commit leaves it elsewhere.
        let after = self.status.position();
        self.subscription.seek(after);
        let batch = self
            .subscription
            .next_batch(self.log.as_ref())
            .await
            .map_err(store_err)?;
        self.status.raise_head(batch.head);
        if batch.through == after {
            return Ok(0);
        }
        let mut records = Vec::with_capacity(batch.events.len());
        let mut missing = Vec::new();
        for stored in &batch.events {
            let record = Record::from_stored(stored).map_err(|e| ProjectorError::Apply {
                projector: NAME,
                position: e.position,
                event_type: e.event_type,
                message: e.message,
            });
            let record = match record {
                Ok(r) => r,
                Err(e) => return Err(self.fail(e)),
            };
            if let Some(id) = record.lean().ticket_id() {
                if !self.works.contains_key(&id) && !missing.contains(&id) {
                    missing.push(id);
                }
            }
            records.push(record);
        }
        if self.works.len() + missing.len() > self.config.cached_tickets_max {
            self.works.clear();
            missing = records
                .iter()
                .filter_map(|r| r.lean().ticket_id())
                .collect();
            missing.sort_unstable();
            missing.dedup();
        }
        for (id, state) in self.store.works(&missing).await.map_err(store_err)? {
            let work: TicketWork = serde_json::from_str(&state)
                .map_err(|e| store_err(format!("state of ticket {id} unreadable: {e}")))?;
            self.works.insert(id, work);
        }
        let mut changes = Changes::default();
        let mut position = after;
        for record in &records {
            if let Err(message) = self.folder.fold(record, &mut self.works, &mut changes) {
                let e = ProjectorError::Apply {
                    projector: NAME,
                    position: record.position,
                    event_type: record.event.event_type().to_owned(),
                    message,
                };
                // Commit what folded before it: the tables stay exactly at `position`.
                self.commit(after, position, changes).await?;
                return Err(self.fail(e));
            }
            position = record.position;
        }
        self.status.raise_head(position);
        self.commit(after, batch.through, changes).await?;
        Ok(batch.events.len())
    }

    async fn commit(
        &mut self,
        from: Position,
        to: Position,
        mut changes: Changes,
    ) -> Result<(), ProjectorError> {
        if to == from {
            return Ok(());
        }
        self.folder.finish(&mut changes, &self.works);
        match self.store.commit(&self.generation, from, to, changes).await {
            Ok(()) => {
                self.status.set_position(to);
                Ok(())
            }
            Err(TableError::Fenced { expected, found }) => {
                self.fenced += 1;
                tracing::info!(
                    projector = NAME,
                    expected,
                    found,
                    "another writer moved the tables' checkpoint: going on from there"
                );
                self.reload().await
            }
            Err(e) => {
                // What this batch folded into the cached states was not stored.
                self.works.clear();
                Err(store_err(e))
            }
        }
    }

    fn fail(&mut self, e: ProjectorError) -> ProjectorError {
        self.failed = Some(e.clone());
        self.status.set_error(Some(e.to_string()));
        e
    }

    /// Folds everything up to the head. Returns the position reached.
    pub async fn catch_up(&mut self) -> Result<Position, ProjectorError> {
        let result = self.fold_to_head().await;
        self.record(result)
    }

    async fn fold_to_head(&mut self) -> Result<Position, ProjectorError> {
        while self.step().await? > 0 && self.status.lag() > 0 {}
        Ok(self.status.position())
    }

    fn record<T>(&self, result: Result<T, ProjectorError>) -> Result<T, ProjectorError> {
        match &result {
            Err(e) => {
                tracing::error!(projector = NAME, error = %e, "projector stopped");
                self.status.set_error(Some(e.to_string()));
            }
            Ok(_) if self.failed.is_none() => self.status.set_error(None),
            Ok(_) => {}
        }
        result
    }

    /// The tables' tail loop: catches up, then waits for the log to move (at most
    /// [`TableConfig::tail_wait_ms`] at a time) and catches up again, until `shutdown` fires.
    /// Returns `Ok` once it has, or the error that stopped the projector: a store or log
    /// failure (worth retrying: call again, the projector goes on from its checkpoint) or an
    /// event it cannot fold ([`ProjectorError::Apply`]: it folds nothing more).
    pub async fn tail(&mut self, shutdown: &mut Shutdown) -> Result<(), ProjectorError> {
        let wait = Duration::from_millis(self.config.tail_wait_ms);
        let result = async {
            loop {
                self.fold_to_head().await?;
                if shutdown.is_set() {
                    return Ok(());
                }
                self.subscription.seek(self.status.position());
                let waited = self
                    .subscription
                    .wait(self.log.as_ref(), wait, shutdown)
                    .await
                    .map_err(store_err)?;
                match waited {
                    Waited::Head(head) => self.status.raise_head(head),
                    Waited::Shutdown => return Ok(()),
                }
            }
        }
        .await;
        self.record(result)
    }

    /// [`tail`](TableProjector::tail)s the log until `shutdown` fires, and folds once more
    /// then.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), ProjectorError> {
        self.tail(&mut shutdown).await?;
        self.catch_up().await.map(|_| ())
    }
}
