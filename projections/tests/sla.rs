//! SLA arithmetic through the tables' fold, with hand-computed expectations.
//!
//! The "office" calendar is Europe/Berlin (UTC+1 in November), Mon-Fri 08:00-18:00 and
//! Sat 09:00-13:00. 2026-11-23 is a Monday. The "shanghai" calendar (UTC+8) has make-up
//! working days and a half day around a week of holidays (see `Fold::new`).

use std::collections::HashMap;
use std::sync::Arc;

use closeloop_core::domain::*;
use closeloop_projections::clock::status_at;
use closeloop_projections::record::Record;
use closeloop_projections::report::{sla_report, ReportQuery};
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::{Changes, Folder, TableStore, TicketWork};
use uuid::Uuid;

fn ts(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn iso(s: i64) -> String {
    jiff::Timestamp::from_second(s).unwrap().to_string()
}

const TICKET: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// The fold, and the tables it commits to after every event.
struct Fold {
    folder: Folder,
    works: HashMap<Uuid, TicketWork>,
    tables: Arc<MemoryTables>,
    generation: String,
    position: u64,
    runtime: tokio::runtime::Runtime,
}

impl Fold {
    fn new() -> Fold {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let tables = Arc::new(MemoryTables::new());
        let generation = runtime.block_on(tables.open()).unwrap().generation;
        let mut f = Fold {
            generation,
            folder: Folder::default(),
            works: HashMap::new(),
            tables,
            position: 0,
            runtime,
        };
        let office: Vec<WorkingHours> = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ]
        .into_iter()
        .map(|day| WorkingHours {
            day,
            start: "08:00".into(),
            end: "18:00".into(),
        })
        .chain([WorkingHours {
            day: Weekday::Sat,
            start: "09:00".into(),
            end: "13:00".into(),
        }])
        .collect();
        f.apply(
            "calendar-office",
            "2026-01-01T00:00:00Z",
            Event::CalendarDefined(CalendarDefined {
                calendar_id: "office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly_hours: office,
                holidays: vec!["2026-12-24".parse().unwrap(), "2026-12-25".parse().unwrap()],
                working_days: vec![],
                hours_overrides: vec![],
            }),
        );
        f.apply(
            "calendar-always",
            "2026-01-01T00:00:00Z",
            Event::CalendarDefined(CalendarDefined {
                calendar_id: "always".into(),
                time_zone: "UTC".into(),
                weekly_hours: Weekday::ALL
                    .iter()
                    .map(|&day| WorkingHours {
                        day,
                        start: "00:00".into(),
                        end: "24:00".into(),
                    })
                    .collect(),
                holidays: vec![],
                working_days: vec![],
                hours_overrides: vec![],
            }),
        );
        // Shanghai (UTC+8): Mon-Fri 09:00-12:00 and 13:00-18:00; the holidays Mon 2026-02-16
        // to Sun 2026-02-22, a half day (09:00-12:00) on Fri 2026-02-13, and the weekend
        // days Sun 2026-02-08 and Sat 2026-02-28 worked as weekdays.
        let day = |start: &str, end: &str| HoursSpan {
            start: start.into(),
            end: end.into(),
        };
        let weekdays = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ];
        f.apply(
            "calendar-shanghai",
            "2026-01-01T00:00:00Z",
            Event::CalendarDefined(CalendarDefined {
                calendar_id: "shanghai".into(),
                time_zone: "Asia/Shanghai".into(),
                weekly_hours: weekdays
                    .into_iter()
                    .flat_map(|day| {
                        [("09:00", "12:00"), ("13:00", "18:00")].map(|(start, end)| WorkingHours {
                            day,
                            start: start.into(),
                            end: end.into(),
                        })
                    })
                    .collect(),
                holidays: (16..=22).map(|d| jiff::civil::date(2026, 2, d)).collect(),
                working_days: [8, 28]
                    .map(|d| WorkingDay {
                        date: jiff::civil::date(2026, 2, d),
                        hours: vec![day("09:00", "12:00"), day("13:00", "18:00")],
                    })
                    .to_vec(),
                hours_overrides: vec![HoursOverride {
                    date: jiff::civil::date(2026, 2, 13),
                    hours: vec![day("09:00", "12:00")],
                }],
            }),
        );
        f
    }

    fn apply(&mut self, stream: &str, at: &str, event: Event) {
        self.position += 1;
        let record = Record {
            position: self.position,
            stream: stream.into(),
            at: ts(at),
            event,
        };
        let mut changes = Changes::default();
        self.folder
            .fold(&record, &mut self.works, &mut changes)
            .unwrap();
        self.folder.finish(&mut changes, &self.works);
        self.runtime
            .block_on(self.tables.commit(
                &self.generation,
                self.position - 1,
                self.position,
                changes,
            ))
            .unwrap();
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    fn ticket(&mut self, at: &str, event: Event) {
        self.apply(&format!("ticket-{TICKET}"), at, event);
    }

    fn open(&mut self, at: &str, grade: Grade, sla: SlaTargets) {
        self.ticket(
            at,
            Event::TicketOpened(TicketOpened {
                ticket_id: TICKET,
                customer_id: "c1".into(),
                grade,
                channel: Channel::Email,
                category: Category::Incident,
                priority: Priority::Normal,
                subject: "s".into(),
                description: None,
                sla: Some(sla),
            }),
        );
    }

    /// (status at `now`, due_at, warn_at, business minutes, calendar minutes) of a target.
    fn timer(
        &self,
        target: SlaTarget,
        now: &str,
    ) -> (&'static str, Option<String>, Option<String>, i64, i64) {
        let t = &self.works[&TICKET];
        let timer = t.clock.timers.iter().find(|x| x.target == target).unwrap();
        let (b, c) = t.clock.used_at(timer, ts(now), &self.folder.calendars);
        (
            status_at(&t.clock, timer, ts(now)),
            timer.due_at.map(iso),
            timer.warn_at.map(iso),
            b / 60,
            c / 60,
        )
    }
}

