//! `closeloop serve --metrics`: a real `serve` process on the shared NATS (its own scope, as
//! in `nats.rs`) and its own SQLite store, scraped over HTTP. The endpoint is bound to port 0
//! and its address read from serve's JSON log, so no port is guessed. Counters are exact:
//! every command the test sends is counted once by type and outcome. Nothing waits on a
//! sleep: the test scrapes until a condition holds, with a deadline.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use closeloop_commands::Reply;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::nats::{calendar_and_policy, collect_replies, envelope, provision_store, Binary, Scope};

/// Longest wait for any one observable condition.
const DEADLINE: Duration = Duration::from_secs(30);

/// `closeloop serve --metrics 127.0.0.1:0` as a child process, killed when dropped.
struct Serving {
    binary: Binary,
    metrics: SocketAddr,
}

impl Serving {
    fn start(scope: &Scope, store: &str) -> Serving {
        let (binary, metrics) = Binary::start_logged(
            scope,
            store,
            // Auto-assignment would add commands of its own to the counts.
            &[
                "--no-process-managers",
                "--scheduler-interval-ms",
                "100",
                "--metrics",
                "127.0.0.1:0",
            ],
            "metrics_addr",
        );
        Serving { binary, metrics }
    }

    /// SIGTERM, then the exit status.
    fn terminate(self) -> std::process::ExitStatus {
        self.binary.terminate()
    }
}

/// One `GET` over HTTP/1.1: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// A scrape parsed: each series (name and sorted labels) with its value.
#[derive(Debug)]
struct Scrape {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
    types: BTreeMap<String, String>,
    described: HashSet<String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        let mut types = BTreeMap::new();
        let mut described = HashSet::new();
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let (name, _) = help.split_once(' ').expect("# HELP name text");
                described.insert(name.to_owned());
                continue;
            }
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("a series and its value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match key.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels end with }");
                    let labels = labels
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (k, v) = l.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (key.to_owned(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Scrape {
            series,
            types,
            described,
        }
    }

    /// The value of the series `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.series
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }
}

/// Scrapes until `ready` holds (or the deadline passes); the last scrape.
async fn scrape_until(addr: SocketAddr, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let started = Instant::now();
    loop {
        let (status, body) = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
            .await
            .expect("scrape");
        assert_eq!(status, 200, "{body}");
        let scrape = Scrape::parse(&body);
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the metrics did not reach the expected values:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
}

#[tokio::test]
async fn metrics_count_commands_by_type_and_outcome_and_show_positions() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    // Every ticket's first response is due within an hour, its resolution in 69 days.
    provision_store(&store, &calendar_and_policy("2026-11-02T07:00:00Z", 60)).await;
    let serve = Serving::start(&scope, &store);
    // Waiting for request/reply sends unauthenticated `open_ticket` probes: refused at the
    // door, and counted as such.
    scope.wait_serving().await;

    // Request/reply: one accepted, the same again (duplicate), one rejected. Each ticket
    // was opened two hours ago, unanswered: the SLA scheduler appends a warning and a breach
    // of its first response.
    let first = opened_two_hours_ago();
    assert!(matches!(
        scope.command(&first).await,
        Reply::Accepted { .. }
    ));
    assert!(matches!(
        scope.command(&first).await,
        Reply::Duplicate { .. }
    ));
    let missing = envelope(
        "assign_ticket",
        json!({"id": "crm", "role": "service"}),
        json!({"ticket_id": Uuid::new_v4(), "agent_id": "agent-7"}),
    );
    let code = match scope.command(&missing).await {
        Reply::Rejected { error, .. } => serde_json::to_value(error.code).unwrap(),
        other => panic!("expected rejected, got {}", other.to_json()),
    };
    let code = code.as_str().expect("a code").to_owned();
    // Durable intake: one accepted.
    let mut replies = scope.replies().await;
    let durable = opened_two_hours_ago();
    scope.publish_durable(&durable).await;
    let id: Uuid = durable["command_id"].as_str().unwrap().parse().unwrap();
    let mut got = std::collections::HashMap::new();
    collect_replies(&mut replies, &HashSet::from([id]), &mut got).await;
    assert!(matches!(got[&id], Reply::Accepted { .. }));

    let commands = "closeloop_commands_total";
    let scrape = scrape_until(serve.metrics, |s| {
        s.value(
            commands,
            &[("type", "open_ticket"), ("outcome", "accepted")],
        ) == Some(2.0)
            && s.value("closeloop_projector_position", &[("projector", "tables")])
                == s.value("closeloop_log_head_position", &[])
            && s.value("closeloop_relay_lag_events", &[]) == Some(0.0)
            && s.value("closeloop_lease_held", &[("job", "relay")]) == Some(1.0)
            && s.value("closeloop_scheduler_appended_total", &[("kind", "breach")]) == Some(2.0)
    })
    .await;

    // Commands by type and outcome, exactly.
    let count = |labels: &[(&str, &str)]| scrape.value(commands, labels);
    assert_eq!(
        count(&[("type", "open_ticket"), ("outcome", "duplicate")]),
        Some(1.0)
    );
    assert_eq!(
        count(&[("type", "assign_ticket"), ("outcome", "rejected")]),
        Some(1.0)
    );
    assert_eq!(
        count(&[("type", "assign_ticket"), ("outcome", "accepted")]),
        None
    );
    assert_eq!(
        scrape.value(
            "closeloop_command_rejections_total",
            &[("type", "assign_ticket"), ("code", code.as_str())]
        ),
        Some(1.0)
    );
    let probes = count(&[("type", "open_ticket"), ("outcome", "rejected")])
        .expect("the unauthenticated probes were counted");
    assert!(probes >= 1.0);
    assert_eq!(
        scrape.value(
            "closeloop_command_rejections_total",
            &[("type", "open_ticket"), ("code", "unauthorized")]
        ),
        Some(probes),
        "every open_ticket refused was a probe without a credential"
    );

    // The scheduler's appends, by kind; and the handler counted its commands too.
    let appended =
        |kind: &str| scrape.value("closeloop_scheduler_appended_total", &[("kind", kind)]);
    assert_eq!(appended("warning"), Some(2.0));
    assert_eq!(appended("close_unconfirmed"), None);
    assert_eq!(
        count(&[("type", "record_sla_breach"), ("outcome", "accepted")]),
        Some(2.0)
    );
    for job in ["relay", "sla-scheduler", "projector-tables"] {
        assert_eq!(
            scrape.value("closeloop_lease_held", &[("job", job)]),
            Some(1.0),
            "the only instance holds the lease of {job}"
        );
    }

    // The latency histogram: the commands the handler decided (two accepted, one duplicate
    // of open_ticket; one assign_ticket), not those refused at the door.
    let duration = "closeloop_command_duration_seconds";
    assert_eq!(
        scrape.types.get(duration).map(String::as_str),
        Some("histogram")
    );
    let handled = |name: &str, t: &str| scrape.value(&format!("{duration}_{name}"), &[("type", t)]);
    assert_eq!(handled("count", "open_ticket"), Some(3.0));
    assert_eq!(handled("count", "assign_ticket"), Some(1.0));
    assert_eq!(
        scrape.value(
            &format!("{duration}_bucket"),
            &[("type", "open_ticket"), ("le", "+Inf")]
        ),
        Some(3.0)
    );

    // Positions: the tables and the relay have caught up with the log, which holds the two
    // tickets' openings, warnings and breaches.
    let head = scrape
        .value("closeloop_log_head_position", &[])
        .expect("the log's head");
    assert!(head >= 6.0, "head {head}");
    assert_eq!(
        scrape.value("closeloop_projector_lag_events", &[("projector", "tables")]),
        Some(0.0)
    );
    assert_eq!(scrape.value("closeloop_relay_position", &[]), Some(head));
    // Nothing was shed, nothing is in flight or waiting in the durable backlog.
    assert_eq!(scrape.value("closeloop_durable_backlog", &[]), Some(0.0));
    for intake in ["request", "durable"] {
        assert_eq!(
            scrape.value("closeloop_commands_in_flight", &[("intake", intake)]),
            Some(0.0),
            "{intake}"
        );
    }
    assert_eq!(scrape.value("closeloop_commands_shed_total", &[]), None);
    // Every series has its help text.
    for (name, _, _) in &scrape.series {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|f| scrape.types.contains_key(*f))
            .unwrap_or(name);
        assert!(scrape.described.contains(family), "{name} has no # HELP");
    }

    // Only `GET /metrics` is served.
    let addr = serve.metrics;
    let (status, _) = tokio::task::spawn_blocking(move || get(addr, "/"))
        .await
        .unwrap();
    assert_eq!(status, 404);

    assert!(serve.terminate().success(), "serve drains and exits 0");
}

