//! Replay throughput from PostgreSQL: `closeloop replay all` (rebuild of the read side's
//! tables from position 0 into `<schema>_read_rebuild`, bulk-loaded, then the atomic swap)
//! in events/s, beside a raw `COPY (SELECT * FROM <schema>.events ORDER BY position) TO
//! STDOUT` of the same table (tokio-postgres `copy_out`, bytes counted and dropped),
//! measured in the same run, interleaved, with the ratio. Also per round: the log API alone
//! (`read_all` pages, nothing folded), replay's own read path alone (`EventLog::scan`,
//! events counted, nothing folded), the replay's peak memory (VmHWM of this process,
//! reset before the replay through `/proc/self/clear_refs`), when each of its stages began,
//! and the CPU seconds the COPY and the replay cost on each side of the connection (this
//! process, and the local server's `postgres` processes, sampled from `/proc`): on a
//! machine of N cores a phase can go no faster than its total CPU time over N.
//!
//! Run: `cargo bench --bench replay [-- EVENTS]` (EVENTS, or `BENCH_EVENTS`: grow the log to
//! that many events, see below; PostgreSQL from `CLOSELOOP_BENCH_POSTGRES`, else
//! `CLOSELOOP_TEST_POSTGRES`, else `postgres://postgres@127.0.0.1:5432/test`). The log is a
//! generated workload (`BENCH_TICKETS` tickets, default 2000, over 28 days) driven through
//! the real command handler; each figure is the best and the mean of `BENCH_ROUNDS`
//! (default 3) rounds. Works in a scratch schema that it drops at the end.
//!
//! Large logs, for replay's memory bound: `BENCH_EVENTS=10000000` grows the log to that many
//! events by copying its ticket events server side (`INSERT ... SELECT`), each copy with
//! fresh ticket ids (in the stream name and the data) at the next positions, so the tickets
//! grow with the events as in a real log (the last copy may stop mid-ticket). The copies' hashes are
//! not re-chained (replay does not verify them; `closeloop verify` would refuse this log).
//! `BENCH_SCHEMA=NAME` uses (and keeps) that schema, filling it only if it is empty, so a
//! large log is built once.

// Figures, latest (2026-12-06, BENCH_ROUNDS=2, 1 M events): replay 94.7 k events/s beside
// COPY 172 k rows/s (54.9%), peak RSS 365 MiB, once the fold made its rows once per save
// point and mimalloc was built without transparent huge pages (the same log that day before
// the change: 42.4%).
// Earlier figures (2 shared cores, PostgreSQL on the same machine, BENCH_ROUNDS=1; 2026-12-06):
// at 10 M events replay 59.8 k events/s beside COPY 166 k rows/s (35.9%), peak RSS 418
// MiB; at 1 M events replay 63.6 k events/s beside COPY 146 k rows/s (43.4%), scan alone 273 k
// events/s, peak RSS 423 MiB; at 300 k events 29.5-33.4% of COPY (was 13.7-18.7% before
// the staging COPY). A save point's rows go to PostgreSQL by binary COPY (straight into the
// tables for tickets the batch opened, through per-connection staging tables and one upsert
// per table for the rest); what is left is mostly the fold itself (decode ~8 ms and fold
// 20-60 ms per 10,000-event batch, on the same two cores PostgreSQL needs for the COPY) and
// each save point's commit. 75% of COPY needs a faster fold or a second core for it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::{Filter, READ_BATCH_MAX};
use closeloop_replay::rebuild::{self, ReplayConfig};
use closeloop_workload::{self as workload, WorkloadConfig};
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

