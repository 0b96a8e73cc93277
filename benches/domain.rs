//! decide + evolve on in-memory tickets, no IO: the pure domain's speed.
//! Target (issue): at least 1,000,000 commands/s on one core.
//!
//! Run: `cargo bench --bench domain`

use std::collections::HashMap;

use closeloop_core::domain::{
    decide, evolve, CommandEnvelope, Context, Directory, Rules, TicketState,
};
use closeloop_workload::{generate, WorkloadConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The demo workload's commands with the directory as its setup leaves it.
fn prepared() -> (Directory, Vec<CommandEnvelope>) {
    let workload = generate(&WorkloadConfig {
        tickets: 2_000,
        days: 14,
        ..WorkloadConfig::default()
    })
    .expect("workload");
    let mut directory = Directory::default();
    let rules = Rules::default();
    for envelope in &workload.setup {
        let ctx = Context {
            actor: &envelope.actor,
            directory: &directory,
            rules: &rules,
            opened_by: None,
            at: None,
            other: None,
        };
        let events = decide(&None, &envelope.command, &ctx).expect("setup is accepted");
        let stream = envelope.command.stream();
        let version = directory.versions.get(&stream).copied().unwrap_or(0);
        for (i, event) in events.iter().enumerate() {
            directory.apply(&stream, version + 1 + i as u64, event);
        }
    }
    let commands = workload
        .sequential()
        .skip(workload.setup.len())
        .cloned()
        .collect();
    (directory, commands)
}

/// Runs every command through decide and evolve; returns how many were accepted.
fn run(directory: &Directory, commands: &[CommandEnvelope]) -> usize {
    let rules = Rules::default();
    let mut directory = directory.clone();
    let mut tickets: HashMap<uuid::Uuid, TicketState> = HashMap::with_capacity(4_096);
    let mut accepted = 0;
    for envelope in commands {
        let ctx = Context {
            actor: &envelope.actor,
            directory: &directory,
            rules: &rules,
            opened_by: None,
            at: None,
            other: None,
        };
        match envelope.command.ticket_id() {
            Some(id) => {
                let state = tickets.entry(id).or_default();
                if let Ok(events) = decide(state, &envelope.command, &ctx) {
                    accepted += 1;
                    for event in &events {
                        *state = evolve(state.take(), event);
                    }
                }
            }
            None => {
                if let Ok(events) = decide(&None, &envelope.command, &ctx) {
                    accepted += 1;
                    let stream = envelope.command.stream();
                    let version = directory.versions.get(&stream).copied().unwrap_or(0);
                    for (i, event) in events.iter().enumerate() {
                        directory.apply(&stream, version + 1 + i as u64, event);
                    }
                }
            }
        }
    }
    accepted
}

fn bench(c: &mut Criterion) {
    let (directory, commands) = prepared();
    assert_eq!(
        run(&directory, &commands),
        commands.len(),
        "the workload is accepted whole"
    );
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(commands.len() as u64));
    group.bench_function("decide_evolve_demo_workload", |b| {
        b.iter(|| run(&directory, &commands))
    });
    group.finish();
}

criterion_group!(benches, bench);
/// The allocator the `closeloop` binary uses (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_main!(benches);
