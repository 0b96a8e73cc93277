//! Decisions on the directory's streams: agents, customers, calendars, SLA policies,
//! inspectors, the complaint-cause list. Their
//! state is the [`Directory`](super::Directory) itself.

use super::authorize::authorize_directory;
use super::command::*;
use super::context::Context;
use super::directory::{Absence, Agent};
use super::event::*;
use super::rejection::{Rejection, RejectionCode};
use super::types::Verdict;

/// Decides a directory command.
pub fn decide_directory(command: &Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    authorize_directory(command, ctx)?;
    let dir = ctx.directory;
    let event = match command {
        Command::RegisterAgent(c) => {
            let others = dir
                .team_members(&c.team)
                .filter(|a| a.agent_id != c.agent_id);
            let (count, lead) = others.fold((0usize, None), |(n, lead), a| {
                (
                    n + 1,
                    if a.team_lead {
                        Some(a.agent_id.clone())
                    } else {
                        lead
                    },
                )
            });
            if count + 1 > ctx.rules.team_members_max {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/team",
                    format!(
                        "team {} already has {count} members; at most {}",
                        c.team, ctx.rules.team_members_max
                    ),
                ));
            }
            if let (true, Some(lead)) = (c.team_lead, lead) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/team_lead",
                    format!("team {} already has a team lead ({lead})", c.team),
                ));
            }
            Event::AgentRegistered(AgentRegistered {
                agent_id: c.agent_id.clone(),
                name: c.name.clone(),
                team: c.team.clone(),
                line: c.line,
                level: c.level,
                team_lead: c.team_lead,
                backup_agent_id: c.backup_agent_id.clone(),
            })
        }
        Command::SetAgentAvailability(c) => {
            let agent = dir.agents.get(&c.agent_id).ok_or_else(|| {
                Rejection::not_found("/payload/agent_id", format!("no agent {}", c.agent_id))
            })?;
            if agent.available == c.available {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/available",
                    format!(
                        "{} is already {}",
                        c.agent_id,
                        if c.available { "available" } else { "away" }
                    ),
                ));
            }
            let backup = if c.available {
                None
            } else {
                let (path, id) = match (&c.backup_agent_id, &agent.backup_agent_id) {
                    (Some(id), _) => ("/payload/backup_agent_id", id),
                    (None, Some(id)) => ("/payload/agent_id", id),
                    (None, None) => {
                        return Err(Rejection::validation(
                            "/payload/backup_agent_id",
                            format!("{} has no registered backup: name who covers", c.agent_id),
                        ))
                    }
                };
                let covering = dir.agents.get(id).ok_or_else(|| {
                    Rejection::not_found(path, format!("backup agent {id} is not registered"))
                })?;
                if !covering.available {
                    return Err(Rejection::at(
                        RejectionCode::InvalidTransition,
                        path,
                        format!("backup agent {id} is away too"),
                    ));
                }
                Some(id.clone())
            };
            Event::AgentAvailabilityChanged(AgentAvailabilityChanged {
                agent_id: c.agent_id.clone(),
                available: c.available,
                backup_agent_id: backup,
            })
        }
        Command::PlanAbsence(c) => plan_absence(c, ctx)?,
        Command::CancelAbsence(c) => {
            let absence = planned(ctx, &c.agent_id, c.absence_id)?;
            Event::AbsenceCancelled(AbsenceCancelled {
                absence_id: c.absence_id,
                agent_id: c.agent_id.clone(),
                from: absence.from,
                until: absence.until,
                reason: absence.reason,
                backup_agent_id: absence.backup_agent_id.clone(),
                under_way: absence.started,
            })
        }
        Command::StartAbsence(c) => {
            let absence = planned(ctx, &c.agent_id, c.absence_id)?;
            if absence.started {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/absence_id",
                    "the absence has already started",
                ));
            }
            not_before(ctx, absence.from, "starts")?;
            // One absence under way at a time: a scheduler that comes back after both the end
            // of one and the start of the next ends the first before it starts the second.
            let who = agent(ctx, &c.agent_id)?;
            if let Some(other) = who.absence_under_way() {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/absence_id",
                    format!(
                        "{} is away on absence {} until {}: it ends first",
                        c.agent_id, other.absence_id, other.until
                    ),
                ));
            }
            Event::AbsenceStarted(AbsenceStarted {
                absence_id: c.absence_id,
                agent_id: c.agent_id.clone(),
                from: absence.from,
                until: absence.until,
                reason: absence.reason,
                backup_agent_id: absence.backup_agent_id.clone(),
            })
        }
        Command::EndAbsence(c) => {
            let absence = planned(ctx, &c.agent_id, c.absence_id)?;
            if !absence.started {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/absence_id",
                    "the absence has not started",
                ));
            }
            not_before(ctx, absence.until, "ends")?;
            Event::AbsenceEnded(AbsenceEnded {
                absence_id: c.absence_id,
                agent_id: c.agent_id.clone(),
                from: absence.from,
                until: absence.until,
                reason: absence.reason,
                backup_agent_id: absence.backup_agent_id.clone(),
            })
        }
        Command::RegisterCustomer(c) => Event::CustomerRegistered(CustomerRegistered {
            customer_id: c.customer_id.clone(),
            name: c.name.clone(),
            grade: c.grade,
            account_manager_id: c.account_manager_id.clone(),
        }),
        Command::EraseCustomerData(c) => Event::CustomerDataErased(CustomerDataErased {
            customer_id: c.customer_id.clone(),
            reason: c.reason.clone(),
            reference: c.reference.clone(),
            erased_by: Some(ctx.actor.id.clone()),
        }),
        Command::DefineRetentionPolicy(c) => {
            Event::RetentionPolicyDefined(RetentionPolicyDefined {
                policy_id: c.policy_id.clone(),
                matches: c.matches,
                keep_days: c.keep_days,
                effective_from: c.effective_from,
            })
        }
        Command::DefineCalendar(c) => Event::CalendarDefined(CalendarDefined {
            calendar_id: c.calendar_id.clone(),
            time_zone: c.time_zone.clone(),
            weekly_hours: c.weekly_hours.clone(),
            holidays: c.holidays.clone(),
            working_days: c.working_days.clone(),
            hours_overrides: c.hours_overrides.clone(),
        }),
        Command::DefineSlaPolicy(c) => {
            if !dir.calendars.contains_key(&c.calendar_id) {
                return Err(Rejection::not_found(
                    "/payload/calendar_id",
                    format!("no calendar {}; define it first", c.calendar_id),
                ));
            }
            Event::SlaPolicyDefined(SlaPolicyDefined {
                policy_id: c.policy_id.clone(),
                matches: c.matches.clone(),
                first_response_minutes: c.first_response_minutes,
                resolution_minutes: c.resolution_minutes,
                next_response_minutes: c.next_response_minutes,
                calendar_id: c.calendar_id.clone(),
                warn_at_percent: c.warn_at_percent,
                confirmation_wait_days: c.confirmation_wait_days,
            })
        }
        Command::DefineDeadlineKind(c) => {
            if let Some(calendar) = &c.calendar_id {
                if !dir.calendars.contains_key(calendar) {
                    return Err(Rejection::not_found(
                        "/payload/calendar_id",
                        format!("no calendar {calendar}; define it first"),
                    ));
                }
            }
            Event::DeadlineKindDefined(DeadlineKindDefined {
                kind: c.kind.clone(),
                business_minutes: c.minutes(),
                calendar_id: c.calendar_id.clone(),
                warn_before_minutes: c.warn_before_minutes,
                on_breach: c.on_breach,
            })
        }
        Command::RegisterInspector(c) => Event::InspectorRegistered(InspectorRegistered {
            inspector_id: c.inspector_id.clone(),
            name: c.name.clone(),
        }),
        Command::DefineComplaintCauses(c) => {
            Event::ComplaintCausesDefined(ComplaintCausesDefined {
                causes: c.causes.clone(),
            })
        }
        Command::DrawInspectionSample(c) => {
            if dir.samples.contains_key(&c.sample_id) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/sample_id",
                    format!("sample {} is already drawn", c.sample_id),
                ));
            }
            let agent = dir.agents.get(&c.agent_id).ok_or_else(|| {
                Rejection::not_found("/payload/agent_id", format!("no agent {}", c.agent_id))
            })?;
            Event::InspectionSampleDrawn(InspectionSampleDrawn {
                sample_id: c.sample_id,
                period: c.period.clone(),
                agent_id: c.agent_id.clone(),
                team: agent.team.clone(),
                size: c.size,
                seed: c.seed,
                candidates: c.candidates.clone(),
                reinspect: c.reinspect.clone(),
                items: c.items(),
            })
        }
        Command::RecordInspection(c) => {
            let sample = dir.samples.get(&c.sample_id).ok_or_else(|| {
                Rejection::not_found("/payload/sample_id", format!("no sample {}", c.sample_id))
            })?;
            if !sample.items.contains(&c.ticket_id) {
                return Err(Rejection::not_found(
                    "/payload/ticket_id",
                    format!(
                        "ticket {} was not drawn in sample {}",
                        c.ticket_id, c.sample_id
                    ),
                ));
            }
            if sample.inspected.contains(&c.ticket_id) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/ticket_id",
                    format!("ticket {} of this sample is already inspected", c.ticket_id),
                ));
            }
            Event::InspectionRecorded(InspectionRecorded {
                sample_id: c.sample_id,
                ticket_id: c.ticket_id,
                period: sample.period.clone(),
                agent_id: sample.agent_id.clone(),
                team: sample.team.clone(),
                dimensions: c.dimensions,
                log_complete: c.log_complete,
                visit_verified: c.visit_verified,
                verdict: c.verdict,
                note: c.note.clone(),
                inspector: ctx.actor.id.clone(),
                reinspect_in: (c.verdict == Verdict::Fail).then(|| next_month(&sample.period)),
            })
        }
        Command::RecordReinspectionOverdue(c) => {
            let sample = dir.samples.get(&c.sample_id).ok_or_else(|| {
                Rejection::not_found("/payload/sample_id", format!("no sample {}", c.sample_id))
            })?;
            if !sample.failed.contains(&c.ticket_id) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/ticket_id",
                    format!("ticket {} did not fail in this sample", c.ticket_id),
                ));
            }
            if sample.overdue.contains(&c.ticket_id) {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/ticket_id",
                    "its re-inspection is already recorded overdue",
                ));
            }
            let due_in = next_month(&sample.period);
            let done = dir.samples.values().any(|s| {
                s.agent_id == sample.agent_id
                    && s.period == due_in
                    && s.inspected.contains(&c.ticket_id)
            });
            if done {
                return Err(Rejection::at(
                    RejectionCode::InvalidTransition,
                    "/payload/ticket_id",
                    format!("ticket {} was inspected again in {due_in}", c.ticket_id),
                ));
            }
            Event::ReinspectionOverdue(ReinspectionOverdue {
                sample_id: c.sample_id,
                ticket_id: c.ticket_id,
                period: sample.period.clone(),
                due_in,
                agent_id: sample.agent_id.clone(),
                team: sample.team.clone(),
            })
        }
        Command::DefineScorecard(c) => Event::ScorecardDefined(ScorecardDefined {
            team: c.team.clone(),
            effective_from: c.effective_from,
            results_percent: c.results_percent,
            basic_percent: c.basic_percent,
            discipline_percent: c.discipline_percent,
            bonus_per_excellent_rating: c.bonus_per_excellent_rating,
            bonus_cap_points: c.bonus_cap_points,
            deduction_per_justified_complaint: c.deduction_per_justified_complaint,
            deduction_cap_points: c.deduction_cap_points,
        }),
        _ => unreachable!("decide_directory takes directory commands only"),
    };
    Ok(vec![event])
}

