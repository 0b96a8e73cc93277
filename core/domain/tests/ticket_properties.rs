//! Property tests of `decide` and `evolve` over random command sequences against the fixed
//! directory of `support`, each command issued by a random actor (system, service, auditor,
//! agents, supervisors, unregistered ids).
//!
//! To get deep into the loop, some agent ids and actors are placeholders (`@fit<n>`,
//! `@assignee`, `@lead`) resolved against the ticket as it is when the step runs; the rest
//! are drawn blindly, so both acceptances and rejections are common.
//! `the_generator_explores_the_whole_loop` checks that the generator reaches every ticket
//! event and every allowed status change, so the properties are not vacuous.

mod support;

use std::collections::HashSet;

use closeloop_domain::*;
use proptest::prelude::*;
use proptest::sample::select;
use support::*;

// ---------- strategies ----------

fn agent_ids() -> Vec<String> {
    let mut ids: Vec<String> = AGENTS.iter().map(|(id, ..)| id.to_string()).collect();
    ids.push("ghost".into());
    ids
}

fn customer_ids() -> Vec<String> {
    let mut ids: Vec<String> = CUSTOMERS.iter().map(|(id, _)| id.to_string()).collect();
    ids.push(UNREGISTERED_CUSTOMER.into());
    ids
}

fn text() -> impl Strategy<Value = String> {
    select(vec!["ok", "please check", "x", "Firmware 4.2 — überprüft"]).prop_map(str::to_owned)
}

fn dimensions() -> impl Strategy<Value = Dimensions> {
    (1u8..=5, 1u8..=5, 1u8..=5, 1u8..=5).prop_map(|(recognition, efficiency, quality, overall)| {
        Dimensions {
            recognition,
            efficiency,
            quality,
            overall,
        }
    })
}

fn sla_target() -> impl Strategy<Value = SlaTarget> {
    select(vec![
        SlaTarget::FirstResponse,
        SlaTarget::NextResponse,
        SlaTarget::Resolution,
    ])
}

fn timestamp() -> impl Strategy<Value = jiff::Timestamp> {
    (1_700_000_000i64..1_900_000_000).prop_map(|s| jiff::Timestamp::from_second(s).unwrap())
}

/// A ticket command on `TICKET`, with parameters drawn from small pools so that sequences hit
/// both the accepted and the rejected branches.
fn ticket_command() -> impl Strategy<Value = Command> {
    // Half the time a placeholder, resolved when the step runs to an available agent of the
    // line the command needs (see `resolve_step`).
    let agents = prop_oneof![
        select(agent_ids()),
        (0u8..4).prop_map(|i| format!("{FIT}{i}")),
    ];
    prop_oneof![
        1 => (select(customer_ids()), select(Priority::ALL), select(Category::ALL), select(Channel::ALL))
            .prop_map(|(customer, priority, category, channel)| {
                let mut c = open(&customer, priority, category);
                if let Command::OpenTicket(o) = &mut c {
                    o.channel = channel;
                }
                c
            }),
        6 => agents.clone().prop_map(|a| assign(&a)),
        4 => text().prop_map(|m| respond(&m)),
        3 => text().prop_map(|q| request_info(&q)),
        3 => text().prop_map(|m| customer_reply(&m)),
        2 => (text(), proptest::option::of(agents)).prop_map(|(r, a)| escalate(&r, a.as_deref())),
        2 => (select(Priority::ALL), text()).prop_map(|(p, r)| change_priority(p, &r)),
        1 => (text(), any::<bool>()).prop_map(|(t, visible)| Command::AddNote(AddNote {
            ticket_id: TICKET,
            text: t,
            visible_to_customer: visible,
        })),
        5 => text().prop_map(|r| resolve(&r)),
        2 => text().prop_map(|r| reopen(&r)),
        4 => Just(close()),
        5 => (1u8..=5, select(RatingSource::ALL), proptest::option::of(dimensions()))
            .prop_map(|(score, source, dims)| {
                rate(score, source, dims.filter(|_| source == RatingSource::Callback))
            }),
        1 => (sla_target(), timestamp()).prop_map(|(t, d)| raise_warning(t, d)),
        1 => (sla_target(), timestamp()).prop_map(|(t, d)| record_breach(t, d)),
        3 => proptest::option::of(text()).prop_map(|c| confirm(c.as_deref())),
        2 => text().prop_map(|r| reject(&r)),
        2 => (1u32..=3).prop_map(close_unconfirmed),
        3 => (
            any::<bool>(),
            select(vec!["rude_staff", "slow_service", "product_defect", "weather"]),
            proptest::collection::vec(select(agent_ids()), 0..3),
        )
            .prop_map(|(justified, cause, charged)| {
                let mut charged: Vec<&str> = charged.iter().map(String::as_str).collect();
                charged.dedup();
                if !justified {
                    charged.clear();
                }
                rule(justified, cause, &charged)
            }),
        2 => (select(FollowUpKind::ALL), timestamp(), select(agent_ids())).prop_map(
            |(kind, due_by, owner)| {
                Command::ScheduleFollowUp(ScheduleFollowUp {
                    ticket_id: TICKET,
                    kind,
                    due_by,
                    owner,
                })
            }
        ),
        2 => (1u32..=3, select(FollowUpOutcome::ALL), proptest::option::of(timestamp()), proptest::option::of(any::<bool>()))
            .prop_map(|(follow_up, outcome, visited_at, signed)| {
                Command::RecordFollowUp(RecordFollowUp {
                    ticket_id: TICKET,
                    follow_up,
                    outcome,
                    summary: "called".into(),
                    visited_at,
                    signed,
                })
            }),
        1 => (1u32..=3, timestamp()).prop_map(|(follow_up, due_by)| {
            Command::RaiseFollowUpWarning(RaiseFollowUpWarning {
                ticket_id: TICKET,
                follow_up,
                due_by,
            })
        }),
        1 => (1u32..=3, timestamp()).prop_map(|(follow_up, due_by)| {
            Command::RecordFollowUpOverdue(RecordFollowUpOverdue {
                ticket_id: TICKET,
                follow_up,
                due_by,
            })
        }),
        2 => (
            select(vec!["repair", "paperwork", "repair", "warranty"]),
            proptest::option::of(1u32..=5_000),
            proptest::option::of(timestamp()),
            prop_oneof![select(agent_ids()), Just(SELF.to_owned())],
        )
            .prop_map(|(kind, business_minutes, due_at, owner)| {
                Command::SetDeadline(SetDeadline {
                    ticket_id: TICKET,
                    kind: kind.into(),
                    // At most one of the two, as parsing requires.
                    business_minutes: business_minutes.filter(|_| due_at.is_none()),
                    due_at,
                    owner,
                })
            }),
        1 => (1u32..=2).prop_map(|deadline| {
            Command::CompleteDeadline(CompleteDeadline {
                ticket_id: TICKET,
                deadline,
            })
        }),
        1 => (1u32..=2, timestamp()).prop_map(|(deadline, due_at)| {
            Command::RaiseDeadlineWarning(RaiseDeadlineWarning {
                ticket_id: TICKET,
                deadline,
                due_at,
            })
        }),
        1 => (1u32..=2, timestamp()).prop_map(|(deadline, due_at)| {
            Command::RecordDeadlineBreach(RecordDeadlineBreach {
                ticket_id: TICKET,
                deadline,
                due_at,
            })
        }),
        1 => (prop_oneof![3 => Just(OTHER), 1 => Just(TICKET), 1 => Just(MISSING)], select(LinkRelation::ALL))
            .prop_map(|(other_ticket_id, relation)| {
                Command::LinkTickets(LinkTickets {
                    ticket_id: TICKET,
                    other_ticket_id,
                    relation,
                })
            }),
        1 => prop_oneof![3 => Just(OTHER), 1 => Just(TICKET), 1 => Just(MISSING)]
            .prop_map(|into_ticket_id| {
                Command::MergeTicket(MergeTicket {
                    ticket_id: TICKET,
                    into_ticket_id,
                    reason: "duplicate".into(),
                })
            }),
    ]
}