fn office_targets() -> SlaTargets {
    SlaTargets {
        policy_id: "standard".into(),
        calendar_id: "office".into(),
        first_response_minutes: 240,
        resolution_minutes: 2_400,
        next_response_minutes: Some(480),
        warn_at_percent: 80,
        confirmation_wait_days: None,
    }
}

fn info_requested() -> Event {
    Event::CustomerInfoRequested(CustomerInfoRequested {
        ticket_id: TICKET,
        question: "q".into(),
    })
}

fn replied() -> Event {
    Event::CustomerReplied(CustomerReplied {
        ticket_id: TICKET,
        message: "m".into(),
    })
}

#[test]
fn first_response_due_across_the_weekend() {
    // Opened Fri 27 Nov 17:00 local (16:00Z): 60 minutes on Friday, 180 on Saturday from 09:00
    // local: due Sat 12:00 local = 11:00Z. Warning at 80 % = 192 minutes: Sat 11:12 local.
    let mut f = Fold::new();
    f.open("2026-11-27T16:00:00Z", Grade::Standard, office_targets());
    let (status, due, warn, b, c) = f.timer(SlaTarget::FirstResponse, "2026-11-28T08:30:00Z");
    assert_eq!(status, "running");
    assert_eq!(due.as_deref(), Some("2026-11-28T11:00:00Z"));
    assert_eq!(warn.as_deref(), Some("2026-11-28T10:12:00Z"));
    // At Sat 09:30 local: 60 (Fri) + 30 (Sat) business minutes; 16.5 hours elapsed.
    assert_eq!((b, c), (90, 990));
    assert_eq!(
        f.timer(SlaTarget::FirstResponse, "2026-11-28T11:00:00Z").0,
        "breached"
    );
}

