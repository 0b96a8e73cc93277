//! The ticket's state machine: `evolve` (fold one event into the [`Ticket`] state of
//! `ticket_state.rs`) and `decide` (command -> events).
//!
//! States: `unassigned -> assigned -> in_progress <-> pending_customer -> resolved -> closed`;
//! `reopen` from resolved; escalation moves the line up by one (at most 3) from any open state;
//! a closed ticket takes only `record_satisfaction` (once per source and resolution). A
//! resolved ticket waits for the customer's answer: `confirm_resolution`, or
//! `reject_resolution` (which reopens it), or, when none comes in time, `close_unconfirmed`
//! by the scheduler. A complaint ticket takes rulings (`rule_complaint`) in every state, a
//! closed one included (a complaint is often ruled on after it is settled).

use super::authorize::authorize_ticket;
use super::command::*;
use super::context::Context;
use super::event::*;
use super::rejection::{Rejection, RejectionCode};
use super::ticket_state::*;
use super::types::*;

/// Folds one event into the state. Total: an event that does not apply leaves the state as it
/// is (the log only holds events `decide` produced, so that happens only on foreign input).
pub fn evolve(state: TicketState, event: &Event) -> TicketState {
    let Some(mut t) = state else {
        return match event {
            Event::TicketOpened(e) => Some(Ticket {
                ticket_id: e.ticket_id,
                version: 1,
                customer_id: e.customer_id.clone(),
                grade: e.grade,
                channel: e.channel,
                category: e.category,
                priority: e.priority,
                subject: e.subject.clone(),
                status: TicketStatus::Unassigned,
                line: LINE_MIN,
                assignee: None,
                previous_assignee: None,
                team: None,
                sla: e.sla.clone(),
                resolutions: 0,
                escalations: 0,
                reopens: 0,
                rated: Vec::new(),
                answer: None,
                rulings: 0,
                follow_ups: Vec::new(),
                links: Vec::new(),
                merged_into: None,
                deadlines: Vec::new(),
                exchange_flagged: false,
            }),
            _ => None,
        };
    };
    evolve_ticket(&mut t, event);
    Some(t)
}