/// The second ticket of links and merges: open, and in the context of every decision.
const OTHER: uuid::Uuid = uuid::Uuid::from_u128(0x0190_c7b8_0000_7000_8000_0000_0000_0002);
/// A ticket that does not exist.
const MISSING: uuid::Uuid = uuid::Uuid::from_u128(0x0190_c7b8_0000_7000_8000_0000_0000_0003);

static OTHER_TICKET: std::sync::LazyLock<Ticket> = std::sync::LazyLock::new(|| {
    let Event::TicketOpened(mut e) = opened_standard() else {
        unreachable!("opened_standard opens a ticket")
    };
    e.ticket_id = OTHER;
    evolve(None, &Event::TicketOpened(e)).expect("an opened ticket")
});

/// Placeholder agent id: an available agent of the line the command needs.
const FIT: &str = "@fit";
/// Placeholder owner of a step deadline: the actor setting it (the assignee for `system`).
const SELF: &str = "@self";
/// Placeholder actor id: the ticket's assignee (their backup while they are away), as agent.
const ASSIGNEE: &str = "@assignee";
/// Placeholder actor id: the lead of the ticket's team, as supervisor.
const LEAD: &str = "@lead";

/// Actors, weighted toward those who can act, so sequences get deep into the loop.
fn any_actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        3 => Just(system()),
        2 => Just(service()),
        1 => Just(auditor()),
        5 => Just(agent(ASSIGNEE)),
        2 => Just(supervisor(LEAD)),
        1 => Just(inspector(INSPECTOR)),
        4 => select(all_actors()),
    ]
}

/// An available agent of `line`, the `i`-th by id (cyclically).
fn fit(dir: &Directory, line: u8, i: usize) -> Option<String> {
    let mut ids: Vec<&String> = dir
        .agents
        .values()
        .filter(|a| a.line == line && a.available)
        .map(|a| &a.agent_id)
        .collect();
    ids.sort();
    (!ids.is_empty()).then(|| ids[i % ids.len()].clone())
}

/// Replaces the placeholders of a step by real ids, given the ticket as it is now.
fn resolve_step(
    state: &TicketState,
    dir: &Directory,
    command: &Command,
    actor: &Actor,
) -> (Command, Actor) {
    let line = state.as_ref().map_or(LINE_MIN, |t| t.line);
    let placeholder = |id: &str, line: u8| -> Option<String> {
        let i = id.strip_prefix(FIT)?.parse().ok()?;
        Some(fit(dir, line, i).unwrap_or_else(|| id.to_owned()))
    };
    let mut command = command.clone();
    match &mut command {
        Command::AssignTicket(c) => {
            if let Some(id) = placeholder(&c.agent_id, line) {
                c.agent_id = id;
            }
        }
        // The scheduler names the due time it read: the follow-up's own.
        Command::RaiseFollowUpWarning(RaiseFollowUpWarning {
            follow_up, due_by, ..
        })
        | Command::RecordFollowUpOverdue(RecordFollowUpOverdue {
            follow_up, due_by, ..
        }) => {
            if let Some(f) = state.as_ref().and_then(|t| t.follow_up(*follow_up)) {
                *due_by = f.due_by;
            }
        }
        // Likewise a step deadline's, when absolute (one on a calendar is the read side's).
        Command::RaiseDeadlineWarning(RaiseDeadlineWarning {
            deadline, due_at, ..
        })
        | Command::RecordDeadlineBreach(RecordDeadlineBreach {
            deadline, due_at, ..
        }) => {
            if let Some(due) = state
                .as_ref()
                .and_then(|t| t.deadline(*deadline))
                .and_then(|d| d.due_at)
            {
                *due_at = due;
            }
        }
        Command::EscalateTicket(c) => {
            if let Some(id) = c
                .to_agent_id
                .as_deref()
                .and_then(|id| placeholder(id, line + 1))
            {
                c.to_agent_id = Some(id);
            }
        }
        _ => {}
    }
    let actor = match actor.id.as_str() {
        ASSIGNEE => match state.as_ref().and_then(|t| t.assignee.as_deref()) {
            Some(a) => {
                let a = &dir.agents[a];
                match (&a.covered_by, a.available) {
                    (Some(backup), false) => agent(backup),
                    _ => agent(&a.agent_id),
                }
            }
            None => fit(dir, line, 0).map_or_else(system, |a| agent(&a)),
        },
        LEAD => {
            let team = state
                .as_ref()
                .and_then(|t| t.team.clone())
                .unwrap_or_else(|| "alpha".into());
            let lead = dir.team_lead(&team).expect("every fixture team has a lead");
            supervisor(&lead.agent_id)
        }
        _ => actor.clone(),
    };
    if let Command::SetDeadline(c) = &mut command {
        if c.owner == SELF {
            c.owner = match actor.role {
                Role::System => state
                    .as_ref()
                    .and_then(|t| t.assignee.clone())
                    .unwrap_or_else(|| "a1".into()),
                _ => actor.id.clone(),
            };
        }
    }
    (command, actor)
}

