//! Given/when/then scenarios of the ticket domain (disintegrate style): given past events,
//! when an actor issues a command, then exactly these events, or a rejection with this code
//! and this offending field. A `then` returns the new state, so a scenario can go on.

mod support;

use closeloop_domain::*;
use support::*;

/// Past events: ticket events fold into the ticket, directory events into the directory.
struct Given {
    directory: Directory,
    rules: Rules,
    ticket: TicketState,
    /// The second ticket a link or a merge names (`Context::other`).
    other: TicketState,
}

/// Given these events on top of the fixture directory.
fn given(events: impl IntoIterator<Item = Event>) -> Given {
    Given {
        directory: fixture_directory(),
        rules: Rules::default(),
        ticket: None,
        other: None,
    }
    .and(events)
}

/// Given these events on an empty directory.
fn given_bare(events: impl IntoIterator<Item = Event>) -> Given {
    Given {
        directory: Directory::default(),
        rules: Rules::default(),
        ticket: None,
        other: None,
    }
    .and(events)
}

impl Given {
    fn and(mut self, events: impl IntoIterator<Item = Event>) -> Given {
        for event in events {
            self.apply(&event);
        }
        self
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::AgentRegistered(_)
            | Event::AgentAvailabilityChanged(_)
            | Event::CustomerRegistered(_)
            | Event::CalendarDefined(_)
            | Event::SlaPolicyDefined(_)
            | Event::RetentionPolicyDefined(_)
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
            | Event::DeadlineKindDefined(_) => {
                apply_all(&mut self.directory, std::slice::from_ref(event))
            }
            _ => self.ticket = evolve(self.ticket.take(), event),
        }
    }

    fn when(self, command: Command, actor: Actor) -> When {
        self.when_at(command, actor, None)
    }

    /// As `when`, with the business time the events would carry.
    fn when_at(self, command: Command, actor: Actor, at: Option<&str>) -> When {
        let outcome = decide(
            &self.ticket,
            &command,
            &Context {
                actor: &actor,
                directory: &self.directory,
                rules: &self.rules,
                opened_by: Some(&OPENER),
                at: at.map(support::at),
                other: self.other.as_ref(),
            },
        );
        When {
            given: self,
            command,
            actor,
            outcome,
        }
    }

    /// The other ticket, folded from these events.
    fn other(mut self, events: impl IntoIterator<Item = Event>) -> Given {
        self.other = events.into_iter().fold(None, |s, e| evolve(s, &e));
        self
    }

    fn ticket(&self) -> &Ticket {
        self.ticket.as_ref().expect("the ticket is open")
    }
}

struct When {
    given: Given,
    command: Command,
    actor: Actor,
    outcome: Result<Vec<Event>, Rejection>,
}

impl When {
    /// Asserts the events produced and folds them in.
    #[track_caller]
    fn then(mut self, expected: impl IntoIterator<Item = Event>) -> Given {
        let expected: Vec<Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(
                    events,
                    expected,
                    "{} by {:?}",
                    self.command.command_type(),
                    self.actor
                );
                for event in &events {
                    self.given.apply(event);
                }
                self.given
            }
            Err(rejection) => panic!(
                "{} by {:?} was rejected: {rejection:?}; expected {expected:?}",
                self.command.command_type(),
                self.actor
            ),
        }
    }

    /// Asserts a rejection with this code whose first detail names `path` (`""`: the
    /// rejection names no field). The state stays as it was.
    #[track_caller]
    fn then_rejected(self, code: RejectionCode, path: &str) -> Given {
        match self.outcome {
            Ok(events) => panic!(
                "{} by {:?} was accepted with {events:?}; expected a {code:?} rejection",
                self.command.command_type(),
                self.actor
            ),
            Err(rejection) => {
                assert_eq!(rejection.code, code, "{rejection:?}");
                let first = rejection.details.first().map_or("", |d| d.path.as_str());
                assert_eq!(first, path, "{rejection:?}");
                assert!(!rejection.message.is_empty());
                self.given
            }
        }
    }

    /// Asserts acceptance, whatever the events, and folds them in.
    #[track_caller]
    fn then_accepted(mut self) -> Given {
        let events = match self.outcome {
            Ok(ref events) => events.clone(),
            Err(ref r) => panic!(
                "{} by {:?} was rejected: {r:?}",
                self.command.command_type(),
                self.actor
            ),
        };
        assert!(!events.is_empty());
        for event in &events {
            self.given.apply(event);
        }
        self.given
    }

    /// The accepted events, for scenarios that check only part of them.
    #[track_caller]
    fn accepted(self) -> Vec<Event> {
        self.outcome.unwrap_or_else(|r| {
            panic!(
                "{} by {:?} was rejected: {r:?}",
                self.command.command_type(),
                self.actor
            )
        })
    }
}

use Category::*;
use Priority::*;
use RatingSource::*;
use RejectionCode::*;

fn dims(n: u8) -> Dimensions {
    Dimensions {
        recognition: n,
        efficiency: n,
        quality: n,
        overall: n,
    }
}

#[test]
fn the_full_loop_from_request_to_callback() {
    let done = given([])
        .when(open("c-standard", Normal, Incident), service())
        .then([opened_standard()])
        .when(assign("a1"), supervisor("lead-a"))
        .then([assigned("a1", "alpha", None)])
        .when(respond("We are looking into it"), agent("a1"))
        .then([responded("We are looking into it")])
        .when(request_info("Which firmware?"), agent("a1"))
        .then([info_requested("Which firmware?")])
        .when(customer_reply("Version 4.2"), service())
        .then([replied("Version 4.2")])
        .when(escalate("needs a specialist", None), agent("a1"))
        .then([escalated(1, "needs a specialist", Some("a1"), None)])
        .when(assign("a3"), agent("a3"))
        .then([assigned("a3", "alpha", None)])
        .when(resolve("firmware rolled back"), agent("a3"))
        .then([resolved("firmware rolled back", "a3")])
        .when(rate(4, Survey, None), service())
        .then([rated(4, Survey, None, Some("a3"), 1)])
        .when(close(), agent("a3"))
        .then([closed()])
        .when(rate(5, Callback, Some(dims(5))), supervisor("lead-a"))
        .then([rated(5, Callback, Some(dims(5)), Some("a3"), 1)]);
    let t = done.ticket();
    assert_eq!(t.version, 11);
    assert_eq!(t.status, TicketStatus::Closed);
    assert_eq!(t.line, 2);
    assert_eq!(t.assignee.as_deref(), Some("a3"));
    assert_eq!(t.team.as_deref(), Some("alpha"));
    assert_eq!((t.resolutions, t.escalations, t.reopens), (1, 1, 0));
    assert_eq!(t.rated, vec![Survey, Callback]);
    // Once per source and resolution: a second survey is refused, as is anything else.
    done.when(rate(3, Survey, None), service())
        .then_rejected(InvalidTransition, "/payload/source")
        .when(reopen("still broken"), system())
        .then_rejected(InvalidTransition, "")
        .when(note("late note"), system())
        .then_rejected(InvalidTransition, "");
}

#[test]
fn states_along_the_loop() {
    let g = given([opened_standard()]);
    assert_eq!(g.ticket().status, TicketStatus::Unassigned);
    let g = g.and([assigned("a1", "alpha", None)]);
    assert_eq!(g.ticket().status, TicketStatus::Assigned);
    let g = g.and([responded("hi")]);
    assert_eq!(g.ticket().status, TicketStatus::InProgress);
    let g = g.and([info_requested("which?")]);
    assert_eq!(g.ticket().status, TicketStatus::PendingCustomer);
    // Reassignment while waiting for the customer keeps waiting.
    let g = g.and([assigned("a2", "alpha", Some("a1"))]);
    assert_eq!(g.ticket().status, TicketStatus::PendingCustomer);
    let g = g.and([replied("this")]);
    assert_eq!(g.ticket().status, TicketStatus::InProgress);
    let g = g.and([resolved("done", "a2")]);
    assert_eq!(g.ticket().status, TicketStatus::Resolved);
    let g = g.and([reopened("not done")]);
    assert_eq!(g.ticket().status, TicketStatus::Assigned);
    assert_eq!((g.ticket().resolutions, g.ticket().reopens), (1, 1));
}

#[test]
fn reopen_only_from_resolved_and_a_new_resolution_may_be_rated_again() {
    let resolved_once = given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ]);
    resolved_once
        .when(rate(2, Survey, None), service())
        .then([rated(2, Survey, None, Some("a1"), 1)])
        .when(reopen("came back"), agent("a1"))
        .then([reopened("came back")])
        .when(reopen("again"), agent("a1"))
        .then_rejected(InvalidTransition, "")
        .when(close(), agent("a1"))
        .then_rejected(InvalidTransition, "")
        .when(rate(2, Survey, None), service())
        .then_rejected(InvalidTransition, "")
        .when(resolve("done properly"), agent("a1"))
        .then([resolved("done properly", "a1")])
        .when(rate(5, Survey, None), service())
        .then([rated(5, Survey, None, Some("a1"), 2)]);
    given([opened_standard(), assigned("a1", "alpha", None)])
        .when(reopen("why"), system())
        .then_rejected(InvalidTransition, "");
}

#[test]
fn escalation_beyond_line_3_is_refused() {
    given([
        opened_standard(),
        escalated(1, "specialist", None, Some(("a3", "alpha"))),
        escalated(2, "management", Some("a3"), Some(("a5", "alpha"))),
    ])
    .when(escalate("higher still", None), system())
    .then_rejected(InvalidTransition, "")
    .when(escalate("higher still", Some("b4")), system())
    .then_rejected(InvalidTransition, "");
}

#[test]
fn escalation_checks_the_named_agent() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)]);
    g.when(escalate("x", Some("a5")), system())
        .then_rejected(InvalidTransition, "/payload/to_agent_id")
        .when(escalate("x", Some("nobody")), system())
        .then_rejected(NotFound, "/payload/to_agent_id")
        .when(escalate("x", Some("b2")), agent("a1"))
        .then([escalated(1, "x", Some("a1"), Some(("b2", "beta")))])
        // b3 is away: not a target of escalation.
        .when(escalate("y", Some("b3")), system())
        .then_rejected(InvalidTransition, "/payload/to_agent_id");
}

#[test]
fn resolving_an_unassigned_ticket_is_refused() {
    given([opened_standard()])
        .when(resolve("fixed"), system())
        .then_rejected(InvalidTransition, "")
        .when(respond("hello"), system())
        .then_rejected(InvalidTransition, "")
        .when(request_info("what?"), system())
        .then_rejected(InvalidTransition, "")
        .when(close(), system())
        .then_rejected(InvalidTransition, "");
    // Escalated without a named agent, the ticket waits unassigned again.
    given([
        opened_standard(),
        assigned("a1", "alpha", None),
        escalated(1, "deep analysis", Some("a1"), None),
    ])
    .when(resolve("fixed"), system())
    .then_rejected(InvalidTransition, "");
}

