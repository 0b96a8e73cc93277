//! The event-log conformance suite, run against every backend (cqrs-es, ripgrep style): one
//! set of checks, one expectation, every strategy. A backend's tests invoke
//! [`conformance_tests!`](crate::conformance_tests) with a factory of fresh, empty logs:
//!
//! ```ignore
//! mod memory {
//!     use std::sync::Arc;
//!     use closeloop_core::log::memory::MemoryLog;
//!     use closeloop_testkit::conformance::Subject;
//!     closeloop_testkit::conformance_tests!(|| async {
//!         Subject { log: Arc::new(MemoryLog::new()), cleanup: None }
//!     });
//! }
//! ```
//!
//! The macro writes one `#[tokio::test]` per check (so the invoking crate needs `tokio` with
//! the `macros` and `rt-multi-thread` features). Each check is a plain `pub async fn` here that
//! panics with a message naming what broke; each starts from an empty log and relies on that
//! (positions start at 1). No check sleeps to synchronise: concurrency is arranged with
//! barriers and joins, and the only timeouts are generous upper bounds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use uuid::Uuid;

use closeloop_domain::{Actor, Role};
use closeloop_log::Error;
use closeloop_log::{
    chain_hash, verify_chain, AppendOutcome, AppendRequest, CommandRecord, Committed, EventLog,
    ExpectedVersion, Filter, Metadata, NewEvent, Position, ScanBatch, ScannedEvent, StoredEvent,
    Unchanged, APPEND_EVENTS_MAX, GENESIS_HASH, READ_BATCH_MAX,
};

/// A log under test and what to do once its test is over (drop a database schema, remove a
/// temporary directory...). The log is dropped before the cleanup runs.
pub struct Subject {
    pub log: Arc<dyn EventLog>,
    pub cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Writes one `#[tokio::test]` per conformance check, in the module where it is invoked.
/// `$factory` is called (with no arguments) for each test and must return a future of a
/// [`Subject`](crate::conformance::Subject) holding a fresh, empty log.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@checks $factory;
            append_then_read_stream,
            multi_event_append_is_atomic_and_contiguous,
            expected_zero_creates_only_new_streams,
            expected_mismatch_appends_nothing,
            expected_any_always_appends,
            duplicate_command_id_returns_first_outcome,
            concurrent_duplicates_append_once,
            positions_start_at_one_and_are_contiguous,
            read_all_pages_visit_every_event_once,
            read_all_caps_limit_at_read_batch_max,
            read_all_filters_by_category,
            scan_streams_ranges_in_position_order,
            read_stream_after_version,
            read_stream_pages,
            head_follows_appends,
            wait_beyond_wakes_on_append,
            wait_beyond_times_out_with_unchanged_head,
            chains_verify_after_many_appends,
            limits_are_rejected,
            json_round_trips_exactly,
            racing_exact_appends_one_winner_per_version,
            concurrent_any_appends_commit_exactly_once,
            tailing_reader_sees_every_event_once,
            unchanged_condition_refuses_after_a_newer_event,
            unchanged_condition_holds_under_concurrent_appends,
            log_id_is_random_and_stable,
            command_records_tile_the_log,
            keys_are_created_once_and_destroyed,
            keys_created_under_appends_agree,
            appends_store_their_new_keys_or_refuse,
        );
    };
    (@checks $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let subject: $crate::conformance::Subject = ($factory)().await;
                $crate::conformance::run(subject, $crate::conformance::$check).await;
            }
        )+
    };
}

/// Runs one check on `subject.log`, then drops the log and runs the cleanup, even when the
/// check panicked (the panic is then passed on).
pub async fn run<C, F>(subject: Subject, check: C)
where
    C: FnOnce(Arc<dyn EventLog>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let Subject { log, cleanup } = subject;
    let outcome = tokio::spawn(check(log.clone())).await;
    drop(log);
    if let Some(cleanup) = cleanup {
        cleanup.await;
    }
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the check did not finish: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test data.

/// The business time of every sample event (with nanoseconds, which must survive storage).
pub const SAMPLE_OCCURRED_AT: &str = "2026-11-23T09:15:00.123456789Z";

/// Metadata as a command handler would write it for `command_id`; `recorded_at` is a
/// placeholder (the epoch) that the backend overwrites.
pub fn sample_metadata(command_id: Uuid) -> Metadata {
    Metadata {
        command_id,
        correlation_id: command_id,
        causation_id: command_id,
        actor: Actor {
            id: "conformance-suite".into(),
            role: Role::Service,
        },
        occurred_at: SAMPLE_OCCURRED_AT
            .parse()
            .expect("SAMPLE_OCCURRED_AT is RFC 3339"),
        recorded_at: Timestamp::UNIX_EPOCH,
        // The SHA-256 of nothing: it must come back as sent and be covered by the chain.
        command_hash: Some(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        ),
    }
}

/// An event with a fresh UUID v7 id, schema version 1 and [`sample_metadata`].
pub fn new_event(event_type: &str, data: Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: sample_metadata(Uuid::now_v7()),
    }
}

/// `count` numbered events (`thing_happened`, data `{"n": i}`).
pub fn numbered_events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| new_event("thing_happened", json!({ "n": n })))
        .collect()
}

/// An append with a fresh command id, which is also written into each event's metadata as its
/// command, correlation and causation id.
pub fn append_request(
    stream: &str,
    expected: ExpectedVersion,
    mut events: Vec<NewEvent>,
) -> AppendRequest {
    let command_id = Uuid::now_v7();
    for event in &mut events {
        event.metadata.command_id = command_id;
        event.metadata.correlation_id = command_id;
        event.metadata.causation_id = command_id;
    }
    AppendRequest {
        stream: stream.to_owned(),
        expected,
        command_id,
        events,
        unchanged: None,
    }
}

/// A new stream name of `category`: `<category>-<uuid v7>`.
pub fn stream_name(category: &str) -> String {
    format!("{category}-{}", Uuid::now_v7())
}

/// Appends and expects `Committed`.
pub async fn commit(log: &dyn EventLog, request: AppendRequest) -> Committed {
    let stream = request.stream.clone();
    let expected = request.expected;
    match log.append(request).await {
        Ok(AppendOutcome::Committed(committed)) => committed,
        other => panic!(
            "append to {stream} (expected version {expected}): expected Committed, got {other:?}"
        ),
    }
}

/// Every event in the log, read in pages of [`READ_BATCH_MAX`].
pub async fn read_everything(log: &dyn EventLog) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.position);
        let page = log
            .read_all(after, READ_BATCH_MAX, Filter::All)
            .await
            .expect("read_all");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// Panics unless `result` is `WrongExpectedVersion` for `stream` at version `actual`.
fn assert_wrong_version(
    result: Result<AppendOutcome, Error>,
    stream: &str,
    expected: u64,
    actual: u64,
) {
    match result {
        Err(Error::WrongExpectedVersion {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(s, stream, "WrongExpectedVersion names the stream");
            assert_eq!(
                e,
                expected.to_string(),
                "WrongExpectedVersion names the expectation"
            );
            assert_eq!(a, actual, "WrongExpectedVersion names the actual version");
        }
        other => panic!(
            "append to {stream} expecting version {expected} (it is at {actual}): expected \
             WrongExpectedVersion, got {other:?}"
        ),
    }
}

/// Panics unless positions are exactly 1..=N in order.
fn assert_positions_one_to_n(events: &[StoredEvent]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.position,
            i as u64 + 1,
            "positions must be 1, 2, 3... with no gap or repeat; event {i} is {}",
            event.position
        );
    }
}

/// Panics unless `events` (one stream, version order) is contiguous from 1 and its chain holds.
fn assert_stream_sound(stream: &str, events: &[StoredEvent]) {
    let breaks = verify_chain(events);
    assert!(
        breaks.is_empty(),
        "stream {stream}: chain breaks: {breaks:?}"
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.stream, stream);
        assert_eq!(event.version, i as u64 + 1, "stream {stream} versions");
    }
}

