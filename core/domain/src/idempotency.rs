//! The log's idempotency key of a command: one rule, used by the handler when it appends and
//! by `verify` when it checks the log's idempotency records against the events.
//!
//! The key of a command from outside is derived from the actor's id and the command id, so
//! nobody can take an id another actor will use: the engine's own commands (role `system`,
//! never accepted from outside) keep their predictable ids in a space no outside command
//! reaches, and an agent cannot pre-empt a service's id either.

use uuid::Uuid;

use crate::command::{Command, CommandEnvelope};
use crate::types::{Actor, Role};

/// The namespace of the log keys of commands from outside (UUID v5 over actor and id).
const OUTSIDE: Uuid = Uuid::from_u128(0x6c0e_7d2a_35b1_4c8e_9a51_0f3e_2b7c_d914);

/// The key the log deduplicates a command by: its own id for the engine's commands (role
/// `system`), a UUID v5 of the actor's id and the command id for everyone else's.
pub fn idempotency_key(actor: &Actor, command_id: Uuid) -> Uuid {
    if actor.role == Role::System {
        return command_id;
    }
    let mut name = Vec::with_capacity(actor.id.len() + 17);
    name.extend_from_slice(actor.id.as_bytes());
    // A byte no actor id holds (ids are printable), then the id's 16 bytes.
    name.push(0);
    name.extend_from_slice(command_id.as_bytes());
    Uuid::new_v5(&OUTSIDE, &name)
}

/// How the engine derives the id of one of its own commands (role `system`) from what
/// triggers it: a name such as `auto-assign/<ticket>/<version>` or
/// `<ticket>/<target>/<due>/breach`. Any number of instances, or one restarted from position
/// zero, build the same id, and the log appends it once (a second append of a command id is
/// `duplicate`).
///
/// Two schemes are in the logs, and both stay: the process managers' and the SLA
/// scheduler's commands already appended carry them, and a manager restarted from position
/// zero submits again what its state still calls for (an escalation for every breach of a
/// ticket still open, for one), relying on the same id to be refused as a duplicate. An id
/// computed another way would append those commands a second time. So a name is always
/// derived under the scheme its kind was first issued under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdScheme {
    /// The process managers' (auto-assignment, backup coverage, breach escalation):
    /// FNV-1a over the name, 128 bits, as a UUID v8.
    ProcessManagers,
    /// The SLA scheduler's (deadlines, unconfirmed closes, follow-ups, re-inspections,
    /// absences): a UUID v5 of the name in [`SCHEDULER_NAMESPACE`].
    Scheduler,
}

/// The namespace of the SLA scheduler's command ids (UUID v5).
pub const SCHEDULER_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_2f0e_9a41_4b7e_8c55_3b0f_61d2_a9e7);

/// The id of the engine's command named `name` under `scheme` (see [`IdScheme`]).
pub fn derived_command_id(scheme: IdScheme, name: &str) -> Uuid {
    match scheme {
        IdScheme::ProcessManagers => {
            let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
            for byte in name.bytes() {
                hash ^= u128::from(byte);
                hash = hash.wrapping_mul(0x0000000001000000000000000000013B);
            }
            uuid::Builder::from_custom_bytes(hash.to_be_bytes()).into_uuid()
        }
        IdScheme::Scheduler => Uuid::new_v5(&SCHEDULER_NAMESPACE, name.as_bytes()),
    }
}

/// One of the engine's own commands, submitted as `actor` (role `system`). It names no
/// business time: it acts at its decision time, the handler's "now" (never before the
/// stream's last event), and the moment it marks, if any, is in its data; so the same state
/// gives every instance the same command.
pub fn system_command(actor: &str, command_id: Uuid, command: Command) -> CommandEnvelope {
    CommandEnvelope {
        command_id,
        actor: Actor::system(actor),
        occurred_at: None,
        expected_version: None,
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids of commands already in production logs: computed independently of this code
    /// (Python's `uuid`), so a change of either scheme fails here before it doubles a
    /// command.
    #[test]
    fn derived_ids_are_the_ones_already_in_the_logs() {
        let event = "0190f0c4-7b8a-7000-8000-000000000001";
        assert_eq!(
            derived_command_id(
                IdScheme::ProcessManagers,
                &format!("escalate-breach/{event}")
            )
            .to_string(),
            "eced116f-462c-8975-beaa-b129a5643ca3"
        );
        assert_eq!(
            derived_command_id(IdScheme::Scheduler, &format!("absence/{event}/start")).to_string(),
            "554944e0-9b68-54c3-84ac-dd63d8503d21"
        );
    }
}
