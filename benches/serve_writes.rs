//! Disk writes per command of `closeloop serve` on SQLite, at two log sizes: does the cost of
//! one command stay flat as the store grows (the tables' projector writes only the rows a
//! batch touches), beside a floor measured in the same run.
//!
//! For each N in `BENCH_TICKETS` (default `3000,50000`): a store of N tickets is built in a
//! temporary directory by the release binary's `closeloop --store sqlite://PATH demo
//! --tickets N` (under `/usr/bin/time -v` when present: its peak RSS is printed too); then
//! `closeloop serve` runs on it as a child process with a private subject prefix, streams,
//! consumer, lease bucket and instance id (deleted at the end), and `--no-scheduler
//! --no-process-managers` (the workload lives in October/November 2026 simulated time: a
//! wall-clock scheduler would breach every open ticket of the store during the measurement,
//! and the process managers would assign the backlog; neither is the cost of a command). Once
//! serve answers, its relay has published the log and its tables are at the head, the child's
//! `/proc/<pid>/io` is read, `BENCH_COMMANDS` (default 200) commands are sent over NATS
//! request/reply at `BENCH_RATE` per second (default 10), the bench waits until the
//! tables' checkpoint (`table_checkpoint`, read from the file by this process) reaches the
//! last reply's position, and reads `/proc/<pid>/io` again. The commands are real ticket lanes of the seeded workload
//! (open, assign, respond, resolve, rate, close...), each lane given a fresh ticket id and
//! fresh command ids.
//!
//! Printed per N: `write_bytes` (bytes the child caused to be sent to the block device: WAL,
//! checkpoints, everything) and `wchar` (bytes passed to write(2)/pwrite(2)) per command;
//! the same counters over an idle stretch of the same length before (the background cost);
//! and the floor: the bytes of the events the commands appended, as JSON (`closeloop export`
//! lines), summed. Then the ratio of the per-command figures between the two N.
//!
//! `cargo bench --bench serve_writes`. Environment: `CLOSELOOP_TEST_NATS` (default
//! `nats://127.0.0.1:4222`), `BENCH_TICKETS`, `BENCH_COMMANDS`, `BENCH_RATE`; `BENCH_STRACE=1`
//! also splits the writes by file with `strace` (slower; the counters are the same). Under `cargo
//! test --benches` (no `--bench` flag) a smoke run: 200 tickets, 10 commands.

use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use closeloop_commands::nats::ServeConfig;
use closeloop_commands::Reply;
use closeloop_core::domain::Command;
use closeloop_core::log::{Filter, Position, READ_BATCH_MAX};
use closeloop_workload::{self as workload, WorkloadConfig};
use serde_json::{json, Value};
use uuid::Uuid;

/// The allocator the `closeloop` binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `closeloop demo`'s defaults (src/demo.rs): the bench regenerates the same workload.
const DEMO_SEED: u64 = 7;
const DEMO_DAYS: u32 = 28;
const DEMO_CUSTOMERS: usize = 800;

/// How long the bench waits for serve to start, publish and catch up, and for its tables
/// after the last command.
const DEADLINE: Duration = Duration::from_secs(600);

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|x| x.trim().replace('_', "").parse().ok())
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// `/proc/<pid>/io`: (`write_bytes`, `wchar`, `cancelled_write_bytes`).
fn io(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/io unreadable: {e}"));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/io"))
    };
    (
        field("write_bytes:"),
        field("wchar:"),
        field("cancelled_write_bytes:"),
    )
}

/// A line of `/proc/self/status` in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Builds the store with the release binary's demo; returns seconds and peak RSS (MiB) when
/// `/usr/bin/time` is there.
fn build_store(url: &str, tickets: usize) -> (f64, Option<f64>) {
    let time = std::path::Path::new("/usr/bin/time");
    let mut process = if time.exists() {
        let mut p = Process::new(time);
        p.arg("-v").arg(env!("CARGO_BIN_EXE_closeloop"));
        p
    } else {
        Process::new(env!("CARGO_BIN_EXE_closeloop"))
    };
    let started = Instant::now();
    let output = process
        .args(["--store", url, "demo", "--tickets", &tickets.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run closeloop demo");
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "closeloop demo --tickets {tickets} failed: {stderr}\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let peak = stderr.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Maximum resident set size (kbytes):")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    });
    (seconds, peak)
}

