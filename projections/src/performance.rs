//! The staff performance read model: per agent and per team, by UTC day (reports roll days up
//! into weeks, months or a total): assigned, resolved, closed, reopened, escalated,
//! first-response and resolution times in business minutes (kept as lists, for medians and
//! percentiles), targets met per SLA target, one-touch resolutions, survey ratings and
//! justified complaints; and each agent's open load now (at the log position folded).
//!
//! Attribution: `assigned` to the agent receiving the ticket; `resolved`, resolution time and
//! one-touch to the resolver; first-response time and each target met or missed to the
//! assignee when the timer was fulfilled; `closed` to the assignee; `reopened` to the agent
//! who resolved it last; `escalated` to the agent it was escalated away from; ratings to the
//! rated agent. A justified complaint is a survey rating of 1 or 2 (the only complaint about an
//! agent the log records). Teams get what their agents get, by the ticket's team at the time.

use closeloop_core::domain::{RatingSource, SlaTarget};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::{Calendars, TicketClock};
use crate::fact::{Fact, Lean};
use crate::period::{day_of, FastMap, Names};
use crate::record::Record;
use crate::runtime::Projection;
use crate::sla::target_index;

/// Agent or team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    Agent,
    Team,
}

/// (agent or team, interned id, UTC day).
pub type PerfKey = (Who, u32, i32);

/// One agent's or team's figures on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perf {
    pub assigned: u32,
    pub resolved: u32,
    pub closed: u32,
    pub reopened: u32,
    pub escalated: u32,
    /// Business minutes to the first response, one per ticket answered.
    pub first_response_minutes: Vec<u32>,
    /// Business minutes to resolution (clock off while waiting for the customer).
    pub resolution_minutes: Vec<u32>,
    /// Per target (first response, next response, resolution): met, missed.
    pub sla: [[u32; 2]; 3],
    pub one_touch: u32,
    pub ratings: u32,
    pub score_sum: u32,
    pub justified_complaints: u32,
    pub excellent_ratings: u32,
}

impl Perf {
    pub fn add(&mut self, o: &Perf) {
        self.assigned += o.assigned;
        self.resolved += o.resolved;
        self.closed += o.closed;
        self.reopened += o.reopened;
        self.escalated += o.escalated;
        self.first_response_minutes
            .extend_from_slice(&o.first_response_minutes);
        self.resolution_minutes
            .extend_from_slice(&o.resolution_minutes);
        for (a, b) in self.sla.iter_mut().zip(o.sla) {
            a[0] += b[0];
            a[1] += b[1];
        }
        self.one_touch += o.one_touch;
        self.ratings += o.ratings;
        self.score_sum += o.score_sum;
        self.justified_complaints += o.justified_complaints;
        self.excellent_ratings += o.excellent_ratings;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PerfTicket {
    clock: TicketClock,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolver: Option<u32>,
    assignments: u16,
    escalated: bool,
    reopened: bool,
    open: bool,
}

/// The performance projection.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PerformanceModel {
    names: Names,
    calendars: Calendars,
    /// Each registered agent's team.
    #[serde(with = "crate::period::pairs")]
    agent_team: FastMap<u32, u32>,
    #[serde(with = "crate::period::pairs")]
    tickets: FastMap<Uuid, PerfTicket>,
    #[serde(with = "crate::period::pairs")]
    days: FastMap<PerfKey, Perf>,
    /// Open tickets assigned to each agent now.
    #[serde(with = "crate::period::pairs")]
    open_load: FastMap<u32, i64>,
}

impl PerformanceModel {
    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn days(&self) -> impl Iterator<Item = (&PerfKey, &Perf)> {
        self.days.iter()
    }

    /// Open tickets assigned to the agent (interned id) at the position folded.
    pub fn open_now(&self, agent: u32) -> i64 {
        self.open_load.get(&agent).copied().unwrap_or(0)
    }

    /// The team of an agent (interned ids), as registered.
    pub fn team_of(&self, agent: u32) -> Option<u32> {
        self.agent_team.get(&agent).copied()
    }

    /// Every agent (interned id) registered or seen.
    pub fn agents(&self) -> impl Iterator<Item = u32> + '_ {
        self.agent_team.keys().copied()
    }

