//! The pure fold of the analysts' tables: one event and the state of the one ticket it
//! concerns in, the rows it changes out. No IO: the runner loads the ticket's state
//! ([`TicketWork`]) before a batch and writes the changed rows and states after it, with its
//! checkpoint, in one transaction.
//!
//! Why per ticket: every fact of these tables belongs to one ticket (or one agent, or one
//! calendar), so a batch touches only the rows of the tickets in it, and its cost is
//! proportional to its events, never to the number of tickets ever seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use closeloop_core::domain::{
    evolve, evolve_ticket, AbsenceCancelled, AbsenceEnded, AbsencePlanned, AbsenceStarted, Answer,
    ComplaintRuled, DeadlineSet, Event, Grade, Priority, SlaTarget, Ticket,
    CONFIRMATION_WAIT_DAYS_DEFAULT,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::BusinessCalendar;
use crate::clock::{target_index, target_name, Calendars, TicketClock, Timer};
use crate::fact::Fact;
use crate::record::Record;

use super::rows::*;

/// The stream categories the tables are folded from (`customer` for its erasures,
/// `retention_policy` for the retention scheduler's policies).
pub const CATEGORIES: &[&str] = &[
    "ticket",
    "calendar",
    "agent",
    "scorecard",
    "inspection",
    "customer",
    "retention_policy",
];

/// What one ticket's next events need to know: kept per ticket (the private table
/// `ticket_state`), never shown to analysts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketWork {
    /// The domain's own fold of the ticket (its free text dropped: read models keep none).
    pub ticket: Ticket,
    pub opened_at: i64,
    pub first_response_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub clock: TicketClock,
    /// Timer cycles started per target (first response, next response, resolution).
    pub cycles: [u32; 3],
    /// Per target: (due, when) of the last warning and breach recorded.
    #[serde(default)]
    pub warned: [Option<(i64, i64)>; 3],
    #[serde(default)]
    pub breached: [Option<(i64, i64)>; 3],
    /// The assignment period still open, if any, and how many periods there were.
    pub assignment: Option<AssignmentRow>,
    pub assignment_seq: u32,
    /// `ticket_assigned` events (one-touch means at most one).
    pub assigned: u32,
    pub escalated: bool,
    pub reopened: bool,
    pub first_response_minutes: Option<u32>,
    pub last_resolution: Option<ResolutionRow>,
    /// Per target: the agent and team credited with the current cycle, once fulfilled.
    #[serde(default)]
    pub credited: [Option<(Option<String>, Option<String>)>; 3],
    /// The standing ruling on this complaint and its charges (superseded by the next).
    #[serde(default)]
    pub ruling: Option<RulingRow>,
    #[serde(default)]
    pub charges: Vec<ChargeRow>,
    /// The ticket's follow-ups as their rows stand.
    #[serde(default)]
    pub follow_ups: Vec<FollowUpRow>,
    /// The ticket's step deadlines as their rows stand.
    #[serde(default)]
    pub deadlines: Vec<DeadlineRow>,
}

/// The rows a batch changes, keyed by primary key: a row changed twice in a batch is written
/// once, as it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub tickets: BTreeMap<Uuid, TicketRow>,
    pub sla_timers: BTreeMap<(Uuid, String, u32), TimerRow>,
    pub assignments: BTreeMap<(Uuid, u32), AssignmentRow>,
    pub resolutions: BTreeMap<(Uuid, u32), ResolutionRow>,
    pub satisfaction_ratings: BTreeMap<(Uuid, u32, String), RatingRow>,
    pub agents: BTreeMap<String, AgentRow>,
    pub complaint_rulings: BTreeMap<(Uuid, u32), RulingRow>,
    pub complaint_charges: BTreeMap<(Uuid, u32, String), ChargeRow>,
    pub scorecards: BTreeMap<(String, String), ScorecardRow>,
    pub follow_ups: BTreeMap<(Uuid, u32), FollowUpRow>,
    pub inspection_samples: BTreeMap<Uuid, SampleRow>,
    pub inspections: BTreeMap<(Uuid, Uuid), InspectionRow>,
    pub reinspections_overdue: BTreeMap<(Uuid, Uuid), OverdueRow>,
    pub absences: BTreeMap<Uuid, AbsenceRow>,
    pub ticket_links: BTreeMap<(Uuid, Uuid, String), LinkRow>,
    pub deadlines: BTreeMap<(Uuid, u32), DeadlineRow>,
    pub retention_policies: BTreeMap<String, RetentionPolicyRow>,
    pub customer_erasures: BTreeMap<i64, ErasureRow>,
    /// Ticket states to store (JSON of [`TicketWork`]), filled from `dirty` by
    /// [`Changes::store_states`] when the batch is committed.
    pub work: BTreeMap<Uuid, String>,
    /// Tickets whose state the batch changed. Their `tickets` row and state (and the rows of
    /// the timers in `dirty_timers`) are made once per batch (in a replay, once per save
    /// point) by [`Folder::finish`], from the state as it ends, instead of once per event:
    /// that keeps allocation and JSON off the fold's path.
    pub dirty: BTreeSet<Uuid>,
    /// Timer cycles (ticket, target index, cycle) whose row the batch changed.
    pub dirty_timers: BTreeSet<(Uuid, usize, u32)>,
    /// The calendars (JSON of [`Calendars`]), when a batch changed them.
    pub calendars: Option<String>,
    /// Tickets these events opened. None of their rows nor their state can be stored yet
    /// (a ticket's stream begins with its one `ticket_opened`, and rows are committed with
    /// the checkpoint), so a store may insert them without looking for one: PostgreSQL
    /// copies them in (a duplicate would be refused, not overwritten).
    pub opened: BTreeSet<Uuid>,
}