#[test]
fn commands_need_an_open_ticket_and_open_needs_none() {
    given([])
        .when(assign("a1"), system())
        .then_rejected(NotFound, "/payload/ticket_id")
        .when(rate(5, Survey, None), service())
        .then_rejected(NotFound, "/payload/ticket_id");
    given([opened_standard()])
        .when(open("c-gold", High, Repair), system())
        .then_rejected(InvalidTransition, "");
}

#[test]
fn assignment_rules() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)]);
    g.when(assign("a1"), system())
        .then_rejected(InvalidTransition, "/payload/agent_id")
        .when(assign("a3"), system())
        .then_rejected(InvalidTransition, "/payload/agent_id")
        .when(assign("a2"), system())
        .then_rejected(InvalidTransition, "/payload/agent_id")
        .when(assign("nobody"), system())
        .then_rejected(NotFound, "/payload/agent_id")
        .when(assign("b1"), system())
        .then([assigned("b1", "beta", Some("a1"))]);
}

#[test]
fn policy_with_most_matched_fields_wins() {
    // VIP diamond + urgent matches p-base (0), p-vip (1), p-urgent (1), p-vip-urgent (2).
    given([])
        .when(open("c-diamond", Urgent, Complaint), service())
        .then([opened(
            "c-diamond",
            Grade::VipDiamond,
            Urgent,
            Complaint,
            Some(fixture_targets("p-vip-urgent")),
        )]);
    given([])
        .when(open("c-diamond", Low, Inquiry), service())
        .then([opened(
            "c-diamond",
            Grade::VipDiamond,
            Low,
            Inquiry,
            Some(fixture_targets("p-vip")),
        )]);
    given([])
        .when(open("c-gold", Normal, Inquiry), service())
        .then([opened(
            "c-gold",
            Grade::VipGold,
            Normal,
            Inquiry,
            Some(fixture_targets("p-base")),
        )]);
}

#[test]
fn the_latest_defined_policy_wins_a_tie() {
    // Urgent complaint of a standard customer: p-urgent and p-complaint both match one field;
    // p-complaint is defined later.
    given([])
        .when(open("c-standard", Urgent, Complaint), service())
        .then([opened(
            "c-standard",
            Grade::Standard,
            Urgent,
            Complaint,
            Some(fixture_targets("p-complaint")),
        )]);
    // Redefining p-urgent makes it the latest.
    let redefined = policy("p-urgent", None, Some(Urgent), None, 20, 300, "always");
    let Command::DefineSlaPolicy(p) = &redefined else {
        unreachable!()
    };
    let event = Event::SlaPolicyDefined(SlaPolicyDefined {
        policy_id: p.policy_id.clone(),
        matches: p.matches.clone(),
        first_response_minutes: p.first_response_minutes,
        resolution_minutes: p.resolution_minutes,
        next_response_minutes: p.next_response_minutes,
        calendar_id: p.calendar_id.clone(),
        warn_at_percent: p.warn_at_percent,
        confirmation_wait_days: None,
    });
    given([event])
        .when(open("c-standard", Urgent, Complaint), service())
        .then([opened(
            "c-standard",
            Grade::Standard,
            Urgent,
            Complaint,
            Some(targets_of(&redefined)),
        )]);
}

#[test]
fn no_matching_policy_means_no_targets_and_unregistered_is_standard() {
    let calendar = decide_fixture(always_calendar(), &Directory::default());
    let vip_only = policy(
        "p-vip",
        Some(Grade::VipDiamond),
        None,
        None,
        30,
        480,
        "always",
    );
    let mut dir = Directory::default();
    apply_all(&mut dir, &calendar);
    let vip_policy = decide_fixture(vip_only.clone(), &dir);
    let g = given_bare(calendar.into_iter().chain(vip_policy));
    let g = g
        .when(open(UNREGISTERED_CUSTOMER, Urgent, Incident), service())
        .then([opened(
            UNREGISTERED_CUSTOMER,
            Grade::Standard,
            Urgent,
            Incident,
            None,
        )]);
    assert_eq!(g.ticket().sla, None);
    assert_eq!(g.ticket().grade, Grade::Standard);
}

fn decide_fixture(command: Command, dir: &Directory) -> Vec<Event> {
    decide(
        &None,
        &command,
        &Context {
            actor: &system(),
            directory: dir,
            rules: &Rules::default(),
            opened_by: Some(&OPENER),
            at: None,
            other: None,
        },
    )
    .expect("fixture command")
}

#[test]
fn the_grade_is_copied_into_ticket_opened() {
    for (customer, grade) in CUSTOMERS {
        let events = given([])
            .when(open(customer, Normal, Inquiry), service())
            .accepted();
        let [Event::TicketOpened(e)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(e.grade, *grade, "{customer}");
    }
    let events = given([])
        .when(open(UNREGISTERED_CUSTOMER, Normal, Inquiry), agent("b1"))
        .accepted();
    let [Event::TicketOpened(e)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(e.grade, Grade::Standard);
    assert_eq!(e.sla, Some(fixture_targets("p-base")));
}

#[test]
fn a_priority_change_re_derives_the_targets() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)])
        .when(change_priority(Urgent, "outage"), agent("a1"))
        .then([priority_changed(
            Normal,
            Urgent,
            "outage",
            Some(fixture_targets("p-urgent")),
        )]);
    assert_eq!(g.ticket().sla, Some(fixture_targets("p-urgent")));
    assert_eq!(g.ticket().priority, Urgent);
    let g = g
        .when(change_priority(Urgent, "again"), agent("a1"))
        .then_rejected(InvalidTransition, "/payload/priority")
        .when(change_priority(Low, "false alarm"), supervisor("lead-a"))
        .then([priority_changed(
            Urgent,
            Low,
            "false alarm",
            Some(fixture_targets("p-base")),
        )]);
    assert_eq!(g.ticket().sla, Some(fixture_targets("p-base")));
    // The grade kept is the one copied at opening.
    given([
        opened(
            "c-diamond",
            Grade::VipDiamond,
            Normal,
            Inquiry,
            Some(fixture_targets("p-vip")),
        ),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ])
    .when(change_priority(Urgent, "too late"), system())
    .then_rejected(InvalidTransition, "");
    given([opened(
        "c-diamond",
        Grade::VipDiamond,
        Normal,
        Inquiry,
        Some(fixture_targets("p-vip")),
    )])
    .when(change_priority(Urgent, "outage"), system())
    .then([priority_changed(
        Normal,
        Urgent,
        "outage",
        Some(fixture_targets("p-vip-urgent")),
    )]);
}

#[test]
fn the_backup_covers_an_away_agent_and_no_one_else_may() {
    // a2 is away, covered by a1 (their registered backup).
    let g = given([opened_standard(), assigned("a2", "alpha", None)]);
    let g = g
        .when(respond("a1 here, covering for a2"), agent("a1"))
        .then([responded("a1 here, covering for a2")])
        .when(respond("me too"), agent("lead-a"))
        .then_rejected(Forbidden, "")
        .when(respond("me too"), agent("b1"))
        .then_rejected(Forbidden, "")
        .when(respond("it's me"), agent("a2"))
        .then([responded("it's me")])
        .when(assign("a1"), agent("a1"))
        .then([assigned("a1", "alpha", Some("a2"))]);
    assert_eq!(g.ticket().assignee.as_deref(), Some("a1"));
    // b3 is away, covered by the explicitly named b4, not the registered backup b2.
    let g = given([
        opened_standard(),
        escalated(1, "x", None, Some(("b2", "beta"))),
        escalated(2, "y", Some("b2"), Some(("b4", "beta"))),
    ]);
    let g = g
        .when(assign("b4"), system())
        .then_rejected(InvalidTransition, "/payload/agent_id");
    let on_b3 = g.and([assigned("b3", "beta", Some("b4"))]);
    on_b3
        .when(note("covering"), agent("b4"))
        .then([Event::NoteAdded(NoteAdded {
            ticket_id: TICKET,
            text: "covering".into(),
            visible_to_customer: false,
        })])
        .when(note("not mine"), agent("b2"))
        .then_rejected(Forbidden, "");
}

