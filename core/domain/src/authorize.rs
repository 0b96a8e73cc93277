//! Who may do what (docs/contract.md, Roles; docs/domain.md, Records, confidentiality and
//! audit):
//! - `auditor`: never commands (read-only).
//! - `system`: the engine's own process managers; may do everything.
//! - `service`: opens tickets; records customer replies, answers to resolutions and survey
//!   results on the tickets
//!   it or staff opened (never on another service's); registers new customers at grade standard without an account manager (the
//!   CRM acting for customers; grades and account managers are provisioning's, `system`).
//! - `agent` (must be registered): opens tickets; acts on tickets assigned to them, on
//!   unassigned tickets of their line, and on tickets of an away agent they cover; while away,
//!   adds internal notes to the tickets moved from them to their cover; may assign
//!   only to themselves; never rates satisfaction; sets only their own availability and
//!   plans or cancels only their own absences.
//! - `supervisor` (must be a registered team lead): acts on unassigned tickets and on tickets
//!   of their team; assigns within their team; records callback ratings; registers agents of
//!   their team (and changes only those: no agent of another team, no other team's lead),
//!   sets their availability and plans their absences, defines calendars and policies.
//! - `start_absence` and `end_absence` are the scheduler's alone (`system`).
//! - `raise_sla_warning`, `record_sla_breach`, `close_unconfirmed`, `raise_follow_up_warning`
//!   and `record_follow_up_overdue` are the scheduler's alone (`system`).
//! - Step deadlines: set like follow-ups (an agent only their own, a supervisor for their
//!   team), completed by the owner (or their cover), whoever holds the ticket, or the lead;
//!   `raise_deadline_warning` and `record_deadline_breach` are the scheduler's alone; kinds
//!   are defined by `system` or a supervisor, as the other reference data.
//! - Follow-ups: planned by staff who may act on the ticket (an agent only their own, a
//!   supervisor within their team); recorded by the owner (or their cover), whoever holds the
//!   ticket by then, or the team's lead.
//! - `confirm_resolution` and `reject_resolution` are the customer's answer, so a `service`'s
//!   (on a ticket it or staff opened), never staff's.
//! - `inspector` (must be registered, by `system` alone): rules on complaints
//!   (`rule_complaint`), of any team; nothing else. Agents never rule on complaints (a
//!   ruling may charge them); a supervisor rules on their team's (and unassigned) tickets.
//! - The complaint-cause list is defined by `system` or a supervisor; inspectors are
//!   registered by `system` only.
//! - The organisation's scorecard is `system`'s; a team's, `system`'s or its lead's.
//! - Quality-inspection samples are drawn and their items inspected by inspectors (or
//!   `system`), never by the staff inspected.

use super::command::*;
use super::context::Context;
use super::directory::{Agent, Directory, Inspector};
use super::rejection::{Rejection, RejectionCode};
use super::ticket_state::Ticket;
use super::types::*;

/// The registered agent behind an `agent` or `supervisor` actor.
fn staff<'a>(ctx: &Context<'a>) -> Result<&'a Agent, Rejection> {
    registered_staff(ctx.directory, ctx.actor)
}

/// The registered agent behind an `agent` or `supervisor` actor; a supervisor must be a team
/// lead. Also what `visibility.rs` asks of a supervisor.
pub(crate) fn registered_staff<'d>(
    directory: &'d Directory,
    actor: &Actor,
) -> Result<&'d Agent, Rejection> {
    let agent = directory.agents.get(&actor.id).ok_or_else(|| {
        Rejection::forbidden(format!(
            "{} `{}` is not a registered agent",
            actor.role, actor.id
        ))
    })?;
    if actor.role == Role::Supervisor && !agent.team_lead {
        return Err(Rejection::forbidden(format!(
            "`{}` is not the team lead of team {}",
            actor.id, agent.team
        )));
    }
    Ok(agent)
}

/// Whether `agent_id` covers `assignee`: the assignee is away and `agent_id` took over their
/// work. Such an agent may act on (and see) the assignee's tickets.
pub(crate) fn covers(directory: &Directory, assignee: &str, agent_id: &str) -> bool {
    directory
        .agents
        .get(assignee)
        .is_some_and(|a| !a.available && a.covered_by.as_deref() == Some(agent_id))
}

