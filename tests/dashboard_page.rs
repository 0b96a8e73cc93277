//! The supervisor's dashboard: the page `closeloop report dashboard --html` writes, opened in
//! headless Chromium (Debian's `chromium`; the test fails saying how to install it when it is
//! absent, and never downloads a browser), and `closeloop serve --http` over real HTTP: the
//! page, the JSON reports and the CSV downloads behind the same tokens and confidentiality
//! rules as the NATS queries. Each test has its own store (a small seeded demo in a temp dir)
//! and, for `serve`, its own NATS names (`nats::Scope`). Nothing waits on a sleep: processes
//! are polled with a deadline.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nats::{test_auth, Binary, Scope};

/// Longest wait for any one process or condition.
const DEADLINE: Duration = Duration::from_secs(60);
/// The demo's window (it starts on 2026-10-26) and a report time weeks after its end, when
/// its open timers are at risk, so the page is the same whenever the test runs.
const FROM: &str = "2026-10-26";
const TO: &str = "2026-11-08";
const AT: &str = "2026-11-30T00:00:00Z";
/// A team lead of the demo and their team, and another team.
const LEAD: &str = "front-a-lead";
const TEAM: &str = "front-a";
const OTHER_TEAM: &str = "front-b";

/// A temp dir holding a seeded demo's SQLite store (also the query schemas' store).
pub(crate) struct DemoStore {
    dir: tempfile::TempDir,
}

impl DemoStore {
    pub(crate) fn new() -> DemoStore {
        let store = DemoStore {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let out = store.run(&[
            "demo",
            "--tickets",
            "300",
            "--days",
            "12",
            "--customers",
            "60",
        ]);
        assert!(
            out.status.success(),
            "demo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        store
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "sqlite://{}",
            self.dir.path().join("closeloop.db").display()
        )
    }

    fn run(&self, args: &[&str]) -> Output {
        Process::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(self.url())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("closeloop runs")
    }
}

/// Debian's Chromium (or CLOSELOOP_TEST_CHROMIUM), or a failure that says how to install it.
fn chromium() -> PathBuf {
    let wanted = std::env::var_os("CLOSELOOP_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        wanted.exists(),
        "the dashboard test needs headless Chromium, and {} is absent: install Debian's \
         package with `apt-get install -y chromium` (scripts/test.sh does it), or set \
         CLOSELOOP_TEST_CHROMIUM to a Chromium binary",
        wanted.display()
    );
    wanted
}

/// Runs headless Chromium on `page` with `args`, with a fresh profile and nothing fetched
/// from the network; its stdout. Fails if it does not end within the deadline.
fn run_chromium(page: &Path, profile: &Path, args: &[String]) -> Vec<u8> {
    let mut child = Process::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Lets the page settle (layout, paint) before the DOM or the screenshot is taken.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(status.success(), "chromium failed ({status}): {err}");
    out
}

#[test]
fn the_dashboard_page_renders_its_charts_in_chromium() {
    let store = DemoStore::new();
    let work = tempfile::tempdir().expect("temp dir");
    let page = work.path().join("dashboard.html");
    let out = store.run(&[
        "report",
        "dashboard",
        "--html",
        page.to_str().expect("a UTF-8 path"),
        "--from",
        FROM,
        "--to",
        TO,
        "--at",
        AT,
    ]);
    assert!(
        out.status.success(),
        "report dashboard: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).expect("the page was written");
    // Self-contained: nothing to fetch.
    for fetch in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(fetch), "the page would fetch: {fetch}");
    }

    // The DOM as Chromium built it: every chart is there, with its marks.
    let dom = String::from_utf8(run_chromium(
        &page,
        &work.path().join("profile-dom"),
        &["--dump-dom".to_owned()],
    ))
    .expect("the DOM is text");
    for chart in [
        "sla-first_response",
        "sla-next_response",
        "sla-resolution",
        "satisfaction-trend",
        "satisfaction-distribution",
        "scorecard",
    ] {
        let at = dom
            .find(&format!("data-chart=\"{chart}\""))
            .unwrap_or_else(|| panic!("chart {chart} is missing from the DOM"));
        let svg = &dom[at..at + dom[at..].find("</svg>").expect("the chart's svg ends")];
        let marks = svg.matches("<polyline").count()
            + svg.matches("<circle").count()
            + svg.matches("<rect").count();
        assert!(marks > 5, "chart {chart} has only {marks} marks: {svg}");
    }
    assert!(
        dom.contains("data-table=\"at-risk\""),
        "the at-risk list is missing"
    );
    // Twelve days of the demo span two ISO weeks: the SLA charts have a line per grade.
    assert!(
        dom.contains("2026-W44") && dom.contains("2026-W45"),
        "{dom}"
    );

