//! The binary as users drive it: `submit`, `history`, `verify`, `export` and `demo` on an
//! embedded SQLite store in a temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use uuid::Uuid;

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        Store {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("closeloop.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_with_env(args, stdin, &[])
    }

    fn run_with_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(self.url())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("closeloop runs");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .expect("write stdin");
        drop(input);
        child.wait_with_output().expect("closeloop finishes")
    }

    /// `closeloop demo` scaled down: this many tickets, days and customers.
    fn demo(&self, tickets: u32, days: u32, customers: u32) -> Output {
        let (tickets, days, customers) =
            (tickets.to_string(), days.to_string(), customers.to_string());
        self.run(
            &[
                "demo",
                "--tickets",
                &tickets,
                "--days",
                &days,
                "--customers",
                &customers,
            ],
            None,
        )
    }

    fn submit(&self, lines: &[Value]) -> (Output, Vec<Value>) {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let out = self.run(&["submit"], Some(&input));
        let replies = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("reply is JSON"))
            .collect();
        (out, replies)
    }

    fn exported(&self) -> Vec<Value> {
        let out = self.run(&["export"], None);
        assert!(out.status.success(), "export failed: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("event JSON"))
            .collect()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cmd(kind: &str, actor: (&str, &str), at: &str, payload: Value) -> Value {
    json!({
        "command_id": Uuid::now_v7(),
        "type": kind,
        "actor": {"id": actor.0, "role": actor.1},
        "occurred_at": at,
        "payload": payload,
    })
}

const ADMIN: (&str, &str) = ("provisioning", "system");
const CRM: (&str, &str) = ("crm", "service");
const LEAD1: (&str, &str) = ("lead-1", "supervisor");
const LEAD2: (&str, &str) = ("lead-2", "supervisor");
const AGENT1: (&str, &str) = ("agent-1", "agent");
const AGENT2: (&str, &str) = ("agent-2", "agent");

fn setup() -> Vec<Value> {
    let agent = |id: &str, team: &str, line: u8, lead: bool| {
        cmd(
            "register_agent",
            ADMIN,
            "2026-11-02T07:00:00Z",
            json!({"agent_id": id, "name": id, "team": team, "line": line, "level": "senior", "team_lead": lead}),
        )
    };
    vec![
        cmd(
            "define_calendar",
            ADMIN,
            "2026-11-02T07:00:00Z",
            json!({"calendar_id": "office", "time_zone": "Europe/Berlin",
                   "weekly_hours": [{"day": "mon", "start": "08:00", "end": "18:00"}]}),
        ),
        cmd(
            "define_sla_policy",
            ADMIN,
            "2026-11-02T07:00:00Z",
            json!({"policy_id": "gold", "match": {"grade": "vip_gold"}, "first_response_minutes": 30,
                   "resolution_minutes": 480, "calendar_id": "office", "warn_at_percent": 80}),
        ),
        agent("lead-1", "front", 1, true),
        agent("agent-1", "front", 1, false),
        agent("lead-2", "specialists", 2, true),
        agent("agent-2", "specialists", 2, false),
        cmd(
            "register_customer",
            ADMIN,
            "2026-11-02T07:00:00Z",
            json!({"customer_id": "c-1", "name": "Acme", "grade": "vip_gold"}),
        ),
    ]
}

/// A whole ticket life through `submit`, read back whole through `history`, proven by `verify`.
#[test]
fn scripted_ticket_life_appears_whole_in_history_and_verifies() {
    let store = Store::new();
    let ticket = Uuid::now_v7();
    let t = |payload: Value| {
        let mut p = payload;
        p["ticket_id"] = json!(ticket);
        p
    };
    let mut lines = setup();
    lines.extend([
        cmd("open_ticket", CRM, "2026-11-02T09:00:00Z", t(json!({"customer_id": "c-1", "channel": "email", "category": "incident", "priority": "high", "subject": "Router down"}))),
        cmd("assign_ticket", LEAD1, "2026-11-02T09:05:00Z", t(json!({"agent_id": "agent-1"}))),
        cmd("respond_to_customer", AGENT1, "2026-11-02T09:10:00Z", t(json!({"message": "Looking into it"}))),
        cmd("request_customer_info", AGENT1, "2026-11-02T09:20:00Z", t(json!({"question": "Which model?"}))),
        cmd("record_customer_reply", CRM, "2026-11-02T10:00:00Z", t(json!({"message": "RX-100"}))),
        cmd("escalate_ticket", AGENT1, "2026-11-02T10:30:00Z", t(json!({"reason": "firmware bug suspected"}))),
        cmd("assign_ticket", LEAD2, "2026-11-02T10:35:00Z", t(json!({"agent_id": "agent-2"}))),
        cmd("resolve_ticket", AGENT2, "2026-11-02T12:00:00Z", t(json!({"resolution": "firmware patched"}))),
        cmd("record_satisfaction", CRM, "2026-11-02T13:00:00Z", t(json!({"score": 5, "source": "survey"}))),
        cmd("close_ticket", AGENT2, "2026-11-02T14:00:00Z", t(json!({}))),
    ]);
    let (out, replies) = store.submit(&lines);
    assert!(
        out.status.success(),
        "submit failed: {replies:?} {}",
        stderr(&out)
    );
    assert_eq!(replies.len(), lines.len());
    assert!(
        replies.iter().all(|r| r["status"] == "accepted"),
        "{replies:#?}"
    );
    assert_eq!(
        replies.last().unwrap()["stream"],
        format!("ticket-{ticket}")
    );
    assert_eq!(replies.last().unwrap()["version"], 10);

    let out = store.run(&["history", &ticket.to_string(), "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let history: Value = serde_json::from_str(&stdout(&out)).expect("history JSON");
    assert_eq!(history["stream"], format!("ticket-{ticket}"));
    assert_eq!(history["state"]["status"], "closed");
    assert_eq!(history["state"]["line"], 2);
    assert_eq!(history["state"]["assignee"], "agent-2");
    assert_eq!(history["state"]["priority"], "high");
    let events = history["events"].as_array().expect("events");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "ticket_opened",
            "ticket_assigned",
            "customer_responded_to",
            "customer_info_requested",
            "customer_replied",
            "ticket_escalated",
            "ticket_assigned",
            "ticket_resolved",
            "satisfaction_recorded",
            "ticket_closed"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["version"], i as u64 + 1);
        assert_eq!(
            e["metadata"]["command_id"],
            lines[setup().len() + i]["command_id"]
        );
        assert_eq!(e["metadata"]["actor"], lines[setup().len() + i]["actor"]);
        assert_eq!(
            e["metadata"]["occurred_at"],
            lines[setup().len() + i]["occurred_at"]
        );
        assert_eq!(e["hash"].as_str().map(str::len), Some(64));
    }
    assert_eq!(events[5]["data"]["reason"], "firmware bug suspected");
    assert_eq!(events[0]["data"]["grade"], "vip_gold");
    assert_eq!(events[0]["data"]["sla"]["policy_id"], "gold");

    // The table form names actors and reasons too.
    let out = store.run(&["history", &ticket.to_string()], None);
    let table = stdout(&out);
    assert!(
        table.contains("agent-1 (agent)") && table.contains("firmware bug suspected"),
        "{table}"
    );

    // Time travel: as of 10:00 the customer had just replied; escalation not yet.
    let out = store.run(
        &[
            "history",
            &ticket.to_string(),
            "--json",
            "--as-of",
            "2026-11-02T10:00:00Z",
        ],
        None,
    );
    let past: Value = serde_json::from_str(&stdout(&out)).expect("history JSON");
    assert_eq!(past["state"]["status"], "in_progress");
    assert_eq!(past["state"]["line"], 1);
    assert_eq!(past["events"].as_array().unwrap().len(), 5);

    let out = store.run(&["verify"], None);
    assert!(
        out.status.success(),
        "verify failed on an untouched log: {}",
        stdout(&out)
    );
    let out = store.run(&["verify", &ticket.to_string()], None);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("10 events"), "{}", stdout(&out));
}

/// Changing one byte of one stored event breaks `verify`, which names the stream and version.
#[test]
fn verify_fails_after_a_stored_byte_changes() {
    let store = Store::new();
    let (out, _) = store.submit(&setup());
    assert!(out.status.success());
    {
        let db = rusqlite::Connection::open(store.path()).expect("open db");
        db.execute_batch("DROP TRIGGER events_no_update;")
            .expect("drop trigger");
        let changed = db
            .execute(
                "UPDATE events SET data = replace(data, '\"vip_gold\"', '\"vip_gole\"') WHERE stream = 'customer-c-1'",
                [],
            )
            .expect("tamper");
        assert_eq!(changed, 1);
    }
    let out = store.run(&["verify"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify must fail: {}",
        stdout(&out)
    );
    let report = stdout(&out);
    assert!(report.contains("customer-c-1 version 1"), "{report}");
    assert!(report.contains("hash mismatch"), "{report}");
}

/// A single rejected command: exit 1, a precise error, nothing appended.
#[test]
fn bad_input_is_rejected_precisely_and_changes_nothing() {
    let store = Store::new();
    let (out, _) = store.submit(&setup());
    assert!(out.status.success());
    let before = store.exported().len();

    let cases: Vec<(String, &str, &str)> = vec![
        ("{not json".into(), "validation", ""),
        (json!({"command_id": Uuid::now_v7(), "type": "fly_away", "actor": {"id": "x", "role": "system"}, "payload": {}}).to_string(), "validation", "/type"),
        (cmd("open_ticket", CRM, "2026-11-02T09:00:00Z", json!({"ticket_id": Uuid::now_v7(), "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "sky-high", "subject": "x"})).to_string(), "validation", "/payload/priority"),
        (cmd("open_ticket", CRM, "2026-11-02T09:00:00Z", json!({"ticket_id": Uuid::now_v7(), "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "low", "subject": "x", "colour": "red"})).to_string(), "validation", "/payload/colour"),
        (cmd("record_satisfaction", CRM, "2026-11-02T09:00:00Z", json!({"ticket_id": Uuid::now_v7(), "score": 6, "source": "survey"})).to_string(), "validation", "/payload/score"),
        (cmd("define_sla_policy", ADMIN, "2026-11-02T09:00:00Z", json!({"policy_id": "p", "match": {}, "first_response_minutes": -5, "resolution_minutes": 10, "calendar_id": "office", "warn_at_percent": 80})).to_string(), "validation", "/payload/first_response_minutes"),
        (cmd("resolve_ticket", AGENT1, "2026-11-02T09:00:00Z", json!({"ticket_id": Uuid::now_v7(), "resolution": "done"})).to_string(), "not_found", "/payload/ticket_id"),
        (cmd("register_agent", ("auditor-1", "auditor"), "2026-11-02T09:00:00Z", json!({"agent_id": "a9", "name": "n", "team": "t", "line": 1, "level": "junior"})).to_string(), "forbidden", ""),
    ];
    for (input, code, path) in cases {
        let out = store.run(&["submit"], Some(&input));
        assert_eq!(out.status.code(), Some(1), "{input}: {}", stdout(&out));
        let reply: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON reply");
        assert_eq!(reply["status"], "rejected", "{input}");
        assert_eq!(reply["error"]["code"], code, "{input}: {reply}");
        if !path.is_empty() {
            assert_eq!(
                reply["error"]["details"][0]["path"], path,
                "{input}: {reply}"
            );
        }
    }
    assert_eq!(
        store.exported().len(),
        before,
        "a rejected command appended something"
    );
}

/// An impossible transition in a JSON-lines stream is answered and the stream goes on;
/// a retried command id is a duplicate that appends nothing.
#[test]
fn streams_go_on_past_rejections_and_retries_are_duplicates() {
    let store = Store::new();
    let ticket = Uuid::now_v7();
    let open = cmd(
        "open_ticket",
        CRM,
        "2026-11-02T09:00:00Z",
        json!({"ticket_id": ticket, "customer_id": "c-9", "channel": "phone", "category": "inquiry", "priority": "normal", "subject": "Hello"}),
    );
    let mut lines = setup();
    lines.push(open.clone());
    lines.push(cmd(
        "close_ticket",
        ADMIN,
        "2026-11-02T09:01:00Z",
        json!({"ticket_id": ticket}),
    ));
    lines.push(cmd(
        "add_note",
        ADMIN,
        "2026-11-02T09:02:00Z",
        json!({"ticket_id": ticket, "text": "called back"}),
    ));
    lines.push(open.clone());
    let (out, replies) = store.submit(&lines);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejection in the stream makes the exit code 1"
    );
    let n = setup().len();
    assert_eq!(replies[n]["status"], "accepted");
    assert_eq!(replies[n + 1]["status"], "rejected");
    assert_eq!(replies[n + 1]["error"]["code"], "invalid_transition");
    assert_eq!(replies[n + 2]["status"], "accepted", "the stream went on");
    assert_eq!(replies[n + 3]["status"], "duplicate");
    for field in ["command_id", "stream", "version", "position", "events"] {
        assert_eq!(
            replies[n + 3][field],
            replies[n][field],
            "duplicate repeats the first reply's {field}"
        );
    }
    let events = store.exported();
    let ticket_events = events
        .iter()
        .filter(|e| e["stream"] == format!("ticket-{ticket}"))
        .count();
    assert_eq!(ticket_events, 2, "opened once, noted once");
    // An unregistered customer is standard grade, and no policy matches: no targets.
    let opened = events
        .iter()
        .find(|e| e["type"] == "ticket_opened")
        .unwrap();
    assert_eq!(opened["data"]["grade"], "standard");
    assert_eq!(opened["data"]["sla"], Value::Null);
}

/// The README's first command, scaled down: the demo runs on SQLite with no server, rejects
/// nothing and leaves a log that verifies.
#[test]
fn demo_runs_on_the_embedded_store() {
    let store = Store::new();
    let out = store.demo(200, 5, 50);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        stderr(&out)
    );
    assert!(text.contains(" 0 rejected"), "{text}");
    assert!(text.contains("every hash chain intact"), "{text}");
    let out = store.run(&["verify"], None);
    assert!(out.status.success(), "{}", stdout(&out));
    reports_are_tidy_and_come_as_csv(&store);
}

/// Reports a supervisor reads: the SLA split per team adds up to the split per grade, CSV
/// holds the same figures as JSON, and means line up with two decimals.
fn reports_are_tidy_and_come_as_csv(store: &Store) {
    let at = "2026-10-31T00:00:00Z";
    let out = store.run(&["report", "sla", "--json", "--at", at], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let sla: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let sum = |key: &str| -> std::collections::BTreeMap<String, (u64, u64)> {
        let mut by = std::collections::BTreeMap::new();
        for c in sla[key].as_array().expect("rows") {
            let e: &mut (u64, u64) = by
                .entry(c["target"].as_str().unwrap().to_owned())
                .or_default();
            e.0 += c["met"].as_u64().unwrap();
            e.1 += c["breached"].as_u64().unwrap();
        }
        by
    };
    assert!(!sum("compliance").is_empty());
    assert_eq!(sum("compliance"), sum("compliance_by_team"));

    // CSV: a header, then one line per JSON row, with the same counts.
    for (rows, key) in [
        ("compliance", None),
        ("compliance_by_team", Some("compliance_by_team")),
    ] {
        let mut args = vec!["report", "sla", "--format", "csv", "--at", at];
        if let Some(key) = key {
            args.extend(["--rows", key]);
        }
        let out = store.run(&args, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
        let met = header
            .iter()
            .position(|c| *c == "met")
            .expect("a met column");
        let csv_met: u64 = lines
            .clone()
            .map(|l| l.split(',').nth(met).unwrap().parse::<u64>().unwrap())
            .sum();
        let json_met: u64 = sla[rows]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["met"].as_u64().unwrap())
            .sum();
        assert_eq!(lines.count(), sla[rows].as_array().unwrap().len());
        assert_eq!(csv_met, json_met);
    }
    let out = store.run(
        &["report", "sla", "--format", "csv", "--rows", "nope"],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no list `nope`"), "{}", stderr(&out));

    // Text: every mean of the satisfaction table has two decimals.
    let out = store.run(&["report", "satisfaction", "--period", "total"], None);
    let text = stdout(&out);
    let means: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  team ") || l.starts_with("  grade "))
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert!(!means.is_empty(), "{text}");
    for mean in means {
        assert!(
            mean == "-" || (mean.len() == 4 && mean.as_bytes()[1] == b'.'),
            "{mean} in {text}"
        );
    }
}

/// Issue 17: off a terminal (stderr is a pipe here) the demo and the replay announce every
/// phase on stderr, report progress in plain lines at the interval the environment sets,
/// end each phase with a line, and write no escape codes; stdout keeps the reports alone.
#[test]
fn demo_and_replay_report_progress_in_plain_lines_off_a_terminal() {
    let store = Store::new();
    let fast = [("CLOSELOOP_PROGRESS_INTERVAL_MS", "1")];
    let demo = store.run_with_env(
        &[
            "demo",
            "--tickets",
            "200",
            "--days",
            "5",
            "--customers",
            "50",
        ],
        None,
        &fast,
    );
    let (out, err) = (stdout(&demo), stderr(&demo));
    assert!(demo.status.success(), "demo failed: {out}\n{err}");
    let phases = [
        "demo: generating the workload's setup",
        "demo: running the workload",
        "demo: quality-inspection programme",
        "demo: reading the log back",
        "demo: computing the reports",
        "demo: verifying the log",
    ];
    for phase in phases {
        assert!(
            err.contains(&format!("{phase}...\n")),
            "{phase} not announced: {err}"
        );
        assert!(
            err.contains(&format!("{phase}: done")),
            "{phase} not ended: {err}"
        );
    }
    // The workload phase lasts far longer than the interval: its periodic lines give the
    // count out of the total, the rate and the time left.
    let periodic: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.starts_with("demo: running the workload: ") && l.contains(" of 120 simulated hours (")
        })
        .collect();
    assert!(!periodic.is_empty(), "no periodic progress line: {err}");
    assert!(
        periodic
            .iter()
            .all(|l| l.contains(" simulated hours/s") && l.contains(" so far")),
        "{periodic:?}"
    );
    assert!(
        periodic.iter().any(|l| l.contains(" left, ")),
        "{periodic:?}"
    );
    assert!(
        err.contains("demo: verifying the log: done, ") && err.contains("; intact"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "escape codes off a terminal: {err:?}"
    );
    // The reports are on stdout, and the progress is not.
    assert!(
        out.contains("Reports at the end of the simulated period"),
        "{out}"
    );
    assert!(out.contains("every hash chain intact"), "{out}");
    assert!(!out.contains("demo: running the workload"), "{out}");

    let replay = store.run_with_env(&["replay", "tables"], None, &fast);
    let (out, err) = (stdout(&replay), stderr(&replay));
    assert!(replay.status.success(), "replay failed: {out}\n{err}");
    for phase in [
        "replay: reading and folding the log",
        "replay: saving the last save point",
        "replay: building indexes and swapping the tables in",
    ] {
        assert!(
            err.contains(&format!("{phase}...\n")),
            "{phase} not announced: {err}"
        );
        assert!(
            err.contains(&format!("{phase}: done")),
            "{phase} not ended: {err}"
        );
    }
    assert!(
        err.contains("replay: reading and folding the log: done, ")
            && err.contains(" events of the tables' categories folded"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "escape codes off a terminal: {err:?}"
    );
    assert!(out.contains("and switched"), "{out}");
    assert!(!out.contains("replay: "), "{out}");
}

/// Issue 17: the replay's summary says what its numbers are: the log positions it went
/// through (one event each), the events of the tables' categories among them (folded), and
/// the others (skipped), which add up; checked against the exported log.
#[test]
fn replay_summary_explains_its_counts() {
    let store = Store::new();
    let demo = store.demo(60, 3, 20);
    assert!(demo.status.success(), "{}", stderr(&demo));
    let events = store.exported();
    let folded = events
        .iter()
        .filter(|e| {
            let stream = e["stream"].as_str().expect("stream");
            let category = stream.split_once('-').map_or(stream, |(c, _)| c);
            closeloop_projections::tables::CATEGORIES.contains(&category)
        })
        .count();
    let (n, k) = (events.len(), folded);
    assert!(k < n, "the demo's log has customers and SLA policies too");
    let replay = store.run(&["replay", "tables"], None);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let out = stdout(&replay);
    let group = |n: usize| {
        let digits = n.to_string();
        let mut s = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                s.push(',');
            }
            s.push(c);
        }
        s
    };
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "replayed log positions 1 to {} ({} events) in ",
            group(n),
            group(n)
        )) && lines[0].ends_with(" events/s"),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!(
            "folded {} of them, the events of the tables' categories (ticket, calendar, agent, \
             scorecard, inspection, customer, retention_policy); the other {} (SLA policies and \
             other categories no table reads) were skipped",
            group(k),
            group(n - k)
        ),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("tables rebuilt to position {n} in ")),
        "{out}"
    );
}

/// The demo drives the SLA scheduler hour by simulated hour: breaches are events in the log
/// (actor role `system`), and they agree with the SLA report, checked by hand on a small run.
#[test]
fn demo_records_sla_breaches_that_agree_with_the_report() {
    let store = Store::new();
    let out = store.demo(200, 5, 50);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        stderr(&out)
    );
    assert!(text.contains(" 0 rejected"), "{text}");
    assert!(text.contains("breaches recorded (role system)"), "{text}");

    // (a) Breaches are in the exported log, and in the ticket's history as the system's.
    let events = store.exported();
    let ticket_of = |e: &Value| e["data"]["ticket_id"].as_str().unwrap().to_owned();
    let breach = events
        .iter()
        .find(|e| e["type"] == "sla_breached")
        .expect("the demo records at least one SLA breach");
    let ticket = ticket_of(breach);
    let out = store.run(&["history", &ticket, "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let history: Value = serde_json::from_str(&stdout(&out)).expect("history JSON");
    let listed = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "sla_breached")
        .expect("the breach is in the ticket's history");
    assert_eq!(listed["metadata"]["actor"]["role"], "system");
    assert_eq!(listed["data"], breach["data"]);

    // (b) By hand, from the exported events alone: the grade of each ticket with SLA targets,
    // and the tickets with a first-response breach event.
    let mut grade_of: std::collections::BTreeMap<String, String> = Default::default();
    for e in events.iter().filter(|e| e["type"] == "ticket_opened") {
        if !e["data"]["sla"].is_null() {
            grade_of.insert(
                ticket_of(e),
                e["data"]["grade"].as_str().unwrap().to_owned(),
            );
        }
    }
    let breached_by_event: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| e["type"] == "sla_breached" && e["data"]["target"] == "first_response")
        .map(ticket_of)
        .collect();

    // The report at the end of the simulation (5 days from 2026-10-26, midnight UTC).
    let end: jiff::Timestamp = "2026-10-31T00:00:00Z".parse().unwrap();
    let out = store.run(&["report", "sla", "--json", "--at", &end.to_string()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("report JSON");
    let at = |v: &Value| v.as_str().map(|s| s.parse::<jiff::Timestamp>().unwrap());
    // The subset compared: first-response timers the report calls `breached` that were still
    // unanswered at the end of the simulated hour in which they fell due. The demo runs the
    // scheduler after every hour (ticks at whole UTC hours, ending at `end`), once every
    // command before that hour's end is in; a breach due at D is recorded by the first tick
    // ending after D, if the ticket is still open then. A timer fulfilled late
    // but before that tick (answered at 10:40 for a 10:20 deadline) is `breached` in the report
    // with no breach event: nobody saw it overdue while it was open, so it is left out. Every
    // other report-breached timer (still running at `end`, or answered after its deadline's
    // tick) must have exactly one breach event, and every breach event must be such a timer:
    // the sets are compared, not only their sizes, so a missed, extra or misdated breach fails.
    let mut breached_while_open = std::collections::BTreeSet::new();
    let mut fulfilled_before_tick = 0;
    for timer in report["timers"].as_array().expect("timers") {
        if timer["target"] != "first_response" || timer["status"] != "breached" {
            continue;
        }
        let due = at(&timer["due_at"]).expect("a breached timer has a deadline");
        assert!(due <= end, "{timer}");
        // The first tick strictly after the deadline: a deadline is breached once passed.
        let tick_end =
            jiff::Timestamp::from_second((due.as_second().div_euclid(3600) + 1) * 3600).unwrap();
        match at(&timer["fulfilled_at"]) {
            Some(fulfilled) if fulfilled < tick_end => fulfilled_before_tick += 1,
            _ => {
                breached_while_open.insert(timer["ticket_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(
        breached_by_event, breached_while_open,
        "first-response breach events vs the report's timers breached while open"
    );
    let per_grade = |tickets: &std::collections::BTreeSet<String>| {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for t in tickets {
            *counts
                .entry(
                    grade_of
                        .get(t)
                        .expect("a breached ticket has targets")
                        .clone(),
                )
                .or_default() += 1;
        }
        counts
    };
    let by_event = per_grade(&breached_by_event);
    assert_eq!(by_event, per_grade(&breached_while_open));
    assert!(
        by_event.values().sum::<usize>() > 0,
        "the small run has first-response breaches"
    );
    eprintln!(
        "first-response breaches by grade: {by_event:?}; {fulfilled_before_tick} more answered late within their deadline's hour"
    );
}

/// `closeloop migrate` creates the PostgreSQL schema, then finds it up to date.
#[test]
fn migrate_creates_then_finds_the_postgres_schema_up_to_date() {
    let base = std::env::var("CLOSELOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("cl_cli_{}", Uuid::now_v7().simple());
    let url = format!("{base}?schema={schema}");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(&url)
            .args(args)
            .output()
            .expect("closeloop runs")
    };
    let first = run(&["migrate"]);
    assert!(
        first.status.success(),
        "migrate failed (is PostgreSQL up? scripts/services.sh starts it): {}",
        stderr(&first)
    );
    assert!(
        stdout(&first).contains("applied 0001"),
        "{}",
        stdout(&first)
    );
    let again = run(&["migrate"]);
    assert!(stdout(&again).contains("up to date"), "{}", stdout(&again));
    let psql = |sql: &str| {
        Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &base, "-c", sql])
            .output()
    };
    let dropped = psql(&format!("DROP SCHEMA {schema} CASCADE")).expect("psql runs");
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
}

/// `closeloop --help` gives every subcommand its own one-line description.
#[test]
fn help_describes_every_subcommand_once() {
    let output = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .arg("--help")
        .output()
        .expect("run closeloop --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(commands.len() >= 10, "{help}");
    for line in &commands {
        let mut words = line.split_whitespace();
        let name = words.next().expect("a name");
        let description: Vec<&str> = words.collect();
        assert!(
            !description.is_empty(),
            "`{name}` has no description:\n{help}"
        );
        // One sentence each: a description that runs into another's is two docs merged.
        assert!(
            description.join(" ").matches(". ").count() == 0,
            "`{name}`'s description holds two sentences: {line}"
        );
    }
    // Each description is its own command's (issue 17: migrate once had export's, export none).
    let description = |name: &str| {
        let line = commands
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` in:\n{help}"));
        line.trim_start()[name.len()..].trim().to_owned()
    };
    let migrate = description("migrate");
    let export = description("export");
    assert_ne!(migrate, export);
    assert!(
        migrate.contains("PostgreSQL") && migrate.contains("schema"),
        "{migrate}"
    );
    assert!(
        export.contains("events") && export.contains("JSON lines"),
        "{export}"
    );
    assert!(description("history").contains("history"));
    assert!(description("verify").contains("hash chains"));
}

/// Every argument and option of every subcommand is described in its own `--help`.
#[test]
fn every_subcommand_describes_each_of_its_arguments() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .args(args)
            .output()
            .expect("closeloop runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let help = run(&["--help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect();
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        let text = run(&[name, "--help"]);
        let lines: Vec<&str> = text.lines().collect();
        let mut in_list = false;
        let mut entries = 0;
        for (i, line) in lines.iter().enumerate() {
            if matches!(*line, "Arguments:" | "Options:") {
                in_list = true;
                continue;
            }
            if line.trim().is_empty() || !line.starts_with(' ') {
                in_list = false;
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if !in_list || indent > 6 {
                continue;
            }
            // `  <TICKET_ID>  text` or `  --store <STORE>  text`, or clap's long layout:
            // the entry alone, its text on the next, further indented line.
            entries += 1;
            let described = line
                .trim()
                .split("  ")
                .filter(|p| !p.trim().is_empty())
                .count()
                > 1
                || lines.get(i + 1).is_some_and(|next| {
                    !next.trim().is_empty() && next.len() - next.trim_start().len() > indent
                });
            assert!(
                described,
                "`{name}`: `{}` has no description:\n{text}",
                line.trim()
            );
        }
        assert!(entries >= 2, "`{name}` lists no arguments:\n{text}");
    }
}

/// Issue 13, item 4: a note holding a newline, a fake event row and ANSI colour codes is
/// printed by `history` on its own row, escaped: one row per event, no escape byte.
#[test]
fn history_escapes_text_that_would_forge_a_row() {
    let store = Store::new();
    let ticket = Uuid::now_v7();
    let forged = "fine\n 99  2026-11-02 12:00:00   agent-1 (agent)   ticket_resolved   \u{1b}[32mfixed\u{1b}[0m";
    let mut lines = setup();
    lines.extend([
        cmd("open_ticket", CRM, "2026-11-02T09:00:00Z", json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "high", "subject": "Router\r down"})),
        cmd("assign_ticket", LEAD1, "2026-11-02T09:05:00Z", json!({"ticket_id": ticket, "agent_id": "agent-1"})),
        cmd("add_note", AGENT1, "2026-11-02T09:10:00Z", json!({"ticket_id": ticket, "text": forged})),
    ]);
    let (out, replies) = store.submit(&lines);
    assert!(out.status.success(), "{replies:?}");
    assert!(
        replies.iter().all(|r| r["status"] == "accepted"),
        "{replies:#?}"
    );

    let out = store.run(&["history", &ticket.to_string()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // A header, the column titles, and one row per event: nothing more.
    assert_eq!(text.lines().count(), 2 + 3, "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    assert!(text.contains("fine\\u{a} 99"), "{text}");
    assert_eq!(
        text.matches("ticket_resolved").count(),
        1,
        "only inside the escaped note"
    );
    // The JSON keeps the text exactly as it was sent.
    let out = store.run(&["history", &ticket.to_string(), "--json"], None);
    let history: Value = serde_json::from_str(&stdout(&out)).expect("history JSON");
    let note = history["events"][2]["data"]["text"]
        .as_str()
        .expect("the note's text");
    assert_eq!(note, forged);
}

#[test]
fn history_cuts_on_both_time_axes_without_a_gap() {
    let store = Store::new();
    let ticket = Uuid::now_v7();
    let mut lines = setup();
    lines.extend([
        cmd("open_ticket", CRM, "2026-11-02T09:00:00Z", json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "high", "subject": "Router down"})),
        cmd("assign_ticket", LEAD1, "2026-11-02T09:05:00Z", json!({"ticket_id": ticket, "agent_id": "agent-1"})),
        cmd("add_note", AGENT1, "2026-11-02T09:10:00Z", json!({"ticket_id": ticket, "text": "called"})),
    ]);
    let (out, replies) = store.submit(&lines);
    assert!(out.status.success(), "{replies:?}");
    let out = store.run(&["history", &ticket.to_string(), "--json"], None);
    let full: Value = serde_json::from_str(&stdout(&out)).expect("history JSON");
    let recorded = full["events"][1]["metadata"]["recorded_at"]
        .as_str()
        .unwrap();
    let versions = |args: &[&str]| -> Vec<u64> {
        let out = store.run(args, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let h: Value = serde_json::from_str(&stdout(&out)).expect("history JSON");
        h["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    let t = ticket.to_string();
    let cut = ["history", &t, "--json", "--as-of", "2026-11-02T09:07:00Z"];
    assert_eq!(versions(&cut), [1, 2]);
    let known = ["history", &t, "--json", "--as-known-at", recorded];
    assert_eq!(versions(&known), [1, 2]);
    // The table shows the recording gap (submitted weeks after the story's dates) and the cut.
    let out = store.run(&["history", &t, "--as-known-at", recorded], None);
    let text = stdout(&out);
    assert!(
        text.contains("as known at") && text.contains("recorded"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2 + 2, "{text}");
    // Before the ticket existed: a precise refusal, exit 1.
    let out = store.run(
        &["history", &t, "--as-known-at", "2001-01-01T00:00:00Z"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("as known at 2001-01-01"),
        "{}",
        stderr(&out)
    );
}

/// The hostile corpus (`corpus.rs`, over 300 commands) through `submit` as JSON lines: one
/// `rejected` reply per line, in order, a clean exit 1 (no panic), nothing appended.
#[test]
fn the_bad_input_corpus_is_refused_line_by_line_and_appends_nothing() {
    let store = Store::new();
    let (out, _) = store.submit(&setup());
    assert!(out.status.success());
    let before = store.exported().len();
    let corpus = crate::corpus::bad_commands();
    let mut input = Vec::new();
    for (_, bytes, _) in &corpus {
        input.extend_from_slice(bytes);
        input.push(b'\n');
    }
    let out = store.run(&["submit"], Some(&String::from_utf8(input).unwrap()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let replies: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("reply is JSON"))
        .collect();
    assert_eq!(replies.len(), corpus.len(), "one reply per line");
    for (i, ((kind, bytes, how), reply)) in corpus.iter().zip(&replies).enumerate() {
        assert_eq!(reply["line"], i + 1, "{kind}, {how}: {reply}");
        assert_eq!(
            reply["status"],
            "rejected",
            "{kind}, {how}: {} -> {reply}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(reply["error"]["kind"], "refused", "{kind}, {how}: {reply}");
    }
    assert_eq!(store.exported().len(), before, "nothing appended");
}

/// Issue 17: the subcommands that only read the log never create a store. A mistyped path
/// fails naming the path and how to create a store, and no file appears.
#[test]
fn reading_a_missing_sqlite_store_fails_and_creates_nothing() {
    let store = Store::new();
    let missing = store.dir.path().join("closelop.db");
    let url = format!("sqlite://{}", missing.display());
    let ticket = Uuid::now_v7().to_string();
    let reads: &[&[&str]] = &[
        &["verify"],
        &["verify", &ticket],
        &["report", "sla"],
        &["report", "sla", "--replayed", "5"],
        &["history", &ticket],
        &["export"],
        &["export", "--stream", "customer-c-1"],
        &["replay", "all"],
        &["checkpoint", "--key", "no-such.key"],
    ];
    for args in reads {
        let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(&url)
            .args(*args)
            .current_dir(store.dir.path())
            .output()
            .expect("closeloop runs");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
        assert!(
            err.contains(&format!("no event log at {url}"))
                && err.contains("does not exist")
                && err.contains("closeloop demo"),
            "{args:?}: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(store.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

/// The same on PostgreSQL: a schema never migrated is reported, not created; and `memory:`,
/// empty in every process, has nothing to read.
#[test]
fn reading_a_missing_postgres_schema_fails_and_creates_nothing() {
    let base = std::env::var("CLOSELOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("cl_cli_{}", Uuid::now_v7().simple());
    let url = format!("{base}?schema={schema}");
    for args in [&["verify"][..], &["export"], &["report", "sla"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(&url)
            .args(args)
            .output()
            .expect("closeloop runs");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no event log in schema `{schema}`"))
                && err.contains("closeloop migrate"),
            "{args:?}: {err}"
        );
    }
    let found = Command::new("psql")
        .args(["-X", "-At", &base, "-c"])
        .arg(format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
        ))
        .output()
        .expect("psql runs");
    assert_eq!(
        stdout(&found).trim(),
        "0",
        "the schema was created: {}",
        stderr(&found)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", "memory:", "verify"])
        .output()
        .expect("closeloop runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing to read"), "{}", stderr(&out));
}

/// Issue 17: `history` and `verify` take the stream name `history` prints (`ticket-<uuid>`)
/// as well as the bare UUID; `export --stream` of a stream with no events fails naming it.
#[test]
fn tickets_go_by_stream_name_too_and_an_empty_stream_is_no_export() {
    let store = Store::new();
    let ticket = Uuid::now_v7();
    let mut lines = setup();
    lines.push(cmd(
        "open_ticket",
        CRM,
        "2026-11-02T09:00:00Z",
        json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "high", "subject": "Router down"}),
    ));
    let (out, replies) = store.submit(&lines);
    assert!(out.status.success(), "{replies:?}");
    let stream = format!("ticket-{ticket}");

    let by_id = store.run(&["history", &ticket.to_string(), "--json"], None);
    let by_stream = store.run(&["history", &stream, "--json"], None);
    assert!(by_stream.status.success(), "{}", stderr(&by_stream));
    let history: Value = serde_json::from_str(&stdout(&by_stream)).expect("history JSON");
    assert_eq!(history["stream"], stream);
    assert_eq!(stdout(&by_stream), stdout(&by_id));
    let out = store.run(&["verify", &stream], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("1 events in 1 streams"),
        "{}",
        stdout(&out)
    );
    let out = store.run(&["history", "ticket-nope"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`ticket-<uuid>`"), "{}", stderr(&out));

    let out = store.run(&["export", "--stream", &stream], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    let other = format!("ticket-{}", Uuid::now_v7());
    let out = store.run(&["export", "--stream", &other], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains(&format!("no stream {other} in the log")),
        "{}",
        stderr(&out)
    );
    // A bare UUID is no stream name: the refusal says what the name would be.
    let out = store.run(&["export", "--stream", &ticket.to_string()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("named {stream}")),
        "{}",
        stderr(&out)
    );
}

/// Issue 17: `submit` reads pretty-printed documents, several in a row, and each reply names
/// the input line its command starts on; a syntax error is one reply naming the input's line
/// and column, and the documents after it are still read.
#[test]
fn submit_reads_pretty_documents_and_names_each_ones_line() {
    let store = Store::new();
    let mut input = String::new();
    let mut starts = Vec::new();
    let line_now = |input: &str| input.matches('\n').count() + 1;
    let commands = setup();
    for (i, command) in commands.iter().enumerate() {
        if i == 3 {
            // A hand-edited document with a comma missing after its second field.
            starts.push(line_now(&input));
            input.push_str("{\n  \"command_id\": \"0190c7b8-0000-7000-8000-0000000000b1\"\n  \"type\": \"add_note\"\n}\n\n");
        }
        starts.push(line_now(&input));
        input.push_str(&serde_json::to_string_pretty(command).unwrap());
        input.push('\n');
    }
    let broken = starts[3];
    let out = store.run(&["submit"], Some(&input));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let replies: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("reply is JSON"))
        .collect();
    assert_eq!(replies.len(), commands.len() + 1, "{replies:#?}");
    for (reply, start) in replies.iter().zip(&starts) {
        assert_eq!(reply["line"], *start, "{reply}");
        if *start == broken {
            assert_eq!(reply["status"], "rejected");
            assert_eq!(reply["error"]["code"], "validation");
            let message = reply["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("line {} column 3 of the input", broken + 2)),
                "{message}"
            );
        } else {
            assert_eq!(reply["status"], "accepted", "{reply}");
        }
    }

    // One pretty-printed document: one reply, at line 1.
    let ticket = Uuid::now_v7();
    let open = cmd(
        "open_ticket",
        CRM,
        "2026-11-02T09:00:00Z",
        json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "email", "category": "incident", "priority": "high", "subject": "Router down"}),
    );
    let out = store.run(
        &["submit"],
        Some(&format!(
            "\n{}\n",
            serde_json::to_string_pretty(&open).unwrap()
        )),
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let reply: Value = serde_json::from_str(stdout(&out).trim()).expect("one reply");
    assert_eq!(reply["line"], 2);
    assert_eq!(reply["stream"], format!("ticket-{ticket}"));
}

/// Runs `args` on `store` with stdout piped, reads one line, closes the pipe, and returns
/// the exit status and stderr.
fn close_stdout_after_a_line(
    store: &Store,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .arg("--store")
        .arg(store.url())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("closeloop runs");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a first line");
    assert!(!first.is_empty(), "{args:?} printed nothing");
    // The read end is dropped here: the next write after the pipe's buffer fills fails.
    let out = child.wait_with_output().expect("closeloop finishes");
    (out.status.code(), stderr(&out))
}

/// Issue 17: `closeloop report sla | head -1` ends quietly: exit 0, no "Broken pipe". Each
/// output is larger than a pipe's buffer, so the writes do fail. `submit` stops too, but says
/// on stderr which commands it did not submit, and exits 1.
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let store = Store::new();
    let out = store.demo(200, 5, 50);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = store.exported();
    assert!(events.len() > 1000, "{}", events.len());
    for args in [
        &["export"][..],
        &["report", "sla", "--json", "--limit", "10000"],
    ] {
        // More than a pipe's buffer (64 KiB): writing it all must meet the closed pipe.
        let whole = store.run(args, None);
        assert!(
            whole.stdout.len() > 128 << 10,
            "{args:?}: {}",
            whole.stdout.len()
        );
        let (code, err) = close_stdout_after_a_line(&store, args, None);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }

    let customers: String = (0..2000)
        .map(|i| {
            let c = cmd(
                "register_customer",
                ADMIN,
                "2026-11-02T07:00:00Z",
                json!({"customer_id": format!("pipe-{i}"), "name": "n", "grade": "standard"}),
            );
            format!("{c}\n")
        })
        .collect();
    let (code, err) = close_stdout_after_a_line(&store, &["submit"], Some(&customers));
    assert_eq!(code, Some(1), "{err}");
    let from: usize = err
        .split("the commands from line ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line named: {err}"));
    assert!(
        err.contains("not submitted") && !err.contains("Broken pipe"),
        "{err}"
    );
    let submitted = store
        .exported()
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("customer-pipe-"))
        .count();
    assert_eq!(submitted, from - 1, "{err}");
}

/// Starts `closeloop schedule` with stderr piped, reads its first log line, stops it with
/// SIGTERM and returns the line.
fn first_log_line_of_schedule(extra: &[&str]) -> String {
    let store = Store::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .arg("--store")
        .arg(store.url())
        .arg("schedule")
        .args(extra)
        .env("CLOSELOOP_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("closeloop schedule runs");
    let mut line = String::new();
    BufReader::new(child.stderr.take().expect("stderr"))
        .read_line(&mut line)
        .expect("a log line");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(child.wait().expect("schedule exits").success());
    line
}

/// Issue 17: logs written to a pipe or file are plain text, no ANSI colour codes; and
/// `--log-format json` writes JSON lines for log shippers.
#[test]
fn logs_are_plain_text_off_a_terminal_or_json_lines() {
    let line = first_log_line_of_schedule(&[]);
    assert!(line.contains("SLA scheduler running"), "{line:?}");
    assert!(line.contains("INFO"), "{line:?}");
    assert!(
        !line.contains('\u{1b}'),
        "escape codes in a piped log: {line:?}"
    );

    let line = first_log_line_of_schedule(&["--log-format", "json", "--interval-ms", "250"]);
    let logged: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(logged["level"], "INFO", "{logged}");
    assert_eq!(logged["message"], "SLA scheduler running", "{logged}");
    assert_eq!(logged["every_ms"], 250, "{logged}");
    assert!(logged["timestamp"].is_string(), "{logged}");

    let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["schedule", "--log-format", "xml"])
        .output()
        .expect("closeloop runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("[possible values: text, json]"),
        "{}",
        stderr(&out)
    );
}
