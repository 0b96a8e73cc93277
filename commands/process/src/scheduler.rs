//! The SLA scheduler: turns deadlines into events. From the tables' index on open timers it
//! finds live timers
//! whose warning threshold or deadline has passed at "now" and submits `raise_sla_warning` /
//! `record_sla_breach` (role `system`), so warnings and breaches are part of the audited
//! history. From the index on resolutions awaiting the customer's answer it finds those whose
//! wait has ended and submits `close_unconfirmed`, so the ticket is closed
//! `auto_closed_unconfirmed`. From the index on unrecorded follow-ups it submits
//! `raise_follow_up_warning` and `record_follow_up_overdue` (`Rules::follow_up_warn_hours`
//! before, and at, the due time). From the failed inspections it submits
//! `record_reinspection_overdue` for an item not inspected again in the month after. From the
//! index on planned absences it submits `start_absence` at an absence's `from` and
//! `end_absence` at its `until` (backup coverage then moves the agent's open tickets to the
//! backup and back, as soon as the event is in the log). Step deadlines are warned of and
//! breached by `step_deadlines.rs`. From the retention policies and the tickets it submits
//! `erase_customer_data` for each customer whose retention has run out (`retention.rs`), at
//! the customer's deadline.
//!
//! Exactly once per deadline, even with several instances running: each command's id is a
//! UUID v5 of (ticket, target, deadline, kind) (the domain's `derived_command_id`, the
//! scheduler's scheme) and it names no `occurred_at`, so every
//! instance builds the same command and the log's idempotency (a `command_id` appends at
//! most once) answers all but the first with `duplicate`. A priority change that moves a
//! deadline makes a new deadline, which gets its own warning and breach.
//!
//! The scheduler acts at its decision time, never before: the events are appended with the
//! handler's "now" (so business time stays monotonic in the ticket's stream), and the moment
//! they mark is in their data (`due_at`). A scheduler that starts late, when both the warning
//! minute and the deadline have passed, appends the warning and then the breach, so the trail
//! shows that the threshold was crossed.
//!
//! The scheduler does not depend on the command side: it takes a `submit` function (the
//! binary passes the command handler's).

use std::sync::Arc;
use std::time::Duration;

use closeloop_core::domain::{
    derived_command_id, system_command, CloseUnconfirmed, Command, CommandEnvelope, EndAbsence,
    IdScheme, RaiseFollowUpWarning, RaiseSlaWarning, RecordFollowUpOverdue,
    RecordReinspectionOverdue, RecordSlaBreach, SlaTarget, StartAbsence, SCHEDULER_NAMESPACE,
};
use closeloop_core::log::Shutdown;
use jiff::Timestamp;
use uuid::Uuid;

use closeloop_projections::clock::{target_name, TARGETS};
use closeloop_projections::period::{day_of, Granularity};
use closeloop_projections::runtime::ProjectorError;
use closeloop_projections::tables::read;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::{
    AbsenceRow, FollowUpRow, InspectionRow, ResolutionRow, TableError, TableStore, TimerRow, NAME,
};

use crate::{retention, step_deadlines};

/// Namespace of the scheduler's command ids (UUID v5): the scheduler's scheme of
/// [`derived_command_id`], the one its commands already in the logs carry.
pub const COMMAND_NAMESPACE: Uuid = SCHEDULER_NAMESPACE;
/// The actor of the scheduler's commands.
pub use crate::ids::SCHEDULER_ACTOR as ACTOR_ID;
/// Most commands one tick submits (the rest wait for the next tick).
pub const TICK_COMMANDS_MAX: usize = 1_000;

/// The deterministic id of a deadline's command.
pub fn command_id(ticket_id: Uuid, target: SlaTarget, due_at: Timestamp, breach: bool) -> Uuid {
    let target = target_name(target);
    let kind = if breach { "breach" } else { "warning" };
    let name = format!("{ticket_id}/{target}/{}/{kind}", due_at.as_second());
    derived_command_id(IdScheme::Scheduler, &name)
}

/// The deterministic id of the command closing resolution `resolution` unconfirmed.
pub fn close_command_id(ticket_id: Uuid, resolution: u32) -> Uuid {
    let name = format!("{ticket_id}/resolution/{resolution}/close_unconfirmed");
    derived_command_id(IdScheme::Scheduler, &name)
}

/// The deterministic id of a follow-up's warning (`overdue` false) or overdue mark.
pub fn follow_up_command_id(ticket_id: Uuid, follow_up: u32, overdue: bool) -> Uuid {
    let kind = if overdue { "overdue" } else { "warning" };
    let name = format!("{ticket_id}/follow_up/{follow_up}/{kind}");
    derived_command_id(IdScheme::Scheduler, &name)
}

