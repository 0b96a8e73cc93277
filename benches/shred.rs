//! The cost of crypto-shredding (README, "Personal data") on the append path and on replay,
//! measured beside the same work without encryption, in the same run, on SQLite (the
//! embedded default; a temporary file).
//!
//! - **Commands through the handler**, which always seals: a generated workload
//!   (`BENCH_TICKETS` tickets, default 1000) driven through the real handler, commands/s.
//!   There is no handler without encryption to set beside it; the two lines below isolate
//!   what encryption adds to that path.
//! - **Appends without and with sealing**: the events of that log, opened back to clear
//!   text, appended as they were grouped (one append per command, 32 streams at once, each
//!   stream in order) into a fresh log as they are (clear), and into another fresh log sealing
//!   every customer field in the timed loop as the handler does (keys cached, read from the
//!   log's key store, or made for a new customer and stored with the append): events/s
//!   each, and the ratio.
//! - **Replay without and with**: `closeloop replay tables` over the clear log and over the
//!   sealed one (the tables hold no customer text, so replay never decrypts: what differs is
//!   the size of the data it reads and parses), events/s each, and the ratio.
//! - **Opening** (what a history read adds): `shred::unseal` over every event, events/s.
//!
//! Run: `cargo bench --bench shred` (`BENCH_TICKETS`, `BENCH_ROUNDS`, default 3: each figure
//! is the best and the mean of the rounds, the clear and sealed runs interleaved). The target:
//! encryption costs at most 15% of commands/s and events/s.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{
    shred, AppendRequest, DataKey, EventLog, ExpectedVersion, Filter, NewEvent, StoredEvent,
    READ_BATCH_MAX,
};
use closeloop_replay::rebuild::{self, ReplayConfig};
use closeloop_workload::{self as workload, WorkloadConfig};
use futures::StreamExt;
use uuid::Uuid;

/// The allocator the `closeloop` binary uses (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stats(rates: &[f64]) -> (f64, f64) {
    let best = rates.iter().copied().fold(0.0, f64::max);
    (best, rates.iter().sum::<f64>() / rates.len() as f64)
}

async fn everything(log: &dyn EventLog) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        let batch = log
            .read_all(all.len() as u64, READ_BATCH_MAX, Filter::All)
            .await
            .expect("read");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// One append as the handler made it: a stream and the events of one command.
#[derive(Clone)]
struct Group {
    stream: String,
    events: Vec<NewEvent>,
}

/// The log's appends, grouped by stream (in order) and split into lanes: the directory's
/// streams first, in position order, then every other stream as a lane of its own.
fn groups(events: &[StoredEvent]) -> (Vec<Group>, Vec<Vec<Group>>) {
    let mut directory = Vec::new();
    let mut lanes: HashMap<String, Vec<Group>> = HashMap::new();
    let mut order = Vec::new();
    for e in events {
        let new = NewEvent {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        };
        let is_directory = closeloop_core::domain::DIRECTORY_CATEGORIES.contains(&e.category());
        let target = if is_directory {
            &mut directory
        } else {
            if !lanes.contains_key(&e.stream) {
                order.push(e.stream.clone());
            }
            lanes.entry(e.stream.clone()).or_default()
        };
        match target.last_mut() {
            Some(g)
                if g.stream == e.stream
                    && g.events.last().map(|l| l.metadata.command_id)
                        == Some(e.metadata.command_id) =>
            {
                g.events.push(new)
            }
            _ => target.push(Group {
                stream: e.stream.clone(),
                events: vec![new],
            }),
        }
    }
    let lanes = order
        .into_iter()
        .map(|s| lanes.remove(&s).expect("lane"))
        .collect();
    (directory, lanes)
}

/// Seals the customer fields of a group as the handler does (customer from the data, or
/// the stream's `ticket_opened`), keys cached, a new customer's key made here and stored
/// with the append.
struct Sealer {
    log: Arc<dyn EventLog>,
    keys: std::sync::Mutex<HashMap<String, DataKey>>,
    customers: std::sync::Mutex<HashMap<String, String>>,
}

