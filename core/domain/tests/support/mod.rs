//! Shared fixtures for the domain's test binaries: a fixed directory (two teams with leads,
//! agents on lines 1..=3, two of them away and covered, graded customers, two calendars and
//! five SLA policies), the actors that act on it, and terse builders for commands and events.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code)]

use closeloop_domain::*;
use jiff::Timestamp;
use uuid::Uuid;

/// The ticket every scenario and property acts on.
pub const TICKET: Uuid = Uuid::from_u128(0x0190_c7b8_0000_7000_8000_0000_0000_0001);

/// Registered agents: (id, team, line, team lead, registered backup).
pub const AGENTS: &[(&str, &str, u8, bool, Option<&str>)] = &[
    ("lead-a", "alpha", 1, true, Some("a1")),
    ("a1", "alpha", 1, false, Some("a2")),
    ("a2", "alpha", 1, false, Some("a1")),
    ("a3", "alpha", 2, false, Some("a4")),
    ("a4", "alpha", 2, false, Some("a3")),
    ("a5", "alpha", 3, false, None),
    ("lead-b", "beta", 2, true, Some("b2")),
    ("b1", "beta", 1, false, Some("b5")),
    ("b5", "beta", 1, false, Some("b1")),
    ("b2", "beta", 2, false, Some("lead-b")),
    ("b3", "beta", 3, false, Some("b2")),
    ("b4", "beta", 3, false, Some("b3")),
];

/// Away agents and who covers them: a2 by their registered backup (a1), b3 by an explicitly
/// named one (b4, not the registered b2).
pub const AWAY: &[(&str, &str)] = &[("a2", "a1"), ("b3", "b4")];

/// Registered customers and their grades; `c-walk-in` is never registered.
pub const CUSTOMERS: &[(&str, Grade)] = &[
    ("c-diamond", Grade::VipDiamond),
    ("c-gold", Grade::VipGold),
    ("c-group-a", Grade::GroupA),
    ("c-group-c", Grade::GroupC),
    ("c-standard", Grade::Standard),
];
pub const UNREGISTERED_CUSTOMER: &str = "c-walk-in";

pub fn system() -> Actor {
    Actor::system("sla-scheduler")
}

/// Who opened the fixtures' tickets: the CRM service.
#[allow(dead_code)]
pub static OPENER: std::sync::LazyLock<Actor> = std::sync::LazyLock::new(service);

pub fn service() -> Actor {
    actor("crm", Role::Service)
}

pub fn auditor() -> Actor {
    actor("audit-1", Role::Auditor)
}

pub fn agent(id: &str) -> Actor {
    actor(id, Role::Agent)
}

pub fn supervisor(id: &str) -> Actor {
    actor(id, Role::Supervisor)
}

pub fn inspector(id: &str) -> Actor {
    actor(id, Role::Inspector)
}

/// The registered inspector of the fixture.
pub const INSPECTOR: &str = "qa-1";

/// The fixture's complaint causes.
pub const CAUSES: &[&str] = &["rude_staff", "slow_service", "product_defect"];

pub fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.to_owned(),
        role,
    }
}

/// Every actor the property tests draw from: the system, a service, an auditor, every agent,
/// both team leads, a non-lead posing as supervisor, and unregistered ids.
pub fn all_actors() -> Vec<Actor> {
    let mut actors = vec![system(), service(), auditor()];
    actors.extend(AGENTS.iter().map(|(id, ..)| agent(id)));
    actors.push(supervisor("lead-a"));
    actors.push(supervisor("lead-b"));
    actors.push(supervisor("a1"));
    actors.push(agent("ghost"));
    actors.push(supervisor("ghost"));
    actors.push(inspector(INSPECTOR));
    actors.push(inspector("ghost"));
    actors
}

/// Applies directory events in order, numbering each stream's versions.
pub fn apply_all(dir: &mut Directory, events: &[Event]) {
    for event in events {
        let stream = directory_stream(event);
        let version = dir.versions.get(&stream).copied().unwrap_or(0) + 1;
        dir.apply(&stream, version, event);
    }
}

