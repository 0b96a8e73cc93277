//! Replay throughput from PostgreSQL: `closeloop replay all` (rebuild of the three report
//! projections from position 0 into a new model, saved in `<schema>_read`, then the atomic
//! switch) in events/s, beside a raw `COPY (SELECT * FROM <schema>.events ORDER BY position)
//! TO STDOUT` of the same table (tokio-postgres `copy_out`, bytes counted and dropped),
//! measured in the same run, interleaved, with the ratio.
//!
//! Run: `cargo bench --bench replay` (PostgreSQL from `CLOSELOOP_BENCH_POSTGRES`, else
//! `CLOSELOOP_TEST_POSTGRES`, else `postgres://postgres@127.0.0.1:5432/test`). The log is a
//! generated workload (`BENCH_TICKETS` tickets, default 2000, over 28 days) driven through
//! the real command handler; each figure is the best and the mean of `BENCH_ROUNDS`
//! (default 3) rounds. Works in a scratch schema that it drops at the end.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::workload::{self, WorkloadConfig};
use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::{Filter, READ_BATCH_MAX};
use closeloop_projections::store::open_store;
use closeloop_replay::rebuild::{self, ReplayConfig};
use futures::StreamExt;
use tokio_postgres::NoTls;

fn base_url() -> String {
    std::env::var("CLOSELOOP_BENCH_POSTGRES")
        .or_else(|_| std::env::var("CLOSELOOP_TEST_POSTGRES"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&base_url(), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {} ({e}); start it with scripts/services.sh",
                base_url()
            )
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn stats(rates: &[f64]) -> (f64, f64) {
    let best = rates.iter().copied().fold(0.0, f64::max);
    (best, rates.iter().sum::<f64>() / rates.len() as f64)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list.
    }
    let tickets = env_or("BENCH_TICKETS", 2_000);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let schema = format!("cl_bench_replay_{}", uuid::Uuid::new_v4().simple());
    let sep = if base_url().contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}schema={schema}", base_url());
    let admin = admin().await;

    let result = async {
        let log = closeloop_core::log::open(&url).await.expect("open the log");
        let store = open_store(&url).await.expect("open the read-model store");
        // Fill the log through the real handler.
        let fill = Instant::now();
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
        let load = workload::generate(&WorkloadConfig {
            tickets,
            ..WorkloadConfig::default()
        })
        .expect("workload");
        let stats_run = workload::run(handler, &load, 32, |_| {}).await;
        let events = log.head().await.expect("head");
        println!(
            "log: {events} events ({tickets} tickets, {} commands accepted, {} rejected) \
             filled in {:.1} s",
            stats_run.accepted,
            stats_run.rejected,
            fill.elapsed().as_secs_f64()
        );

        let copy_sql = format!("COPY (SELECT * FROM {schema}.events ORDER BY position) TO STDOUT");
        let (mut replay_rates, mut copy_rates, mut read_rates) =
            (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            // Raw ceiling: the same rows, out of PostgreSQL, nothing decoded.
            let started = Instant::now();
            let stream = admin.copy_out(&copy_sql).await.expect("copy out");
            futures::pin_mut!(stream);
            let mut bytes = 0usize;
            while let Some(chunk) = stream.next().await {
                bytes += chunk.expect("copy chunk").len();
            }
            let copy_s = started.elapsed().as_secs_f64();
            copy_rates.push(events as f64 / copy_s);

            // The log API alone: every event read through `read_all`, nothing folded.
            let started = Instant::now();
            let mut after = 0;
            loop {
                let batch = log
                    .read_all(after, READ_BATCH_MAX, Filter::All)
                    .await
                    .expect("read_all");
                match batch.last() {
                    Some(e) => after = e.position,
                    None => break,
                }
            }
            let read_s = started.elapsed().as_secs_f64();
            read_rates.push(events as f64 / read_s);

            // Ours: replay all, from 0, saved and switched.
            let summary = rebuild::replay(
                log.as_ref(),
                store.as_ref(),
                &rebuild::select("all").expect("all"),
                None,
                &ReplayConfig::default(),
                &AtomicBool::new(false),
                |_| {},
            )
            .await
            .expect("replay");
            assert!(summary.completed && summary.resumed_from == 0);
            // Rate over the whole log (its events of other categories are skipped by the
            // category filter, not read): comparable with COPY's rows of the whole table.
            replay_rates.push(summary.position as f64 / summary.seconds);
            println!(
                "round {round}: replay all: log of {} events ({} folded) in {:.3} s \
                 ({:.0} events/s); read_all only {read_s:.3} s; \
                 COPY {events} rows ({:.1} MB) in {:.3} s ({:.0} rows/s)",
                summary.position,
                summary.events,
                summary.seconds,
                summary.position as f64 / summary.seconds,
                bytes as f64 / 1e6,
                copy_s,
                events as f64 / copy_s
            );
        }
        let (replay_best, replay_mean) = stats(&replay_rates);
        let (copy_best, copy_mean) = stats(&copy_rates);
        let (read_best, read_mean) = stats(&read_rates);
        println!(
            "replay all:  best {replay_best:.0} events/s, mean {replay_mean:.0} events/s\n\
             read_all:    best {read_best:.0} events/s, mean {read_mean:.0} events/s\n\
             raw COPY:    best {copy_best:.0} rows/s, mean {copy_mean:.0} rows/s\n\
             ratio (replay / COPY, means): {:.1}%",
            100.0 * replay_mean / copy_mean
        );
    }
    .await;
    let _ = admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_read CASCADE;"
        ))
        .await;
    result
}
