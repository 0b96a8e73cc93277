//! Signed checkpoints (issue 13, item 4), through the binary as an operator and an auditor
//! use it: `keygen`, `checkpoint`, then a superuser's tampering with the database that the
//! hash chains alone cannot see (a stream rewritten with recomputed hashes, on SQLite and on
//! PostgreSQL; the log's tail removed, a whole stream with it), and forged checkpoints: each
//! is named by `verify --checkpoints`. SQLite logs live in temporary directories, PostgreSQL
//! logs in a schema of their own ([`Scratch`]); NATS names are the test's own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use closeloop_core::log::sqlite::SqliteLog;
use closeloop_core::log::{chain_hash, EventLog, ExpectedVersion, StoredEvent, GENESIS_HASH};
use closeloop_testkit::conformance::{append_request, commit, numbered_events, stream_name};
use serde_json::{json, Value};

use crate::postgres::{admin, with_schema_param, Scratch};

/// The binary on `store`, in `dir`.
fn closeloop(store: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(args)
        .env("CLOSELOOP_STORE", store)
        .env_remove("CLOSELOOP_NATS")
        .current_dir(dir)
        .output()
        .expect("run closeloop")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `closeloop verify --checkpoints FILE --public-key PUBFILE`: its exit code and output.
fn verify_checkpoints(store: &str, dir: &Path, checkpoints: &str) -> (i32, String) {
    let out = closeloop(
        store,
        dir,
        &[
            "verify",
            "--checkpoints",
            checkpoints,
            "--public-key",
            "key.pub",
        ],
    );
    (out.status.code().unwrap_or(-1), text(&out))
}

/// `keygen` then one `checkpoint` into `checkpoints.jsonl`, both expected to succeed.
fn keygen_and_checkpoint(store: &str, dir: &Path) {
    let out = closeloop(store, dir, &["keygen", "--out", "key"]);
    assert!(out.status.success(), "keygen: {}", text(&out));
    checkpoint(store, dir);
}

fn checkpoint(store: &str, dir: &Path) {
    let out = closeloop(
        store,
        dir,
        &["checkpoint", "--key", "key", "--out", "checkpoints.jsonl"],
    );
    assert!(out.status.success(), "checkpoint: {}", text(&out));
}

/// Three streams: a case of 3 events, a staff member of 1, a case of 2 (the log's tail).
/// (Categories no projector reads, so a `serve` on the log has nothing to complain of.)
async fn fill(log: &dyn EventLog) -> (String, String) {
    let rewritten = stream_name("case");
    for _ in 0..3 {
        commit(
            log,
            append_request(&rewritten, ExpectedVersion::Any, numbered_events(1)),
        )
        .await;
    }
    commit(
        log,
        append_request(
            &stream_name("staff"),
            ExpectedVersion::Any,
            numbered_events(1),
        ),
    )
    .await;
    let tail = stream_name("case");
    commit(
        log,
        append_request(&tail, ExpectedVersion::Any, numbered_events(2)),
    )
    .await;
    (rewritten, tail)
}

/// The superuser's rewrite: version 1's data changed ("credit moved"), every hash of the
/// stream recomputed by the documented rule, so the chain still holds. The new
/// `(version, data, hash)` of each event.
fn rewrite(events: &[StoredEvent]) -> Vec<(u64, Value, String)> {
    let mut prev = GENESIS_HASH.to_owned();
    events
        .iter()
        .map(|event| {
            let mut event = event.clone();
            if event.version == 1 {
                event.data = json!({"n": 99, "credited_to": "someone-else"});
            }
            event.hash = chain_hash(&prev, &event);
            prev = event.hash.clone();
            (event.version, event.data, event.hash)
        })
        .collect()
}

fn assert_plain_verify_passes(store: &str, dir: &Path) {
    let out = closeloop(store, dir, &["verify"]);
    assert!(
        out.status.success(),
        "the rewrite keeps the chains intact, so plain verify passes: {}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_rewritten_with_recomputed_hashes_is_named_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    let (stream, _) = fill(&log).await;
    let events = log.read_stream(&stream, 0).await.unwrap();
    drop(log);
    keygen_and_checkpoint(&store, dir.path());
    let (code, out) = verify_checkpoints(&store, dir.path(), "checkpoints.jsonl");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("covers positions 1..=6"), "{out}");

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("DROP TRIGGER events_no_update").unwrap();
    for (version, data, hash) in rewrite(&events) {
        raw.execute(
            "UPDATE events SET data = ?1, hash = ?2 WHERE stream = ?3 AND version = ?4",
            rusqlite::params![data.to_string(), hash, stream, version as i64],
        )
        .unwrap();
    }
    drop(raw);
    assert_plain_verify_passes(&store, dir.path());
    let (code, out) = verify_checkpoints(&store, dir.path(), "checkpoints.jsonl");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("rewritten stream: {stream} version 3")),
        "the stream is named: {out}"
    );
    assert!(out.contains("no valid checkpoint"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_rewritten_with_recomputed_hashes_is_named_on_postgres() {
    let scratch = Scratch::new().await;
    let store = with_schema_param(&scratch.schema);
    let dir = tempfile::tempdir().unwrap();
    let log = scratch.log().await;
    let (stream, _) = fill(&log).await;
    let events = log.read_stream(&stream, 0).await.unwrap();
    drop(log);
    keygen_and_checkpoint(&store, dir.path());

    let admin = admin().await;
    let s = &scratch.schema;
    admin
        .batch_execute(&format!("ALTER TABLE \"{s}\".events DISABLE TRIGGER USER"))
        .await
        .unwrap();
    for (version, data, hash) in rewrite(&events) {
        admin
            .execute(
                &format!(
                    "UPDATE \"{s}\".events SET data = $1, hash = $2 WHERE stream = $3 AND version = $4"
                ),
                &[&data, &hash, &stream, &(version as i64)],
            )
            .await
            .unwrap();
    }
    assert_plain_verify_passes(&store, dir.path());
    let (code, out) = verify_checkpoints(&store, dir.path(), "checkpoints.jsonl");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("rewritten stream: {stream} version 3")),
        "the stream is named: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_tail_and_the_stream_it_held_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    let (_, tail) = fill(&log).await;
    drop(log);
    keygen_and_checkpoint(&store, dir.path());

    // The tail (positions 5 and 6: the whole second case) deleted, its command records too.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TRIGGER events_no_delete; DROP TRIGGER commands_no_delete;
         DELETE FROM events WHERE position > 4; DELETE FROM commands WHERE position > 4;",
    )
    .unwrap();
    drop(raw);
    assert_plain_verify_passes(&store, dir.path());
    let (code, out) = verify_checkpoints(&store, dir.path(), "checkpoints.jsonl");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("truncated tail: the log ends at position 4")
            && out.contains("positions 5..=6 were removed"),
        "{out}"
    );
    assert!(out.contains(&format!("removed stream: {tail}")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_checkpoints_are_named_and_the_valid_one_still_covers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    fill(&log).await;
    drop(log);
    keygen_and_checkpoint(&store, dir.path());
    let genuine = std::fs::read_to_string(dir.path().join("checkpoints.jsonl")).unwrap();
    let genuine: Value = serde_json::from_str(genuine.trim()).unwrap();

    // Line 2: the head moved on, without a new signature.
    let mut moved = genuine.clone();
    moved["head"] = json!(9);
    // Line 3: a stream's head hash changed in the list; root and signature kept.
    let mut relisted = genuine.clone();
    relisted["streams"][0][2] = json!("0".repeat(64));
    // Line 4: signed with another key (the forger's own keygen).
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(&path, other.path().join("log.db")).unwrap();
    let other_store = format!("sqlite://{}", other.path().join("log.db").display());
    keygen_and_checkpoint(&other_store, other.path());
    let foreign_key = std::fs::read_to_string(other.path().join("checkpoints.jsonl")).unwrap();
    // Line 5: a checkpoint of another log, signed with the right key.
    let another_log = tempfile::tempdir().unwrap();
    let another_store = format!("sqlite://{}", another_log.path().join("log.db").display());
    for file in ["key", "key.pub"] {
        std::fs::copy(dir.path().join(file), another_log.path().join(file)).unwrap();
    }
    {
        let log = SqliteLog::open(another_log.path().join("log.db").to_str().unwrap())
            .await
            .unwrap();
        fill(&log).await;
    }
    checkpoint(&another_store, another_log.path());
    let another = std::fs::read_to_string(another_log.path().join("checkpoints.jsonl")).unwrap();
    let file = dir.path().join("forged.jsonl");
    std::fs::write(
        &file,
        format!(
            "{genuine}\n{moved}\n{relisted}\n{}\n{}\nnot json\n",
            foreign_key.trim(),
            another.trim()
        ),
    )
    .unwrap();

    let (code, out) = verify_checkpoints(&store, dir.path(), "forged.jsonl");
    assert_eq!(code, 1, "{out}");
    for (line, what) in [
        (2, "forged: the signature does not verify"),
        (3, "forged: its stream heads hash to"),
        (
            4,
            "forged: the signature does not verify with the given public key (it names key",
        ),
        (5, "a checkpoint of log"),
        (6, "not a checkpoint"),
    ] {
        assert!(
            out.contains(&format!("BROKEN checkpoint line {line}: {what}")),
            "line {line}: {what}: {out}"
        );
    }
    assert!(!out.contains("checkpoint line 1:"), "{out}");
    assert!(
        out.contains("the newest valid checkpoint (line 1,")
            && out.contains("covers positions 1..=6"),
        "{out}"
    );
}

#[test]
fn hostile_key_files_get_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("log.db").display());
    let write = |name: &str, content: &str, mode: u32| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    write("short", "abcd\n", 0o600);
    write("nothex", &format!("{}\n", "zz".repeat(32)), 0o600);
    write("open", &format!("{}\n", "11".repeat(32)), 0o644);
    // A store to sign (`checkpoint` reads only an existing log): an empty submit creates it.
    let created = closeloop(&store, dir.path(), &["submit"]);
    assert!(created.status.success(), "{}", text(&created));
    for (key, expected) in [
        (
            "short",
            "short: expected 64 hex digits (a 32-byte Ed25519 secret key), found 4 characters",
        ),
        (
            "nothex",
            "nothex: expected 64 hex digits (a 32-byte Ed25519 secret key): Invalid character",
        ),
        (
            "open",
            "open: the secret key is accessible to others (mode 0644)",
        ),
        ("missing", "missing: cannot read"),
    ] {
        let out = closeloop(&store, dir.path(), &["checkpoint", "--key", key]);
        assert_eq!(out.status.code(), Some(2), "{key}: {}", text(&out));
        assert!(text(&out).contains(expected), "{key}: {}", text(&out));
    }
    assert!(!dir.path().join("checkpoints.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_appended_to_jetstream_when_nats_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    fill(&log).await;
    let log_id = log.log_id().await.unwrap();
    drop(log);
    let out = closeloop(&store, dir.path(), &["keygen", "--out", "key"]);
    assert!(out.status.success(), "{}", text(&out));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let stream = format!("CLOSELOOP_CHECKPOINTS_{}", tag.to_ascii_uppercase());
    let client = crate::nats::connect().await;
    let js = async_nats::jetstream::new(client);
    let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args([
            "--nats",
            &crate::nats::nats_url(),
            "checkpoint",
            "--key",
            "key",
        ])
        .args(["--checkpoints-stream", &stream])
        .args(["--subject-prefix", &format!("t{tag}.closeloop.v1")])
        .env("CLOSELOOP_STORE", &store)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let published = async {
        let mut s = js
            .get_stream(&stream)
            .await
            .expect("the checkpoints stream");
        let info = s.info().await.unwrap().clone();
        let message = s.get_raw_message(info.state.last_sequence).await.unwrap();
        (info.state.messages, info.config.deny_delete, message)
    }
    .await;
    // An auditor reads them back from JetStream: the genuine one covers the log; a forged
    // one published beside it is named by its sequence number.
    let verify_nats = || {
        let out = Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .args(["--nats", &crate::nats::nats_url(), "verify"])
            .args(["--checkpoints", "nats", "--public-key", "key.pub"])
            .args(["--checkpoints-stream", &stream])
            .env("CLOSELOOP_STORE", &store)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    let (genuine_code, genuine) = verify_nats();
    let mut forged: Value = serde_json::from_slice(&published.2.payload).unwrap();
    forged["head"] = json!(forged["head"].as_u64().unwrap() + 1);
    js.publish(
        format!("t{tag}.closeloop.v1.checkpoints"),
        serde_json::to_vec(&forged).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("the forged checkpoint is stored");
    let (forged_code, forged_out) = verify_nats();
    let without_nats = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["verify", "--checkpoints", "nats", "--public-key", "key.pub"])
        .env("CLOSELOOP_STORE", &store)
        .env_remove("CLOSELOOP_NATS")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let _ = js.delete_stream(&stream).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(genuine_code, Some(0), "{genuine}");
    assert!(
        genuine.contains("1 checkpoints read, 0 findings")
            && genuine.contains("(line 1,")
            && genuine.contains("covers positions 1..="),
        "{genuine}"
    );
    assert_eq!(forged_code, Some(1), "{forged_out}");
    assert!(
        forged_out.contains("BROKEN checkpoint line 2: forged")
            && forged_out.contains("2 checkpoints read, 1 findings"),
        "{forged_out}"
    );
    assert_eq!(without_nats.status.code(), Some(2));
    assert!(
        text(&without_nats).contains("--nats URL"),
        "{}",
        text(&without_nats)
    );
    let (messages, deny_delete, message) = published;
    assert_eq!(messages, 1);
    assert!(deny_delete, "an append-only stream");
    let checkpoint: Value = serde_json::from_slice(&message.payload).unwrap();
    let line = std::fs::read_to_string(dir.path().join("checkpoints.jsonl")).unwrap();
    assert_eq!(
        checkpoint,
        serde_json::from_str::<Value>(line.trim()).unwrap()
    );
    assert_eq!(checkpoint["log_id"], json!(log_id.to_string()));
}

// ---------------------------------------------------------------------------------------
// The auditor's own tool: docs/verify.py (issue 13, item 6).

/// `python3 docs/verify.py ARGS` in `dir`: exit code and stdout. Fails, never skips, when
/// Python or its one package is missing, saying how to install it.
fn python_verify(dir: &Path, args: &[&str]) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/verify.py");
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "docs/verify.py needs the Python package `cryptography` (Ed25519): install it with \
             `python3 -m pip install cryptography` or `apt-get install python3-cryptography` \
             ({})",
            text(&out).trim()
        ),
        Err(e) => panic!(
            "docs/verify.py needs python3 ({e}): install it with `apt-get install python3 \
             python3-cryptography`"
        ),
    }
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run python3");
    assert!(
        out.stderr.is_empty(),
        "verify.py wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn export(store: &str, dir: &Path, file: &str) {
    let out = closeloop(store, dir, &["export"]);
    assert!(out.status.success(), "export: {}", text(&out));
    std::fs::write(dir.join(file), &out.stdout).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_verifier_agrees_with_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    // Realistic events (the demo), then data that tests the canonical bytes: non-ASCII,
    // control characters, quotes, floats as serde_json writes them, nesting, key order.
    let out = closeloop(
        &store,
        dir.path(),
        &[
            "demo",
            "--tickets",
            "12",
            "--days",
            "2",
            "--concurrency",
            "2",
        ],
    );
    assert!(out.status.success(), "demo: {}", text(&out));
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    let (stream, _) = fill(&log).await;
    let tricky = stream_name("note");
    let mut request = append_request(&tricky, ExpectedVersion::Any, numbered_events(1));
    request.events[0].data = json!({
        "text": "é ✓ \u{1}\u{1f}\n\t\"quoted\" \\ \u{7f} 日本",
        "floats": [0.1, 1.5e-7, 1e300, -2.5, 100.0, 12345678.9],
        "ints": [0, -3, 9007199254740993u64],
        "nested": {"b": [true, false, null, {"z": 1, "a": ""}], "a": "x", "B": 2},
    });
    commit(&log, request).await;
    let head = log.head().await.unwrap();
    let events = log.read_stream(&stream, 0).await.unwrap();
    drop(log);
    keygen_and_checkpoint(&store, dir.path());
    export(&store, dir.path(), "export.jsonl");

    // Untouched: both say so, in the same words.
    let args = [
        "export.jsonl",
        "--checkpoints",
        "checkpoints.jsonl",
        "--public-key",
        "key.pub",
    ];
    let (code, python) = python_verify(dir.path(), &args);
    let (rust_code, rust) = verify_checkpoints(&store, dir.path(), "checkpoints.jsonl");
    assert_eq!(
        (code, rust_code),
        (0, 0),
        "python:\n{python}\nrust:\n{rust}"
    );
    assert_eq!(python, rust, "the two verifiers word it the same");
    assert!(
        python.contains(&format!("covers positions 1..={head}")),
        "{python}"
    );

    // A byte changed in the export (the tricky event's text): the chain catches it.
    let exported = std::fs::read_to_string(dir.path().join("export.jsonl")).unwrap();
    let tampered = exported.replace("quoted", "qu0ted");
    assert_ne!(tampered, exported);
    std::fs::write(dir.path().join("tampered.jsonl"), tampered).unwrap();
    let (code, python) = python_verify(dir.path(), &["tampered.jsonl"]);
    assert_eq!(code, 1, "{python}");
    assert!(
        python.contains(&format!(
            "BROKEN {tricky} version 1 (position {head}): hash mismatch"
        )),
        "{python}"
    );

    // The database rewritten with recomputed hashes: the export's chains hold, the
    // checkpoint does not, and both verifiers name the same stream in the same words.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("DROP TRIGGER events_no_update").unwrap();
    for (version, data, hash) in rewrite(&events) {
        raw.execute(
            "UPDATE events SET data = ?1, hash = ?2 WHERE stream = ?3 AND version = ?4",
            rusqlite::params![data.to_string(), hash, stream, version as i64],
        )
        .unwrap();
    }
    drop(raw);
    export(&store, dir.path(), "export.jsonl");
    let (code, python) = python_verify(dir.path(), &args);
    let (rust_code, rust) = verify_checkpoints(&store, dir.path(), "checkpoints.jsonl");
    assert_eq!(
        (code, rust_code),
        (1, 1),
        "python:\n{python}\nrust:\n{rust}"
    );
    assert_eq!(python, rust, "the two verifiers word it the same");
    assert!(
        python.contains(&format!("rewritten stream: {stream} version 3")),
        "{python}"
    );

    // A forged checkpoint file: the same findings from both.
    let line = std::fs::read_to_string(dir.path().join("checkpoints.jsonl")).unwrap();
    let mut forged: Value = serde_json::from_str(line.trim()).unwrap();
    forged["head"] = json!(head + 5);
    std::fs::write(dir.path().join("forged.jsonl"), format!("{forged}\n")).unwrap();
    let (code, python) = python_verify(
        dir.path(),
        &[
            "export.jsonl",
            "--checkpoints",
            "forged.jsonl",
            "--public-key",
            "key.pub",
        ],
    );
    let (rust_code, rust) = verify_checkpoints(&store, dir.path(), "forged.jsonl");
    assert_eq!(
        (code, rust_code),
        (1, 1),
        "python:\n{python}\nrust:\n{rust}"
    );
    assert_eq!(python, rust);
    assert!(
        python.contains("BROKEN checkpoint line 1: forged"),
        "{python}"
    );
}

