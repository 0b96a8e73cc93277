//! The SLA scheduler: turns deadlines into events. From the SLA read model it finds live timers
//! whose warning threshold or deadline has passed at "now" and submits `raise_sla_warning` /
//! `record_sla_breach` (role `system`), so warnings and breaches are part of the audited
//! history.
//!
//! Exactly once per deadline, even with several instances running: each command's id is a
//! UUID v5 of (ticket, target, deadline, kind) and its `occurred_at` is the deadline itself, so
//! every instance builds the same command and the log's idempotency (a `command_id` appends at
//! most once) answers all but the first with `duplicate`. A priority change that moves a
//! deadline makes a new deadline, which gets its own warning and breach.
//!
//! The scheduler does not depend on the command side: it takes a `submit` function (the
//! binary passes the command handler's).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use closeloop_core::domain::{
    Actor, Command, CommandEnvelope, RaiseSlaWarning, RecordSlaBreach, SlaTarget,
};
use jiff::Timestamp;
use uuid::Uuid;

use crate::runtime::{ProjectorError, Runner, RunnerConfig};
use crate::sla::SlaModel;
use crate::store::CheckpointStore;

/// Namespace of the scheduler's command ids (UUID v5).
pub const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_2f0e_9a41_4b7e_8c55_3b0f_61d2_a9e7);
/// The actor of the scheduler's commands.
pub const ACTOR_ID: &str = "sla-scheduler";
/// Most commands one tick submits (the rest wait for the next tick).
pub const TICK_COMMANDS_MAX: usize = 1_000;

/// The deterministic id of a deadline's command.
pub fn command_id(ticket_id: Uuid, target: SlaTarget, due_at: Timestamp, breach: bool) -> Uuid {
    let target = crate::sla::target_name(target);
    let kind = if breach { "breach" } else { "warning" };
    let name = format!("{ticket_id}/{target}/{}/{kind}", due_at.as_second());
    Uuid::new_v5(&COMMAND_NAMESPACE, name.as_bytes())
}

/// The commands due at `now`, soonest deadline first (at most [`TICK_COMMANDS_MAX`]). A
/// deadline is breached once `now` is past it: using exactly the target is meeting it, as the
/// SLA report counts it.
pub fn due_commands(model: &SlaModel, now: Timestamp) -> Vec<CommandEnvelope> {
    let now_s = now.as_second();
    let mut due = Vec::new();
    for (id, ticket) in model.tickets() {
        if !ticket.open {
            continue;
        }
        for timer in ticket.clock.timers.iter().filter(|t| t.is_live()) {
            let Some(due_at) = timer.due_at.and_then(|d| Timestamp::from_second(d).ok()) else {
                continue;
            };
            if timer.due_at.is_some_and(|d| d < now_s) && !timer.breach_recorded {
                due.push((due_at, *id, timer.target, true, due_at));
            } else if timer.warn_at.is_some_and(|w| w <= now_s)
                && !timer.warned
                && !timer.breach_recorded
            {
                let warn_at = timer
                    .warn_at
                    .and_then(|w| Timestamp::from_second(w).ok())
                    .unwrap_or(due_at);
                due.push((warn_at, *id, timer.target, false, due_at));
            }
        }
    }
    due.sort_by_key(|(at, id, target, breach, _)| (*at, *id, *target as u8, *breach));
    due.truncate(TICK_COMMANDS_MAX);
    due.into_iter()
        .map(|(at, ticket_id, target, breach, due_at)| CommandEnvelope {
            command_id: command_id(ticket_id, target, due_at, breach),
            actor: Actor::system(ACTOR_ID),
            occurred_at: Some(at),
            expected_version: None,
            command: if breach {
                Command::RecordSlaBreach(RecordSlaBreach {
                    ticket_id,
                    target,
                    due_at,
                })
            } else {
                Command::RaiseSlaWarning(RaiseSlaWarning {
                    ticket_id,
                    target,
                    due_at,
                })
            },
        })
        .collect()
}

/// Runs ticks every `interval` until `shutdown` turns true: reads "now" from `clock`, submits
/// what is due. The model is kept current by its projector; a command the model does not yet
/// reflect as done is simply submitted again and answered `duplicate`.
pub async fn run<F, Fut>(
    model: Arc<RwLock<SlaModel>>,
    clock: impl Fn() -> Timestamp,
    submit: F,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    F: Fn(CommandEnvelope) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while !*shutdown.borrow() {
        let commands = due_commands(&model.read().expect("sla model lock poisoned"), clock());
        for envelope in commands {
            submit(envelope).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}

/// The scheduler on its own (no `serve`): keeps its own SLA projector (state and checkpoint in
/// `store`), and each `interval` catches it up with the log and submits what is due. Returns
/// when `shutdown` turns true, or with the projector's error.
pub async fn run_standalone<F, Fut>(
    log: Arc<dyn closeloop_core::log::EventLog>,
    store: Arc<dyn CheckpointStore>,
    clock: impl Fn() -> Timestamp,
    submit: F,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ProjectorError>
where
    F: Fn(CommandEnvelope) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut runner: Runner<SlaModel> = Runner::open(log, store, RunnerConfig::default()).await?;
    let model = runner.model();
    while !*shutdown.borrow() {
        runner.catch_up().await?;
        let commands = due_commands(&model.read().expect("sla model lock poisoned"), clock());
        for envelope in commands {
            submit(envelope).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    Ok(())
}