/// A sequence that usually starts with `open_ticket` by someone allowed to open.
fn scenario() -> impl Strategy<Value = Vec<(Command, Actor)>> {
    let first = prop_oneof![
        4 => (select(customer_ids()), select(Priority::ALL), select(Category::ALL))
            .prop_map(|(c, p, k)| Some((open(&c, p, k), system()))),
        1 => Just(None),
    ];
    (
        first,
        proptest::collection::vec((ticket_command(), any_actor()), 0..30),
    )
        .prop_map(|(first, rest)| first.into_iter().chain(rest).collect())
}

// ---------- the allowed status graph (docs/contract.md, Ticket states; ticket.rs) ----------

use TicketStatus::*;

/// Every status change `decide` may cause, besides staying put. Written out here, not derived
/// from the code: `unassigned -> assigned -> in_progress <-> pending_customer -> resolved ->
/// closed`, reopen from resolved, escalation from any open state (to unassigned without a
/// named agent, to assigned with one), reassignment.
const ALLOWED: &[(TicketStatus, TicketStatus)] = &[
    (Unassigned, Assigned),        // assign; escalate to a named agent
    (Assigned, InProgress),        // respond
    (Assigned, PendingCustomer),   // request info
    (InProgress, PendingCustomer), // request info
    (PendingCustomer, InProgress), // customer reply
    (InProgress, Assigned),        // reassign; escalate to a named agent
    (PendingCustomer, Assigned),   // escalate to a named agent
    (Assigned, Unassigned),        // escalate without an agent
    (InProgress, Unassigned),      // escalate without an agent
    (PendingCustomer, Unassigned), // escalate without an agent
    (Assigned, Resolved),          // resolve
    (InProgress, Resolved),        // resolve
    (PendingCustomer, Resolved),   // resolve
    (Resolved, Closed),            // close
    (Resolved, Assigned),          // reopen (a resolved ticket always has its resolver)
];

fn ctx<'a>(actor: &'a Actor, directory: &'a Directory, rules: &'a Rules) -> Context<'a> {
    Context {
        actor,
        directory,
        rules,
        opened_by: Some(&OPENER),
        at: None,
        other: Some(&OTHER_TICKET),
    }
}

/// Invariants of any state `decide` can lead to.
fn check_state(t: &Ticket) -> Result<(), TestCaseError> {
    prop_assert!((LINE_MIN..=LINE_MAX).contains(&t.line), "line {}", t.line);
    prop_assert_eq!(u32::from(t.line - LINE_MIN), t.escalations);
    prop_assert_eq!(
        t.status == Unassigned,
        t.assignee.is_none(),
        "status {} with assignee {:?}",
        t.status,
        t.assignee
    );
    prop_assert_eq!(t.assignee.is_some(), t.team.is_some());
    prop_assert!(t.reopens <= t.resolutions);
    prop_assert!(t.resolutions - t.reopens <= 1);
    prop_assert_eq!(t.status.is_open(), t.resolutions == t.reopens);
    prop_assert!(
        t.rulings == 0 || t.category == Category::Complaint,
        "a {} was ruled on",
        t.category
    );
    let distinct: HashSet<_> = t.rated.iter().collect();
    prop_assert_eq!(distinct.len(), t.rated.len(), "rated twice: {:?}", t.rated);
    // Flagged for exchange exactly when a deadline whose consequence says so was breached.
    prop_assert_eq!(
        t.exchange_flagged,
        t.deadlines
            .iter()
            .any(|d| d.breached && d.on_breach == Some(DeadlineConsequence::FlagExchange))
    );
    Ok(())
}

