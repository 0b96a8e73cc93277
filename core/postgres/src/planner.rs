//! The pure planner: decides a batch in memory against the heads the writer knows
//! ([`HeadCache`], [`CategoryHeads`]), so that a batch is written in one round trip.

use std::collections::HashMap;

use jiff::Timestamp;
use postgres_types::Json;
use serde_json::Value;
use uuid::Uuid;

use closeloop_log::*;

use crate::common::*;

/// The writer's view of stream heads, exact while the log head is still `head`.
#[derive(Default)]
pub(crate) struct HeadCache {
    pub(crate) head: Option<Position>,
    pub(crate) streams: HashMap<String, (u64, String)>,
}

impl HeadCache {
    pub(crate) fn invalidate(&mut self) {
        self.head = None;
        self.streams.clear();
    }

    /// What the fast path assumes of a stream: its cached head, else that it is new.
    pub(crate) fn lookup(&self, stream: &str) -> Known {
        match self.streams.get(stream) {
            Some((version, hash)) => Known::Head(*version, hash.clone()),
            None => Known::AssumedNew,
        }
    }

    pub(crate) fn remember(&mut self, stream: String, head: (u64, String)) {
        if self.streams.len() >= STREAM_CACHE_MAX && !self.streams.contains_key(&stream) {
            self.streams.clear();
        }
        self.streams.insert(stream, head);
    }

    pub(crate) fn apply(&mut self, plan: &Plan) {
        self.head = Some(plan.last);
        for (stream, head) in &plan.heads {
            self.remember(stream.clone(), head.clone());
        }
    }
}

/// The last position of each stream category, exact for the events at or below `through`
/// (committed events never change, so this stays true however the cache is invalidated).
/// Checks appends' [`Unchanged`] conditions. Kept equal to the cached head whenever there
/// is one, so the fast path can check conditions without reading.
#[derive(Default, Clone)]
pub(crate) struct CategoryHeads {
    pub(crate) through: Position,
    pub(crate) last: HashMap<String, Position>,
}

impl CategoryHeads {
    pub(crate) fn raise(&mut self, category: String, position: Position) {
        let last = self.last.entry(category).or_insert(0);
        *last = (*last).max(position);
    }

    pub(crate) fn last_of(&self, category: &str) -> Position {
        self.last.get(category).copied().unwrap_or(0)
    }
}

/// What the planner knows of a stream's head.
pub(crate) enum Known {
    Head(u64, String),
    /// Read under the lock: the stream has no events.
    New,
    /// Not cached: planned as new, and the write checks that it is.
    AssumedNew,
}

/// Column arrays of the rows a batch writes.
#[derive(Default)]
pub(crate) struct Rows {
    pub(crate) positions: Vec<i64>,
    pub(crate) streams: Vec<String>,
    pub(crate) versions: Vec<i64>,
    pub(crate) event_ids: Vec<Uuid>,
    pub(crate) types: Vec<String>,
    pub(crate) schema_versions: Vec<i32>,
    pub(crate) data: Vec<Value>,
    /// Serialized straight from the struct: no intermediate `Value`.
    pub(crate) metadata: Vec<Json<Metadata>>,
    pub(crate) hashes: Vec<String>,
    pub(crate) command_ids: Vec<Uuid>,
    pub(crate) command_first: Vec<i64>,
    pub(crate) command_last: Vec<i64>,
}

/// A batch decided in memory.
pub(crate) struct Plan {
    /// The log head the batch was planned on, and its new head.
    pub(crate) first: Position,
    pub(crate) last: Position,
    pub(crate) rows: Rows,
    /// One answer per request, in batch order.
    pub(crate) outcomes: Vec<Result<AppendOutcome, Error>>,
    /// The streams written and their new heads.
    pub(crate) heads: HashMap<String, (u64, String)>,
    /// Streams planned as new without having been read and not written by the plan: the
    /// write checks that they do not exist. (A stream the plan writes as new is checked by
    /// the unique index on `(stream, version)`: its version 1 collides if it exists.)
    pub(crate) assumed_new: Vec<String>,
    /// The command ids of the requests the plan does not write: the write checks that they
    /// are not in the log. (Those it writes are checked by the primary key of `commands`.)
    pub(crate) unwritten_ids: Vec<Uuid>,
    /// The categories' last positions once the plan is committed (through `last`).
    pub(crate) categories: CategoryHeads,
}

/// Decides a batch against the head `first` and the stream heads `lookup` gives.
pub(crate) fn plan(
    batch: &[Pending],
    first: Position,
    categories: &CategoryHeads,
    lookup: impl Fn(&str) -> Known,
    known: &HashMap<Uuid, KnownCommand>,
    recorded_at: Timestamp,
) -> Plan {
    let mut planner = Planner::new(first, categories, recorded_at);
    for pending in batch {
        planner.add(pending, &lookup, known);
    }
    planner.finish()
}