impl Changes {
    /// Adds a later batch's changes: a row changed in both is kept as the later one left it.
    pub fn merge(&mut self, later: Changes) {
        self.tickets.extend(later.tickets);
        self.sla_timers.extend(later.sla_timers);
        self.assignments.extend(later.assignments);
        self.resolutions.extend(later.resolutions);
        self.satisfaction_ratings.extend(later.satisfaction_ratings);
        self.agents.extend(later.agents);
        self.complaint_rulings.extend(later.complaint_rulings);
        self.complaint_charges.extend(later.complaint_charges);
        self.scorecards.extend(later.scorecards);
        self.follow_ups.extend(later.follow_ups);
        self.inspection_samples.extend(later.inspection_samples);
        self.inspections.extend(later.inspections);
        self.reinspections_overdue
            .extend(later.reinspections_overdue);
        self.absences.extend(later.absences);
        self.ticket_links.extend(later.ticket_links);
        self.deadlines.extend(later.deadlines);
        self.retention_policies.extend(later.retention_policies);
        self.customer_erasures.extend(later.customer_erasures);
        self.work.extend(later.work);
        self.dirty.extend(later.dirty);
        self.dirty_timers.extend(later.dirty_timers);
        self.opened.extend(later.opened);
        if later.calendars.is_some() {
            self.calendars = later.calendars;
        }
    }
}

/// The fold's state shared by every ticket: the calendars in force.
#[derive(Debug, Default)]
pub struct Folder {
    pub calendars: Calendars,
}

impl Folder {
    /// From stored calendars (JSON of [`Calendars`]).
    pub fn restore(calendars: Option<&str>) -> Result<Folder, String> {
        let mut calendars: Calendars = match calendars {
            Some(json) => serde_json::from_str(json).map_err(|e| e.to_string())?,
            None => Calendars::default(),
        };
        calendars.restored().map_err(|e| e.to_string())?;
        Ok(Folder { calendars })
    }