/// The stream a directory event belongs to.
pub fn directory_stream(event: &Event) -> String {
    match event {
        Event::AgentRegistered(e) => format!("agent-{}", e.agent_id),
        Event::AgentAvailabilityChanged(e) => format!("agent-{}", e.agent_id),
        Event::CustomerRegistered(e) => format!("customer-{}", e.customer_id),
        Event::CalendarDefined(e) => format!("calendar-{}", e.calendar_id),
        Event::SlaPolicyDefined(e) => format!("sla_policy-{}", e.policy_id),
        Event::RetentionPolicyDefined(e) => format!("retention_policy-{}", e.policy_id),
        Event::InspectorRegistered(e) => format!("inspector-{}", e.inspector_id),
        Event::ComplaintCausesDefined(_) => COMPLAINT_CAUSES_STREAM.to_owned(),
        Event::ScorecardDefined(_) => SCORECARDS_STREAM.to_owned(),
        Event::InspectionSampleDrawn(e) => format!("inspection-{}", e.sample_id),
        Event::InspectionRecorded(e) => format!("inspection-{}", e.sample_id),
        Event::ReinspectionOverdue(e) => format!("inspection-{}", e.sample_id),
        Event::AbsencePlanned(AbsencePlanned { agent_id, .. })
        | Event::AbsenceCancelled(AbsenceCancelled { agent_id, .. })
        | Event::AbsenceStarted(AbsenceStarted { agent_id, .. })
        | Event::AbsenceEnded(AbsenceEnded { agent_id, .. }) => format!("agent-{agent_id}"),
        Event::DeadlineKindDefined(e) => format!("deadline_kind-{}", e.kind),
        other => panic!("{} is not a directory event", other.event_type()),
    }
}

/// Decides directory commands as the system and applies what they produce, so the fixture is
/// built through the same decisions the engine makes.
pub fn directory_from_commands(commands: &[Command]) -> Directory {
    let mut dir = Directory::default();
    let rules = Rules::default();
    let actor = system();
    for command in commands {
        let ctx = Context {
            actor: &actor,
            directory: &dir,
            rules: &rules,
            opened_by: None,
            at: None,
            other: None,
        };
        let events = decide(&None, command, &ctx)
            .unwrap_or_else(|r| panic!("fixture command {command:?} rejected: {r:?}"));
        apply_all(&mut dir, &events);
    }
    dir
}

/// The fixed directory of the property tests and scenarios.
pub fn fixture_directory() -> Directory {
    let mut commands = vec![office_calendar(), always_calendar()];
    for (id, team, line, lead, backup) in AGENTS {
        commands.push(register_agent(id, team, *line, *lead, *backup));
    }
    for (id, covering) in AWAY {
        let backup = AGENTS
            .iter()
            .find(|(a, ..)| a == id)
            .and_then(|(.., backup)| *backup);
        let named = (backup != Some(*covering)).then_some(*covering);
        commands.push(Command::SetAgentAvailability(SetAgentAvailability {
            agent_id: id.to_string(),
            available: false,
            backup_agent_id: named.map(str::to_owned),
        }));
    }
    for (id, grade) in CUSTOMERS {
        commands.push(Command::RegisterCustomer(RegisterCustomer {
            customer_id: id.to_string(),
            name: format!("Customer {id}"),
            grade: *grade,
            account_manager_id: None,
        }));
    }
    commands.extend(fixture_policies());
    commands.push(Command::RegisterInspector(RegisterInspector {
        inspector_id: INSPECTOR.into(),
        name: "Quality inspector".into(),
    }));
    commands.extend(fixture_deadline_kinds());
    commands.push(Command::DefineComplaintCauses(DefineComplaintCauses {
        causes: CAUSES
            .iter()
            .map(|code| ComplaintCause {
                code: (*code).into(),
                label: code.replace('_', " "),
            })
            .collect(),
    }));
    directory_from_commands(&commands)
}

