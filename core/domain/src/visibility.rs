//! Who may see what: the read side's counterpart of `authorize.rs` (docs/domain.md, Records,
//! confidentiality and audit), and built from its checks. The queries of `closeloop serve`
//! (`ticket_history`, `ticket_state`, `report_*`) ask here; reading the ticket's history and
//! the directory is theirs.
//!
//! Tickets ([`may_see_ticket`]), decided from the ticket's whole history:
//! - `auditor`, `system`: every ticket.
//! - `agent`: tickets that are or were assigned (or escalated) to them, tickets assigned to
//!   an away agent they cover, and tickets of customers they are account manager of.
//! - `supervisor` (a registered team lead): tickets that are or were with their team.
//! - `service`: tickets it opened (it acts for those customers).
//! - `inspector` (registered): what they inspect: complaint tickets, which they rule on, of
//!   every team, and the tickets drawn in quality-inspection samples.
//!
//! Staff reports ([`report_scope`]):
//! - `auditor`, `system`: every row, filters as asked.
//! - `supervisor` (a registered team lead): the team filter is forced to their team; asking
//!   for another team is `forbidden` (at `/team`); a supervisor who is not a registered team
//!   lead is `forbidden`.
//! - `agent`: the agent filter is forced to themselves; asking for another agent is
//!   `forbidden` (at `/agent`).
//! - `service`: `forbidden` (staff figures are not a customer system's business).
//! - `inspector`: `forbidden` (they read what they inspect: tickets, not staff figures).
//!
//! The erasure report ([`may_read_erasures`]): `privacy_officer`, `auditor` and `system`;
//! every other role is `forbidden`. It names customers and the grounds of their erasure,
//! which is the data-protection office's business and the auditors', not the staff's.

use super::authorize::{covers, registered_inspector, registered_staff};
use super::directory::Directory;
use super::event::Event;
use super::rejection::{Rejection, RejectionCode};
use super::ticket_state::Ticket;
use super::types::*;

/// Whether `actor` may see a ticket. `ticket` is its state, `events` its events in version
/// order (all of them: a ticket once in someone's care stays visible to them), `opened_by`
/// the actor of its first event.
pub fn may_see_ticket(
    actor: &Actor,
    ticket: &Ticket,
    events: &[Event],
    opened_by: Option<&Actor>,
    directory: &Directory,
) -> bool {
    match actor.role {
        Role::Auditor | Role::System => true,
        // Erasure needs no reading: the privacy officer names a customer, not a ticket.
        Role::PrivacyOfficer => false,
        Role::Service => opened_by == Some(actor),
        Role::Inspector => {
            let sampled = || {
                directory
                    .samples
                    .values()
                    .any(|s| s.items.contains(&ticket.ticket_id))
            };
            registered_inspector(directory, actor).is_ok()
                && (ticket.category == Category::Complaint || sampled())
        }
        Role::Agent => {
            let me = actor.id.as_str();
            let assigned = events.iter().any(|e| match e {
                Event::TicketAssigned(a) => a.agent_id == me,
                Event::TicketEscalated(x) => x.to_agent_id.as_deref() == Some(me),
                _ => false,
            });
            let covering = ticket
                .assignee
                .as_deref()
                .is_some_and(|assignee| covers(directory, assignee, me));
            let manager = directory
                .customers
                .get(&ticket.customer_id)
                .is_some_and(|c| c.account_manager_id.as_deref() == Some(me));
            assigned || covering || manager
        }
        Role::Supervisor => {
            // For a supervisor, registered staff means a registered team lead.
            let Ok(me) = registered_staff(directory, actor) else {
                return false;
            };
            ticket.team.as_deref() == Some(me.team.as_str())
                || events.iter().any(|e| match e {
                    Event::TicketAssigned(a) => a.team == me.team,
                    Event::TicketEscalated(x) => x.to_team.as_deref() == Some(me.team.as_str()),
                    _ => false,
                })
        }
    }
}