    /// Folds one event. `works` must hold the state of the event's ticket if it has one
    /// (the runner loads it); the state is updated and the changed rows recorded in `changes`.
    pub fn fold(
        &mut self,
        record: &Record,
        works: &mut HashMap<Uuid, TicketWork>,
        changes: &mut Changes,
    ) -> Result<(), String> {
        let at = record.at;
        match &record.event {
            Event::CalendarDefined(e) => {
                self.calendars.define(e).map_err(|e| e.to_string())?;
                changes.calendars = Some(self.calendars_json());
                return Ok(());
            }
            Event::RetentionPolicyDefined(e) => {
                changes.retention_policies.insert(
                    e.policy_id.clone(),
                    RetentionPolicyRow {
                        policy_id: e.policy_id.clone(),
                        category: e.matches.category.map(|c| c.as_str().to_owned()),
                        grade: e.matches.grade.map(|g| g.as_str().to_owned()),
                        keep_days: e.keep_days,
                        effective_from: e.effective_from.as_second(),
                        defined_at: at,
                        defined_position: i64::try_from(record.position).unwrap_or(i64::MAX),
                    },
                );
                return Ok(());
            }
            Event::CustomerDataErased(e) => {
                let position = i64::try_from(record.position).unwrap_or(i64::MAX);
                changes.customer_erasures.insert(
                    position,
                    ErasureRow {
                        position,
                        customer_id: e.customer_id.clone(),
                        erased_at: at,
                        erased_by: e.erased_by.clone(),
                        reason: e.reason.clone(),
                        reference: e.reference.clone(),
                    },
                );
                return Ok(());
            }
            Event::InspectionSampleDrawn(e) => {
                changes.inspection_samples.insert(
                    e.sample_id,
                    SampleRow {
                        sample_id: e.sample_id,
                        period: e.period.clone(),
                        agent_id: e.agent_id.clone(),
                        team: e.team.clone(),
                        drawn_at: at,
                        seed: e.seed.to_string(),
                        candidates: u32::try_from(e.candidates.len()).unwrap_or(u32::MAX),
                        items: u32::try_from(e.items.len()).unwrap_or(u32::MAX),
                    },
                );
                return Ok(());
            }
            Event::InspectionRecorded(e) => {
                let d = e.dimensions;
                changes.inspections.insert(
                    (e.sample_id, e.ticket_id),
                    InspectionRow {
                        sample_id: e.sample_id,
                        ticket_id: e.ticket_id,
                        period: e.period.clone(),
                        agent_id: e.agent_id.clone(),
                        team: e.team.clone(),
                        inspected_at: at,
                        inspector: e.inspector.clone(),
                        recognition: d.recognition,
                        efficiency: d.efficiency,
                        quality: d.quality,
                        overall: d.overall,
                        log_complete: e.log_complete,
                        visit_verified: e.visit_verified,
                        verdict: e.verdict.as_str().to_owned(),
                        reinspect_in: e.reinspect_in.clone(),
                    },
                );
                return Ok(());
            }
            // The four absence events carry the same fields; the row records which one came last.
            Event::AbsencePlanned(AbsencePlanned {
                absence_id,
                agent_id,
                from,
                until,
                reason,
                backup_agent_id,
            })
            | Event::AbsenceStarted(AbsenceStarted {
                absence_id,
                agent_id,
                from,
                until,
                reason,
                backup_agent_id,
            })
            | Event::AbsenceEnded(AbsenceEnded {
                absence_id,
                agent_id,
                from,
                until,
                reason,
                backup_agent_id,
            })
            | Event::AbsenceCancelled(AbsenceCancelled {
                absence_id,
                agent_id,
                from,
                until,
                reason,
                backup_agent_id,
                ..
            }) => {
                let state = match &record.event {
                    Event::AbsencePlanned(_) => "planned",
                    Event::AbsenceStarted(_) => "started",
                    Event::AbsenceEnded(_) => "ended",
                    _ => "cancelled",
                };
                changes.absences.insert(
                    *absence_id,
                    AbsenceRow {
                        absence_id: *absence_id,
                        agent_id: agent_id.clone(),
                        from_at: from.as_second(),
                        until_at: until.as_second(),
                        reason: reason.as_str().to_owned(),
                        backup_agent_id: backup_agent_id.clone(),
                        state: state.to_owned(),
                        changed_at: at,
                    },
                );
                return Ok(());
            }
            Event::ReinspectionOverdue(e) => {
                changes.reinspections_overdue.insert(
                    (e.sample_id, e.ticket_id),
                    OverdueRow {
                        sample_id: e.sample_id,
                        ticket_id: e.ticket_id,
                        period: e.period.clone(),
                        due_in: e.due_in.clone(),
                        agent_id: e.agent_id.clone(),
                        team: e.team.clone(),
                        marked_at: at,
                    },
                );
                return Ok(());
            }
            Event::ScorecardDefined(e) => {
                let row = ScorecardRow {
                    team: e.team.clone().unwrap_or_default(),
                    effective_from: e.effective_from.to_string(),
                    results_percent: e.results_percent,
                    basic_percent: e.basic_percent,
                    discipline_percent: e.discipline_percent,
                    bonus_per_excellent_rating: e.bonus_per_excellent_rating,
                    bonus_cap_points: e.bonus_cap_points,
                    deduction_per_justified_complaint: e.deduction_per_justified_complaint,
                    deduction_cap_points: e.deduction_cap_points,
                    defined_at: at,
                };
                changes
                    .scorecards
                    .insert((row.team.clone(), row.effective_from.clone()), row);
                return Ok(());
            }
            Event::AgentRegistered(e) => {
                changes.agents.insert(
                    e.agent_id.clone(),
                    AgentRow {
                        agent_id: e.agent_id.clone(),
                        team: e.team.clone(),
                        line: e.line,
                        level: e.level.as_str().to_owned(),
                        team_lead: e.team_lead,
                    },
                );
                return Ok(());
            }
            Event::TicketOpened(e) => {
                let calendars_before = self.calendars.names_len();
                let lean = record.lean();
                let Fact::TicketOpened(opened) = &lean.fact else {
                    unreachable!("a ticket_opened event is a TicketOpened fact")
                };
                let clock = TicketClock::open(at, opened.sla.as_ref(), true, &mut self.calendars);
                if self.calendars.names_len() != calendars_before {
                    changes.calendars = Some(self.calendars_json());
                }
                let mut ticket = evolve(None, &record.event).ok_or("ticket_opened did not open")?;
                ticket.subject = String::new();
                let mut work = TicketWork {
                    ticket,
                    opened_at: at,
                    first_response_at: None,
                    resolved_at: None,
                    closed_at: None,
                    clock,
                    cycles: [0; 3],
                    warned: [None; 3],
                    breached: [None; 3],
                    assignment: None,
                    assignment_seq: 0,
                    assigned: 0,
                    escalated: false,
                    reopened: false,
                    first_response_minutes: None,
                    last_resolution: None,
                    credited: [None, None, None],
                    ruling: None,
                    charges: Vec::new(),
                    follow_ups: Vec::new(),
                    deadlines: Vec::new(),
                };
                for t in &work.clock.timers {
                    work.cycles[target_index(t.target)] += 1;
                }
                self.emit(&work, &[], &Credits::default(), changes);
                changes.opened.insert(e.ticket_id);
                works.insert(e.ticket_id, work);
                return Ok(());
            }
            _ => {}
        }
        let Some(id) = record.lean().ticket_id() else {
            return Ok(());
        };
        let work = works
            .get_mut(&id)
            .ok_or_else(|| format!("ticket {id} has events but no ticket_opened before them"))?;
        let before = marks(work);
        // An event that cannot be folded leaves the state as it was (the projector stops at
        // it, and what it stores must be the state before it): `apply` refuses before it
        // changes anything.
        let credits = self.apply(work, record, changes)?;
        self.emit(work, &before, &credits, changes);
        Ok(())
    }