/// Who may have caused `events` by `command` on `before` (authorize.rs; docs/contract.md, Roles).
fn check_authority(
    dir: &Directory,
    actor: &Actor,
    command: &Command,
    before: &TicketState,
) -> Result<(), TestCaseError> {
    let staff = dir.agents.get(&actor.id);
    if matches!(
        command,
        Command::RaiseSlaWarning(_)
            | Command::RecordSlaBreach(_)
            | Command::CloseUnconfirmed(_)
            | Command::RaiseFollowUpWarning(_)
            | Command::RecordFollowUpOverdue(_)
            | Command::RaiseDeadlineWarning(_)
            | Command::RecordDeadlineBreach(_)
    ) {
        prop_assert_eq!(actor.role, Role::System, "the scheduler's commands");
    }
    // The customer's answer is a service's; a ruling a supervisor's or an inspector's.
    if matches!(
        command,
        Command::ConfirmResolution(_) | Command::RejectResolution(_)
    ) {
        prop_assert!(matches!(actor.role, Role::Service | Role::System));
    }
    if matches!(command, Command::RuleComplaint(_)) {
        prop_assert!(matches!(
            actor.role,
            Role::Supervisor | Role::Inspector | Role::System
        ));
    }
    match actor.role {
        Role::System => {}
        Role::Auditor => prop_assert!(false, "an auditor got an event"),
        Role::PrivacyOfficer => prop_assert!(false, "a privacy officer acted on a ticket"),
        Role::Inspector => {
            prop_assert!(dir.inspectors.contains_key(&actor.id));
            prop_assert!(
                matches!(command, Command::RuleComplaint(_)),
                "an inspector did {}",
                command.command_type()
            );
        }
        Role::Service => prop_assert!(
            matches!(
                command,
                Command::OpenTicket(_)
                    | Command::RecordCustomerReply(_)
                    | Command::ConfirmResolution(_)
                    | Command::RejectResolution(_)
            ) || matches!(command, Command::RecordSatisfaction(c) if c.source == RatingSource::Survey),
            "a service did {}",
            command.command_type()
        ),
        Role::Agent => {
            let Some(me) = staff else {
                return Err(TestCaseError::fail(format!(
                    "unregistered agent {} got an event",
                    actor.id
                )));
            };
            prop_assert!(!matches!(command, Command::RecordSatisfaction(_)));
            // A follow-up's owner (or their cover) records it whoever holds the ticket.
            let owns_follow_up = match (command, before) {
                (Command::RecordFollowUp(c), Some(t)) => {
                    t.follow_up(c.follow_up).is_some_and(|f| {
                        f.owner == me.agent_id
                            || dir.agents.get(&f.owner).is_some_and(|o| {
                                !o.available && o.covered_by.as_deref() == Some(&me.agent_id)
                            })
                    })
                }
                // So does a step deadline's owner (or their cover) complete it.
                (Command::CompleteDeadline(c), Some(t)) => {
                    t.deadline(c.deadline).is_some_and(|d| {
                        d.owner == me.agent_id
                            || dir.agents.get(&d.owner).is_some_and(|o| {
                                !o.available && o.covered_by.as_deref() == Some(&me.agent_id)
                            })
                    })
                }
                _ => false,
            };
            if let Command::SetDeadline(c) = command {
                prop_assert_eq!(&c.owner, &me.agent_id, "an agent sets only their own");
            }
            if let Some(t) = before.as_ref().filter(|_| !owns_follow_up) {
                match t.assignee.as_deref() {
                    Some(a) if a == me.agent_id => {}
                    Some(a) => {
                        let other = &dir.agents[a];
                        prop_assert!(
                            !other.available && other.covered_by.as_deref() == Some(&me.agent_id),
                            "{} acted on {}'s ticket without covering",
                            me.agent_id,
                            a
                        );
                    }
                    None => prop_assert_eq!(t.line, me.line),
                }
                if let Command::AssignTicket(c) = command {
                    prop_assert_eq!(&c.agent_id, &me.agent_id);
                }
            }
        }
        Role::Supervisor => {
            let Some(me) = staff else {
                return Err(TestCaseError::fail(format!(
                    "unregistered supervisor {} got an event",
                    actor.id
                )));
            };
            prop_assert!(me.team_lead, "{} is no team lead", me.agent_id);
            if let Some(t) = before {
                if let Some(team) = &t.team {
                    prop_assert_eq!(team, &me.team);
                }
            }
            if let Command::AssignTicket(c) = command {
                prop_assert_eq!(&dir.agents[&c.agent_id].team, &me.team);
            }
            if let Command::RecordSatisfaction(c) = command {
                prop_assert_eq!(c.source, RatingSource::Callback);
            }
        }
    }
    Ok(())
}

/// What a run reached, to check that the generator explores the whole loop.
#[derive(Default)]
struct Coverage {
    events: HashSet<&'static str>,
    transitions: HashSet<(TicketStatus, TicketStatus)>,
    rejections: HashSet<RejectionCode>,
}

/// The main property: decide and evolve over one random sequence.
fn run(dir: &Directory, rules: &Rules, steps: &[(Command, Actor)]) -> Result<(), TestCaseError> {
    run_covering(dir, rules, steps, &mut Coverage::default())
}