/// Decides a batch request by request, so that the writer can decide each append while it
/// waits for the next one to arrive.
pub(crate) struct Planner {
    pub(crate) first: Position,
    pub(crate) next: Position,
    pub(crate) recorded_at: Timestamp,
    pub(crate) rows: Rows,
    pub(crate) outcomes: Vec<Result<AppendOutcome, Error>>,
    pub(crate) heads: HashMap<String, (u64, String)>,
    pub(crate) accepted: HashMap<Uuid, Committed>,
    pub(crate) assumed_new: Vec<String>,
    /// Command ids of the requests not written, in batch order.
    pub(crate) unwritten_ids: Vec<Uuid>,
    pub(crate) categories: CategoryHeads,
}

impl Planner {
    /// `categories` must be exact through `first`.
    pub(crate) fn new(
        first: Position,
        categories: &CategoryHeads,
        recorded_at: Timestamp,
    ) -> Planner {
        debug_assert_eq!(categories.through, first);
        Planner {
            categories: categories.clone(),
            first,
            next: first + 1,
            recorded_at,
            rows: Rows::default(),
            outcomes: Vec::new(),
            heads: HashMap::new(),
            accepted: HashMap::new(),
            assumed_new: Vec::new(),
            unwritten_ids: Vec::new(),
        }
    }

    /// Decides the next request of the batch.
    pub(crate) fn add(
        &mut self,
        pending: &Pending,
        lookup: impl Fn(&str) -> Known,
        known: &HashMap<Uuid, KnownCommand>,
    ) {
        let outcome = self.decide(pending, lookup, known);
        if !matches!(outcome, Ok(AppendOutcome::Committed(_))) {
            self.unwritten_ids.push(pending.request.command_id);
        }
        self.outcomes.push(outcome);
    }

    pub(crate) fn decide(
        &mut self,
        pending: &Pending,
        lookup: impl Fn(&str) -> Known,
        known: &HashMap<Uuid, KnownCommand>,
    ) -> Result<AppendOutcome, Error> {
        let request = &pending.request;
        let found = known.get(&request.command_id);
        let existing = found
            .map(|found| found.committed.clone())
            .or_else(|| self.accepted.get(&request.command_id).cloned());
        let (heads, assumed_new, categories) =
            (&self.heads, &mut self.assumed_new, &self.categories);
        let stream_head = || {
            Ok(match heads.get(&request.stream) {
                Some((version, hash)) => Some((*version, hash.clone())),
                None => match lookup(&request.stream) {
                    Known::Head(version, hash) => Some((version, hash)),
                    Known::New => None,
                    Known::AssumedNew => {
                        assumed_new.push(request.stream.clone());
                        None
                    }
                },
            })
        };
        let category_head = |category: &str| Ok(categories.last_of(category));
        let next = self.next;
        let (sealed, committed) = match rules::decide(
            request,
            existing,
            stream_head,
            category_head,
            next,
            self.recorded_at,
        )? {
            rules::Decision::Duplicate(first) => {
                // Ours if a write of this very append lost its reply but committed (the
                // command sits where that write put it): answer as that reply would have.
                // Otherwise it was there before (or earlier in this batch): a retry.
                let ours = found.is_some() && pending.lost_at == Some(first.position);
                return Ok(if ours {
                    AppendOutcome::Committed(first)
                } else {
                    AppendOutcome::Duplicate(first)
                });
            }
            rules::Decision::Sealed(sealed, committed) => (sealed, committed),
        };
        let last = sealed.last().expect("an append has at least one event");
        debug_assert_eq!(last.position, next + sealed.len() as u64 - 1);
        self.heads
            .insert(request.stream.clone(), (last.version, last.hash.clone()));
        let rows = &mut self.rows;
        rows.command_ids.push(request.command_id);
        rows.command_first.push(to_i64(next));
        rows.command_last.push(to_i64(committed.position));
        self.next += sealed.len() as u64;
        for event in sealed {
            rows.positions.push(to_i64(event.position));
            rows.versions.push(to_i64(event.version));
            rows.event_ids.push(event.event_id);
            rows.schema_versions.push(event.schema_version as i32);
            rows.metadata.push(Json(event.metadata));
            rows.streams.push(event.stream);
            rows.types.push(event.event_type);
            rows.data.push(event.data);
            rows.hashes.push(event.hash);
        }
        self.categories.raise(
            stream_category(&request.stream).to_owned(),
            committed.position,
        );
        self.accepted.insert(request.command_id, committed.clone());
        Ok(AppendOutcome::Committed(committed))
    }