/// `serve --checkpoint-key`: signs a checkpoint under its lease once the log has moved,
/// into the JetStream stream and the file, and `verify --checkpoints` accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_signs_checkpoints_on_its_own() {
    let scope = crate::nats::Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    {
        let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
        fill(&log).await;
    }
    let out = closeloop(&store, dir.path(), &["keygen", "--out", "key"]);
    assert!(out.status.success(), "{}", text(&out));
    let stream = format!("{}_CHECKPOINTS", scope.config.events_stream);
    let key = dir.path().join("key");
    let file = dir.path().join("serve-checkpoints.jsonl");
    let serve = crate::nats::Binary::start(
        &scope,
        &store,
        &[
            "--checkpoint-key",
            key.to_str().unwrap(),
            "--checkpoint-every-s",
            "1",
            "--checkpoint-out",
            file.to_str().unwrap(),
            "--checkpoints-stream",
            &stream,
        ],
    );
    let started = std::time::Instant::now();
    let messages = loop {
        if let Ok(mut s) = scope.js.get_stream(&stream).await {
            let messages = s.info().await.unwrap().state.messages;
            if messages > 0 {
                break messages;
            }
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            break 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // poll interval
    };
    let status = serve.terminate();
    let _ = scope.js.delete_stream(&stream).await;
    assert!(messages > 0, "no checkpoint within 30 s");
    assert!(status.success(), "serve exits 0 on SIGTERM");
    let (code, out) = verify_checkpoints(&store, dir.path(), file.to_str().unwrap());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the newest valid checkpoint (line 1,"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Idempotency records and per-stream wording (issue 13, item 5).

/// `verify` checks the idempotency records against the events: a record left pointing at
/// removed events (so that a retry would be answered `duplicate` with events that are not
/// there), and records that no longer tile the log, are breaks; an untouched log passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_cross_checks_the_idempotency_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    fill(&log).await;
    let tail_command = log
        .command_records(4, 10)
        .await
        .unwrap()
        .first()
        .expect("the tail's record")
        .command_id;
    drop(log);
    assert_plain_verify_passes(&store, dir.path());

    // A superuser's SQL (opening the log puts its triggers back, so each step drops those
    // it needs), then `verify`, which must fail: what it printed.
    let tamper_and_verify = |sql: &str| {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(sql).unwrap();
        drop(raw);
        let out = closeloop(&store, dir.path(), &["verify"]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        shown
    };

    // The tail's events deleted, its command record left behind.
    let shown =
        tamper_and_verify("DROP TRIGGER events_no_delete; DELETE FROM events WHERE position > 4;");
    assert!(
        shown.contains(&format!(
            "the idempotency record of key {tail_command} points at positions 5..=6, beyond the last event at 4"
        )),
        "{shown}"
    );

    // A record moved onto another command's events: the records no longer tile the log.
    let shown = tamper_and_verify(
        "DROP TRIGGER commands_no_update; DROP TRIGGER commands_no_delete;
         DELETE FROM commands WHERE position > 4;
         UPDATE commands SET position = 3 WHERE position = 4;",
    );
    assert!(
        shown.contains("covers positions 3..=3, after position 3: the records do not tile the log")
            && shown.contains("(position 4): no idempotency record covers position 4"),
        "{shown}"
    );

    // A record given another key: the events it covers were appended by another command.
    let shown = tamper_and_verify(&format!(
        "DROP TRIGGER commands_no_update;
         UPDATE commands SET position = 4 WHERE command_id = (SELECT command_id FROM commands ORDER BY position DESC LIMIT 1);
         UPDATE commands SET command_id = '{}' WHERE position = 2;",
        uuid::Uuid::new_v4()
    ));
    assert!(
        shown.contains("(position 2): appended by command")
            && shown.contains("but the idempotency record covering it is key"),
        "{shown}"
    );
    assert!(!shown.contains("do not tile"), "{shown}");
}

/// `verify TICKET_ID` and whole-log `verify` name a break in a ticket's stream in the same
/// words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_one_ticket_words_its_breaks_as_the_whole_log_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = format!("sqlite://{}", path.display());
    let log = SqliteLog::open(path.to_str().unwrap()).await.unwrap();
    let ticket = uuid::Uuid::new_v4();
    for _ in 0..3 {
        commit(
            &log,
            append_request(
                &format!("ticket-{ticket}"),
                ExpectedVersion::Any,
                numbered_events(1),
            ),
        )
        .await;
    }
    drop(log);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
         UPDATE events SET data = '{\"n\":7}' WHERE version = 2;
         DELETE FROM events WHERE version = 3;",
    )
    .unwrap();
    drop(raw);
    let broken = |args: &[&str]| -> Vec<String> {
        let out = closeloop(&store, dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("BROKEN ") && l.contains(&ticket.to_string()))
            .map(str::to_owned)
            .collect()
    };
    let one = broken(&["verify", &ticket.to_string()]);
    assert!(
        one.iter().any(|l| l.contains("hash mismatch (stored")),
        "{one:?}"
    );
    assert_eq!(one, broken(&["verify"]));
}