/// The fixture's kinds of step deadline: `repair`, three days on the 24x7 calendar, warned
/// four hours before, flagging the ticket for exchange when breached; `paperwork`, 24
/// business hours on the ticket's calendar, warned an hour before.
pub fn fixture_deadline_kinds() -> Vec<Command> {
    vec![
        Command::DefineDeadlineKind(DefineDeadlineKind {
            kind: "repair".into(),
            business_minutes: None,
            business_hours: Some(72),
            calendar_id: Some("always".into()),
            warn_before_minutes: 240,
            on_breach: Some(DeadlineConsequence::FlagExchange),
        }),
        Command::DefineDeadlineKind(DefineDeadlineKind {
            kind: "paperwork".into(),
            business_minutes: Some(1440),
            business_hours: None,
            calendar_id: None,
            warn_before_minutes: 60,
            on_breach: None,
        }),
    ]
}

/// p-base matches everything; the others are more specific.
pub fn fixture_policies() -> Vec<Command> {
    vec![
        policy("p-base", None, None, None, 240, 2880, "office"),
        policy(
            "p-vip",
            Some(Grade::VipDiamond),
            None,
            None,
            30,
            480,
            "always",
        ),
        policy(
            "p-urgent",
            None,
            Some(Priority::Urgent),
            None,
            15,
            240,
            "always",
        ),
        policy(
            "p-vip-urgent",
            Some(Grade::VipDiamond),
            Some(Priority::Urgent),
            None,
            10,
            120,
            "always",
        ),
        policy(
            "p-complaint",
            None,
            None,
            Some(Category::Complaint),
            60,
            1440,
            "office",
        ),
    ]
}

pub fn office_calendar() -> Command {
    Command::DefineCalendar(DefineCalendar {
        calendar_id: "office".into(),
        time_zone: "Europe/Berlin".into(),
        weekly_hours: WorkingHours::on(&Weekday::MON_TO_FRI, "09:00", "17:00"),
        holidays: vec![jiff::civil::date(2026, 12, 25)],
        working_days: vec![],
        hours_overrides: vec![],
    })
}

pub fn always_calendar() -> Command {
    Command::DefineCalendar(DefineCalendar {
        calendar_id: "always".into(),
        time_zone: "UTC".into(),
        weekly_hours: WorkingHours::on(Weekday::ALL, "00:00", "24:00"),
        holidays: Vec::new(),
        working_days: vec![],
        hours_overrides: vec![],
    })
}

pub fn register_agent(
    id: &str,
    team: &str,
    line: u8,
    team_lead: bool,
    backup: Option<&str>,
) -> Command {
    Command::RegisterAgent(RegisterAgent {
        agent_id: id.into(),
        name: format!("Agent {id}"),
        team: team.into(),
        line,
        level: Level::Intermediate,
        team_lead,
        backup_agent_id: backup.map(str::to_owned),
    })
}

pub fn policy(
    id: &str,
    grade: Option<Grade>,
    priority: Option<Priority>,
    category: Option<Category>,
    first_response_minutes: u32,
    resolution_minutes: u32,
    calendar_id: &str,
) -> Command {
    Command::DefineSlaPolicy(DefineSlaPolicy {
        policy_id: id.into(),
        matches: PolicyMatch {
            grade,
            priority,
            category,
        },
        first_response_minutes,
        resolution_minutes,
        next_response_minutes: None,
        calendar_id: calendar_id.into(),
        warn_at_percent: 80,
        confirmation_wait_days: None,
    })
}

/// The targets a fixture policy command promises, as copied into ticket events.
pub fn targets_of(policy: &Command) -> SlaTargets {
    let Command::DefineSlaPolicy(p) = policy else {
        panic!("not a policy: {policy:?}")
    };
    SlaTargets {
        policy_id: p.policy_id.clone(),
        calendar_id: p.calendar_id.clone(),
        first_response_minutes: p.first_response_minutes,
        resolution_minutes: p.resolution_minutes,
        next_response_minutes: p.next_response_minutes,
        warn_at_percent: p.warn_at_percent,
        confirmation_wait_days: None,
    }
}