/// Folds one event into a ticket that exists, in place: what [`evolve`] does to `Some`.
/// Why a second entry: a read model keeping many tickets folds each event into the state it
/// holds, where `evolve` would have it copy the whole ticket (its lists included) per event.
pub fn evolve_ticket(t: &mut Ticket, event: &Event) {
    t.version += 1;
    match event {
        Event::TicketAssigned(e) => {
            t.previous_assignee = e.previous_agent_id.clone();
            t.assignee = Some(e.agent_id.clone());
            t.team = Some(e.team.clone());
            if t.status != TicketStatus::PendingCustomer {
                t.status = TicketStatus::Assigned;
            }
        }
        Event::TicketEscalated(e) => {
            t.line = e.to_line;
            t.escalations += 1;
            t.previous_assignee = None;
            t.assignee = e.to_agent_id.clone();
            t.team = e.to_team.clone();
            t.status = if t.assignee.is_some() {
                TicketStatus::Assigned
            } else {
                TicketStatus::Unassigned
            };
        }
        Event::CustomerRespondedTo(_) => {
            if matches!(t.status, TicketStatus::Assigned | TicketStatus::InProgress) {
                t.status = TicketStatus::InProgress;
            }
        }
        Event::CustomerInfoRequested(_) => t.status = TicketStatus::PendingCustomer,
        Event::CustomerReplied(_) => {
            if t.status == TicketStatus::PendingCustomer {
                t.status = TicketStatus::InProgress;
            }
        }
        Event::PriorityChanged(e) => {
            t.priority = e.to;
            t.sla = e.sla.clone();
        }
        Event::TicketResolved(_) => {
            t.status = TicketStatus::Resolved;
            t.resolutions += 1;
            t.rated.clear();
            t.answer = None;
        }
        Event::ResolutionConfirmed(_) => t.answer = Some(Answer::Confirmed),
        Event::ResolutionRejected(_) => t.answer = Some(Answer::Rejected),
        Event::TicketReopened(_) => {
            t.reopens += 1;
            t.status = if t.assignee.is_some() {
                TicketStatus::Assigned
            } else {
                TicketStatus::Unassigned
            };
        }
        Event::TicketClosed(_) => t.status = TicketStatus::Closed,
        Event::SatisfactionRecorded(e) => t.rated.push(e.source),
        Event::ComplaintRuled(_) => t.rulings += 1,
        Event::FollowUpScheduled(e) => t.follow_ups.push(FollowUp {
            kind: e.kind,
            owner: e.owner.clone(),
            due_by: e.due_by,
            recorded: false,
            warned: false,
            overdue: false,
        }),
        Event::FollowUpRecorded(e) => {
            if let Some(f) = t.follow_up_mut(e.follow_up) {
                f.recorded = true;
            }
        }
        Event::FollowUpWarningRaised(e) => {
            if let Some(f) = t.follow_up_mut(e.follow_up) {
                f.warned = true;
            }
        }
        Event::FollowUpOverdue(e) => {
            if let Some(f) = t.follow_up_mut(e.follow_up) {
                f.overdue = true;
            }
        }
        Event::TicketLinked(e) => t.links.push(TicketLink {
            other_ticket_id: e.other_ticket_id,
            relation: e.relation,
        }),
        Event::TicketMergedInto(e) => t.merged_into = Some(e.into_ticket_id),
        Event::DeadlineSet(e) => t.deadlines.push(StepDeadline {
            kind: e.kind.clone(),
            owner: e.owner.clone(),
            due_at: e.due_at,
            on_breach: e.on_breach,
            met: false,
            warned: false,
            breached: false,
        }),
        Event::DeadlineMet(e) => {
            if let Some(d) = t.deadline_mut(e.deadline) {
                d.met = true;
            }
        }
        Event::DeadlineWarningRaised(e) => {
            if let Some(d) = t.deadline_mut(e.deadline) {
                d.warned = true;
            }
        }
        Event::DeadlineBreached(e) => {
            if let Some(d) = t.deadline_mut(e.deadline) {
                d.breached = true;
            }
            if e.consequence == Some(DeadlineConsequence::FlagExchange) {
                t.exchange_flagged = true;
            }
        }
        Event::NoteAdded(_)
        | Event::TicketMerged(_)
        | Event::SlaWarningRaised(_)
        | Event::SlaBreached(_)
        | Event::TicketOpened(_)
        | Event::AgentRegistered(_)
        | Event::AgentAvailabilityChanged(_)
        | Event::CustomerRegistered(_)
        | Event::CustomerDataErased(_)
        | Event::RetentionPolicyDefined(_)
        | Event::CalendarDefined(_)
        | Event::SlaPolicyDefined(_)
        | Event::InspectorRegistered(_)
        | Event::ComplaintCausesDefined(_)
        | Event::ScorecardDefined(_)
        | Event::InspectionSampleDrawn(_)
        | Event::InspectionRecorded(_)
        | Event::ReinspectionOverdue(_)
        | Event::AbsencePlanned(_)
        | Event::AbsenceCancelled(_)
        | Event::AbsenceStarted(_)
        | Event::AbsenceEnded(_)
        | Event::DeadlineKindDefined(_) => {}
    }
}