/// For each of `follow_ups` (rows of [`TableStore::due_follow_ups`]) still unrecorded at
/// `now`: `raise_follow_up_warning` once its warning time has passed, and
/// `record_follow_up_overdue` once its due time has (both, warning first, for one late on
/// both).
pub fn follow_ups_for(follow_ups: &[FollowUpRow], now: Timestamp) -> Vec<CommandEnvelope> {
    let now_s = now.as_second();
    let mut due = Vec::new();
    for f in follow_ups.iter().filter(|f| f.follow_up_due(now_s)) {
        let Ok(due_by) = Timestamp::from_second(f.due_by) else {
            continue;
        };
        for overdue in [false, true] {
            let (mark, at) = if overdue {
                (f.overdue_at, f.due_by)
            } else {
                (f.warned_at, f.warn_at)
            };
            if mark.is_some() || at > now_s {
                continue;
            }
            let (ticket_id, follow_up) = (f.ticket_id, f.follow_up);
            due.push(system_command(
                ACTOR_ID,
                follow_up_command_id(ticket_id, follow_up, overdue),
                if overdue {
                    Command::RecordFollowUpOverdue(RecordFollowUpOverdue {
                        ticket_id,
                        follow_up,
                        due_by,
                    })
                } else {
                    Command::RaiseFollowUpWarning(RaiseFollowUpWarning {
                        ticket_id,
                        follow_up,
                        due_by,
                    })
                },
            ));
        }
    }
    due
}

/// The deterministic id of the command marking an item's re-inspection overdue.
pub fn reinspection_command_id(sample_id: Uuid, ticket_id: Uuid) -> Uuid {
    let name = format!("{sample_id}/{ticket_id}/reinspection_overdue");
    derived_command_id(IdScheme::Scheduler, &name)
}

/// `record_reinspection_overdue` for each of `failed` (rows of
/// [`TableStore::due_reinspections`]).
pub fn reinspections_for(failed: &[InspectionRow]) -> Vec<CommandEnvelope> {
    failed
        .iter()
        .map(|i| {
            system_command(
                ACTOR_ID,
                reinspection_command_id(i.sample_id, i.ticket_id),
                Command::RecordReinspectionOverdue(RecordReinspectionOverdue {
                    sample_id: i.sample_id,
                    ticket_id: i.ticket_id,
                }),
            )
        })
        .collect()
}

/// The deterministic id of an absence's start (`end` false) or end.
pub fn absence_command_id(absence_id: Uuid, end: bool) -> Uuid {
    let kind = if end { "end" } else { "start" };
    let name = format!("absence/{absence_id}/{kind}");
    derived_command_id(IdScheme::Scheduler, &name)
}

/// `start_absence` for each of `absences` (rows of [`TableStore::due_absences`]) planned
/// with its `from` reached at `now`, `end_absence` for each under way with its `until`
/// reached. An absence the scheduler missed entirely gets its start at the next tick and its
/// end at the one after (once the start is in the tables), so the trail shows both.
pub fn absences_for(absences: &[AbsenceRow], now: Timestamp) -> Vec<CommandEnvelope> {
    absences
        .iter()
        .filter(|a| a.absence_due(now.as_second()))
        .map(|a| {
            let end = a.state == "started";
            let (agent_id, absence_id) = (a.agent_id.clone(), a.absence_id);
            system_command(
                ACTOR_ID,
                absence_command_id(absence_id, end),
                if end {
                    Command::EndAbsence(EndAbsence {
                        agent_id,
                        absence_id,
                    })
                } else {
                    Command::StartAbsence(StartAbsence {
                        agent_id,
                        absence_id,
                    })
                },
            )
        })
        .collect()
}

/// `close_unconfirmed` for each of `resolutions` (rows of [`TableStore::due_answers`]) still
/// awaiting an answer whose wait ended before `now`.
pub fn closes_for(resolutions: &[ResolutionRow], now: Timestamp) -> Vec<CommandEnvelope> {
    resolutions
        .iter()
        .filter(|r| r.awaits_answer() && r.answer_due_at.is_some_and(|d| d < now.as_second()))
        .filter_map(|r| {
            let answer_due_at = Timestamp::from_second(r.answer_due_at?).ok()?;
            Some(system_command(
                ACTOR_ID,
                close_command_id(r.ticket_id, r.resolution),
                Command::CloseUnconfirmed(CloseUnconfirmed {
                    ticket_id: r.ticket_id,
                    resolution: r.resolution,
                    answer_due_at,
                }),
            ))
        })
        .collect()
}

