//! The event-log conformance suite (`closeloop_testkit::conformance`) run against the
//! memory and SQLite backends, plus what only SQLite has: a file that outlives the process,
//! append-only triggers, group commit.

use std::sync::Arc;

use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{verify_chain, AppendOutcome, EventLog, ExpectedVersion, Filter};
use closeloop_core::Error;
use closeloop_testkit::conformance::{
    append_request, commit, numbered_events, read_everything, stream_name, Subject,
};
use tokio::sync::Barrier;

mod memory {
    use super::*;

    closeloop_testkit::conformance_tests!(|| async {
        Subject {
            log: Arc::new(MemoryLog::new()),
            cleanup: None,
        }
    });
}

mod sqlite {
    use super::*;

    /// A fresh log in its own temporary directory, removed by the cleanup (after the log, and
    /// so its writer thread, is gone).
    async fn fresh() -> Subject {
        let (log, dir) = open_temp().await;
        Subject {
            log: Arc::new(log),
            cleanup: Some(Box::pin(async move { drop(dir) })),
        }
    }

    closeloop_testkit::conformance_tests!(fresh);
}

/// A new SQLite log in a new temporary directory (keep the directory alive while it is used).
async fn open_temp() -> (SqliteLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("closeloop.db");
    let log = SqliteLog::open(path.to_str().expect("UTF-8 temporary path"))
        .await
        .expect("open the SQLite log");
    (log, dir)
}