#[test]
fn coverage_ends_when_the_agent_returns() {
    let returned = Event::AgentAvailabilityChanged(AgentAvailabilityChanged {
        agent_id: "a2".into(),
        available: true,
        backup_agent_id: None,
    });
    given([opened_standard(), assigned("a2", "alpha", None), returned])
        .when(respond("still covering?"), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(respond("back"), agent("a2"))
        .then([responded("back")]);
}

#[test]
fn agents_act_on_their_own_and_unassigned_tickets_of_their_line() {
    given([opened_standard()])
        .when(assign("a1"), agent("b1"))
        .then_rejected(Forbidden, "/payload/agent_id")
        .when(assign("b1"), agent("a3"))
        .then_rejected(Forbidden, "")
        .when(assign("b1"), agent("b1"))
        .then([assigned("b1", "beta", None)])
        .when(note("mine now"), agent("b5"))
        .then_rejected(Forbidden, "")
        .when(resolve("done"), agent("ghost"))
        .then_rejected(Forbidden, "")
        .when(resolve("done"), agent("b1"))
        .then([resolved("done", "b1")]);
}

#[test]
fn team_size_limit_of_8_and_one_lead_per_team() {
    let mut g = given_bare([]);
    for i in 0..8 {
        g = g
            .when(
                register_agent(&format!("g{i}"), "gamma", 1, i == 0, None),
                system(),
            )
            .then_accepted();
    }
    assert_eq!(g.directory.team_members("gamma").count(), 8);
    let g = g
        .when(register_agent("g8", "gamma", 1, false, None), system())
        .then_rejected(InvalidTransition, "/payload/team")
        // Re-registering a member of a full team is not a new member.
        .when(
            register_agent("g3", "gamma", 2, false, Some("g4")),
            system(),
        )
        .then([Event::AgentRegistered(AgentRegistered {
            agent_id: "g3".into(),
            name: "Agent g3".into(),
            team: "gamma".into(),
            line: 2,
            level: Level::Intermediate,
            team_lead: false,
            backup_agent_id: Some("g4".into()),
        })]);
    assert_eq!(g.directory.agents["g3"].line, 2);
    // One lead per team: g0 leads gamma.
    given_bare([])
        .when(register_agent("d0", "delta", 1, true, None), system())
        .then([Event::AgentRegistered(AgentRegistered {
            agent_id: "d0".into(),
            name: "Agent d0".into(),
            team: "delta".into(),
            line: 1,
            level: Level::Intermediate,
            team_lead: true,
            backup_agent_id: None,
        })])
        .when(register_agent("d1", "delta", 1, true, None), system())
        .then_rejected(InvalidTransition, "/payload/team_lead")
        .when(register_agent("d0", "delta", 1, true, None), system())
        .accepted();
    // The limit is a rule, not a constant.
    let mut small = given_bare([]);
    small.rules.team_members_max = 2;
    small
        .and([])
        .when(register_agent("s0", "small", 1, false, None), system())
        .then([Event::AgentRegistered(AgentRegistered {
            agent_id: "s0".into(),
            name: "Agent s0".into(),
            team: "small".into(),
            line: 1,
            level: Level::Intermediate,
            team_lead: false,
            backup_agent_id: None,
        })])
        .when(register_agent("s1", "small", 1, false, None), system())
        .then_accepted()
        .when(register_agent("s2", "small", 1, false, None), system())
        .then_rejected(InvalidTransition, "/payload/team");
}

#[test]
fn supervisors_are_limited_to_their_team() {
    let alpha_ticket = given([opened_standard(), assigned("a1", "alpha", None)]);
    alpha_ticket
        .when(note("beta lead here"), supervisor("lead-b"))
        .then_rejected(Forbidden, "")
        .when(resolve("closing it for you"), supervisor("lead-b"))
        .then_rejected(Forbidden, "")
        // a1 is not a team lead: as supervisor, forbidden.
        .when(note("I lead now"), supervisor("a1"))
        .then_rejected(Forbidden, "")
        .when(assign("b1"), supervisor("lead-a"))
        .then_rejected(Forbidden, "/payload/agent_id")
        .when(resolve("done"), supervisor("lead-a"))
        .then([resolved("done", "a1")]);
    // An unassigned ticket belongs to no team yet: either lead may assign within their team.
    given([opened_standard()])
        .when(assign("a1"), supervisor("lead-b"))
        .then_rejected(Forbidden, "/payload/agent_id")
        .when(assign("b1"), supervisor("lead-b"))
        .then([assigned("b1", "beta", None)]);
    // Directory: a supervisor registers and sets availability only within their team.
    given([])
        .when(
            register_agent("b6", "alpha", 1, false, None),
            supervisor("lead-b"),
        )
        .then_rejected(Forbidden, "/payload/team")
        .when(
            register_agent("b6", "beta", 1, false, None),
            supervisor("lead-b"),
        )
        .accepted();
    let away = Command::SetAgentAvailability(SetAgentAvailability {
        agent_id: "a1".into(),
        available: false,
        backup_agent_id: Some("lead-a".into()),
    });
    given([])
        .when(away.clone(), supervisor("lead-b"))
        .then_rejected(Forbidden, "")
        .when(away, supervisor("lead-a"))
        .then([Event::AgentAvailabilityChanged(AgentAvailabilityChanged {
            agent_id: "a1".into(),
            available: false,
            backup_agent_id: Some("lead-a".into()),
        })]);
}

#[test]
fn service_opens_replies_and_surveys_but_never_resolves() {
    let g = given([])
        .when(open("c-gold", High, Return), service())
        .then([opened(
            "c-gold",
            Grade::VipGold,
            High,
            Return,
            Some(fixture_targets("p-base")),
        )])
        .when(assign("a1"), service())
        .then_rejected(Forbidden, "")
        .and([assigned("a1", "alpha", None)])
        .when(resolve("done"), service())
        .then_rejected(Forbidden, "")
        .when(customer_reply("any news?"), service())
        .then([replied("any news?")])
        .when(note("internal"), service())
        .then_rejected(Forbidden, "")
        .and([resolved("done", "a1")])
        .when(rate(5, Callback, None), service())
        .then_rejected(Forbidden, "")
        .when(close(), service())
        .then_rejected(Forbidden, "");
    g.when(rate(5, Survey, None), service())
        .then([rated(5, Survey, None, Some("a1"), 1)]);
}

#[test]
fn agents_may_not_rate_and_supervisors_only_by_callback() {
    let g = given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ]);
    g.when(rate(5, Survey, None), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(rate(5, Callback, Some(dims(4))), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(rate(5, Survey, None), supervisor("lead-a"))
        .then_rejected(Forbidden, "")
        .when(rate(1, Callback, Some(dims(1))), supervisor("lead-a"))
        .then([rated(1, Callback, Some(dims(1)), Some("a1"), 1)]);
}

#[test]
fn auditors_and_unregistered_staff_never_command() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)]);
    let commands = [
        note("look"),
        respond("hi"),
        resolve("done"),
        assign("a1"),
        change_priority(High, "x"),
    ];
    let mut g = g;
    for command in commands {
        g = g
            .when(command.clone(), auditor())
            .then_rejected(Forbidden, "")
            .when(command.clone(), agent("ghost"))
            .then_rejected(Forbidden, "")
            .when(command, supervisor("ghost"))
            .then_rejected(Forbidden, "");
    }
    given([])
        .when(open("c-gold", Low, Inquiry), auditor())
        .then_rejected(Forbidden, "")
        .when(office_calendar(), auditor())
        .then_rejected(Forbidden, "")
        .when(open("c-gold", Low, Inquiry), agent("ghost"))
        .then_rejected(Forbidden, "");
}

#[test]
fn sla_warnings_and_breaches_are_the_schedulers_alone() {
    let due = at("2026-11-23T10:00:00Z");
    let g = given([opened_standard(), assigned("a1", "alpha", None)]);
    let g = g
        .when(raise_warning(SlaTarget::FirstResponse, due), system())
        .then([Event::SlaWarningRaised(SlaWarningRaised {
            ticket_id: TICKET,
            target: SlaTarget::FirstResponse,
            due_at: due,
            warn_at: None,
        })])
        .when(record_breach(SlaTarget::FirstResponse, due), system())
        .then([Event::SlaBreached(SlaBreached {
            ticket_id: TICKET,
            target: SlaTarget::FirstResponse,
            due_at: due,
        })]);
    for actor in [agent("a1"), supervisor("lead-a"), service(), auditor()] {
        let g2 = given([opened_standard(), assigned("a1", "alpha", None)]);
        g2.when(raise_warning(SlaTarget::Resolution, due), actor.clone())
            .then_rejected(Forbidden, "")
            .when(record_breach(SlaTarget::Resolution, due), actor)
            .then_rejected(Forbidden, "");
    }
    g.and([resolved("done", "a1")])
        .when(record_breach(SlaTarget::Resolution, due), system())
        .then_rejected(InvalidTransition, "");
}

/// A Spring-Festival-style calendar: a Sunday and a Saturday worked, a half day before the
/// holidays.
fn spring_calendar() -> DefineCalendar {
    let span = |start: &str, end: &str| HoursSpan {
        start: start.into(),
        end: end.into(),
    };
    let Command::DefineCalendar(office) = office_calendar() else {
        unreachable!()
    };
    DefineCalendar {
        calendar_id: "shanghai".into(),
        time_zone: "Asia/Shanghai".into(),
        holidays: (16..=22).map(|d| jiff::civil::date(2026, 2, d)).collect(),
        working_days: vec![
            WorkingDay {
                date: jiff::civil::date(2026, 2, 8),
                hours: vec![span("09:00", "12:00"), span("13:00", "18:00")],
            },
            WorkingDay {
                date: jiff::civil::date(2026, 2, 28),
                hours: vec![span("09:00", "17:00")],
            },
        ],
        hours_overrides: vec![HoursOverride {
            date: jiff::civil::date(2026, 2, 13),
            hours: vec![span("09:00", "12:00")],
        }],
        ..office
    }
}

#[test]
fn a_calendar_keeps_its_make_up_days_and_half_days() {
    let c = spring_calendar();
    let defined = CalendarDefined {
        calendar_id: c.calendar_id.clone(),
        time_zone: c.time_zone.clone(),
        weekly_hours: c.weekly_hours.clone(),
        holidays: c.holidays.clone(),
        working_days: c.working_days.clone(),
        hours_overrides: c.hours_overrides.clone(),
    };
    let g = given([])
        .when(Command::DefineCalendar(c.clone()), auditor())
        .then_rejected(Forbidden, "")
        .when(Command::DefineCalendar(c.clone()), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(Command::DefineCalendar(c.clone()), system())
        .then([Event::CalendarDefined(defined.clone())]);
    let kept = &g.directory.calendars["shanghai"];
    assert_eq!(kept.working_days, c.working_days);
    assert_eq!(kept.hours_overrides, c.hours_overrides);
    // A redefinition replaces the lists: without them, the calendar has none.
    let plain = DefineCalendar {
        working_days: vec![],
        hours_overrides: vec![],
        ..c
    };
    let g = g
        .when(Command::DefineCalendar(plain.clone()), system())
        .then([Event::CalendarDefined(CalendarDefined {
            working_days: vec![],
            hours_overrides: vec![],
            ..defined
        })]);
    assert!(g.directory.calendars["shanghai"].working_days.is_empty());
    // A policy may name it at once.
    g.when(
        policy("p-cn", None, None, None, 60, 480, "shanghai"),
        system(),
    )
    .then_accepted();
}

#[test]
fn directory_decisions() {
    let away_again = Command::SetAgentAvailability(SetAgentAvailability {
        agent_id: "a2".into(),
        available: false,
        backup_agent_id: None,
    });
    given([])
        .when(away_again, system())
        .then_rejected(InvalidTransition, "/payload/available");
    // a5 has no registered backup: one must be named.
    let a5_away = |backup: Option<&str>| {
        Command::SetAgentAvailability(SetAgentAvailability {
            agent_id: "a5".into(),
            available: false,
            backup_agent_id: backup.map(str::to_owned),
        })
    };
    given([])
        .when(a5_away(None), system())
        .then_rejected(Validation, "/payload/backup_agent_id")
        .when(a5_away(Some("nobody")), system())
        .then_rejected(NotFound, "/payload/backup_agent_id")
        .when(a5_away(Some("b3")), system())
        .then_rejected(InvalidTransition, "/payload/backup_agent_id")
        .when(a5_away(Some("a4")), agent("a4"))
        .then_rejected(Forbidden, "")
        .when(a5_away(Some("a4")), agent("a5"))
        .accepted();
    given_bare([])
        .when(policy("p", None, None, None, 1, 2, "nowhere"), system())
        .then_rejected(NotFound, "/payload/calendar_id");
    given([])
        .when(
            Command::RegisterCustomer(RegisterCustomer {
                customer_id: "c-new".into(),
                name: "New".into(),
                grade: Grade::GroupB,
                account_manager_id: Some("lead-a".into()),
            }),
            system(),
        )
        .accepted();
    // Grades and account managers are provisioning's: a service registers standard
    // customers, unmanaged.
    given([])
        .when(
            Command::RegisterCustomer(RegisterCustomer {
                customer_id: "c-new".into(),
                name: "New".into(),
                grade: Grade::GroupB,
                account_manager_id: None,
            }),
            service(),
        )
        .then_rejected(Forbidden, "/payload/grade");
    given([])
        .when(register_agent("a9", "alpha", 1, false, None), service())
        .then_rejected(Forbidden, "")
        .when(register_agent("a9", "alpha", 1, false, None), agent("a1"))
        .then_rejected(Forbidden, "");
}

#[test]
fn the_customer_confirms_or_rejects_a_resolution_once() {
    let resolved_once = given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ]);
    // Staff may not answer for the customer, nor may an auditor.
    resolved_once
        .when(confirm(None), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(reject("no"), supervisor("lead-a"))
        .then_rejected(Forbidden, "")
        .when(confirm(None), auditor())
        .then_rejected(Forbidden, "")
        // The customer's service confirms; a second answer is refused.
        .when(confirm(Some("works now")), service())
        .then([Event::ResolutionConfirmed(ResolutionConfirmed {
            ticket_id: TICKET,
            resolution: 1,
            comment: Some("works now".into()),
        })])
        .when(reject("changed my mind"), service())
        .then_rejected(InvalidTransition, "")
        .when(close(), agent("a1"))
        .then([closed()]);

    // A rejection reopens the ticket in the same append; the next resolution awaits its
    // own answer.
    let g = given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ])
    .when(reject("still broken"), service())
    .then([
        Event::ResolutionRejected(ResolutionRejected {
            ticket_id: TICKET,
            resolution: 1,
            reason: "still broken".into(),
        }),
        reopened("the customer rejected the resolution: still broken"),
    ]);
    assert_eq!(g.ticket().status, TicketStatus::Assigned);
    assert_eq!(g.ticket().reopens, 1);
    g.when(confirm(None), service())
        .then_rejected(InvalidTransition, "")
        .when(resolve("fixed for real"), agent("a1"))
        .then([resolved("fixed for real", "a1")])
        .when(confirm(None), service())
        .then([Event::ResolutionConfirmed(ResolutionConfirmed {
            ticket_id: TICKET,
            resolution: 2,
            comment: None,
        })]);
}

