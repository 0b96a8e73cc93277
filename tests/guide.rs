//! The README's integration guide (issue 17, item 2): its snippets are the files under
//! `docs/examples/`, quoted exactly, and the Python example runs against a real
//! `closeloop serve` on the shared NATS server, with names of its own.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use uuid::Uuid;

use crate::nats::{envelope, provision_store, register_agent, system, test_auth, Binary, Scope};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example files and the fence language the README quotes them with.
const EXAMPLES: &[(&str, &str)] = &[
    ("docs/examples/python/integrate.py", "python"),
    ("docs/examples/go/main.go", "go"),
];

/// The regions of `text` between `snippet: NAME` and `end snippet` comment lines (markers
/// and trailing blank lines excluded), by name.
fn regions(path: &str, text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        let marker = line.trim_start_matches(['#', '/', ' ']);
        if let Some(name) = marker.strip_prefix("snippet: ") {
            assert!(
                open.is_none(),
                "{path}: snippet {name} opens inside another"
            );
            open = Some((name.to_owned(), String::new()));
        } else if marker == "end snippet" {
            let (name, body) = open
                .take()
                .unwrap_or_else(|| panic!("{path}: end without start"));
            // gofmt wants a blank line before the closing marker: not part of the snippet.
            found.push((name, format!("{}\n", body.trim_end())));
        } else if let Some((_, body)) = open.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert!(open.is_none(), "{path}: a snippet is never ended");
    found
}

/// The bodies of the README's code blocks fenced with ```` ```lang ````.
fn fenced(readme: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in readme.lines() {
        match open.as_mut() {
            None if line == format!("```{lang}") => open = Some(String::new()),
            Some(_) if line == "```" => blocks.push(open.take().unwrap()),
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn the_readme_quotes_the_example_files_exactly() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (path, lang) in EXAMPLES {
        let text = std::fs::read_to_string(repo().join(path)).unwrap();
        let regions = regions(path, &text);
        assert!(!regions.is_empty(), "{path} has no snippet");
        let blocks = fenced(&readme, lang);
        for (name, body) in &regions {
            assert!(
                blocks.contains(body),
                "README.md has no ```{lang} block equal to snippet {name} of {path}:\n{body}"
            );
        }
        for block in &blocks {
            assert!(
                regions.iter().any(|(_, body)| body == block),
                "README.md's ```{lang} block is no snippet of {path} (copy it from there):\n{block}"
            );
        }
    }
}

/// Fails, never skips, when Python or a package the example needs is missing.
fn python_with_packages() {
    let probe = Command::new("python3")
        .args(["-c", "import nats, cryptography"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "docs/examples/python/integrate.py needs the Python packages `nats-py` and \
             `cryptography`: install them with `python3 -m pip install nats-py cryptography` \
             (scripts/services.sh does) ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "docs/examples/python/integrate.py needs python3 ({e}): install it with \
             `apt-get install python3 python3-pip`, then `python3 -m pip install nats-py \
             cryptography`"
        ),
    }
}

/// Fails, never skips, when Go or Debian's nats.go (the one module the example imports) is
/// missing. The example builds in GOPATH mode against Debian's packaged source, offline.
fn go_with_nats() -> PathBuf {
    let gopath = PathBuf::from("/usr/share/gocode");
    let install =
        "install them with `apt-get install golang-go golang-github-nats-io-go-nats-dev` \
                   (scripts/services.sh does)";
    match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!("docs/examples/go/main.go needs Go and nats.go: {install}"),
    }
    assert!(
        gopath.join("src/github.com/nats-io/nats.go").is_dir(),
        "docs/examples/go/main.go needs nats.go under {}: {install}",
        gopath.display()
    );
    gopath
}

/// Starts `closeloop serve` (process managers on: the examples meet auto-assignment as a
/// client would) with a team lead and an agent provisioned, runs `example` against it with
/// the settings it reads from the environment, and checks what it printed.
async fn run_example(example: &mut Command) {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    // Agents are provisioned locally: `system` is not accepted over NATS.
    let lead = envelope(
        "register_agent",
        system(),
        json!({"agent_id": "lead-1", "name": "Lead", "team": "green", "line": 1,
               "level": "senior", "team_lead": true}),
    );
    provision_store(&store, &[lead, register_agent("agent-7", "green")]).await;
    let _serve = Binary::start(&scope, &store, &[]);
    scope.wait_serving().await;

    let key = dir.path().join("crm.key");
    std::fs::write(&key, &test_auth().key.private_pem).unwrap();
    let out = example
        .env("NATS_URL", crate::nats::nats_url())
        .env("CLOSELOOP_PREFIX", &scope.config.subject_prefix)
        .env("CLOSELOOP_EVENTS_STREAM", &scope.config.events_stream)
        .env("CLOSELOOP_KEY", &key)
        .env("CLOSELOOP_KID", &test_auth().key.kid)
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"))
            .trim()
            .to_owned()
    };
    let opened = line("command: ");
    assert!(
        opened.starts_with("command: accepted ")
            && opened.contains("ticket_opened")
            && opened.contains(" in ticket-"),
        "{opened}"
    );
    let stored = format!("durable: stored as {} #", scope.config.commands_stream);
    line(&stored);
    let durable = line("durable: accepted ");
    assert!(durable.contains("ticket_opened"), "{durable}");
    // Either the example assigned the ticket or auto-assignment had: both are success.
    let assigned = line("assign: ");
    assert!(
        assigned.starts_with("assign: accepted, agent-7 has it")
            || assigned.starts_with("assign: already assigned (/payload/agent_id: "),
        "{assigned}"
    );
    line("event: ticket_opened position ");
    // Every header the relay sets, with a value.
    for header in [
        "Nats-Msg-Id",
        "Closeloop-Position",
        "Closeloop-Log-Id",
        "Nats-Expected-Last-Sequence",
    ] {
        let value = line(&format!("header {header}: "));
        let value = value.rsplit(": ").next().unwrap();
        assert!(!value.is_empty() && value != "None", "{header}: {value:?}");
    }
    let log_id = line("header Closeloop-Log-Id: ");
    assert!(
        log_id.rsplit(' ').next().unwrap().parse::<Uuid>().is_ok(),
        "{log_id}"
    );
    let report = line("report: report_sla answered with ");
    for field in ["compliance", "timers", "projectors"] {
        assert!(report.contains(field), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_integrates_with_serve() {
    python_with_packages();
    run_example(Command::new("python3").arg(repo().join("docs/examples/python/integrate.py")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_example_is_formatted_builds_and_integrates_with_serve() {
    let gopath = go_with_nats();
    let source = repo().join("docs/examples/go");
    let unformatted = Command::new("gofmt")
        .arg("-l")
        .arg(&source)
        .output()
        .expect("run gofmt");
    assert!(
        unformatted.status.success() && unformatted.stdout.is_empty(),
        "gofmt -l docs/examples/go: {}{}",
        String::from_utf8_lossy(&unformatted.stdout),
        String::from_utf8_lossy(&unformatted.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("integrate");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", std::env::temp_dir().join("closeloop-go-cache"))
        .output()
        .expect("run go build");
    assert!(
        built.status.success(),
        "go build docs/examples/go: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    run_example(&mut Command::new(&binary)).await;
}