impl Sealer {
    /// Seals the group; the keys made for it, which its append is to store.
    async fn seal(&self, group: &mut Group) -> Vec<(String, DataKey)> {
        let mut new_keys: Vec<(String, DataKey)> = Vec::new();
        for e in &mut group.events {
            if let Some(c) = e.data.get("customer_id").and_then(|c| c.as_str()) {
                self.customers
                    .lock()
                    .unwrap()
                    .insert(group.stream.clone(), c.to_owned());
            }
            if closeloop_core::domain::customer_fields(&e.event_type).is_empty() {
                continue;
            }
            let customer = self.customers.lock().unwrap().get(&group.stream).cloned();
            let customer = customer.unwrap_or_else(|| "bench-unknown".to_owned());
            // As the handler caches keys: no lock held while a key is fetched or created,
            // so the other lanes go on appending meanwhile.
            let cached = self.keys.lock().unwrap().get(&customer).cloned();
            let made = new_keys
                .iter()
                .find(|(c, _)| *c == customer)
                .map(|(_, k)| k);
            let key = match (cached, made) {
                (Some(k), _) => k,
                (None, Some(k)) => k.clone(),
                (None, None) => match self.log.keys().get(&customer).await.expect("key") {
                    Some(k) => {
                        self.keys
                            .lock()
                            .unwrap()
                            .insert(customer.clone(), k.clone());
                        k
                    }
                    None => {
                        let k = DataKey::generate();
                        new_keys.push((customer.clone(), k.clone()));
                        k
                    }
                },
            };
            shred::seal_data(&e.event_type, e.event_id, &customer, &key, &mut e.data);
        }
        new_keys
    }

    /// Seals and appends the group as the handler does: again under the stored key when
    /// another lane stored one for the same new customer first (the handler decides again;
    /// here the fields are opened under the key made for them and sealed once more).
    async fn append(&self, mut group: Group) {
        loop {
            let new_keys = self.seal(&mut group).await;
            // Only an append carrying new keys can be refused: keep its events for a retry.
            let kept = (!new_keys.is_empty()).then(|| group.clone());
            match self
                .log
                .append_with_keys(request(group), new_keys.clone())
                .await
            {
                Ok(_) => {
                    self.keys.lock().unwrap().extend(new_keys);
                    return;
                }
                Err(closeloop_core::Error::KeyTaken { .. }) => {
                    group = kept.expect("a refused append carried new keys");
                    let made = |c: &str| {
                        new_keys
                            .iter()
                            .find(|(k, _)| k == c)
                            .map(|(_, k)| k.clone())
                    };
                    for e in &mut group.events {
                        shred::unseal_data(&e.event_type, e.event_id, &mut e.data, &made)
                            .expect("open under the key made for it");
                    }
                }
                Err(e) => panic!("append: {e}"),
            }
        }
    }
}

fn request(group: Group) -> AppendRequest {
    AppendRequest {
        stream: group.stream,
        expected: ExpectedVersion::Any,
        command_id: Uuid::now_v7(),
        events: group.events,
        unchanged: None,
    }
}

async fn append(log: &dyn EventLog, group: Group) {
    log.append(request(group)).await.expect("append");
}

/// Appends the clear events into a fresh log at `path`, sealing them when `seal`; events/s.
async fn fill(
    path: &std::path::Path,
    clear: &[StoredEvent],
    seal: bool,
) -> (Arc<dyn EventLog>, f64) {
    let log: Arc<dyn EventLog> = Arc::new(
        SqliteLog::open(path.to_str().expect("path"))
            .await
            .expect("open"),
    );
    let sealer = Arc::new(Sealer {
        log: log.clone(),
        keys: Default::default(),
        customers: Default::default(),
    });
    let (directory, lanes) = groups(clear);
    let started = Instant::now();
    for g in directory {
        if seal {
            sealer.append(g).await;
        } else {
            append(log.as_ref(), g).await;
        }
    }
    futures::stream::iter(lanes)
        .for_each_concurrent(32, |lane| {
            let (log, sealer) = (log.clone(), sealer.clone());
            async move {
                for g in lane {
                    if seal {
                        sealer.append(g).await;
                    } else {
                        append(log.as_ref(), g).await;
                    }
                }
            }
        })
        .await;
    let rate = clear.len() as f64 / started.elapsed().as_secs_f64();
    (log, rate)
}