pub fn fixture_targets(policy_id: &str) -> SlaTargets {
    let policy = fixture_policies()
        .into_iter()
        .find(|c| matches!(c, Command::DefineSlaPolicy(p) if p.policy_id == policy_id))
        .unwrap_or_else(|| panic!("no fixture policy {policy_id}"));
    targets_of(&policy)
}

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("a test timestamp")
}

// ---- ticket commands on TICKET ----

pub fn open(customer: &str, priority: Priority, category: Category) -> Command {
    Command::OpenTicket(OpenTicket {
        ticket_id: TICKET,
        customer_id: customer.into(),
        channel: Channel::Phone,
        category,
        priority,
        subject: "Router keeps rebooting".into(),
        description: None,
    })
}

pub fn assign(agent_id: &str) -> Command {
    Command::AssignTicket(AssignTicket {
        ticket_id: TICKET,
        agent_id: agent_id.into(),
    })
}

pub fn respond(message: &str) -> Command {
    Command::RespondToCustomer(RespondToCustomer {
        ticket_id: TICKET,
        message: message.into(),
    })
}

pub fn request_info(question: &str) -> Command {
    Command::RequestCustomerInfo(RequestCustomerInfo {
        ticket_id: TICKET,
        question: question.into(),
    })
}

pub fn customer_reply(message: &str) -> Command {
    Command::RecordCustomerReply(RecordCustomerReply {
        ticket_id: TICKET,
        message: message.into(),
    })
}

pub fn escalate(reason: &str, to_agent_id: Option<&str>) -> Command {
    Command::EscalateTicket(EscalateTicket {
        ticket_id: TICKET,
        reason: reason.into(),
        to_agent_id: to_agent_id.map(str::to_owned),
    })
}

pub fn change_priority(priority: Priority, reason: &str) -> Command {
    Command::ChangePriority(ChangePriority {
        ticket_id: TICKET,
        priority,
        reason: reason.into(),
    })
}

pub fn note(text: &str) -> Command {
    Command::AddNote(AddNote {
        ticket_id: TICKET,
        text: text.into(),
        visible_to_customer: false,
    })
}

pub fn resolve(resolution: &str) -> Command {
    Command::ResolveTicket(ResolveTicket {
        ticket_id: TICKET,
        resolution: resolution.into(),
        outcome: None,
    })
}

pub fn reopen(reason: &str) -> Command {
    Command::ReopenTicket(ReopenTicket {
        ticket_id: TICKET,
        reason: reason.into(),
    })
}

pub fn close() -> Command {
    Command::CloseTicket(CloseTicket { ticket_id: TICKET })
}

pub fn rate(score: u8, source: RatingSource, dimensions: Option<Dimensions>) -> Command {
    Command::RecordSatisfaction(RecordSatisfaction {
        ticket_id: TICKET,
        score,
        source,
        comment: None,
        dimensions,
    })
}

pub fn rule(justified: bool, cause: &str, charged: &[&str]) -> Command {
    Command::RuleComplaint(RuleComplaint {
        ticket_id: TICKET,
        justified,
        cause: cause.into(),
        charged: charged.iter().map(|a| (*a).to_owned()).collect(),
        note: "heard both sides".into(),
    })
}

pub fn confirm(comment: Option<&str>) -> Command {
    Command::ConfirmResolution(ConfirmResolution {
        ticket_id: TICKET,
        comment: comment.map(str::to_owned),
    })
}

pub fn reject(reason: &str) -> Command {
    Command::RejectResolution(RejectResolution {
        ticket_id: TICKET,
        reason: reason.to_owned(),
    })
}

pub fn close_unconfirmed(resolution: u32) -> Command {
    Command::CloseUnconfirmed(CloseUnconfirmed {
        ticket_id: TICKET,
        resolution,
        answer_due_at: at("2026-11-10T17:00:00Z"),
    })
}

pub fn raise_warning(target: SlaTarget, due_at: Timestamp) -> Command {
    Command::RaiseSlaWarning(RaiseSlaWarning {
        ticket_id: TICKET,
        target,
        due_at,
        warn_at: None,
    })
}