/// The stored form's fields that come from the `NewEvent`, compared with it.
fn assert_stored_as_sent(stored: &StoredEvent, sent: &NewEvent) {
    assert_eq!(stored.event_id, sent.event_id, "event id");
    assert_eq!(stored.event_type, sent.event_type, "event type");
    assert_eq!(stored.schema_version, sent.schema_version, "schema version");
    assert_eq!(stored.data, sent.data, "data of {}", stored.event_id);
    let metadata_sans_recorded_at = Metadata {
        recorded_at: sent.metadata.recorded_at,
        ..stored.metadata.clone()
    };
    assert_eq!(
        metadata_sans_recorded_at, sent.metadata,
        "metadata (except recorded_at) of {}",
        stored.event_id
    );
}

// ---------------------------------------------------------------------------------------------
// Appending and reading back.

/// Append then `read_stream` gives back the same events with versions 1..n, positions of the
/// append, `recorded_at` set by the log, and a hash.
pub async fn append_then_read_stream(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = stream_name("ticket");
    let sent = vec![
        new_event(
            "ticket_opened",
            json!({"ticket_id": "t-1", "priority": "high", "subject": "Printer on fire"}),
        ),
        new_event("ticket_assigned", json!({"agent_id": "agent-17"})),
        new_event(
            "note_added",
            json!({"text": "called back", "visible_to_customer": false}),
        ),
    ];
    let request = append_request(&stream, ExpectedVersion::Exact(0), sent);
    let sent = request.events.clone();
    let before = Timestamp::now();
    let committed = commit(log, request).await;
    let after = Timestamp::now();
    assert_eq!(
        committed,
        Committed {
            stream: stream.clone(),
            version: 3,
            position: 3,
            events: vec![
                "ticket_opened".into(),
                "ticket_assigned".into(),
                "note_added".into()
            ],
        },
        "the outcome of the first append to an empty log"
    );

    let stored = log.read_stream(&stream, 0).await.expect("read_stream");
    assert_eq!(stored.len(), 3, "read_stream returns every appended event");
    let slack = jiff::SignedDuration::from_secs(60);
    for (i, (stored, sent)) in stored.iter().zip(&sent).enumerate() {
        assert_eq!(stored.stream, stream);
        assert_eq!(stored.version, i as u64 + 1, "versions start at 1");
        assert_eq!(stored.position, i as u64 + 1, "positions of the append");
        assert_eq!(stored.category(), "ticket");
        assert_stored_as_sent(stored, sent);
        let recorded_at = stored.metadata.recorded_at;
        assert!(
            recorded_at >= before - slack && recorded_at <= after + slack,
            "recorded_at must be set by the log at append: {recorded_at} not near {before}..{after}"
        );
        assert!(
            stored.hash.len() == 64 && stored.hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "hash must be 64 hex digits: {:?}",
            stored.hash
        );
    }
    assert_eq!(
        log.read_stream(&stream_name("ticket"), 0)
            .await
            .expect("read_stream"),
        vec![],
        "an unknown stream reads as empty"
    );
}

/// A multi-event append lands as one contiguous run of positions and versions, and a failed
/// one stores none of its events.
pub async fn multi_event_append_is_atomic_and_contiguous(log: Arc<dyn EventLog>) {
    let log = &*log;
    let a = stream_name("ticket");
    let b = stream_name("agent");
    commit(
        log,
        append_request(&a, ExpectedVersion::Any, numbered_events(1)),
    )
    .await;
    let five = commit(
        log,
        append_request(&b, ExpectedVersion::Exact(0), numbered_events(5)),
    )
    .await;
    assert_eq!((five.version, five.position), (5, 6));
    commit(
        log,
        append_request(&a, ExpectedVersion::Exact(1), numbered_events(1)),
    )
    .await;

    let failed = log
        .append(append_request(
            &b,
            ExpectedVersion::Exact(0),
            numbered_events(4),
        ))
        .await;
    assert_wrong_version(failed, &b, 0, 5);

    let all = read_everything(log).await;
    assert_eq!(all.len(), 7, "a failed append stores none of its events");
    assert_positions_one_to_n(&all);
    let run: Vec<(&str, u64)> = all[1..6]
        .iter()
        .map(|e| (e.stream.as_str(), e.version))
        .collect();
    assert_eq!(
        run,
        (1..=5).map(|v| (b.as_str(), v)).collect::<Vec<_>>(),
        "the five events of one append occupy positions 2..=6 in order"
    );
    assert_eq!((all[6].stream.as_str(), all[6].version), (a.as_str(), 2));
    assert_eq!(log.read_stream(&b, 0).await.expect("read_stream").len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Expected versions.

/// `Exact(0)` means "the stream must not exist".
pub async fn expected_zero_creates_only_new_streams(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = stream_name("customer");
    let created = commit(
        log,
        append_request(&stream, ExpectedVersion::Exact(0), numbered_events(1)),
    )
    .await;
    assert_eq!(created.version, 1);
    let head = log.head().await.expect("head");

    let again = log
        .append(append_request(
            &stream,
            ExpectedVersion::Exact(0),
            numbered_events(2),
        ))
        .await;
    assert_wrong_version(again, &stream, 0, 1);
    assert_eq!(
        log.head().await.expect("head"),
        head,
        "a failed append moves no head"
    );
    assert_eq!(
        log.read_stream(&stream, 0)
            .await
            .expect("read_stream")
            .len(),
        1
    );
}

/// `Exact(n)` on a stream at another version fails, appends nothing, and does not record its
/// command id (so the same command can succeed once it decides again).
pub async fn expected_mismatch_appends_nothing(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = stream_name("ticket");
    commit(
        log,
        append_request(&stream, ExpectedVersion::Exact(0), numbered_events(2)),
    )
    .await;
    let head = log.head().await.expect("head");
    let mut last_failed = None;
    for wrong in [1, 3, 7] {
        let request = append_request(&stream, ExpectedVersion::Exact(wrong), numbered_events(3));
        assert_wrong_version(log.append(request.clone()).await, &stream, wrong, 2);
        assert_eq!(
            log.head().await.expect("head"),
            head,
            "head after a failed append"
        );
        assert_eq!(
            log.find_command(request.command_id)
                .await
                .expect("find_command"),
            None,
            "a failed append must not record its command id"
        );
        last_failed = Some(request);
    }
    assert_eq!(
        read_everything(log).await.len(),
        2,
        "failed appends store nothing"
    );

    let mut retry = last_failed.expect("three failures");
    retry.expected = ExpectedVersion::Exact(2);
    let committed = commit(log, retry).await;
    assert_eq!(
        (committed.version, committed.position),
        (5, 5),
        "the command that failed its version check appends when retried at the right version"
    );
}

/// `Any` appends whatever the stream's version.
pub async fn expected_any_always_appends(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = stream_name("calendar");
    for (i, count) in [1usize, 3, 1, 2].into_iter().enumerate() {
        let committed = commit(
            log,
            append_request(&stream, ExpectedVersion::Any, numbered_events(count)),
        )
        .await;
        assert_eq!(
            committed.version,
            [1, 4, 5, 7][i],
            "Any append {i} lands at the stream's end"
        );
    }
    commit(
        log,
        append_request(&stream, ExpectedVersion::Exact(7), numbered_events(1)),
    )
    .await;
    let last = commit(
        log,
        append_request(&stream, ExpectedVersion::Any, numbered_events(1)),
    )
    .await;
    assert_eq!(last.version, 9);
    assert_stream_sound(
        &stream,
        &log.read_stream(&stream, 0).await.expect("read_stream"),
    );
}

// ---------------------------------------------------------------------------------------------
// Idempotency.

/// A command id appends at most once: a retry, even to another stream or with a now-stale
/// expected version, gets the first outcome and appends nothing.
pub async fn duplicate_command_id_returns_first_outcome(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = stream_name("ticket");
    let request = append_request(&stream, ExpectedVersion::Exact(0), numbered_events(2));
    let first = commit(log, request.clone()).await;
    let head = log.head().await.expect("head");

    let retried = log.append(request.clone()).await.expect("retry");
    assert_eq!(
        retried,
        AppendOutcome::Duplicate(first.clone()),
        "a retried command"
    );

    let other_stream = stream_name("agent");
    let elsewhere = AppendRequest {
        stream: other_stream.clone(),
        expected: ExpectedVersion::Any,
        events: numbered_events(3),
        ..request.clone()
    };
    assert_eq!(
        log.append(elsewhere).await.expect("same id, other stream"),
        AppendOutcome::Duplicate(first.clone()),
        "the command id decides, not the stream"
    );
    assert_eq!(
        log.read_stream(&other_stream, 0)
            .await
            .expect("read_stream"),
        vec![],
        "a duplicate appends nothing to the stream it names"
    );
    assert_eq!(
        log.head().await.expect("head"),
        head,
        "duplicates move no head"
    );

    // The stream moves on; the retry's Exact(0) is now stale but the retry is still a
    // duplicate, not a conflict.
    commit(
        log,
        append_request(&stream, ExpectedVersion::Exact(2), numbered_events(1)),
    )
    .await;
    assert_eq!(
        log.append(request.clone()).await.expect("late retry"),
        AppendOutcome::Duplicate(first.clone()),
        "a late retry still gets the first outcome"
    );

    assert_eq!(
        log.find_command(request.command_id)
            .await
            .expect("find_command"),
        Some(first),
        "find_command returns the first outcome"
    );
    assert_eq!(
        log.find_command(Uuid::now_v7())
            .await
            .expect("find_command"),
        None,
        "an unknown command id"
    );
    assert_eq!(read_everything(log).await.len(), 3);
}

/// The same command sent by 8 tasks at once appends once; the other 7 get its outcome.
pub async fn concurrent_duplicates_append_once(log: Arc<dyn EventLog>) {
    const TASKS: usize = 8;
    let stream = stream_name("ticket");
    let request = append_request(&stream, ExpectedVersion::Any, numbered_events(3));
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (log, request, barrier) = (log.clone(), request.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                log.append(request).await
            })
        })
        .collect();
    let mut committed = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(AppendOutcome::Committed(c)) => committed.push(c),
            Ok(AppendOutcome::Duplicate(c)) => duplicates.push(c),
            Err(e) => panic!("a concurrent duplicate failed instead of being Duplicate: {e:?}"),
        }
    }
    assert_eq!(
        committed.len(),
        1,
        "exactly one of {TASKS} identical appends commits"
    );
    assert!(
        duplicates.iter().all(|d| *d == committed[0]),
        "every duplicate carries the first outcome: {duplicates:?} vs {committed:?}"
    );
    let stored = log.read_stream(&stream, 0).await.expect("read_stream");
    assert_eq!(stored.len(), 3, "the events are stored once");
    assert_eq!(log.head().await.expect("head"), 3);
}