/// The rows of a staff report an actor may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportScope {
    /// Every row; the filters as asked.
    All,
    /// Only this agent's rows: the agent filter is forced to it.
    Agent(String),
    /// Only this team's rows: the team filter is forced to it.
    Team(String),
}

/// What a staff report may show `actor`, given the `agent` and `team` filters asked for, or
/// why not. Only a supervisor's scope depends on the directory (the team they lead), so
/// `directory` may be `None` for every other role; a supervisor without one is refused as
/// not a registered team lead.
pub fn report_scope(
    actor: &Actor,
    agent: Option<&str>,
    team: Option<&str>,
    directory: Option<&Directory>,
) -> Result<ReportScope, Rejection> {
    let forbidden =
        |path: &str, message: String| Err(Rejection::at(RejectionCode::Forbidden, path, message));
    match actor.role {
        Role::Auditor | Role::System => Ok(ReportScope::All),
        Role::Service | Role::Inspector | Role::PrivacyOfficer => forbidden(
            "/actor",
            format!("{} `{}` may not read staff reports", actor.role, actor.id),
        ),
        Role::Agent => {
            if let Some(other) = agent.filter(|a| *a != actor.id) {
                return forbidden(
                    "/agent",
                    format!(
                        "agent `{}` may only read their own rows, not `{other}`'s",
                        actor.id
                    ),
                );
            }
            Ok(ReportScope::Agent(actor.id.clone()))
        }
        Role::Supervisor => {
            // For a supervisor, registered staff means a registered team lead.
            let Some(lead) = directory.and_then(|d| registered_staff(d, actor).ok()) else {
                return forbidden(
                    "/actor",
                    format!("supervisor `{}` is not a registered team lead", actor.id),
                );
            };
            if let Some(other) = team.filter(|t| *t != lead.team) {
                return forbidden(
                    "/team",
                    format!(
                        "supervisor `{}` may only read team `{}`, not `{other}`",
                        actor.id, lead.team
                    ),
                );
            }
            Ok(ReportScope::Team(lead.team.clone()))
        }
    }
}

