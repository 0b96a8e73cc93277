//! Decisions on the directory's streams: agents, customers, calendars, SLA policies,
//! inspectors, the complaint-cause list. Their
//! state is the [`Directory`](super::Directory) itself.

use super::authorize::authorize_directory;
use super::command::*;
use super::event::*;
use super::rejection::{Rejection, RejectionCode};
use super::types::Verdict;
use super::Context;

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
        Command::RegisterCustomer(c) => Event::CustomerRegistered(CustomerRegistered {
            customer_id: c.customer_id.clone(),
            name: c.name.clone(),
            grade: c.grade,
            account_manager_id: c.account_manager_id.clone(),
        }),
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