    /// Makes the rows and states of the tickets `changes` marks dirty, from their states in
    /// `works` as they stand: what a commit stores. Call it once before committing.
    pub fn finish(&self, changes: &mut Changes, works: &HashMap<Uuid, TicketWork>) {
        for id in std::mem::take(&mut changes.dirty) {
            let Some(w) = works.get(&id) else { continue };
            changes.tickets.insert(id, ticket_row(w));
            changes.work.insert(
                id,
                serde_json::to_string(w).expect("a ticket's state serializes"),
            );
        }
        for (id, i, cycle) in std::mem::take(&mut changes.dirty_timers) {
            let Some(w) = works.get(&id) else { continue };
            // A cycle superseded since it changed was written as it ended, by `emit`.
            if w.cycles[i] != cycle {
                continue;
            }
            for t in w
                .clock
                .timers
                .iter()
                .filter(|t| target_index(t.target) == i)
            {
                let m = mark(w, t);
                let row = self.timer_row(id, &m, Some(&w.credited[i]));
                changes
                    .sla_timers
                    .insert((id, row.target.clone(), row.cycle), row);
            }
        }
    }

    fn calendars_json(&self) -> String {
        serde_json::to_string(&self.calendars).expect("calendars serialize")
    }

    /// Applies one event to its ticket's state. Refuses (`Err`) before changing anything.
    fn apply(
        &mut self,
        w: &mut TicketWork,
        record: &Record,
        changes: &mut Changes,
    ) -> Result<Credits, String> {
        let at = record.at;
        let id = w.ticket.ticket_id;
        if let Event::SatisfactionRecorded(e) = &record.event {
            if !(1..=5).contains(&e.score) {
                return Err(format!("score {} is outside 1..=5", e.score));
            }
        }
        let mut credits = Credits::default();
        let team_before = w.ticket.team.clone();
        match &record.event {
            Event::TicketAssigned(e) => {
                end_assignment(w, at, "reassigned", changes);
                w.assigned += 1;
                start_assignment(w, &e.agent_id, &e.team, "assigned", at, changes);
            }
            Event::TicketEscalated(e) => {
                w.escalated = true;
                end_assignment(w, at, "escalated", changes);
                if let (Some(agent), Some(team)) = (&e.to_agent_id, &e.to_team) {
                    start_assignment(w, agent, team, "escalated", at, changes);
                }
            }
            Event::CustomerRespondedTo(_) | Event::CustomerInfoRequested(_) => {
                w.first_response_at.get_or_insert(at);
            }
            Event::TicketReopened(_) => {
                w.reopened = true;
                if let Some(r) = &mut w.last_resolution {
                    r.reopened_later = true;
                    r.reopened_at = Some(at);
                    changes.resolutions.insert((id, r.resolution), r.clone());
                }
            }
            Event::TicketClosed(e) => {
                w.closed_at = Some(at);
                end_assignment(w, at, "closed", changes);
                if let Some(r) = &mut w.last_resolution {
                    r.closed_at = Some(at);
                    r.close_reason = Some(e.reason.as_str().to_owned());
                    changes.resolutions.insert((id, r.resolution), r.clone());
                }
            }
            Event::ResolutionConfirmed(_) | Event::ResolutionRejected(_) => {
                let answer = match &record.event {
                    Event::ResolutionConfirmed(_) => Answer::Confirmed,
                    _ => Answer::Rejected,
                };
                if let Some(r) = &mut w.last_resolution {
                    r.answer = Some(answer.as_str().to_owned());
                    r.answered_at = Some(at);
                    changes.resolutions.insert((id, r.resolution), r.clone());
                }
            }
            Event::SatisfactionRecorded(e) => {
                let d = e.dimensions;
                let row = RatingRow {
                    ticket_id: id,
                    resolution: e.resolution,
                    source: e.source.as_str().to_owned(),
                    rated_at: at,
                    score: e.score,
                    agent_id: e.agent_id.clone(),
                    team: team_before.clone(),
                    category: w.ticket.category.as_str().to_owned(),
                    grade: w.ticket.grade.as_str().to_owned(),
                    channel: w.ticket.channel.as_str().to_owned(),
                    recognition: d.map(|d| d.recognition),
                    efficiency: d.map(|d| d.efficiency),
                    quality: d.map(|d| d.quality),
                    overall: d.map(|d| d.overall),
                };
                changes
                    .satisfaction_ratings
                    .insert((id, e.resolution, row.source.clone()), row);
            }
            Event::ComplaintRuled(e) => rule(w, e, at, changes),
            Event::FollowUpScheduled(e) => {
                let row = FollowUpRow {
                    ticket_id: id,
                    follow_up: e.follow_up,
                    kind: e.kind.as_str().to_owned(),
                    owner: e.owner.clone(),
                    team: e.team.clone(),
                    scheduled_at: at,
                    due_by: e.due_by.as_second(),
                    warn_at: e.warn_at.as_second(),
                    warned_at: None,
                    overdue_at: None,
                    recorded_at: None,
                    recorded_by: None,
                    outcome: None,
                    visited_at: None,
                    signed: None,
                    entered_late: None,
                    in_time: None,
                };
                changes.follow_ups.insert((id, e.follow_up), row.clone());
                w.follow_ups.push(row);
            }
            Event::FollowUpRecorded(e) => follow_up(w, e.follow_up, changes, |r| {
                r.recorded_at = Some(at);
                r.recorded_by = Some(e.recorded_by.clone());
                r.outcome = Some(e.outcome.as_str().to_owned());
                r.visited_at = e.visited_at.map(|v| v.as_second());
                r.signed = e.signed;
                r.entered_late = Some(e.entered_late);
                r.in_time = Some(at <= r.due_by);
            }),
            Event::FollowUpWarningRaised(e) => {
                follow_up(w, e.follow_up, changes, |r| r.warned_at = Some(at))
            }
            Event::FollowUpOverdue(e) => {
                follow_up(w, e.follow_up, changes, |r| r.overdue_at = Some(at))
            }
            Event::SlaWarningRaised(e) => {
                w.warned[target_index(e.target)] = Some((e.due_at.as_second(), at));
            }
            Event::SlaBreached(e) => {
                w.breached[target_index(e.target)] = Some((e.due_at.as_second(), at));
            }
            Event::DeadlineSet(e) => {
                let row = self.deadline_row(e, at);
                changes.deadlines.insert((id, e.deadline), row.clone());
                w.deadlines.push(row);
            }
            Event::DeadlineMet(e) => deadline(w, e.deadline, changes, |r| {
                r.met_at = Some(at);
                r.status = if e.late { "met_late" } else { "met" }.to_owned();
            }),
            Event::DeadlineWarningRaised(e) => {
                deadline(w, e.deadline, changes, |r| r.warned_at = Some(at))
            }
            Event::DeadlineBreached(e) => deadline(w, e.deadline, changes, |r| {
                r.breached_at = Some(at);
                r.status = "breached".to_owned();
                r.consequence = e.consequence.map(|c| c.as_str().to_owned());
            }),
            Event::TicketLinked(e) => link(id, e.other_ticket_id, e.relation.as_str(), at, changes),
            Event::TicketMergedInto(e) => link(id, e.into_ticket_id, "merged_into", at, changes),
            Event::TicketMerged(e) => link(id, e.from_ticket_id, "merged_from", at, changes),
            _ => {}
        }
        let lean = record.lean();
        let live_before: Vec<(SlaTarget, bool)> = w
            .clock
            .timers
            .iter()
            .map(|t| (t.target, t.is_live()))
            .collect();
        let stopped = w.clock.apply(&lean.fact, at, &mut self.calendars);
        for t in &w.clock.timers {
            let was = live_before.iter().find(|(target, _)| *target == t.target);
            if was.is_none_or(|(_, live)| !live && t.is_live()) {
                w.cycles[target_index(t.target)] += 1;
                credits.set(&mut w.credited, target_index(t.target), None);
            }
        }
        // Credit as the performance figures do: the assignee, or the resolver when none.
        let resolver = match &record.event {
            Event::TicketResolved(e) => Some(e.agent_id.clone()),
            _ => w.last_resolution.as_ref().map(|r| r.resolved_by.clone()),
        };
        let agent = w.ticket.assignee.clone().or(resolver);
        let mut resolution_minutes = None;
        for s in &stopped {
            let credit = Some((agent.clone(), w.ticket.team.clone()));
            credits.set(&mut w.credited, target_index(s.target), credit);
            let minutes = u32::try_from(s.business_s / 60).unwrap_or(u32::MAX);
            match s.target {
                SlaTarget::FirstResponse => {
                    w.first_response_minutes.get_or_insert(minutes);
                }
                SlaTarget::Resolution => resolution_minutes = Some(minutes),
                SlaTarget::NextResponse => {}
            }
        }
        if let Event::TicketResolved(e) = &record.event {
            w.resolved_at = Some(at);
            let number = w.ticket.resolutions + 1;
            let row = ResolutionRow {
                ticket_id: id,
                resolution: number,
                resolved_by: e.agent_id.clone(),
                team: team_before,
                resolved_at: at,
                first_response_business_minutes: if number == 1 {
                    w.first_response_minutes
                } else {
                    None
                },
                resolution_business_minutes: resolution_minutes,
                one_touch: w.assigned <= 1 && !w.escalated && !w.reopened,
                reopened_later: false,
                reopened_at: None,
                category: w.ticket.category.as_str().to_owned(),
                grade: w.ticket.grade.as_str().to_owned(),
                channel: w.ticket.channel.as_str().to_owned(),
                answer: None,
                answered_at: None,
                answer_due_at: self.answer_due(w, at),
                closed_at: None,
                close_reason: None,
            };
            changes.resolutions.insert((id, number), row.clone());
            w.last_resolution = Some(row);
        }
        // Last: everything above reads the ticket as it stood before the event.
        evolve_ticket(&mut w.ticket, &record.event);
        w.ticket.subject.clear();
        Ok(credits)
    }

