//! Where the memory of `closeloop demo --tickets N` goes, stage by stage, in one process with
//! the binary's allocator (mimalloc): the workload's setup, the command handler's ticket
//! cache while the workload runs through it into SQLite (generated day by day as the demo
//! does, so about one simulated day of commands is held at a time), and the tables'
//! projector catching the tables up over the finished log (its ticket cache).
//!
//! 2026-12-05, 50,000 tickets (367,513 commands): peak 145 MiB, in the tables' catch-up
//! (74 MiB while running through the handler); before the workload was generated day by
//! day, 321 MiB, of which the workload held whole about 243 MiB. The binary itself,
//! `/usr/bin/time -v closeloop demo --tickets 50000 --store sqlite:///tmp/demo50k.db`
//! (release build; the SLA scheduler and the tables' projector run every simulated hour):
//! 169 MiB maximum resident set.
//!
//! Each stage prints the resident set after it (`VmRSS`) and the peak during it (`VmHWM`,
//! reset before the stage); what a stage allocated stays alive to the end, as in the demo,
//! so each stage's growth is its own. `cargo bench --bench demo_memory`. Environment: `BENCH_TICKETS`
//! (default 50,000), `BENCH_HANDLER_CACHE` (the handler's `ticket_cache_entries_max`,
//! default that of `HandlerConfig::default()`), `BENCH_TABLE_CACHE` (the projector's
//! `cached_tickets_max`, default that of `TableConfig::default()`). Under `cargo test
//! --benches`, 200 tickets.

use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_workload::{self as workload, WorkloadConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Resets `VmHWM` to the current resident set (Linux 4.0 and later).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn stage(name: &str, started: Instant) {
    println!(
        "{name:<58} RSS {:>6.0} MiB  peak during {:>6.0} MiB  ({:.1} s)",
        status_mib("VmRSS:"),
        status_mib("VmHWM:"),
        started.elapsed().as_secs_f64()
    );
    reset_peak();
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.replace('_', "").parse().ok()
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let tickets = if measuring {
        env_usize("BENCH_TICKETS").unwrap_or(50_000)
    } else {
        200
    };
    let mut handler_config = HandlerConfig::default();
    if let Some(n) = env_usize("BENCH_HANDLER_CACHE") {
        handler_config.ticket_cache_entries_max = n;
    }
    let mut table_config = TableConfig::default();
    if let Some(n) = env_usize("BENCH_TABLE_CACHE") {
        table_config.cached_tickets_max = n;
    }
    println!(
        "demo_memory: {tickets} tickets; handler ticket cache {}, tables' projector cache {}",
        handler_config.ticket_cache_entries_max, table_config.cached_tickets_max
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());

    reset_peak();
    let started = Instant::now();
    stage("start", started);
    let generated = workload::generate_lazy(&WorkloadConfig {
        tickets,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    stage(
        &format!(
            "workload set up ({} commands; days generated as they run)",
            generated.setup.len()
        ),
        started,
    );

    let log = closeloop_core::log::open(&url).await.expect("open SQLite");
    let handler = Arc::new(Handler::new(log.clone(), handler_config));
    let stats = workload::run_with_ticks(
        handler.clone(),
        generated,
        64,
        jiff::SignedDuration::from_hours(24),
        |_| {},
        |_| std::future::ready(()),
    )
    .await;
    stage(
        &format!(
            "run through the handler ({} commands, {} rejected)",
            stats.accepted + stats.duplicates + stats.rejected,
            stats.rejected
        ),
        started,
    );
    let tables = closeloop_projections::tables::open_tables(&url)
        .await
        .expect("tables");
    let mut projector = TableProjector::open(log.clone(), tables, table_config)
        .await
        .expect("projector");
    let head = projector.catch_up().await.expect("catch up");
    stage(&format!("tables caught up ({head} events)"), started);
    // Everything stays alive to the end, as in the demo: each stage's growth is its own.
    drop((projector, handler));
}
