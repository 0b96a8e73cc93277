//! A hot ticket: 16 writers at once on one long ticket through one handler, beside the same
//! 16 writers each on a ticket of its own (the ceiling: no contention), in the same run on
//! the same SQLite file system. Counts refusals too: none should be `conflict`.
//!
//! Run: `cargo bench --bench hot_ticket` (`BENCH_PREFILL` events on the hot ticket first,
//! default 20,000; `BENCH_NOTES` per writer, default 100).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{parse_command, CommandEnvelope};
use closeloop_core::log::{sqlite::SqliteLog, EventLog};
use serde_json::json;
use uuid::Uuid;

const WRITERS: usize = 16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn command(kind: &str, actor: (&str, &str), payload: serde_json::Value) -> CommandEnvelope {
    let body = json!({"command_id": Uuid::now_v7(), "type": kind,
        "actor": {"id": actor.0, "role": actor.1}, "payload": payload});
    parse_command(&serde_json::to_vec(&body).unwrap()).expect("a valid command")
}

fn note(ticket: Uuid, text: String) -> CommandEnvelope {
    command(
        "add_note",
        ("bench", "system"),
        json!({"ticket_id": ticket, "text": text}),
    )
}

async fn open(handler: &Handler, ticket: Uuid) {
    let open = command(
        "open_ticket",
        ("crm", "service"),
        json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email",
               "category": "incident", "priority": "normal", "subject": "hot"}),
    );
    assert!(handler.handle(open).await.is_success());
}

/// 16 writers, writer `w` adding `notes` notes to `tickets[w % tickets.len()]`; returns
/// (commands/s, refusals).
async fn run(handler: &Arc<Handler>, tickets: &[Uuid], notes: usize) -> (f64, usize) {
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (handler, refused, ticket) =
            (handler.clone(), refused.clone(), tickets[w % tickets.len()]);
        writers.spawn(async move {
            for n in 0..notes {
                if let Reply::Rejected { error, .. } =
                    handler.handle(note(ticket, format!("{w}/{n}"))).await
                {
                    eprintln!("refused: {error:?}");
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while writers.join_next().await.is_some() {}
    let rate = (WRITERS * notes) as f64 / started.elapsed().as_secs_f64();
    (rate, refused.load(Ordering::Relaxed))
}

fn main() {
    let prefill = env("BENCH_PREFILL", 20_000);
    let notes = env("BENCH_NOTES", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot.db");
        let log: Arc<dyn EventLog> = Arc::new(
            SqliteLog::open(path.to_str().expect("utf-8 path"))
                .await
                .expect("open SQLite"),
        );
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
        let hot = Uuid::now_v7();
        open(&handler, hot).await;
        let spread: Vec<Uuid> = (0..WRITERS).map(|_| Uuid::now_v7()).collect();
        for t in &spread {
            open(&handler, *t).await;
        }
        // A long ticket: its history is what a conflict used to re-read whole.
        let mut left = prefill;
        while left > 0 {
            let batch = left.min(WRITERS * 50);
            let per = batch.div_ceil(WRITERS);
            run(&handler, &[hot], per).await;
            left = left.saturating_sub(per * WRITERS);
        }
        let (ceiling, _) = run(&handler, &spread, notes).await;
        let (ours, refused) = run(&handler, &[hot], notes).await;
        let events = log
            .read_stream(&format!("ticket-{hot}"), 0)
            .await
            .unwrap()
            .len();
        println!("hot ticket: {WRITERS} writers x {notes} notes, SQLite, 2 worker threads");
        println!("{:<44} {:>12}", "", "commands/s");
        println!(
            "{:<44} {:>12.0}",
            "16 writers, one ticket each (ceiling)", ceiling
        );
        println!(
            "{:<44} {:>12.0}   ({:.0}% of the ceiling; {refused} refused)",
            format!("16 writers, one ticket of {events} events"),
            ours,
            100.0 * ours / ceiling
        );
    });
}