/// Decides a ticket command against the ticket's state.
pub fn decide_ticket(
    state: &TicketState,
    command: &Command,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let ticket = match (state, command) {
        (None, Command::OpenTicket(c)) => {
            authorize_ticket(None, command, ctx)?;
            return Ok(vec![open(c, ctx)]);
        }
        (Some(t), Command::OpenTicket(_)) => {
            return Err(Rejection::invalid_transition(format!(
                "ticket {} is already open",
                t.ticket_id
            )))
        }
        (None, _) => {
            let id = command.ticket_id().expect("ticket command");
            return Err(Rejection::not_found(
                "/payload/ticket_id",
                format!("no ticket {id}"),
            ));
        }
        (Some(t), _) => t,
    };
    authorize_ticket(Some(ticket), command, ctx)?;
    if let Some(target) = ticket.merged_into {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/ticket_id",
            format!(
                "ticket {} was merged into ticket {target}: it accepts nothing but reads; act on {target}",
                ticket.ticket_id
            ),
        ));
    }
    if ticket.status == TicketStatus::Closed
        && !matches!(
            command,
            Command::RecordSatisfaction(_)
                | Command::RuleComplaint(_)
                | Command::ScheduleFollowUp(_)
                | Command::RecordFollowUp(_)
                | Command::RaiseFollowUpWarning(_)
                | Command::RecordFollowUpOverdue(_)
                | Command::SetDeadline(_)
                | Command::CompleteDeadline(_)
                | Command::RaiseDeadlineWarning(_)
                | Command::RecordDeadlineBreach(_)
                | Command::LinkTickets(_)
                | Command::MergeTicket(_)
        )
    {
        return Err(Rejection::invalid_transition(format!(
            "ticket is closed: it takes only ratings, rulings, follow-ups, step deadlines, links and merges, not {}",
            command.command_type()
        )));
    }
    let event = match command {
        Command::AssignTicket(c) => assign(ticket, c, ctx)?,
        Command::RespondToCustomer(c) => {
            need_assignee(ticket, "respond to the customer")?;
            need_open(ticket, "respond to the customer")?;
            Event::CustomerRespondedTo(CustomerRespondedTo {
                ticket_id: ticket.ticket_id,
                message: c.message.clone(),
            })
        }
        Command::RequestCustomerInfo(c) => {
            need_assignee(ticket, "ask the customer for information")?;
            if !matches!(
                ticket.status,
                TicketStatus::Assigned | TicketStatus::InProgress
            ) {
                return Err(transition(ticket, "ask the customer for information"));
            }
            Event::CustomerInfoRequested(CustomerInfoRequested {
                ticket_id: ticket.ticket_id,
                question: c.question.clone(),
            })
        }
        Command::RecordCustomerReply(c) => Event::CustomerReplied(CustomerReplied {
            ticket_id: ticket.ticket_id,
            message: c.message.clone(),
        }),
        Command::EscalateTicket(c) => escalate(ticket, c, ctx)?,
        Command::ChangePriority(c) => {
            need_open(ticket, "change the priority")?;
            if c.priority == ticket.priority {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/priority",
                    format!("the priority is already {}", c.priority),
                ));
            }
            Event::PriorityChanged(PriorityChanged {
                ticket_id: ticket.ticket_id,
                from: ticket.priority,
                to: c.priority,
                reason: c.reason.clone(),
                sla: ctx
                    .directory
                    .targets(ticket.grade, c.priority, ticket.category),
            })
        }
        Command::AddNote(c) => Event::NoteAdded(NoteAdded {
            ticket_id: ticket.ticket_id,
            text: c.text.clone(),
            visible_to_customer: c.visible_to_customer,
        }),
        Command::ResolveTicket(c) => {
            need_open(ticket, "resolve")?;
            let agent_id = need_assignee(ticket, "resolve")?;
            Event::TicketResolved(TicketResolved {
                ticket_id: ticket.ticket_id,
                resolution: c.resolution.clone(),
                agent_id: agent_id.to_owned(),
                outcome: c.outcome,
            })
        }
        Command::ReopenTicket(c) => {
            if ticket.status != TicketStatus::Resolved {
                return Err(transition(ticket, "reopen"));
            }
            Event::TicketReopened(TicketReopened {
                ticket_id: ticket.ticket_id,
                reason: c.reason.clone(),
            })
        }
        Command::CloseTicket(_) => {
            if ticket.status != TicketStatus::Resolved {
                return Err(transition(ticket, "close"));
            }
            Event::TicketClosed(TicketClosed {
                ticket_id: ticket.ticket_id,
                reason: CloseReason::Staff,
                answer_due_at: None,
            })
        }
        Command::ConfirmResolution(c) => {
            awaiting_answer(ticket, "confirm the resolution of")?;
            Event::ResolutionConfirmed(ResolutionConfirmed {
                ticket_id: ticket.ticket_id,
                resolution: ticket.resolutions,
                comment: c.comment.clone(),
            })
        }
        Command::RejectResolution(c) => {
            awaiting_answer(ticket, "reject the resolution of")?;
            // The rejection and the reopening it causes are one append: the ticket is never
            // seen rejected but still resolved.
            return Ok(vec![
                Event::ResolutionRejected(ResolutionRejected {
                    ticket_id: ticket.ticket_id,
                    resolution: ticket.resolutions,
                    reason: c.reason.clone(),
                }),
                Event::TicketReopened(TicketReopened {
                    ticket_id: ticket.ticket_id,
                    reason: format!("the customer rejected the resolution: {}", c.reason),
                }),
            ]);
        }
        Command::CloseUnconfirmed(c) => {
            if c.resolution != ticket.resolutions {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/resolution",
                    format!(
                        "the ticket's current resolution is number {}, not {}",
                        ticket.resolutions, c.resolution
                    ),
                ));
            }
            awaiting_answer(ticket, "close unconfirmed")?;
            Event::TicketClosed(TicketClosed {
                ticket_id: ticket.ticket_id,
                reason: CloseReason::AutoClosedUnconfirmed,
                answer_due_at: Some(c.answer_due_at),
            })
        }
        Command::RecordSatisfaction(c) => {
            if ticket.resolutions == 0 || ticket.status.is_open() {
                return Err(transition(
                    ticket,
                    "record satisfaction (only after resolution)",
                ));
            }
            if ticket.rated.contains(&c.source) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/source",
                    format!(
                        "a {} rating was already recorded for this resolution",
                        c.source
                    ),
                ));
            }
            Event::SatisfactionRecorded(SatisfactionRecorded {
                ticket_id: ticket.ticket_id,
                score: c.score,
                source: c.source,
                comment: c.comment.clone(),
                dimensions: c.dimensions,
                agent_id: ticket.assignee.clone(),
                resolution: ticket.resolutions,
            })
        }
        Command::RaiseSlaWarning(c) => {
            need_open(ticket, "raise an SLA warning on")?;
            Event::SlaWarningRaised(SlaWarningRaised {
                ticket_id: ticket.ticket_id,
                target: c.target,
                due_at: c.due_at,
                warn_at: c.warn_at,
            })
        }
        Command::RecordSlaBreach(c) => {
            need_open(ticket, "record an SLA breach on")?;
            Event::SlaBreached(SlaBreached {
                ticket_id: ticket.ticket_id,
                target: c.target,
                due_at: c.due_at,
            })
        }
        Command::RuleComplaint(c) => rule_complaint(ticket, c, ctx)?,
        Command::ScheduleFollowUp(c) => {
            if ticket.follow_ups.len() >= ctx.rules.follow_ups_max {
                return Err(Rejection::invalid_transition(format!(
                    "ticket {} already has {} follow-ups; at most {}",
                    ticket.ticket_id,
                    ticket.follow_ups.len(),
                    ctx.rules.follow_ups_max
                )));
            }
            let owner = ctx.directory.agents.get(&c.owner).ok_or_else(|| {
                Rejection::not_found("/payload/owner", format!("no agent {}", c.owner))
            })?;
            if ctx.at.is_some_and(|at| c.due_by <= at) {
                return Err(Rejection::validation(
                    "/payload/due_by",
                    "a follow-up is due after it is planned",
                ));
            }
            let warn = jiff::SignedDuration::from_hours(ctx.rules.follow_up_warn_hours.into());
            Event::FollowUpScheduled(FollowUpScheduled {
                ticket_id: ticket.ticket_id,
                follow_up: follow_up_number(ticket),
                kind: c.kind,
                due_by: c.due_by,
                warn_at: c.due_by.checked_sub(warn).unwrap_or(c.due_by),
                owner: c.owner.clone(),
                team: owner.team.clone(),
            })
        }
        Command::RecordFollowUp(c) => record_follow_up(ticket, c, ctx)?,
        Command::RaiseFollowUpWarning(c) => {
            let f = open_follow_up(ticket, c.follow_up)?;
            if f.warned || f.due_by != c.due_by {
                return Err(Rejection::invalid_transition(
                    "the follow-up was already warned of, or its due time is another",
                ));
            }
            Event::FollowUpWarningRaised(FollowUpWarningRaised {
                ticket_id: ticket.ticket_id,
                follow_up: c.follow_up,
                due_by: c.due_by,
            })
        }
        Command::RecordFollowUpOverdue(c) => {
            let f = open_follow_up(ticket, c.follow_up)?;
            if f.overdue || f.due_by != c.due_by {
                return Err(Rejection::invalid_transition(
                    "the follow-up is already overdue, or its due time is another",
                ));
            }
            Event::FollowUpOverdue(FollowUpOverdue {
                ticket_id: ticket.ticket_id,
                follow_up: c.follow_up,
                due_by: c.due_by,
            })
        }
        Command::LinkTickets(c) => link(ticket, c, ctx)?,
        Command::MergeTicket(c) => merge(ticket, c, ctx)?,
        Command::SetDeadline(c) => set_deadline(ticket, c, ctx)?,
        Command::CompleteDeadline(c) => {
            let d = open_deadline(ticket, c.deadline)?;
            Event::DeadlineMet(DeadlineMet {
                ticket_id: ticket.ticket_id,
                deadline: c.deadline,
                kind: d.kind.clone(),
                late: d.breached,
                completed_by: ctx.actor.id.clone(),
            })
        }
        Command::RaiseDeadlineWarning(c) => {
            let d = scheduled_deadline(ticket, c.deadline, c.due_at)?;
            if d.warned || d.breached {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/deadline",
                    format!("deadline {} was already warned of or breached", c.deadline),
                ));
            }
            Event::DeadlineWarningRaised(DeadlineWarningRaised {
                ticket_id: ticket.ticket_id,
                deadline: c.deadline,
                kind: d.kind.clone(),
                due_at: c.due_at,
            })
        }
        Command::RecordDeadlineBreach(c) => {
            let d = scheduled_deadline(ticket, c.deadline, c.due_at)?;
            if d.breached {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/deadline",
                    format!("deadline {} is already breached", c.deadline),
                ));
            }
            if ctx.at.is_some_and(|at| at < c.due_at) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/due_at",
                    "a deadline is breached only once its due time has passed",
                ));
            }
            Event::DeadlineBreached(DeadlineBreached {
                ticket_id: ticket.ticket_id,
                deadline: c.deadline,
                kind: d.kind.clone(),
                due_at: c.due_at,
                consequence: d.on_breach,
            })
        }
        Command::OpenTicket(_)
        | Command::RegisterAgent(_)
        | Command::SetAgentAvailability(_)
        | Command::RegisterCustomer(_)
        | Command::EraseCustomerData(_)
        | Command::DefineRetentionPolicy(_)
        | Command::DefineCalendar(_)
        | Command::DefineSlaPolicy(_)
        | Command::RegisterInspector(_)
        | Command::DefineComplaintCauses(_)
        | Command::DefineScorecard(_)
        | Command::DrawInspectionSample(_)
        | Command::RecordInspection(_)
        | Command::RecordReinspectionOverdue(_)
        | Command::PlanAbsence(_)
        | Command::CancelAbsence(_)
        | Command::StartAbsence(_)
        | Command::EndAbsence(_)
        | Command::DefineDeadlineKind(_) => {
            unreachable!("not a ticket command on an open ticket")
        }
    };
    Ok(vec![event])
}