/// A line of `/proc/self/status` in MiB (`VmHWM`: peak resident set; `VmRSS`: now).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets `VmHWM` to the current resident set (Linux ≥ 4.0), so the next reading is the
/// peak of what follows.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Copies the log's ticket events with fresh ticket ids until it holds `target`
/// events (see the module doc).
async fn grow(admin: &tokio_postgres::Client, schema: &str, target: u64) {
    let started = Instant::now();
    let s = schema;
    admin
        .batch_execute(&format!(
            "CREATE TEMP TABLE seed AS
               SELECT row_number() OVER (ORDER BY position) AS rn,
                      substr(stream, 8) AS ticket, stream, version, type, schema_version,
                      data::text AS data, metadata, hash
                 FROM {s}.events WHERE stream LIKE 'ticket-%'"
        ))
        .await
        .expect("seed");
    let seed: i64 = admin
        .query_one("SELECT count(*) FROM seed", &[])
        .await
        .expect("seed size")
        .get(0);
    assert!(seed > 0, "no ticket events to copy");
    loop {
        let head: i64 = admin
            .query_one(&format!("SELECT position FROM {s}.log_head"), &[])
            .await
            .expect("head")
            .get(0);
        if head as u64 >= target {
            break;
        }
        // A few copies per statement: one transaction each, so the log stays consistent
        // (head and rows) if this is interrupted.
        let copies = ((target - head as u64).div_ceil(seed as u64)).min(8) as i64;
        admin
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO {s}.events
                        (position, stream, version, event_id, type, schema_version, data,
                         metadata, hash)
                 SELECT {head} + (k - 1) * {seed} + rn,
                        'ticket-' || md5(ticket || '/' || ({head} + k))::uuid, version,
                        gen_random_uuid(), type, schema_version,
                        replace(data, ticket, md5(ticket || '/' || ({head} + k))::uuid::text)::jsonb,
                        metadata, hash
                   FROM seed CROSS JOIN generate_series(1, {copies}) AS k
                  WHERE (k - 1) * {seed} + rn <= {target} - {head};
                 UPDATE {s}.log_head SET position = {head} + LEAST({copies} * {seed}, {target} - {head});
                 COMMIT;"
            ))
            .await
            .expect("copy ticket events");
        println!(
            "grow: {} events after {:.0} s",
            (head + copies * seed).min(target as i64),
            started.elapsed().as_secs_f64()
        );
    }
    admin
        .batch_execute("DROP TABLE seed")
        .await
        .expect("drop seed");
    // Its own statement: VACUUM cannot run in the implicit transaction of a batch.
    admin
        .batch_execute(&format!("VACUUM ANALYZE {s}.events"))
        .await
        .expect("vacuum");
}

/// CPU seconds spent by this process and by the PostgreSQL server's processes (every process
/// named `postgres` on this machine: the server must be local), so a phase's figure says
/// which side of the connection did the work. The server's backends come and go with their
/// connections, so a thread samples them every 50 ms and keeps each one's last reading;
/// what a backend spends in its last 50 ms before it exits is lost.
struct CpuMeter {
    seen: Arc<std::sync::Mutex<std::collections::HashMap<u32, f64>>>,
}

/// `utime + stime` of a process from its `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count fields after its closing `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

impl CpuMeter {
    /// Reads every `postgres` process's CPU time into `seen`.
    fn sample(seen: &std::sync::Mutex<std::collections::HashMap<u32, f64>>) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if !stat.contains("(postgres)") {
                continue;
            }
            if let Some(s) = cpu_seconds(&stat) {
                seen.lock().unwrap().insert(pid, s);
            }
        }
    }

    /// Starts sampling, after a first reading (so the first phase counts only its own work).
    fn start() -> CpuMeter {
        let seen: Arc<std::sync::Mutex<std::collections::HashMap<u32, f64>>> = Arc::default();
        CpuMeter::sample(&seen);
        let sampled = seen.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            CpuMeter::sample(&sampled);
        });
        CpuMeter { seen }
    }

    /// (this process, the server) CPU seconds so far.
    fn now(&self) -> (f64, f64) {
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_seconds(&s))
            .unwrap_or(0.0);
        (own, self.seen.lock().unwrap().values().sum())
    }
}