    // The screenshot: taken, the window's size, and painted (the charts' colours are there,
    // not a blank or one-colour page).
    let shot = work.path().join("dashboard.png");
    run_chromium(
        &page,
        &work.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".to_owned(),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("chromium wrote the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("a frame");
    assert_eq!((frame.width, frame.height), (1280, 2000));
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "an RGB screenshot: {:?}", frame.color_type);
    let colours: HashSet<[u8; 3]> = pixels[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    assert!(
        colours.len() > 50,
        "the screenshot is (nearly) blank: {} colours",
        colours.len()
    );
    // Colours only the charts paint: the scorecard's results bars, the best score's band.
    for (name, rgb) in [
        ("results", [0x1f, 0x77, 0xb4]),
        ("score 5", [0x1a, 0x98, 0x50]),
    ] {
        assert!(
            colours.contains(&rgb),
            "the screenshot has no {name} colour {rgb:?}: the charts did not paint"
        );
    }
}

/// `closeloop serve --http 127.0.0.1:0` on `store`, in `scope`'s names, killed when dropped.
struct Serving {
    _binary: Binary,
    http: SocketAddr,
}

impl Serving {
    fn start(scope: &Scope, store: &str) -> Serving {
        let (binary, http) = Binary::start_logged(
            scope,
            store,
            // Read-only: nothing of the engine's own should append meanwhile.
            &[
                "--no-process-managers",
                "--no-scheduler",
                "--http",
                "127.0.0.1:0",
            ],
            "http_addr",
        );
        Serving {
            _binary: binary,
            http,
        }
    }
}

/// An HTTP/1.1 answer.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

/// One request with `token` as the bearer credential, if any.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to serve --http");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let response = String::from_utf8(response).expect("a text response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn token(id: &str, role: &str) -> String {
    test_auth().key.token(&json!({"id": id, "role": role}))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_http_answers_the_dashboard_and_reports_within_the_readers_scope() {
    let scope = Scope::new().await;
    let store = tokio::task::spawn_blocking(DemoStore::new)
        .await
        .expect("demo");
    let serving = Serving::start(&scope, &store.url());
    let addr = serving.http;
    let get = move |path: &str, token: Option<String>| {
        let path = path.to_owned();
        async move {
            tokio::task::spawn_blocking(move || request(addr, "GET", &path, token.as_deref()))
                .await
                .expect("request")
        }
    };
    let supervisor = Some(token(LEAD, "supervisor"));
    let auditor = Some(token("audit-1", "auditor"));
    let window = format!("from={FROM}&to={TO}&at={AT}");

    // No credential, or a forged one: 401, nothing of the report.
    let none = get("/reports/performance", None).await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(none.json()["error"]["code"], "unauthorized");
    let forged = get("/", Some("not.a.jwt".to_owned())).await;
    assert_eq!(forged.status, 401, "{}", forged.body);

    // The auditor sees every team (waiting, with a deadline, for the projector to have
    // caught up with the demo's log).
    let started = Instant::now();
    let all = loop {
        let answer = get(&format!("/reports/performance?{window}"), auditor.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let value = answer.json();
        if value["projectors"][0]["lag"] == 0 {
            break value;
        }
        assert!(started.elapsed() < DEADLINE, "the projector lags: {value}");
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    };
    let teams = |v: &Value| -> HashSet<String> {
        v["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .map(|r| r["team"].as_str().expect("a team").to_owned())
            .collect()
    };
    assert!(teams(&all).len() > 1, "{all}");

    // A team lead gets their team only, whatever they ask for.
    let mine = get(
        &format!("/reports/performance?{window}"),
        supervisor.clone(),
    )
    .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(teams(&mine.json()), HashSet::from([TEAM.to_owned()]));
    let other = get(
        &format!("/reports/sla?team={OTHER_TEAM}"),
        supervisor.clone(),
    )
    .await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert_eq!(other.json()["error"]["code"], "forbidden");
    let service = get("/reports/sla", Some(token("crm", "service"))).await;
    assert_eq!(service.status, 403, "{}", service.body);
    let bad = get("/reports/sla?limit=0", supervisor.clone()).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown = get("/reports/nope", supervisor.clone()).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // CSV: a header and a row per agent of the team, the team column theirs alone.
    let csv = get(
        &format!("/reports/performance.csv?{window}&period=total"),
        supervisor.clone(),
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = csv.body.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let team_column = header
        .iter()
        .position(|c| *c == "team")
        .expect("a team column");
    assert!(header.contains(&"score_parts.results.points"), "{header:?}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), mine_agents(&mine.json()), "{}", csv.body);
    assert!(rows.iter().all(|r| r[team_column] == TEAM), "{}", csv.body);
    let timers = get(
        &format!("/reports/sla.csv?{window}&rows=timers&limit=5"),
        supervisor.clone(),
    )
    .await;
    assert_eq!(timers.status, 200, "{}", timers.body);
    assert!(timers.body.starts_with("assignee,"), "{}", timers.body);

    // The page: every chart, the team's rows only.
    let page = get(&format!("/?{window}"), supervisor.clone()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for chart in ["sla-resolution", "satisfaction-trend", "scorecard"] {
        assert!(
            page.body.contains(&format!("data-chart=\"{chart}\"")),
            "chart {chart} missing"
        );
    }
    assert!(page.body.contains(&format!("team {TEAM}")));
    assert!(
        !page.body.contains(OTHER_TEAM),
        "another team's rows on the page"
    );

    // Read-only.
    let post = tokio::task::spawn_blocking(move || request(addr, "POST", "/", None))
        .await
        .expect("request");
    assert_eq!(post.status, 405);
    drop(serving);
}

/// The agents of a performance report's rows (one row per agent and period).
fn mine_agents(report: &Value) -> usize {
    report["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|r| r["agent_id"].as_str().expect("an agent"))
        .collect::<HashSet<_>>()
        .len()
}