    /// Folds one event ([`Projection::apply`] of its lean form).
    pub fn fold(&mut self, record: &Lean) -> Result<(), String> {
        let (at, day) = (record.at, day_of(record.at));
        let id = match &record.fact {
            Fact::CalendarDefined(e) => {
                self.calendars.define(e).map_err(|e| e.to_string())?;
                return Ok(());
            }
            Fact::AgentRegistered(e) => {
                let (agent, team) = (self.names.id(&e.agent_id), self.names.id(&e.team));
                self.agent_team.insert(agent, team);
                return Ok(());
            }
            Fact::TicketOpened(e) => {
                let clock = TicketClock::open(at, e.sla.as_ref(), false, &mut self.calendars);
                self.tickets.insert(
                    e.ticket_id,
                    PerfTicket {
                        clock,
                        agent: None,
                        team: None,
                        resolver: None,
                        assignments: 0,
                        escalated: false,
                        reopened: false,
                        open: true,
                    },
                );
                return Ok(());
            }
            _ => match record.fact.ticket_id() {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        // Taking the map out (O(1)) lets the ticket and the rest of the model be borrowed at
        // once, without moving the ticket out and back in.
        let mut tickets = std::mem::take(&mut self.tickets);
        let result = match tickets.get_mut(&id) {
            Some(t) => self.apply_ticket(t, &record.fact, at, day),
            None => Err(format!(
                "ticket {id} has events but no ticket_opened before them"
            )),
        };
        self.tickets = tickets;
        result
    }

    fn bump(&mut self, agent: Option<u32>, team: Option<u32>, day: i32, f: impl Fn(&mut Perf)) {
        if let Some(a) = agent {
            f(self.days.entry((Who::Agent, a, day)).or_default());
        }
        if let Some(t) = team {
            f(self.days.entry((Who::Team, t, day)).or_default());
        }
    }

    fn load(&mut self, agent: Option<u32>, delta: i64) {
        if let Some(a) = agent {
            *self.open_load.entry(a).or_default() += delta;
        }
    }
}

impl Projection for PerformanceModel {
    const NAME: &'static str = "performance";
    const VERSION: u32 = 1;
    const CATEGORIES: &'static [&'static str] = &["ticket", "calendar", "agent"];

    fn apply(&mut self, record: &Record) -> Result<(), String> {
        self.fold(&record.lean())
    }

    fn restored(&mut self) -> Result<(), String> {
        self.names.restored();
        self.calendars.restored().map_err(|e| e.to_string())
    }
}

impl PerformanceModel {
    fn apply_ticket(
        &mut self,
        t: &mut PerfTicket,
        event: &Fact,
        at: i64,
        day: i32,
    ) -> Result<(), String> {
        match event {
            Fact::TicketAssigned(e) => {
                let (agent, team) = (self.names.id(&e.agent_id), self.names.id(&e.team));
                if t.open {
                    self.load(t.agent, -1);
                    self.load(Some(agent), 1);
                }
                t.agent = Some(agent);
                t.team = Some(team);
                t.assignments = t.assignments.saturating_add(1);
                self.bump(Some(agent), Some(team), day, |p| p.assigned += 1);
            }
            Fact::TicketEscalated(e) => {
                t.escalated = true;
                self.bump(t.agent, t.team, day, |p| p.escalated += 1);
                let to = e.to_agent_id.as_deref().map(|a| self.names.id(a));
                let team = e.to_team.as_deref().map(|x| self.names.id(x));
                if t.open {
                    self.load(t.agent, -1);
                    self.load(to, 1);
                }
                t.agent = to;
                t.team = team;
            }
            Fact::TicketResolved(e) => {
                let resolver = self.names.id(&e.agent_id);
                t.resolver = Some(resolver);
                if t.open {
                    self.load(t.agent, -1);
                }
                t.open = false;
                let one_touch = t.assignments <= 1 && !t.escalated && !t.reopened;
                self.bump(Some(resolver), t.team, day, |p| {
                    p.resolved += 1;
                    p.one_touch += u32::from(one_touch);
                });
            }
            Fact::TicketReopened(_) => {
                t.reopened = true;
                if !t.open {
                    self.load(t.agent, 1);
                }
                t.open = true;
                self.bump(t.resolver, t.team, day, |p| p.reopened += 1);
            }
            Fact::TicketClosed(_) => {
                if t.open {
                    self.load(t.agent, -1);
                }
                t.open = false;
                self.bump(t.agent, t.team, day, |p| p.closed += 1);
            }
            Fact::SatisfactionRecorded(e) if e.source == RatingSource::Survey => {
                let agent = e.agent_id.as_deref().map(|a| self.names.id(a));
                let score = u32::from(e.score);
                self.bump(agent, t.team, day, |p| {
                    p.ratings += 1;
                    p.score_sum += score;
                    p.justified_complaints += u32::from(score <= 2);
                    p.excellent_ratings += u32::from(score == 5);
                });
            }
            _ => {}
        }
        for s in t.clock.apply(event, at, &mut self.calendars) {
            let minutes = u32::try_from(s.business_s / 60).unwrap_or(u32::MAX);
            let (agent, team) = (t.agent.or(t.resolver), t.team);
            self.bump(agent, team, day, |p| {
                p.sla[target_index(s.target)][usize::from(!s.met)] += 1;
                match s.target {
                    SlaTarget::FirstResponse => p.first_response_minutes.push(minutes),
                    SlaTarget::Resolution => p.resolution_minutes.push(minutes),
                    SlaTarget::NextResponse => {}
                }
            });
        }
        Ok(())
    }
}
