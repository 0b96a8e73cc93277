//! Overload: `closeloop serve` on PostgreSQL with the store stalled (the `log_head` row
//! locked by another session) while thousands of commands arrive over NATS request/reply.
//! Printed: serve's peak RSS during the stall beside its RSS at rest before it (the
//! ceiling of what a flat line would be), how the commands were answered (shed at once,
//! past their deadline, or not at all), how many of the commands answered `unavailable`
//! were appended after all (should be 0), and the recovery: seconds from the store's
//! release until a fresh command is accepted, beside one fresh command's round trip at rest.
//!
//! `cargo bench --bench overload`. Environment: `CLOSELOOP_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`), `CLOSELOOP_TEST_NATS` (default
//! `nats://127.0.0.1:4222`), `BENCH_COMMANDS` (default 20,000), `BENCH_STALL_S` (default
//! 20), `BENCH_TIMEOUT_MS` (each command's `Closeloop-Timeout-Ms`, default 5,000). Its schema
//! and NATS names are its own and are removed at the end.

use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use closeloop_commands::nats::ServeConfig;
use serde_json::{json, Value};
use uuid::Uuid;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serve's resident set (`VmRSS`) or its peak (`VmHWM`), KiB.
fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_ticket() -> (Uuid, Vec<u8>) {
    let id = Uuid::now_v7();
    let body = json!({"command_id": id, "type": "open_ticket",
        "actor": {"id": "crm", "role": "service"},
        "payload": {"ticket_id": Uuid::now_v7(), "customer_id": "c-1", "channel": "email",
                    "category": "incident", "priority": "normal", "subject": "overload"}});
    (id, serde_json::to_vec(&body).unwrap())
}

