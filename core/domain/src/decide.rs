//! [`decide`]: any command to the decision of its kind.

use crate::command::Command;
use crate::context::Context;
use crate::event::Event;
use crate::reference::decide_directory;
use crate::rejection::Rejection;
use crate::ticket::decide_ticket;
use crate::ticket_state::TicketState;

/// Decides any command: ticket commands against the ticket's state, directory commands
/// against the directory. Returns the events to append (never empty) or why not.
pub fn decide(
    ticket: &TicketState,
    command: &Command,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    if command.ticket_id().is_some() {
        decide_ticket(ticket, command, ctx)
    } else {
        decide_directory(command, ctx)
    }
}
