//! The three report projections together (SLA, satisfaction, performance), fed serialized
//! stored events (JSON decoding included), on one core; and the memory each open ticket costs
//! across the three read models. Events decode into the lean form the folds read
//! (`Lean::from_json`); decoding into the full `Event` (`Record::from_json`) is shown beside
//! it for comparison.
//!
//! Run: `cargo bench --bench projections` (`BENCH_TICKETS` scales the workload, default
//! 20,000 tickets over 28 days).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::domain::{Channel, Event, Grade, Priority, TicketAssigned, TicketOpened};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::{EventLog, Filter, READ_BATCH_MAX};
use closeloop_projections::fact::Lean;
use closeloop_projections::performance::PerformanceModel;
use closeloop_projections::record::Record;
use closeloop_projections::runtime::Projection;
use closeloop_projections::satisfaction::SatisfactionModel;
use closeloop_projections::sla::SlaModel;
use closeloop_workload::{self as workload, WorkloadConfig};
use mimalloc::MiMalloc;

/// Counts live heap bytes, to measure the read models, over the allocator the `closeloop`
/// binary uses (src/main.rs).
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Default)]
struct Models {
    sla: SlaModel,
    satisfaction: SatisfactionModel,
    performance: PerformanceModel,
}

fn wants<P: Projection>(category: &str) -> bool {
    P::CATEGORIES.contains(&category)
}

impl Models {
    fn apply(&mut self, record: &Lean) {
        let category = closeloop_core::log::stream_category(&record.stream);
        if wants::<SlaModel>(category) {
            self.sla.fold(record).expect("sla folds");
        }
        if wants::<SatisfactionModel>(category) {
            self.satisfaction.fold(record).expect("satisfaction folds");
        }
        if wants::<PerformanceModel>(category) {
            self.performance.fold(record).expect("performance folds");
        }
    }
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
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
        let stats = workload::run(handler, &work, 64, |_| {}).await;
        assert_eq!(stats.rejected, 0, "{:?}", stats.rejections);
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let batch = log
                .read_all(after, READ_BATCH_MAX, Filter::All)
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
    let bytes: usize = lines.iter().map(Vec::len).sum();
    println!(
        "{} events, {:.1} MB of JSON ({} bytes per event on average)",
        lines.len(),
        bytes as f64 / 1e6,
        bytes / lines.len().max(1)
    );

    // Throughput: decode every line and fold it into all three models, on this one thread.
    let mut best = f64::MAX;
    let mut best_decode = f64::MAX;
    let mut best_decode_full = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for line in &lines {
            let record = Record::from_json(line).expect("decode");
            std::hint::black_box(&record);
        }
        best_decode_full = best_decode_full.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for line in &lines {
            let record = Lean::from_json(line).expect("decode");
            std::hint::black_box(&record);
        }
        best_decode = best_decode.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut models = Models::default();
        for line in &lines {
            let record = Lean::from_json(line).expect("decode");
            models.apply(&record);
        }
        best = best.min(started.elapsed().as_secs_f64());
        std::hint::black_box(&models);
    }
    // The folds alone, on records decoded beforehand.
    let records: Vec<Lean> = lines
        .iter()
        .map(|l| Lean::from_json(l).expect("decode"))
        .collect();
    let mut best_fold = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut models = Models::default();
        for record in &records {
            models.apply(record);
        }
        best_fold = best_fold.min(started.elapsed().as_secs_f64());
        std::hint::black_box(&models);
    }
    drop(records);
    let n = lines.len() as f64;
    println!("\n| measure | events/s | ns/event |");
    println!("|---|---:|---:|");
    println!(
        "| JSON decode only, full `Event` (`Record::from_json`) | {:.0} | {:.0} |",
        n / best_decode_full,
        best_decode_full * 1e9 / n
    );
    println!(
        "| JSON decode only, lean (`Lean::from_json`) | {:.0} | {:.0} |",
        n / best_decode,
        best_decode * 1e9 / n
    );
    println!(
        "| SLA + satisfaction + performance folds only | {:.0} | {:.0} |",
        n / best_fold,
        best_fold * 1e9 / n
    );
    println!(
        "| decode + SLA + satisfaction + performance | {:.0} | {:.0} |",
        n / best,
        best * 1e9 / n
    );

    // Memory: build the models, then open K more tickets (opened + assigned, so every model
    // tracks them) and count what the heap grew by.
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut models = Models::default();
    let mut template = None;
    for line in &lines {
        let record = Record::from_json(line).expect("decode");
        if template.is_none() {
            if let Event::TicketOpened(e) = &record.event {
                template = Some(e.clone());
            }
        }
        models.apply(&record.lean());
    }
    let all_tickets = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let template: TicketOpened = template.expect("an opened ticket");
    let extra = 20_000u128;
    let grown_from = LIVE_BYTES.load(Ordering::Relaxed);
    let mut position = lines.len() as u64;
    let at = 1_800_000_000;
    for i in 0..extra {
        let ticket_id = uuid::Uuid::from_u128(0xFFFF_0000_0000_0000_0000_0000_0000_0000 | i);
        let stream = format!("ticket-{ticket_id}");
        let opened = Event::TicketOpened(TicketOpened {
            ticket_id,
            customer_id: format!("bench-{i}"),
            grade: Grade::Standard,
            channel: Channel::Email,
            priority: Priority::Normal,
            ..template.clone()
        });
        let assigned = Event::TicketAssigned(TicketAssigned {
            ticket_id,
            agent_id: "front-a-1".into(),
            team: "front-a".into(),
            previous_agent_id: None,
        });
        for event in [opened, assigned] {
            position += 1;
            let record = Record {
                position,
                stream: stream.clone(),
                at,
                event,
            };
            models.apply(&record.lean());
        }
    }
    let per_open = (LIVE_BYTES.load(Ordering::Relaxed) - grown_from) as f64 / extra as f64;
    println!(
        "\nRead models after the workload: {:.1} MB for {tickets} tickets ({:.0} bytes per ticket, open or closed)",
        all_tickets as f64 / 1e6,
        all_tickets as f64 / tickets as f64
    );
    println!(
        "Memory per additional open ticket across the three models: {per_open:.0} bytes (target < 1024)"
    );
    std::hint::black_box(&models);
}