#[test]
fn pause_spanning_the_night() {
    // Opened Mon 23 Nov 16:00 local (15:00Z); at 17:00 local the agent asks the customer for
    // information: the first response is met after 60 minutes and the clocks stop.
    let mut f = Fold::new();
    f.open("2026-11-23T15:00:00Z", Grade::Standard, office_targets());
    f.ticket("2026-11-23T16:00:00Z", info_requested());
    let (status, due, _, b, c) = f.timer(SlaTarget::FirstResponse, "2026-11-24T12:00:00Z");
    assert_eq!((status, b, c), ("fulfilled", 60, 60));
    assert!(due.is_some());
    let (status, due, _, b, c) = f.timer(SlaTarget::Resolution, "2026-11-24T08:00:00Z");
    assert_eq!((status, due, b, c), ("paused", None, 60, 60));
    // The customer replies Tue 10:00 local (09:00Z): the resolution clock resumes with 2,340
    // minutes left: Tue 480, Wed 600, Thu 600, Fri 600 (= 2,280), Sat 09:00 + 60 -> 10:00
    // local = 09:00Z. Warning at 1,920 minutes: 1,860 left -> Fri 08:00 + 180 = 11:00 local.
    f.ticket("2026-11-24T09:00:00Z", replied());
    let (status, due, warn, b, c) = f.timer(SlaTarget::Resolution, "2026-11-25T07:00:00Z");
    assert_eq!(status, "running");
    assert_eq!(due.as_deref(), Some("2026-11-28T09:00:00Z"));
    assert_eq!(warn.as_deref(), Some("2026-11-27T10:00:00Z"));
    // At Wed 08:00 local: 60 + 480 (Tue 10-18) business minutes; 60 + 22 h calendar minutes.
    assert_eq!((b, c), (540, 1_380));
    // The reply starts a next-response clock: 480 minutes from Tue 10:00 local -> 18:00.
    let (status, due, _, _, _) = f.timer(SlaTarget::NextResponse, "2026-11-24T10:00:00Z");
    assert_eq!(
        (status, due.as_deref()),
        ("running", Some("2026-11-24T17:00:00Z"))
    );
}

#[test]
fn priority_change_mid_pause_keeps_the_paused_time() {
    let mut f = Fold::new();
    f.open("2026-11-23T15:00:00Z", Grade::Standard, office_targets());
    f.ticket("2026-11-23T16:00:00Z", info_requested());
    // Mon 21:00Z, still waiting for the customer: urgent now, 600 minutes to resolve.
    f.ticket(
        "2026-11-23T20:00:00Z",
        Event::PriorityChanged(PriorityChanged {
            ticket_id: TICKET,
            from: Priority::Normal,
            to: Priority::Urgent,
            reason: "outage".into(),
            sla: Some(SlaTargets {
                policy_id: "urgent".into(),
                resolution_minutes: 600,
                first_response_minutes: 60,
                next_response_minutes: Some(120),
                ..office_targets()
            }),
        }),
    );
    let (status, due, _, b, _) = f.timer(SlaTarget::Resolution, "2026-11-24T07:00:00Z");
    assert_eq!((status, due, b), ("paused", None, 60));
    // Resumed Tue 10:00 local with 540 left: Tue 480 -> Wed 08:00 + 60 = 09:00 local = 08:00Z.
    f.ticket("2026-11-24T09:00:00Z", replied());
    let (status, due, _, _, _) = f.timer(SlaTarget::Resolution, "2026-11-24T10:00:00Z");
    assert_eq!(
        (status, due.as_deref()),
        ("running", Some("2026-11-25T08:00:00Z"))
    );
    // The first response (already met after 60 minutes) stays final.
    assert_eq!(
        f.timer(SlaTarget::FirstResponse, "2026-11-24T10:00:00Z").0,
        "fulfilled"
    );
}

#[test]
fn priority_change_to_another_calendar_recomputes_from_history() {
    // Same history, but the new policy runs 24x7: on that calendar the pause (Mon 16:00Z to
    // Tue 09:00Z) still does not count, 60 minutes were used, 540 remain from Tue 09:00Z.
    let mut f = Fold::new();
    f.open("2026-11-23T15:00:00Z", Grade::VipDiamond, office_targets());
    f.ticket("2026-11-23T16:00:00Z", info_requested());
    f.ticket("2026-11-24T09:00:00Z", replied());
    f.ticket(
        "2026-11-24T10:00:00Z",
        Event::PriorityChanged(PriorityChanged {
            ticket_id: TICKET,
            from: Priority::Normal,
            to: Priority::Urgent,
            reason: "vip".into(),
            sla: Some(SlaTargets {
                policy_id: "vip".into(),
                calendar_id: "always".into(),
                first_response_minutes: 15,
                resolution_minutes: 600,
                next_response_minutes: Some(30),
                warn_at_percent: 50,
                confirmation_wait_days: None,
            }),
        }),
    );
    let (status, due, warn, b, c) = f.timer(SlaTarget::Resolution, "2026-11-24T10:00:00Z");
    assert_eq!(status, "running");
    assert_eq!(due.as_deref(), Some("2026-11-24T18:00:00Z"));
    // 50 % = 300 minutes: 240 left after Tue 09:00Z.
    assert_eq!(warn.as_deref(), Some("2026-11-24T13:00:00Z"));
    assert_eq!((b, c), (120, 120));
    // The next response started at the reply (Tue 09:00Z) now has 30 minutes: overdue.
    assert_eq!(
        f.timer(SlaTarget::NextResponse, "2026-11-24T10:00:00Z").0,
        "breached"
    );
}