/// The other ticket a link or a merge names (at `path`): not the ticket itself, existing,
/// and not merged into a third.
fn other_ticket<'c>(
    ticket: &Ticket,
    other_id: uuid::Uuid,
    path: &str,
    ctx: &Context<'c>,
) -> Result<&'c Ticket, Rejection> {
    if other_id == ticket.ticket_id {
        return Err(Rejection::validation(
            path,
            format!("ticket {other_id} cannot be linked to or merged into itself"),
        ));
    }
    let other = ctx
        .other
        .filter(|o| o.ticket_id == other_id)
        .ok_or_else(|| Rejection::not_found(path, format!("no ticket {other_id}")))?;
    if let Some(target) = other.merged_into {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            path,
            format!("ticket {other_id} was merged into ticket {target}: name {target} instead"),
        ));
    }
    Ok(other)
}

fn link(ticket: &Ticket, c: &LinkTickets, ctx: &Context) -> Result<Event, Rejection> {
    other_ticket(ticket, c.other_ticket_id, "/payload/other_ticket_id", ctx)?;
    let link = TicketLink {
        other_ticket_id: c.other_ticket_id,
        relation: c.relation,
    };
    if ticket.links.contains(&link) {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/relation",
            format!(
                "ticket {} is already linked to {} as {}",
                ticket.ticket_id, c.other_ticket_id, c.relation
            ),
        ));
    }
    Ok(Event::TicketLinked(TicketLinked {
        ticket_id: ticket.ticket_id,
        other_ticket_id: c.other_ticket_id,
        relation: c.relation,
    }))
}