/// Whether `ticket` was moved from the away `agent_id` to the agent covering them, and sits
/// with that cover still.
pub(crate) fn handed_over(directory: &Directory, ticket: &Ticket, agent_id: &str) -> bool {
    ticket.previous_assignee.as_deref() == Some(agent_id)
        && ticket.assignee.is_some()
        && directory.agents.get(agent_id).is_some_and(|a| {
            !a.available && a.covered_by.is_some() && a.covered_by == ticket.assignee
        })
}

/// A service speaks for the customers of the tickets it opened, and of those staff opened
/// for them (a call taken by an agent, surveyed by the CRM), never of another service's.
fn opened_it(ctx: &Context) -> Result<(), Rejection> {
    match ctx.opened_by {
        Some(opener) if opener == ctx.actor || opener.role != Role::Service => Ok(()),
        Some(opener) => Err(Rejection::forbidden(format!(
            "ticket opened by service `{}`: service `{}` acts only on the tickets it or staff opened",
            opener.id, ctx.actor.id
        ))),
        None => Err(Rejection::forbidden("no ticket opened to act on")),
    }
}

/// The registered inspector behind an `inspector` actor.
pub(crate) fn registered_inspector<'d>(
    directory: &'d Directory,
    actor: &Actor,
) -> Result<&'d Inspector, Rejection> {
    directory.inspectors.get(&actor.id).ok_or_else(|| {
        Rejection::forbidden(format!(
            "inspector `{}` is not a registered inspector",
            actor.id
        ))
    })
}

fn deny(ctx: &Context, command: &Command) -> Rejection {
    Rejection::forbidden(format!(
        "a {} may not {}",
        ctx.actor.role,
        command.command_type().replace('_', " ")
    ))
}