#[test]
fn late_fulfilment_counts_as_breached_and_reopen_starts_a_new_clock() {
    let mut f = Fold::new();
    let diamond = SlaTargets {
        policy_id: "vip-diamond".into(),
        calendar_id: "always".into(),
        first_response_minutes: 15,
        resolution_minutes: 480,
        next_response_minutes: Some(60),
        warn_at_percent: 80,
        confirmation_wait_days: None,
    };
    f.open("2026-11-28T22:00:00Z", Grade::VipDiamond, diamond);
    f.ticket(
        "2026-11-28T22:20:00Z",
        Event::CustomerRespondedTo(CustomerRespondedTo {
            ticket_id: TICKET,
            message: "hi".into(),
        }),
    );
    assert_eq!(
        f.timer(SlaTarget::FirstResponse, "2026-11-29T00:00:00Z"),
        (
            "breached",
            Some("2026-11-28T22:15:00Z".into()),
            Some("2026-11-28T22:12:00Z".into()),
            20,
            20
        )
    );
    f.ticket(
        "2026-11-29T02:00:00Z",
        Event::TicketResolved(TicketResolved {
            ticket_id: TICKET,
            resolution: "done".into(),
            agent_id: "a".into(),
            outcome: None,
        }),
    );
    assert_eq!(
        f.timer(SlaTarget::Resolution, "2026-11-29T03:00:00Z").0,
        "fulfilled"
    );
    f.ticket(
        "2026-11-29T05:00:00Z",
        Event::TicketReopened(TicketReopened {
            ticket_id: TICKET,
            reason: "again".into(),
        }),
    );
    let (status, due, _, b, _) = f.timer(SlaTarget::Resolution, "2026-11-29T06:00:00Z");
    assert_eq!(
        (status, due.as_deref(), b),
        ("running", Some("2026-11-29T13:00:00Z"), 60)
    );
    // In the tables: the first response breached, the first resolution met, the second
    // resolution cycle running.
    let timers = f.block_on(f.tables.dump()).unwrap().sla_timers;
    let cycles: Vec<(&str, u32, Option<bool>, bool)> = timers
        .iter()
        .map(|t| (t.target.as_str(), t.cycle, t.met, t.latest))
        .collect();
    assert_eq!(
        cycles,
        [
            ("first_response", 1, Some(false), true),
            ("resolution", 1, Some(true), false),
            ("resolution", 2, None, true),
        ]
    );

    let report = f
        .block_on(sla_report(
            f.tables.as_ref(),
            &ReportQuery::default(),
            "2026-11-29T06:00:00Z".parse().unwrap(),
        ))
        .unwrap();
    let compliance = report["compliance"].as_array().unwrap();
    assert!(compliance.iter().any(|c| c["grade"] == "vip_diamond"
        && c["target"] == "first_response"
        && c["breached"] == 1
        && c["percent"] == 0.0));
    let timers = report["timers"].as_array().unwrap();
    assert_eq!(timers[0]["due_at"], "2026-11-28T22:15:00Z");
    assert!(timers
        .iter()
        .all(|t| t.get("business_minutes_used").is_some()
            && t.get("calendar_minutes_used").is_some()
            && t.get("target_minutes").is_some()));
}

#[test]
fn state_round_trips_byte_for_byte() {
    let mut f = Fold::new();
    f.open("2026-11-23T15:00:00Z", Grade::Standard, office_targets());
    f.ticket("2026-11-23T16:00:00Z", info_requested());
    let state = serde_json::to_string(&f.works[&TICKET]).unwrap();
    let back: TicketWork = serde_json::from_str(&state).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), state);
    let calendars = serde_json::to_string(&f.folder.calendars).unwrap();
    let restored = Folder::restore(Some(&calendars)).unwrap();
    assert_eq!(
        serde_json::to_string(&restored.calendars).unwrap(),
        calendars
    );
}

