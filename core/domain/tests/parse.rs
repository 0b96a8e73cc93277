//! Strict command decoding: every failure is a `validation` rejection whose first detail
//! points (JSON Pointer) at the offending field, and the `command_id` is recovered when it
//! was readable.

use closeloop_domain::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

const ID: &str = "0190c7b8-5f2a-7cc1-8d3e-2b6a9f4e1c07";
const TICKET_ID: &str = "0190c7b8-0000-7000-8000-000000000001";

fn command_id() -> Uuid {
    ID.parse().unwrap()
}

/// A valid command of `command_type` with this payload.
fn command(command_type: &str, payload: Value) -> Value {
    json!({
        "command_id": ID,
        "type": command_type,
        "actor": {"id": "lead-a", "role": "supervisor"},
        "occurred_at": "2026-11-23T09:15:00Z",
        "expected_version": 4,
        "payload": payload,
    })
}

fn open_ticket() -> Value {
    command(
        "open_ticket",
        json!({
            "ticket_id": TICKET_ID, "customer_id": "c-17", "channel": "phone",
            "category": "repair", "priority": "high", "subject": "Broken screen",
        }),
    )
}

fn satisfaction(score: Value, source: &str) -> Value {
    command(
        "record_satisfaction",
        json!({"ticket_id": TICKET_ID, "score": score, "source": source}),
    )
}

fn sla_policy() -> Value {
    command(
        "define_sla_policy",
        json!({
            "policy_id": "p-vip", "match": {"grade": "vip_diamond", "priority": "urgent"},
            "first_response_minutes": 15, "resolution_minutes": 240,
            "next_response_minutes": 60, "calendar_id": "office", "warn_at_percent": 80,
        }),
    )
}

fn calendar() -> Value {
    command(
        "define_calendar",
        json!({
            "calendar_id": "office", "time_zone": "Europe/Berlin",
            "weekly_hours": [
                {"day": "mon", "start": "09:00", "end": "17:00"},
                {"day": "sat", "start": "00:00", "end": "24:00"},
            ],
            "holidays": ["2026-12-25"],
        }),
    )
}

fn register_agent() -> Value {
    command(
        "register_agent",
        json!({
            "agent_id": "agent-17", "name": "Ada", "team": "alpha", "line": 2,
            "level": "senior", "team_lead": false, "backup_agent_id": "agent-18",
        }),
    )
}