fn agent<'d>(ctx: &Context<'d>, agent_id: &str) -> Result<&'d Agent, Rejection> {
    ctx.directory
        .agents
        .get(agent_id)
        .ok_or_else(|| Rejection::not_found("/payload/agent_id", format!("no agent {agent_id}")))
}

/// A planned absence of the agent, not yet ended or cancelled.
fn planned<'d>(
    ctx: &Context<'d>,
    agent_id: &str,
    absence_id: uuid::Uuid,
) -> Result<&'d Absence, Rejection> {
    agent(ctx, agent_id)?
        .absences
        .iter()
        .find(|a| a.absence_id == absence_id)
        .ok_or_else(|| {
            Rejection::not_found(
                "/payload/absence_id",
                format!("{agent_id} has no planned absence {absence_id} (never planned, ended or cancelled)"),
            )
        })
}

/// Refuses to act before `moment`: a planned absence starts and ends at its moments, never
/// earlier (later only when no scheduler ran at the moment).
fn not_before(ctx: &Context, moment: jiff::Timestamp, what: &str) -> Result<(), Rejection> {
    match ctx.at {
        Some(at) if at < moment => Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/absence_id",
            format!("the absence {what} at {moment}, not {at}"),
        )),
        _ => Ok(()),
    }
}

fn plan_absence(c: &PlanAbsence, ctx: &Context) -> Result<Event, Rejection> {
    let who = agent(ctx, &c.agent_id)?;
    let rules = ctx.rules;
    let seconds = c.until.as_second() - c.from.as_second();
    let (min, max) = (rules.absence_days_min, rules.absence_days_max);
    if seconds < i64::from(min) * 86_400 || seconds > i64::from(max) * 86_400 {
        return Err(Rejection::validation(
            "/payload/until",
            format!("an absence lasts from {min} to {max} days"),
        ));
    }
    if let Some(at) = ctx.at.filter(|at| c.from < *at) {
        return Err(Rejection::validation(
            "/payload/from",
            format!("an absence is planned ahead: {} is before {at}", c.from),
        ));
    }
    // An absence id names one absence of one agent (the `absences` table's key): taken by
    // anyone, it is refused.
    if ctx
        .directory
        .agents
        .values()
        .any(|a| a.absences.iter().any(|a| a.absence_id == c.absence_id))
    {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/absence_id",
            format!("absence {} is already planned", c.absence_id),
        ));
    }
    if let Some(other) = who.absence_overlapping(c.from, c.until) {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            "/payload/from",
            format!(
                "{} is already away from {} until {} (absence {})",
                c.agent_id, other.from, other.until, other.absence_id
            ),
        ));
    }
    let (path, backup_id) = match (&c.backup_agent_id, &who.backup_agent_id) {
        (Some(id), _) => ("/payload/backup_agent_id", id),
        (None, Some(id)) => ("/payload/agent_id", id),
        (None, None) => {
            return Err(Rejection::validation(
                "/payload/backup_agent_id",
                format!("{} has no registered backup: name who covers", c.agent_id),
            ))
        }
    };
    let backup = ctx.directory.agents.get(backup_id).ok_or_else(|| {
        Rejection::not_found(path, format!("backup agent {backup_id} is not registered"))
    })?;
    if backup.line != who.line {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            path,
            format!(
                "backup agent {backup_id} works line {}, not line {}",
                backup.line, who.line
            ),
        ));
    }
    if let Some(other) = backup.absence_overlapping(c.from, c.until) {
        return Err(Rejection::at(
            RejectionCode::InvalidTransition,
            path,
            format!(
                "backup agent {backup_id} is away from {} until {} too",
                other.from, other.until
            ),
        ));
    }
    Ok(Event::AbsencePlanned(AbsencePlanned {
        absence_id: c.absence_id,
        agent_id: c.agent_id.clone(),
        from: c.from,
        until: c.until,
        reason: c.reason,
        backup_agent_id: backup_id.clone(),
    }))
}
