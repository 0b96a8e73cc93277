//! The in-memory backend: the reference implementation of the log's semantics, used by tests,
//! benchmarks and `--store memory:`. Nothing survives the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use super::*;

#[derive(Default)]
struct Inner {
    events: Vec<StoredEvent>,
    /// Stream name -> indexes into `events`, in version order.
    streams: HashMap<String, Vec<usize>>,
    commands: HashMap<Uuid, Committed>,
    /// Category -> position of its last event, for [`Unchanged`] conditions.
    category_heads: HashMap<String, Position>,
}

/// An event log held in memory.
pub struct MemoryLog {
    /// Drawn when the log is made: every `MemoryLog` is a log of its own.
    id: Uuid,
    inner: Mutex<Inner>,
    head: watch::Sender<Position>,
    keys: std::sync::Arc<MemoryKeys>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog {
            id: Uuid::new_v4(),
            inner: Mutex::new(Inner::default()),
            head: watch::channel(0).0,
            keys: Default::default(),
        }
    }
}

impl MemoryLog {
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    fn keys(&self) -> std::sync::Arc<dyn KeyStore> {
        self.keys.clone()
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        check_request(&request)?;
        let mut inner = self.inner.lock().expect("memory log lock poisoned");
        let existing = inner.commands.get(&request.command_id).cloned();
        let stream_head = || {
            Ok(inner.streams.get(&request.stream).map(|indexes| {
                let last = &inner.events[*indexes.last().expect("streams are never empty")];
                (last.version, last.hash.clone())
            }))
        };
        let category_head =
            |category: &str| Ok(inner.category_heads.get(category).copied().unwrap_or(0));
        let first_position = inner.events.len() as Position + 1;
        let (sealed, committed) = match rules::decide(
            &request,
            existing,
            stream_head,
            category_head,
            first_position,
            jiff::Timestamp::now(),
        )? {
            rules::Decision::Duplicate(first) => return Ok(AppendOutcome::Duplicate(first)),
            rules::Decision::Sealed(sealed, committed) => (sealed, committed),
        };
        let start = inner.events.len();
        inner.events.extend(sealed);
        let indexes = inner.streams.entry(request.stream.clone()).or_default();
        indexes.extend(start..start + request.events.len());
        inner.commands.insert(request.command_id, committed.clone());
        inner.category_heads.insert(
            stream_category(&request.stream).to_owned(),
            committed.position,
        );
        // Publish the head while still holding the lock, so heads are published in commit
        // order and `head()` never goes backwards.
        self.head.send_replace(inner.events.len() as Position);
        drop(inner);
        Ok(AppendOutcome::Committed(committed))
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        let inner = self.inner.lock().expect("memory log lock poisoned");
        Ok(inner
            .streams
            .get(stream)
            .map(|indexes| {
                indexes
                    .iter()
                    .map(|&i| &inner.events[i])
                    .filter(|e| e.version > after_version)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, Error> {
        let limit = limit.min(READ_BATCH_MAX);
        let inner = self.inner.lock().expect("memory log lock poisoned");
        let start = (after as usize).min(inner.events.len());
        Ok(inner.events[start..]
            .iter()
            .filter(|e| filter.accepts(&e.stream))
            .take(limit)
            .cloned()
            .collect())
    }

    /// The reference: pages of `read_all`, the semantics every faster scan must match.
    fn scan<'a>(
        &'a self,
        after: Position,
        end: Position,
        filter: Filter<'a>,
        batch_events: usize,
    ) -> Scan<'a> {
        paged_scan(self, after, end, filter, batch_events)
    }

    async fn head(&self) -> Result<Position, Error> {
        Ok(*self.head.borrow())
    }

    async fn wait_beyond(&self, after: Position, max_wait: Duration) -> Result<Position, Error> {
        let mut rx = self.head.subscribe();
        let _ = tokio::time::timeout(max_wait, rx.wait_for(|head| *head > after)).await;
        let head = *rx.borrow();
        Ok(head)
    }

    async fn find_command(&self, command_id: Uuid) -> Result<Option<Committed>, Error> {
        let inner = self.inner.lock().expect("memory log lock poisoned");
        Ok(inner.commands.get(&command_id).cloned())
    }

    async fn command_records(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, Error> {
        let inner = self.inner.lock().expect("memory log lock poisoned");
        let mut records: Vec<CommandRecord> = inner
            .commands
            .iter()
            .filter(|(_, c)| c.position > after)
            .map(|(id, c)| CommandRecord {
                command_id: *id,
                first_position: c.position + 1 - c.events.len() as u64,
                last_position: c.position,
            })
            .collect();
        records.sort_by_key(|r| r.last_position);
        records.truncate(limit.min(READ_BATCH_MAX));
        Ok(records)
    }

    async fn log_id(&self) -> Result<Uuid, Error> {
        Ok(self.id)
    }
}
