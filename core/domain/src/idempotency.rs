//! The log's idempotency key of a command: one rule, used by the handler when it appends and
//! by `verify` when it checks the log's idempotency records against the events.
//!
//! The key of a command from outside is derived from the actor's id and the command id, so
//! nobody can take an id another actor will use: the engine's own commands (role `system`,
//! never accepted from outside) keep their predictable ids in a space no outside command
//! reaches, and an agent cannot pre-empt a service's id either.

use uuid::Uuid;

use crate::{Actor, Role};

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