/// Sends one command and waits at most `wait` for its reply.
async fn send(
    client: &async_nats::Client,
    config: &ServeConfig,
    body: Vec<u8>,
    timeout_ms: u64,
    wait: Duration,
) -> Option<Value> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Closeloop-Timeout-Ms", timeout_ms.to_string().as_str());
    let request =
        client.request_with_headers(config.command_subject("open_ticket"), headers, body.into());
    match tokio::time::timeout(wait, request).await {
        Ok(Ok(message)) => serde_json::from_slice(&message.payload).ok(),
        _ => None,
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let commands = env("BENCH_COMMANDS", 20_000) as usize;
    let stall = Duration::from_secs(env("BENCH_STALL_S", 20));
    let timeout_ms = env("BENCH_TIMEOUT_MS", 5_000);
    let pg = std::env::var("CLOSELOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let nats =
        std::env::var("CLOSELOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let tag = format!("ovl{}", &Uuid::now_v7().simple().to_string()[20..]);
    let schema = format!("bench_{tag}");
    let config = ServeConfig::isolated(&tag);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (admin, connection) = tokio_postgres::connect(&pg, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {pg}: {e} (scripts/services.sh starts it)"));
        tokio::spawn(connection);
        let client = async_nats::connect(&nats)
            .await
            .unwrap_or_else(|e| panic!("NATS at {nats}: {e} (scripts/services.sh starts it)"));
        let store = format!("{pg}?schema={schema}");
        let dir = tempfile::tempdir().unwrap();
        let serve = Serve(
            Process::new(env!("CARGO_BIN_EXE_closeloop"))
                .args(["--store", &store, "--nats", &nats, "serve"])
                .args(["--subject-prefix", &config.subject_prefix])
                .args(["--commands-stream", &config.commands_stream])
                .args(["--events-stream", &config.events_stream])
                .args(["--dead-letter-stream", &config.dead_letter_stream])
                .args(["--lease-bucket", &config.lease.bucket])
                .args(["--no-scheduler", "--no-process-managers", "--insecure-no-auth"])
                .env("CLOSELOOP_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
                .spawn()
                .expect("start closeloop serve"),
        );
        let pid = serve.0.id();
        // Serving: a first command accepted, then a round trip at rest.
        let started = Instant::now();
        loop {
            let reply = send(&client, &config, open_ticket().1, timeout_ms, Duration::from_secs(2)).await;
            if reply.is_some_and(|r| r["status"] == "accepted") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "serve did not start");
        }
        let at_rest = Instant::now();
        send(&client, &config, open_ticket().1, timeout_ms, Duration::from_secs(5)).await;
        let round_trip = at_rest.elapsed();
        let rss_rest = rss_kib(pid, "VmRSS:");

        // The stall: another session holds the head's row lock.
        admin
            .batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".log_head IN ACCESS EXCLUSIVE MODE;"))
            .await
            .expect("lock log_head");
        let peak = Arc::new(AtomicU64::new(rss_rest));
        let sampling = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await; // sampling interval
                }
            })
        };
        let (shed, late, silent, other) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let unavailable_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stall_started = Instant::now();
        let pace = stall.mul_f64(0.8) / commands.max(1) as u32;
        let mut senders = tokio::task::JoinSet::new();
        for n in 0..commands {
            let (client, config) = (client.clone(), config.clone());
            let (shed, late, silent, other, ids) =
                (shed.clone(), late.clone(), silent.clone(), other.clone(), unavailable_ids.clone());
            senders.spawn(async move {
                let (id, body) = open_ticket();
                let wait = Duration::from_millis(timeout_ms + 2_000);
                match send(&client, &config, body, timeout_ms, wait).await {
                    None => silent.fetch_add(1, Ordering::Relaxed),
                    Some(r) if r["error"]["code"] == "unavailable" => {
                        ids.lock().unwrap().push(id);
                        let message = r["error"]["message"].as_str().unwrap_or("");
                        if message.contains("overloaded") {
                            shed.fetch_add(1, Ordering::Relaxed)
                        } else {
                            late.fetch_add(1, Ordering::Relaxed)
                        }
                    }
                    Some(r) if r["status"] == "accepted" => other.fetch_add(1, Ordering::Relaxed),
                    Some(r) => panic!("an unexpected answer: {r}"),
                };
            });
            tokio::time::sleep_until((stall_started + pace * (n as u32 + 1)).into()).await;
        }
        tokio::time::sleep_until((stall_started + stall).into()).await;
        admin.batch_execute("COMMIT").await.expect("release log_head");
        let released = Instant::now();
        let recovery = loop {
            let reply = send(&client, &config, open_ticket().1, timeout_ms, Duration::from_secs(2)).await;
            if reply.is_some_and(|r| r["status"] == "accepted") {
                break released.elapsed();
            }
            assert!(released.elapsed() < Duration::from_secs(600), "serve never recovered");
        };
        while senders.join_next().await.is_some() {}
        sampling.abort();
        let peak_kib = peak.load(Ordering::Relaxed).max(rss_kib(pid, "VmHWM:"));
        let ids: Vec<Uuid> = unavailable_ids.lock().unwrap().clone();
        let appended: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".event_log WHERE command_id = ANY($1)"),
                &[&ids],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1);

        println!("overload: {commands} commands over NATS in {stall:?} with PostgreSQL's log_head locked");
        println!("  answered unavailable at once (shed): {}", shed.load(Ordering::Relaxed));
        println!("  answered unavailable at their deadline ({timeout_ms} ms): {}", late.load(Ordering::Relaxed));
        println!("  not answered within deadline + 2 s: {}", silent.load(Ordering::Relaxed));
        println!(
            "  accepted once the store was back, within their deadline: {}",
            other.load(Ordering::Relaxed)
        );
        println!("  of those answered unavailable, appended after all: {appended}");
        println!(
            "  serve RSS: peak {:.0} MiB during the stall, {:.0} MiB at rest before it",
            peak_kib as f64 / 1024.0,
            rss_rest as f64 / 1024.0
        );
        println!(
            "  recovery: first fresh command accepted {:.2} s after the release (a round trip at rest: {:.3} s)",
            recovery.as_secs_f64(),
            round_trip.as_secs_f64()
        );
        drop(serve);
        let js = async_nats::jetstream::new(client.clone());
        for stream in [&config.commands_stream, &config.events_stream, &config.dead_letter_stream] {
            let _ = js.delete_stream(stream).await;
        }
        let _ = js.delete_key_value(&config.lease.bucket).await;
        let _ = admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; DROP SCHEMA IF EXISTS \"{schema}_read\" CASCADE;"
            ))
            .await;
    });
}