    /// A step deadline's row as it is set at `at`: its due time is the event's `due_at`, or
    /// its business minutes after `at` on its calendar as defined at this point of the log
    /// (24x7 in UTC when it names none, or one never defined, as for SLA timers); it is
    /// warned `warn_before_minutes` business minutes before the due time (at `at` when the
    /// deadline is shorter than that).
    fn deadline_row(&self, e: &DeadlineSet, at: i64) -> DeadlineRow {
        let always = BusinessCalendar::always("utc");
        let calendar = e
            .calendar_id
            .as_deref()
            .and_then(|name| self.calendars.find(name))
            .unwrap_or(&always);
        let (due_at, business_s) = match (e.due_at, e.business_minutes) {
            (Some(due), _) => {
                let due = due.as_second();
                (Some(due), calendar.business_seconds(at, due))
            }
            (None, minutes) => {
                let seconds = i64::from(minutes.unwrap_or(0)) * 60;
                (calendar.add_business_seconds(at, seconds), seconds)
            }
        };
        let warn_s = i64::from(e.warn_before_minutes) * 60;
        let warn_at = match (due_at, warn_s) {
            (None, _) | (_, 0) => None,
            (Some(_), _) => calendar.add_business_seconds(at, (business_s - warn_s).max(0)),
        };
        DeadlineRow {
            ticket_id: e.ticket_id,
            deadline: e.deadline,
            kind: e.kind.clone(),
            owner: e.owner.clone(),
            team: e.team.clone(),
            calendar_id: e.calendar_id.clone(),
            set_at: at,
            due_at,
            warn_at,
            status: "open".to_owned(),
            met_at: None,
            warned_at: None,
            breached_at: None,
            consequence: None,
        }
    }