#[test]
fn only_the_scheduler_closes_an_unanswered_resolution() {
    let resolved_once = given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ]);
    resolved_once
        .when(close_unconfirmed(1), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(close_unconfirmed(1), service())
        .then_rejected(Forbidden, "")
        .when(close_unconfirmed(2), system())
        .then_rejected(InvalidTransition, "/payload/resolution")
        .when(close_unconfirmed(1), system())
        .then([Event::TicketClosed(TicketClosed {
            ticket_id: TICKET,
            reason: CloseReason::AutoClosedUnconfirmed,
            answer_due_at: Some(at("2026-11-10T17:00:00Z")),
        })]);
    // An answered resolution is not closed unconfirmed.
    given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
    ])
    .when(confirm(None), service())
    .then_accepted()
    .when(close_unconfirmed(1), system())
    .then_rejected(InvalidTransition, "");
}

fn ruled(ruling: u32, justified: bool, cause: &str, charged: &[(&str, &str)], by: Actor) -> Event {
    Event::ComplaintRuled(ComplaintRuled {
        ticket_id: TICKET,
        ruling,
        justified,
        cause: cause.into(),
        charged: charged
            .iter()
            .map(|(agent_id, team)| ChargedStaff {
                agent_id: (*agent_id).into(),
                team: (*team).into(),
            })
            .collect(),
        note: "heard both sides".into(),
        ruled_by: by,
    })
}

#[test]
fn a_complaint_is_ruled_on_by_a_supervisor_or_an_inspector_and_a_later_ruling_supersedes() {
    let complaint = given([opened_complaint(), assigned("a1", "alpha", None)]);
    complaint
        // Agents never rule (a ruling may charge them), nor do services or auditors.
        .when(rule(true, "rude_staff", &["a1"]), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(rule(true, "rude_staff", &["a1"]), service())
        .then_rejected(Forbidden, "")
        .when(rule(true, "rude_staff", &["a1"]), auditor())
        .then_rejected(Forbidden, "")
        // An unregistered inspector, and another team's lead, are refused.
        .when(rule(true, "rude_staff", &["a1"]), inspector("ghost"))
        .then_rejected(Forbidden, "")
        .when(rule(true, "rude_staff", &["a1"]), supervisor("lead-b"))
        .then_rejected(Forbidden, "")
        // The cause must be on the list; everyone charged must be a registered agent.
        .when(rule(true, "weather", &["a1"]), inspector(INSPECTOR))
        .then_rejected(NotFound, "/payload/cause")
        .when(
            rule(true, "rude_staff", &["a1", "nobody"]),
            inspector(INSPECTOR),
        )
        .then_rejected(NotFound, "/payload/charged/1")
        // The team's lead rules it justified, charging a1 (team copied from the directory).
        .when(rule(true, "rude_staff", &["a1"]), supervisor("lead-a"))
        .then([ruled(
            1,
            true,
            "rude_staff",
            &[("a1", "alpha")],
            supervisor("lead-a"),
        )])
        // The inspector overrules: number 2, which supersedes the first.
        .when(rule(false, "product_defect", &[]), inspector(INSPECTOR))
        .then([ruled(2, false, "product_defect", &[], inspector(INSPECTOR))]);
}

#[test]
fn only_complaints_are_ruled_on_and_even_when_closed() {
    given([opened_standard(), assigned("a1", "alpha", None)])
        .when(rule(false, "slow_service", &[]), inspector(INSPECTOR))
        .then_rejected(InvalidTransition, "/payload/ticket_id");
    let g = given([
        opened_complaint(),
        assigned("a1", "alpha", None),
        resolved("apologised", "a1"),
        closed(),
    ]);
    // The inspector rules on a closed complaint, and may do nothing else with it.
    g.when(rule(true, "slow_service", &["a1"]), inspector(INSPECTOR))
        .then([ruled(
            1,
            true,
            "slow_service",
            &[("a1", "alpha")],
            inspector(INSPECTOR),
        )])
        .when(note("looked at it"), inspector(INSPECTOR))
        .then_rejected(Forbidden, "");
    given([opened_complaint(), assigned("a1", "alpha", None)])
        .when(close(), inspector(INSPECTOR))
        .then_rejected(Forbidden, "")
        .when(resolve("done"), inspector(INSPECTOR))
        .then_rejected(Forbidden, "");
}

#[test]
fn no_ruling_without_a_cause_list() {
    given_bare([opened_complaint()])
        .when(rule(false, "slow_service", &[]), system())
        .then_rejected(NotFound, "/payload/cause");
}

fn scorecard(team: Option<&str>) -> Command {
    Command::DefineScorecard(DefineScorecard {
        team: team.map(str::to_owned),
        effective_from: jiff::civil::date(2026, 12, 1),
        results_percent: 60,
        basic_percent: 30,
        discipline_percent: 10,
        bonus_per_excellent_rating: 0.5,
        bonus_cap_points: 10.0,
        deduction_per_justified_complaint: 2.0,
        deduction_cap_points: 10.0,
    })
}

#[test]
fn the_organisation_defines_the_scorecard_and_a_lead_their_teams() {
    let g = given([]);
    let defined = |team: Option<&str>| {
        let Command::DefineScorecard(c) = scorecard(team) else {
            unreachable!()
        };
        Event::ScorecardDefined(ScorecardDefined {
            team: c.team,
            effective_from: c.effective_from,
            results_percent: c.results_percent,
            basic_percent: c.basic_percent,
            discipline_percent: c.discipline_percent,
            bonus_per_excellent_rating: c.bonus_per_excellent_rating,
            bonus_cap_points: c.bonus_cap_points,
            deduction_per_justified_complaint: c.deduction_per_justified_complaint,
            deduction_cap_points: c.deduction_cap_points,
        })
    };
    g.when(scorecard(None), system())
        .then([defined(None)])
        .when(scorecard(Some("alpha")), supervisor("lead-a"))
        .then([defined(Some("alpha"))])
        // Not another team's, nor the organisation's; not an agent's, an inspector's or a
        // service's.
        .when(scorecard(Some("beta")), supervisor("lead-a"))
        .then_rejected(Forbidden, "/payload/team")
        .when(scorecard(None), supervisor("lead-a"))
        .then_rejected(Forbidden, "/payload/team")
        .when(scorecard(Some("alpha")), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(scorecard(Some("alpha")), inspector(INSPECTOR))
        .then_rejected(Forbidden, "")
        .when(scorecard(None), service())
        .then_rejected(Forbidden, "");
}

fn plan(kind: FollowUpKind, due_by: &str, owner: &str) -> Command {
    Command::ScheduleFollowUp(ScheduleFollowUp {
        ticket_id: TICKET,
        kind,
        due_by: at(due_by),
        owner: owner.into(),
    })
}

fn follow_up_record(n: u32, visited: Option<&str>, signed: Option<bool>) -> Command {
    Command::RecordFollowUp(RecordFollowUp {
        ticket_id: TICKET,
        follow_up: n,
        outcome: FollowUpOutcome::Satisfied,
        summary: "all well".into(),
        visited_at: visited.map(at),
        signed,
    })
}

fn planned(
    n: u32,
    kind: FollowUpKind,
    due_by: &str,
    warn_at: &str,
    owner: &str,
    team: &str,
) -> Event {
    Event::FollowUpScheduled(FollowUpScheduled {
        ticket_id: TICKET,
        follow_up: n,
        kind,
        due_by: at(due_by),
        warn_at: at(warn_at),
        owner: owner.into(),
        team: team.into(),
    })
}

#[test]
fn follow_ups_are_planned_recorded_once_and_a_late_visit_is_flagged() {
    use FollowUpKind::*;
    let closed_ticket = given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
        closed(),
    ]);
    let now = Some("2026-11-10T09:00:00Z");
    closed_ticket
        // An agent plans only their own; a supervisor within their team; never a service.
        .when_at(plan(Call, "2026-11-12T09:00:00Z", "a2"), agent("a1"), now)
        .then_rejected(Forbidden, "/payload/owner")
        .when_at(
            plan(Call, "2026-11-12T09:00:00Z", "b1"),
            supervisor("lead-a"),
            now,
        )
        .then_rejected(Forbidden, "/payload/owner")
        .when_at(plan(Call, "2026-11-12T09:00:00Z", "a1"), service(), now)
        .then_rejected(Forbidden, "")
        .when_at(plan(Call, "2026-11-10T08:00:00Z", "a1"), agent("a1"), now)
        .then_rejected(Validation, "/payload/due_by")
        .when_at(plan(Call, "2026-11-12T09:00:00Z", "ghost"), system(), now)
        .then_rejected(NotFound, "/payload/owner")
        // On the closed ticket: a call by a1, a visit by a3 (planned by the lead).
        .when_at(plan(Call, "2026-11-12T09:00:00Z", "a1"), agent("a1"), now)
        .then([planned(
            1,
            Call,
            "2026-11-12T09:00:00Z",
            "2026-11-11T09:00:00Z",
            "a1",
            "alpha",
        )])
        .when_at(
            plan(Visit, "2026-11-20T09:00:00Z", "a3"),
            supervisor("lead-a"),
            now,
        )
        .then([planned(
            2,
            Visit,
            "2026-11-20T09:00:00Z",
            "2026-11-19T09:00:00Z",
            "a3",
            "alpha",
        )])
        // Only the scheduler warns or marks overdue, once each, with the due time it has.
        .when(
            Command::RaiseFollowUpWarning(RaiseFollowUpWarning {
                ticket_id: TICKET,
                follow_up: 1,
                due_by: at("2026-11-12T09:00:00Z"),
            }),
            agent("a1"),
        )
        .then_rejected(Forbidden, "")
        .when(
            Command::RecordFollowUpOverdue(RecordFollowUpOverdue {
                ticket_id: TICKET,
                follow_up: 1,
                due_by: at("2026-11-12T09:00:00Z"),
            }),
            system(),
        )
        .then([Event::FollowUpOverdue(FollowUpOverdue {
            ticket_id: TICKET,
            follow_up: 1,
            due_by: at("2026-11-12T09:00:00Z"),
        })])
        .when(
            Command::RecordFollowUpOverdue(RecordFollowUpOverdue {
                ticket_id: TICKET,
                follow_up: 1,
                due_by: at("2026-11-12T09:00:00Z"),
            }),
            system(),
        )
        .then_rejected(InvalidTransition, "")
        // A call has no visit time; a visit needs one and the signature; number 3 is none.
        .when_at(
            follow_up_record(1, Some("2026-11-12T08:00:00Z"), None),
            agent("a1"),
            now,
        )
        .then_rejected(Validation, "/payload/visited_at")
        .when_at(follow_up_record(2, None, Some(true)), agent("a3"), now)
        .then_rejected(Validation, "/payload/visited_at")
        .when_at(
            follow_up_record(2, Some("2026-11-01T10:00:00Z"), None),
            agent("a3"),
            now,
        )
        .then_rejected(Validation, "/payload/signed")
        .when_at(follow_up_record(3, None, None), agent("a1"), now)
        .then_rejected(NotFound, "/payload/follow_up")
        // The visit's owner records it (though not the assignee), entered nine days after it
        // took place: flagged late. Another agent may not record it.
        .when_at(
            follow_up_record(2, Some("2026-11-01T10:00:00Z"), Some(true)),
            agent("a4"),
            now,
        )
        .then_rejected(Forbidden, "")
        .when_at(
            follow_up_record(2, Some("2026-11-01T10:00:00Z"), Some(true)),
            agent("a3"),
            now,
        )
        .then([Event::FollowUpRecorded(FollowUpRecorded {
            ticket_id: TICKET,
            follow_up: 2,
            kind: Visit,
            outcome: FollowUpOutcome::Satisfied,
            summary: "all well".into(),
            visited_at: Some(at("2026-11-01T10:00:00Z")),
            signed: Some(true),
            entered_late: true,
            recorded_by: "a3".into(),
        })])
        .when_at(
            follow_up_record(2, Some("2026-11-01T10:00:00Z"), Some(true)),
            agent("a3"),
            now,
        )
        .then_rejected(InvalidTransition, "/payload/follow_up")
        // The call, within the week rule (calls are never late entries).
        .when_at(follow_up_record(1, None, None), agent("a1"), now)
        .then_accepted();
}