/// The README's Metrics table lists every metric of the catalogue, with its type and labels,
/// and nothing else.
#[test]
fn metrics_readme_lists_every_metric_with_its_type_and_labels() {
    use closeloop_commands::metrics::{Kind, CATALOGUE};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Metrics section");
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| `closeloop_"))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    assert_eq!(rows.len(), CATALOGUE.len(), "one row per metric");
    for metric in CATALOGUE {
        let row = rows
            .iter()
            .find(|r| r[1] == format!("`{}`", metric.name))
            .unwrap_or_else(|| panic!("README, Metrics: no row for {}", metric.name));
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(row[2].starts_with(kind), "{}: type {}", metric.name, row[2]);
        let labels: Vec<String> = metric.labels.iter().map(|l| format!("`{l}`")).collect();
        assert_eq!(row[3], labels.join(", "), "{}: labels", metric.name);
    }
}

/// `open_ticket` by the CRM service, two hours before now.
fn opened_two_hours_ago() -> Value {
    let mut command = envelope(
        "open_ticket",
        json!({"id": "crm", "role": "service"}),
        json!({"ticket_id": Uuid::new_v4(), "customer_id": "cust-1", "channel": "email",
               "category": "incident", "priority": "high", "subject": "Printer on fire"}),
    );
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    command["occurred_at"] = json!(at.to_string());
    command
}

/// The address `serve` bound for `field` (`metrics_addr`, `http_addr`), as its JSON log names
/// it (by `deadline`). Its stderr is drained to the end on a thread, so serve never blocks on
/// a full pipe.
pub(crate) fn logged_address(
    child: &mut std::process::Child,
    field: &'static str,
    deadline: std::time::Duration,
) -> std::net::SocketAddr {
    let stderr = child.stderr.take().expect("stderr piped");
    let (found, address) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let addr = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v[field].as_str().map(str::to_owned));
            if let Some(addr) = addr {
                let _ = found.send(addr);
            }
        }
    });
    address
        .recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("serve logs its {field}"))
        .parse()
        .expect("a socket address")
}