// ---------------------------------------------------------------------------------------------
// Positions and read_all.

/// Positions start at 1 and count up by one per event across all streams.
pub async fn positions_start_at_one_and_are_contiguous(log: Arc<dyn EventLog>) {
    let log = &*log;
    assert_eq!(log.head().await.expect("head"), 0, "an empty log's head");
    assert_eq!(
        log.read_all(0, 10, Filter::All).await.expect("read_all"),
        vec![],
        "an empty log reads as empty"
    );
    let streams = [
        stream_name("ticket"),
        stream_name("agent"),
        stream_name("customer"),
    ];
    let mut expected_position = 0;
    for (i, count) in [1usize, 3, 2, 1, 4, 2, 1].into_iter().enumerate() {
        let committed = commit(
            log,
            append_request(
                &streams[i % 3],
                ExpectedVersion::Any,
                numbered_events(count),
            ),
        )
        .await;
        expected_position += count as u64;
        assert_eq!(
            committed.position, expected_position,
            "append {i}: the position of its last event"
        );
    }
    let all = read_everything(log).await;
    assert_eq!(all.len() as u64, expected_position);
    assert_positions_one_to_n(&all);
}

/// Paging through `read_all` visits every event once, in order, whatever the page size.
pub async fn read_all_pages_visit_every_event_once(log: Arc<dyn EventLog>) {
    let log = &*log;
    let streams: Vec<String> = (0..5).map(|_| stream_name("ticket")).collect();
    for i in 0..40 {
        commit(
            log,
            append_request(
                &streams[i % 5],
                ExpectedVersion::Any,
                numbered_events(1 + i % 3),
            ),
        )
        .await;
    }
    let everything = log
        .read_all(0, READ_BATCH_MAX, Filter::All)
        .await
        .expect("read_all");
    let total = everything.len();
    assert_eq!(total, (0..40).map(|i| 1 + i % 3).sum::<usize>());
    assert_positions_one_to_n(&everything);

    for limit in [1usize, 7, 80] {
        let mut paged: Vec<StoredEvent> = Vec::new();
        loop {
            let after = paged.last().map_or(0, |e| e.position);
            let page = log
                .read_all(after, limit, Filter::All)
                .await
                .expect("read_all");
            assert!(page.len() <= limit, "a page holds at most `limit` events");
            if page.is_empty() {
                break;
            }
            assert!(
                page.len() == limit || after + page.len() as u64 == total as u64,
                "only the last page may be short (limit {limit}, after {after}, got {})",
                page.len()
            );
            paged.extend(page);
        }
        assert_eq!(
            paged, everything,
            "pages of {limit} give the whole log once, in order"
        );
    }
    assert_eq!(
        log.read_all(0, 0, Filter::All).await.expect("read_all"),
        vec![],
        "limit 0"
    );
    let head = log.head().await.expect("head");
    assert_eq!(
        log.read_all(head, 10, Filter::All).await.expect("read_all"),
        vec![],
        "nothing after the head"
    );
    assert_eq!(
        log.read_all(head - 1, 10, Filter::All)
            .await
            .expect("read_all"),
        vec![everything[total - 1].clone()],
        "after head - 1: the last event"
    );
}

/// `read_all` returns at most [`READ_BATCH_MAX`] events, whatever limit is asked.
pub async fn read_all_caps_limit_at_read_batch_max(log: Arc<dyn EventLog>) {
    const TASKS: usize = 8;
    let total = READ_BATCH_MAX + 1;
    let appends = total.div_ceil(APPEND_EVENTS_MAX);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = stream_name("ticket");
                for append in (task..appends).step_by(TASKS) {
                    let count = APPEND_EVENTS_MAX.min(total - append * APPEND_EVENTS_MAX);
                    commit(
                        &*log,
                        append_request(&stream, ExpectedVersion::Any, numbered_events(count)),
                    )
                    .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("appending task");
    }
    assert_eq!(
        log.head().await.expect("head"),
        total as u64,
        "once every append has returned, head() is the last position"
    );
    let first = log
        .read_all(0, usize::MAX, Filter::All)
        .await
        .expect("read_all with a huge limit");
    assert_eq!(first.len(), READ_BATCH_MAX, "read_all caps its batch");
    assert_positions_one_to_n(&first);
    let rest = log
        .read_all(READ_BATCH_MAX as Position, usize::MAX, Filter::All)
        .await
        .expect("read_all");
    assert_eq!(
        rest.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![total as u64]
    );
}

