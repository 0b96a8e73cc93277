//! `closeloop verify`: proves the log complete and untouched, or names where it is not.

use std::collections::VecDeque;

use closeloop_core::domain::idempotency_key;
use closeloop_core::log::{
    verify_chain, ChainBreak, CommandRecord, EventLog, Filter, LogVerifier, Position, StoredEvent,
    READ_BATCH_MAX,
};

use crate::Error;

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: usize,
    pub breaks: Vec<ChainBreak>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Verifies one stream: contiguous versions from 1 and an unbroken hash chain.
pub async fn verify_stream(log: &dyn EventLog, stream: &str) -> Result<VerifyReport, Error> {
    let events = log.read_stream(stream, 0).await?;
    Ok(VerifyReport {
        events: events.len() as u64,
        streams: usize::from(!events.is_empty()),
        breaks: verify_chain(&events),
    })
}

/// Verifies the whole log in position order, in bounded batches; memory grows with the
/// number of streams, not events.
pub async fn verify_log(
    log: &dyn EventLog,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, Error> {
    let mut verifier = LogVerifier::new();
    let mut records = RecordChecker::default();
    let mut breaks = Vec::new();
    let mut after = 0;
    loop {
        let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            breaks.extend(verifier.check(event));
            breaks.extend(records.check(log, event).await?);
        }
        progress(verifier.events);
    }
    let head = log.head().await?;
    if after != head {
        breaks.push(ChainBreak {
            stream: String::new(),
            version: 0,
            position: head,
            problem: format!(
                "the head is at position {head} but the last readable event is at {after}"
            ),
        });
    }
    breaks.extend(records.finish(log, after).await?);
    Ok(VerifyReport {
        events: verifier.events,
        streams: verifier.streams(),
        breaks,
    })
}

/// Checks the idempotency records against the events, in the same pass: every append writes
/// one record, so in position order they tile the log, each covering exactly the events its
/// command appended. A record pointing at positions that are missing (a removed tail) or at
/// another command's events, and events no record covers, are breaks: a retried command
/// would otherwise be answered `duplicate` with events that are not there.
#[derive(Default)]
struct RecordChecker {
    /// Records read ahead, in position order.
    buffered: VecDeque<CommandRecord>,
    /// The record covering the current position, once reached.
    current: Option<CommandRecord>,
    /// The last position covered by a record so far.
    covered: Position,
    /// No more records beyond those buffered.
    exhausted: bool,
}

impl RecordChecker {
    async fn next_record(&mut self, log: &dyn EventLog) -> Result<Option<CommandRecord>, Error> {
        if self.buffered.is_empty() && !self.exhausted {
            let page = log.command_records(self.covered, READ_BATCH_MAX).await?;
            self.exhausted = page.is_empty();
            self.buffered.extend(page);
        }
        Ok(self.buffered.pop_front())
    }

    async fn check(
        &mut self,
        log: &dyn EventLog,
        event: &StoredEvent,
    ) -> Result<Vec<ChainBreak>, Error> {
        let mut breaks = Vec::new();
        let at = |problem: String| ChainBreak::at(event, problem);
        // Move to the record covering this position, naming every record on the way that
        // does not start where the one before ended.
        while self
            .current
            .as_ref()
            .is_none_or(|r| event.position > r.last_position)
        {
            let Some(record) = self.next_record(log).await? else {
                self.current = None;
                breaks.push(at(format!(
                    "no idempotency record covers position {}: its command's record is missing",
                    event.position
                )));
                return Ok(breaks);
            };
            if record.first_position != self.covered + 1 {
                breaks.push(at(format!(
                    "the idempotency record of key {} covers positions {}..={}, after position \
                     {}: the records do not tile the log",
                    record.command_id, record.first_position, record.last_position, self.covered
                )));
            }
            self.covered = self.covered.max(record.last_position);
            self.current = Some(record);
        }
        if let Some(record) = &self.current {
            // The record is keyed by the command id itself (the engine's own commands, and
            // appends made below the handler) or by the actor-scoped key the handler uses.
            let metadata = &event.metadata;
            let ours = record.command_id == metadata.command_id
                || record.command_id == idempotency_key(&metadata.actor, metadata.command_id);
            if event.position < record.first_position {
                breaks.push(at(format!(
                    "no idempotency record covers position {}: its command's record is missing",
                    event.position
                )));
            } else if !ours {
                breaks.push(at(format!(
                    "appended by command {}, but the idempotency record covering it is key {}'s \
                     (positions {}..={})",
                    metadata.command_id,
                    record.command_id,
                    record.first_position,
                    record.last_position
                )));
            }
        }
        Ok(breaks)
    }

    /// After the last event (at `last`): records pointing beyond it are breaks.
    async fn finish(
        &mut self,
        log: &dyn EventLog,
        last: Position,
    ) -> Result<Vec<ChainBreak>, Error> {
        let mut breaks = Vec::new();
        let mut beyond = Vec::new();
        if let Some(record) = self.current.take() {
            if record.last_position > last {
                beyond.push(record);
            }
        }
        while let Some(record) = self.next_record(log).await? {
            self.covered = record.last_position;
            beyond.push(record);
            if beyond.len() >= 100 {
                break;
            }
        }
        for record in beyond {
            breaks.push(ChainBreak {
                stream: String::new(),
                version: 0,
                position: record.first_position,
                problem: format!(
                    "the idempotency record of key {} points at positions {}..={}, beyond \
                     the last event at {last}: its events were removed, and a retry of it \
                     would be answered `duplicate` with events that are not there",
                    record.command_id, record.first_position, record.last_position
                ),
            });
        }
        Ok(breaks)
    }
}
