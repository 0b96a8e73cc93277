//! SLA arithmetic through the tables' fold, with hand-computed expectations.
//!
//! The "office" calendar is Europe/Berlin (UTC+1 in November), Mon-Fri 08:00-18:00 and
//! Sat 09:00-13:00. 2026-11-23 is a Monday. The "shanghai" calendar (UTC+8) has make-up
//! working days and a half day around a week of holidays (see `Fold::new`).

#[path = "support/sla_fold.rs"]
mod sla_fold;

use closeloop_core::domain::*;
use closeloop_projections::report::{sla_report, ReportQuery};
use closeloop_projections::tables::{Folder, TableStore, TicketWork};
use sla_fold::*;

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