/// A merge: the target must be open (a closed ticket is done; the merged work continues on
/// the target).
fn merge(ticket: &Ticket, c: &MergeTicket, ctx: &Context) -> Result<Event, Rejection> {
    let target = other_ticket(ticket, c.into_ticket_id, "/payload/into_ticket_id", ctx)?;
    if target.status == TicketStatus::Closed {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/into_ticket_id",
            format!(
                "ticket {} is closed: merge into an open ticket",
                c.into_ticket_id
            ),
        ));
    }
    Ok(Event::TicketMergedInto(TicketMergedInto {
        ticket_id: ticket.ticket_id,
        into_ticket_id: c.into_ticket_id,
        reason: c.reason.clone(),
    }))
}

/// A step deadline: the kind must be defined and the owner registered; the due time is the
/// command's `due_at` (after now), or business minutes (the command's, else the kind's
/// default) on the kind's calendar, else the ticket's (its SLA policy's), else elapsed time.
fn set_deadline(t: &Ticket, c: &SetDeadline, ctx: &Context) -> Result<Event, Rejection> {
    if t.deadlines.len() >= ctx.rules.deadlines_max {
        return Err(Rejection::invalid_transition(format!(
            "ticket {} already has {} step deadlines; at most {}",
            t.ticket_id,
            t.deadlines.len(),
            ctx.rules.deadlines_max
        )));
    }
    let kinds = &ctx.directory.deadline_kinds;
    let kind = kinds.get(&c.kind).ok_or_else(|| {
        let known = if kinds.is_empty() {
            "no kinds are defined yet (define_deadline_kind)".to_owned()
        } else {
            let mut codes: Vec<&str> = kinds.keys().map(String::as_str).collect();
            codes.sort_unstable();
            format!("expected one of {}", codes.join(", "))
        };
        Rejection::not_found(
            "/payload/kind",
            format!("no deadline kind `{}`: {known}", c.kind),
        )
    })?;
    let owner =
        ctx.directory.agents.get(&c.owner).ok_or_else(|| {
            Rejection::not_found("/payload/owner", format!("no agent {}", c.owner))
        })?;
    if let (Some(due_at), Some(at)) = (c.due_at, ctx.at) {
        if due_at <= at {
            return Err(Rejection::validation(
                "/payload/due_at",
                "a deadline is due after it is set",
            ));
        }
    }
    let business_minutes = match c.due_at {
        Some(_) => None,
        None => Some(c.business_minutes.unwrap_or(kind.business_minutes)),
    };
    let calendar_id = kind
        .calendar_id
        .clone()
        .or_else(|| t.sla.as_ref().map(|s| s.calendar_id.clone()));
    Ok(Event::DeadlineSet(DeadlineSet {
        ticket_id: t.ticket_id,
        deadline: u32::try_from(t.deadlines.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1),
        kind: kind.kind.clone(),
        owner: c.owner.clone(),
        team: owner.team.clone(),
        business_minutes,
        due_at: c.due_at,
        calendar_id,
        warn_before_minutes: kind.warn_before_minutes,
        on_breach: kind.on_breach,
    }))
}