/// The commands due at `now` among `timers` (rows of [`TableStore::due_timers`]), soonest
/// first (at most [`TICK_COMMANDS_MAX`]): a warning whose minute has passed and was not yet
/// raised, and a breach once `now` is past the deadline (using exactly the target is meeting
/// it, as the SLA report counts it). A timer late on both gets both, the warning first.
pub fn commands_for(timers: &[TimerRow], now: Timestamp) -> Vec<CommandEnvelope> {
    let now_s = now.as_second();
    let mut due = Vec::new();
    for timer in timers.iter().filter(|t| read::scheduler_due(t, now_s)) {
        let Some(target) = target_of(&timer.target) else {
            continue;
        };
        let Some(due_at) = timer.due_at.and_then(|d| Timestamp::from_second(d).ok()) else {
            continue;
        };
        let warn_at = timer
            .warn_at
            .filter(|w| *w <= now_s && timer.warned_at.is_none())
            .and_then(|w| Timestamp::from_second(w).ok());
        if let Some(warn_at) = warn_at {
            due.push((warn_at, timer.ticket_id, target, false, due_at));
        }
        if timer.due_at.is_some_and(|d| d < now_s) {
            due.push((due_at, timer.ticket_id, target, true, due_at));
        }
    }
    due.sort_by_key(|(at, id, target, breach, _)| (*at, *id, *target as u8, *breach));
    due.truncate(TICK_COMMANDS_MAX);
    due.into_iter()
        .map(|(at, ticket_id, target, breach, due_at)| {
            system_command(
                ACTOR_ID,
                command_id(ticket_id, target, due_at, breach),
                if breach {
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
                        warn_at: Some(at),
                    })
                },
            )
        })
        .collect()
}

fn target_of(name: &str) -> Option<SlaTarget> {
    TARGETS.into_iter().find(|t| target_name(*t) == name)
}

/// The commands due at `now`: one page of the tables' index on open timers, then one of
/// their index on resolutions awaiting an answer.
pub async fn due_commands(
    tables: &dyn TableStore,
    now: Timestamp,
) -> Result<Vec<CommandEnvelope>, TableError> {
    let timers = tables
        .due_timers(now.as_second(), TICK_COMMANDS_MAX as u32)
        .await?;
    let mut commands = commands_for(&timers, now);
    let room = TICK_COMMANDS_MAX.saturating_sub(commands.len());
    if room > 0 {
        let answers = tables.due_answers(now.as_second(), room as u32).await?;
        commands.extend(closes_for(&answers, now));
    }
    let room = TICK_COMMANDS_MAX.saturating_sub(commands.len());
    if room > 0 {
        // Two commands at most per row: half the room in rows.
        let rows = (room / 2).max(1) as u32;
        let follow_ups = tables.due_follow_ups(now.as_second(), rows).await?;
        commands.extend(follow_ups_for(&follow_ups, now));
    }
    let room = TICK_COMMANDS_MAX.saturating_sub(commands.len());
    if room > 0 {
        // A failed item is overdue once the month it was due again has ended.
        let month = Granularity::Month.label(day_of(now.as_second()));
        let failed = tables.due_reinspections(&month, room as u32).await?;
        commands.extend(reinspections_for(&failed));
    }
    let room = TICK_COMMANDS_MAX.saturating_sub(commands.len());
    if room > 0 {
        let absences = tables.due_absences(now.as_second(), room as u32).await?;
        commands.extend(absences_for(&absences, now));
    }
    let room = TICK_COMMANDS_MAX.saturating_sub(commands.len());
    if room > 0 {
        // Two commands at most per row: half the room in rows.
        let rows = (room / 2).max(1) as u32;
        commands.extend(step_deadlines::due_commands(tables, now, rows).await?);
    }
    let room = TICK_COMMANDS_MAX.saturating_sub(commands.len());
    if room > 0 {
        commands.extend(retention::due_erasures(tables, now, ACTOR_ID, room).await?);
    }
    Ok(commands)
}

/// Runs ticks every `interval` until `shutdown` fires: reads "now" from `clock`, submits
/// what is due. The tables are kept current by their projector; a command the tables do not
/// yet reflect as done is simply submitted again and answered `duplicate`. A failed read is
/// logged and tried again at the next tick.
pub async fn run<F, Fut>(
    tables: Arc<dyn TableStore>,
    clock: impl Fn() -> Timestamp,
    submit: F,
    interval: Duration,
    mut shutdown: Shutdown,
) where
    F: Fn(CommandEnvelope) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while !shutdown.is_set() {
        match due_commands(tables.as_ref(), clock()).await {
            Ok(commands) => {
                for envelope in commands {
                    submit(envelope).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "SLA scheduler: reading due timers"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// The scheduler on its own (no `serve`): keeps the tables current with its own projector
/// (fenced like any other writer), and each `interval` catches it up with the log and submits
/// what is due. Returns when `shutdown` fires, or with the projector's error.
pub async fn run_standalone<F, Fut>(
    log: Arc<dyn closeloop_core::log::EventLog>,
    tables: Arc<dyn TableStore>,
    clock: impl Fn() -> Timestamp,
    submit: F,
    interval: Duration,
    mut shutdown: Shutdown,
) -> Result<(), ProjectorError>
where
    F: Fn(CommandEnvelope) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut projector = TableProjector::open(log, tables.clone(), TableConfig::default()).await?;
    while !shutdown.is_set() {
        projector.catch_up().await?;
        let commands =
            due_commands(tables.as_ref(), clock())
                .await
                .map_err(|e| ProjectorError::Store {
                    projector: NAME,
                    message: e.to_string(),
                })?;
        for envelope in commands {
            submit(envelope).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => {}
        }
    }
    Ok(())
}