/// `Filter::Categories` returns exactly the events of those categories, in position order.
pub async fn read_all_filters_by_category(log: Arc<dyn EventLog>) {
    let log = &*log;
    let streams = [
        stream_name("ticket"),
        stream_name("agent"),
        stream_name("customer"),
        // Categories that share a prefix with, or contain wildcards near, the ones asked for.
        stream_name("ticketing"),
        format!("ticket-{}-with-dashes", Uuid::now_v7()),
        stream_name("sla_policy"),
        stream_name("slaxpolicy"),
    ];
    for i in 0..28 {
        commit(
            log,
            append_request(
                &streams[i % streams.len()],
                ExpectedVersion::Any,
                numbered_events(1 + i % 2),
            ),
        )
        .await;
    }
    let everything = read_everything(log).await;

    for categories in [
        &["ticket", "customer"][..],
        &["sla_policy"][..],
        &["agent", "ticketing", "slaxpolicy"][..],
        &["nothing"][..],
        &["tick%"][..],
        &["sla_polic_"][..],
        &[][..],
    ] {
        let expected: Vec<StoredEvent> = everything
            .iter()
            .filter(|e| categories.contains(&e.category()))
            .cloned()
            .collect();
        let filtered = log
            .read_all(0, READ_BATCH_MAX, Filter::Categories(categories))
            .await
            .expect("read_all filtered");
        assert_eq!(
            filtered, expected,
            "read_all with categories {categories:?}: exactly those categories, in position order"
        );
        // Paging with a filter: `after` is a position, the limit counts returned events.
        let mut paged: Vec<StoredEvent> = Vec::new();
        loop {
            let after = paged.last().map_or(0, |e| e.position);
            let page = log
                .read_all(after, 3, Filter::Categories(categories))
                .await
                .expect("read_all filtered page");
            assert!(page.len() <= 3);
            if page.is_empty() {
                break;
            }
            paged.extend(page);
        }
        assert_eq!(paged, expected, "filtered pages of 3 for {categories:?}");
    }
    assert!(
        everything
            .iter()
            .filter(|e| e.category() == "ticket")
            .count()
            > 4,
        "streams `ticket-<id>` and `ticket-<id>-with-dashes` are both category ticket"
    );
    let middle = everything[everything.len() / 2].position;
    let after_middle = log
        .read_all(middle, READ_BATCH_MAX, Filter::Categories(&["agent"]))
        .await
        .expect("read_all");
    assert_eq!(
        after_middle,
        everything
            .iter()
            .filter(|e| e.position > middle && e.category() == "agent")
            .cloned()
            .collect::<Vec<_>>(),
        "a filter combined with `after`"
    );
}

/// Collects a scan: its events, and each batch's `through` (checking the batch's size and
/// that its events are within the range and at or below its `through`).
async fn scan_all(
    log: &dyn EventLog,
    after: Position,
    end: Position,
    filter: Filter<'_>,
    batch: usize,
) -> (Vec<ScannedEvent>, Vec<Position>) {
    use futures::StreamExt;
    let mut scan = log.scan(after, end, filter, batch);
    let (mut events, mut throughs) = (Vec::new(), Vec::new());
    while let Some(b) = scan.next().await {
        let b: ScanBatch = b.expect("scan batch");
        assert!(b.events.len() <= batch.max(1), "a batch of at most {batch}");
        for e in &b.events {
            assert!(
                e.position > after && e.position <= b.through && b.through <= end,
                "event at {} in a batch through {} of the scan ({after}, {end}]",
                e.position,
                b.through
            );
        }
        events.extend(b.events);
        throughs.push(b.through);
    }
    (events, throughs)
}

/// `scan` streams exactly what `read_all` reads, in position order, in batches of at most
/// the size asked for, over any range and with a category filter; each batch's `through`
/// increases and the last one is the range's end; an empty range yields nothing.
pub async fn scan_streams_ranges_in_position_order(log: Arc<dyn EventLog>) {
    let log = &*log;
    let streams = [
        stream_name("ticket"),
        stream_name("agent"),
        stream_name("calendar"),
        stream_name("ticketing"),
    ];
    for i in 0..40 {
        commit(
            log,
            append_request(
                &streams[i % 7 % streams.len()],
                ExpectedVersion::Any,
                numbered_events(1 + i % 3),
            ),
        )
        .await;
    }
    let everything = read_everything(log).await;
    let head = log.head().await.expect("head");
    assert_eq!(everything.len() as Position, head);
    for (after, end) in [(0, head), (5, head - 7), (head / 2, head / 2 + 1), (9, 9)] {
        for categories in [
            None,
            Some(&["agent", "calendar"][..]),
            Some(&["nothing"][..]),
        ] {
            let filter = categories.map_or(Filter::All, Filter::Categories);
            let expected: Vec<ScannedEvent> = everything
                .iter()
                .filter(|e| e.position > after && e.position <= end && filter.accepts(&e.stream))
                .map(ScannedEvent::of)
                .collect();
            for batch in [1, 4, READ_BATCH_MAX] {
                let (found, throughs) = scan_all(log, after, end, filter, batch).await;
                let what = format!("scan ({after}, {end}] of {categories:?} in batches of {batch}");
                assert_eq!(found.len(), expected.len(), "{what}");
                for (f, e) in found.iter().zip(&expected) {
                    // The data as text in the backend's rendering: compare as values.
                    let (fv, ev): (Value, Value) = (
                        serde_json::from_str(&f.data).expect("scanned data is JSON"),
                        serde_json::from_str(&e.data).expect("JSON"),
                    );
                    assert_eq!(
                        (
                            f.position,
                            &f.stream,
                            &f.event_type,
                            f.schema_version,
                            f.occurred_at,
                            fv
                        ),
                        (
                            e.position,
                            &e.stream,
                            &e.event_type,
                            e.schema_version,
                            e.occurred_at,
                            ev
                        ),
                        "{what}"
                    );
                }
                if after >= end {
                    assert!(throughs.is_empty(), "{what}: an empty range yields nothing");
                } else {
                    assert!(
                        throughs.windows(2).all(|w| w[0] < w[1]),
                        "{what}: {throughs:?}"
                    );
                    assert_eq!(throughs.last(), Some(&end), "{what}: ends at the end");
                }
            }
        }
    }
}

/// A stream of five events (positions 1-3 and 6-7) with another stream's two between them;
/// returns its name.
async fn interleaved_stream(log: &dyn EventLog) -> String {
    let stream = stream_name("ticket");
    let other = stream_name("ticket");
    for (name, count) in [(&stream, 3), (&other, 2), (&stream, 2)] {
        commit(
            log,
            append_request(name, ExpectedVersion::Any, numbered_events(count)),
        )
        .await;
    }
    stream
}

/// `read_stream` returns the versions after `after_version`.
pub async fn read_stream_after_version(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = interleaved_stream(log).await;
    let versions = |events: Vec<StoredEvent>| {
        assert!(
            events.iter().all(|e| e.stream == stream),
            "read_stream returns only its stream"
        );
        events.iter().map(|e| e.version).collect::<Vec<_>>()
    };
    for (after, expected) in [
        (0, vec![1, 2, 3, 4, 5]),
        (2, vec![3, 4, 5]),
        (4, vec![5]),
        (5, vec![]),
        (99, vec![]),
        (u64::MAX, vec![]),
    ] {
        let events = log.read_stream(&stream, after).await.expect("read_stream");
        assert_eq!(
            versions(events),
            expected,
            "read_stream after version {after}"
        );
    }
    let whole = log.read_stream(&stream, 0).await.expect("read_stream");
    assert_eq!(
        whole.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 6, 7],
        "read_stream events carry their global positions"
    );
}

/// `read_stream_page` is `read_stream` a page at a time: the same events, in version order,
/// at most `limit` of them, only of its stream.
pub async fn read_stream_pages(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = interleaved_stream(log).await;
    let whole = log.read_stream(&stream, 0).await.expect("read_stream");
    for limit in [1, 2, 3, 5, 10] {
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = log
                .read_stream_page(&stream, after, limit)
                .await
                .expect("read_stream_page");
            assert!(page.len() <= limit, "a page holds at most its limit");
            let Some(last) = page.last() else { break };
            after = last.version;
            paged.extend(page);
        }
        assert_eq!(paged, whole, "pages of {limit} give read_stream's events");
    }
    assert!(log
        .read_stream_page(&stream, 5, 10)
        .await
        .expect("read_stream_page")
        .is_empty());
}

