//! [`Subscription`]: the one way to follow the log. Every tail loop (the tables' projector,
//! the process managers, the event relay, the handler's directory catch-up) catches up from
//! a position, takes the next batch of at most N events, and waits for the log to move or
//! for [`Shutdown`], through this type (`serve`'s projector job runs the tables' projector's
//! own loop).
//!
//! Why one: each loop used to carry its own short-batch logic. The rule is the log's, so it
//! is written here once. Positions are contiguous and in commit order, so a filtered read
//! that comes back short, after the head was read, has seen every event up to that head,
//! matching or not: the follower's position moves there even past the last event it got.
//! Without it a follower of a rare category reads the same foreign events again at every
//! catch-up, and a tail waiting beyond its last matching event wakes at once, for ever.

use std::time::Duration;

use crate::error::Error;
use crate::event_log::EventLog;
use crate::shutdown::Shutdown;
use crate::types::{Filter, Position, StoredEvent, READ_BATCH_MAX};

/// Where a follower of the log stands, and what it reads: events after [`position`]
/// (`Subscription::position`) that pass its filter, at most `batch_max` at a time.
#[derive(Debug, Clone)]
pub struct Subscription {
    position: Position,
    filter: Filter<'static>,
    batch_max: usize,
}

/// One batch of a [`Subscription`].
#[derive(Debug, Clone)]
pub struct Batch {
    /// The events that pass the filter, in position order (possibly none).
    pub events: Vec<StoredEvent>,
    /// Every matching event up to here is in this batch or an earlier one: the follower's
    /// checkpoint may move here even when `events` is empty.
    pub through: Position,
    /// The head as this read knew it (read before the events when filtered); at least
    /// `through`.
    pub head: Position,
    /// The read returned as many events as it asked for: more may follow at once. A batch
    /// that is not full ends a catch-up.
    pub full: bool,
}

/// How a [`Subscription::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The log's head when the wait ended: beyond the position waited on, or not if the wait
    /// timed out (the caller looks again either way).
    Head(Position),
    /// The shutdown signal fired first.
    Shutdown,
}

/// Waits until the log's head is beyond `after`, `max_wait` passes, or `shutdown` fires.
async fn wait_or_shutdown<L: EventLog + ?Sized>(
    log: &L,
    after: Position,
    max_wait: Duration,
    shutdown: &mut Shutdown,
) -> Result<Waited, Error> {
    tokio::select! {
        head = log.wait_beyond(after, max_wait) => head.map(Waited::Head),
        _ = shutdown.wait() => Ok(Waited::Shutdown),
    }
}

impl Subscription {
    /// A subscription to the events after `position` that pass `filter`, read at most
    /// `batch_max` (clamped to 1..=[`READ_BATCH_MAX`]) at a time.
    pub fn after(position: Position, filter: Filter<'static>, batch_max: usize) -> Subscription {
        Subscription {
            position,
            filter,
            batch_max: batch_max.clamp(1, READ_BATCH_MAX),
        }
    }

    /// Every matching event up to here has been returned.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Most events one batch holds.
    pub fn batch_max(&self) -> usize {
        self.batch_max
    }

    /// Goes on from `position` instead (a follower whose checkpoint is elsewhere: reloaded
    /// after another writer moved it, or not moved because its batch failed).
    pub fn seek(&mut self, position: Position) {
        self.position = position;
    }

    /// The next batch after the position, which moves to the batch's `through`. A filtered
    /// subscription reads the head first, and reads nothing when the head is not beyond its
    /// position.
    pub async fn next_batch<L: EventLog + ?Sized>(&mut self, log: &L) -> Result<Batch, Error> {
        let head = match self.filter {
            Filter::All => None,
            Filter::Categories(_) => Some(log.head().await?),
        };
        if let Some(head) = head.filter(|head| *head <= self.position) {
            return Ok(Batch {
                events: Vec::new(),
                through: self.position,
                head,
                full: false,
            });
        }
        let events = log
            .read_all(self.position, self.batch_max, self.filter)
            .await?;
        let full = events.len() >= self.batch_max;
        let last = events.last().map_or(self.position, |e| e.position);
        // The module doc's rule: a short filtered read has seen everything up to the head.
        let through = match head {
            Some(head) if !full => last.max(head),
            _ => last,
        };
        self.position = through;
        Ok(Batch {
            events,
            through,
            head: head.unwrap_or(through).max(through),
            full,
        })
    }

