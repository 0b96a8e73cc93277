//! The analysts' tables' fold, on one core, beside the floor any projection pays: decoding
//! each stored event from its JSON. Then the whole projector (read a batch from the log,
//! fold, commit rows and checkpoint) into memory and SQLite tables, with the bytes the SQLite
//! commits wrote and the heap the projector holds at most (its ticket cache is bounded,
//! whatever the number of tickets).
//!
//! Run: `cargo bench --bench projections` (`BENCH_TICKETS` scales the workload, default
//! 20,000 tickets over 28 days).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::{stream_category, EventLog, Filter, READ_BATCH_MAX};
use closeloop_projections::record::Record;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::sqlite::SqliteTables;
use closeloop_projections::tables::{Changes, Folder, TableStore, CATEGORIES};
use closeloop_workload::{self as workload, WorkloadConfig};
use mimalloc::MiMalloc;

/// Counts live heap bytes (and their peak), over the allocator the `closeloop` binary uses.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static PEAK_BYTES: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = LIVE_BYTES.fetch_add(by, Ordering::Relaxed) + by;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes this process has written to storage (`/proc/self/io`), WAL and checkpoints included.
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: ").map(str::to_owned))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let tickets: usize = std::env::var("BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = WorkloadConfig {
        tickets,
        days: 28,
        customers: tickets / 4 + 50,
        ..WorkloadConfig::default()
    };
    println!("Generating {tickets} tickets over 28 days through the command handler...");
    let log = Arc::new(MemoryLog::new());
    let stored = runtime.block_on(async {
        let work = workload::generate(&config).expect("workload");
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
        let stats = workload::run(handler, &work, 64, |_| {}).await;
        assert_eq!(stats.rejected, 0, "{:?}", stats.rejections);
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let batch = log
                .read_all(after, READ_BATCH_MAX, Filter::Categories(CATEGORIES))
                .await
                .expect("read");
            let Some(last) = batch.last() else { break };
            after = last.position;
            all.extend(batch);
        }
        all
    });
    let lines: Vec<Vec<u8>> = stored
        .iter()
        .map(|e| serde_json::to_vec(e).expect("serialize"))
        .collect();
    drop(stored);
    let n = lines.len() as f64;
    println!(
        "{} events the tables read ({} categories: {})",
        lines.len(),
        CATEGORIES.len(),
        CATEGORIES.join(", ")
    );

    // The floor: decode every event; then decode and fold, every ticket's state in memory.
    let (mut best_decode, mut best_fold) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let started = Instant::now();
        for line in &lines {
            std::hint::black_box(Record::from_json(line).expect("decode"));
        }
        best_decode = best_decode.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut folder = Folder::default();
        let mut works = HashMap::new();
        let mut changes = Changes::default();
        for (i, line) in lines.iter().enumerate() {
            let record = Record::from_json(line).expect("decode");
            debug_assert!(CATEGORIES.contains(&stream_category(&record.stream)));
            folder
                .fold(&record, &mut works, &mut changes)
                .expect("folds");
            if i % 2_000 == 1_999 {
                folder.finish(&mut changes, &works);
                std::hint::black_box(std::mem::take(&mut changes));
            }
        }
        best_fold = best_fold.min(started.elapsed().as_secs_f64());
    }

    // The projector: batches from the log, folded, committed with the checkpoint.
    let projector_run = |store: Arc<dyn TableStore>| {
        let log = log.clone();
        runtime.block_on(async move {
            let started = Instant::now();
            let written = write_bytes();
            PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
            let base = LIVE_BYTES.load(Ordering::Relaxed);
            let mut p = TableProjector::open(log, store, TableConfig::default())
                .await
                .expect("open");
            p.catch_up().await.expect("catch up");
            (
                started.elapsed().as_secs_f64(),
                write_bytes() - written,
                PEAK_BYTES.load(Ordering::Relaxed) - base,
            )
        })
    };
    let (memory_s, _, _) = projector_run(Arc::new(MemoryTables::new()));
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteTables::open(dir.path().join("tables.db")).expect("sqlite tables");
    let (sqlite_s, sqlite_written, sqlite_peak) = projector_run(Arc::new(sqlite));

    println!("\n| measure | events/s | ns/event | of the decode floor |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, s: f64| {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0}% |",
            n / s,
            s * 1e9 / n,
            best_decode / s * 100.0
        )
    };
    row(
        "JSON decode only (`Record::from_json`): the floor",
        best_decode,
    );
    row("decode + the tables' fold, in memory", best_fold);
    row(
        "projector into memory tables (batches of 2,000, commits)",
        memory_s,
    );
    row("projector into SQLite tables", sqlite_s);
    println!(
        "\nSQLite projector: {:.1} MB written ({:.0} bytes per event); heap held at most {:.1} MB above the start (ticket cache {} tickets)",
        sqlite_written as f64 / 1e6,
        sqlite_written as f64 / n,
        sqlite_peak as f64 / 1e6,
        TableConfig::default().cached_tickets_max
    );
}