fn run_covering(
    dir: &Directory,
    rules: &Rules,
    steps: &[(Command, Actor)],
    coverage: &mut Coverage,
) -> Result<(), TestCaseError> {
    let mut state: TicketState = None;
    let mut accepted: Vec<Event> = Vec::new();
    let mut ratings: HashSet<(u32, RatingSource)> = HashSet::new();
    for (command, actor) in steps {
        let (command, actor) = resolve_step(&state, dir, command, actor);
        let (command, actor) = (&command, &actor);
        let before = state.clone();
        let outcome = decide(&state, command, &ctx(actor, dir, rules));
        // Decisions are pure: the same input decides the same way.
        prop_assert_eq!(&outcome, &decide(&state, command, &ctx(actor, dir, rules)));
        let events = match outcome {
            Err(rejection) => {
                coverage.rejections.insert(rejection.code);
                prop_assert_eq!(&state, &before);
                prop_assert!(!rejection.message.is_empty());
                for d in &rejection.details {
                    prop_assert!(d.path.starts_with("/payload/"), "path {}", d.path);
                }
                // Authorization comes before the state checks of an existing ticket.
                if actor.role == Role::Auditor
                    && state.is_some()
                    && !matches!(command, Command::OpenTicket(_))
                {
                    prop_assert_eq!(rejection.code, RejectionCode::Forbidden);
                }
                continue;
            }
            Ok(events) => events,
        };
        prop_assert!(!events.is_empty(), "accepted without events");
        check_authority(dir, actor, command, &before)?;
        if let Some(t) = &before {
            prop_assert!(
                t.merged_into.is_none(),
                "a merged ticket took {}",
                command.command_type()
            );
        }
        if let Some(t) = &before {
            if t.status == Closed {
                prop_assert!(
                    matches!(
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
                    ),
                    "closed ticket took {}",
                    command.command_type()
                );
            }
        }
        for event in &events {
            prop_assert_eq!(Event::ticket_id(event), Some(TICKET));
            prop_assert_eq!(
                &Event::from_data(event.event_type(), event.data()).map_err(TestCaseError::fail)?,
                event
            );
            let prior = state.clone();
            state = evolve(state, event);
            coverage.events.insert(event.event_type());
            let Some(after) = &state else {
                return Err(TestCaseError::fail("an accepted event left no ticket"));
            };
            match &prior {
                None => {
                    prop_assert!(matches!(event, Event::TicketOpened(_)));
                    prop_assert_eq!(after.status, Unassigned);
                    prop_assert_eq!(after.line, LINE_MIN);
                    prop_assert_eq!(after.version, 1);
                }
                Some(p) => {
                    coverage.transitions.insert((p.status, after.status));
                    prop_assert!(!matches!(event, Event::TicketOpened(_)));
                    prop_assert_eq!(after.version, p.version + 1);
                    prop_assert!(
                        p.status == after.status || ALLOWED.contains(&(p.status, after.status)),
                        "{} -> {} by {}",
                        p.status,
                        after.status,
                        event.event_type()
                    );
                    prop_assert!(after.line >= p.line, "line went down");
                    prop_assert!(after.line <= p.line + 1, "line skipped");
                    if matches!(event, Event::TicketReopened(_)) {
                        prop_assert_eq!(p.status, Resolved);
                    }
                    if p.status == Closed {
                        prop_assert!(matches!(
                            event,
                            Event::SatisfactionRecorded(_)
                                | Event::ComplaintRuled(_)
                                | Event::FollowUpScheduled(_)
                                | Event::FollowUpRecorded(_)
                                | Event::FollowUpWarningRaised(_)
                                | Event::FollowUpOverdue(_)
                                | Event::DeadlineSet(_)
                                | Event::DeadlineMet(_)
                                | Event::DeadlineWarningRaised(_)
                                | Event::DeadlineBreached(_)
                                | Event::TicketLinked(_)
                                | Event::TicketMergedInto(_)
                        ));
                    }
                }
            }
            if let Event::SatisfactionRecorded(e) = event {
                prop_assert!(
                    ratings.insert((e.resolution, e.source)),
                    "second {} rating for resolution {}",
                    e.source,
                    e.resolution
                );
                prop_assert_eq!(e.resolution, after.resolutions);
            }
            if let Event::FollowUpRecorded(e) = event {
                let f = after
                    .follow_up(e.follow_up)
                    .expect("recorded follow-up exists");
                prop_assert!(f.recorded);
                prop_assert_eq!(e.visited_at.is_some(), f.kind == FollowUpKind::Visit);
                prop_assert_eq!(e.signed.is_some(), f.kind == FollowUpKind::Visit);
            }
            if let Event::FollowUpScheduled(e) = event {
                prop_assert_eq!(e.follow_up as usize, after.follow_ups.len());
                prop_assert!(dir.agents.contains_key(&e.owner));
            }
            if let Event::DeadlineSet(e) = event {
                // Numbered in order, of a defined kind, owned by a registered agent, due
                // either at a time or after business minutes, never both.
                prop_assert_eq!(e.deadline as usize, after.deadlines.len());
                prop_assert!(dir.agents.contains_key(&e.owner));
                let kind = &dir.deadline_kinds[&e.kind];
                prop_assert_eq!(e.on_breach, kind.on_breach);
                prop_assert_eq!(e.business_minutes.is_some(), e.due_at.is_none());
            }
            if let Event::DeadlineMet(e) = event {
                let d = after.deadline(e.deadline).expect("met deadline exists");
                prop_assert!(d.met);
                prop_assert_eq!(e.late, d.breached);
            }
            if let Event::DeadlineBreached(e) = event {
                let d = after
                    .deadline(e.deadline)
                    .expect("breached deadline exists");
                prop_assert!(d.breached && !d.met);
                prop_assert_eq!(e.consequence, d.on_breach);
                if let Some(due) = d.due_at {
                    prop_assert_eq!(due, e.due_at);
                }
            }
            if let Event::ComplaintRuled(e) = event {
                prop_assert_eq!(e.ruling, after.rulings);
                prop_assert!(dir.complaint_causes.contains_key(&e.cause));
                prop_assert!(e.justified || e.charged.is_empty());
            }
            if let Event::TicketLinked(e) = event {
                // Another existing ticket, linked once per relation.
                prop_assert_eq!(e.other_ticket_id, OTHER);
                let link = TicketLink {
                    other_ticket_id: e.other_ticket_id,
                    relation: e.relation,
                };
                prop_assert_eq!(after.links.iter().filter(|l| **l == link).count(), 1);
            }
            if let Event::TicketMergedInto(e) = event {
                prop_assert_eq!(e.into_ticket_id, OTHER);
                prop_assert_eq!(after.merged_into, Some(OTHER));
            }
            if let Some(counterpart) = event.counterpart() {
                prop_assert_eq!(counterpart.ticket_id(), Some(OTHER));
            }
            if let Event::ResolutionConfirmed(e) = event {
                prop_assert_eq!(e.resolution, after.resolutions);
                prop_assert_eq!(after.status, Resolved);
            }
            check_state(after)?;
        }
        accepted.extend(events);
    }
    // Folding the accepted events again reproduces the state; versions are contiguous.
    prop_assert_eq!(&fold(&accepted), &state);
    let version = state.as_ref().map_or(0, |t| t.version);
    prop_assert_eq!(version, accepted.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        max_shrink_iters: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decide_and_evolve_keep_the_ticket_invariants(steps in scenario()) {
        let dir = fixture_directory();
        run(&dir, &Rules::default(), &steps)?;
    }
}

/// The generator reaches every ticket event, every allowed transition and every rejection
/// code `decide` gives, so the main property is not vacuous.
#[test]
fn the_generator_explores_the_whole_loop() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let dir = fixture_directory();
    let rules = Rules::default();
    let mut runner = TestRunner::deterministic();
    let mut coverage = Coverage::default();
    for _ in 0..8_000 {
        let steps = scenario().new_tree(&mut runner).unwrap().current();
        run_covering(&dir, &rules, &steps, &mut coverage).unwrap();
    }
    // Every ticket event (the directory's come after them in the list).
    for event in Event::TYPES
        .iter()
        .take_while(|t| **t != "agent_registered")
    {
        assert!(coverage.events.contains(event), "never produced {event}");
    }
    for event in [
        "ticket_linked",
        "ticket_merged_into",
        "deadline_set",
        "deadline_met",
        "deadline_warning_raised",
        "deadline_breached",
    ] {
        assert!(coverage.events.contains(event), "never produced {event}");
    }
    for transition in ALLOWED {
        assert!(
            coverage.transitions.contains(transition),
            "never went {} -> {}",
            transition.0,
            transition.1
        );
    }
    assert!(coverage.transitions.contains(&(Closed, Closed)));
    for code in [
        RejectionCode::NotFound,
        RejectionCode::InvalidTransition,
        RejectionCode::Forbidden,
    ] {
        assert!(
            coverage.rejections.contains(&code),
            "never rejected {code:?}"
        );
    }
}