    /// When the wait for the customer's answer to a resolution at `at` ends: the close of the
    /// policy's `confirmation_wait_days`-th working day after it on the ticket's calendar;
    /// calendar days in UTC for a ticket without a policy.
    fn answer_due(&self, w: &TicketWork, at: i64) -> Option<i64> {
        let days = w
            .ticket
            .sla
            .as_ref()
            .and_then(|s| s.confirmation_wait_days)
            .unwrap_or(CONFIRMATION_WAIT_DAYS_DEFAULT);
        match w.clock.sla.as_ref() {
            Some(sla) => self
                .calendars
                .get(sla.calendar)
                .after_working_days(at, days.into()),
            None => BusinessCalendar::always("utc").after_working_days(at, days.into()),
        }
    }

    /// The row of a timer cycle, from its [`Mark`] and the agent and team it credits.
    fn timer_row(&self, ticket_id: Uuid, m: &Mark, credited: Option<&Credited>) -> TimerRow {
        let t = &m.timer;
        let recorded = |mark: Option<(i64, i64)>, set: bool| {
            mark.filter(|(due, _)| set && Some(*due) == t.due_at)
                .map(|(_, when)| when)
        };
        let status = match t.stop {
            Some(_) if t.met() => "fulfilled",
            Some(_) => "breached",
            None if t.breach_recorded => "breached",
            None if m.paused => "paused",
            None => "running",
        };
        let stopped = t.stop.is_some();
        let credited = if stopped {
            credited.cloned().flatten()
        } else {
            None
        };
        TimerRow {
            ticket_id,
            target: target_name(t.target).to_owned(),
            cycle: m.cycle,
            status: status.to_owned(),
            started_at: t.start,
            due_at: t.due_at,
            warn_at: t.warn_at,
            warned_at: recorded(m.warned, t.warned),
            breached_at: recorded(m.breached, t.breach_recorded),
            fulfilled_at: t.stop,
            met: stopped.then(|| t.met()),
            target_minutes: t.target_minutes,
            business_minutes_used: stopped.then_some(t.used_business_s / 60),
            calendar_minutes_used: stopped.then_some(t.used_calendar_s / 60),
            calendar_id: m
                .calendar
                .map_or(String::new(), |c| self.calendars.name(c).to_owned()),
            grade: m.grade.as_str().to_owned(),
            priority: m.priority.as_str().to_owned(),
            agent_id: credited.as_ref().and_then(|c| c.0.clone()),
            team: credited.and_then(|c| c.1),
            latest: true,
        }
    }