/// `value` with the field at `pointer` set (or, with `None`, removed).
fn with(mut value: Value, pointer: &str, new: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let parent = value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (parent, new) {
        (Value::Object(map), Some(new)) => {
            map.insert(key.to_owned(), new);
        }
        (Value::Object(map), None) => {
            map.remove(key).unwrap_or_else(|| panic!("no {pointer}"));
        }
        (Value::Array(items), Some(new)) => items[key.parse::<usize>().unwrap()] = new,
        (other, _) => panic!("cannot edit {other:?}"),
    }
    value
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[track_caller]
fn accepted(value: &Value) -> CommandEnvelope {
    parse_command(&bytes(value)).unwrap_or_else(|f| panic!("{value} was rejected: {f:?}"))
}

/// Asserts a validation failure whose first detail is at `path`; returns it.
#[track_caller]
fn rejected_raw(input: &[u8], path: &str) -> ParseFailure {
    let failure = match parse_command(input) {
        Ok(envelope) => panic!("accepted: {envelope:?}"),
        Err(failure) => failure,
    };
    assert_eq!(
        failure.rejection.code,
        RejectionCode::Validation,
        "{failure:?}"
    );
    let detail = failure
        .rejection
        .details
        .first()
        .unwrap_or_else(|| panic!("no details: {failure:?}"));
    assert_eq!(detail.path, path, "{failure:?}");
    assert!(!detail.message.is_empty());
    assert!(
        failure.rejection.message.contains(&detail.message),
        "{failure:?}"
    );
    failure
}

#[track_caller]
fn rejected(value: &Value, path: &str) -> ParseFailure {
    let failure = rejected_raw(&bytes(value), path);
    // Everything before the payload is valid in these inputs, so the id is recovered.
    if value.get("command_id") == Some(&json!(ID)) {
        assert_eq!(failure.command_id, Some(command_id()), "{failure:?}");
    }
    failure
}

// ---------- well-formed input ----------

#[test]
fn the_design_example_parses() {
    let envelope = accepted(&command(
        "assign_ticket",
        json!({"ticket_id": TICKET_ID, "agent_id": "agent-17"}),
    ));
    assert_eq!(envelope.command_id, command_id());
    assert_eq!(
        envelope.actor,
        Actor {
            id: "lead-a".into(),
            role: Role::Supervisor
        }
    );
    assert_eq!(envelope.expected_version, Some(4));
    assert_eq!(
        envelope.occurred_at,
        Some("2026-11-23T09:15:00Z".parse().unwrap())
    );
    assert_eq!(
        envelope.command,
        Command::AssignTicket(AssignTicket {
            ticket_id: TICKET_ID.parse().unwrap(),
            agent_id: "agent-17".into(),
        })
    );
}

#[test]
fn optional_envelope_fields_may_be_absent_or_null() {
    let bare = with(
        with(open_ticket(), "/occurred_at", None),
        "/expected_version",
        None,
    );
    let envelope = accepted(&bare);
    assert_eq!(
        (envelope.occurred_at, envelope.expected_version),
        (None, None)
    );
    let nulls = with(
        with(open_ticket(), "/occurred_at", Some(Value::Null)),
        "/expected_version",
        Some(Value::Null),
    );
    assert_eq!(accepted(&nulls), envelope);
}

#[test]
fn every_kind_of_command_parses() {
    for value in [
        open_ticket(),
        calendar(),
        sla_policy(),
        register_agent(),
        satisfaction(json!(5), "survey"),
        command(
            "record_satisfaction",
            json!({"ticket_id": TICKET_ID, "score": 1, "source": "callback", "comment": "meh",
                   "dimensions": {"recognition": 1, "efficiency": 2, "quality": 3, "overall": 5}}),
        ),
        command(
            "escalate_ticket",
            json!({"ticket_id": TICKET_ID, "reason": "specialist", "to_agent_id": "a3"}),
        ),
        command(
            "add_note",
            json!({"ticket_id": TICKET_ID, "text": "internal"}),
        ),
        command(
            "set_agent_availability",
            json!({"agent_id": "a1", "available": false, "backup_agent_id": "a2"}),
        ),
        command(
            "register_customer",
            json!({"customer_id": "c-1", "name": "ACME", "grade": "group_a"}),
        ),
        command(
            "raise_sla_warning",
            json!({"ticket_id": TICKET_ID, "target": "first_response", "due_at": "2026-11-23T10:00:00Z"}),
        ),
        command("close_ticket", json!({"ticket_id": TICKET_ID})),
    ] {
        accepted(&value);
    }
    let Command::AddNote(note) = accepted(&command(
        "add_note",
        json!({"ticket_id": TICKET_ID, "text": "internal"}),
    ))
    .command
    else {
        panic!()
    };
    assert!(
        !note.visible_to_customer,
        "visible_to_customer defaults to false"
    );
}

// ---------- not a command at all ----------

#[test]
fn malformed_json() {
    let failure = rejected_raw(
        br#"{"command_id": "0190c7b8-5f2a-7cc1-8d3e-2b6a9f4e1c07", "#,
        "",
    );
    assert_eq!(failure.command_id, None);
    rejected_raw(b"", "");
    rejected_raw(b"{} trailing", "");
}

#[test]
fn not_an_object() {
    for input in [&b"[1, 2]"[..], b"\"open_ticket\"", b"null", b"42"] {
        let failure = rejected_raw(input, "");
        assert_eq!(failure.command_id, None);
    }
}

#[test]
fn over_size_input() {
    // Exactly the limit is accepted (padded with white space); one byte more is not.
    let mut input = bytes(&open_ticket());
    input.resize(COMMAND_BYTES_MAX, b' ');
    parse_command(&input).expect("a command of exactly COMMAND_BYTES_MAX bytes");
    input.push(b' ');
    let failure = rejected_raw(&input, "");
    assert_eq!(failure.command_id, None);
    assert!(failure.rejection.message.contains("bytes"));
}

#[test]
fn invalid_utf8() {
    let mut input = bytes(&open_ticket());
    let at = input.windows(6).position(|w| w == b"Broken").unwrap();
    input[at] = 0xff;
    let failure = rejected_raw(&input, "");
    assert_eq!(failure.command_id, None);
}

// ---------- the envelope ----------

#[test]
fn unknown_top_level_field() {
    rejected(
        &with(open_ticket(), "/priority", Some(json!("high"))),
        "/priority",
    );
    // JSON Pointer escaping of the offending key (RFC 6901).
    rejected(&with(open_ticket(), "/a~b", Some(json!(1))), "/a~0b");
    let mut value = open_ticket();
    value
        .as_object_mut()
        .unwrap()
        .insert("x/y".into(), json!(1));
    rejected(&value, "/x~1y");
}

#[test]
fn missing_envelope_fields() {
    let failure = rejected(&with(open_ticket(), "/command_id", None), "/command_id");
    assert_eq!(failure.command_id, None);
    rejected(&with(open_ticket(), "/type", None), "/type");
    rejected(&with(open_ticket(), "/actor", None), "/actor");
    rejected(&with(open_ticket(), "/payload", None), "/payload");
    rejected(&with(open_ticket(), "/actor/role", None), "/actor/role");
    rejected(&with(open_ticket(), "/actor/id", None), "/actor/id");
    rejected(&with(open_ticket(), "/type", Some(Value::Null)), "/type");
}

#[test]
fn wrong_envelope_types() {
    rejected(&with(open_ticket(), "/type", Some(json!(7))), "/type");
    rejected(
        &with(open_ticket(), "/actor", Some(json!("lead-a"))),
        "/actor",
    );
    rejected(
        &with(open_ticket(), "/actor/role", Some(json!("admin"))),
        "/actor/role",
    );
    rejected(
        &with(open_ticket(), "/actor/extra", Some(json!(1))),
        "/actor/extra",
    );
    rejected(
        &with(open_ticket(), "/actor/id", Some(json!("lead a"))),
        "/actor/id",
    );
    rejected(
        &with(open_ticket(), "/occurred_at", Some(json!("yesterday"))),
        "/occurred_at",
    );
    rejected(
        &with(open_ticket(), "/expected_version", Some(json!(-1))),
        "/expected_version",
    );
    rejected(
        &with(open_ticket(), "/expected_version", Some(json!("4"))),
        "/expected_version",
    );
    rejected(
        &with(open_ticket(), "/payload", Some(json!([]))),
        "/payload",
    );
    rejected(
        &with(open_ticket(), "/payload", Some(json!("{}"))),
        "/payload",
    );
}

#[test]
fn unknown_type() {
    let failure = rejected(
        &with(open_ticket(), "/type", Some(json!("delete_ticket"))),
        "/type",
    );
    assert!(failure.rejection.message.contains("open_ticket"));
    rejected(
        &with(open_ticket(), "/type", Some(json!("OpenTicket"))),
        "/type",
    );
}

#[test]
fn bad_uuid() {
    let failure = rejected(
        &with(open_ticket(), "/command_id", Some(json!("not-a-uuid"))),
        "/command_id",
    );
    assert_eq!(failure.command_id, None);
    rejected(
        &with(open_ticket(), "/command_id", Some(json!(42))),
        "/command_id",
    );
    let failure = rejected(
        &with(open_ticket(), "/payload/ticket_id", Some(json!("0190c7b8"))),
        "/payload/ticket_id",
    );
    assert_eq!(failure.command_id, Some(command_id()));
}

#[test]
fn command_id_is_recovered_when_readable() {
    // Readable: every later failure carries it.
    for (value, path) in [
        (with(open_ticket(), "/type", Some(json!("nope"))), "/type"),
        (with(open_ticket(), "/actor", None), "/actor"),
        (
            with(open_ticket(), "/payload/priority", Some(json!("asap"))),
            "/payload/priority",
        ),
        (with(open_ticket(), "/extra", Some(json!(true))), "/extra"),
        (satisfaction(json!(0), "survey"), "/payload/score"),
    ] {
        assert_eq!(rejected(&value, path).command_id, Some(command_id()));
    }
    // Upper-case hex is still the same id.
    let upper = with(open_ticket(), "/command_id", Some(json!(ID.to_uppercase())));
    let failure = rejected(
        &with(upper, "/payload/priority", Some(json!(1))),
        "/payload/priority",
    );
    assert_eq!(failure.command_id, Some(command_id()));
    // Unreadable: none, whatever fails.
    let unreadable = with(open_ticket(), "/command_id", Some(json!("0190c7b8")));
    let failure = rejected(&unreadable, "/command_id");
    assert_eq!(failure.command_id, None);
    let failure = rejected_raw(
        &bytes(&with(
            with(open_ticket(), "/command_id", Some(json!(7))),
            "/extra",
            Some(json!(1)),
        )),
        "/extra",
    );
    assert_eq!(failure.command_id, None);
}

// ---------- payloads ----------

#[test]
fn unknown_payload_field() {
    rejected(
        &with(open_ticket(), "/payload/urgency", Some(json!(1))),
        "/payload/urgency",
    );
    rejected(
        &with(sla_policy(), "/payload/match/channel", Some(json!("phone"))),
        "/payload/match/channel",
    );
    // A nested unknown field named like its container still points inside it.
    rejected(
        &with(sla_policy(), "/payload/match/match", Some(json!({}))),
        "/payload/match/match",
    );
    rejected(
        &with(
            calendar(),
            "/payload/weekly_hours/0/break",
            Some(json!("12:00")),
        ),
        "/payload/weekly_hours/0/break",
    );
    rejected(
        &command(
            "record_satisfaction",
            json!({"ticket_id": TICKET_ID, "score": 4, "source": "callback",
                   "dimensions": {"recognition": 1, "efficiency": 2, "quality": 3, "overall": 5, "speed": 1}}),
        ),
        "/payload/dimensions/speed",
    );
}

#[test]
fn missing_required_payload_field() {
    for field in [
        "ticket_id",
        "customer_id",
        "channel",
        "category",
        "priority",
        "subject",
    ] {
        let failure = rejected(
            &with(open_ticket(), &format!("/payload/{field}"), None),
            &format!("/payload/{field}"),
        );
        assert!(failure.rejection.message.contains(field), "{failure:?}");
    }
    rejected(
        &with(sla_policy(), "/payload/match", None),
        "/payload/match",
    );
    rejected(
        &with(calendar(), "/payload/weekly_hours/0/end", None),
        "/payload/weekly_hours/0/end",
    );
    rejected(
        &with(register_agent(), "/payload/line", None),
        "/payload/line",
    );
    rejected(
        &command("assign_ticket", json!({"ticket_id": TICKET_ID})),
        "/payload/agent_id",
    );
    rejected(
        &with(open_ticket(), "/payload/subject", Some(Value::Null)),
        "/payload/subject",
    );
}

#[test]
fn wrong_payload_types() {
    rejected(
        &with(open_ticket(), "/payload/priority", Some(json!(3))),
        "/payload/priority",
    );
    rejected(
        &with(open_ticket(), "/payload/priority", Some(json!("asap"))),
        "/payload/priority",
    );
    rejected(
        &with(open_ticket(), "/payload/channel", Some(json!("fax"))),
        "/payload/channel",
    );
    rejected(
        &with(open_ticket(), "/payload/subject", Some(json!(["a"]))),
        "/payload/subject",
    );
    rejected(&satisfaction(json!("five"), "survey"), "/payload/score");
    rejected(&satisfaction(json!(4.5), "survey"), "/payload/score");
    rejected(&satisfaction(json!(5), "email"), "/payload/source");
    rejected(
        &command(
            "add_note",
            json!({"ticket_id": TICKET_ID, "text": "t", "visible_to_customer": "yes"}),
        ),
        "/payload/visible_to_customer",
    );
    rejected(
        &with(calendar(), "/payload/weekly_hours", Some(json!("mon-fri"))),
        "/payload/weekly_hours",
    );
    rejected(
        &with(
            calendar(),
            "/payload/weekly_hours/1/day",
            Some(json!("sunday")),
        ),
        "/payload/weekly_hours/1/day",
    );
    rejected(
        &with(calendar(), "/payload/holidays", Some(json!(["2026-13-01"]))),
        "/payload/holidays/0",
    );
    rejected(
        &with(sla_policy(), "/payload/match/grade", Some(json!("vip"))),
        "/payload/match/grade",
    );
    rejected(
        &with(register_agent(), "/payload/level", Some(json!("expert"))),
        "/payload/level",
    );
    rejected(
        &command(
            "record_satisfaction",
            json!({"ticket_id": TICKET_ID, "score": 4, "source": "callback",
                   "dimensions": {"recognition": 1, "efficiency": "x", "quality": 3, "overall": 5}}),
        ),
        "/payload/dimensions/efficiency",
    );
    rejected(
        &command(
            "raise_sla_warning",
            json!({"ticket_id": TICKET_ID, "target": "lunch", "due_at": "2026-11-23T10:00:00Z"}),
        ),
        "/payload/target",
    );
}

#[test]
fn score_out_of_range() {
    for score in [0, 6, 255] {
        rejected(&satisfaction(json!(score), "survey"), "/payload/score");
    }
    // Beyond u8 and negative: a type error at the same field.
    rejected(&satisfaction(json!(256), "survey"), "/payload/score");
    rejected(&satisfaction(json!(-1), "survey"), "/payload/score");
    for score in 1..=5 {
        accepted(&satisfaction(json!(score), "callback"));
    }
    rejected(
        &command(
            "record_satisfaction",
            json!({"ticket_id": TICKET_ID, "score": 4, "source": "callback",
                   "dimensions": {"recognition": 1, "efficiency": 2, "quality": 3, "overall": 6}}),
        ),
        "/payload/dimensions/overall",
    );
}

#[test]
fn dimensions_only_with_callback() {
    let value = command(
        "record_satisfaction",
        json!({"ticket_id": TICKET_ID, "score": 4, "source": "survey",
               "dimensions": {"recognition": 4, "efficiency": 4, "quality": 4, "overall": 4}}),
    );
    rejected(&value, "/payload/dimensions");
}

#[test]
fn target_minutes() {
    rejected(
        &with(
            sla_policy(),
            "/payload/first_response_minutes",
            Some(json!(-5)),
        ),
        "/payload/first_response_minutes",
    );
    rejected(
        &with(
            sla_policy(),
            "/payload/first_response_minutes",
            Some(json!(0)),
        ),
        "/payload/first_response_minutes",
    );
    // First response after resolution is impossible.
    rejected(
        &with(
            sla_policy(),
            "/payload/first_response_minutes",
            Some(json!(241)),
        ),
        "/payload/first_response_minutes",
    );
    rejected(
        &with(
            sla_policy(),
            "/payload/resolution_minutes",
            Some(json!(TARGET_MINUTES_MAX + 1)),
        ),
        "/payload/resolution_minutes",
    );
    rejected(
        &with(
            sla_policy(),
            "/payload/next_response_minutes",
            Some(json!(0)),
        ),
        "/payload/next_response_minutes",
    );
    accepted(&with(
        sla_policy(),
        "/payload/resolution_minutes",
        Some(json!(TARGET_MINUTES_MAX)),
    ));
}

#[test]
fn warn_at_percent_is_1_to_99() {
    for percent in [0, 100] {
        rejected(
            &with(
                sla_policy(),
                "/payload/warn_at_percent",
                Some(json!(percent)),
            ),
            "/payload/warn_at_percent",
        );
    }
    for percent in [1, 99] {
        accepted(&with(
            sla_policy(),
            "/payload/warn_at_percent",
            Some(json!(percent)),
        ));
    }
}

#[test]
fn time_zone_must_be_iana() {
    for zone in ["Mars/Olympus_Mons", "", "GMT+25"] {
        rejected(
            &with(calendar(), "/payload/time_zone", Some(json!(zone))),
            "/payload/time_zone",
        );
    }
    for zone in ["UTC", "Asia/Shanghai", "America/New_York"] {
        accepted(&with(calendar(), "/payload/time_zone", Some(json!(zone))));
    }
}

#[test]
fn clock_times_are_hh_mm() {
    for (pointer, bad) in [
        ("/payload/weekly_hours/0/start", "9:00"),
        ("/payload/weekly_hours/0/start", "24:00"),
        ("/payload/weekly_hours/0/start", "12:60"),
        ("/payload/weekly_hours/0/start", "noon"),
        ("/payload/weekly_hours/0/end", "25:00"),
        ("/payload/weekly_hours/0/end", "17:00:00"),
        ("/payload/weekly_hours/1/end", "-1:00"),
    ] {
        rejected(&with(calendar(), pointer, Some(json!(bad))), pointer);
    }
    // The end must come after the start.
    rejected(
        &with(
            calendar(),
            "/payload/weekly_hours/0/end",
            Some(json!("09:00")),
        ),
        "/payload/weekly_hours/0/end",
    );
    rejected(
        &with(calendar(), "/payload/weekly_hours", Some(json!([]))),
        "/payload/weekly_hours",
    );
    assert_eq!(parse_clock("24:00", true), Some(1440));
    assert_eq!(parse_clock("24:00", false), None);
    assert_eq!(parse_clock("00:00", false), Some(0));
    assert_eq!(parse_clock("23:59", false), Some(1439));
}

/// A Spring-Festival-style calendar: Monday to Friday in Shanghai, a holiday, two weekend
/// make-up days and a half day.
fn spring_calendar() -> Value {
    command(
        "define_calendar",
        json!({
            "calendar_id": "shanghai", "time_zone": "Asia/Shanghai",
            "weekly_hours": [
                {"day": "mon", "start": "09:00", "end": "18:00"},
                {"day": "fri", "start": "09:00", "end": "18:00"},
            ],
            "holidays": ["2026-02-16", "2026-02-17"],
            "working_days": [
                {"date": "2026-02-08", "hours": [{"start": "09:00", "end": "12:00"},
                                                 {"start": "13:00", "end": "18:00"}]},
                {"date": "2026-02-28", "hours": [{"start": "09:00", "end": "18:00"}]},
            ],
            "hours_overrides": [
                {"date": "2026-02-13", "hours": [{"start": "09:00", "end": "12:00"}]},
                {"date": "2026-02-27", "hours": []},
            ],
        }),
    )
}

#[test]
fn make_up_days_and_hours_overrides_parse() {
    let envelope = accepted(&spring_calendar());
    let Command::DefineCalendar(c) = &envelope.command else {
        panic!("{envelope:?}")
    };
    assert_eq!(c.working_days.len(), 2);
    assert_eq!(c.working_days[0].date, jiff::civil::date(2026, 2, 8));
    assert_eq!(c.working_days[0].hours[1].start, "13:00");
    assert!(c.hours_overrides[1].hours.is_empty());
    // Both lists are optional; a calendar without them reads as before.
    let plain = accepted(&calendar());
    let Command::DefineCalendar(c) = &plain.command else {
        panic!("{plain:?}")
    };
    assert!(c.working_days.is_empty() && c.hours_overrides.is_empty());
    // The longest lists accepted.
    let day = |n: i64| {
        jiff::civil::date(2026, 1, 1)
            .checked_add(jiff::Span::new().days(n))
            .unwrap()
            .to_string()
    };
    let dates = |from: i64, n: usize| -> Vec<Value> {
        (0..n as i64)
            .map(|i| json!({"date": day(from + i), "hours": [{"start": "09:00", "end": "10:00"}]}))
            .collect()
    };
    let spans = vec![json!({"start": "09:00", "end": "10:00"}); DAY_SPANS_MAX];
    let mut most = with(
        spring_calendar(),
        "/payload/working_days",
        Some(json!(dates(1000, CALENDAR_DATES_MAX))),
    );
    most = with(
        most,
        "/payload/hours_overrides",
        Some(json!(dates(2000, CALENDAR_DATES_MAX))),
    );
    most = with(most, "/payload/working_days/0/hours", Some(json!(spans)));
    accepted(&most);
}

#[test]
fn make_up_days_and_hours_overrides_refusals() {
    // A date in two lists, or twice in one: the later entry is named.
    let twice = rejected(
        &with(
            spring_calendar(),
            "/payload/working_days/1/date",
            Some(json!("2026-02-16")),
        ),
        "/payload/working_days/1/date",
    );
    assert!(
        twice.rejection.details[0].message.contains("holidays"),
        "{twice:?}"
    );
    rejected(
        &with(
            spring_calendar(),
            "/payload/working_days/1/date",
            Some(json!("2026-02-08")),
        ),
        "/payload/working_days/1/date",
    );
    rejected(
        &with(
            spring_calendar(),
            "/payload/hours_overrides/1/date",
            Some(json!("2026-02-28")),
        ),
        "/payload/hours_overrides/1/date",
    );
    rejected(
        &with(
            spring_calendar(),
            "/payload/hours_overrides/0/date",
            Some(json!("2026-02-17")),
        ),
        "/payload/hours_overrides/0/date",
    );
    rejected(
        &with(
            spring_calendar(),
            "/payload/hours_overrides/1/date",
            Some(json!("2026-02-13")),
        ),
        "/payload/hours_overrides/1/date",
    );
    // A make-up day is worked: it has hours. (An override may close its date.)
    rejected(
        &with(
            spring_calendar(),
            "/payload/working_days/0/hours",
            Some(json!([])),
        ),
        "/payload/working_days/0/hours",
    );
    // Spans are checked as the weekly ones are.
    for (pointer, bad) in [
        ("/payload/working_days/0/hours/1/start", "1:00"),
        ("/payload/working_days/0/hours/1/end", "24:01"),
        ("/payload/hours_overrides/0/hours/0/start", "24:00"),
        ("/payload/hours_overrides/0/hours/0/end", "08:59"),
    ] {
        rejected(&with(spring_calendar(), pointer, Some(json!(bad))), pointer);
    }
    rejected(
        &with(
            spring_calendar(),
            "/payload/working_days/0/date",
            Some(json!("2026-02-30")),
        ),
        "/payload/working_days/0/date",
    );
    rejected(
        &with(spring_calendar(), "/payload/working_days/0/date", None),
        "/payload/working_days/0/date",
    );
    rejected(
        &with(
            spring_calendar(),
            "/payload/hours_overrides/0/day",
            Some(json!("fri")),
        ),
        "/payload/hours_overrides/0/day",
    );
    rejected(
        &with(
            spring_calendar(),
            "/payload/working_days",
            Some(json!({"2026-02-08": []})),
        ),
        "/payload/working_days",
    );
    // The bounds: CALENDAR_DATES_MAX dates per list, DAY_SPANS_MAX spans per date.
    let many: Vec<Value> = (0..=CALENDAR_DATES_MAX as i64)
        .map(|i| {
            let date = jiff::civil::date(2030, 1, 1)
                .checked_add(jiff::Span::new().days(i))
                .unwrap();
            json!({"date": date.to_string(), "hours": []})
        })
        .collect();
    rejected(
        &with(
            spring_calendar(),
            "/payload/hours_overrides",
            Some(json!(many)),
        ),
        "/payload/hours_overrides",
    );
    let spans = vec![json!({"start": "09:00", "end": "10:00"}); DAY_SPANS_MAX + 1];
    rejected(
        &with(
            spring_calendar(),
            "/payload/working_days/1/hours",
            Some(json!(spans)),
        ),
        "/payload/working_days/1/hours",
    );
}

#[test]
fn lines_ids_and_texts() {
    for line in [0, 4] {
        rejected(
            &with(register_agent(), "/payload/line", Some(json!(line))),
            "/payload/line",
        );
    }
    rejected(
        &with(register_agent(), "/payload/line", Some(json!(300))),
        "/payload/line",
    );
    rejected(
        &with(
            register_agent(),
            "/payload/backup_agent_id",
            Some(json!("agent-17")),
        ),
        "/payload/backup_agent_id",
    );
    rejected(
        &with(open_ticket(), "/payload/subject", Some(json!("   "))),
        "/payload/subject",
    );
    rejected(
        &with(
            open_ticket(),
            "/payload/subject",
            Some(json!("x".repeat(SHORT_TEXT_CHARS_MAX + 1))),
        ),
        "/payload/subject",
    );
    rejected(
        &with(open_ticket(), "/payload/customer_id", Some(json!(""))),
        "/payload/customer_id",
    );
    rejected(
        &with(
            open_ticket(),
            "/payload/customer_id",
            Some(json!("c".repeat(ID_CHARS_MAX + 1))),
        ),
        "/payload/customer_id",
    );
    rejected(
        &command(
            "assign_ticket",
            json!({"ticket_id": TICKET_ID, "agent_id": "agent\t17"}),
        ),
        "/payload/agent_id",
    );
}

#[test]
fn all_field_problems_are_listed() {
    let value = command(
        "record_satisfaction",
        json!({"ticket_id": TICKET_ID, "score": 9, "source": "survey", "comment": " ",
               "dimensions": {"recognition": 0, "efficiency": 2, "quality": 3, "overall": 5}}),
    );
    let failure = rejected(&value, "/payload/score");
    let paths: Vec<&str> = failure
        .rejection
        .details
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/payload/score",
            "/payload/comment",
            "/payload/dimensions",
            "/payload/dimensions/recognition"
        ]
    );
}

