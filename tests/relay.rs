//! The event relay and the log's identity (issue 13, item 7), over a real nats-server:
//! every published event carries the log's id; a stream filled from another log is refused
//! with both ids named; a log restored from an older backup is stopped at the first
//! position where the stream and the log differ, instead of splicing two timelines.
//! Each test has its own subject prefix and stream names ([`Scope`]), deleted at its end.

use std::sync::Arc;
use std::time::Duration;

use closeloop_commands::nats::Shutdown;
use closeloop_commands::relay::{self, RelayConfig, LOG_ID_HEADER};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{EventLog, ExpectedVersion};
use closeloop_testkit::conformance::{append_request, commit, numbered_events, stream_name};

use crate::nats::Scope;

/// Appends `events` events to a new ticket stream, one append each.
async fn append(log: &dyn EventLog, events: usize) {
    let stream = stream_name("ticket");
    for _ in 0..events {
        commit(
            log,
            append_request(&stream, ExpectedVersion::Any, numbered_events(1)),
        )
        .await;
    }
}

/// Runs the relay for `log` until the events stream holds `count` messages, then stops it.
async fn relay_until(scope: &Scope, log: Arc<dyn EventLog>, count: u64) {
    let config = RelayConfig::from_serve(&scope.config);
    let (trigger, shutdown) = Shutdown::new();
    let js = scope.js.clone();
    let running =
        tokio::spawn(async move { relay::run(&config, log.as_ref(), &js, shutdown).await });
    scope.wait_events(count).await;
    trigger.fire();
    running
        .await
        .expect("relay task")
        .expect("the relay stopped cleanly");
}

/// Runs the relay for `log` and expects it to refuse to start: its error.
async fn relay_refuses(scope: &Scope, log: &dyn EventLog) -> String {
    let config = RelayConfig::from_serve(&scope.config);
    match tokio::time::timeout(
        Duration::from_secs(30),
        relay::run(&config, log, &scope.js, Shutdown::never()),
    )
    .await
    {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the relay stopped without an error"),
        Err(_) => panic!("the relay went on (it should have refused the stream)"),
    }
}

async fn messages(scope: &Scope) -> u64 {
    scope
        .js
        .get_stream(&scope.config.events_stream)
        .await
        .expect("events stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_the_log_id_and_refuses_another_logs_stream() {
    let scope = Scope::new().await;
    let first: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    append(first.as_ref(), 3).await;
    relay_until(&scope, first.clone(), 3).await;
    let first_id = first.log_id().await.unwrap();
    let stream = scope
        .js
        .get_stream(&scope.config.events_stream)
        .await
        .unwrap();
    for sequence in 1..=3 {
        let message = stream.get_raw_message(sequence).await.unwrap();
        assert_eq!(
            message.headers.get(LOG_ID_HEADER).map(|v| v.as_str()),
            Some(first_id.to_string().as_str()),
            "message {sequence} names its log"
        );
    }

    // The same log resumes where it stopped.
    append(first.as_ref(), 2).await;
    relay_until(&scope, first.clone(), 5).await;

    // Another log, with more events than the stream: refused, both ids named, nothing
    // published.
    let other = MemoryLog::new();
    append(&other, 7).await;
    let other_id = other.log_id().await.unwrap();
    let error = relay_refuses(&scope, &other).await;
    assert!(
        error.contains(&first_id.to_string()) && error.contains(&other_id.to_string()),
        "the error names both logs: {error}"
    );
    assert!(error.contains("refusing"), "{error}");
    assert_eq!(
        messages(&scope).await,
        5,
        "nothing published from the other log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_stops_at_the_divergence_of_a_log_restored_from_an_older_backup() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closeloop.db");
    let backup = dir.path().join("backup.db");
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    append(&log, 5).await;
    // The backup, taken at position 5 (a consistent copy, as `.backup` in sqlite3 makes).
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
            .unwrap();
    }
    append(&log, 3).await;
    let log: Arc<dyn EventLog> = Arc::new(log);
    relay_until(&scope, log.clone(), 8).await;
    let published = log.read_all(0, 100, Default::default()).await.unwrap();
    drop(log);

    // The disk is lost; the log comes back from the backup (same identity, head 5) and
    // takes two new events at positions 6 and 7, which the stream holds other events at.
    let restored = SqliteLog::open(backup.to_str().unwrap()).await.unwrap();
    assert_eq!(restored.head().await.unwrap(), 5);
    append(&restored, 2).await;
    let error = relay_refuses(&scope, &restored).await;
    assert!(
        error.contains("diverge at position 6"),
        "the first divergent position is named: {error}"
    );
    assert!(
        error.contains(&published[5].event_id.to_string()),
        "the stream's event at 6 is named: {error}"
    );
    assert!(error.contains("agree up to position 5"), "{error}");
    assert_eq!(messages(&scope).await, 8, "nothing spliced");

    // Past the stream's last position too: the event ids at 8 differ.
    append(&restored, 4).await;
    let error = relay_refuses(&scope, &restored).await;
    assert!(error.contains("diverge at position 6"), "{error}");
    assert_eq!(messages(&scope).await, 8, "nothing spliced");
    drop(restored);
}

/// Crypto-shredding on the events stream: what the relay publishes is the stored data, so
/// customer texts travel as ciphertext (never a key, never in the clear), before and after
/// the customer's erasure; a consumer asks `ticket_history` for the texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_carries_ciphertext_never_clear_customer_text() {
    use crate::shred::{accept, cmd, story, OFFICER, SECRETS};
    let scope = Scope::new().await;
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = closeloop_commands::Handler::new(
        log.clone(),
        closeloop_commands::HandlerConfig::trusting(),
    );
    story(&handler).await;
    accept(
        &handler,
        cmd(
            "erase_customer_data",
            OFFICER,
            serde_json::json!({"customer_id": "cust-erase", "reason": "request",
                               "reference": "DPO-1"}),
        ),
    )
    .await;
    let head = log.head().await.unwrap();
    relay_until(&scope, log.clone(), head).await;
    let stream = scope
        .js
        .get_stream(&scope.config.events_stream)
        .await
        .unwrap();
    let mut published = String::new();
    for sequence in 1..=head {
        let message = stream.get_raw_message(sequence).await.unwrap();
        published.push_str(&String::from_utf8_lossy(&message.payload));
    }
    for secret in SECRETS {
        assert!(
            !published.contains(secret),
            "published in the clear: {secret}"
        );
    }
    assert!(published.contains("enc:v1:cust-erase:"));
    assert!(published.contains("customer_data_erased"));
}