// ---------------------------------------------------------------------------------------------
// Head and waiting.

/// `head` is the last committed position; failed and duplicate appends leave it.
pub async fn head_follows_appends(log: Arc<dyn EventLog>) {
    let log = &*log;
    assert_eq!(log.head().await.expect("head"), 0);
    let stream = stream_name("ticket");
    let request = append_request(&stream, ExpectedVersion::Exact(0), numbered_events(2));
    let committed = commit(log, request.clone()).await;
    assert_eq!(log.head().await.expect("head"), committed.position);
    assert_eq!(committed.position, 2);
    log.append(request).await.expect("duplicate");
    let _ = log
        .append(append_request(
            &stream,
            ExpectedVersion::Exact(0),
            numbered_events(1),
        ))
        .await;
    assert_eq!(log.head().await.expect("head"), 2);
    let next = commit(
        log,
        append_request(
            &stream_name("agent"),
            ExpectedVersion::Any,
            numbered_events(3),
        ),
    )
    .await;
    assert_eq!(log.head().await.expect("head"), next.position);
    assert_eq!(next.position, 5);
}

/// A waiter returns promptly when another task appends; a wait for a past position returns
/// at once.
pub async fn wait_beyond_wakes_on_append(log: Arc<dyn EventLog>) {
    const MAX_WAIT: Duration = Duration::from_secs(10);
    const PROMPT: Duration = Duration::from_secs(5);
    commit(
        &*log,
        append_request(
            &stream_name("ticket"),
            ExpectedVersion::Any,
            numbered_events(1),
        ),
    )
    .await;
    let head = log.head().await.expect("head");
    assert_eq!(head, 1);

    let started = Arc::new(Barrier::new(2));
    let waiter = {
        let (log, started) = (log.clone(), started.clone());
        tokio::spawn(async move {
            started.wait().await;
            let t0 = Instant::now();
            let woke_at = log.wait_beyond(head, MAX_WAIT).await.expect("wait_beyond");
            (woke_at, t0.elapsed())
        })
    };
    started.wait().await;
    let committed = commit(
        &*log,
        append_request(
            &stream_name("ticket"),
            ExpectedVersion::Any,
            numbered_events(2),
        ),
    )
    .await;
    let (woke_at, waited) = waiter.await.expect("waiter");
    assert!(
        woke_at >= committed.position,
        "wait_beyond({head}) returned {woke_at}, before the append at {}",
        committed.position
    );
    assert!(
        waited < PROMPT,
        "wait_beyond took {waited:?} to notice an append (max_wait {MAX_WAIT:?})"
    );

    let t0 = Instant::now();
    let now = log.wait_beyond(1, MAX_WAIT).await.expect("wait_beyond");
    assert_eq!(now, committed.position, "a past position: the head");
    assert!(
        t0.elapsed() < PROMPT,
        "wait_beyond for a past position must not wait"
    );
}

