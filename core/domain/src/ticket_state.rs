//! A ticket's state: what its events leave, folded by `evolve` (`ticket.rs`). Its own module
//! because both the decision (`ticket.rs`) and the rules on who may act on or see a ticket
//! (`authorize.rs`, `visibility.rs`) read it, and the decision calls the first.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::SlaTargets;
use super::types::*;

/// A ticket as its events leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    pub ticket_id: Uuid,
    /// Number of events folded: the stream version.
    pub version: u64,
    pub customer_id: String,
    pub grade: Grade,
    pub channel: Channel,
    pub category: Category,
    pub priority: Priority,
    pub subject: String,
    pub status: TicketStatus,
    /// Support line: 1, 2 or 3.
    pub line: u8,
    pub assignee: Option<String>,
    /// Whom the last assignment took it from: an away agent keeps a hand in the tickets moved
    /// from them to their cover (`authorize.rs`).
    #[serde(default)]
    pub previous_assignee: Option<String>,
    /// The assignee's team.
    pub team: Option<String>,
    pub sla: Option<SlaTargets>,
    /// How many times it was resolved (a reopen starts a new resolution).
    pub resolutions: u32,
    pub escalations: u32,
    pub reopens: u32,
    /// Rating sources already recorded for the current resolution.
    pub rated: Vec<RatingSource>,
    /// The customer's answer to the current resolution, once given.
    #[serde(default)]
    pub answer: Option<Answer>,
    /// Rulings on this complaint so far (the next is number `rulings + 1`).
    #[serde(default)]
    pub rulings: u32,
    /// The follow-ups planned, in order (number `i + 1` at index `i`).
    #[serde(default)]
    pub follow_ups: Vec<FollowUp>,
    /// Links to other tickets, in the order made (each pair and relation once).
    #[serde(default)]
    pub links: Vec<TicketLink>,
    /// Set once the ticket is merged into another: it then accepts nothing but reads.
    #[serde(default)]
    pub merged_into: Option<Uuid>,
    /// The step deadlines set, in order (number `i + 1` at index `i`).
    #[serde(default)]
    pub deadlines: Vec<StepDeadline>,
    /// Set by the breach of a deadline whose kind's consequence is `flag_exchange` (a
    /// repair not done in time): the product is to be exchanged.
    #[serde(default)]
    pub exchange_flagged: bool,
}

/// A step deadline, as its events leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepDeadline {
    pub kind: String,
    pub owner: String,
    /// The absolute due time when it was set as one; `None` for business minutes, whose due
    /// time the read side computes on the calendar (the scheduler names it in its commands).
    pub due_at: Option<jiff::Timestamp>,
    pub on_breach: Option<DeadlineConsequence>,
    pub met: bool,
    pub warned: bool,
    pub breached: bool,
}

/// A link to another ticket, as `ticket_linked` left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketLink {
    pub other_ticket_id: Uuid,
    /// How this ticket relates to the other.
    pub relation: LinkRelation,
}

/// A planned follow-up, as its events leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUp {
    pub kind: FollowUpKind,
    pub owner: String,
    pub due_by: jiff::Timestamp,
    pub recorded: bool,
    pub warned: bool,
    pub overdue: bool,
}

impl Ticket {
    /// Open and not merged into another: a ticket someone still works on (a merged one,
    /// whatever its status, accepts no more commands).
    pub fn in_work(&self) -> bool {
        self.status.is_open() && self.merged_into.is_none()
    }

    /// Follow-up number `number` (1, 2, ...: `follow_up_scheduled`'s numbering), if planned.
    pub fn follow_up(&self, number: u32) -> Option<&FollowUp> {
        self.follow_ups
            .get(usize::try_from(number.checked_sub(1)?).ok()?)
    }

    /// Step deadline number `number` (1, 2, ...: `deadline_set`'s numbering), if set.
    pub fn deadline(&self, number: u32) -> Option<&StepDeadline> {
        self.deadlines
            .get(usize::try_from(number.checked_sub(1)?).ok()?)
    }

    /// As [`Ticket::deadline`], to change it.
    pub fn deadline_mut(&mut self, number: u32) -> Option<&mut StepDeadline> {
        self.deadlines
            .get_mut(usize::try_from(number.checked_sub(1)?).ok()?)
    }

    /// As [`Ticket::follow_up`], to change it.
    pub fn follow_up_mut(&mut self, number: u32) -> Option<&mut FollowUp> {
        self.follow_ups
            .get_mut(usize::try_from(number.checked_sub(1)?).ok()?)
    }
}

/// A ticket stream's state: `None` before `ticket_opened`.
pub type TicketState = Option<Ticket>;