#[test]
fn inspectors_draw_a_reproducible_sample_and_inspect_each_item_once() {
    let sample_id = uuid::Uuid::from_u128(7);
    let candidates: Vec<uuid::Uuid> = (1..=10u128).map(uuid::Uuid::from_u128).collect();
    let draw = |size: u32| {
        Command::DrawInspectionSample(DrawInspectionSample {
            sample_id,
            period: "2026-11".into(),
            agent_id: "a1".into(),
            size,
            seed: 42,
            candidates: candidates.clone(),
            reinspect: Vec::new(),
        })
    };
    // The draw is the three candidates whose UUID v5 key in the seed's namespace sorts first.
    let namespace = uuid::Uuid::from_u64_pair(42, 0);
    let mut keyed: Vec<_> = candidates
        .iter()
        .map(|id| (uuid::Uuid::new_v5(&namespace, id.as_bytes()), *id))
        .collect();
    keyed.sort();
    let expected: Vec<uuid::Uuid> = keyed.iter().take(3).map(|(_, id)| *id).collect();
    let drawn = Event::InspectionSampleDrawn(InspectionSampleDrawn {
        sample_id,
        period: "2026-11".into(),
        agent_id: "a1".into(),
        team: "alpha".into(),
        size: 3,
        seed: 42,
        candidates: candidates.clone(),
        reinspect: Vec::new(),
        items: expected.clone(),
    });
    let inspect = |ticket_id: uuid::Uuid, verdict: Verdict| {
        Command::RecordInspection(RecordInspection {
            sample_id,
            ticket_id,
            dimensions: Dimensions {
                recognition: 4,
                efficiency: 3,
                quality: 2,
                overall: 3,
            },
            log_complete: false,
            visit_verified: None,
            verdict,
            note: "log lacks the outcome".into(),
        })
    };
    let not_drawn = *candidates.iter().find(|c| !expected.contains(c)).unwrap();
    let overdue = |ticket_id: uuid::Uuid| {
        Command::RecordReinspectionOverdue(RecordReinspectionOverdue {
            sample_id,
            ticket_id,
        })
    };
    given([])
        // Staff never draw nor inspect; an unregistered inspector neither.
        .when(draw(3), supervisor("lead-a"))
        .then_rejected(Forbidden, "")
        .when(draw(3), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(draw(3), inspector("ghost"))
        .then_rejected(Forbidden, "")
        .when(inspect(expected[0], Verdict::Pass), inspector(INSPECTOR))
        .then_rejected(NotFound, "/payload/sample_id")
        .when(draw(3), inspector(INSPECTOR))
        .then([drawn])
        .when(draw(3), inspector(INSPECTOR))
        .then_rejected(InvalidTransition, "/payload/sample_id")
        .when(inspect(not_drawn, Verdict::Pass), inspector(INSPECTOR))
        .then_rejected(NotFound, "/payload/ticket_id")
        // A failed item is due again the next month.
        .when(inspect(expected[0], Verdict::Fail), inspector(INSPECTOR))
        .then([Event::InspectionRecorded(InspectionRecorded {
            sample_id,
            ticket_id: expected[0],
            period: "2026-11".into(),
            agent_id: "a1".into(),
            team: "alpha".into(),
            dimensions: Dimensions {
                recognition: 4,
                efficiency: 3,
                quality: 2,
                overall: 3,
            },
            log_complete: false,
            visit_verified: None,
            verdict: Verdict::Fail,
            note: "log lacks the outcome".into(),
            inspector: INSPECTOR.into(),
            reinspect_in: Some("2026-12".into()),
        })])
        .when(inspect(expected[0], Verdict::Pass), inspector(INSPECTOR))
        .then_rejected(InvalidTransition, "/payload/ticket_id")
        // Only the scheduler records a re-inspection overdue; only of a failed item; once.
        .when(overdue(expected[0]), inspector(INSPECTOR))
        .then_rejected(Forbidden, "")
        .when(overdue(expected[0]), supervisor("lead-a"))
        .then_rejected(Forbidden, "")
        .when(overdue(expected[1]), system())
        .then_rejected(InvalidTransition, "/payload/ticket_id")
        .when(overdue(expected[0]), system())
        .then([Event::ReinspectionOverdue(ReinspectionOverdue {
            sample_id,
            ticket_id: expected[0],
            period: "2026-11".into(),
            due_in: "2026-12".into(),
            agent_id: "a1".into(),
            team: "alpha".into(),
        })])
        .when(overdue(expected[0]), system())
        .then_rejected(InvalidTransition, "/payload/ticket_id");
    assert_eq!(
        draw_items(42, &candidates, 50).len(),
        10,
        "all when fewer than asked"
    );
}

const OTHER: uuid::Uuid = uuid::Uuid::from_u128(0x0190_c7b8_0000_7000_8000_0000_0000_0002);

/// `ticket_opened` of the second ticket.
fn opened_other() -> Event {
    let Event::TicketOpened(mut e) = opened_standard() else {
        unreachable!("opened_standard opens a ticket")
    };
    e.ticket_id = OTHER;
    Event::TicketOpened(e)
}

fn link_to(other: uuid::Uuid, relation: LinkRelation) -> Command {
    Command::LinkTickets(LinkTickets {
        ticket_id: TICKET,
        other_ticket_id: other,
        relation,
    })
}

fn merge_into(target: uuid::Uuid) -> Command {
    Command::MergeTicket(MergeTicket {
        ticket_id: TICKET,
        into_ticket_id: target,
        reason: "the same request by email".into(),
    })
}

fn linked(relation: LinkRelation) -> Event {
    Event::TicketLinked(TicketLinked {
        ticket_id: TICKET,
        other_ticket_id: OTHER,
        relation,
    })
}

fn merged_into() -> Event {
    Event::TicketMergedInto(TicketMergedInto {
        ticket_id: TICKET,
        into_ticket_id: OTHER,
        reason: "the same request by email".into(),
    })
}

#[test]
fn a_link_is_recorded_on_both_tickets_once_per_relation() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)]).other([opened_other()]);
    let events = g
        .when(link_to(OTHER, LinkRelation::CausedBy), agent("a1"))
        .accepted();
    assert_eq!(events, vec![linked(LinkRelation::CausedBy)]);
    // The other ticket records the inverse relation.
    assert_eq!(
        events[0].counterpart(),
        Some(Event::TicketLinked(TicketLinked {
            ticket_id: OTHER,
            other_ticket_id: TICKET,
            relation: LinkRelation::Causes,
        }))
    );
    let g = given([opened_standard(), assigned("a1", "alpha", None)])
        .other([opened_other()])
        .when(link_to(OTHER, LinkRelation::CausedBy), supervisor("lead-a"))
        .then([linked(LinkRelation::CausedBy)]);
    assert_eq!(
        g.ticket().links,
        vec![TicketLink {
            other_ticket_id: OTHER,
            relation: LinkRelation::CausedBy
        }]
    );
    // Once per pair and relation; another relation is another link.
    g.when(link_to(OTHER, LinkRelation::CausedBy), system())
        .then_rejected(InvalidTransition, "/payload/relation")
        .when(link_to(OTHER, LinkRelation::Related), system())
        .then([linked(LinkRelation::Related)]);
    for relation in LinkRelation::ALL {
        assert_eq!(relation.inverse().inverse(), *relation);
    }
}

