//! The SLA scheduler's due commands over the tables' fold, with hand-computed expectations
//! (the fixture is the projections' SLA tests', `projections/tests/support/sla_fold.rs`).

#[path = "../../../projections/tests/support/sla_fold.rs"]
mod sla_fold;

use closeloop_core::domain::*;
use sla_fold::*;

#[test]
fn a_moved_deadline_gets_its_own_breach() {
    use closeloop_process::scheduler::{command_id, due_commands};
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

#[test]
fn make_up_days_and_a_half_day_move_the_deadlines() {
    use closeloop_process::scheduler::{command_id, due_commands};
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