/// A raw connection to the log's file, as an operator with the `sqlite3` shell would have.
fn raw_connection(log: &SqliteLog) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(log.path()).expect("raw connection");
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_data_survives_close_and_reopen() {
    let (log, dir) = open_temp().await;
    let path = log.path().to_owned();
    let ticket = stream_name("ticket");
    let first = append_request(&ticket, ExpectedVersion::Exact(0), numbered_events(3));
    let first_committed = commit(&log, first.clone()).await;
    for i in 0..10 {
        let stream = if i % 2 == 0 {
            ticket.clone()
        } else {
            stream_name("agent")
        };
        commit(
            &log,
            append_request(&stream, ExpectedVersion::Any, numbered_events(1 + i % 3)),
        )
        .await;
    }
    let before = read_everything(&log).await;
    let head = log.head().await.expect("head");
    assert_eq!(head, before.len() as u64);
    drop(log);

    let log = SqliteLog::open(path.to_str().expect("UTF-8 path"))
        .await
        .expect("reopen");
    assert_eq!(
        log.head().await.expect("head"),
        head,
        "the head after reopening"
    );
    assert_eq!(
        read_everything(&log).await,
        before,
        "the same events after reopening"
    );
    assert_eq!(
        log.append(first.clone()).await.expect("retry after reopen"),
        AppendOutcome::Duplicate(first_committed.clone()),
        "a command id is still known after reopening"
    );
    assert_eq!(
        log.find_command(first.command_id)
            .await
            .expect("find_command"),
        Some(first_committed)
    );
    let version = log.read_stream(&ticket, 0).await.expect("read").len() as u64;
    let next = commit(
        &log,
        append_request(&ticket, ExpectedVersion::Exact(version), numbered_events(2)),
    )
    .await;
    assert_eq!(
        next.position,
        head + 2,
        "positions continue after reopening"
    );
    let stream = log.read_stream(&ticket, 0).await.expect("read");
    assert_eq!(
        verify_chain(&stream),
        vec![],
        "the chain continues from the stored hash"
    );
    drop(log);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_events_are_append_only() {
    let (log, _dir) = open_temp().await;
    let stream = stream_name("ticket");
    commit(
        &log,
        append_request(&stream, ExpectedVersion::Any, numbered_events(3)),
    )
    .await;
    let before = read_everything(&log).await;

    let raw = raw_connection(&log);
    let journal_mode: String = raw
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(journal_mode, "wal", "the log file is in WAL mode");
    for sql in [
        "UPDATE events SET data = '{\"forged\": true}' WHERE position = 2",
        "UPDATE events SET hash = 'x'",
        "DELETE FROM events WHERE position = 3",
        "DELETE FROM events",
        "UPDATE commands SET version = 99",
        "DELETE FROM commands",
    ] {
        match raw.execute(sql, []) {
            Err(e) => assert!(
                e.to_string().contains("immutable"),
                "`{sql}` must fail saying records are immutable, got: {e}"
            ),
            Ok(n) => panic!("`{sql}` must fail, but changed {n} rows"),
        }
    }
    drop(raw);
    assert_eq!(read_everything(&log).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_group_commit_failures_do_not_affect_batch_neighbours() {
    const APPENDS: usize = 64;
    let (log, _dir) = open_temp().await;
    let log = Arc::new(log);
    let contended = stream_name("ticket");
    let shared = stream_name("agent");
    let barrier = Arc::new(Barrier::new(APPENDS));
    // Four kinds, interleaved so that every batch mixes them: 0 a new stream at Exact(0)
    // (succeeds), 1 a new stream at Exact(3) (fails), 2 a contended stream at Exact(0) (one
    // wins), 3 a shared stream at Any (succeeds).
    let tasks: Vec<_> = (0..APPENDS)
        .map(|i| {
            let request = match i % 4 {
                0 => append_request(
                    &stream_name("customer"),
                    ExpectedVersion::Exact(0),
                    numbered_events(2),
                ),
                1 => append_request(
                    &stream_name("customer"),
                    ExpectedVersion::Exact(3),
                    numbered_events(2),
                ),
                2 => append_request(&contended, ExpectedVersion::Exact(0), numbered_events(1)),
                _ => append_request(&shared, ExpectedVersion::Any, numbered_events(1)),
            };
            let (log, barrier) = (log.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (i % 4, log.append(request).await)
            })
        })
        .collect();
    let mut committed_events = 0;
    let mut commits = 0;
    let mut contended_wins = 0;
    for task in tasks {
        let (kind, outcome) = task.await.expect("append task");
        match (kind, outcome) {
            (0 | 3, Ok(AppendOutcome::Committed(c))) => {
                commits += 1;
                committed_events += c.events.len();
            }
            (1, Err(Error::WrongExpectedVersion { actual: 0, .. })) => {}
            (2, Ok(AppendOutcome::Committed(c))) => {
                commits += 1;
                contended_wins += 1;
                committed_events += c.events.len();
            }
            (2, Err(Error::WrongExpectedVersion { actual: 1, .. })) => {}
            (kind, other) => panic!("an append of kind {kind} got {other:?}"),
        }
    }
    assert_eq!(
        contended_wins, 1,
        "one Exact(0) append wins the contended stream"
    );
    assert_eq!(commits, APPENDS / 2 + 1);
    let everything = read_everything(&*log).await;
    assert_eq!(everything.len(), committed_events);
    for (i, event) in everything.iter().enumerate() {
        assert_eq!(event.position, i as u64 + 1, "positions stay contiguous");
    }
    assert_eq!(log.head().await.expect("head"), committed_events as u64);
    assert_eq!(
        verify_chain(&log.read_stream(&shared, 0).await.expect("read")),
        vec![]
    );
    let batches = log.batches_committed();
    assert!(
        batches < commits as u64,
        "{commits} concurrent appends should share transactions, but took {batches}"
    );
}

/// An append that fails after some of its events were written (here its second event reuses a
/// stored event id, which the `events` table refuses) is rolled back to its savepoint: none of
/// its events stay, and the appends queued around it commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_an_append_failing_midway_stores_none_of_its_events() {
    const NEIGHBOURS: usize = 16;
    let (log, _dir) = open_temp().await;
    let log = Arc::new(log);
    let stream = stream_name("ticket");
    let existing = append_request(&stream, ExpectedVersion::Any, numbered_events(1));
    let reused_id = existing.events[0].event_id;
    commit(&*log, existing).await;

    let barrier = Arc::new(Barrier::new(NEIGHBOURS + 1));
    let neighbours: Vec<_> = (0..NEIGHBOURS)
        .map(|_| {
            let (log, barrier) = (log.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                commit(
                    &*log,
                    append_request(
                        &stream_name("agent"),
                        ExpectedVersion::Exact(0),
                        numbered_events(2),
                    ),
                )
                .await
            })
        })
        .collect();
    let mut bad = append_request(
        &stream_name("ticket"),
        ExpectedVersion::Any,
        numbered_events(3),
    );
    bad.events[1].event_id = reused_id;
    barrier.wait().await;
    match log.append(bad.clone()).await {
        Err(Error::InvalidAppend(message)) => assert!(
            message.contains(&reused_id.to_string()),
            "the error names the reused event id: {message}"
        ),
        other => {
            panic!("an append reusing a stored event id: expected InvalidAppend, got {other:?}")
        }
    }
    for neighbour in neighbours {
        neighbour.await.expect("neighbour");
    }
    let everything = read_everything(&*log).await;
    assert_eq!(
        everything.len(),
        1 + 2 * NEIGHBOURS,
        "nothing of the failed append stays"
    );
    assert!(everything.iter().all(|e| e.stream != bad.stream));
    for (i, event) in everything.iter().enumerate() {
        assert_eq!(event.position, i as u64 + 1, "positions stay contiguous");
    }
    assert_eq!(
        log.find_command(bad.command_id)
            .await
            .expect("find_command"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_corrupt_rows_are_reported_not_panicked_on() {
    let (log, _dir) = open_temp().await;
    let stream = stream_name("ticket");
    commit(
        &log,
        append_request(&stream, ExpectedVersion::Any, numbered_events(2)),
    )
    .await;
    let raw = raw_connection(&log);
    raw.execute(
        "INSERT INTO events (position, stream, category, version, event_id, type, \
         schema_version, data, metadata, hash) \
         VALUES (3, ?1, 'ticket', 3, 'not-a-uuid', 'thing_happened', 1, '{not json', '{}', 'x')",
        [&stream],
    )
    .expect("a raw insert (inserts are allowed; only changes are not)");
    drop(raw);

    let expect_corrupt = |result: Result<_, Error>, what: &str| match result {
        Err(Error::Corrupt(message)) => assert!(
            message.contains("position 3"),
            "{what}: the error names the position: {message}"
        ),
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    };
    expect_corrupt(log.read_all(0, 10, Filter::All).await, "read_all");
    expect_corrupt(log.read_stream(&stream, 0).await, "read_stream");
    assert_eq!(
        log.read_all(0, 2, Filter::All)
            .await
            .expect("the rows before")
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_opens_through_the_store_url() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("via-url.db").display());
    let log = closeloop_core::log::open(&url).await.expect("open by URL");
    let committed = commit(
        &*log,
        append_request(
            &stream_name("ticket"),
            ExpectedVersion::Any,
            numbered_events(1),
        ),
    )
    .await;
    assert_eq!(committed.position, 1);
    drop(log);
    assert!(
        matches!(
            SqliteLog::open(":memory:").await,
            Err(Error::Unavailable(_))
        ),
        "an in-memory SQLite database cannot be shared with readers: refused"
    );
}

/// The log's identity is stored in the file: the same after a reopen; and a file from
/// before identities (schema version 1, no `log_identity`) gets one when it is next opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_log_id_survives_reopen_and_is_given_on_migration() {
    let (log, dir) = open_temp().await;
    let path = log.path().to_owned();
    let id = log.log_id().await.expect("log id");
    commit(
        &log,
        append_request(
            &stream_name("ticket"),
            ExpectedVersion::Any,
            numbered_events(2),
        ),
    )
    .await;
    {
        let raw = raw_connection(&log);
        let changed = raw.execute("UPDATE log_identity SET log_id = 'x'", []);
        assert!(changed.is_err(), "the identity must be immutable");
    }
    drop(log);
    let log = SqliteLog::open(path.to_str().unwrap())
        .await
        .expect("reopen");
    assert_eq!(log.log_id().await.expect("log id"), id, "same log, same id");
    // Back to schema version 1, as a file written before identities.
    {
        let raw = raw_connection(&log);
        raw.execute_batch(
            "DROP TRIGGER log_identity_no_delete; DROP TABLE log_identity; PRAGMA user_version = 1;",
        )
        .expect("downgrade");
    }
    drop(log);
    let log = SqliteLog::open(path.to_str().unwrap())
        .await
        .expect("migrate");
    let given = log.log_id().await.expect("log id after migration");
    assert_eq!(given.get_version(), Some(uuid::Version::Random));
    assert_ne!(given, id, "a new identity is drawn");
    assert_eq!(read_everything(&log).await.len(), 2, "events untouched");
    drop(log);
    drop(dir);
}
