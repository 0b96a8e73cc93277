//! [`Context`]: what a decision may consult besides the stream's own state.

use crate::directory::{Directory, Rules};
use crate::ticket_state::Ticket;
use crate::types::Actor;

/// What a decision may consult besides the stream's own state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub actor: &'a Actor,
    /// Reference data, caught up by the caller before deciding.
    pub directory: &'a Directory,
    pub rules: &'a Rules,
    /// Who opened the ticket (its first event's actor; `None` before it is opened): a
    /// `service` acts only on the tickets it opened.
    pub opened_by: Option<&'a Actor>,
    /// The business time the events will carry (the handler's `business_time`); `None`
    /// where the caller does not know it. Decisions that compare a time in the command with
    /// the moment of recording (a visit entered late) read it.
    pub at: Option<jiff::Timestamp>,
    /// The second ticket the command names ([`Command::other_ticket_id`](crate::Command::other_ticket_id): a link's other
    /// ticket, a merge's target) as the caller loaded it; `None` when it does not exist or
    /// the command names none. A ticket's decision otherwise sees its own stream alone.
    pub other: Option<&'a Ticket>,
}
