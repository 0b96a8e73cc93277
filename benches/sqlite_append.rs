//! SQLite appends through the command handler for the demo workload, beside raw SQLite inserts
//! of the same rows measured in the same run on the same disk.
//!
//! Run: `cargo bench --bench sqlite_append` (prints a table; `BENCH_TICKETS` scales it).

use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::{sqlite::SqliteLog, EventLog, Filter, StoredEvent, READ_BATCH_MAX};
use closeloop_workload::{self as workload, WorkloadConfig};

const RAW_SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE events (
    position INTEGER PRIMARY KEY, stream TEXT NOT NULL, category TEXT NOT NULL,
    version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    schema_version INTEGER NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL,
    hash TEXT NOT NULL, UNIQUE (stream, version)) STRICT;
CREATE INDEX events_category_position ON events (category, position);
";

/// Inserts `rows` into a fresh file, `per_transaction` rows per transaction; returns rows/s.
fn raw_insert(
    dir: &std::path::Path,
    name: &str,
    rows: &[StoredEvent],
    per_transaction: usize,
) -> f64 {
    let mut db = rusqlite::Connection::open(dir.join(name)).expect("open raw db");
    db.execute_batch(RAW_SCHEMA).expect("raw schema");
    let started = Instant::now();
    for chunk in rows.chunks(per_transaction) {
        let tx = db.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .expect("prepare");
            for e in chunk {
                insert
                    .execute(rusqlite::params![
                        e.position as i64,
                        e.stream,
                        e.category(),
                        e.version as i64,
                        e.event_id.to_string(),
                        e.event_type,
                        e.schema_version,
                        e.data.to_string(),
                        serde_json::to_string(&e.metadata).expect("metadata"),
                        e.hash,
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    rows.len() as f64 / started.elapsed().as_secs_f64()
}

/// The allocator the `closeloop` binary uses (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; this bench is not a test.
    }
    let tickets = std::env::var("BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let work = workload::generate(&WorkloadConfig {
        tickets,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "demo workload: {} commands ({} tickets), SQLite WAL + synchronous=FULL, on {}",
        work.len(),
        tickets,
        dir.path().display()
    );
    println!("{:<52} {:>14}", "what", "per second");

    let mut rows = Vec::new();
    for (concurrency, name) in [(64usize, "handler64.db"), (1, "handler1.db")] {
        let log: Arc<dyn EventLog> = Arc::new(
            SqliteLog::open(dir.path().join(name).to_str().expect("utf-8 path"))
                .await
                .expect("open log"),
        );
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
        let started = Instant::now();
        let stats = workload::run(handler, &work, concurrency, |_| {}).await;
        let rate = work.len() as f64 / started.elapsed().as_secs_f64();
        assert_eq!(
            stats.rejected, 0,
            "the demo workload is accepted whole: {:?}",
            stats.rejections
        );
        println!(
            "{:<52} {:>14.0}",
            format!("commands through the handler, {concurrency} tickets in flight"),
            rate
        );
        if rows.is_empty() {
            let mut after = 0;
            loop {
                let batch = log
                    .read_all(after, READ_BATCH_MAX, Filter::All)
                    .await
                    .expect("read");
                let Some(last) = batch.last() else { break };
                after = last.position;
                rows.extend(batch);
            }
        }
    }
    let single = raw_insert(dir.path(), "raw1.db", &rows, 1);
    println!(
        "{:<52} {:>14.0}",
        "raw INSERT, one row per transaction", single
    );
    let batched = raw_insert(dir.path(), "raw256.db", &rows, 256);
    println!(
        "{:<52} {:>14.0}",
        "raw INSERT, 256 rows per transaction", batched
    );
}
