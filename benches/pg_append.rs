//! PostgreSQL append throughput: events/s through `PostgresLog::append` (one event per
//! command) at 1, 16 and 64 concurrent committers, beside raw ceilings measured in the same
//! run on the same server with none of our logic: single-row INSERT transactions at the same
//! concurrency, and 100-row multi-row INSERT transactions, into a copy of the `events` table
//! (same columns and indexes, no triggers), with the same rows.
//!
//! Run: `cargo bench --bench pg_append` (PostgreSQL from `CLOSELOOP_BENCH_POSTGRES`, else
//! `CLOSELOOP_TEST_POSTGRES`, else `postgres://postgres@127.0.0.1:5432/test`). Each figure
//! is the mean of `BENCH_ROUNDS` (default 5) rounds of `BENCH_SECS` (default 1) seconds,
//! ours and the raw ones interleaved so that they share whatever else the machine is doing.
//! `BENCH_COMMITTERS` (e.g. `1,64`) picks the committer counts. Works in a scratch schema
//! that it drops at the end. Targets (from the issue): one sequential committer at least 70% of the
//! raw single-row rate; 64 committers at least half of the raw batched ceiling.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop_core::domain::{Actor, Role};
use closeloop_core::log::postgres::{PostgresLog, PostgresOptions};
use closeloop_core::log::{
    AppendOutcome, AppendRequest, EventLog, ExpectedVersion, Metadata, NewEvent,
};
use jiff::Timestamp;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

/// Committer counts measured unless `BENCH_COMMITTERS` (comma-separated) says otherwise.
const CONCURRENCY: [usize; 3] = [1, 16, 64];
const BATCH_ROWS: usize = 100;
const WARMUP: Duration = Duration::from_millis(200);

fn url() -> String {
    std::env::var("CLOSELOOP_BENCH_POSTGRES")
        .or_else(|_| std::env::var("CLOSELOOP_TEST_POSTGRES"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {} ({e}); start it with scripts/services.sh",
                url()
            )
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A realistic event: an assignment, with a command handler's metadata.
fn event(command_id: Uuid) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ticket_assigned".into(),
        schema_version: 1,
        data: json!({"ticket_id": Uuid::now_v7(), "agent_id": "agent-17"}),
        metadata: Metadata {
            command_id,
            correlation_id: command_id,
            causation_id: command_id,
            actor: Actor {
                id: "lead-3".into(),
                role: Role::Supervisor,
            },
            occurred_at: Timestamp::now(),
            recorded_at: Timestamp::now(),
            command_hash: None,
        },
    }
}

/// The same event as a raw row: `(stream, data, metadata, event_id, hash)`.
fn raw_row() -> (Value, Value, Uuid, String) {
    let e = event(Uuid::now_v7());
    let hash = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    (
        e.data,
        serde_json::to_value(&e.metadata).expect("metadata"),
        e.event_id,
        hash,
    )
}

type Fut2 = std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>;

/// A client loop: called again and again until the deadline; returns events written.
type Step = Box<dyn FnMut() -> Fut2 + Send>;