/// `count` commands: whole ticket lanes of the workload (the last days' first), each with a
/// fresh ticket id and fresh command ids.
fn commands(tickets: usize, count: usize) -> Vec<Value> {
    let rss = status_mib("VmRSS:");
    let generated = workload::generate(&WorkloadConfig {
        seed: DEMO_SEED,
        tickets,
        days: DEMO_DAYS,
        customers: DEMO_CUSTOMERS,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    println!(
        "  (this process: generating the workload of {tickets} tickets, {} commands, took {:.0} MiB of RSS)",
        generated.len(),
        status_mib("VmRSS:") - rss
    );
    let mut out = Vec::with_capacity(count);
    'lanes: for day in generated.days.iter().rev() {
        for lane in &day.tickets {
            let ticket_id = json!(Uuid::new_v4());
            // Lanes that begin with the ticket's opening (a day's lane may continue one).
            let Some(old) = lane
                .first()
                .filter(|e| matches!(e.command, Command::OpenTicket(_)))
                .and_then(|e| e.command.ticket_id())
            else {
                continue;
            };
            let old = json!(old);
            for envelope in lane {
                let mut v = serde_json::to_value(envelope).expect("envelope JSON");
                v["command_id"] = json!(Uuid::new_v4());
                if v["payload"]["ticket_id"] == old {
                    v["payload"]["ticket_id"] = ticket_id.clone();
                }
                out.push(v);
                if out.len() == count {
                    break 'lanes;
                }
            }
        }
    }
    out
}

struct Serve {
    child: std::process::Child,
}

impl Serve {
    fn start(url: &str, nats: &str, config: &ServeConfig, log: &std::path::Path) -> Serve {
        let c = config;
        let stderr = std::fs::File::create(log).expect("serve log file");
        let child = Process::new(env!("CARGO_BIN_EXE_closeloop"))
            .args(["--store", url, "--nats", nats, "serve"])
            .args(["--subject-prefix", &c.subject_prefix])
            .args(["--commands-stream", &c.commands_stream])
            .args(["--commands-consumer", &c.consumer_name])
            .args(["--events-stream", &c.events_stream])
            .args(["--dead-letter-stream", &c.dead_letter_stream])
            .args(["--lease-bucket", &c.lease.bucket])
            .args(["--instance-id", &c.instance_id])
            .args(["--no-scheduler", "--no-process-managers"])
            // The body's actor, unverified: this measures the write path, not the token check
            // (without a keys file or this flag serve refuses to start).
            .arg("--insecure-no-auth")
            // The workload's commands carry their simulated (past) business time.
            .args(["--backdate-staff-max-s", &u32::MAX.to_string()])
            .args(["--backdate-service-max-s", &u32::MAX.to_string()])
            .env("CLOSELOOP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start closeloop serve");
        Serve { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn terminate(mut self) {
        let _ = Process::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The tables' projector status from the `report_sla` query: (position, head, lag, error).
async fn projector(client: &async_nats::Client, config: &ServeConfig) -> Option<(u64, u64, u64)> {
    let body = json!({"actor": {"id": "bench-audit", "role": "auditor"}, "limit": 1});
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(
            config.query_subject("report_sla"),
            serde_json::to_vec(&body).expect("JSON").into(),
        ),
    )
    .await
    .ok()?
    .ok()?;
    let value: Value = serde_json::from_slice(&reply.payload).ok()?;
    let tables = value
        .pointer("/result/projectors")
        .or_else(|| value.get("projectors"))?
        .as_array()?
        .iter()
        .find(|p| p["name"] == "tables")?
        .clone();
    if !tables["error"].is_null() {
        panic!("the tables' projector reports an error: {tables}");
    }
    Some((
        tables["position"].as_u64()?,
        tables["head"].as_u64()?,
        tables["lag"].as_u64()?,
    ))
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
}

struct Figures {
    tickets: usize,
    commands: usize,
    write_bytes: f64,
    wchar: f64,
    floor: f64,
}

async fn measure(
    client: &async_nats::Client,
    nats: &str,
    tickets: usize,
    count: usize,
    rate: f64,
) -> Figures {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("closeloop.db");
    let url = format!("sqlite://{}", db.display());
    let (seconds, peak) = build_store(&url, tickets);
    println!(
        "N = {tickets} tickets: store built by `closeloop demo --tickets {tickets}` in {seconds:.1} s{}; file {:.1} MB",
        peak.map(|p| format!(", demo peak RSS {p:.0} MiB")).unwrap_or_default(),
        file_len(&db) as f64 / 1e6
    );
    let sent = commands(tickets, count);

    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut config = ServeConfig::isolated(&tag);
    config.consumer_name = format!("bench{tag}");
    config.instance_id = format!("bench-serve-writes-{tag}");
    let serve_log = dir.path().join("serve.log");
    let serve = Serve::start(&url, nats, &config, &serve_log);
    let pid = serve.pid();
    let started = Instant::now();
    wait_until("serve answers", || async {
        // A serve that exited (a zombie until reaped) will never answer: say why at once.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            !status.contains("State:\tZ"),
            "closeloop serve exited: {}",
            std::fs::read_to_string(&serve_log).unwrap_or_default()
        );
        let probe = client.request(config.command_subject("open_ticket"), "{}".into());
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Ok(_))
        )
    })
    .await;
    // The relay publishes the whole log to the (new, private) events stream at start; the
    // tables are at the head already (the demo caught them up). Measure once both are done.
    let js = async_nats::jetstream::new(client.clone());
    let head0: Position = loop {
        if let Some((position, head, 0)) = projector(client, &config).await {
            if position == head {
                break head;
            }
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the tables never reached the head"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    };
    wait_until("the relay published the log", || async {
        let Ok(mut stream) = js.get_stream(&config.events_stream).await else {
            return false;
        };
        matches!(stream.info().await, Ok(info) if info.state.messages >= head0)
    })
    .await;
    println!(
        "  serve ready, tables at the head ({head0}) and log published in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Background: the same length of time, idle.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let window = interval * count as u32;
    let idle0 = io(pid);
    tokio::time::sleep(window).await;
    let idle1 = io(pid);

    let wal = db.with_extension("db-wal");
    let (db_before, wal_before) = (file_len(&db), file_len(&wal));
    let strace = Strace::attach(pid, dir.path());
    let before = io(pid);
    let trickle = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    let (mut accepted, mut rejected, mut last) = (0usize, Vec::new(), head0);
    for command in &sent {
        ticker.tick().await;
        let subject = config.command_subject(command["type"].as_str().expect("type"));
        let reply = client
            .request(subject, serde_json::to_vec(command).expect("JSON").into())
            .await
            .expect("a reply");
        match serde_json::from_slice::<Reply>(&reply.payload).expect("a Reply") {
            Reply::Accepted { position, .. } => {
                accepted += 1;
                last = last.max(position);
            }
            other => rejected.push(other.to_json()),
        }
    }
    let sending = trickle.elapsed();
    // Read the checkpoint straight from the file (read-only, this process): the
    // `report_sla` query at 50,000 tickets sorts through a temporary file in serve, whose
    // writes would be counted as the commands'.
    let reader = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the store read-only");
    wait_until("the tables folded the commands", || async {
        reader
            .query_row(
                "SELECT position FROM table_checkpoint WHERE name = 'tables'",
                [],
                |row| row.get::<_, u64>(0),
            )
            .is_ok_and(|p| p >= last)
    })
    .await;
    drop(reader);
    let folded = trickle.elapsed();
    let after = io(pid);
    let traced = strace.map(Strace::finish);
    let (db_after, wal_after) = (file_len(&db), file_len(&wal));
    serve.terminate();

    let _ = js.delete_stream(&config.commands_stream).await;
    let _ = js.delete_stream(&config.events_stream).await;
    let _ = js.delete_stream(&config.dead_letter_stream).await;
    let _ = js.delete_key_value(&config.lease.bucket).await;

    // The floor: the appended events as `closeloop export` prints them.
    let log = closeloop_core::log::open(&url)
        .await
        .expect("open the store");
    let (mut floor_bytes, mut events, mut after_pos) = (0u64, 0u64, head0);
    loop {
        let batch = log
            .read_all(after_pos, READ_BATCH_MAX, Filter::All)
            .await
            .expect("read the log");
        let Some(tail) = batch.last() else { break };
        after_pos = tail.position;
        for e in &batch {
            floor_bytes += serde_json::to_vec(e).expect("JSON").len() as u64;
            events += 1;
        }
    }
    drop(log);

    let n = count as f64;
    let figures = Figures {
        tickets,
        commands: count,
        write_bytes: (after.0 - before.0) as f64 / n,
        wchar: (after.1 - before.1) as f64 / n,
        floor: floor_bytes as f64 / n,
    };
    println!(
        "  {count} commands sent in {:.1} s ({accepted} accepted, {} not), tables current {:.2} s after the last; {events} events appended",
        sending.as_secs_f64(),
        rejected.len(),
        (folded - sending).as_secs_f64()
    );
    for r in rejected.iter().take(3) {
        println!("    not accepted: {r}");
    }
    println!(
        "  per command: write_bytes {:.1} KB, wchar {:.1} KB, cancelled_write_bytes {:.1} KB; floor (appended events' JSON) {:.2} KB",
        figures.write_bytes / 1e3,
        figures.wchar / 1e3,
        (after.2 - before.2) as f64 / n / 1e3,
        figures.floor / 1e3
    );
    println!(
        "  idle {:.1} s before: write_bytes {:.1} KB, wchar {:.1} KB in all; db file {:.1} -> {:.1} MB, WAL {:.1} -> {:.1} MB",
        window.as_secs_f64(),
        (idle1.0 - idle0.0) as f64 / 1e3,
        (idle1.1 - idle0.1) as f64 / 1e3,
        db_before as f64 / 1e6,
        db_after as f64 / 1e6,
        wal_before as f64 / 1e6,
        wal_after as f64 / 1e6
    );
    if let Some(files) = traced {
        for (file, (calls, bytes)) in files {
            println!(
                "  strace: {file}: {:.1} writes, {:.1} KB per command",
                calls as f64 / n,
                bytes as f64 / n / 1e3
            );
        }
    }
    figures
}

/// With `BENCH_STRACE=1`: `strace -f -y` attached to serve over the measurement, to split
/// its writes by file (log WAL, database file written by checkpoints) and count its syncs.
struct Strace {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Strace {
    fn attach(pid: u32, dir: &std::path::Path) -> Option<Strace> {
        std::env::var("BENCH_STRACE").ok().filter(|v| v == "1")?;
        let out = dir.join("strace.txt");
        let child = Process::new("strace")
            .args(["-f", "-y", "-qq", "-e"])
            .arg("trace=write,pwrite64,writev,pwritev,fsync,fdatasync")
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace");
        std::thread::sleep(Duration::from_secs(1)); // let it attach to every thread
        Some(Strace { child, out })
    }

    /// (calls, bytes) per file name (syncs: bytes 0), file names without their directory.
    fn finish(mut self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let _ = Process::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut files = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Some(call) = line.split_whitespace().nth(1) else {
                continue;
            };
            let name = call.split('(').next().unwrap_or("");
            let (Some(open), Some(close)) = (call.find('<'), call.find('>')) else {
                continue;
            };
            let file = call[open + 1..close].rsplit('/').next().unwrap_or("");
            let bytes = line
                .rsplit("= ")
                .next()
                .and_then(|r| r.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let key = if name.contains("sync") {
                format!("{file} ({name})")
            } else {
                file.to_owned()
            };
            let entry = files.entry(key).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += if name.contains("sync") { 0 } else { bytes };
        }
        files
    }
}

#[tokio::main]
async fn main() {
    let nats =
        std::env::var("CLOSELOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let measuring = std::env::args().any(|a| a == "--bench");
    let (tickets, count) = if measuring {
        (
            env_list("BENCH_TICKETS", &[3_000, 50_000]),
            env_list("BENCH_COMMANDS", &[200])[0],
        )
    } else {
        (vec![200], 10)
    };
    let rate: f64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let client = async_nats::connect(&nats).await.unwrap_or_else(|e| {
        panic!("cannot reach nats-server at {nats} ({e}); start it with scripts/test.sh")
    });
    println!(
        "serve_writes: {count} commands at {rate} per second into `closeloop serve` on SQLite, NATS {nats}"
    );
    let mut all = Vec::new();
    for n in tickets {
        all.push(measure(&client, &nats, n, count, rate).await);
    }
    println!();
    println!(
        "{:>8} {:>9} {:>22} {:>16} {:>22}",
        "tickets", "commands", "write_bytes/command", "wchar/command", "floor: events' JSON"
    );
    for f in &all {
        println!(
            "{:>8} {:>9} {:>19.1} KB {:>13.1} KB {:>19.2} KB",
            f.tickets,
            f.commands,
            f.write_bytes / 1e3,
            f.wchar / 1e3,
            f.floor / 1e3
        );
    }
    if let [first, .., last] = all.as_slice() {
        println!(
            "ratio N={} / N={}: write_bytes {:.2}, wchar {:.2}; write_bytes / floor {:.0}x and {:.0}x",
            last.tickets,
            first.tickets,
            last.write_bytes / first.write_bytes,
            last.wchar / first.wchar,
            first.write_bytes / first.floor,
            last.write_bytes / last.floor
        );
    }
}
