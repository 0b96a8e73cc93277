//! Breach escalation: a ticket with a new `sla_breached` is escalated one line up (at most to
//! the highest line), with the breach as its reason. One escalation per breach event (the
//! command id derives from the event's id).

use std::collections::HashMap;

use closeloop_core::domain::{Command, CommandEnvelope, EscalateTicket, TicketStatus, LINE_MAX};
use uuid::Uuid;

use super::ids::{derived_id, envelope, ESCALATION_ACTOR};
use super::tracked::TrackedTicket;

pub(super) fn commands(
    tickets: &HashMap<Uuid, TrackedTicket>,
    breaches: &[(Uuid, Uuid, String)],
) -> Vec<CommandEnvelope> {
    breaches
        .iter()
        .filter(|(_, ticket_id, _)| {
            tickets.get(ticket_id).is_some_and(|t| {
                t.ticket.in_work()
                    && t.ticket.status != TicketStatus::Closed
                    && t.ticket.line < LINE_MAX
            })
        })
        .map(|(event_id, ticket_id, reason)| {
            envelope(
                ESCALATION_ACTOR,
                derived_id(&format!("escalate-breach/{event_id}")),
                Command::EscalateTicket(EscalateTicket {
                    ticket_id: *ticket_id,
                    reason: reason.clone(),
                    to_agent_id: None,
                }),
            )
        })
        .collect()
}