#[test]
fn a_link_needs_another_existing_unmerged_ticket_and_someone_in_charge() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)]);
    g.when(link_to(OTHER, LinkRelation::Related), system())
        .then_rejected(NotFound, "/payload/other_ticket_id")
        .when(link_to(TICKET, LinkRelation::Related), system())
        .then_rejected(Validation, "/payload/other_ticket_id")
        .other([
            opened_other(),
            Event::TicketMergedInto(TicketMergedInto {
                ticket_id: OTHER,
                into_ticket_id: TICKET,
                reason: "dup".into(),
            }),
        ])
        .when(link_to(OTHER, LinkRelation::Related), system())
        .then_rejected(InvalidTransition, "/payload/other_ticket_id")
        .other([opened_other()])
        .when(link_to(OTHER, LinkRelation::Related), agent("b1"))
        .then_rejected(Forbidden, "")
        .when(link_to(OTHER, LinkRelation::Related), service())
        .then_rejected(Forbidden, "")
        .when(link_to(OTHER, LinkRelation::Related), auditor())
        .then_rejected(Forbidden, "");
    // A closed ticket is still linked to its problem.
    given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
        closed(),
    ])
    .other([opened_other()])
    .when(link_to(OTHER, LinkRelation::CausedBy), supervisor("lead-a"))
    .then([linked(LinkRelation::CausedBy)]);
}

#[test]
fn a_merged_ticket_accepts_nothing_and_names_its_target() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)])
        .other([opened_other()])
        .when(merge_into(OTHER), agent("a1"))
        .then([merged_into()]);
    assert_eq!(g.ticket().merged_into, Some(OTHER));
    assert_eq!(
        merged_into().counterpart(),
        Some(Event::TicketMerged(TicketMerged {
            ticket_id: OTHER,
            from_ticket_id: TICKET,
            reason: "the same request by email".into(),
        }))
    );
    let g = g.other([opened_other()]);
    for (command, actor) in [
        (respond("still there?"), agent("a1")),
        (note("late"), system()),
        (resolve("done"), agent("a1")),
        (merge_into(OTHER), system()),
        (link_to(OTHER, LinkRelation::Related), system()),
        (customer_reply("hello"), service()),
    ] {
        let rejection = decide(
            &g.ticket,
            &command,
            &Context {
                actor: &actor,
                directory: &g.directory,
                rules: &g.rules,
                opened_by: Some(&OPENER),
                at: None,
                other: g.other.as_ref(),
            },
        )
        .expect_err("a merged ticket accepts nothing");
        assert_eq!(rejection.code, InvalidTransition, "{rejection:?}");
        assert!(
            rejection.message.contains(&OTHER.to_string()),
            "{rejection:?}"
        );
    }
}

#[test]
fn a_merge_needs_an_open_unmerged_target_other_than_itself() {
    let g = given([opened_standard(), assigned("a1", "alpha", None)]);
    g.when(merge_into(OTHER), system())
        .then_rejected(NotFound, "/payload/into_ticket_id")
        .when(merge_into(TICKET), system())
        .then_rejected(Validation, "/payload/into_ticket_id")
        .other([
            opened_other(),
            assigned("a1", "alpha", None),
            resolved("done", "a1"),
            closed(),
        ])
        .when(merge_into(OTHER), system())
        .then_rejected(InvalidTransition, "/payload/into_ticket_id")
        .other([opened_other()])
        .when(merge_into(OTHER), agent("b1"))
        .then_rejected(Forbidden, "")
        .when(merge_into(OTHER), service())
        .then_rejected(Forbidden, "");
}

const ABSENCE: uuid::Uuid = uuid::Uuid::from_u128(0xab5e_0000_0000_7000_8000_0000_0000_0001);
const ABSENCE_2: uuid::Uuid = uuid::Uuid::from_u128(0xab5e_0000_0000_7000_8000_0000_0000_0002);

fn plan_absence(
    id: uuid::Uuid,
    agent_id: &str,
    from: &str,
    until: &str,
    backup: Option<&str>,
) -> Command {
    Command::PlanAbsence(PlanAbsence {
        absence_id: id,
        agent_id: agent_id.into(),
        from: support::at(from),
        until: support::at(until),
        reason: AbsenceReason::Leave,
        backup_agent_id: backup.map(str::to_owned),
    })
}

fn absence_planned(id: uuid::Uuid, agent_id: &str, from: &str, until: &str, backup: &str) -> Event {
    Event::AbsencePlanned(AbsencePlanned {
        absence_id: id,
        agent_id: agent_id.into(),
        from: support::at(from),
        until: support::at(until),
        reason: AbsenceReason::Leave,
        backup_agent_id: backup.into(),
    })
}

fn start_absence(id: uuid::Uuid, agent_id: &str) -> Command {
    Command::StartAbsence(StartAbsence {
        agent_id: agent_id.into(),
        absence_id: id,
    })
}

fn end_absence(id: uuid::Uuid, agent_id: &str) -> Command {
    Command::EndAbsence(EndAbsence {
        agent_id: agent_id.into(),
        absence_id: id,
    })
}

fn cancel_absence(id: uuid::Uuid, agent_id: &str) -> Command {
    Command::CancelAbsence(CancelAbsence {
        agent_id: agent_id.into(),
        absence_id: id,
    })
}

const PLANNED_AT: &str = "2026-03-02T09:00:00Z";
const FROM: &str = "2026-03-10T00:00:00Z";
const UNTIL: &str = "2026-03-20T00:00:00Z";

#[test]
fn an_absence_is_planned_ahead_with_the_registered_backup_by_default() {
    // a3 (line 2) plans their own leave: a4, their registered backup, covers.
    given([])
        .when_at(
            plan_absence(ABSENCE, "a3", FROM, UNTIL, None),
            agent("a3"),
            Some(PLANNED_AT),
        )
        .then([absence_planned(ABSENCE, "a3", FROM, UNTIL, "a4")]);
    // Their team lead may plan it, naming the backup; nothing moves yet.
    let g = given([])
        .when_at(
            plan_absence(ABSENCE, "a3", FROM, UNTIL, Some("lead-a")),
            supervisor("lead-a"),
            Some(PLANNED_AT),
        )
        .then_rejected(InvalidTransition, "/payload/backup_agent_id")
        .when_at(
            plan_absence(ABSENCE, "a4", FROM, UNTIL, None),
            supervisor("lead-a"),
            Some(PLANNED_AT),
        )
        .then([absence_planned(ABSENCE, "a4", FROM, UNTIL, "a3")]);
    let a4 = &g.directory.agents["a4"];
    assert!(a4.available, "planning moves nothing");
    assert_eq!(a4.absences.len(), 1);
}

#[test]
fn planning_an_absence_is_refused_with_the_field_at_fault() {
    let when =
        |g: Given, command: Command, actor: Actor| g.when_at(command, actor, Some(PLANNED_AT));
    let g = given([]);
    // Only the agent themselves, their team lead or the system.
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", FROM, UNTIL, None),
        agent("a4"),
    )
    .then_rejected(Forbidden, "");
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", FROM, UNTIL, None),
        supervisor("lead-b"),
    )
    .then_rejected(Forbidden, "");
    let g = when(g, plan_absence(ABSENCE, "a3", FROM, UNTIL, None), auditor())
        .then_rejected(Forbidden, "");
    let g = when(
        g,
        plan_absence(ABSENCE, "nobody", FROM, UNTIL, None),
        system(),
    )
    .then_rejected(NotFound, "/payload/agent_id");
    // The manuals' bound: one day to two months (Rules::absence_days_min/max).
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", FROM, "2026-03-10T23:00:00Z", None),
        system(),
    )
    .then_rejected(Validation, "/payload/until");
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", FROM, "2026-05-12T00:00:00Z", None),
        system(),
    )
    .then_rejected(Validation, "/payload/until");
    // Planned, not backdated.
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", "2026-03-01T00:00:00Z", UNTIL, None),
        system(),
    )
    .then_rejected(Validation, "/payload/from");
    // A backup who is registered, of the same line; a5 has no registered one.
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", FROM, UNTIL, Some("nobody")),
        system(),
    )
    .then_rejected(NotFound, "/payload/backup_agent_id");
    let g = when(
        g,
        plan_absence(ABSENCE, "a3", FROM, UNTIL, Some("a1")),
        system(),
    )
    .then_rejected(InvalidTransition, "/payload/backup_agent_id");
    let g = when(g, plan_absence(ABSENCE, "a5", FROM, UNTIL, None), system())
        .then_rejected(Validation, "/payload/backup_agent_id");
    // No two absences of one agent overlap, and the backup is not away then.
    let g = when(
        g,
        plan_absence(
            ABSENCE,
            "a4",
            "2026-03-15T00:00:00Z",
            "2026-03-25T00:00:00Z",
            None,
        ),
        system(),
    )
    .then_accepted();
    let g = when(
        g,
        plan_absence(
            ABSENCE_2,
            "a4",
            "2026-03-24T00:00:00Z",
            "2026-03-26T00:00:00Z",
            None,
        ),
        system(),
    )
    .then_rejected(InvalidTransition, "/payload/from");
    let g = when(
        g,
        plan_absence(
            ABSENCE,
            "a4",
            "2026-04-01T00:00:00Z",
            "2026-04-03T00:00:00Z",
            None,
        ),
        system(),
    )
    .then_rejected(InvalidTransition, "/payload/absence_id");
    let g = when(
        g,
        plan_absence(ABSENCE_2, "a3", FROM, UNTIL, None),
        system(),
    )
    .then_rejected(InvalidTransition, "/payload/agent_id");
    // A longer bound set in the rules admits a longer absence.
    let mut g = g;
    g.rules.absence_days_max = 120;
    when(
        g,
        plan_absence(
            ABSENCE_2,
            "a3",
            "2026-04-01T00:00:00Z",
            "2026-07-01T00:00:00Z",
            None,
        ),
        system(),
    )
    .then_accepted();
}