// ---------- round trip ----------

fn any_command() -> impl Strategy<Value = Command> {
    let id = "[a-z][a-z0-9-]{0,12}";
    let text = "[A-Za-z][A-Za-z0-9 .,!?]{0,30}";
    let ticket = any::<u128>().prop_map(Uuid::from_u128);
    prop_oneof![
        (
            ticket.clone(),
            id,
            proptest::sample::select(Channel::ALL),
            proptest::sample::select(Category::ALL),
            proptest::sample::select(Priority::ALL),
            text,
            proptest::option::of(text)
        )
            .prop_map(
                |(ticket_id, customer_id, channel, category, priority, subject, description)| {
                    Command::OpenTicket(OpenTicket {
                        ticket_id,
                        customer_id,
                        channel,
                        category,
                        priority,
                        subject,
                        description,
                    })
                }
            ),
        (ticket.clone(), text, proptest::option::of(id)).prop_map(
            |(ticket_id, reason, to_agent_id)| {
                Command::EscalateTicket(EscalateTicket {
                    ticket_id,
                    reason,
                    to_agent_id,
                })
            }
        ),
        (ticket.clone(), text, any::<bool>()).prop_map(|(ticket_id, text, visible_to_customer)| {
            Command::AddNote(AddNote {
                ticket_id,
                text,
                visible_to_customer,
            })
        }),
        (
            ticket,
            1u8..=5,
            proptest::option::of(text),
            proptest::option::of((1u8..=5, 1u8..=5, 1u8..=5, 1u8..=5))
        )
            .prop_map(|(ticket_id, score, comment, dims)| {
                Command::RecordSatisfaction(RecordSatisfaction {
                    ticket_id,
                    score,
                    comment,
                    source: if dims.is_some() {
                        RatingSource::Callback
                    } else {
                        RatingSource::Survey
                    },
                    dimensions: dims.map(|(recognition, efficiency, quality, overall)| {
                        Dimensions {
                            recognition,
                            efficiency,
                            quality,
                            overall,
                        }
                    }),
                })
            }),
        (
            id,
            proptest::option::of(proptest::sample::select(Grade::ALL)),
            proptest::option::of(proptest::sample::select(Category::ALL)),
            1u32..1000,
            0u32..1000,
            1u8..=99
        )
            .prop_map(|(policy_id, grade, category, first, extra, warn)| {
                Command::DefineSlaPolicy(DefineSlaPolicy {
                    policy_id,
                    matches: PolicyMatch {
                        grade,
                        priority: None,
                        category,
                    },
                    first_response_minutes: first,
                    resolution_minutes: first + extra,
                    next_response_minutes: None,
                    calendar_id: "office".into(),
                    warn_at_percent: warn,
                    confirmation_wait_days: None,
                })
            }),
        (id, id, 1u8..=3, any::<bool>()).prop_map(|(agent_id, team, line, team_lead)| {
            Command::RegisterAgent(RegisterAgent {
                agent_id,
                name: "Ada".into(),
                team,
                line,
                level: Level::Junior,
                team_lead,
                backup_agent_id: None,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// What the engine serializes, it parses back to the same command.
    #[test]
    fn a_serialized_command_parses_back(
        command in any_command(),
        id in any::<u128>(),
        role in proptest::sample::select(Role::ALL),
        expected_version in proptest::option::of(any::<u64>()),
        seconds in proptest::option::of(946_684_800i64..4_000_000_000),
    ) {
        let envelope = CommandEnvelope {
            command_id: Uuid::from_u128(id),
            actor: Actor { id: "someone".into(), role },
            occurred_at: seconds.map(|s| jiff::Timestamp::from_second(s).unwrap()),
            expected_version,
            command,
        };
        let bytes = serde_json::to_vec(&envelope).unwrap();
        prop_assert_eq!(parse_command(&bytes).map_err(|f| f.rejection), Ok(envelope));
    }

    /// No input makes the parser panic, and every failure names a path that starts at the root.
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(failure) = parse_command(&input) {
            prop_assert_eq!(failure.rejection.code, RejectionCode::Validation);
            prop_assert!(failure.rejection.details.iter().all(|d| d.path.is_empty() || d.path.starts_with('/')));
        }
    }
}

#[test]
fn duplicate_keys_nul_non_object_actors_and_ancient_times_are_refused() {
    let base = serde_json::to_string(&open_ticket()).unwrap();
    // The same key twice: the second `actor` would win in serde_json; refused at its path.
    let twice = base.replacen(
        "\"actor\":",
        "\"actor\":{\"id\":\"auditor-1\",\"role\":\"auditor\"},\"actor\":",
        1,
    );
    let failure = rejected_raw(twice.as_bytes(), "/actor");
    assert_eq!(
        failure.command_id.map(|id| id.to_string()).as_deref(),
        Some(ID)
    );
    // NUL in a text: PostgreSQL cannot store it; refused on every backend, at its path.
    let nul = base.replacen("Broken screen", "Broken\\u0000screen", 1);
    rejected_raw(nul.as_bytes(), "/payload/subject");
    // An actor as an array is not the published shape.
    rejected_raw(
        &bytes(&with(
            open_ticket(),
            "/actor",
            Some(json!(["crm", "service"])),
        )),
        "/actor",
    );
    // Year 0000, and anything before 2000.
    for at in ["0000-01-01T00:00:00Z", "1999-12-31T23:59:59Z"] {
        rejected_raw(
            &bytes(&with(open_ticket(), "/occurred_at", Some(json!(at)))),
            "/occurred_at",
        );
    }
}

// ---------- complaint rulings ----------

fn complaint_causes(causes: Value) -> Value {
    command("define_complaint_causes", json!({ "causes": causes }))
}

fn ruling(justified: bool, cause: &str, charged: Value) -> Value {
    command(
        "rule_complaint",
        json!({"ticket_id": TICKET_ID, "justified": justified, "cause": cause,
               "charged": charged, "note": "heard both sides"}),
    )
}

#[test]
fn complaint_cause_lists_and_rulings() {
    accepted(&complaint_causes(
        json!([{"code": "rude_staff", "label": "Rude staff"}, {"code": "slow_2", "label": "Slow"}]),
    ));
    accepted(&command(
        "register_inspector",
        json!({"inspector_id": "qa-1", "name": "Quality"}),
    ));
    rejected(&complaint_causes(json!([])), "/payload/causes");
    rejected(
        &complaint_causes(json!([{"code": "Rude Staff", "label": "x"}])),
        "/payload/causes/0/code",
    );
    rejected(
        &complaint_causes(json!([{"code": "a", "label": "x"}, {"code": "a", "label": "y"}])),
        "/payload/causes/1/code",
    );
    rejected(
        &complaint_causes(json!([{"code": "a", "label": " "}])),
        "/payload/causes/0/label",
    );
    rejected(
        &complaint_causes(json!([{"code": "a", "label": "x", "weight": 2}])),
        "/payload/causes/0/weight",
    );
    let too_many: Vec<Value> = (0..=COMPLAINT_CAUSES_MAX)
        .map(|i| json!({"code": format!("c{i}"), "label": "x"}))
        .collect();
    rejected(&complaint_causes(Value::Array(too_many)), "/payload/causes");

    let Command::RuleComplaint(r) =
        accepted(&ruling(true, "rude_staff", json!(["a1", "a2"]))).command
    else {
        panic!()
    };
    assert_eq!(r.charged, ["a1", "a2"]);
    accepted(&ruling(false, "rude_staff", json!([])));
    rejected(
        &ruling(false, "rude_staff", json!(["a1"])),
        "/payload/charged",
    );
    rejected(
        &ruling(true, "rude_staff", json!(["a1", "a1"])),
        "/payload/charged/1",
    );
    rejected(&ruling(true, "", json!([])), "/payload/cause");
    rejected(&ruling(true, "x", json!([""])), "/payload/charged/0");
    let crowd: Vec<String> = (0..=CHARGED_STAFF_MAX).map(|i| format!("a{i}")).collect();
    rejected(&ruling(true, "x", json!(crowd)), "/payload/charged");
    rejected(
        &with(
            ruling(true, "x", json!([])),
            "/payload/note",
            Some(json!("")),
        ),
        "/payload/note",
    );
}

// ---------- scorecards ----------

fn scorecard() -> Value {
    command(
        "define_scorecard",
        json!({"effective_from": "2026-12-01", "results_percent": 60, "basic_percent": 30,
               "discipline_percent": 10, "bonus_per_excellent_rating": 0.5,
               "bonus_cap_points": 10, "deduction_per_justified_complaint": 2,
               "deduction_cap_points": 10}),
    )
}

#[test]
fn scorecards_keep_the_manuals_bounds() {
    accepted(&scorecard());
    accepted(&with(scorecard(), "/payload/team", Some(json!("alpha"))));
    let set =
        |field: &str, value: Value| with(scorecard(), &format!("/payload/{field}"), Some(value));
    // Results at least 60, basic at least 30, discipline at most 10, summing to 100.
    let f = rejected(
        &set("results_percent", json!(59)),
        "/payload/results_percent",
    );
    assert!(
        f.rejection.details.iter().any(|d| d.path == "/payload"),
        "{f:?}"
    );
    rejected(
        &with(
            set("basic_percent", json!(29)),
            "/payload/results_percent",
            Some(json!(61)),
        ),
        "/payload/basic_percent",
    );
    rejected(
        &with(
            set("discipline_percent", json!(11)),
            "/payload/basic_percent",
            Some(json!(29)),
        ),
        "/payload/basic_percent",
    );
    rejected(
        &with(
            set("discipline_percent", json!(11)),
            "/payload/results_percent",
            Some(json!(59)),
        ),
        "/payload/results_percent",
    );
    rejected(
        &with(
            set("discipline_percent", json!(0)),
            "/payload/results_percent",
            Some(json!(69)),
        ),
        "/payload",
    );
    accepted(&with(
        set("discipline_percent", json!(0)),
        "/payload/results_percent",
        Some(json!(70)),
    ));
    // Bonus and deduction items at most 10 points, never negative.
    rejected(
        &set("bonus_cap_points", json!(10.5)),
        "/payload/bonus_cap_points",
    );
    rejected(
        &set("deduction_cap_points", json!(11)),
        "/payload/deduction_cap_points",
    );
    rejected(
        &set("deduction_per_justified_complaint", json!(-1)),
        "/payload/deduction_per_justified_complaint",
    );
    rejected(
        &set("effective_from", json!("2026-13-01")),
        "/payload/effective_from",
    );
    rejected(
        &set("results_percent", json!(300)),
        "/payload/results_percent",
    );
    rejected(&set("weight", json!(1)), "/payload/weight");
}

fn plan_absence() -> Value {
    command(
        "plan_absence",
        json!({
            "absence_id": "0190c7b8-0000-7000-8000-0000000000ab",
            "agent_id": "a3",
            "from": "2026-12-01T00:00:00Z",
            "until": "2026-12-08T00:00:00Z",
            "reason": "training",
        }),
    )
}

#[test]
fn absences_parse_and_name_the_field_at_fault() {
    let parsed = accepted(&plan_absence());
    let Command::PlanAbsence(c) = parsed.command else {
        panic!("not plan_absence: {parsed:?}")
    };
    assert_eq!(c.reason, AbsenceReason::Training);
    assert_eq!(c.backup_agent_id, None);
    rejected(
        &with(
            plan_absence(),
            "/payload/until",
            Some(json!("2026-12-01T00:00:00Z")),
        ),
        "/payload/until",
    );
    rejected(
        &with(
            plan_absence(),
            "/payload/backup_agent_id",
            Some(json!("a3")),
        ),
        "/payload/backup_agent_id",
    );
    rejected(
        &with(plan_absence(), "/payload/reason", Some(json!("holiday"))),
        "/payload/reason",
    );
    rejected(
        &command("cancel_absence", json!({"agent_id": "", "absence_id": ID})),
        "/payload/agent_id",
    );
}

#[test]
fn deadline_commands_name_the_offending_field() {
    let kind = |payload: Value| command("define_deadline_kind", payload);
    accepted(&kind(json!({"kind": "repair", "business_hours": 72,
        "warn_before_minutes": 240, "on_breach": "flag_exchange"})));
    rejected(
        &kind(json!({"kind": "Repair", "business_hours": 72})),
        "/payload/kind",
    );
    rejected(
        &kind(json!({"kind": "repair"})),
        "/payload/business_minutes",
    );
    rejected(
        &kind(json!({"kind": "repair", "business_minutes": 60, "business_hours": 1})),
        "/payload/business_hours",
    );
    rejected(
        &kind(json!({"kind": "repair", "business_hours": 1, "warn_before_minutes": 60})),
        "/payload/warn_before_minutes",
    );
    rejected(
        &kind(json!({"kind": "repair", "business_hours": 1, "on_breach": "refund"})),
        "/payload/on_breach",
    );
    let set = |payload: Value| command("set_deadline", payload);
    accepted(&set(
        json!({"ticket_id": TICKET_ID, "kind": "repair", "owner": "a1"}),
    ));
    rejected(
        &set(
            json!({"ticket_id": TICKET_ID, "kind": "repair", "owner": "a1",
            "business_minutes": 60, "due_at": "2026-11-25T09:00:00Z"}),
        ),
        "/payload/due_at",
    );
    rejected(
        &set(
            json!({"ticket_id": TICKET_ID, "kind": "repair", "owner": "a1",
            "business_minutes": 0}),
        ),
        "/payload/business_minutes",
    );
    rejected(
        &command(
            "complete_deadline",
            json!({"ticket_id": TICKET_ID, "deadline": 0}),
        ),
        "/payload/deadline",
    );
    let resolve = |outcome: &str| {
        command(
            "resolve_ticket",
            json!({"ticket_id": TICKET_ID, "resolution": "done", "outcome": outcome}),
        )
    };
    accepted(&resolve("exchanged"));
    rejected(&resolve("replaced"), "/payload/outcome");
}

fn retention_policy() -> Value {
    command(
        "define_retention_policy",
        json!({
            "policy_id": "repairs", "match": {"category": "repair", "grade": "group_a"},
            "keep_days": 730, "effective_from": "2027-01-01T00:00:00Z",
        }),
    )
}

#[test]
fn a_retention_policy_is_checked_field_by_field() {
    let envelope = accepted(&retention_policy());
    let Command::DefineRetentionPolicy(c) = &envelope.command else {
        panic!("{envelope:?}");
    };
    assert_eq!(c.keep_days, 730);
    assert_eq!(c.matches.category, Some(Category::Repair));
    // An absent match applies to every closed ticket.
    let every = accepted(&with(retention_policy(), "/payload/match", None));
    let Command::DefineRetentionPolicy(c) = &every.command else {
        panic!("{every:?}");
    };
    assert_eq!(c.matches, RetentionMatch::default());
    for keep_days in [json!(0), json!(3651), json!(-1), json!("30")] {
        rejected(
            &with(retention_policy(), "/payload/keep_days", Some(keep_days)),
            "/payload/keep_days",
        );
    }
    accepted(&with(
        retention_policy(),
        "/payload/keep_days",
        Some(json!(3650)),
    ));
    rejected(
        &with(retention_policy(), "/payload/effective_from", None),
        "/payload/effective_from",
    );
    rejected(
        &with(
            retention_policy(),
            "/payload/effective_from",
            Some(json!("next year")),
        ),
        "/payload/effective_from",
    );
    rejected(
        &with(retention_policy(), "/payload/policy_id", Some(json!(""))),
        "/payload/policy_id",
    );
    rejected(
        &with(
            retention_policy(),
            "/payload/match/priority",
            Some(json!("high")),
        ),
        "/payload/match/priority",
    );
    rejected(
        &with(
            retention_policy(),
            "/payload/match/grade",
            Some(json!("gold")),
        ),
        "/payload/match/grade",
    );
}