/// The allocator the `closeloop` binary uses (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list.
    }
    let tickets = env_or("BENCH_TICKETS", 2_000);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    // The event count: the first argument that is a number (cargo passes `--bench`), else
    // BENCH_EVENTS.
    let grow_to = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(env_or("BENCH_EVENTS", 0) as u64);
    let kept = std::env::var("BENCH_SCHEMA").ok();
    let schema = kept
        .clone()
        .unwrap_or_else(|| format!("cl_bench_replay_{}", uuid::Uuid::new_v4().simple()));
    let sep = if base_url().contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}schema={schema}", base_url());
    let admin = admin().await;

    let result = async {
        let log = closeloop_core::log::open(&url).await.expect("open the log");
        let shadows = rebuild::shadows(&url).await.expect("the read-model tables");
        if log.head().await.expect("head") == 0 {
            // Fill the log through the real handler.
            let fill = Instant::now();
            let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
            let load = workload::generate(&WorkloadConfig {
                tickets,
                ..WorkloadConfig::default()
            })
            .expect("workload");
            let stats_run = workload::run(handler, &load, 32, |_| {}).await;
            println!(
                "log: {} events ({tickets} tickets, {} commands accepted, {} rejected) \
                 filled in {:.1} s",
                log.head().await.expect("head"),
                stats_run.accepted,
                stats_run.rejected,
                fill.elapsed().as_secs_f64()
            );
        }
        if grow_to > log.head().await.expect("head") {
            grow(&admin, &schema, grow_to).await;
        }
        let events = log.head().await.expect("head");

        let copy_sql = format!("COPY (SELECT * FROM {schema}.events ORDER BY position) TO STDOUT");
        let (mut replay_rates, mut copy_rates, mut read_rates, mut scan_rates) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut peaks = Vec::new();
        let meter = CpuMeter::start();
        for round in 1..=rounds {
            // Raw ceiling: the same rows, out of PostgreSQL, nothing decoded.
            let started = Instant::now();
            let copy_cpu = meter.now();
            let stream = admin.copy_out(&copy_sql).await.expect("copy out");
            futures::pin_mut!(stream);
            let mut bytes = 0usize;
            while let Some(chunk) = stream.next().await {
                bytes += chunk.expect("copy chunk").len();
            }
            let copy_s = started.elapsed().as_secs_f64();
            copy_rates.push(events as f64 / copy_s);
            let copy_cpu = {
                let now = meter.now();
                (now.0 - copy_cpu.0, now.1 - copy_cpu.1)
            };

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

            // Replay's read path alone: every event streamed by `scan`, nothing folded.
            let started = Instant::now();
            let mut rows = 0u64;
            let mut scan = log.scan(0, events, Filter::All, READ_BATCH_MAX);
            while let Some(batch) = scan.next().await {
                rows += batch.expect("scan").events.len() as u64;
            }
            drop(scan);
            assert_eq!(rows, events);
            let scan_s = started.elapsed().as_secs_f64();
            scan_rates.push(events as f64 / scan_s);

            // Ours: replay all, from 0, saved and switched.
            let rss_before = status_mib("VmRSS:").unwrap_or(0.0);
            let reset = reset_peak();
            let replay_cpu = meter.now();
            // When each stage began, in seconds from the start (folding, the last save
            // point's commit, the indexes and the swap).
            let began = Instant::now();
            let mut stages: Vec<(rebuild::Stage, f64)> = Vec::new();
            let summary = rebuild::replay(
                log.as_ref(),
                shadows.as_ref(),
                None,
                &ReplayConfig::default(),
                &AtomicBool::new(false),
                |p| {
                    if stages.last().is_none_or(|(stage, _)| *stage != p.stage) {
                        stages.push((p.stage, began.elapsed().as_secs_f64()));
                    }
                },
            )
            .await
            .expect("replay");
            let stages: Vec<String> = stages
                .iter()
                .map(|(stage, at)| format!("{stage:?} from {at:.2} s"))
                .collect();
            println!("round {round}: replay stages: {}", stages.join(", "));
            let peak = status_mib("VmHWM:").unwrap_or(0.0);
            peaks.push(peak);
            let replay_cpu = {
                let now = meter.now();
                (now.0 - replay_cpu.0, now.1 - replay_cpu.1)
            };
            // Where the work was done: this process (the client) and the server, in CPU
            // seconds, beside the wall time; on a machine of N cores, (client + server) / wall
            // near N says the phase is bound by the CPU, not by waiting.
            println!(
                "round {round}: CPU s (client + server, wall): COPY {:.2} + {:.2} in {copy_s:.2}; \
                 replay {:.2} + {:.2} in {:.2}",
                copy_cpu.0, copy_cpu.1, replay_cpu.0, replay_cpu.1, summary.seconds
            );
            assert!(summary.completed && summary.resumed_from == 0);
            // Rate over the whole log (its events of other categories are skipped by the
            // category filter, not read): comparable with COPY's rows of the whole table.
            replay_rates.push(summary.position as f64 / summary.seconds);
            println!(
                "round {round}: replay tables: log of {} events ({} folded) in {:.3} s \
                 ({:.0} events/s), peak RSS {peak:.0} MiB{} (RSS before {rss_before:.0} MiB); \
                 read_all only {read_s:.3} s; scan only {scan_s:.3} s; \
                 COPY {events} rows ({:.1} MB) in {:.3} s ({:.0} rows/s)",
                summary.position,
                summary.events,
                summary.seconds,
                summary.position as f64 / summary.seconds,
                if reset {
                    ""
                } else {
                    " (of the whole run: no clear_refs)"
                },
                bytes as f64 / 1e6,
                copy_s,
                events as f64 / copy_s
            );
        }
        let (replay_best, replay_mean) = stats(&replay_rates);
        let (copy_best, copy_mean) = stats(&copy_rates);
        let (read_best, read_mean) = stats(&read_rates);
        let (scan_best, scan_mean) = stats(&scan_rates);
        println!(
            "replay:      best {replay_best:.0} events/s, mean {replay_mean:.0} events/s\n\
             read_all:    best {read_best:.0} events/s, mean {read_mean:.0} events/s\n\
             scan:        best {scan_best:.0} events/s, mean {scan_mean:.0} events/s\n\
             raw COPY:    best {copy_best:.0} rows/s, mean {copy_mean:.0} rows/s\n\
             ratio (replay / COPY, means): {:.1}%\n\
             replay peak RSS: {:.0} MiB (highest of {rounds} rounds)",
            100.0 * replay_mean / copy_mean,
            peaks.iter().copied().fold(0.0, f64::max)
        );
    }
    .await;
    if kept.is_none() {
        let _ = admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; \
                 DROP SCHEMA IF EXISTS {schema}_read CASCADE;"
            ))
            .await;
    }
    result
}