    /// Marks the ticket dirty, and every timer cycle whose row the event changed (`before`:
    /// the marks before it); writes at once, as they ended, the rows of cycles the event
    /// superseded (`latest` false) or dropped (a live one a new policy dropped is
    /// `cancelled`).
    fn emit(&self, w: &TicketWork, before: &[Mark], credits: &Credits, changes: &mut Changes) {
        let id = w.ticket.ticket_id;
        for old in before {
            let i = target_index(old.timer.target);
            let kept = w
                .clock
                .timers
                .iter()
                .any(|n| n.target == old.timer.target && w.cycles[i] == old.cycle);
            if !kept {
                let credited = credits.before(w, i);
                let mut row = self.timer_row(id, old, credited);
                row.latest = false;
                if old.timer.stop.is_none() {
                    row.status = "cancelled".to_owned();
                }
                changes
                    .sla_timers
                    .insert((id, row.target.clone(), row.cycle), row);
            }
        }
        for t in &w.clock.timers {
            let i = target_index(t.target);
            let now = mark(w, t);
            let same = before.contains(&now);
            if !same || credits.changed[i] {
                changes.dirty_timers.insert((id, i, now.cycle));
            }
        }
        changes.dirty.insert(id);
    }
}

/// The agent and team a fulfilled timer cycle is credited to.
type Credited = Option<(Option<String>, Option<String>)>;

/// The credits an event changed, each as it was before the event (for the rows of the
/// cycles it superseded).
#[derive(Default)]
struct Credits {
    changed: [bool; 3],
    before: [Credited; 3],
}

impl Credits {
    fn set(&mut self, credited: &mut [Credited; 3], i: usize, credit: Credited) {
        let old = std::mem::replace(&mut credited[i], credit);
        if !self.changed[i] {
            self.changed[i] = true;
            self.before[i] = old;
        }
    }

    /// Target `i`'s credit before the event.
    fn before<'a>(&'a self, w: &'a TicketWork, i: usize) -> Option<&'a Credited> {
        Some(if self.changed[i] {
            &self.before[i]
        } else {
            &w.credited[i]
        })
    }
}

/// Everything a timer cycle's row is made of but its credit, without text: compared before
/// and after an event to find the rows it changed, without making them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    timer: Timer,
    cycle: u32,
    warned: Option<(i64, i64)>,
    breached: Option<(i64, i64)>,
    paused: bool,
    calendar: Option<u32>,
    grade: Grade,
    priority: Priority,
}

fn mark(w: &TicketWork, t: &Timer) -> Mark {
    let i = target_index(t.target);
    Mark {
        timer: *t,
        cycle: w.cycles[i],
        warned: w.warned[i],
        breached: w.breached[i],
        paused: w.clock.is_paused(),
        calendar: w.clock.sla.as_ref().map(|s| s.calendar),
        grade: w.ticket.grade,
        priority: w.ticket.priority,
    }
}

fn marks(w: &TicketWork) -> Vec<Mark> {
    w.clock.timers.iter().map(|t| mark(w, t)).collect()
}

