//! Live lag of the tables' projector on PostgreSQL under the 64-committer append load.
//!
//! The seeded workload (`closeloop-workload`, `BENCH_TICKETS` tickets, default 10,000: about
//! 76,000 commands) goes through `closeloop_commands::Handler` on a `PostgresLog` in a
//! scratch schema, 64 tickets in flight, twice:
//! 1. alone: the append rate with no projector (the ceiling);
//! 2. with a `TableProjector` on `PostgresTables::in_schema(..)` tailing the same log in the
//!    same process (`run`: catch up, then `wait_beyond` and batches), while a sampler reads
//!    every 100 ms `log.head() - status.position()` (events not yet folded) and the age of the
//!    oldest unfolded event (now minus its `recorded_at`, the handler's wall clock when it
//!    decided the command, read from the log).
//!
//! Printed: commands/s and events/s of both runs, p50/p99/max of the lag in events and in
//! milliseconds, and how long after the last append the tables were current. Target (from
//! the issue): lag under one second.
//!
//! `cargo bench --bench tables_lag` (PostgreSQL from `CLOSELOOP_BENCH_POSTGRES`, else
//! `CLOSELOOP_TEST_POSTGRES`, else `postgres://postgres@127.0.0.1:5432/test`;
//! `BENCH_CONCURRENCY`, default 64). Scratch schemas are dropped at the end. Under `cargo test
//! --benches` (no `--bench` flag), a 100-ticket smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::postgres::PostgresLog;
use closeloop_core::log::{EventLog, Filter};
use closeloop_projections::tables::postgres::PostgresTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::TableStore;
use closeloop_workload::{self as workload, Workload, WorkloadConfig};
use jiff::Timestamp;
use tokio_postgres::NoTls;

/// The allocator the `closeloop` binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

fn url() -> String {
    std::env::var("CLOSELOOP_BENCH_POSTGRES")
        .or_else(|_| std::env::var("CLOSELOOP_TEST_POSTGRES"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

async fn drop_schemas(schemas: &[String]) {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("connect to drop the scratch schemas");
    tokio::spawn(connection);
    for s in schemas {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .await
            .unwrap_or_else(|e| panic!("drop schema {s}: {e}"));
    }
}

struct Appended {
    commands: usize,
    events: u64,
    seconds: f64,
    rejected: usize,
}

impl Appended {
    fn print(&self, what: &str) {
        println!(
            "{what:<34} {:>8.0} commands/s {:>8.0} events/s  ({} commands, {} events, {:.1} s, {} rejected)",
            self.commands as f64 / self.seconds,
            self.events as f64 / self.seconds,
            self.commands,
            self.events,
            self.seconds,
            self.rejected
        );
    }
}

async fn append(log: Arc<dyn EventLog>, workload: &Workload, concurrency: usize) -> Appended {
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
    let started = Instant::now();
    let stats = workload::run(handler, workload, concurrency, |_| {}).await;
    let seconds = started.elapsed().as_secs_f64();
    Appended {
        commands: workload.len(),
        events: log.head().await.expect("head"),
        seconds,
        rejected: stats.rejected,
    }
}

/// The `q` quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let tickets = if measuring {
        env_usize("BENCH_TICKETS", 10_000)
    } else {
        100
    };
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let generated = workload::generate(&WorkloadConfig {
        tickets,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    let base = format!("cl_bench_lag_{}", std::process::id());
    let (alone, with_log, with_tables) = (
        format!("{base}_alone"),
        format!("{base}_log"),
        format!("{base}_read"),
    );
    let schemas = [alone.clone(), with_log.clone(), with_tables.clone()];
    drop_schemas(&schemas).await;
    println!(
        "tables_lag: {} commands of the seeded workload ({tickets} tickets), {concurrency} tickets in flight, PostgreSQL {}",
        generated.len(),
        url()
    );

    // 1. The ceiling: the appends alone.
    let log: Arc<dyn EventLog> = Arc::new(
        PostgresLog::connect_with_schema(&url(), &alone)
            .await
            .expect("PostgreSQL log"),
    );
    let ceiling = append(log.clone(), &generated, concurrency).await;
    drop(log);

    // 2. The same appends, with the tables' projector tailing the log.
    let log: Arc<dyn EventLog> = Arc::new(
        PostgresLog::connect_with_schema(&url(), &with_log)
            .await
            .expect("PostgreSQL log"),
    );
    let tables: Arc<dyn TableStore> = Arc::new(
        PostgresTables::in_schema(url(), with_tables.clone())
            .await
            .expect("PostgreSQL tables"),
    );
    let projector = TableProjector::open(log.clone(), tables, TableConfig::default())
        .await
        .expect("tables' projector");
    let status = projector.status();
    let (stop, stopped) = closeloop_core::log::Shutdown::new();
    let running = tokio::spawn(projector.run(stopped));

    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let (log, status) = (log.clone(), status.clone());
        tokio::spawn(async move {
            let mut samples: Vec<(f64, f64)> = Vec::new();
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            loop {
                ticker.tick().await;
                if *done_rx.borrow_and_update() {
                    break;
                }
                let head = log.head().await.expect("head");
                let position = status.position();
                let lag = head.saturating_sub(position);
                let age_ms = if lag == 0 {
                    0.0
                } else {
                    let oldest = log
                        .read_all(position, 1, Filter::All)
                        .await
                        .expect("read the oldest unfolded event");
                    oldest.first().map_or(0.0, |e| {
                        let age = Timestamp::now().duration_since(e.metadata.recorded_at);
                        age.as_secs_f64() * 1e3
                    })
                };
                samples.push((lag as f64, age_ms));
            }
            samples
        })
    };
    let loaded = append(log.clone(), &generated, concurrency).await;
    let last_append = Instant::now();
    let _ = done_tx.send(true);
    let samples = sampler.await.expect("sampler");
    let head = log.head().await.expect("head");
    while status.position() < head {
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval
    }
    let drained = last_append.elapsed();
    stop.fire();
    running
        .await
        .expect("projector task")
        .expect("projector ends cleanly");
    if let Some(e) = status.error() {
        panic!("the tables' projector reported: {e}");
    }
    drop(log);

    ceiling.print("appends alone (ceiling)");
    loaded.print("appends with the tables' projector");
    println!(
        "append rate with the projector: {:.0}% of the ceiling",
        100.0 * ceiling.seconds / loaded.seconds
    );
    let mut events: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut millis: Vec<f64> = samples.iter().map(|s| s.1).collect();
    events.sort_by(f64::total_cmp);
    millis.sort_by(f64::total_cmp);
    println!(
        "lag over {} samples every {} ms: events p50 {:.0}, p99 {:.0}, max {:.0}; oldest unfolded event's age p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        SAMPLE_EVERY.as_millis(),
        quantile(&events, 0.5),
        quantile(&events, 0.99),
        quantile(&events, 1.0),
        quantile(&millis, 0.5),
        quantile(&millis, 0.99),
        quantile(&millis, 1.0)
    );
    println!(
        "tables current {:.0} ms after the last append ({head} events)",
        drained.as_secs_f64() * 1e3
    );
    drop_schemas(&schemas).await;
}