    pub(crate) fn finish(mut self) -> Plan {
        assert_eq!(
            self.rows.positions.len() as u64,
            self.next - self.first - 1,
            "a plan's positions are contiguous from its head"
        );
        let heads = &self.heads;
        self.assumed_new
            .retain(|stream| !heads.contains_key(stream));
        self.categories.through = self.next - 1;
        Plan {
            categories: self.categories,
            first: self.first,
            last: self.next - 1,
            rows: self.rows,
            outcomes: self.outcomes,
            heads: self.heads,
            assumed_new: self.assumed_new,
            unwritten_ids: self.unwritten_ids,
        }
    }
}

/// For each request of a planned batch, the position of its last event if the plan writes it.
pub(crate) fn sent_positions(plan: &Plan) -> Vec<Option<Position>> {
    plan.outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(AppendOutcome::Committed(c)) => Some(c.position),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use tokio::sync::{oneshot, watch};

    use closeloop_domain::{Actor, Role};
    use closeloop_log::memory::MemoryLog;
    use proptest::prelude::*;

    use super::*;

    /// One generated append: stream, expected version, command id (from a small pool, so
    /// that retries happen), event count, and an optional condition on `agent` events.
    type Step = (usize, Option<u64>, u8, usize, Option<u64>);

    fn request((stream, expected, command, events, after): Step) -> AppendRequest {
        let command_id = Uuid::from_u128(u128::from(command) + 1);
        let metadata = Metadata {
            command_id,
            correlation_id: command_id,
            causation_id: command_id,
            actor: Actor {
                id: "tester".into(),
                role: Role::System,
            },
            occurred_at: Timestamp::UNIX_EPOCH,
            recorded_at: Timestamp::UNIX_EPOCH,
            command_hash: None,
        };
        AppendRequest {
            stream: ["ticket-1", "ticket-2", "agent-1"][stream].to_owned(),
            expected: expected.map_or(ExpectedVersion::Any, ExpectedVersion::Exact),
            command_id,
            events: (0..events)
                .map(|i| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: format!("happened_{i}"),
                    schema_version: 1,
                    data: serde_json::json!({ "i": i }),
                    metadata: metadata.clone(),
                })
                .collect(),
            unchanged: after.map(|after| Unchanged {
                categories: &["agent"],
                after,
            }),
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            head: watch::channel(0).0,
            outstanding: AtomicUsize::new(0),
            outstanding_at_answer: AtomicUsize::new(0),
            counters: Counters::default(),
        })
    }

    /// An outcome with errors compared by their message.
    fn comparable(outcome: Result<AppendOutcome, Error>) -> Result<AppendOutcome, String> {
        outcome.map_err(|e| e.to_string())
    }

    proptest! {
        /// The planner, fed batches of random appends against what earlier batches
        /// committed, answers every append as the memory log does.
        #[test]
        fn the_planner_answers_as_the_memory_log(
            steps in prop::collection::vec(
                (0..3usize, prop::option::of(0..4u64), 0..12u8, 1..4usize,
                 prop::option::of(0..6u64)),
                1..40,
            ),
            cuts in prop::collection::vec(1..6usize, 1..40),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let memory = MemoryLog::new();
            let expected: Vec<_> = steps
                .iter()
                .map(|step| comparable(runtime.block_on(memory.append(request(*step)))))
                .collect();

            let shared = shared();
            let mut head = 0;
            let mut categories = CategoryHeads::default();
            let mut heads: HashMap<String, (u64, String)> = HashMap::new();
            let mut known: HashMap<Uuid, KnownCommand> = HashMap::new();
            let mut actual = Vec::new();
            let mut rest = &steps[..];
            let mut cuts = cuts.iter().cycle();
            while !rest.is_empty() {
                let size = (*cuts.next().unwrap()).min(rest.len());
                let (batch, later) = rest.split_at(size);
                rest = later;
                let batch: Vec<Pending> = batch
                    .iter()
                    .map(|step| Pending {
                        request: request(*step),
                        reply: oneshot::channel().0,
                        lost_at: None,
                        counted: Counted::count(&shared).1,
                    })
                    .collect();
                let lookup = |stream: &str| match heads.get(stream) {
                    Some((version, hash)) => Known::Head(*version, hash.clone()),
                    None => Known::New,
                };
                let plan = plan(&batch, head, &categories, lookup, &known, Timestamp::now());
                head = plan.last;
                categories = plan.categories.clone();
                heads.extend(plan.heads.clone());
                for (pending, outcome) in batch.iter().zip(plan.outcomes) {
                    if let Ok(AppendOutcome::Committed(c)) = &outcome {
                        known.insert(pending.request.command_id, KnownCommand {
                            committed: c.clone(),
                        });
                    }
                    actual.push(comparable(outcome));
                }
            }
            prop_assert_eq!(actual, expected);
        }
    }
}