/// Step deadline `number` of the ticket, its step not yet done.
fn open_deadline(t: &Ticket, number: u32) -> Result<&StepDeadline, Rejection> {
    let d = t.deadline(number).ok_or_else(|| {
        Rejection::not_found(
            "/payload/deadline",
            format!(
                "ticket {} has no deadline {number} ({} set)",
                t.ticket_id,
                t.deadlines.len()
            ),
        )
    })?;
    if d.met {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/deadline",
            format!("deadline {number} is already met"),
        ));
    }
    Ok(d)
}

/// As [`open_deadline`], for the scheduler: an absolute due time must be the one the
/// command names (one computed on a calendar is the read side's to name).
fn scheduled_deadline(
    t: &Ticket,
    number: u32,
    due_at: jiff::Timestamp,
) -> Result<&StepDeadline, Rejection> {
    let d = open_deadline(t, number)?;
    if d.due_at.is_some_and(|due| due != due_at) {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/due_at",
            format!("deadline {number} is due at another time"),
        ));
    }
    Ok(d)
}

fn follow_up_number(t: &Ticket) -> u32 {
    u32::try_from(t.follow_ups.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

/// Follow-up `number` of the ticket, still unrecorded.
fn open_follow_up(t: &Ticket, number: u32) -> Result<&FollowUp, Rejection> {
    let f = t.follow_up(number).ok_or_else(|| {
        Rejection::not_found(
            "/payload/follow_up",
            format!(
                "ticket {} has no follow-up {number} ({} planned)",
                t.ticket_id,
                t.follow_ups.len()
            ),
        )
    })?;
    if f.recorded {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/follow_up",
            format!("follow-up {number} is already recorded"),
        ));
    }
    Ok(f)
}

