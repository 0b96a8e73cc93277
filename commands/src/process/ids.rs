//! Who the managers act as, and the ids of their commands: the process managers' scheme of
//! the domain's `derived_command_id` (the one their commands already in the logs carry).

use closeloop_core::domain::{
    derived_command_id, system_command, Command, CommandEnvelope, IdScheme,
};
use uuid::Uuid;

/// Actor ids of the managers' commands.
pub const ASSIGN_ACTOR: &str = "auto-assign";
pub const COVERAGE_ACTOR: &str = "backup-coverage";
pub const ESCALATION_ACTOR: &str = "breach-escalation";

/// The id of a manager's command named `name`: the managers' scheme of
/// [`derived_command_id`] (the one their commands already in the logs carry).
pub fn derived_id(name: &str) -> Uuid {
    derived_command_id(IdScheme::ProcessManagers, name)
}

/// A manager's command ([`system_command`]).
pub(super) fn envelope(actor: &str, command_id: Uuid, command: Command) -> CommandEnvelope {
    system_command(actor, command_id, command)
}
