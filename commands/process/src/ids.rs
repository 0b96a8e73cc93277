//! Who the managers and the scheduler act as, and the ids of the managers' commands: the
//! process managers' scheme of the domain's `derived_command_id` (the one their commands
//! already in the logs carry). The scheduler's ids, under the scheduler's scheme, are built
//! beside what each of its steps submits (`scheduler.rs`, `step_deadlines.rs`,
//! `retention.rs`).

use closeloop_core::domain::{
    derived_command_id, system_command, Command, CommandEnvelope, IdScheme,
};
use uuid::Uuid;

/// Actor ids of the managers' commands.
pub const ASSIGN_ACTOR: &str = "auto-assign";
pub const COVERAGE_ACTOR: &str = "backup-coverage";
pub const ESCALATION_ACTOR: &str = "breach-escalation";
/// The actor of the SLA scheduler's commands (its steps' too: step deadlines, retention).
pub const SCHEDULER_ACTOR: &str = "sla-scheduler";

/// The id of a manager's command named `name`: the managers' scheme of
/// [`derived_command_id`] (the one their commands already in the logs carry).
pub fn derived_id(name: &str) -> Uuid {
    derived_command_id(IdScheme::ProcessManagers, name)
}

/// A manager's command ([`system_command`]).
pub(super) fn envelope(actor: &str, command_id: Uuid, command: Command) -> CommandEnvelope {
    system_command(actor, command_id, command)
}