    /// Waits until the log moves beyond the position, `max_wait` passes, or `shutdown`
    /// fires.
    pub async fn wait<L: EventLog + ?Sized>(
        &self,
        log: &L,
        max_wait: Duration,
        shutdown: &mut Shutdown,
    ) -> Result<Waited, Error> {
        wait_or_shutdown(log, self.position, max_wait, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryLog;
    use crate::{AppendRequest, ExpectedVersion, Metadata, NewEvent};

    async fn append(log: &MemoryLog, stream: &str) {
        let command_id = uuid::Uuid::now_v7();
        let request = AppendRequest {
            stream: stream.to_owned(),
            expected: ExpectedVersion::Any,
            command_id,
            events: vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "thing_happened".to_owned(),
                schema_version: 1,
                data: serde_json::json!({}),
                metadata: Metadata {
                    command_id,
                    correlation_id: command_id,
                    causation_id: command_id,
                    actor: closeloop_domain::Actor::system("subscription-test"),
                    occurred_at: jiff::Timestamp::UNIX_EPOCH,
                    recorded_at: jiff::Timestamp::UNIX_EPOCH,
                    command_hash: None,
                },
            }],
            unchanged: None,
        };
        log.append(request).await.expect("append");
    }

    /// A filtered follower moves to the head on a short read, past the foreign events after
    /// its last match, and a full read leaves it at its last event.
    #[tokio::test]
    async fn a_short_filtered_batch_moves_to_the_head() {
        let log = MemoryLog::new();
        for stream in ["ticket-1", "agent-a", "ticket-2", "agent-b", "agent-c"] {
            append(&log, stream).await;
        }
        let mut tickets = Subscription::after(0, Filter::Categories(&["ticket"]), 1);
        let first = tickets.next_batch(&log).await.unwrap();
        assert_eq!(
            (first.events.len(), first.through, first.full),
            (1, 1, true)
        );
        let second = tickets.next_batch(&log).await.unwrap();
        assert_eq!(second.events[0].position, 3);
        assert!(second.full);
        let third = tickets.next_batch(&log).await.unwrap();
        assert!(third.events.is_empty());
        assert_eq!((third.through, third.head, third.full), (5, 5, false));
        assert_eq!(tickets.position(), 5);

        let mut all = Subscription::after(3, Filter::All, 10);
        let rest = all.next_batch(&log).await.unwrap();
        assert_eq!((rest.events.len(), rest.through, rest.full), (2, 5, false));
        let none = all.next_batch(&log).await.unwrap();
        assert!(none.events.is_empty());
        assert_eq!(none.through, 5);
    }

    /// A wait ends with the head once the log moves, and with `Shutdown` once it fires.
    #[tokio::test]
    async fn a_wait_ends_on_news_or_on_shutdown() {
        let log = MemoryLog::new();
        append(&log, "ticket-1").await;
        let (trigger, mut shutdown) = Shutdown::new();
        let at_head = Subscription::after(1, Filter::All, 10);
        let behind = Subscription::after(0, Filter::All, 10);
        let long = Duration::from_secs(3600);
        assert_eq!(
            behind.wait(&log, long, &mut shutdown).await.unwrap(),
            Waited::Head(1)
        );
        trigger.fire();
        assert_eq!(
            at_head.wait(&log, long, &mut shutdown).await.unwrap(),
            Waited::Shutdown
        );
    }
}