/// The ticket's row in `tickets`.
fn ticket_row(w: &TicketWork) -> TicketRow {
    let t = &w.ticket;
    TicketRow {
        ticket_id: t.ticket_id,
        customer_id: t.customer_id.clone(),
        grade: t.grade.as_str().to_owned(),
        channel: t.channel.as_str().to_owned(),
        category: t.category.as_str().to_owned(),
        priority: t.priority.as_str().to_owned(),
        status: t.status.as_str().to_owned(),
        line: t.line,
        assignee: t.assignee.clone(),
        team: t.team.clone(),
        opened_at: w.opened_at,
        first_response_at: w.first_response_at,
        resolved_at: w.resolved_at,
        closed_at: w.closed_at,
        reopenings: t.reopens,
        escalations: t.escalations,
    }
}

fn end_assignment(w: &mut TicketWork, at: i64, why: &str, changes: &mut Changes) {
    if let Some(mut a) = w.assignment.take() {
        a.until_at = Some(at);
        a.ended_by = Some(why.to_owned());
        changes.assignments.insert((a.ticket_id, a.seq), a);
    }
}

fn start_assignment(
    w: &mut TicketWork,
    agent: &str,
    team: &str,
    started_by: &str,
    at: i64,
    changes: &mut Changes,
) {
    w.assignment_seq += 1;
    let a = AssignmentRow {
        ticket_id: w.ticket.ticket_id,
        seq: w.assignment_seq,
        agent_id: agent.to_owned(),
        team: team.to_owned(),
        from_at: at,
        until_at: None,
        ended_by: None,
        started_by: started_by.to_owned(),
        category: w.ticket.category.as_str().to_owned(),
    };
    changes.assignments.insert((a.ticket_id, a.seq), a.clone());
    w.assignment = Some(a);
}

/// A `ticket_links` row of ticket `id`.
fn link(id: Uuid, other: Uuid, relation: &str, at: i64, changes: &mut Changes) {
    let row = LinkRow {
        ticket_id: id,
        other_ticket_id: other,
        relation: relation.to_owned(),
        linked_at: at,
    };
    changes
        .ticket_links
        .insert((id, other, row.relation.clone()), row);
}

/// A ruling on the ticket: the standing one (and its charges) is superseded, the new one
/// stands.
fn rule(w: &mut TicketWork, e: &ComplaintRuled, at: i64, changes: &mut Changes) {
    let id = w.ticket.ticket_id;
    if let Some(mut previous) = w.ruling.take() {
        previous.superseded_at = Some(at);
        changes
            .complaint_rulings
            .insert((id, previous.ruling), previous);
    }
    for mut charge in std::mem::take(&mut w.charges) {
        charge.superseded_at = Some(at);
        changes
            .complaint_charges
            .insert((id, charge.ruling, charge.agent_id.clone()), charge);
    }
    let row = RulingRow {
        ticket_id: id,
        ruling: e.ruling,
        ruled_at: at,
        ruled_by: e.ruled_by.id.clone(),
        ruled_by_role: e.ruled_by.role.as_str().to_owned(),
        justified: e.justified,
        cause: e.cause.clone(),
        charged: u32::try_from(e.charged.len()).unwrap_or(u32::MAX),
        assignee: w.ticket.assignee.clone(),
        team: w.ticket.team.clone(),
        complained_at: w.opened_at,
        superseded_at: None,
    };
    changes
        .complaint_rulings
        .insert((id, e.ruling), row.clone());
    w.ruling = Some(row);
    w.charges = e
        .charged
        .iter()
        .map(|c| ChargeRow {
            ticket_id: id,
            ruling: e.ruling,
            agent_id: c.agent_id.clone(),
            team: c.team.clone(),
            ruled_at: at,
            superseded_at: None,
        })
        .collect();
    for charge in &w.charges {
        changes
            .complaint_charges
            .insert((id, e.ruling, charge.agent_id.clone()), charge.clone());
    }
}

/// Changes row `number` (numbered from 1) of a ticket's numbered rows (follow-ups, step
/// deadlines) and returns it; `None` for a number `decide` would not have produced.
fn numbered<R>(rows: &mut [R], number: u32, change: impl FnOnce(&mut R)) -> Option<&R> {
    let row = rows.get_mut(usize::try_from(number.checked_sub(1)?).ok()?)?;
    change(row);
    Some(row)
}

/// Changes step deadline `number`'s row.
fn deadline(
    w: &mut TicketWork,
    number: u32,
    changes: &mut Changes,
    change: impl FnOnce(&mut DeadlineRow),
) {
    if let Some(row) = numbered(&mut w.deadlines, number, change) {
        changes
            .deadlines
            .insert((row.ticket_id, row.deadline), row.clone());
    }
}

/// Changes follow-up `number`'s row.
fn follow_up(
    w: &mut TicketWork,
    number: u32,
    changes: &mut Changes,
    change: impl FnOnce(&mut FollowUpRow),
) {
    if let Some(row) = numbered(&mut w.follow_ups, number, change) {
        changes
            .follow_ups
            .insert((row.ticket_id, row.follow_up), row.clone());
    }
}