pub fn record_breach(target: SlaTarget, due_at: Timestamp) -> Command {
    Command::RecordSlaBreach(RecordSlaBreach {
        ticket_id: TICKET,
        target,
        due_at,
    })
}

// ---- ticket events on TICKET ----

pub fn opened(
    customer: &str,
    grade: Grade,
    priority: Priority,
    category: Category,
    sla: Option<SlaTargets>,
) -> Event {
    Event::TicketOpened(TicketOpened {
        ticket_id: TICKET,
        customer_id: customer.into(),
        grade,
        channel: Channel::Phone,
        category,
        priority,
        subject: "Router keeps rebooting".into(),
        description: None,
        sla,
    })
}

/// A complaint of c-standard, normal priority, under p-base.
pub fn opened_complaint() -> Event {
    opened(
        "c-standard",
        Grade::Standard,
        Priority::Normal,
        Category::Complaint,
        Some(fixture_targets("p-base")),
    )
}

/// A standard ticket of c-standard, normal priority, an incident under p-base.
pub fn opened_standard() -> Event {
    opened(
        "c-standard",
        Grade::Standard,
        Priority::Normal,
        Category::Incident,
        Some(fixture_targets("p-base")),
    )
}

pub fn assigned(agent_id: &str, team: &str, previous: Option<&str>) -> Event {
    Event::TicketAssigned(TicketAssigned {
        ticket_id: TICKET,
        agent_id: agent_id.into(),
        team: team.into(),
        previous_agent_id: previous.map(str::to_owned),
    })
}

pub fn responded(message: &str) -> Event {
    Event::CustomerRespondedTo(CustomerRespondedTo {
        ticket_id: TICKET,
        message: message.into(),
    })
}

pub fn info_requested(question: &str) -> Event {
    Event::CustomerInfoRequested(CustomerInfoRequested {
        ticket_id: TICKET,
        question: question.into(),
    })
}

pub fn replied(message: &str) -> Event {
    Event::CustomerReplied(CustomerReplied {
        ticket_id: TICKET,
        message: message.into(),
    })
}

pub fn escalated(
    from_line: u8,
    reason: &str,
    from_agent: Option<&str>,
    to: Option<(&str, &str)>,
) -> Event {
    Event::TicketEscalated(TicketEscalated {
        ticket_id: TICKET,
        from_line,
        to_line: from_line + 1,
        reason: reason.into(),
        from_agent_id: from_agent.map(str::to_owned),
        to_agent_id: to.map(|(agent, _)| agent.to_owned()),
        to_team: to.map(|(_, team)| team.to_owned()),
    })
}

pub fn priority_changed(
    from: Priority,
    to: Priority,
    reason: &str,
    sla: Option<SlaTargets>,
) -> Event {
    Event::PriorityChanged(PriorityChanged {
        ticket_id: TICKET,
        from,
        to,
        reason: reason.into(),
        sla,
    })
}

pub fn resolved(resolution: &str, agent_id: &str) -> Event {
    Event::TicketResolved(TicketResolved {
        ticket_id: TICKET,
        resolution: resolution.into(),
        agent_id: agent_id.into(),
        outcome: None,
    })
}

pub fn reopened(reason: &str) -> Event {
    Event::TicketReopened(TicketReopened {
        ticket_id: TICKET,
        reason: reason.into(),
    })
}

pub fn closed() -> Event {
    Event::TicketClosed(TicketClosed {
        ticket_id: TICKET,
        reason: CloseReason::Staff,
        answer_due_at: None,
    })
}

pub fn rated(
    score: u8,
    source: RatingSource,
    dimensions: Option<Dimensions>,
    agent_id: Option<&str>,
    resolution: u32,
) -> Event {
    Event::SatisfactionRecorded(SatisfactionRecorded {
        ticket_id: TICKET,
        score,
        source,
        comment: None,
        dimensions,
        agent_id: agent_id.map(str::to_owned),
        resolution,
    })
}

/// Folds events from an empty stream.
pub fn fold(events: &[Event]) -> TicketState {
    events.iter().fold(None, evolve)
}