/// With nothing appended, `wait_beyond` returns the unchanged head once `max_wait` passes.
pub async fn wait_beyond_times_out_with_unchanged_head(log: Arc<dyn EventLog>) {
    let log = &*log;
    let max_wait = Duration::from_millis(200);
    for head in [0, 3] {
        if head > 0 {
            commit(
                log,
                append_request(
                    &stream_name("ticket"),
                    ExpectedVersion::Any,
                    numbered_events(3),
                ),
            )
            .await;
        }
        let t0 = Instant::now();
        let returned = log.wait_beyond(head, max_wait).await.expect("wait_beyond");
        let waited = t0.elapsed();
        assert_eq!(
            returned, head,
            "wait_beyond with nothing appended: the head"
        );
        assert!(
            waited >= max_wait - Duration::from_millis(20),
            "wait_beyond returned after {waited:?}, before max_wait {max_wait:?}"
        );
        assert!(
            waited < max_wait + Duration::from_secs(5),
            "wait_beyond overstayed max_wait {max_wait:?}: {waited:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hash chains.

/// After many appends over several streams, every stream's chain verifies, each hash
/// recomputes with `chain_hash`, and `read_all` and `read_stream` agree exactly.
pub async fn chains_verify_after_many_appends(log: Arc<dyn EventLog>) {
    let log = &*log;
    let streams: Vec<String> = (0..6)
        .map(|i| stream_name(["ticket", "agent", "customer"][i % 3]))
        .collect();
    for i in 0..90 {
        let events = (0..1 + i % 4)
            .map(|j| {
                new_event(
                    "thing_happened",
                    json!({"append": i, "j": j, "text": format!("event {i}.{j}")}),
                )
            })
            .collect();
        commit(
            log,
            append_request(&streams[(i * 7) % 6], ExpectedVersion::Any, events),
        )
        .await;
    }
    let everything = read_everything(log).await;
    assert_positions_one_to_n(&everything);
    let mut by_stream: BTreeMap<&str, Vec<StoredEvent>> = BTreeMap::new();
    for event in &everything {
        by_stream
            .entry(event.stream.as_str())
            .or_default()
            .push(event.clone());
    }
    assert_eq!(by_stream.len(), streams.len());
    for stream in &streams {
        let stored = log.read_stream(stream, 0).await.expect("read_stream");
        assert_eq!(
            &stored,
            &by_stream[stream.as_str()],
            "read_stream and read_all give the same stored events for {stream}"
        );
        assert_stream_sound(stream, &stored);
        let mut prev = GENESIS_HASH.to_owned();
        for event in &stored {
            assert_eq!(
                chain_hash(&prev, event),
                event.hash,
                "{stream} version {}: stored hash does not recompute",
                event.version
            );
            prev = event.hash.clone();
        }
        // The chain detects a change: alter one event's data and verification fails.
        let mut altered = stored.clone();
        altered[0].data = json!({"altered": true});
        assert!(
            !verify_chain(&altered).is_empty(),
            "an altered event must break the chain"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and data fidelity.

/// Empty appends, appends over [`APPEND_EVENTS_MAX`] events and stream names that are not
/// `<category>-<id>` are rejected with `InvalidAppend` and change nothing.
pub async fn limits_are_rejected(log: Arc<dyn EventLog>) {
    let log = &*log;
    let stream = stream_name("ticket");
    let mut rejected = vec![
        (
            "an empty append",
            append_request(&stream, ExpectedVersion::Any, vec![]),
        ),
        (
            "an append over APPEND_EVENTS_MAX events",
            append_request(
                &stream,
                ExpectedVersion::Any,
                numbered_events(APPEND_EVENTS_MAX + 1),
            ),
        ),
    ];
    for bad in ["ticket", "-0190c7b8", "ticket-", "", "ticket_0190c7b8"] {
        rejected.push((
            "a stream name without <category>-<id>",
            append_request(bad, ExpectedVersion::Any, numbered_events(1)),
        ));
    }
    for (what, request) in rejected {
        let (name, command_id) = (request.stream.clone(), request.command_id);
        match log.append(request).await {
            Err(Error::InvalidAppend(_)) => {}
            other => panic!("{what} (stream {name:?}) must be InvalidAppend, got {other:?}"),
        }
        assert_eq!(
            log.find_command(command_id).await.expect("find_command"),
            None,
            "{what}: a rejected append records no command id"
        );
    }
    assert_eq!(
        log.head().await.expect("head"),
        0,
        "rejected appends store nothing"
    );
    assert_eq!(read_everything(log).await, vec![]);

    let full = commit(
        log,
        append_request(
            &stream,
            ExpectedVersion::Any,
            numbered_events(APPEND_EVENTS_MAX),
        ),
    )
    .await;
    assert_eq!(
        full.version, APPEND_EVENTS_MAX as u64,
        "exactly APPEND_EVENTS_MAX events is allowed"
    );
}

/// JSON data and metadata come back exactly: unicode, escapes, nesting, empty containers,
/// integers beyond 2^53 and at the ends of u64 and i64, ordinary floats, long strings.
pub async fn json_round_trips_exactly(log: Arc<dyn EventLog>) {
    let log = &*log;
    let beyond_f64_integers: u64 = (1 << 53) + 1;
    let data = [
        json!({
            "unicode": "Grüße, 你好, こんにちは, مرحبا, 👩‍💻🎫, e\u{301}",
            // (No U+0000: PostgreSQL's jsonb cannot hold it; see the PostgreSQL backend.)
            "escapes": "quote \" backslash \\ slash / newline \n tab \t bell \u{7} del \u{7f}",
            "nested": {"a": {"b": {"c": [1, {"d": [[], {}]}]}}, "empty_key": {"": ""}},
            "empty_array": [],
            "empty_object": {},
            "nulls": [null, {"x": null}],
            "bools": [true, false],
            "big": beyond_f64_integers,
            "u64_max": u64::MAX,
            "i64_min": i64::MIN,
            "negative": -42,
            "zero": 0,
            "floats": [0.1, 2.5, -1.25, 1e-7, 6.02214076e23, std::f64::consts::PI],
            "sql": "'); DROP TABLE events; --",
        }),
        json!([]),
        json!("a bare string"),
        json!(12345678901234567u64),
        json!(null),
        json!({"long": "x".repeat(100_000)}),
    ];
    let stream = format!("customer-Zoë-客户-{}", Uuid::now_v7());
    let mut events: Vec<NewEvent> = data
        .iter()
        .map(|d| new_event("customer_registered", d.clone()))
        .collect();
    events[0].schema_version = 7;
    let mut request = append_request(&stream, ExpectedVersion::Exact(0), events);
    let special = &mut request.events[1].metadata;
    special.correlation_id = Uuid::now_v7();
    special.causation_id = Uuid::now_v7();
    special.actor = Actor {
        id: "agent-Ünïcødé \"quoted\"".into(),
        role: Role::Supervisor,
    };
    special.occurred_at = "1999-12-31T23:59:59.000000001Z".parse().expect("timestamp");
    let sent = request.events.clone();
    commit(log, request).await;

    let stored = log.read_stream(&stream, 0).await.expect("read_stream");
    assert_eq!(stored.len(), sent.len());
    for (stored, sent) in stored.iter().zip(&sent) {
        assert_eq!(stored.stream, stream, "the stream name round-trips");
        assert_stored_as_sent(stored, sent);
        assert_eq!(
            serde_json::to_string(&stored.data).expect("json"),
            serde_json::to_string(&sent.data).expect("json"),
            "data serializes to the same bytes"
        );
    }
    assert_eq!(stored[0].data["big"].as_u64(), Some(beyond_f64_integers));
    assert_eq!(stored[0].data["u64_max"].as_u64(), Some(u64::MAX));
    assert_eq!(stored[0].data["i64_min"].as_i64(), Some(i64::MIN));
    assert_eq!(stored[0].schema_version, 7);
    assert_stream_sound(&stream, &stored);
    assert_eq!(
        read_everything(log).await,
        stored,
        "read_all returns the same bytes"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

/// 16 tasks race `Exact(v)` appends on one stream, round after round: exactly one wins each
/// version, the losers get `WrongExpectedVersion`, and the stream stays contiguous.
pub async fn racing_exact_appends_one_winner_per_version(log: Arc<dyn EventLog>) {
    const TASKS: usize = 16;
    const ROUNDS: u64 = 8;
    const EVENTS_PER_APPEND: u64 = 2;
    let stream = stream_name("ticket");
    for round in 0..ROUNDS {
        let expected = round * EVENTS_PER_APPEND;
        let barrier = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (log, barrier) = (log.clone(), barrier.clone());
                let request = append_request(
                    &stream,
                    ExpectedVersion::Exact(expected),
                    numbered_events(EVENTS_PER_APPEND as usize),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    log.append(request).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("racing task") {
                Ok(AppendOutcome::Committed(c)) => winners.push(c),
                Err(Error::WrongExpectedVersion { actual, .. }) => assert!(
                    actual > expected,
                    "round {round}: a loser saw version {actual}, not beyond {expected}"
                ),
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {TASKS} Exact({expected}) appends wins: {winners:?}"
        );
        assert_eq!(winners[0].version, expected + EVENTS_PER_APPEND);
    }
    let stored = log.read_stream(&stream, 0).await.expect("read_stream");
    assert_eq!(stored.len() as u64, ROUNDS * EVENTS_PER_APPEND);
    assert_stream_sound(&stream, &stored);
    assert_positions_one_to_n(&stored);
}

/// What one appending task did.
struct Appended {
    command_id: Uuid,
    committed: Committed,
    event_ids: Vec<Uuid>,
}

/// 32 tasks x 50 `Any` appends on 8 shared streams: every append commits exactly once,
/// positions are 1..=N with no gap or repeat, each append's events are contiguous, and each
/// stream is contiguous with a valid chain.
pub async fn concurrent_any_appends_commit_exactly_once(log: Arc<dyn EventLog>) {
    const TASKS: usize = 32;
    const APPENDS_PER_TASK: usize = 50;
    const STREAMS: usize = 8;
    let streams: Arc<Vec<String>> = Arc::new(
        (0..STREAMS)
            .map(|i| stream_name(["ticket", "agent"][i % 2]))
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (log, streams, barrier) = (log.clone(), streams.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut appended = Vec::with_capacity(APPENDS_PER_TASK);
                for i in 0..APPENDS_PER_TASK {
                    let request = append_request(
                        &streams[(task + i) % STREAMS],
                        ExpectedVersion::Any,
                        numbered_events(1 + (task + i) % 3),
                    );
                    let command_id = request.command_id;
                    let event_ids = request.events.iter().map(|e| e.event_id).collect();
                    let committed = commit(&*log, request).await;
                    let head = log.head().await.expect("head");
                    assert!(
                        head >= committed.position,
                        "head() is {head} right after an append committed at {}: an \
                         acknowledged append must be visible in the head",
                        committed.position
                    );
                    appended.push(Appended {
                        command_id,
                        committed,
                        event_ids,
                    });
                }
                appended
            })
        })
        .collect();
    let mut appended = Vec::new();
    for task in tasks {
        appended.extend(task.await.expect("appending task"));
    }
    let total: usize = appended.iter().map(|a| a.event_ids.len()).sum();

    let everything = read_everything(&*log).await;
    assert_eq!(
        everything.len(),
        total,
        "every committed event is stored once"
    );
    assert_positions_one_to_n(&everything);
    assert_eq!(
        log.head().await.expect("head"),
        total as u64,
        "once every append has returned, head() is the last position (a head published out \
         of order by racing appends can go backwards)"
    );
    let ids: HashSet<Uuid> = everything.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), total, "no event is stored twice");

    for a in &appended {
        let n = a.event_ids.len() as u64;
        let first = (a.committed.position - n) as usize; // index of its first event
        for (k, event) in everything[first..first + n as usize].iter().enumerate() {
            assert_eq!(
                event.event_id,
                a.event_ids[k],
                "append {} must occupy positions {}..={} contiguously",
                a.command_id,
                a.committed.position + 1 - n,
                a.committed.position
            );
            assert_eq!(event.stream, a.committed.stream);
            assert_eq!(event.version, a.committed.version + 1 + k as u64 - n);
        }
    }
    // Spot-check idempotency records (every 7th, to bound the work on slow backends).
    for a in appended.iter().step_by(7) {
        assert_eq!(
            log.find_command(a.command_id).await.expect("find_command"),
            Some(a.committed.clone()),
            "find_command for {}",
            a.command_id
        );
    }
    let mut by_stream: HashMap<&str, Vec<StoredEvent>> = HashMap::new();
    for event in &everything {
        by_stream
            .entry(event.stream.as_str())
            .or_default()
            .push(event.clone());
    }
    assert_eq!(by_stream.len(), STREAMS);
    for (stream, events) in &by_stream {
        assert_stream_sound(stream, events);
    }
}

/// A reader tailing with `read_all` + `wait_beyond` while writers append sees every event
/// exactly once, in position order, never skipping a position.
pub async fn tailing_reader_sees_every_event_once(log: Arc<dyn EventLog>) {
    const WRITERS: usize = 8;
    const APPENDS_PER_WRITER: usize = 25;
    const EVENTS_PER_APPEND: usize = 2;
    const TOTAL: u64 = (WRITERS * APPENDS_PER_WRITER * EVENTS_PER_APPEND) as u64;
    const PAGE: usize = 16;
    const LIMIT: Duration = Duration::from_secs(120);

    let start = Arc::new(Barrier::new(WRITERS + 1));
    let reader = {
        let (log, start) = (log.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            let mut seen: Vec<StoredEvent> = Vec::new();
            let mut after: Position = 0;
            let mut last_head: Position = 0;
            while after < TOTAL {
                let head = log.head().await.expect("tail head");
                assert!(
                    head >= last_head,
                    "head went backwards from {last_head} to {head}"
                );
                last_head = head;
                let page = log
                    .read_all(after, PAGE, Filter::All)
                    .await
                    .expect("tail read_all");
                if page.is_empty() {
                    log.wait_beyond(after, Duration::from_secs(10))
                        .await
                        .expect("tail wait_beyond");
                    continue;
                }
                for event in page {
                    assert_eq!(
                        event.position,
                        after + 1,
                        "the tail saw position {} right after {after}: a position was skipped or repeated",
                        event.position
                    );
                    after = event.position;
                    seen.push(event);
                }
            }
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (log, start) = (log.clone(), start.clone());
            tokio::spawn(async move {
                let stream = stream_name("ticket");
                start.wait().await;
                let mut ids = Vec::new();
                for i in 0..APPENDS_PER_WRITER {
                    let request = append_request(
                        if i % 3 == 0 { "ticket-shared" } else { &stream },
                        ExpectedVersion::Any,
                        numbered_events(EVENTS_PER_APPEND),
                    );
                    ids.extend(request.events.iter().map(|e| e.event_id));
                    commit(&*log, request).await;
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer"));
    }
    let seen = tokio::time::timeout(LIMIT, reader)
        .await
        .unwrap_or_else(|_| panic!("the tail did not reach position {TOTAL} within {LIMIT:?}"))
        .expect("reader");
    assert_eq!(seen.len() as u64, TOTAL);
    let seen_ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(seen_ids.len(), seen.len(), "the tail saw an event twice");
    assert_eq!(seen_ids, written, "the tail saw exactly the written events");
    assert_eq!(seen, read_everything(&*log).await);
}

/// The categories the [`Unchanged`] checks guard.
const GUARDED: &[&str] = &["agent", "customer"];

/// An append carrying [`Unchanged`] commits while no event of its categories came after its
/// position, whatever else was appended (other categories, its own stream); once one has,
/// it is refused with [`Error::Changed`] naming the category and position, and stores
/// nothing, not even its command id.
pub async fn unchanged_condition_refuses_after_a_newer_event(log: Arc<dyn EventLog>) {
    let log = &*log;
    let agent = stream_name("agent");
    let seen = commit(
        log,
        append_request(&agent, ExpectedVersion::Exact(0), numbered_events(1)),
    )
    .await
    .position;
    // Other categories moving does not matter.
    commit(
        log,
        append_request(
            &stream_name("calendar"),
            ExpectedVersion::Any,
            numbered_events(2),
        ),
    )
    .await;
    let ticket = stream_name("ticket");
    let mut guarded = append_request(&ticket, ExpectedVersion::Exact(0), numbered_events(1));
    guarded.unchanged = Some(Unchanged {
        categories: GUARDED,
        after: seen,
    });
    let first = commit(log, guarded).await;
    assert_eq!(first.version, 1, "a guarded append whose condition holds");

    let moved = commit(
        log,
        append_request(
            &stream_name("customer"),
            ExpectedVersion::Any,
            numbered_events(1),
        ),
    )
    .await
    .position;
    let head = log.head().await.expect("head");
    let mut stale = append_request(&ticket, ExpectedVersion::Exact(1), numbered_events(2));
    stale.unchanged = Some(Unchanged {
        categories: GUARDED,
        after: seen,
    });
    match log.append(stale.clone()).await {
        Err(Error::Changed {
            category,
            position,
            after,
        }) => assert_eq!(
            (category.as_str(), position, after),
            ("customer", moved, seen),
            "the refusal names the category that moved, where, and the position decided on"
        ),
        other => panic!("a guarded append after a newer customer event: got {other:?}"),
    }
    assert_eq!(
        log.head().await.expect("head"),
        head,
        "a refused append stores nothing"
    );
    assert_eq!(
        log.find_command(stale.command_id)
            .await
            .expect("find_command"),
        None,
        "a refused append does not record its command id"
    );

    stale.unchanged = Some(Unchanged {
        categories: GUARDED,
        after: moved,
    });
    let retried = commit(log, stale).await;
    assert_eq!(
        (retried.version, retried.position),
        (3, head + 2),
        "decided again on the newer position, the same command appends"
    );
}

/// Many guarded appends race appends to a guarded category (in one process, so backends
/// that batch put them in the same batches): every guarded append that commits comes before
/// any guarded-category event after its position, and every refused one had such an event
/// before it. Whatever the interleaving, the log never holds a guarded append committed
/// after a change it did not see.
pub async fn unchanged_condition_holds_under_concurrent_appends(log: Arc<dyn EventLog>) {
    const GUARDED_APPENDS: usize = 48;
    const CHANGES: usize = 8;
    let seen = commit(
        log.as_ref(),
        append_request(
            &stream_name("agent"),
            ExpectedVersion::Any,
            numbered_events(1),
        ),
    )
    .await
    .position;
    let barrier = Arc::new(Barrier::new(GUARDED_APPENDS + CHANGES));
    let mut tasks = Vec::new();
    for i in 0..GUARDED_APPENDS + CHANGES {
        let (log, barrier) = (log.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut request = if i < GUARDED_APPENDS {
                let mut r = append_request(
                    &stream_name("ticket"),
                    ExpectedVersion::Exact(0),
                    numbered_events(1),
                );
                r.unchanged = Some(Unchanged {
                    categories: GUARDED,
                    after: seen,
                });
                r
            } else {
                append_request(
                    &stream_name("customer"),
                    ExpectedVersion::Any,
                    numbered_events(1),
                )
            };
            request.events[0].data = json!({ "task": i });
            barrier.wait().await;
            (i < GUARDED_APPENDS, log.append(request).await)
        }));
    }
    let mut refused = 0;
    let mut committed_guarded = Vec::new();
    for task in tasks {
        match task.await.expect("append task") {
            (true, Ok(AppendOutcome::Committed(c))) => committed_guarded.push(c.position),
            (
                true,
                Err(Error::Changed {
                    category,
                    position,
                    after,
                }),
            ) => {
                assert_eq!((category.as_str(), after), ("customer", seen));
                assert!(
                    position > seen,
                    "the change named is after the position decided on"
                );
                refused += 1;
            }
            (false, Ok(AppendOutcome::Committed(_))) => {}
            (guarded, other) => panic!("append (guarded: {guarded}) failed: {other:?}"),
        }
    }
    let events = read_everything(log.as_ref()).await;
    let first_change = events
        .iter()
        .find(|e| e.position > seen && GUARDED.contains(&e.category()))
        .map(|e| e.position)
        .expect("the changes were appended");
    for position in &committed_guarded {
        assert!(
            *position < first_change,
            "a guarded append committed at {position}, after the change at {first_change}"
        );
    }
    assert_eq!(
        committed_guarded.len() + refused,
        GUARDED_APPENDS,
        "each guarded append either committed or was refused"
    );
    assert_eq!(
        events.len(),
        1 + committed_guarded.len() + CHANGES,
        "refused appends stored nothing"
    );
}

/// The log has an identity from the start: a random UUID (v4), the same at every call and
/// after appends (exports, the events stream and checkpoints carry it).
pub async fn log_id_is_random_and_stable(log: Arc<dyn EventLog>) {
    let id = log.log_id().await.expect("log_id");
    assert!(!id.is_nil(), "the log id is nil");
    assert_eq!(
        id.get_version(),
        Some(uuid::Version::Random),
        "the log id {id} is not a random (v4) UUID"
    );
    commit(
        log.as_ref(),
        append_request(
            &stream_name("ticket"),
            ExpectedVersion::Any,
            numbered_events(3),
        ),
    )
    .await;
    assert_eq!(
        log.log_id().await.expect("log_id"),
        id,
        "the log id changed after an append"
    );
}

/// The idempotency records tile the log: one per append (a duplicate adds none), in position
/// order, each naming its command and the positions it committed; paging by `after` visits
/// each once.
pub async fn command_records_tile_the_log(log: Arc<dyn EventLog>) {
    assert!(log
        .command_records(0, 10)
        .await
        .expect("records")
        .is_empty());
    let mut expected = Vec::new();
    for (n, count) in [(0, 1), (1, 3), (2, 1), (3, 2)] {
        let stream = stream_name(if n % 2 == 0 { "ticket" } else { "agent" });
        let request = append_request(&stream, ExpectedVersion::Any, numbered_events(count));
        let command_id = request.command_id;
        let committed = commit(log.as_ref(), request.clone()).await;
        // A repeated command appends nothing and records nothing.
        assert!(matches!(
            log.append(request).await,
            Ok(AppendOutcome::Duplicate(_))
        ));
        expected.push(CommandRecord {
            command_id,
            first_position: committed.position + 1 - count as u64,
            last_position: committed.position,
        });
    }
    assert_eq!(
        log.command_records(0, 100).await.expect("records"),
        expected
    );
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = log.command_records(after, 2).await.expect("records");
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2, "a page holds at most its limit");
        after = last.last_position;
        paged.extend(page);
    }
    assert_eq!(paged, expected, "pages visit each record once, in order");
    assert_eq!(
        log.command_records(expected[1].last_position, 100)
            .await
            .expect("records"),
        expected[2..],
        "after a record's last position come the later records"
    );
}

// ---------------------------------------------------------------------------------------------
// The key store beside the log (`EventLog::keys`).

/// A customer's key is created once: every `get_or_create` and `get` returns it until it is
/// destroyed; `destroy` says whether there was one; a key made after a destruction is new.
pub async fn keys_are_created_once_and_destroyed(log: Arc<dyn EventLog>) {
    let keys = log.keys();
    let customer = format!("cust-{}", Uuid::new_v4().simple());
    assert!(
        keys.get(&customer).await.expect("get").is_none(),
        "a key before any was made"
    );
    let first = keys.get_or_create(&customer).await.expect("create");
    assert_eq!(
        keys.get_or_create(&customer).await.expect("again"),
        first,
        "a second key"
    );
    assert_eq!(keys.get(&customer).await.expect("get"), Some(first.clone()));
    let other = keys.get_or_create("cust-other").await.expect("other");
    assert_ne!(other, first, "two customers share a key");
    assert!(
        keys.destroy(&customer).await.expect("destroy"),
        "nothing destroyed"
    );
    assert!(
        keys.get(&customer).await.expect("get").is_none(),
        "the key outlived destroy"
    );
    assert!(
        !keys.destroy(&customer).await.expect("destroy again"),
        "destroyed twice"
    );
    let renewed = keys.get_or_create(&customer).await.expect("renew");
    assert_ne!(renewed, first, "a destroyed key came back");
    assert_eq!(
        keys.get("cust-other").await.expect("get"),
        Some(other),
        "a neighbour's key went"
    );
}

/// Keys created concurrently, for the same customers and among appends, agree: every caller
/// gets the one key stored, and every append still commits once.
pub async fn keys_created_under_appends_agree(log: Arc<dyn EventLog>) {
    const CUSTOMERS: usize = 8;
    const CALLERS: usize = 4;
    let suffix = Uuid::new_v4().simple().to_string();
    let customer = move |c: usize| format!("cust-{c}-{suffix}");
    let barrier = Arc::new(Barrier::new(CUSTOMERS * CALLERS + CUSTOMERS));
    let mut creators = Vec::new();
    for c in 0..CUSTOMERS {
        for _ in 0..CALLERS {
            let (log, barrier, id) = (log.clone(), barrier.clone(), customer(c));
            creators.push(tokio::spawn(async move {
                barrier.wait().await;
                (c, log.keys().get_or_create(&id).await.expect("create"))
            }));
        }
    }
    let mut appenders = Vec::new();
    for _ in 0..CUSTOMERS {
        let (log, barrier) = (log.clone(), barrier.clone());
        appenders.push(tokio::spawn(async move {
            barrier.wait().await;
            let request = append_request(
                &stream_name("ticket"),
                ExpectedVersion::Any,
                numbered_events(2),
            );
            commit(log.as_ref(), request).await
        }));
    }
    let mut got: HashMap<usize, Vec<closeloop_log::DataKey>> = HashMap::new();
    for creator in creators {
        let (c, key) = creator.await.expect("creator");
        got.entry(c).or_default().push(key);
    }
    for appender in appenders {
        appender.await.expect("appender");
    }
    assert_eq!(
        log.head().await.expect("head"),
        2 * CUSTOMERS as u64,
        "appends lost"
    );
    for (c, keys) in got {
        let stored = log.keys().get(&customer(c)).await.expect("get");
        assert!(
            keys.iter().all(|k| Some(k) == stored.as_ref()),
            "customer {c}: callers got different keys, or not the stored one"
        );
    }
}

/// `append_with_keys` stores a new customer's key with the append; a key for a customer who
/// has another one by now is refused (`KeyTaken`) and nothing is appended.
pub async fn appends_store_their_new_keys_or_refuse(log: Arc<dyn EventLog>) {
    let customer = format!("cust-{}", Uuid::new_v4().simple());
    let first = closeloop_log::DataKey::generate();
    let request = append_request(
        &stream_name("ticket"),
        ExpectedVersion::Any,
        numbered_events(2),
    );
    let outcome = log
        .append_with_keys(request, vec![(customer.clone(), first.clone())])
        .await
        .expect("append with a new key");
    assert!(
        matches!(outcome, AppendOutcome::Committed(_)),
        "{outcome:?}"
    );
    assert_eq!(
        log.keys().get(&customer).await.expect("get"),
        Some(first.clone())
    );

    let second = closeloop_log::DataKey::generate();
    let request = append_request(
        &stream_name("ticket"),
        ExpectedVersion::Any,
        numbered_events(1),
    );
    match log
        .append_with_keys(request, vec![(customer.clone(), second)])
        .await
    {
        Err(Error::KeyTaken { customer_id }) => assert_eq!(customer_id, customer),
        other => panic!("a second key for {customer} was not refused: {other:?}"),
    }
    assert_eq!(
        log.head().await.expect("head"),
        2,
        "the refused append appended"
    );
    assert_eq!(
        log.keys().get(&customer).await.expect("get"),
        Some(first.clone())
    );

    // The key already stored, passed again, is no conflict.
    let request = append_request(
        &stream_name("ticket"),
        ExpectedVersion::Any,
        numbered_events(1),
    );
    log.append_with_keys(request, vec![(customer.clone(), first)])
        .await
        .expect("append with the stored key");
    assert_eq!(log.head().await.expect("head"), 3);
}