// ---------- evolve is total ----------

fn any_text() -> impl Strategy<Value = String> {
    "[a-z0-9 ]{0,8}"
}

fn any_uuid() -> impl Strategy<Value = uuid::Uuid> {
    prop_oneof![3 => Just(TICKET), 1 => any::<u128>().prop_map(uuid::Uuid::from_u128)]
}

fn any_targets() -> impl Strategy<Value = Option<SlaTargets>> {
    proptest::option::of(
        (
            any_text(),
            any::<u32>(),
            any::<u32>(),
            any::<Option<u32>>(),
            any::<u8>(),
        )
            .prop_map(|(id, fr, res, next, warn)| SlaTargets {
                policy_id: id.clone(),
                calendar_id: id,
                first_response_minutes: fr,
                resolution_minutes: res,
                next_response_minutes: next,
                warn_at_percent: warn,
                confirmation_wait_days: None,
            }),
    )
}

/// Any event at all, including ones `decide` would never produce (lines 0 or 200, a ticket
/// assigned after it closed, events of other tickets, directory events).
fn any_event() -> impl Strategy<Value = Event> {
    let ids = || select(vec!["a1", "a2", "b3", "nobody", ""]).prop_map(str::to_owned);
    prop_oneof![
        (
            any_uuid(),
            any_text(),
            select(Grade::ALL),
            select(Channel::ALL),
            select(Category::ALL),
            select(Priority::ALL),
            any_targets()
        )
            .prop_map(
                |(ticket_id, customer_id, grade, channel, category, priority, sla)| {
                    Event::TicketOpened(TicketOpened {
                        ticket_id,
                        customer_id,
                        grade,
                        channel,
                        category,
                        priority,
                        subject: "s".into(),
                        description: None,
                        sla,
                    })
                }
            ),
        (any_uuid(), ids(), any_text(), proptest::option::of(ids())).prop_map(
            |(ticket_id, agent_id, team, previous_agent_id)| {
                Event::TicketAssigned(TicketAssigned {
                    ticket_id,
                    agent_id,
                    team,
                    previous_agent_id,
                })
            }
        ),
        (
            any_uuid(),
            any::<u8>(),
            any::<u8>(),
            proptest::option::of(ids()),
            proptest::option::of(ids()),
            proptest::option::of(any_text())
        )
            .prop_map(
                |(ticket_id, from_line, to_line, from_agent_id, to_agent_id, to_team)| {
                    Event::TicketEscalated(TicketEscalated {
                        ticket_id,
                        from_line,
                        to_line,
                        reason: "r".into(),
                        from_agent_id,
                        to_agent_id,
                        to_team,
                    })
                }
            ),
        any_uuid().prop_map(|ticket_id| Event::CustomerRespondedTo(CustomerRespondedTo {
            ticket_id,
            message: "m".into()
        })),
        any_uuid().prop_map(
            |ticket_id| Event::CustomerInfoRequested(CustomerInfoRequested {
                ticket_id,
                question: "q".into()
            })
        ),
        any_uuid().prop_map(|ticket_id| Event::CustomerReplied(CustomerReplied {
            ticket_id,
            message: "m".into()
        })),
        (
            any_uuid(),
            select(Priority::ALL),
            select(Priority::ALL),
            any_targets()
        )
            .prop_map(|(ticket_id, from, to, sla)| {
                Event::PriorityChanged(PriorityChanged {
                    ticket_id,
                    from,
                    to,
                    reason: "r".into(),
                    sla,
                })
            }),
        (any_uuid(), any::<bool>()).prop_map(|(ticket_id, visible_to_customer)| Event::NoteAdded(
            NoteAdded {
                ticket_id,
                text: "t".into(),
                visible_to_customer
            }
        )),
        (any_uuid(), ids()).prop_map(|(ticket_id, agent_id)| Event::TicketResolved(
            TicketResolved {
                ticket_id,
                resolution: "r".into(),
                agent_id,
                outcome: None,
            }
        )),
        any_uuid().prop_map(|ticket_id| Event::TicketReopened(TicketReopened {
            ticket_id,
            reason: "r".into()
        })),
        (any_uuid(), any_uuid(), select(LinkRelation::ALL)).prop_map(
            |(ticket_id, other_ticket_id, relation)| Event::TicketLinked(TicketLinked {
                ticket_id,
                other_ticket_id,
                relation,
            })
        ),
        (any_uuid(), any_uuid()).prop_map(|(ticket_id, into_ticket_id)| {
            Event::TicketMergedInto(TicketMergedInto {
                ticket_id,
                into_ticket_id,
                reason: "r".into(),
            })
        }),
        (any_uuid(), any_uuid()).prop_map(|(ticket_id, from_ticket_id)| {
            Event::TicketMerged(TicketMerged {
                ticket_id,
                from_ticket_id,
                reason: "r".into(),
            })
        }),
        any_uuid().prop_map(|ticket_id| Event::TicketClosed(TicketClosed {
            ticket_id,
            reason: CloseReason::Staff,
            answer_due_at: None,
        })),
        (
            any_uuid(),
            any::<u8>(),
            select(RatingSource::ALL),
            proptest::option::of(dimensions()),
            proptest::option::of(ids()),
            any::<u32>()
        )
            .prop_map(
                |(ticket_id, score, source, dimensions, agent_id, resolution)| {
                    Event::SatisfactionRecorded(SatisfactionRecorded {
                        ticket_id,
                        score,
                        source,
                        comment: None,
                        dimensions,
                        agent_id,
                        resolution,
                    })
                }
            ),
        (
            any_uuid(),
            sla_target(),
            timestamp(),
            proptest::option::of(timestamp())
        )
            .prop_map(|(ticket_id, target, due_at, warn_at)| {
                Event::SlaWarningRaised(SlaWarningRaised {
                    ticket_id,
                    target,
                    due_at,
                    warn_at,
                })
            }),
        (any_uuid(), sla_target(), timestamp()).prop_map(|(ticket_id, target, due_at)| {
            Event::SlaBreached(SlaBreached {
                ticket_id,
                target,
                due_at,
            })
        }),
        (
            ids(),
            any_text(),
            any::<u8>(),
            any::<bool>(),
            proptest::option::of(ids())
        )
            .prop_map(|(agent_id, team, line, team_lead, backup_agent_id)| {
                Event::AgentRegistered(AgentRegistered {
                    agent_id,
                    name: "n".into(),
                    team,
                    line,
                    level: Level::Senior,
                    team_lead,
                    backup_agent_id,
                })
            }),
        (ids(), any::<bool>(), proptest::option::of(ids())).prop_map(
            |(agent_id, available, backup_agent_id)| {
                Event::AgentAvailabilityChanged(AgentAvailabilityChanged {
                    agent_id,
                    available,
                    backup_agent_id,
                })
            }
        ),
        (ids(), select(Grade::ALL)).prop_map(|(customer_id, grade)| Event::CustomerRegistered(
            CustomerRegistered {
                customer_id,
                name: "n".into(),
                grade,
                account_manager_id: None
            }
        )),
        ids().prop_map(|calendar_id| Event::CalendarDefined(CalendarDefined {
            calendar_id,
            time_zone: "Nowhere/Else".into(),
            weekly_hours: Vec::new(),
            holidays: Vec::new(),
            working_days: vec![],
            hours_overrides: vec![]
        })),
        (
            ids(),
            proptest::option::of(select(Grade::ALL)),
            any::<u32>(),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(|(policy_id, grade, fr, res, warn)| {
                Event::SlaPolicyDefined(SlaPolicyDefined {
                    policy_id,
                    matches: PolicyMatch {
                        grade,
                        priority: None,
                        category: None,
                    },
                    first_response_minutes: fr,
                    resolution_minutes: res,
                    next_response_minutes: None,
                    calendar_id: "c".into(),
                    warn_at_percent: warn,
                    confirmation_wait_days: None,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `evolve` is total: no event sequence makes it panic, and once a ticket exists every
    /// further event counts one version. The directory folds any event without panicking too.
    #[test]
    fn evolve_never_panics(events in proptest::collection::vec(any_event(), 0..40)) {
        let mut state: TicketState = None;
        let mut since_open = 0u64;
        let mut dir = fixture_directory();
        for (i, event) in events.iter().enumerate() {
            state = evolve(state, event);
            if state.is_some() {
                since_open += 1;
            }
            prop_assert_eq!(state.as_ref().map_or(0, |t| t.version), since_open);
            dir.apply("any-stream", i as u64 + 1, event);
            // Decisions on whatever state and directory that left never panic either.
            for actor in [system(), agent("a1"), supervisor("lead-a")] {
                let _ = decide(&state, &resolve("r"), &ctx(&actor, &dir, &Rules::default()));
                let _ = decide(&state, &assign("a1"), &ctx(&actor, &dir, &Rules::default()));
            }
        }
        prop_assert_eq!(fold(&events), state);
    }
}

/// The property must be able to fail: a sequence that breaks it on purpose is caught.
#[test]
fn the_main_property_detects_a_forged_history() {
    let dir = fixture_directory();
    let rules = Rules::default();
    // A legal sequence passes.
    let legal = vec![
        (open("c-gold", Priority::High, Category::Repair), system()),
        (assign("a1"), agent("a1")),
        (resolve("done"), agent("a1")),
        (close(), agent("a1")),
        (rate(5, RatingSource::Survey, None), service()),
        (rate(5, RatingSource::Survey, None), service()),
        (note("after close"), system()),
    ];
    run(&dir, &rules, &legal).expect("a legal sequence keeps the invariants");
    // A forged state (an agent line 7) is caught by the state invariants.
    let mut t = fold(&[opened_standard()]).unwrap();
    t.line = 7;
    assert!(check_state(&t).is_err());
    // An auditor's event would be caught by the authority check.
    assert!(check_authority(&dir, &auditor(), &note("n"), &None).is_err());
    // An agent acting on someone else's ticket they do not cover would be caught.
    let on_b1 = fold(&[opened_standard(), assigned("b1", "beta", None)]);
    assert!(check_authority(&dir, &agent("a1"), &note("n"), &on_b1).is_err());
    let on_a2 = fold(&[opened_standard(), assigned("a2", "alpha", None)]);
    assert!(check_authority(&dir, &agent("a1"), &note("n"), &on_a2).is_ok());
}

// ---------- planned absences ----------

/// One step on the absences of agents a3 and a4 (line 2, each the other's backup) and a1
/// (line 1): a command at an hour offset from a fixed origin, by a random actor.
fn absence_step() -> impl Strategy<Value = (Command, Actor, i64)> {
    let agents = select(vec!["a1", "a3", "a3", "a4", "ghost"]);
    let ids = select(vec![1u128, 2]);
    // The scheduler's commands are `system`'s alone: weighted so starts and ends happen.
    let actors = select(vec![
        system(),
        system(),
        system(),
        agent("a3"),
        agent("a4"),
        supervisor("lead-a"),
        supervisor("lead-b"),
        auditor(),
    ]);
    let reasons = select(AbsenceReason::ALL.to_vec());
    let backups = proptest::option::of(select(vec!["a1", "a3", "a4", "lead-a"]));
    let command = prop_oneof![
        (
            agents.clone(),
            ids.clone(),
            0i64..2_000,
            1i64..2_000,
            reasons,
            backups
        )
            .prop_map(
                |(agent_id, id, from, hours, reason, backup)| Command::PlanAbsence(PlanAbsence {
                    absence_id: uuid::Uuid::from_u128(id),
                    agent_id: agent_id.into(),
                    from: hour(from),
                    until: hour(from + hours),
                    reason,
                    backup_agent_id: backup.map(str::to_owned),
                })
            ),
        (agents.clone(), ids.clone()).prop_map(|(agent_id, id)| Command::CancelAbsence(
            CancelAbsence {
                agent_id: agent_id.into(),
                absence_id: uuid::Uuid::from_u128(id)
            }
        )),
        (agents.clone(), ids.clone()).prop_map(|(agent_id, id)| Command::StartAbsence(
            StartAbsence {
                agent_id: agent_id.into(),
                absence_id: uuid::Uuid::from_u128(id)
            }
        )),
        (agents, ids).prop_map(|(agent_id, id)| Command::EndAbsence(EndAbsence {
            agent_id: agent_id.into(),
            absence_id: uuid::Uuid::from_u128(id)
        })),
    ];
    (command, actors, 1i64..300)
}

fn hour(h: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_780_000_000 + h * 3_600).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever is planned, cancelled, started and ended, in whatever order and by whom, at
    /// business times that move forward: no agent's absences overlap, each lasts within the
    /// rules, at most one is under way, an agent on one is away and covered by its backup,
    /// a start or end never comes before its moment, and folding the accepted events again
    /// gives the same directory.
    #[test]
    fn absences_keep_their_invariants(steps in proptest::collection::vec(absence_step(), 0..40)) {
        absences_run(&steps)?;
    }
}

/// The absence generator reaches every absence event, so the property is not vacuous.
#[test]
fn the_absence_generator_reaches_every_absence_event() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(absence_step(), 0..40);
    let mut seen = HashSet::new();
    for _ in 0..1_000 {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        for event in absences_run(&steps).unwrap() {
            seen.insert(event.event_type());
        }
    }
    for kind in [
        "absence_planned",
        "absence_started",
        "absence_ended",
        "absence_cancelled",
    ] {
        assert!(seen.contains(kind), "never reached {kind}: {seen:?}");
    }
}

/// Runs `steps`, checking the invariants after each; returns the accepted events.
fn absences_run(steps: &[(Command, Actor, i64)]) -> Result<Vec<Event>, TestCaseError> {
    {
        let rules = Rules::default();
        let mut dir = fixture_directory();
        let start = dir.clone();
        let mut accepted = Vec::new();
        let mut now = 0i64;
        for (command, actor, advance) in steps {
            now += advance;
            let at = hour(now);
            let ctx = Context {
                actor,
                directory: &dir,
                rules: &rules,
                opened_by: None,
                at: Some(at),
                other: None,
            };
            let Ok(events) = decide(&None, command, &ctx) else {
                continue;
            };
            prop_assert_eq!(events.len(), 1);
            match &events[0] {
                Event::AbsenceStarted(e) => prop_assert!(e.from <= at),
                Event::AbsenceEnded(e) => prop_assert!(e.until <= at),
                Event::AbsencePlanned(e) => prop_assert!(e.from >= at),
                _ => {}
            }
            prop_assert!(
                matches!(actor.role, Role::System)
                    || !matches!(command, Command::StartAbsence(_) | Command::EndAbsence(_))
            );
            apply_all(&mut dir, &events);
            accepted.extend(events);
            for agent in dir.agents.values() {
                let list = &agent.absences;
                for (i, a) in list.iter().enumerate() {
                    let days = (a.until.as_second() - a.from.as_second()) as f64 / 86_400.0;
                    prop_assert!(days >= f64::from(rules.absence_days_min));
                    prop_assert!(days <= f64::from(rules.absence_days_max));
                    for b in &list[i + 1..] {
                        prop_assert!(
                            a.until <= b.from || b.until <= a.from,
                            "{a:?} overlaps {b:?}"
                        );
                    }
                }
                prop_assert!(list.iter().filter(|a| a.started).count() <= 1);
                if let Some(a) = agent.absence_under_way() {
                    // The on/off switch may bring them back early; otherwise they are away.
                    if !agent.available {
                        prop_assert_eq!(
                            agent.covered_by.as_deref(),
                            Some(a.backup_agent_id.as_str())
                        );
                    }
                }
            }
        }
        let mut again = start;
        apply_all(&mut again, &accepted);
        prop_assert_eq!(again, dir);
        Ok(accepted)
    }
}