/// A follow-up's record: a visit says when it took place and whether the customer signed,
/// a call neither; a visit entered more than `visit_entry_days_max` days after it took place
/// is flagged late.
fn record_follow_up(t: &Ticket, c: &RecordFollowUp, ctx: &Context) -> Result<Event, Rejection> {
    let f = open_follow_up(t, c.follow_up)?;
    let (visited_at, signed) = match (f.kind, c.visited_at, c.signed) {
        (FollowUpKind::Visit, Some(at), Some(signed)) => (Some(at), Some(signed)),
        (FollowUpKind::Visit, None, _) => {
            return Err(Rejection::validation(
                "/payload/visited_at",
                "a visit's record says when it took place",
            ))
        }
        (FollowUpKind::Visit, _, None) => {
            return Err(Rejection::validation(
                "/payload/signed",
                "a visit's record says whether the customer signed it",
            ))
        }
        (FollowUpKind::Call, None, None) => (None, None),
        (FollowUpKind::Call, Some(_), _) => {
            return Err(Rejection::validation(
                "/payload/visited_at",
                "a call has no visit time",
            ))
        }
        (FollowUpKind::Call, None, Some(_)) => {
            return Err(Rejection::validation(
                "/payload/signed",
                "a call has no signed record",
            ))
        }
    };
    if let (Some(visited), Some(at)) = (visited_at, ctx.at) {
        if visited > at {
            return Err(Rejection::validation(
                "/payload/visited_at",
                "the visit cannot take place after it is recorded",
            ));
        }
    }
    let days = jiff::SignedDuration::from_hours(i64::from(ctx.rules.visit_entry_days_max) * 24);
    let entered_late = match (visited_at, ctx.at) {
        (Some(visited), Some(at)) => at.duration_since(visited) > days,
        _ => false,
    };
    Ok(Event::FollowUpRecorded(FollowUpRecorded {
        ticket_id: t.ticket_id,
        follow_up: c.follow_up,
        kind: f.kind,
        outcome: c.outcome,
        summary: c.summary.clone(),
        visited_at,
        signed,
        entered_late,
        recorded_by: ctx.actor.id.clone(),
    }))
}

