//! The lean decoding (`Lean::from_json`, with its fast path for the log's compact envelope)
//! against the full one (`StoredEvent::decode` into `Event`): for generated ticket histories
//! (random names and texts, escapes and non-ASCII included), every event decodes to the same
//! fact.

use closeloop_core::domain::*;
use closeloop_core::log::{Metadata, StoredEvent};
use closeloop_projections::fact::Lean;
use closeloop_projections::record::Record;
use proptest::prelude::*;
use uuid::Uuid;

/// Text as users type it: quotes, backslashes, newlines and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    "[a-z \"\\\\\n\té€😀]{0,12}"
}

/// Names from a small set, so interning is exercised, sometimes with a character to escape.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "(front|back)-[ab]-[1-3]",
        1 => "[a-z\"\\\\é]{1,6}",
    ]
}

fn targets() -> impl Strategy<Value = Option<SlaTargets>> {
    proptest::option::of(
        (
            prop_oneof![
                Just("office".to_owned()),
                Just("nowhere".to_owned()),
                name()
            ],
            1u32..600,
            1u32..6000,
            proptest::option::of(1u32..600),
            1u8..=100,
            text(),
        )
            .prop_map(
                |(calendar_id, first, resolution, next, warn, policy)| SlaTargets {
                    policy_id: policy,
                    calendar_id,
                    first_response_minutes: first,
                    resolution_minutes: resolution,
                    next_response_minutes: next,
                    warn_at_percent: warn,
                    confirmation_wait_days: None,
                },
            ),
    )
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

/// One event of an opened ticket.
fn ticket_event(ticket_id: Uuid) -> impl Strategy<Value = Event> {
    let id = ticket_id;
    prop_oneof![
        (name(), name(), proptest::option::of(name())).prop_map(move |(a, t, p)| {
            Event::TicketAssigned(TicketAssigned {
                ticket_id: id,
                agent_id: a,
                team: t,
                previous_agent_id: p,
            })
        }),
        (
            text(),
            proptest::option::of(name()),
            proptest::option::of(name()),
            proptest::option::of(name())
        )
            .prop_map(move |(reason, from, to, team)| {
                Event::TicketEscalated(TicketEscalated {
                    ticket_id: id,
                    from_line: 1,
                    to_line: 2,
                    reason,
                    from_agent_id: from,
                    to_agent_id: to,
                    to_team: team,
                })
            }),
        text().prop_map(
            move |message| Event::CustomerRespondedTo(CustomerRespondedTo {
                ticket_id: id,
                message
            })
        ),
        text().prop_map(
            move |question| Event::CustomerInfoRequested(CustomerInfoRequested {
                ticket_id: id,
                question
            })
        ),
        text().prop_map(move |message| Event::CustomerReplied(CustomerReplied {
            ticket_id: id,
            message
        })),
        (pick(Priority::ALL), pick(Priority::ALL), text(), targets()).prop_map(
            move |(from, to, reason, sla)| Event::PriorityChanged(PriorityChanged {
                ticket_id: id,
                from,
                to,
                reason,
                sla,
            })
        ),
        (text(), any::<bool>()).prop_map(move |(text, visible)| Event::NoteAdded(NoteAdded {
            ticket_id: id,
            text,
            visible_to_customer: visible,
        })),
        (text(), name()).prop_map(move |(resolution, agent)| {
            Event::TicketResolved(TicketResolved {
                ticket_id: id,
                resolution,
                agent_id: agent,
                outcome: None,
            })
        }),
        text().prop_map(move |reason| Event::TicketReopened(TicketReopened {
            ticket_id: id,
            reason
        })),
        Just(Event::TicketClosed(TicketClosed {
            ticket_id: id,
            reason: CloseReason::Staff,
            answer_due_at: None,
        })),
        (
            1u8..=5,
            pick(&[RatingSource::Survey, RatingSource::Callback]),
            proptest::option::of(text()),
            proptest::option::of((1u8..=5, 1u8..=5, 1u8..=5, 1u8..=5)),
            proptest::option::of(name()),
            1u32..3,
        )
            .prop_map(move |(score, source, comment, dims, agent, resolution)| {
                Event::SatisfactionRecorded(SatisfactionRecorded {
                    ticket_id: id,
                    score,
                    source,
                    comment,
                    dimensions: dims.map(|(r, e, q, o)| Dimensions {
                        recognition: r,
                        efficiency: e,
                        quality: q,
                        overall: o,
                    }),
                    agent_id: agent,
                    resolution,
                })
            }),
        (
            pick(&[
                SlaTarget::FirstResponse,
                SlaTarget::NextResponse,
                SlaTarget::Resolution
            ]),
            0i64..2_000_000,
            any::<bool>()
        )
            .prop_map(move |(target, due, breach)| {
                let due_at = jiff::Timestamp::from_second(1_790_000_000 + due).unwrap();
                if breach {
                    Event::SlaBreached(SlaBreached {
                        ticket_id: id,
                        target,
                        due_at,
                    })
                } else {
                    Event::SlaWarningRaised(SlaWarningRaised {
                        ticket_id: id,
                        target,
                        due_at,
                        warn_at: None,
                    })
                }
            }),
    ]
}

fn opened(ticket_id: Uuid) -> impl Strategy<Value = Event> {
    (
        name(),
        pick(Grade::ALL),
        pick(Channel::ALL),
        pick(Category::ALL),
        pick(Priority::ALL),
        text(),
        proptest::option::of(text()),
        targets(),
    )
        .prop_map(
            move |(customer, grade, channel, category, priority, subject, description, sla)| {
                Event::TicketOpened(TicketOpened {
                    ticket_id,
                    customer_id: customer,
                    grade,
                    channel,
                    category,
                    priority,
                    subject,
                    description,
                    sla,
                })
            },
        )
}

/// A history: the directory events the models read, then tickets opened and worked,
/// interleaved, each event a few minutes (at random) after the previous one.
fn history() -> impl Strategy<Value = Vec<(String, i64, Event)>> {
    let tickets = proptest::collection::vec(
        (
            any::<u128>(),
            proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ),
        1..5,
    );
    tickets
        .prop_flat_map(|tickets| {
            let per_ticket: Vec<_> = tickets
                .iter()
                .map(|(id, steps)| {
                    let id = Uuid::from_u128(*id);
                    (
                        opened(id),
                        proptest::collection::vec(ticket_event(id), steps.len()),
                    )
                })
                .collect();
            (
                per_ticket,
                proptest::collection::vec(0u8..4, 0..64),
                proptest::collection::vec(0i64..20_000, 64),
                (name(), name(), text()),
            )
        })
        .prop_map(|(per_ticket, order, gaps, (agent, team, agent_name))| {
            let mut events = vec![
                (
                    "calendar-office".to_owned(),
                    Event::CalendarDefined(CalendarDefined {
                        calendar_id: "office".into(),
                        time_zone: "Europe/Berlin".into(),
                        weekly_hours: [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Fri]
                            .into_iter()
                            .map(|day| WorkingHours {
                                day,
                                start: "08:00".into(),
                                end: "17:30".into(),
                            })
                            .collect(),
                        holidays: vec!["2026-10-26".parse().unwrap()],
                        // A Sunday worked, a Wednesday closed, a half day on the Friday.
                        working_days: vec![WorkingDay {
                            date: "2026-10-25".parse().unwrap(),
                            hours: vec![HoursSpan {
                                start: "09:00".into(),
                                end: "13:00".into(),
                            }],
                        }],
                        hours_overrides: vec![
                            HoursOverride {
                                date: "2026-10-28".parse().unwrap(),
                                hours: vec![],
                            },
                            HoursOverride {
                                date: "2026-10-30".parse().unwrap(),
                                hours: vec![HoursSpan {
                                    start: "08:00".into(),
                                    end: "12:00".into(),
                                }],
                            },
                        ],
                    }),
                ),
                (
                    format!("agent-{agent}"),
                    Event::AgentRegistered(AgentRegistered {
                        agent_id: agent,
                        name: agent_name,
                        team,
                        line: 1,
                        level: Level::ALL[0],
                        team_lead: false,
                        backup_agent_id: None,
                    }),
                ),
            ];
            // Tickets' events interleaved in the order drawn; each ticket keeps its own order.
            let mut queues: Vec<(String, std::collections::VecDeque<Event>)> = per_ticket
                .into_iter()
                .map(|(open, rest)| {
                    let id = open.ticket_id().unwrap();
                    let mut q = std::collections::VecDeque::from(rest);
                    q.push_front(open);
                    (format!("ticket-{id}"), q)
                })
                .collect();
            let mut pick = order.into_iter().cycle();
            while queues.iter().any(|(_, q)| !q.is_empty()) {
                let live: Vec<usize> = (0..queues.len())
                    .filter(|&i| !queues[i].1.is_empty())
                    .collect();
                let i = live[usize::from(pick.next().unwrap_or(0)) % live.len()];
                let event = queues[i].1.pop_front().unwrap();
                events.push((queues[i].0.clone(), event));
            }
            let mut at = 1_790_000_000i64;
            events
                .into_iter()
                .zip(gaps.into_iter().cycle())
                .map(|((stream, event), gap)| {
                    at += gap;
                    (stream, at, event)
                })
                .collect()
        })
}

fn stored(position: u64, stream: &str, at: i64, event: &Event) -> StoredEvent {
    let at = jiff::Timestamp::from_second(at).unwrap();
    StoredEvent {
        position,
        stream: stream.to_owned(),
        version: position,
        event_id: Uuid::from_u128(u128::from(position)),
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        data: event.data(),
        metadata: Metadata {
            command_id: Uuid::from_u128(7),
            correlation_id: Uuid::from_u128(8),
            causation_id: Uuid::from_u128(9),
            actor: Actor::system("t\"é"),
            occurred_at: at,
            recorded_at: at,
            command_hash: None,
        },
        hash: "ab".repeat(32),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lean_decoding_gives_the_fact_of_the_full_event(history in history()) {
        for (i, (stream, at, event)) in history.iter().enumerate() {
            let stored = stored(i as u64 + 1, stream, *at, event);
            let compact = serde_json::to_vec(&stored).unwrap();
            let pretty = serde_json::to_vec_pretty(&stored).unwrap();
            let record = Record::from_stored(&stored).unwrap();
            prop_assert_eq!(&record.event, event);
            let from_compact = Lean::from_json(&compact).unwrap();
            // The compact form (the fast path unless a string holds an escape) and the general
            // path (pretty-printed: whitespace) give the fact of the full event.
            prop_assert_eq!(&from_compact, &record.lean());
            prop_assert_eq!(&Lean::from_json(&pretty).unwrap(), &record.lean());
            prop_assert_eq!(&Record::from_json(&compact).unwrap(), &record);
        }
    }

    /// Damaged input: the lean decoder refuses what the full one refuses (the fast path never
    /// accepts what the general path would not).
    #[test]
    fn lean_refuses_what_full_refuses(history in history(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (stream, at, event) = &history[history.len() - 1];
        let json = serde_json::to_vec(&stored(1, stream, *at, event)).unwrap();
        let mut damaged = json.clone();
        damaged[cut.index(json.len())] = byte;
        let full = Record::from_json(&damaged);
        let lean = Lean::from_json(&damaged);
        prop_assert_eq!(full.is_ok(), lean.is_ok(), "{}", String::from_utf8_lossy(&damaged));
        if let (Ok(full), Ok(lean)) = (full, lean) {
            prop_assert_eq!(full.lean(), lean);
        }
    }
}

#[test]
fn every_event_type_has_a_fact() {
    // Directory events no report fold reads decode (in full) to `Fact::Other`; an unknown
    // type is an error, as in the full decoder.
    let event = Event::CustomerRegistered(CustomerRegistered {
        customer_id: "c".into(),
        name: "n".into(),
        grade: Grade::ALL[0],
        account_manager_id: None,
    });
    let json = serde_json::to_vec(&stored(1, "customer-c", 1_790_000_000, &event)).unwrap();
    assert_eq!(
        Lean::from_json(&json).unwrap().fact,
        closeloop_projections::fact::Fact::Other
    );
    let unknown = String::from_utf8(json)
        .unwrap()
        .replace("customer_registered", "customer_vanished");
    assert!(Lean::from_json(unknown.as_bytes()).is_err());
    assert!(Record::from_json(unknown.as_bytes()).is_err());
}
