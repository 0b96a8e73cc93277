//! End-to-end load harness: commands per second and round-trip latency (p50, p99) of
//! `open_ticket` over NATS request/reply into an in-process `serve`, at 1 and 64 concurrent
//! clients, beside a bare NATS request/reply echo measured in the same run (the floor the
//! transport sets).
//!
//! `cargo bench --bench nats_roundtrip`. Environment:
//! - `CLOSELOOP_TEST_NATS` (default `nats://127.0.0.1:4222`; JetStream on);
//! - `CLOSELOOP_BENCH_STORE`: `memory:` (default), `sqlite` (a temporary file), or a
//!   `postgres://...` URL;
//! - `CLOSELOOP_BENCH_SECS`: seconds per measurement (default 5; under `cargo test
//!   --benches`, a 0.2 s smoke run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop_commands::nats::{self, Queries, ServeConfig};
use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::log::EventLog;
use futures::StreamExt;
use hdrhistogram::Histogram;
use uuid::Uuid;

struct Measured {
    requests: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

/// Runs `clients` loops of request/reply on `subject` for `secs`; `body` makes each request.
async fn load(
    client: &async_nats::Client,
    subject: &str,
    clients: usize,
    duration: Duration,
    body: fn() -> Vec<u8>,
    check: fn(&[u8]),
) -> Measured {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, subject) = (client.clone(), subject.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut requests = 0u64;
            while started.elapsed() < duration {
                let sent = Instant::now();
                let reply = client
                    .request(subject.clone(), body().into())
                    .await
                    .expect("a reply");
                histogram
                    .record(sent.elapsed().as_micros() as u64)
                    .expect("latency in range");
                check(&reply.payload);
                requests += 1;
            }
            (requests, histogram)
        }));
    }
    let mut latency_us = Histogram::<u64>::new(3).expect("histogram");
    let mut requests = 0;
    for task in tasks {
        let (n, h) = task.await.expect("client task");
        requests += n;
        latency_us.add(h).expect("same histogram bounds");
    }
    Measured {
        requests,
        elapsed: started.elapsed(),
        latency_us,
    }
}

fn open_ticket() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "command_id": Uuid::new_v4(),
        "type": "open_ticket",
        "actor": {"id": "crm", "role": "service"},
        "payload": {"ticket_id": Uuid::new_v4(), "customer_id": "cust-1", "channel": "web",
                    "category": "inquiry", "priority": "normal", "subject": "Where is my parcel?"}
    }))
    .expect("JSON")
}

fn check_accepted(payload: &[u8]) {
    let reply: Reply = serde_json::from_slice(payload).expect("a reply");
    assert!(
        matches!(reply, Reply::Accepted { .. }),
        "{}",
        reply.to_json()
    );
}

fn echo_body() -> Vec<u8> {
    vec![b'x'; 320]
}

fn report(name: &str, clients: usize, m: &Measured) {
    println!(
        "{name:<22} clients {clients:>3}  {:>9.0} req/s  p50 {:>7} us  p99 {:>7} us  ({} requests)",
        m.requests as f64 / m.elapsed.as_secs_f64(),
        m.latency_us.value_at_quantile(0.50),
        m.latency_us.value_at_quantile(0.99),
        m.requests
    );
}

async fn open_store() -> (Arc<dyn EventLog>, String, Option<tempfile::TempDir>) {
    let wanted = std::env::var("CLOSELOOP_BENCH_STORE").unwrap_or_else(|_| "memory:".into());
    if wanted == "sqlite" {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let log = closeloop_core::log::open(&url).await.expect("open SQLite");
        return (log, "sqlite (temporary file)".into(), Some(dir));
    }
    let log = closeloop_core::log::open(&scratch_url(&wanted))
        .await
        .unwrap_or_else(|e| panic!("open {wanted}: {e}"));
    (log, wanted, None)
}

/// The schema a PostgreSQL run works in: its own, dropped at the end (see [`drop_scratch`]).
fn scratch_schema() -> String {
    format!("cl_bench_nats_{}", std::process::id())
}

/// A PostgreSQL URL with the scratch schema; other stores unchanged.
fn scratch_url(store: &str) -> String {
    if !store.starts_with("postgres") {
        return store.to_owned();
    }
    let sep = if store.contains('?') { '&' } else { '?' };
    format!("{store}{sep}schema={}", scratch_schema())
}

/// Drops the scratch schema of a PostgreSQL run, so the bench leaves nothing behind.
async fn drop_scratch(store: &str) {
    if !store.starts_with("postgres") {
        return;
    }
    let Ok((client, connection)) = tokio_postgres::connect(store, tokio_postgres::NoTls).await
    else {
        return;
    };
    tokio::spawn(connection);
    let _ = client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            scratch_schema()
        ))
        .await;
}

/// The allocator the `closeloop` binary uses (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let url =
        std::env::var("CLOSELOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let secs: u64 = std::env::var("CLOSELOOP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then one quick pass
    // only checks that the harness works.
    let measuring = std::env::args().any(|a| a == "--bench");
    let duration = if measuring {
        Duration::from_secs(secs)
    } else {
        Duration::from_millis(200)
    };
    let client = async_nats::connect(&url).await.unwrap_or_else(|e| {
        panic!("cannot reach nats-server at {url} ({e}); start it with scripts/test.sh")
    });
    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();

    // The floor: a bare request/reply echo on the same server and connection settings.
    let echo_subject = format!("bench{tag}.echo");
    let mut echo = client
        .queue_subscribe(echo_subject.clone(), "echo".into())
        .await
        .expect("subscribe");
    let responder = client.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(m) = echo.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });

    let (log, store, _dir) = open_store().await;
    let mut config = ServeConfig::isolated(&tag);
    config.durable_intake = false;
    // The body's actor, unverified (`--insecure-no-auth`): this measures intake and the
    // append, not a token's signature check.
    config.auth = nats::Auth::Insecure;
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
    let serve_client = async_nats::connect(&url).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(nats::run(
        config.clone(),
        handler,
        serve_client,
        Queries::new(),
        Vec::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    // Ready when a command is answered (the subscription reaches the server asynchronously).
    let subject = config.command_subject("open_ticket");
    let started = Instant::now();
    while client
        .request(subject.clone(), open_ticket().into())
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "nats_roundtrip: {:.1} s per row, store {store}, NATS {url}",
        duration.as_secs_f64()
    );
    for clients in [1, 64] {
        let m = load(&client, &echo_subject, clients, duration, echo_body, |_| {}).await;
        report("bare NATS echo", clients, &m);
        let m = load(
            &client,
            &subject,
            clients,
            duration,
            open_ticket,
            check_accepted,
        )
        .await;
        report("open_ticket via serve", clients, &m);
    }

    let _ = stop.send(());
    serve
        .await
        .expect("serve task")
        .expect("serve stops cleanly");
    echo_task.abort();
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(&config.events_stream).await;
    let _ = js.delete_stream(&config.dead_letter_stream).await;
    let _ = js.delete_key_value(&config.lease.bucket).await;
    drop(log);
    drop_scratch(&store).await;
}
