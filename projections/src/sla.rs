//! The SLA read model: every ticket's timers (first response, next response, resolution) with
//! their life (running, paused while `pending_customer`, fulfilled, warned, breached), due
//! times in business minutes on the ticket's calendar, and per-ticket counts of targets met
//! and missed. Folds ticket events and `calendar_defined` (the calendars in force), nothing
//! else; "now" is a parameter of the reads, never inside the fold.

use closeloop_core::domain::{Grade, Priority, SlaTarget};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::{Calendars, TicketClock, Timer};
use crate::fact::{Fact, Lean};
use crate::period::{FastMap, Names};
use crate::record::Record;
use crate::runtime::Projection;

/// Index of a target in per-target arrays.
pub fn target_index(target: SlaTarget) -> usize {
    match target {
        SlaTarget::FirstResponse => 0,
        SlaTarget::NextResponse => 1,
        SlaTarget::Resolution => 2,
    }
}

/// A target's name as events and reports spell it.
pub fn target_name(target: SlaTarget) -> &'static str {
    match target {
        SlaTarget::FirstResponse => "first_response",
        SlaTarget::NextResponse => "next_response",
        SlaTarget::Resolution => "resolution",
    }
}

/// The targets in per-target array order.
pub const TARGETS: [SlaTarget; 3] = [
    SlaTarget::FirstResponse,
    SlaTarget::NextResponse,
    SlaTarget::Resolution,
];

/// One ticket in the SLA model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaTicket {
    pub grade: Grade,
    pub priority: Priority,
    /// Interned assignee and team (see [`SlaModel::name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<u32>,
    /// Not resolved or closed.
    pub open: bool,
    pub clock: TicketClock,
    /// Fulfilled timers per target (first response, next response, resolution): met, missed.
    pub done: [[u32; 2]; 3],
}

/// The SLA projection.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SlaModel {
    calendars: Calendars,
    /// Agents and teams.
    names: Names,
    #[serde(serialize_with = "crate::period::sorted")]
    tickets: FastMap<Uuid, SlaTicket>,
}

impl SlaModel {
    pub fn tickets(&self) -> impl Iterator<Item = (&Uuid, &SlaTicket)> {
        self.tickets.iter()
    }

    pub fn ticket(&self, id: &Uuid) -> Option<&SlaTicket> {
        self.tickets.get(id)
    }

    pub fn calendars(&self) -> &Calendars {
        &self.calendars
    }

    /// An interned agent or team name.
    pub fn name(&self, id: u32) -> &str {
        self.names.name(id)
    }

    /// The interned id of an agent or team, if it was ever seen.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.names.find(name)
    }

    /// Business and calendar seconds a timer of `ticket` has used as of `now` (Unix seconds).
    pub fn used_at(&self, ticket: &SlaTicket, timer: &Timer, now: i64) -> (i64, i64) {
        ticket.clock.used_at(timer, now, &self.calendars)
    }

    /// Folds one event ([`Projection::apply`] of its lean form).
    pub fn fold(&mut self, record: &Lean) -> Result<(), String> {
        let at = record.at;
        match &record.fact {
            Fact::CalendarDefined(e) => {
                self.calendars.define(e).map_err(|e| e.to_string())?;
                return Ok(());
            }
            Fact::TicketOpened(e) => {
                let clock = TicketClock::open(at, e.sla.as_ref(), true, &mut self.calendars);
                self.tickets.insert(
                    e.ticket_id,
                    SlaTicket {
                        grade: e.grade,
                        priority: e.priority,
                        assignee: None,
                        team: None,
                        open: true,
                        clock,
                        done: [[0; 2]; 3],
                    },
                );
                return Ok(());
            }
            _ => {}
        }
        let Some(id) = record.fact.ticket_id() else {
            return Ok(());
        };
        let ticket = self.tickets.get_mut(&id).ok_or_else(|| missing(id))?;
        match &record.fact {
            Fact::TicketAssigned(e) => {
                ticket.assignee = Some(self.names.id(&e.agent_id));
                ticket.team = Some(self.names.id(&e.team));
            }
            Fact::TicketEscalated(e) => {
                ticket.assignee = e.to_agent_id.as_deref().map(|a| self.names.id(a));
                ticket.team = e.to_team.as_deref().map(|t| self.names.id(t));
            }
            Fact::PriorityChanged(e) => ticket.priority = e.to,
            Fact::TicketResolved(_) | Fact::TicketClosed(_) => ticket.open = false,
            Fact::TicketReopened(_) => ticket.open = true,
            _ => {}
        }
        for s in ticket.clock.apply(&record.fact, at, &mut self.calendars) {
            ticket.done[target_index(s.target)][usize::from(!s.met)] += 1;
        }
        Ok(())
    }
}

fn missing(id: Uuid) -> String {
    format!("ticket {id} has events but no ticket_opened before them")
}

impl Projection for SlaModel {
    const NAME: &'static str = "sla";
    const VERSION: u32 = 1;
    const CATEGORIES: &'static [&'static str] = &["ticket", "calendar"];

    fn apply(&mut self, record: &Record) -> Result<(), String> {
        self.fold(&record.lean())
    }

    fn restored(&mut self) -> Result<(), String> {
        self.names.restored();
        self.calendars.restored().map_err(|e| e.to_string())
    }
}