#[test]
fn an_absence_starts_and_ends_at_its_moments_by_the_scheduler_alone() {
    let g = given([absence_planned(ABSENCE, "a3", FROM, UNTIL, "a4")])
        .when_at(start_absence(ABSENCE, "a3"), agent("a3"), Some(FROM))
        .then_rejected(Forbidden, "")
        .when_at(
            start_absence(ABSENCE, "a3"),
            supervisor("lead-a"),
            Some(FROM),
        )
        .then_rejected(Forbidden, "")
        .when_at(
            start_absence(ABSENCE, "a3"),
            system(),
            Some("2026-03-09T23:59:59Z"),
        )
        .then_rejected(InvalidTransition, "/payload/absence_id")
        .when_at(end_absence(ABSENCE, "a3"), system(), Some(UNTIL))
        .then_rejected(InvalidTransition, "/payload/absence_id")
        .when_at(start_absence(ABSENCE_2, "a3"), system(), Some(FROM))
        .then_rejected(NotFound, "/payload/absence_id")
        .when_at(
            start_absence(ABSENCE, "a3"),
            system(),
            Some("2026-03-10T00:05:00Z"),
        )
        .then([Event::AbsenceStarted(AbsenceStarted {
            absence_id: ABSENCE,
            agent_id: "a3".into(),
            from: support::at(FROM),
            until: support::at(UNTIL),
            reason: AbsenceReason::Leave,
            backup_agent_id: "a4".into(),
        })]);
    let a3 = &g.directory.agents["a3"];
    assert!(!a3.available);
    assert_eq!(a3.covered_by.as_deref(), Some("a4"));
    let g = g
        .when_at(
            start_absence(ABSENCE, "a3"),
            system(),
            Some("2026-03-11T00:00:00Z"),
        )
        .then_rejected(InvalidTransition, "/payload/absence_id")
        .when_at(
            end_absence(ABSENCE, "a3"),
            system(),
            Some("2026-03-19T23:59:59Z"),
        )
        .then_rejected(InvalidTransition, "/payload/absence_id")
        .when_at(end_absence(ABSENCE, "a3"), system(), Some(UNTIL))
        .then([Event::AbsenceEnded(AbsenceEnded {
            absence_id: ABSENCE,
            agent_id: "a3".into(),
            from: support::at(FROM),
            until: support::at(UNTIL),
            reason: AbsenceReason::Leave,
            backup_agent_id: "a4".into(),
        })]);
    let a3 = &g.directory.agents["a3"];
    assert!(a3.available && a3.covered_by.is_none() && a3.absences.is_empty());
    g.when_at(end_absence(ABSENCE, "a3"), system(), Some(UNTIL))
        .then_rejected(NotFound, "/payload/absence_id")
        .when_at(cancel_absence(ABSENCE, "a3"), agent("a3"), Some(UNTIL))
        .then_rejected(NotFound, "/payload/absence_id");
}

#[test]
fn a_cancelled_absence_never_starts_and_one_under_way_ends_at_once() {
    let cancelled = |under_way| {
        Event::AbsenceCancelled(AbsenceCancelled {
            absence_id: ABSENCE,
            agent_id: "a3".into(),
            from: support::at(FROM),
            until: support::at(UNTIL),
            reason: AbsenceReason::Leave,
            backup_agent_id: "a4".into(),
            under_way,
        })
    };
    given([absence_planned(ABSENCE, "a3", FROM, UNTIL, "a4")])
        .when_at(cancel_absence(ABSENCE, "a3"), agent("a4"), Some(PLANNED_AT))
        .then_rejected(Forbidden, "")
        .when_at(
            cancel_absence(ABSENCE_2, "a3"),
            agent("a3"),
            Some(PLANNED_AT),
        )
        .then_rejected(NotFound, "/payload/absence_id")
        .when_at(cancel_absence(ABSENCE, "a3"), agent("a3"), Some(PLANNED_AT))
        .then([cancelled(false)])
        .when_at(start_absence(ABSENCE, "a3"), system(), Some(FROM))
        .then_rejected(NotFound, "/payload/absence_id");
    let g = given([absence_planned(ABSENCE, "a3", FROM, UNTIL, "a4")])
        .when_at(start_absence(ABSENCE, "a3"), system(), Some(FROM))
        .then_accepted()
        .when_at(
            cancel_absence(ABSENCE, "a3"),
            supervisor("lead-a"),
            Some("2026-03-12T00:00:00Z"),
        )
        .then([cancelled(true)]);
    let a3 = &g.directory.agents["a3"];
    assert!(a3.available && a3.covered_by.is_none());
}

#[test]
fn the_away_agent_adds_internal_notes_to_what_their_cover_took_over() {
    let g = given([
        absence_planned(ABSENCE, "a3", FROM, UNTIL, "a4"),
        opened_standard(),
        escalated(1, "needs line 2", None, Some(("a3", "alpha"))),
    ])
    .when_at(start_absence(ABSENCE, "a3"), system(), Some(FROM))
    .then_accepted()
    .and([assigned("a4", "alpha", Some("a3"))]);
    let visible = Command::AddNote(AddNote {
        ticket_id: TICKET,
        text: "told the customer".into(),
        visible_to_customer: true,
    });
    let g = g
        .when(note("the router was replaced last week"), agent("a3"))
        .then([Event::NoteAdded(NoteAdded {
            ticket_id: TICKET,
            text: "the router was replaced last week".into(),
            visible_to_customer: false,
        })])
        .when(visible, agent("a3"))
        .then_rejected(Forbidden, "")
        .when(respond("back soon"), agent("a3"))
        .then_rejected(Forbidden, "")
        .when(note("not mine"), agent("a1"))
        .then_rejected(Forbidden, "");
    // Back: the ticket is no longer theirs to note unless handed back.
    g.when_at(end_absence(ABSENCE, "a3"), system(), Some(UNTIL))
        .then_accepted()
        .when(note("still here"), agent("a3"))
        .then_rejected(Forbidden, "");
}

fn set_deadline(kind: &str, minutes: Option<u32>, due_at: Option<&str>, owner: &str) -> Command {
    Command::SetDeadline(SetDeadline {
        ticket_id: TICKET,
        kind: kind.into(),
        business_minutes: minutes,
        due_at: due_at.map(at),
        owner: owner.into(),
    })
}

fn deadline_set(n: u32, kind: &str, minutes: Option<u32>, due_at: Option<&str>) -> Event {
    let repair = kind == "repair";
    Event::DeadlineSet(DeadlineSet {
        ticket_id: TICKET,
        deadline: n,
        kind: kind.into(),
        owner: "a1".into(),
        team: "alpha".into(),
        business_minutes: minutes,
        due_at: due_at.map(at),
        // repair names the 24x7 calendar; paperwork takes the ticket's (p-base's office).
        calendar_id: Some(if repair { "always" } else { "office" }.into()),
        warn_before_minutes: if repair { 240 } else { 60 },
        on_breach: repair.then_some(DeadlineConsequence::FlagExchange),
    })
}

fn breach(n: u32, due_at: &str) -> Command {
    Command::RecordDeadlineBreach(RecordDeadlineBreach {
        ticket_id: TICKET,
        deadline: n,
        due_at: at(due_at),
    })
}

fn retention_policy(
    policy_id: &str,
    category: Option<Category>,
    grade: Option<Grade>,
    keep_days: u32,
) -> Command {
    Command::DefineRetentionPolicy(DefineRetentionPolicy {
        policy_id: policy_id.into(),
        matches: RetentionMatch { category, grade },
        keep_days,
        effective_from: support::at("2026-01-01T00:00:00Z"),
    })
}

fn retention_policy_defined(
    policy_id: &str,
    category: Option<Category>,
    grade: Option<Grade>,
    keep_days: u32,
) -> Event {
    Event::RetentionPolicyDefined(RetentionPolicyDefined {
        policy_id: policy_id.into(),
        matches: RetentionMatch { category, grade },
        keep_days,
        effective_from: support::at("2026-01-01T00:00:00Z"),
    })
}