/// A ruling on a complaint ticket: the cause must be on the list in force and everyone
/// charged a registered agent. Numbered from 1; each supersedes the one before.
fn rule_complaint(ticket: &Ticket, c: &RuleComplaint, ctx: &Context) -> Result<Event, Rejection> {
    if ticket.category != Category::Complaint {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/ticket_id",
            format!(
                "ticket {} is a {}, not a complaint: only complaints are ruled on",
                ticket.ticket_id, ticket.category
            ),
        ));
    }
    let causes = &ctx.directory.complaint_causes;
    if !causes.contains_key(&c.cause) {
        let known = if causes.is_empty() {
            "no causes are defined yet (define_complaint_causes)".to_owned()
        } else {
            format!(
                "expected one of {}",
                causes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        return Err(Rejection::not_found(
            "/payload/cause",
            format!("no complaint cause `{}`: {known}", c.cause),
        ));
    }
    let charged = c
        .charged
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let agent = ctx.directory.agents.get(id).ok_or_else(|| {
                Rejection::not_found(&format!("/payload/charged/{i}"), format!("no agent {id}"))
            })?;
            Ok(ChargedStaff {
                agent_id: id.clone(),
                team: agent.team.clone(),
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    Ok(Event::ComplaintRuled(ComplaintRuled {
        ticket_id: ticket.ticket_id,
        ruling: ticket.rulings + 1,
        justified: c.justified,
        cause: c.cause.clone(),
        charged,
        note: c.note.clone(),
        ruled_by: ctx.actor.clone(),
    }))
}

fn open(c: &OpenTicket, ctx: &Context) -> Event {
    let grade = ctx.directory.grade_of(&c.customer_id);
    Event::TicketOpened(TicketOpened {
        ticket_id: c.ticket_id,
        customer_id: c.customer_id.clone(),
        grade,
        channel: c.channel,
        category: c.category,
        priority: c.priority,
        subject: c.subject.clone(),
        description: c.description.clone(),
        sla: ctx.directory.targets(grade, c.priority, c.category),
    })
}

fn assign(ticket: &Ticket, c: &AssignTicket, ctx: &Context) -> Result<Event, Rejection> {
    need_open(ticket, "assign")?;
    let agent = ctx.directory.agents.get(&c.agent_id).ok_or_else(|| {
        Rejection::not_found("/payload/agent_id", format!("no agent {}", c.agent_id))
    })?;
    if ticket.assignee.as_deref() == Some(c.agent_id.as_str()) {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/agent_id",
            format!("the ticket is already assigned to {}", c.agent_id),
        ));
    }
    if agent.line != ticket.line {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/agent_id",
            format!(
                "{} works line {}, the ticket is at line {}",
                c.agent_id, agent.line, ticket.line
            ),
        ));
    }
    if !agent.available {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/agent_id",
            format!("{} is away; assign to their backup", c.agent_id),
        ));
    }
    Ok(Event::TicketAssigned(TicketAssigned {
        ticket_id: ticket.ticket_id,
        agent_id: agent.agent_id.clone(),
        team: agent.team.clone(),
        previous_agent_id: ticket.assignee.clone(),
    }))
}

fn escalate(ticket: &Ticket, c: &EscalateTicket, ctx: &Context) -> Result<Event, Rejection> {
    need_open(ticket, "escalate")?;
    if ticket.line >= LINE_MAX {
        return Err(Rejection::invalid_transition(format!(
            "the ticket is at line {LINE_MAX}, the highest; it cannot be escalated further"
        )));
    }
    let to_line = ticket.line + 1;
    let to_agent = match &c.to_agent_id {
        None => None,
        Some(id) => {
            let agent = ctx.directory.agents.get(id).ok_or_else(|| {
                Rejection::not_found("/payload/to_agent_id", format!("no agent {id}"))
            })?;
            if agent.line != to_line {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/to_agent_id",
                    format!(
                        "{id} works line {}, the escalation goes to line {to_line}",
                        agent.line
                    ),
                ));
            }
            if !agent.available {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/to_agent_id",
                    format!("{id} is away"),
                ));
            }
            Some(agent)
        }
    };
    Ok(Event::TicketEscalated(TicketEscalated {
        ticket_id: ticket.ticket_id,
        from_line: ticket.line,
        to_line,
        reason: c.reason.clone(),
        from_agent_id: ticket.assignee.clone(),
        to_agent_id: to_agent.map(|a| a.agent_id.clone()),
        to_team: to_agent.map(|a| a.team.clone()),
    }))
}

/// A resolution the customer has not answered yet: the ticket is resolved (not reopened,
/// not closed) and its current resolution has neither a confirmation nor a rejection.
fn awaiting_answer(ticket: &Ticket, action: &str) -> Result<(), Rejection> {
    if ticket.status != TicketStatus::Resolved {
        return Err(transition(ticket, action));
    }
    match ticket.answer {
        None => Ok(()),
        Some(answer) => Err(Rejection::invalid_transition(format!(
            "resolution {} was already {answer} by the customer",
            ticket.resolutions
        ))),
    }
}

fn need_open(ticket: &Ticket, action: &str) -> Result<(), Rejection> {
    if ticket.status.is_open() {
        Ok(())
    } else {
        Err(transition(ticket, action))
    }
}

fn need_assignee<'t>(ticket: &'t Ticket, action: &str) -> Result<&'t str, Rejection> {
    ticket.assignee.as_deref().ok_or_else(|| {
        Rejection::invalid_transition(format!(
            "the ticket is unassigned: assign it before you {action}"
        ))
    })
}

fn transition(ticket: &Ticket, action: &str) -> Rejection {
    Rejection::invalid_transition(format!(
        "cannot {action} a ticket that is {}",
        ticket.status
    ))
}