/// Whether `actor` may read the erasure report (module doc), or why not.
pub fn may_read_erasures(actor: &Actor) -> Result<(), Rejection> {
    match actor.role {
        Role::PrivacyOfficer | Role::Auditor | Role::System => Ok(()),
        _ => Err(Rejection::at(
            RejectionCode::Forbidden,
            "/actor",
            format!(
                "{} `{}` may not read the erasure report (privacy officers and auditors do)",
                actor.role, actor.id
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::{Agent, Customer, TicketAssigned, TicketEscalated};

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.to_owned(),
            role,
        }
    }

    fn agent(id: &str, team: &str, lead: bool) -> Agent {
        Agent {
            agent_id: id.to_owned(),
            name: id.to_owned(),
            team: team.to_owned(),
            line: 1,
            level: Level::Senior,
            team_lead: lead,
            backup_agent_id: None,
            available: true,
            covered_by: None,
            absences: Vec::new(),
        }
    }

    /// Team `a`: lead-a and ann; team `b`: lead-b and bob. cust-1 is ann's customer.
    fn directory() -> Directory {
        let mut d = Directory::default();
        for a in [
            agent("lead-a", "a", true),
            agent("ann", "a", false),
            agent("lead-b", "b", true),
            agent("bob", "b", false),
        ] {
            d.agents.insert(a.agent_id.clone(), a);
        }
        d.customers.insert(
            "cust-1".into(),
            Customer {
                customer_id: "cust-1".into(),
                name: "Cust".into(),
                grade: Grade::Standard,
                account_manager_id: Some("ann".into()),
            },
        );
        d
    }

    /// A ticket of `customer` assigned to `assignee` of `team`, and its assignment.
    fn assigned(customer: &str, assignee: &str, team: &str) -> (Ticket, Vec<Event>) {
        let ticket = Ticket {
            ticket_id: Uuid::nil(),
            version: 2,
            customer_id: customer.to_owned(),
            grade: Grade::Standard,
            channel: Channel::Email,
            category: Category::Incident,
            priority: Priority::Normal,
            subject: "Router down".into(),
            status: TicketStatus::Assigned,
            line: 1,
            assignee: Some(assignee.to_owned()),
            previous_assignee: None,
            team: Some(team.to_owned()),
            sla: None,
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
        };
        let events = vec![Event::TicketAssigned(TicketAssigned {
            ticket_id: Uuid::nil(),
            agent_id: assignee.to_owned(),
            team: team.to_owned(),
            previous_agent_id: None,
        })];
        (ticket, events)
    }

    fn sees(who: &Actor, ticket: &(Ticket, Vec<Event>), d: &Directory) -> bool {
        let crm = actor("crm", Role::Service);
        may_see_ticket(who, &ticket.0, &ticket.1, Some(&crm), d)
    }

    #[test]
    fn an_agent_sees_their_own_tickets_not_others() {
        let d = directory();
        let bobs = assigned("cust-2", "bob", "b");
        assert!(sees(&actor("bob", Role::Agent), &bobs, &d));
        assert!(!sees(&actor("ann", Role::Agent), &bobs, &d));
    }

    #[test]
    fn an_agent_keeps_seeing_a_ticket_once_assigned_or_escalated_to_them() {
        let d = directory();
        let (mut ticket, mut events) = assigned("cust-2", "bob", "b");
        events.push(Event::TicketEscalated(TicketEscalated {
            ticket_id: Uuid::nil(),
            from_line: 1,
            to_line: 2,
            reason: "needs a specialist".into(),
            from_agent_id: Some("bob".into()),
            to_agent_id: Some("lead-b".into()),
            to_team: Some("b".into()),
        }));
        ticket.assignee = Some("lead-b".into());
        let escalated = (ticket, events);
        assert!(sees(&actor("bob", Role::Agent), &escalated, &d));
        assert!(sees(&actor("lead-b", Role::Agent), &escalated, &d));
    }

    #[test]
    fn an_agent_sees_tickets_of_an_away_agent_they_cover() {
        let mut d = directory();
        let bobs = assigned("cust-2", "bob", "b");
        assert!(!sees(&actor("ann", Role::Agent), &bobs, &d));
        let bob = d.agents.get_mut("bob").expect("bob");
        bob.available = false;
        bob.covered_by = Some("ann".into());
        assert!(sees(&actor("ann", Role::Agent), &bobs, &d));
    }

    #[test]
    fn an_agent_sees_tickets_of_customers_they_manage() {
        let d = directory();
        let bobs_for_anns_customer = assigned("cust-1", "bob", "b");
        assert!(sees(
            &actor("ann", Role::Agent),
            &bobs_for_anns_customer,
            &d
        ));
    }

    #[test]
    fn a_supervisor_sees_their_teams_tickets_not_another_teams() {
        let d = directory();
        let bobs = assigned("cust-2", "bob", "b");
        assert!(sees(&actor("lead-b", Role::Supervisor), &bobs, &d));
        assert!(!sees(&actor("lead-a", Role::Supervisor), &bobs, &d));
    }

    #[test]
    fn a_supervisor_who_is_no_team_lead_sees_nothing() {
        let d = directory();
        let bobs = assigned("cust-2", "bob", "b");
        assert!(!sees(&actor("bob", Role::Supervisor), &bobs, &d));
        assert!(!sees(&actor("nobody", Role::Supervisor), &bobs, &d));
    }

    #[test]
    fn auditors_and_the_system_see_everything() {
        let d = directory();
        let bobs = assigned("cust-2", "bob", "b");
        assert!(sees(&actor("audit-1", Role::Auditor), &bobs, &d));
        assert!(sees(&actor("sla", Role::System), &bobs, &d));
    }

    #[test]
    fn a_service_sees_the_tickets_it_opened() {
        let d = directory();
        let bobs = assigned("cust-2", "bob", "b");
        assert!(sees(&actor("crm", Role::Service), &bobs, &d));
        assert!(!sees(&actor("shop", Role::Service), &bobs, &d));
    }

    #[test]
    fn a_registered_inspector_sees_complaints_only() {
        let mut d = directory();
        d.inspectors.insert(
            "qa-1".into(),
            crate::Inspector {
                inspector_id: "qa-1".into(),
                name: "QA".into(),
            },
        );
        let (mut complaint, events) = assigned("cust-2", "bob", "b");
        complaint.category = Category::Complaint;
        let may = |who: &Actor, t: &Ticket| may_see_ticket(who, t, &events, None, &d);
        assert!(may(&actor("qa-1", Role::Inspector), &complaint));
        assert!(!may(&actor("qa-2", Role::Inspector), &complaint));
        let incident = assigned("cust-2", "bob", "b").0;
        assert!(!may(&actor("qa-1", Role::Inspector), &incident));
        // A ticket drawn in a sample is theirs to read too.
        d.samples.insert(
            uuid::Uuid::from_u128(1),
            crate::Sample {
                period: "2026-11".into(),
                agent_id: "bob".into(),
                team: "b".into(),
                items: vec![incident.ticket_id],
                inspected: Vec::new(),
                failed: Vec::new(),
                overdue: Vec::new(),
            },
        );
        assert!(may_see_ticket(
            &actor("qa-1", Role::Inspector),
            &incident,
            &events,
            None,
            &d
        ));
        assert_eq!(
            report_scope(&actor("qa-1", Role::Inspector), None, None, Some(&d))
                .unwrap_err()
                .code,
            RejectionCode::Forbidden
        );
    }

    #[test]
    fn report_scopes_follow_the_role() {
        let d = directory();
        let scope = |who: Actor, agent: Option<&str>, team: Option<&str>| {
            report_scope(&who, agent, team, Some(&d))
                .map_err(|r| (r.code, r.details[0].path.clone()))
        };
        use ReportScope::*;
        assert_eq!(
            scope(actor("audit-1", Role::Auditor), Some("bob"), None),
            Ok(All)
        );
        assert_eq!(
            scope(actor("ann", Role::Agent), None, Some("b")),
            Ok(Agent("ann".into()))
        );
        assert_eq!(
            scope(actor("ann", Role::Agent), Some("bob"), None),
            Err((RejectionCode::Forbidden, "/agent".into()))
        );
        assert_eq!(
            scope(actor("lead-a", Role::Supervisor), Some("bob"), None),
            Ok(Team("a".into()))
        );
        assert_eq!(
            scope(actor("lead-a", Role::Supervisor), None, Some("b")),
            Err((RejectionCode::Forbidden, "/team".into()))
        );
        assert_eq!(
            scope(actor("ann", Role::Supervisor), None, None),
            Err((RejectionCode::Forbidden, "/actor".into()))
        );
        assert!(report_scope(&actor("lead-a", Role::Supervisor), None, None, None).is_err());
        assert_eq!(
            scope(actor("crm", Role::Service), None, None),
            Err((RejectionCode::Forbidden, "/actor".into()))
        );
    }

    #[test]
    fn the_erasure_report_is_the_privacy_officers_and_the_auditors() {
        for role in [Role::PrivacyOfficer, Role::Auditor, Role::System] {
            assert_eq!(may_read_erasures(&actor("x", role)), Ok(()), "{role}");
        }
        for role in [
            Role::Agent,
            Role::Supervisor,
            Role::Service,
            Role::Inspector,
        ] {
            let refused = may_read_erasures(&actor("x", role)).unwrap_err();
            assert_eq!(refused.code, RejectionCode::Forbidden);
            assert_eq!(refused.details[0].path, "/actor");
        }
    }
}
