//! The scheduler's part for step deadlines (`set_deadline`): from the tables' index on open
//! deadlines (`deadlines_open`), `raise_deadline_warning` once a deadline's warning time has
//! passed and `record_deadline_breach` once its due time has, with the step not done. Kept
//! apart from `scheduler.rs` so the scheduler's loop only asks for these commands.
//!
//! Exactly once, as the scheduler's other marks: each command's id is the domain's
//! `derived_command_id` of (ticket, deadline number, mark) under the scheduler's scheme (a
//! UUID v5), it names no `occurred_at`, and the domain refuses a second
//! warning or breach of the same deadline, so several instances, a restart or a tick that
//! reads tables not yet caught up append nothing twice.

use closeloop_core::domain::{
    derived_command_id, system_command, Command, CommandEnvelope, IdScheme, RaiseDeadlineWarning,
    RecordDeadlineBreach,
};
use jiff::Timestamp;
use uuid::Uuid;

use closeloop_projections::tables::{DeadlineRow, TableError, TableStore};

use crate::ids::SCHEDULER_ACTOR;

/// The deterministic id of a step deadline's warning (`breach` false) or breach.
pub fn command_id(ticket_id: Uuid, deadline: u32, breach: bool) -> Uuid {
    let mark = if breach { "breach" } else { "warning" };
    let name = format!("{ticket_id}/deadline/{deadline}/{mark}");
    derived_command_id(IdScheme::Scheduler, &name)
}

/// For each of `rows` (of [`TableStore::due_deadlines`]) not done at `now`: the warning once
/// its warning time has passed (unless already breached), and the breach once its due time
/// has (both, warning first, for one late on both, so the trail shows the threshold was
/// crossed).
pub fn commands_for(rows: &[DeadlineRow], now: Timestamp) -> Vec<CommandEnvelope> {
    let now_s = now.as_second();
    let mut due = Vec::new();
    for r in rows.iter().filter(|r| r.deadline_due(now_s)) {
        let Some(due_at) = r.due_at.and_then(|d| Timestamp::from_second(d).ok()) else {
            continue;
        };
        let warn = r.warned_at.is_none() && r.warn_at.is_some_and(|w| w <= now_s);
        let breach = r.due_at.is_some_and(|d| d <= now_s);
        let (ticket_id, deadline) = (r.ticket_id, r.deadline);
        for (owed, is_breach) in [(warn, false), (breach, true)] {
            if !owed {
                continue;
            }
            due.push(system_command(
                SCHEDULER_ACTOR,
                command_id(ticket_id, deadline, is_breach),
                if is_breach {
                    Command::RecordDeadlineBreach(RecordDeadlineBreach {
                        ticket_id,
                        deadline,
                        due_at,
                    })
                } else {
                    Command::RaiseDeadlineWarning(RaiseDeadlineWarning {
                        ticket_id,
                        deadline,
                        due_at,
                    })
                },
            ));
        }
    }
    due
}

/// The commands due at `now`, reading at most `rows` deadlines (two commands at most each).
pub async fn due_commands(
    tables: &dyn TableStore,
    now: Timestamp,
    rows: u32,
) -> Result<Vec<CommandEnvelope>, TableError> {
    let due = tables.due_deadlines(now.as_second(), rows).await?;
    Ok(commands_for(&due, now))
}