#[test]
fn step_deadlines_are_set_met_warned_and_breached_once() {
    let now = Some("2026-11-10T09:00:00Z");
    let ticket = given([opened_standard(), assigned("a1", "alpha", None)])
        // The kind must be defined, the owner registered, an agent sets only their own, a
        // service none; an absolute due time lies ahead; one way of giving it.
        .when_at(set_deadline("warranty", None, None, "a1"), agent("a1"), now)
        .then_rejected(NotFound, "/payload/kind")
        .when_at(set_deadline("repair", None, None, "ghost"), system(), now)
        .then_rejected(NotFound, "/payload/owner")
        .when_at(set_deadline("repair", None, None, "a2"), agent("a1"), now)
        .then_rejected(Forbidden, "/payload/owner")
        .when_at(
            set_deadline("repair", None, None, "b1"),
            supervisor("lead-a"),
            now,
        )
        .then_rejected(Forbidden, "/payload/owner")
        .when_at(set_deadline("repair", None, None, "a1"), service(), now)
        .then_rejected(Forbidden, "")
        .when_at(
            set_deadline("repair", None, Some("2026-11-10T08:00:00Z"), "a1"),
            agent("a1"),
            now,
        )
        .then_rejected(Validation, "/payload/due_at")
        // The kind's default (72 business hours on its own calendar), then 90 minutes of
        // paperwork on the ticket's calendar, then an absolute due time.
        .when_at(set_deadline("repair", None, None, "a1"), agent("a1"), now)
        .then([deadline_set(1, "repair", Some(4320), None)])
        .when_at(
            set_deadline("paperwork", Some(90), None, "a1"),
            agent("a1"),
            now,
        )
        .then([deadline_set(2, "paperwork", Some(90), None)])
        .when_at(
            set_deadline("paperwork", None, Some("2026-11-11T09:00:00Z"), "a1"),
            supervisor("lead-a"),
            now,
        )
        .then([deadline_set(
            3,
            "paperwork",
            None,
            Some("2026-11-11T09:00:00Z"),
        )])
        // Warnings and breaches are the scheduler's alone, once each; an absolute due time
        // must be the one the command names; a breach never comes before its due time.
        .when(
            Command::RaiseDeadlineWarning(RaiseDeadlineWarning {
                ticket_id: TICKET,
                deadline: 1,
                due_at: at("2026-11-13T09:00:00Z"),
            }),
            agent("a1"),
        )
        .then_rejected(Forbidden, "")
        .when(
            Command::RaiseDeadlineWarning(RaiseDeadlineWarning {
                ticket_id: TICKET,
                deadline: 1,
                due_at: at("2026-11-13T09:00:00Z"),
            }),
            system(),
        )
        .then([Event::DeadlineWarningRaised(DeadlineWarningRaised {
            ticket_id: TICKET,
            deadline: 1,
            kind: "repair".into(),
            due_at: at("2026-11-13T09:00:00Z"),
        })])
        .when(
            Command::RaiseDeadlineWarning(RaiseDeadlineWarning {
                ticket_id: TICKET,
                deadline: 1,
                due_at: at("2026-11-13T09:00:00Z"),
            }),
            system(),
        )
        .then_rejected(InvalidTransition, "/payload/deadline")
        .when_at(
            breach(3, "2026-11-12T09:00:00Z"),
            system(),
            Some("2026-11-12T10:00:00Z"),
        )
        .then_rejected(InvalidTransition, "/payload/due_at")
        .when_at(
            breach(1, "2026-11-13T09:00:00Z"),
            system(),
            Some("2026-11-13T08:59:00Z"),
        )
        .then_rejected(InvalidTransition, "/payload/due_at")
        // The repair breached: its consequence flags the ticket for exchange.
        .when_at(
            breach(1, "2026-11-13T09:00:00Z"),
            system(),
            Some("2026-11-13T09:01:00Z"),
        )
        .then([Event::DeadlineBreached(DeadlineBreached {
            ticket_id: TICKET,
            deadline: 1,
            kind: "repair".into(),
            due_at: at("2026-11-13T09:00:00Z"),
            consequence: Some(DeadlineConsequence::FlagExchange),
        })])
        .when_at(
            breach(1, "2026-11-13T09:00:00Z"),
            system(),
            Some("2026-11-13T09:02:00Z"),
        )
        .then_rejected(InvalidTransition, "/payload/deadline")
        // The paperwork is done in time, once; the repair, done after its breach, is late;
        // another agent may not complete a1's deadline; number 4 is none.
        .when(
            Command::CompleteDeadline(CompleteDeadline {
                ticket_id: TICKET,
                deadline: 2,
            }),
            agent("a3"),
        )
        .then_rejected(Forbidden, "")
        .when(
            Command::CompleteDeadline(CompleteDeadline {
                ticket_id: TICKET,
                deadline: 4,
            }),
            agent("a1"),
        )
        .then_rejected(NotFound, "/payload/deadline")
        .when(
            Command::CompleteDeadline(CompleteDeadline {
                ticket_id: TICKET,
                deadline: 2,
            }),
            agent("a1"),
        )
        .then([Event::DeadlineMet(DeadlineMet {
            ticket_id: TICKET,
            deadline: 2,
            kind: "paperwork".into(),
            late: false,
            completed_by: "a1".into(),
        })])
        .when(
            Command::CompleteDeadline(CompleteDeadline {
                ticket_id: TICKET,
                deadline: 2,
            }),
            agent("a1"),
        )
        .then_rejected(InvalidTransition, "/payload/deadline")
        .when(
            Command::RecordDeadlineBreach(RecordDeadlineBreach {
                ticket_id: TICKET,
                deadline: 2,
                due_at: at("2026-11-10T10:30:00Z"),
            }),
            system(),
        )
        .then_rejected(InvalidTransition, "/payload/deadline")
        .when(
            Command::CompleteDeadline(CompleteDeadline {
                ticket_id: TICKET,
                deadline: 1,
            }),
            agent("a1"),
        )
        .then([Event::DeadlineMet(DeadlineMet {
            ticket_id: TICKET,
            deadline: 1,
            kind: "repair".into(),
            late: true,
            completed_by: "a1".into(),
        })]);
    let t = ticket.ticket();
    assert!(t.exchange_flagged, "the breached repair flags the exchange");
    assert_eq!(t.deadlines.len(), 3);
    assert!(t.deadlines[0].met && t.deadlines[0].breached && t.deadlines[0].warned);
    assert!(t.deadlines[1].met && !t.deadlines[1].breached);
    assert!(!t.deadlines[2].met && !t.deadlines[2].breached);
    // The exchange is then settled as one.
    ticket
        .when(
            Command::ResolveTicket(ResolveTicket {
                ticket_id: TICKET,
                resolution: "unit exchanged".into(),
                outcome: Some(ResolutionOutcome::Exchanged),
            }),
            agent("a1"),
        )
        .then([Event::TicketResolved(TicketResolved {
            ticket_id: TICKET,
            resolution: "unit exchanged".into(),
            agent_id: "a1".into(),
            outcome: Some(ResolutionOutcome::Exchanged),
        })]);
}

#[test]
fn a_closed_ticket_takes_step_deadlines_a_merged_one_none() {
    let now = Some("2026-11-10T09:00:00Z");
    given([
        opened_standard(),
        assigned("a1", "alpha", None),
        resolved("done", "a1"),
        closed(),
    ])
    .when_at(
        set_deadline("paperwork", Some(60), None, "a1"),
        agent("a1"),
        now,
    )
    .then([deadline_set(1, "paperwork", Some(60), None)])
    .when(
        Command::CompleteDeadline(CompleteDeadline {
            ticket_id: TICKET,
            deadline: 1,
        }),
        agent("a1"),
    )
    .then_accepted();
    given([
        opened_standard(),
        Event::TicketMergedInto(TicketMergedInto {
            ticket_id: TICKET,
            into_ticket_id: uuid::Uuid::from_u128(9),
            reason: "duplicate".into(),
        }),
    ])
    .when_at(set_deadline("paperwork", None, None, "a1"), system(), now)
    .then_rejected(InvalidTransition, "/payload/ticket_id");
}

#[test]
fn deadline_kinds_are_reference_data_of_supervisors_and_the_system() {
    let kind = |calendar: Option<&str>| {
        Command::DefineDeadlineKind(DefineDeadlineKind {
            kind: "onsite_response".into(),
            business_minutes: None,
            business_hours: Some(48),
            calendar_id: calendar.map(str::to_owned),
            warn_before_minutes: 120,
            on_breach: None,
        })
    };
    let defined = Event::DeadlineKindDefined(DeadlineKindDefined {
        kind: "onsite_response".into(),
        business_minutes: 2880,
        calendar_id: Some("office".into()),
        warn_before_minutes: 120,
        on_breach: None,
    });
    let g = given([])
        .when(kind(Some("office")), supervisor("lead-a"))
        .then([defined.clone()])
        .when(kind(Some("office")), system())
        .then([defined])
        .when(kind(Some("nowhere")), system())
        .then_rejected(NotFound, "/payload/calendar_id")
        .when(kind(None), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(kind(None), service())
        .then_rejected(Forbidden, "")
        .when(kind(None), inspector(INSPECTOR))
        .then_rejected(Forbidden, "");
    assert_eq!(
        g.directory.deadline_kinds["onsite_response"].business_minutes,
        2880
    );
}

#[test]
fn retention_policies_are_the_privacy_officers_and_the_most_specific_one_applies() {
    let officer = support::actor("dpo-1", Role::PrivacyOfficer);
    let g = given([])
        .when(retention_policy("all", None, None, 365), officer.clone())
        .then([retention_policy_defined("all", None, None, 365)])
        .when(
            retention_policy("repairs", Some(Repair), None, 730),
            system(),
        )
        .then([retention_policy_defined("repairs", Some(Repair), None, 730)])
        .when(
            retention_policy("vip-repairs", Some(Repair), Some(Grade::GroupA), 1825),
            officer.clone(),
        )
        .then([retention_policy_defined(
            "vip-repairs",
            Some(Repair),
            Some(Grade::GroupA),
            1825,
        )]);
    let keep = |g: &Given, grade, category| {
        g.directory
            .select_retention_policy(grade, category)
            .map(|p| (p.policy_id.clone(), p.keep_days))
    };
    assert_eq!(
        keep(&g, Grade::GroupA, Repair),
        Some(("vip-repairs".into(), 1825))
    );
    assert_eq!(
        keep(&g, Grade::Standard, Repair),
        Some(("repairs".into(), 730))
    );
    assert_eq!(
        keep(&g, Grade::GroupA, Complaint),
        Some(("all".into(), 365))
    );
    // Defining the same id again replaces it.
    let g = g
        .when(retention_policy("repairs", Some(Repair), None, 90), officer)
        .then([retention_policy_defined("repairs", Some(Repair), None, 90)]);
    assert_eq!(
        keep(&g, Grade::Standard, Repair),
        Some(("repairs".into(), 90))
    );
    assert_eq!(g.directory.retention_policies.len(), 3);
    // A tie between equally specific policies goes to the latest defined.
    let g = g
        .when(
            retention_policy("complaints", Some(Complaint), None, 30),
            system(),
        )
        .then_accepted()
        .when(
            retention_policy("standard", None, Some(Grade::Standard), 60),
            system(),
        )
        .then_accepted();
    assert_eq!(
        keep(&g, Grade::Standard, Complaint),
        Some(("standard".into(), 60))
    );
    // No policy at all: retention never applies.
    assert_eq!(
        given([])
            .directory
            .select_retention_policy(Grade::Standard, Repair),
        None
    );
}

#[test]
fn only_the_privacy_officer_and_provisioning_define_retention_policies() {
    let define = || retention_policy("all", None, None, 365);
    given([])
        .when(define(), supervisor("lead-a"))
        .then_rejected(Forbidden, "")
        .when(define(), agent("a1"))
        .then_rejected(Forbidden, "")
        .when(define(), service())
        .then_rejected(Forbidden, "")
        .when(define(), auditor())
        .then_rejected(Forbidden, "")
        .when(define(), inspector(support::INSPECTOR))
        .then_rejected(Forbidden, "");
}

#[test]
fn one_absence_is_under_way_at_a_time_and_an_absence_id_names_one_absence() {
    // A scheduler back after both the end of one absence and the start of the next ends the
    // first before it starts the second.
    let (from_2, until_2) = ("2026-04-01T00:00:00Z", "2026-04-03T00:00:00Z");
    let g = given([
        absence_planned(ABSENCE, "a3", FROM, UNTIL, "a4"),
        absence_planned(ABSENCE_2, "a3", from_2, until_2, "a4"),
    ])
    .when_at(start_absence(ABSENCE, "a3"), system(), Some(FROM))
    .then_accepted()
    .when_at(start_absence(ABSENCE_2, "a3"), system(), Some(from_2))
    .then_rejected(InvalidTransition, "/payload/absence_id")
    .when_at(end_absence(ABSENCE, "a3"), system(), Some(from_2))
    .then_accepted()
    .when_at(start_absence(ABSENCE_2, "a3"), system(), Some(from_2))
    .then_accepted();
    assert_eq!(
        g.directory.agents["a3"]
            .absence_under_way()
            .map(|a| a.absence_id),
        Some(ABSENCE_2)
    );
    // Another agent may not take an absence id a3's absence holds.
    g.when_at(
        plan_absence(
            ABSENCE_2,
            "a1",
            "2026-05-01T00:00:00Z",
            "2026-05-04T00:00:00Z",
            Some("a2"),
        ),
        system(),
        Some(PLANNED_AT),
    )
    .then_rejected(InvalidTransition, "/payload/absence_id");
}