async fn replay(log: &dyn EventLog, path: &std::path::Path) -> f64 {
    let shadows = rebuild::shadows(&format!("sqlite://{}", path.display()))
        .await
        .expect("shadows");
    let summary = rebuild::replay(
        log,
        shadows.as_ref(),
        None,
        &ReplayConfig::default(),
        &AtomicBool::new(false),
        |_| {},
    )
    .await
    .expect("replay");
    summary.position as f64 / summary.seconds
}

fn line(what: &str, clear: &[f64], sealed: &[f64]) {
    let ((cb, cm), (sb, sm)) = (stats(clear), stats(sealed));
    println!(
        "{what}: clear best {cb:.0}/s mean {cm:.0}/s; sealed best {sb:.0}/s mean {sm:.0}/s; \
         sealed/clear (means) {:.1}%",
        100.0 * sm / cm
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list.
    }
    let tickets = env_or("BENCH_TICKETS", 1_000);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let dir = tempfile::tempdir().expect("temporary directory");

    // The handler's path (always sealed).
    let source_path = dir.path().join("source.db");
    let source: Arc<dyn EventLog> = Arc::new(
        SqliteLog::open(source_path.to_str().expect("path"))
            .await
            .expect("open"),
    );
    let load = workload::generate(&WorkloadConfig {
        tickets,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    let handler = Arc::new(Handler::new(source.clone(), HandlerConfig::trusting()));
    let started = Instant::now();
    let run = workload::run(handler, &load, 32, |_| {}).await;
    let seconds = started.elapsed().as_secs_f64();
    let commands = run.accepted + run.duplicates + run.rejected;
    println!(
        "handler (sealing): {commands} commands in {seconds:.1} s, {:.0} commands/s ({} events)",
        commands as f64 / seconds,
        source.head().await.expect("head")
    );

    // The same events in the clear.
    let mut clear = everything(source.as_ref()).await;
    shred::unseal(source.keys().as_ref(), &mut clear)
        .await
        .expect("unseal");
    let sealed_events = everything(source.as_ref()).await;
    let customer_fields = clear
        .iter()
        .filter(|e| !closeloop_core::domain::customer_fields(&e.event_type).is_empty())
        .count();
    println!(
        "{} events, {customer_fields} of them with customer fields",
        clear.len()
    );

    let (mut append_clear, mut append_sealed) = (Vec::new(), Vec::new());
    let (mut replay_clear, mut replay_sealed, mut opening) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let clear_path = dir.path().join(format!("clear-{round}.db"));
        let sealed_path = dir.path().join(format!("sealed-{round}.db"));
        let (clear_log, rate) = fill(&clear_path, &clear, false).await;
        append_clear.push(rate);
        let (sealed_log, rate) = fill(&sealed_path, &clear, true).await;
        append_sealed.push(rate);
        replay_clear.push(replay(clear_log.as_ref(), &clear_path).await);
        replay_sealed.push(replay(sealed_log.as_ref(), &sealed_path).await);

        let mut events = sealed_events.clone();
        let started = Instant::now();
        shred::unseal(source.keys().as_ref(), &mut events)
            .await
            .expect("unseal");
        opening.push(events.len() as f64 / started.elapsed().as_secs_f64());
        println!(
            "round {round}: append clear {:.0}/s sealed {:.0}/s; replay clear {:.0}/s sealed {:.0}/s",
            append_clear[round], append_sealed[round], replay_clear[round], replay_sealed[round]
        );
    }
    line("append events", &append_clear, &append_sealed);
    line("replay events", &replay_clear, &replay_sealed);
    let (best, mean) = stats(&opening);
    println!("opening (history reads): best {best:.0} events/s, mean {mean:.0} events/s");
}