#[test]
fn a_moved_deadline_gets_its_own_breach() {
    use closeloop_projections::scheduler::{command_id, due_commands};
    let mut f = Fold::new();
    let diamond = SlaTargets {
        policy_id: "vip-diamond".into(),
        calendar_id: "always".into(),
        first_response_minutes: 15,
        resolution_minutes: 480,
        next_response_minutes: None,
        warn_at_percent: 80,
        confirmation_wait_days: None,
    };
    f.open("2026-11-28T22:00:00Z", Grade::VipDiamond, diamond.clone());
    // At 22:20 the scheduler, late, has the 22:12 warning and the breach of the 22:15
    // deadline to record, in that order, and nothing else (the resolution is far). Neither
    // names a business time: both are appended at the scheduler's decision time.
    let now: jiff::Timestamp = "2026-11-28T22:20:00Z".parse().unwrap();
    let due = f.block_on(due_commands(f.tables.as_ref(), now)).unwrap();
    let first_due: jiff::Timestamp = "2026-11-28T22:15:00Z".parse().unwrap();
    let ids: Vec<_> = due.iter().map(|c| c.command_id).collect();
    assert_eq!(
        ids,
        [
            command_id(TICKET, SlaTarget::FirstResponse, first_due, false),
            command_id(TICKET, SlaTarget::FirstResponse, first_due, true)
        ]
    );
    assert!(due.iter().all(|c| c.occurred_at.is_none()));
    // The warning names its own moment, the breach its deadline: the trail shows both.
    match &due[0].command {
        Command::RaiseSlaWarning(w) => {
            assert_eq!(w.warn_at, Some("2026-11-28T22:12:00Z".parse().unwrap()));
            assert_eq!(w.due_at, first_due);
        }
        other => panic!("the warning first, not {other:?}"),
    }
    f.ticket(
        "2026-11-28T22:15:00Z",
        Event::SlaBreached(SlaBreached {
            ticket_id: TICKET,
            target: SlaTarget::FirstResponse,
            due_at: first_due,
        }),
    );
    assert!(
        f.block_on(due_commands(f.tables.as_ref(), now))
            .unwrap()
            .is_empty(),
        "recorded once"
    );
    // The priority drops: 60 minutes now, a new deadline at 23:00, not breached yet.
    f.ticket(
        "2026-11-28T22:25:00Z",
        Event::PriorityChanged(PriorityChanged {
            ticket_id: TICKET,
            from: Priority::High,
            to: Priority::Normal,
            reason: "calmer".into(),
            sla: Some(SlaTargets {
                first_response_minutes: 60,
                ..diamond
            }),
        }),
    );
    let (status, due_at, warn_at, _, _) = f.timer(SlaTarget::FirstResponse, "2026-11-28T22:30:00Z");
    assert_eq!(status, "running");
    assert_eq!(due_at.as_deref(), Some("2026-11-28T23:00:00Z"));
    assert_eq!(warn_at.as_deref(), Some("2026-11-28T22:48:00Z"));
    let later: jiff::Timestamp = "2026-11-28T23:01:00Z".parse().unwrap();
    let due = f.block_on(due_commands(f.tables.as_ref(), later)).unwrap();
    let new_due: jiff::Timestamp = "2026-11-28T23:00:00Z".parse().unwrap();
    let ids: Vec<_> = due.iter().map(|c| c.command_id).collect();
    assert_eq!(
        ids,
        [
            command_id(TICKET, SlaTarget::FirstResponse, new_due, false),
            command_id(TICKET, SlaTarget::FirstResponse, new_due, true)
        ]
    );
}

fn shanghai_targets() -> SlaTargets {
    SlaTargets {
        policy_id: "cn".into(),
        calendar_id: "shanghai".into(),
        first_response_minutes: 480,
        resolution_minutes: 1_320,
        next_response_minutes: Some(480),
        warn_at_percent: 75,
        confirmation_wait_days: None,
    }
}