async fn measure(steps: Vec<Step>, duration: Duration) -> f64 {
    let start = Instant::now() + WARMUP;
    let end = start + duration;
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|mut step| {
            tokio::spawn(async move {
                let mut counted = 0u64;
                loop {
                    let written = step().await;
                    let now = Instant::now();
                    if now >= end {
                        return counted;
                    }
                    if now >= start {
                        counted += written;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("client");
    }
    total as f64 / duration.as_secs_f64()
}

/// Steps that append one event per command through the log, each client on its own stream.
fn log_steps(log: &Arc<PostgresLog>, clients: usize) -> Vec<Step> {
    (0..clients)
        .map(|_| {
            let log = log.clone();
            let stream = format!("ticket-{}", Uuid::now_v7());
            let version = Arc::new(AtomicI64::new(0));
            Box::new(move || {
                let (log, stream, version) = (log.clone(), stream.clone(), version.clone());
                Box::pin(async move {
                    let command_id = Uuid::now_v7();
                    let request = AppendRequest {
                        stream,
                        expected: ExpectedVersion::Exact(version.load(Ordering::Relaxed) as u64),
                        command_id,
                        events: vec![event(command_id)],
                        unchanged: None,
                    };
                    match log.append(request).await {
                        Ok(AppendOutcome::Committed(c)) => {
                            version.store(c.version as i64, Ordering::Relaxed);
                            1u64
                        }
                        other => panic!("append: {other:?}"),
                    }
                }) as Fut2
            }) as Step
        })
        .collect()
}

/// Steps that insert `rows` rows per autocommit INSERT into the raw table.
async fn raw_steps(
    schema: &str,
    clients: usize,
    rows: usize,
    position: &Arc<AtomicI64>,
) -> Vec<Step> {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = |i: usize| format!("${}", r * 9 + i);
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(9)
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO \"{schema}\".raw_events \
         (position, stream, version, event_id, type, schema_version, data, metadata, hash) \
         VALUES {}",
        values.join(", ")
    );
    let mut steps = Vec::new();
    for _ in 0..clients {
        let client = Arc::new(connect().await);
        let statement = client.prepare(&sql).await.expect("prepare the raw insert");
        let stream = format!("ticket-{}", Uuid::now_v7());
        let version = Arc::new(AtomicI64::new(0));
        let position = position.clone();
        steps.push(Box::new(move || {
            let (client, statement, stream, version, position) = (
                client.clone(),
                statement.clone(),
                stream.clone(),
                version.clone(),
                position.clone(),
            );
            Box::pin(async move {
                let first = position.fetch_add(rows as i64, Ordering::Relaxed) + 1;
                let first_version = version.fetch_add(rows as i64, Ordering::Relaxed) + 1;
                let mut owned: Vec<(i64, i64, Uuid, Value, Value, String)> = Vec::new();
                for r in 0..rows as i64 {
                    let (data, metadata, event_id, hash) = raw_row();
                    owned.push((first + r, first_version + r, event_id, data, metadata, hash));
                }
                let event_type = "ticket_assigned";
                let schema_version = 1i32;
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
                for (position, version, event_id, data, metadata, hash) in &owned {
                    params.extend([
                        position as &(dyn tokio_postgres::types::ToSql + Sync),
                        &stream,
                        version,
                        event_id,
                        &event_type,
                        &schema_version,
                        data,
                        metadata,
                        hash,
                    ]);
                }
                client
                    .execute(&statement, &params)
                    .await
                    .expect("raw insert");
                rows as u64
            }) as Fut2
        }) as Step);
    }
    steps
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio >= target {
        "met"
    } else {
        "MISSED"
    }
}

/// The allocator the `closeloop` binary uses (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; this bench is not a test.
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let committers: Vec<usize> = std::env::var("BENCH_COMMITTERS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| CONCURRENCY.to_vec());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let duration = Duration::from_secs_f64(secs);
    let schema = format!("cl_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let admin = connect().await;
    let log = Arc::new(
        PostgresLog::connect_with(
            &url(),
            PostgresOptions {
                schema: schema.clone(),
                ..PostgresOptions::default()
            },
        )
        .await
        .expect("connect the log"),
    );
    admin
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".raw_events (LIKE \"{schema}\".events INCLUDING ALL)"
        ))
        .await
        .expect("raw table");
    let position = Arc::new(AtomicI64::new(0));

    println!(
        "PostgreSQL append throughput, events/s: means of {rounds} interleaved rounds of {secs} s \
         (after {} ms warm-up each), so that ours and the raw ceilings see the same background \
         load; ratios are medians of the per-round ratios; schema {schema}",
        WARMUP.as_millis()
    );
    println!(
        "{:>11} | {:>16} | {:>21} | {:>6} | {:>10}",
        "committers", "closeloop append", "raw 1-row INSERT tx", "ratio", "avg batch"
    );
    // Per committer count: mean rates, and the median of the per-round ratios (robust to a
    // burst of background load hitting one side of one round).
    let mut single_ratio = None;
    let mut batched_ratio = None;
    let mut batched_rate = 0.0;
    for clients in committers.iter().copied() {
        let (mut rates, mut raws, mut batcheds) = (Vec::new(), Vec::new(), Vec::new());
        let before = log.stats();
        for _ in 0..rounds {
            rates.push(measure(log_steps(&log, clients), duration).await);
            raws.push(measure(raw_steps(&schema, clients, 1, &position).await, duration).await);
            if clients == 64 {
                let steps = raw_steps(&schema, 1, BATCH_ROWS, &position).await;
                batcheds.push(measure(steps, duration).await);
            }
        }
        let after = log.stats();
        let batch = (after.appends - before.appends) as f64
            / (after.batches - before.batches).max(1) as f64;
        let ratio = median(rates.iter().zip(&raws).map(|(o, r)| o / r).collect());
        println!(
            "{clients:>11} | {:>16.0} | {:>21.0} | {:>5.0}% | {batch:>10.1}",
            mean(&rates),
            mean(&raws),
            100.0 * ratio
        );
        if clients == 1 {
            single_ratio = Some(ratio);
        }
        if clients == 64 {
            batched_rate = mean(&batcheds);
            batched_ratio = Some(median(
                rates.iter().zip(&batcheds).map(|(o, b)| o / b).collect(),
            ));
        }
    }
    if let Some(batched_ratio) = batched_ratio {
        println!(
            "raw {BATCH_ROWS}-row multi-row INSERT transactions (1 client, in the rounds of the \
             64-committer line): {batched_rate:.0} events/s"
        );
        println!(
            "target 2: 64 committers >= 50% of raw batched: {:.0}% -> {}",
            100.0 * batched_ratio,
            verdict(batched_ratio, 0.50)
        );
    }
    if let Some(single_ratio) = single_ratio {
        println!(
            "target 1: 1 committer >= 70% of raw single-row (1 client): {:.0}% -> {}",
            100.0 * single_ratio,
            verdict(single_ratio, 0.70)
        );
    }
    println!(
        "(the issue's reference on this machine: ~5,600 events/s raw 1 client, ~21,000 raw at 64 \
         clients, ~140,000 batched)"
    );
    println!("writer: {:?}", log.stats());

    drop(log);
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop the scratch schema");
}