/// Authorizes a ticket command; `ticket` is `None` only for `open_ticket`.
pub(crate) fn authorize_ticket(
    ticket: Option<&Ticket>,
    command: &Command,
    ctx: &Context,
) -> Result<(), Rejection> {
    match ctx.actor.role {
        Role::System => Ok(()),
        Role::Auditor => Err(Rejection::forbidden("auditors have read-only access")),
        Role::PrivacyOfficer => Err(Rejection::forbidden(
            "a privacy officer erases customers' data (erase_customer_data) and acts on no ticket",
        )),
        _ if matches!(
            command,
            Command::RaiseSlaWarning(_) | Command::RecordSlaBreach(_)
        ) =>
        {
            Err(Rejection::forbidden(
                "SLA warnings and breaches are the SLA scheduler's (role system) alone",
            ))
        }
        _ if matches!(command, Command::CloseUnconfirmed(_)) => Err(Rejection::forbidden(
            "closing an unconfirmed resolution is the scheduler's (role system) alone",
        )),
        _ if matches!(
            command,
            Command::RaiseFollowUpWarning(_) | Command::RecordFollowUpOverdue(_)
        ) =>
        {
            Err(Rejection::forbidden(
                "follow-up warnings and overdue marks are the scheduler's (role system) alone",
            ))
        }
        _ if matches!(
            command,
            Command::RaiseDeadlineWarning(_) | Command::RecordDeadlineBreach(_)
        ) =>
        {
            Err(Rejection::forbidden(
                "step deadline warnings and breaches are the scheduler's (role system) alone",
            ))
        }
        Role::Agent | Role::Supervisor
            if matches!(
                command,
                Command::ConfirmResolution(_) | Command::RejectResolution(_)
            ) =>
        {
            Err(Rejection::forbidden(
                "the customer's answer to a resolution comes from the customer (role service), not from staff",
            ))
        }
        Role::Inspector => match command {
            Command::RuleComplaint(_) => registered_inspector(ctx.directory, ctx.actor).map(|_| ()),
            _ => Err(Rejection::forbidden(
                "an inspector rules on complaints and records inspections, nothing else",
            )),
        },
        Role::Agent | Role::Service if matches!(command, Command::RuleComplaint(_)) => {
            Err(Rejection::forbidden(
                "complaints are ruled on by a supervisor or an inspector",
            ))
        }
        Role::Service => match command {
            Command::OpenTicket(_) => Ok(()),
            Command::RecordCustomerReply(_)
            | Command::ConfirmResolution(_)
            | Command::RejectResolution(_) => opened_it(ctx),
            Command::RecordSatisfaction(c) if c.source == RatingSource::Survey => opened_it(ctx),
            _ => Err(deny(ctx, command)),
        },
        Role::Agent => {
            let me = staff(ctx)?;
            let Some(ticket) = ticket else { return Ok(()) };
            if matches!(command, Command::RecordSatisfaction(_)) {
                return Err(Rejection::forbidden("agents do not rate their own work"));
            }
            let mine = match ticket.assignee.as_deref() {
                Some(assignee) if assignee == me.agent_id => true,
                Some(assignee) => covers(ctx.directory, assignee, &me.agent_id),
                None => ticket.line == me.line && ticket.status.is_open(),
            };
            // A follow-up is its owner's to record (or their cover's), whoever holds the
            // ticket now.
            let owner = match command {
                Command::RecordFollowUp(c) => ticket.follow_up(c.follow_up).is_some_and(|f| {
                        f.owner == me.agent_id || covers(ctx.directory, &f.owner, &me.agent_id)
                    }),
                // So is a step deadline's completion.
                Command::CompleteDeadline(c) => ticket.deadline(c.deadline).is_some_and(|d| {
                    d.owner == me.agent_id || covers(ctx.directory, &d.owner, &me.agent_id)
                }),
                _ => false,
            };
            // Away, they stay reachable for questions on what their cover took over: an
            // internal note, nothing more.
            let asked = matches!(command, Command::AddNote(c) if !c.visible_to_customer)
                && handed_over(ctx.directory, ticket, &me.agent_id);
            let mine = mine || owner || asked;
            if !mine {
                return Err(Rejection::forbidden(format!(
                    "ticket {} is not in the care of agent {}",
                    ticket.ticket_id, me.agent_id
                )));
            }
            if let Command::AssignTicket(c) = command {
                if c.agent_id != me.agent_id {
                    return Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/agent_id",
                        "an agent may assign a ticket only to themselves; ask a supervisor",
                    ));
                }
            }
            if let Command::ScheduleFollowUp(c) = command {
                if c.owner != me.agent_id {
                    return Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/owner",
                        "an agent plans only their own follow-ups; ask a supervisor",
                    ));
                }
            }
            if let Command::SetDeadline(c) = command {
                if c.owner != me.agent_id {
                    return Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/owner",
                        "an agent sets only their own step deadlines; ask a supervisor",
                    ));
                }
            }
            Ok(())
        }
        Role::Supervisor => {
            let me = staff(ctx)?;
            let Some(ticket) = ticket else { return Ok(()) };
            if let Command::RecordSatisfaction(c) = command {
                if c.source == RatingSource::Survey {
                    return Err(Rejection::forbidden(
                        "survey results come from the customer (role service)",
                    ));
                }
            }
            let ours = match ticket.team.as_deref() {
                None => true,
                Some(team) => team == me.team,
            };
            if !ours {
                return Err(Rejection::forbidden(format!(
                    "ticket {} belongs to another team than {}",
                    ticket.ticket_id, me.team
                )));
            }
            if let Command::AssignTicket(c) = command {
                let in_team = ctx
                    .directory
                    .agents
                    .get(&c.agent_id)
                    .is_none_or(|a| a.team == me.team);
                if !in_team {
                    return Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/agent_id",
                        format!("{} is not in team {}", c.agent_id, me.team),
                    ));
                }
            }
            let owner = match command {
                Command::ScheduleFollowUp(c) => Some(&c.owner),
                Command::SetDeadline(c) => Some(&c.owner),
                _ => None,
            };
            if let Some(owner) = owner {
                let in_team = ctx
                    .directory
                    .agents
                    .get(owner)
                    .is_none_or(|a| a.team == me.team);
                if !in_team {
                    return Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/owner",
                        format!("{owner} is not in team {}", me.team),
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Authorizes a directory command (agents, customers, calendars, policies).
pub(crate) fn authorize_directory(command: &Command, ctx: &Context) -> Result<(), Rejection> {
    match ctx.actor.role {
        Role::System => Ok(()),
        Role::Auditor => Err(Rejection::forbidden("auditors have read-only access")),
        Role::PrivacyOfficer => match command {
            Command::EraseCustomerData(_) | Command::DefineRetentionPolicy(_) => Ok(()),
            _ => Err(deny(ctx, command)),
        },
        Role::Inspector => match command {
            Command::DrawInspectionSample(_) | Command::RecordInspection(_) => {
                registered_inspector(ctx.directory, ctx.actor).map(|_| ())
            }
            _ => Err(deny(ctx, command)),
        },
        Role::Service => match command {
            // A service may create a customer on first contact, at the standard grade and
            // without an account manager: grades and account managers decide service levels
            // and who reads the customer's tickets, so they are provisioning's (`system`).
            Command::RegisterCustomer(c) => {
                if ctx.directory.customers.contains_key(&c.customer_id) {
                    Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/customer_id",
                        "a service registers new customers only; changing one is provisioning's (role system)",
                    ))
                } else if c.grade != Grade::Standard {
                    Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/grade",
                        "a service registers customers at grade standard; grades are set by provisioning (role system)",
                    ))
                } else if c.account_manager_id.is_some() {
                    Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/account_manager_id",
                        "account managers are set by provisioning (role system)",
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(deny(ctx, command)),
        },
        Role::Agent => match command {
            Command::SetAgentAvailability(SetAgentAvailability { agent_id, .. })
            | Command::PlanAbsence(PlanAbsence { agent_id, .. })
            | Command::CancelAbsence(CancelAbsence { agent_id, .. })
                if *agent_id == ctx.actor.id =>
            {
                staff(ctx).map(|_| ())
            }
            _ => Err(deny(ctx, command)),
        },
        Role::Supervisor => {
            let me = staff(ctx)?;
            match command {
                Command::RegisterInspector(_) => Err(Rejection::forbidden(
                    "inspectors are registered by provisioning (role system)",
                )),
                Command::EraseCustomerData(_) => Err(Rejection::forbidden(
                    "erasing a customer's data is the privacy officer's (role privacy_officer)",
                )),
                Command::DefineRetentionPolicy(_) => Err(Rejection::forbidden(
                    "retention policies are the privacy officer's (role privacy_officer)",
                )),
                Command::DrawInspectionSample(_) | Command::RecordInspection(_) => Err(
                    Rejection::forbidden("quality inspection is the inspectors' (role inspector)"),
                ),
                Command::RecordReinspectionOverdue(_) => Err(Rejection::forbidden(
                    "overdue re-inspections are the scheduler's (role system) alone",
                )),
                Command::StartAbsence(_) | Command::EndAbsence(_) => Err(Rejection::forbidden(
                    "a planned absence starts and ends at its moments, by the scheduler (role system) alone",
                )),
                Command::DefineScorecard(c) if c.team.as_deref() != Some(me.team.as_str()) => {
                    Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/team",
                        format!(
                            "a supervisor defines the scorecard of their own team ({}); the organisation's is provisioning's (role system)",
                            me.team
                        ),
                    ))
                }
                Command::RegisterAgent(c) if c.team != me.team => Err(Rejection::at(
                    RejectionCode::Forbidden,
                    "/payload/team",
                    format!(
                        "a supervisor registers agents of their own team ({})",
                        me.team
                    ),
                )),
                // Re-registering changes an agent: only one of the supervisor's own team (no
                // taking another team's agent, no demoting another team's lead).
                Command::RegisterAgent(c) => match ctx.directory.agents.get(&c.agent_id) {
                    Some(a) if a.team != me.team => Err(Rejection::at(
                        RejectionCode::Forbidden,
                        "/payload/agent_id",
                        format!("{} is in team {}, not {}", c.agent_id, a.team, me.team),
                    )),
                    _ => Ok(()),
                },
                Command::SetAgentAvailability(SetAgentAvailability { agent_id, .. })
                | Command::PlanAbsence(PlanAbsence { agent_id, .. })
                | Command::CancelAbsence(CancelAbsence { agent_id, .. }) => match ctx
                    .directory
                    .agents
                    .get(agent_id)
                {
                    Some(a) if a.team != me.team => Err(Rejection::forbidden(format!(
                        "{} is not in team {}",
                        agent_id, me.team
                    ))),
                    _ => Ok(()),
                },
                _ => Ok(()),
            }
        }
    }
}