#[test]
fn make_up_days_and_a_half_day_move_the_deadlines() {
    use closeloop_projections::scheduler::{command_id, due_commands};
    // Opened Fri 02-06 17:00 local (09:00Z). First response, 480 minutes: Fri 60, Saturday
    // nothing, Sunday 02-08 is a make-up day: 180 (09-12) + 240 (13-17) -> Sun 17:00 local =
    // 09:00Z. The warning at 75 % (360): 60 + 180 + 120 -> Sun 15:00 local = 07:00Z.
    let mut f = Fold::new();
    f.open("2026-02-06T09:00:00Z", Grade::Standard, shanghai_targets());
    let (status, due, warn, b, c) = f.timer(SlaTarget::FirstResponse, "2026-02-07T12:00:00Z");
    assert_eq!(status, "running");
    assert_eq!(due.as_deref(), Some("2026-02-08T09:00:00Z"));
    assert_eq!(warn.as_deref(), Some("2026-02-08T07:00:00Z"));
    assert_eq!((b, c), (60, 27 * 60));
    // The scheduler: nothing due until the make-up Sunday at 15:00 local, then the
    // first response's warning (the resolution's, at 990 minutes, is Mon 02-09 17:30 local).
    let saturday: jiff::Timestamp = "2026-02-08T06:59:00Z".parse().unwrap();
    assert!(f
        .block_on(due_commands(f.tables.as_ref(), saturday))
        .unwrap()
        .is_empty());
    let sunday: jiff::Timestamp = "2026-02-08T07:00:00Z".parse().unwrap();
    let due_at: jiff::Timestamp = "2026-02-08T09:00:00Z".parse().unwrap();
    let ids: Vec<_> = f
        .block_on(due_commands(f.tables.as_ref(), sunday))
        .unwrap()
        .iter()
        .map(|c| c.command_id)
        .collect();
    assert_eq!(
        ids,
        [command_id(TICKET, SlaTarget::FirstResponse, due_at, false)]
    );
    let (_, _, warn, _, _) = f.timer(SlaTarget::Resolution, "2026-02-08T07:00:00Z");
    assert_eq!(warn.as_deref(), Some("2026-02-09T09:30:00Z"));

    // Sun 10:00 local (02:00Z) the agent asks the customer: first response met in 120
    // minutes, the resolution clock stops with 120 used. The customer replies Thu 02-12
    // 16:00 local (08:00Z): 1,200 left: Thu 120, the half day 180, the holiday week nothing,
    // Mon 02-23 480, Tue 02-24 180 + 240 -> 17:00 local = 09:00Z.
    f.ticket("2026-02-08T02:00:00Z", info_requested());
    let (status, _, _, b, _) = f.timer(SlaTarget::FirstResponse, "2026-02-09T00:00:00Z");
    assert_eq!((status, b), ("fulfilled", 120));
    f.ticket("2026-02-12T08:00:00Z", replied());
    let (status, due, _, b, _) = f.timer(SlaTarget::Resolution, "2026-02-20T00:00:00Z");
    assert_eq!(status, "running");
    assert_eq!(due.as_deref(), Some("2026-02-24T09:00:00Z"));
    // Thu 120 + the half day 180 + the 120 before the pause; the holidays count nothing.
    assert_eq!(b, 420);
    // The next response, 480 from the reply: Thu 120, the half day 180, Mon 02-23 09-12 ->
    // 12:00 local = 04:00Z.
    let (_, due, _, _, _) = f.timer(SlaTarget::NextResponse, "2026-02-20T00:00:00Z");
    assert_eq!(due.as_deref(), Some("2026-02-23T04:00:00Z"));

    // Mon 02-23 10:00 local (02:00Z) the ticket turns urgent, 900 minutes on the same
    // calendar, recomputed from the history: 120 + 120 + 180 + 60 = 480 used, 420 left ->
    // Mon 10-12 120, 13:00 + 300 -> 18:00 local = 10:00Z. The warning at 675: 195 left ->
    // 120 by 12:00, 13:00 + 75 -> 14:15 local = 06:15Z.
    f.ticket(
        "2026-02-23T02:00:00Z",
        Event::PriorityChanged(PriorityChanged {
            ticket_id: TICKET,
            from: Priority::Normal,
            to: Priority::Urgent,
            reason: "outage".into(),
            sla: Some(SlaTargets {
                resolution_minutes: 900,
                ..shanghai_targets()
            }),
        }),
    );
    let (status, due, warn, b, _) = f.timer(SlaTarget::Resolution, "2026-02-23T02:00:00Z");
    assert_eq!(status, "running");
    assert_eq!(due.as_deref(), Some("2026-02-23T10:00:00Z"));
    assert_eq!(warn.as_deref(), Some("2026-02-23T06:15:00Z"));
    assert_eq!(b, 480);
}
