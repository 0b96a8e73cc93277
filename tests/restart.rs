//! Restarts of real servers under load: a private PostgreSQL cluster crashed
//! (`pg_ctl -m immediate stop`) and started again while writers append, and a private
//! nats-server killed (SIGKILL) and started again on its JetStream store while durable
//! commands are published and served.
//!
//! Why private servers: the other fault tests (`postgres.rs`) cut connections without
//! touching the shared servers, because a restart would disturb every test running at the
//! same time. A crash also exercises what a cut cannot: the server's own recovery (WAL
//! replay, JetStream's file store), and clients that find the port refusing connections for
//! a while and then a new server process behind it. So each test here starts its own server
//! on a free loopback port in its own temporary directory, in the style of async-nats's test
//! fixtures, and `Drop` kills it and removes the directory (also when the test panics).
//!
//! Nothing waits on a sleep: the crash is triggered when enough appends or replies have been
//! observed, and every wait is for an observable condition with a deadline that fails with
//! what was missing. (Retries pause briefly between attempts, as any client does; that is not
//! synchronisation.) Nothing asserts on timing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use closeloop_commands::nats::{Queries, ServeConfig};
use closeloop_commands::relay::POSITION_HEADER;
use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::postgres::{PostgresLog, PostgresOptions};
use closeloop_core::log::{
    AppendOutcome, AppendRequest, Committed, EventLog, ExpectedVersion, StoredEvent,
};
use closeloop_core::Error;
use closeloop_testkit::conformance::{
    append_request, commit, numbered_events, read_everything, stream_name,
};
use futures::StreamExt;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::watch;
use uuid::Uuid;

use crate::nats::{headers_for, open_ticket, test_auth, InProcess};
use crate::postgres::assert_log_sound;

/// Longest wait for any one observable condition.
const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two attempts of a client retry loop (not a synchronisation).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A loopback port nothing listens on right now. The server binds it a moment later; the
/// window in which another process could take it is what the first start's retry covers.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// Whether something accepts TCP connections on the loopback `port`.
async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// `program` on the `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn id(args: &[&str]) -> u32 {
    let output = Command::new("id").args(args).output().expect("run `id`");
    assert!(
        output.status.success(),
        "`id {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("`id` prints a number")
}

/// A finished command's outcome: `Err` naming `what` with its output unless it succeeded.
fn checked(run: std::io::Result<std::process::Output>, what: &str) -> Result<(), String> {
    let output = run.map_err(|e| format!("run {what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The tail of a server's log file, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits until a progress counter reaches `at_least`; its value then. Fails naming `what`
/// and how far it got.
async fn at_least<T>(counter: &mut watch::Receiver<T>, at_least: T, what: &str) -> T
where
    T: Copy + PartialOrd + std::fmt::Display,
{
    let reached = tokio::time::timeout(DEADLINE, counter.wait_for(|n| *n >= at_least))
        .await
        .map(|waited| waited.map(|n| *n));
    match reached {
        Ok(Ok(n)) => n,
        _ => panic!(
            "{what}: {} within {DEADLINE:?}, waited for {at_least}",
            *counter.borrow()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL.

/// The directory of PostgreSQL's server binaries (`initdb`, `pg_ctl`): `CLOSELOOP_PG_BIN`,
/// else the newest `/usr/lib/postgresql/<major>/bin` (Debian's layout, not on the `PATH`),
/// else the `PATH`.
fn pg_bin() -> PathBuf {
    const MISSING: &str = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: \
                           `apt-get install postgresql`, or set CLOSELOOP_PG_BIN to the \
                           directory holding them";
    if let Some(dir) = std::env::var_os("CLOSELOOP_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("pg_ctl").is_file(),
            "no initdb and pg_ctl in CLOSELOOP_PG_BIN={}. {MISSING}",
            dir.display()
        );
        return dir;
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return bin;
    }
    if let Some(initdb) = on_path("initdb") {
        return initdb.parent().expect("a directory").to_owned();
    }
    panic!("{MISSING}")
}

/// A PostgreSQL cluster of its own: `initdb` in a temporary directory, a server on a free
/// loopback port with trust authentication, stopped (immediately) and removed on drop.
///
/// initdb refuses to run as root, so as root every PostgreSQL binary runs as the `postgres`
/// OS user (`runuser`), in a directory handed over to that user.
struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Server settings beyond the port, socket and fsync (`-c name=value ...`).
    options: String,
}

impl PgCluster {
    fn start() -> PgCluster {
        PgCluster::start_with(|_| String::new())
    }

    /// Like [`PgCluster::start`], with `setup` run on the fresh data directory before the
    /// server starts; it returns extra server settings (`-c name=value ...`).
    fn start_with(setup: impl FnOnce(&PgCluster) -> String) -> PgCluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("closeloop-pg-")
            .tempdir()
            .expect("a temporary directory");
        let as_postgres = id(&["-u"]) == 0;
        if as_postgres {
            let (uid, gid) = (id(&["-u", "postgres"]), id(&["-g", "postgres"]));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the cluster's directory to the postgres user");
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
            options: String::new(),
        };
        let data = cluster.data();
        let initdb = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            // No fsync of the new files: this cluster never outlives the machine's uptime.
            .args(["--no-sync", "--no-instructions"])
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        cluster.options = setup(&cluster);
        // Another process may take the free port before the server binds it: try another.
        let mut failures = Vec::new();
        for _ in 0..3 {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(e) => failures.push(e),
            }
        }
        panic!("the private PostgreSQL did not start: {failures:#?}")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A cluster that speaks TLS only: the server certificate and key of [`throwaway_ca`]'s
    /// `certs`, and a `pg_hba.conf` that rejects every TCP connection without TLS, so a
    /// client that connects at all has used TLS.
    fn start_tls_only(certs: &Path) -> PgCluster {
        PgCluster::start_with(|cluster| {
            let data = cluster.data();
            for (name, mode) in [("server.pem", 0o644), ("server.key", 0o600)] {
                let to = data.join(name);
                std::fs::copy(certs.join(name), &to).expect("copy the server's TLS files");
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .expect("chmod");
                if cluster.as_postgres {
                    let (uid, gid) = (id(&["-u", "postgres"]), id(&["-g", "postgres"]));
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("chown");
                }
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 reject\n",
            )
            .expect("write pg_hba.conf");
            "-c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key".into()
        })
    }

    fn server_log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A PostgreSQL tool, run as the `postgres` user when this process is root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    /// `pg_ctl start -w`: returns once the server accepts connections (after crash
    /// recovery, on a restart). `fsync=off`: the crash simulated here is the server's
    /// processes dying, not the machine's; committed WAL is in the OS page cache either way,
    /// so recovery replays exactly what it would with fsync, while crash recovery with fsync
    /// on first fsyncs the whole data directory, which takes seconds.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        let run = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.server_log())
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output();
        checked(run, "pg_ctl start").map_err(|e| {
            format!(
                "on port {}: {e}\nserver log:\n{}",
                self.port,
                log_tail(&self.server_log())
            )
        })
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, no shutdown
    /// checkpoint; the next start runs crash recovery.
    fn pg_ctl_crash(&self) -> Result<(), String> {
        let run = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .output();
        checked(run, "pg_ctl stop")
    }

    /// Crashes the server and starts it again on the same port and data directory. Blocking
    /// process calls, so on a thread of their own: the runtime keeps serving the writers.
    async fn crash_and_restart(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::task::spawn_blocking(move || {
            cluster
                .pg_ctl_crash()
                .expect("crash the private PostgreSQL");
            cluster
                .pg_ctl_start()
                .expect("start the private PostgreSQL again");
        })
        .await
        .expect("restart task");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        if self.pg_ctl_crash().is_err() {
            // pg_ctl could not stop it: kill the postmaster named in its pid file.
            let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned));
            if let Some(pid) = pid {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        // The TempDir removes the directory.
    }
}

/// What one writer task was told.
#[derive(Default)]
struct WriterReport {
    acknowledged: HashMap<Uuid, (Committed, usize)>,
    /// Attempts answered `Unavailable` (the append's outcome unknown).
    unavailable: u64,
    /// Appends answered `Duplicate` after such an attempt: the lost write had committed.
    resolved_duplicates: u64,
}

/// Appends until the log answers, as a command handler does: `Unavailable` is retried with
/// the same command id; a conflict on an exact expected version is retried against the
/// stream's actual version, again with the same command id. Returns the outcome and whether
/// it may be `Duplicate`: only if an attempt's outcome was unknown (`Unavailable`) after the
/// last conflict. A conflict says the command was not in the log then (the command id is
/// checked before the version), and a lost write cannot commit after the log answered a
/// retry of it, so only a later unknown outcome can have put it there.
async fn append_until_answered(
    log: &dyn EventLog,
    request: &mut AppendRequest,
    unavailable: &mut u64,
) -> (AppendOutcome, bool) {
    let deadline = Instant::now() + DEADLINE;
    let mut unknown_since_conflict = false;
    loop {
        match log.append(request.clone()).await {
            Ok(outcome) => return (outcome, unknown_since_conflict),
            Err(Error::Unavailable(message)) => {
                unknown_since_conflict = true;
                *unavailable += 1;
                assert!(
                    Instant::now() < deadline,
                    "still unavailable after {DEADLINE:?}: {message}"
                );
                tokio::time::sleep(RETRY_PAUSE).await; // retry pause
            }
            Err(Error::WrongExpectedVersion { actual, .. })
                if matches!(request.expected, ExpectedVersion::Exact(_)) =>
            {
                unknown_since_conflict = false;
                request.expected = ExpectedVersion::Exact(actual);
            }
            Err(e) => panic!("append {}: {e} ({e:?})", request.command_id),
        }
    }
}

/// One writer: appends of 1 to 3 events to streams it shares with the others, every other
/// one with an exact expected version, until `stop`; counts each acknowledged append in
/// `progress`.
async fn pg_writer(
    log: Arc<PostgresLog>,
    writer: usize,
    streams: Vec<String>,
    stop: Arc<AtomicBool>,
    progress: Arc<watch::Sender<u64>>,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let stream = &streams[(writer + seq) % streams.len()];
        let mut request =
            append_request(stream, ExpectedVersion::Any, numbered_events(1 + seq % 3));
        if seq % 2 == 1 {
            request.expected = ExpectedVersion::Exact(known.get(stream).copied().unwrap_or(0));
        }
        let (outcome, may_be_duplicate) =
            append_until_answered(&*log, &mut request, &mut report.unavailable).await;
        let committed = match outcome {
            AppendOutcome::Committed(c) => c,
            // A retry after an unknown outcome finds the lost write committed.
            AppendOutcome::Duplicate(c) if may_be_duplicate => {
                report.resolved_duplicates += 1;
                c
            }
            other => panic!(
                "writer {writer}: {} answered {other:?}, but no attempt since the last \
                 conflict had an unknown outcome: the log claims a command it was never \
                 asked to append, or answered a conflict for a command it held",
                request.command_id
            ),
        };
        known.insert(stream.clone(), committed.version);
        // Now and then, a retry of an acknowledged append: its first outcome again.
        if seq % 10 == 0 {
            let (again, _) =
                append_until_answered(&*log, &mut request.clone(), &mut report.unavailable).await;
            assert_eq!(
                again,
                AppendOutcome::Duplicate(committed.clone()),
                "a retry of an acknowledged append"
            );
        }
        report
            .acknowledged
            .insert(request.command_id, (committed, request.events.len()));
        progress.send_modify(|n| *n += 1);
    }
    report
}

/// Several writers append to overlapping streams of a private PostgreSQL that is crashed and
/// started again twice in the middle. Every acknowledged append is in the log exactly once,
/// where its acknowledgement says; positions are 1..=N; each command id appears once; every
/// stream's hash chain verifies; a second connection sees the same log; appends go on.
///
/// The writer's reconnect budget is shorter than a restart, so appends caught in it fail with
/// `Unavailable` and their callers retry with the same command id, which is the path that
/// must never double an append whose reply was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_during_load_loses_nothing_acknowledged() {
    const WRITERS: usize = 6;
    /// Appends acknowledged before the first crash, between the crashes, and after the last.
    const PHASE: u64 = 60;
    let cluster = Arc::new(PgCluster::start());
    let options = PostgresOptions {
        schema: "closeloop".into(),
        pool_size: 2,
        reconnect_timeout_ms: 100,
        ..PostgresOptions::default()
    };
    let log = Arc::new(
        PostgresLog::connect_with(&cluster.url(), options.clone())
            .await
            .unwrap_or_else(|e| panic!("connect to the private PostgreSQL: {e}")),
    );
    let streams: Vec<String> = (0..4).map(|_| stream_name("ticket")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (progress, mut acknowledged) = watch::channel(0u64);
    let progress = Arc::new(progress);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(pg_writer(
                log.clone(),
                w,
                streams.clone(),
                stop.clone(),
                progress.clone(),
            ))
        })
        .collect();
    drop(progress);

    let mut seen = at_least(
        &mut acknowledged,
        PHASE,
        "appends acknowledged before the crash",
    )
    .await;
    for restart in 1..=2 {
        cluster.crash_and_restart().await;
        eprintln!("PostgreSQL crashed and restarted after {seen} acknowledged appends");
        // The writers get going again on the new server.
        seen = at_least(
            &mut acknowledged,
            seen + PHASE,
            &format!("appends acknowledged after restart {restart}"),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = HashMap::new();
    let (mut unavailable, mut resolved) = (0, 0);
    for writer in writers {
        let report = tokio::time::timeout(DEADLINE, writer)
            .await
            .expect("a writer stops in time")
            .expect("writer task");
        unavailable += report.unavailable;
        resolved += report.resolved_duplicates;
        acked.extend(report.acknowledged);
    }
    let stats = log.stats();
    eprintln!(
        "{} appends acknowledged; {unavailable} attempts unavailable, {resolved} retries \
         found their lost write committed; writer {stats:?}",
        acked.len()
    );
    assert!(
        stats.reconnects >= 2,
        "the writer reconnected after each of the two restarts: {stats:?}"
    );

    let events = assert_log_sound(&*log, &acked).await;
    let logged: HashSet<Uuid> = events.iter().map(|e| e.metadata.command_id).collect();
    let expected: HashSet<Uuid> = acked.keys().copied().collect();
    assert_eq!(logged, expected, "the log holds the acknowledged commands");
    assert_eq!(
        events.len(),
        acked.values().map(|(_, n)| n).sum::<usize>(),
        "each command's events once"
    );

    // A new connection (as another process) reads the same log from the recovered server.
    let other = PostgresLog::connect_with(&cluster.url(), options)
        .await
        .expect("a second connection");
    assert_eq!(read_everything(&other).await, events);
    // And the log goes on: after a stream's last event, and on a new stream.
    let last = events.last().expect("events");
    let next = commit(
        &other,
        append_request(
            &last.stream,
            ExpectedVersion::Exact(last.version),
            numbered_events(2),
        ),
    )
    .await;
    assert_eq!(
        (next.version, next.position),
        (last.version + 2, last.position + 2)
    );
    let fresh = commit(
        &*log,
        append_request(
            &stream_name("ticket"),
            ExpectedVersion::Exact(0),
            numbered_events(1),
        ),
    )
    .await;
    assert_eq!((fresh.version, fresh.position), (1, last.position + 3));
}

// ---------------------------------------------------------------------------------------
// NATS.

/// nats-server: `CLOSELOOP_NATS_SERVER`, else the `PATH`, else where Debian puts it.
fn nats_server_bin() -> PathBuf {
    const MISSING: &str = "nats-server is not installed: `apt-get install nats-server`, or \
                           set CLOSELOOP_NATS_SERVER to its path";
    if let Some(path) = std::env::var_os("CLOSELOOP_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "no file at CLOSELOOP_NATS_SERVER={}. {MISSING}",
            path.display()
        );
        return path;
    }
    on_path("nats-server")
        .or_else(|| {
            ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"]
                .into_iter()
                .map(PathBuf::from)
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("{MISSING}"))
}

/// A nats-server of its own with JetStream, its store in a temporary directory; killed and
/// the directory removed on drop.
struct NatsServer {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    /// More command-line arguments (TLS).
    extra: Vec<String>,
}

impl NatsServer {
    async fn start() -> NatsServer {
        NatsServer::start_with(Vec::new()).await
    }

    async fn start_with(extra: Vec<String>) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("closeloop-nats-")
            .tempdir()
            .expect("a temporary directory");
        let mut server = NatsServer {
            dir,
            bin: nats_server_bin(),
            port: 0,
            child: None,
            extra,
        };
        // Another process may take the free port before the server binds it: try another.
        let mut failures = Vec::new();
        for _ in 0..3 {
            server.port = free_port();
            server.spawn();
            match server.wait_listening().await {
                Ok(()) => return server,
                Err(e) => {
                    server.kill();
                    failures.push(e);
                }
            }
        }
        panic!("the private nats-server did not start: {failures:#?}")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.path().join("jetstream"))
            .arg("-l")
            .arg(self.log_file())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Waits until the server accepts connections; an error if it exits first.
    async fn wait_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if listening(self.port).await {
                return Ok(());
            }
            let child = self.child.as_mut().expect("a server process");
            if let Some(status) = child.try_wait().expect("wait for nats-server") {
                return Err(format!(
                    "nats-server on port {} exited ({status}):\n{}",
                    self.port,
                    log_tail(&self.log_file())
                ));
            }
            if started.elapsed() > DEADLINE {
                return Err(format!(
                    "nats-server is not listening on port {}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
        }
    }

    /// SIGKILL: no shutdown, no flush beyond what the store already wrote.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and store.
    async fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn();
        if let Err(e) = self.wait_listening().await {
            panic!("restart nats-server: {e}");
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        // The TempDir removes the directory.
    }
}

/// A client as `closeloop serve` and a publisher would have one: the default reconnect
/// behaviour (forever, with backoff), so a server restart is a pause to it.
async fn nats_client(server: &NatsServer, name: &str) -> async_nats::Client {
    let connecting = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connect(server.url());
    tokio::time::timeout(DEADLINE, connecting)
        .await
        .unwrap_or_else(|_| panic!("no connection to the private nats-server in time"))
        .unwrap_or_else(|e| panic!("connect to the private nats-server: {e}"))
}

/// Waits until JetStream answers its API (it recovers its store before it does).
async fn wait_jetstream(client: &async_nats::Client) {
    let started = Instant::now();
    loop {
        let info = tokio::time::timeout(
            Duration::from_secs(1),
            client.request("$JS.API.INFO", "".into()),
        )
        .await;
        if let Ok(Ok(reply)) = info {
            if !String::from_utf8_lossy(&reply.payload).contains("\"error\"") {
                return;
            }
        }
        assert!(started.elapsed() < DEADLINE, "JetStream did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

/// Publishes a command to durable intake until JetStream acknowledges it. An attempt that
/// fails (server gone, ack lost) is repeated with the same `Nats-Msg-Id`, so a command that
/// was stored after all is stored once (JetStream's duplicate window), and the log stores it
/// once whatever happens (command-id idempotency). Returns the ack and the failed attempts.
async fn publish_until_acked(
    js: &jetstream::Context,
    config: &ServeConfig,
    command: &Value,
) -> (jetstream::publish::PublishAck, u32) {
    let id = command["command_id"].as_str().expect("command_id");
    let subject = config.durable_subject(command["type"].as_str().expect("type"));
    let payload = serde_json::to_vec(command).expect("JSON");
    let deadline = Instant::now() + DEADLINE;
    let mut failures = 0;
    loop {
        let mut headers = headers_for(&command["actor"]);
        headers.insert("Nats-Msg-Id", id);
        let attempt = match js
            .publish_with_headers(subject.clone(), headers, payload.clone().into())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(ack) => return (ack, failures),
            Err(e) => {
                failures += 1;
                assert!(
                    Instant::now() < deadline,
                    "JetStream did not acknowledge {id} within {DEADLINE:?}: {e}"
                );
                tokio::time::sleep(RETRY_PAUSE).await; // retry pause
            }
        }
    }
}

fn command_id(command: &Value) -> Uuid {
    command["command_id"]
        .as_str()
        .expect("command_id")
        .parse()
        .expect("a UUID")
}

/// `serve` in this process, on its own client, once it answers.
async fn start_serving(
    config: &ServeConfig,
    client: async_nats::Client,
    log: Arc<dyn EventLog>,
) -> InProcess {
    let handler = Arc::new(Handler::new(log, HandlerConfig::trusting()));
    let serving = InProcess::spawn(
        config.clone(),
        handler,
        client.clone(),
        Queries::new(),
        Vec::new(),
    );
    // Serving once request/reply answers (a malformed command: rejected, nothing appended).
    let started = Instant::now();
    loop {
        let probe = client.request(config.command_subject("open_ticket"), "{}".into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
            return serving;
        }
        if serving.is_finished() {
            panic!(
                "serve stopped while starting: {:?}",
                serving.outcome().await
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "serve did not start answering"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

/// The durable replies seen (accepted or duplicate): how many, and for which commands.
#[derive(Default)]
struct Replies {
    total: usize,
    ids: HashSet<Uuid>,
}

/// Records the replies on `<prefix>.replies.*` in `seen`.
fn record_replies(
    mut subscriber: async_nats::Subscriber,
    seen: watch::Sender<Replies>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            if let Ok(Reply::Accepted { command_id, .. } | Reply::Duplicate { command_id, .. }) =
                serde_json::from_slice::<Reply>(&message.payload)
            {
                seen.send_modify(|replies| {
                    replies.total += 1;
                    replies.ids.insert(command_id);
                });
            }
        }
    })
}

/// Waits until replies satisfy `done`; fails naming `what`.
async fn replies_until(
    replies: &mut watch::Receiver<Replies>,
    what: &str,
    done: impl FnMut(&Replies) -> bool,
) {
    let waited = tokio::time::timeout(DEADLINE, replies.wait_for(done))
        .await
        .map(|r| r.is_ok());
    if waited != Ok(true) {
        panic!(
            "{what}: not within {DEADLINE:?} ({} replies seen)",
            replies.borrow().total
        );
    }
}

/// Waits until `log` holds an event of each of `ids`; the whole log then.
async fn wait_logged(log: &dyn EventLog, ids: &HashSet<Uuid>) -> Vec<StoredEvent> {
    let started = Instant::now();
    loop {
        let events = read_everything(log).await;
        let logged: HashSet<Uuid> = events.iter().map(|e| e.metadata.command_id).collect();
        let missing = ids.difference(&logged).count();
        if missing == 0 {
            return events;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{missing} of {} acknowledged commands are not in the log",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

/// Waits until the relay has published the whole log to the events stream; its events.
async fn wait_relayed(js: &jetstream::Context, config: &ServeConfig, head: u64) -> Vec<Value> {
    let started = Instant::now();
    loop {
        if let Ok(mut stream) = js.get_stream(&config.events_stream).await {
            if let Ok(info) = stream.info().await {
                let messages = info.state.messages;
                assert!(
                    messages <= head,
                    "{messages} events relayed, the log has {head}"
                );
                if messages == head {
                    let mut relayed = Vec::new();
                    for sequence in 1..=head {
                        let message = stream
                            .get_raw_message(sequence)
                            .await
                            .expect("a relayed event");
                        let position = message.headers.get(POSITION_HEADER).expect("position");
                        assert_eq!(position.as_str(), sequence.to_string(), "in log order");
                        relayed.push(serde_json::from_slice(&message.payload).expect("JSON"));
                    }
                    return relayed;
                }
            }
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the relay did not publish {head} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
}

/// Durable `open_ticket` commands go through JetStream on a private nats-server that is
/// killed (SIGKILL) and started again on the same store and port while commands are being
/// published and served; `serve` (in this process, on a memory log of its own) keeps its
/// client across the restart. Every command JetStream acknowledged is in the log exactly once,
/// JetStream kept every acknowledged command (none twice), and serve goes on working:
/// durable commands published after the restart, request/reply, and the event relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restart_keeps_durable_commands() {
    /// Published before the restart, during it, and after it.
    const BEFORE: usize = 100;
    const DURING: usize = 200;
    const AFTER: usize = 20;
    let mut server = NatsServer::start().await;
    let publisher = nats_client(&server, "publisher").await;
    wait_jetstream(&publisher).await;
    let mut js = jetstream::new(publisher.clone());
    // A publish whose ack is lost in the crash is retried after this, not the default 5 s.
    js.set_timeout(Duration::from_secs(1));
    let mut config = ServeConfig {
        instance_id: "restart-test".into(),
        // Redeliveries of commands delivered but not acked before the crash come quickly.
        ack_wait: Duration::from_secs(2),
        auth: test_auth().auth.clone(),
        ..ServeConfig::default()
    };
    config.lease.ttl = Duration::from_secs(2);
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let serve = start_serving(
        &config,
        nats_client(&server, "closeloop-serve").await,
        log.clone(),
    )
    .await;
    let (replied, mut replies) = watch::channel(Replies::default());
    let recording = record_replies(
        publisher
            .subscribe(config.reply_subject("*"))
            .await
            .expect("subscribe to replies"),
        replied,
    );
    publisher.flush().await.expect("flush");

    let commands: Vec<Value> = (0..BEFORE + DURING + AFTER)
        .map(|_| open_ticket(Uuid::new_v4()))
        .collect();
    let mut acked: HashSet<Uuid> = HashSet::new();
    let mut failed_publishes = 0;
    for command in &commands[..BEFORE] {
        let (ack, failures) = publish_until_acked(&js, &config, command).await;
        assert!(!ack.duplicate, "a first publish");
        failed_publishes += failures;
        acked.insert(command_id(command));
    }

    // Publishing goes on in a task while the server is killed under it.
    let (published, mut publishing) = watch::channel(0usize);
    let during = {
        let (js, config) = (js.clone(), config.clone());
        let batch = commands[BEFORE..BEFORE + DURING].to_vec();
        tokio::spawn(async move {
            let mut failures = 0;
            for command in &batch {
                failures += publish_until_acked(&js, &config, command).await.1;
                published.send_modify(|n| *n += 1);
            }
            failures
        })
    };
    replies_until(&mut replies, "20 durable commands answered", |r| {
        r.total >= 20
    })
    .await;
    at_least(
        &mut publishing,
        20,
        "commands acknowledged by the publishing task",
    )
    .await;
    let (answered, sent) = (replies.borrow().total, *publishing.borrow());
    server.crash_and_restart().await;
    eprintln!(
        "nats-server killed and restarted with {answered} replies seen and {} commands \
         acknowledged",
        BEFORE + sent
    );
    failed_publishes += tokio::time::timeout(DEADLINE, during)
        .await
        .expect("publishing during the restart finishes in time")
        .expect("publisher task");
    acked.extend(commands[BEFORE..BEFORE + DURING].iter().map(command_id));

    // After the restart: durable commands, answered on the reply subject too.
    for command in &commands[BEFORE + DURING..] {
        let (ack, failures) = publish_until_acked(&js, &config, command).await;
        assert!(!ack.duplicate, "a first publish");
        failed_publishes += failures;
        acked.insert(command_id(command));
    }
    // And request/reply.
    let request_reply = open_ticket(Uuid::new_v4());
    let started = Instant::now();
    let reply = loop {
        let asked = publisher.request_with_headers(
            config.command_subject("open_ticket"),
            headers_for(&request_reply["actor"]),
            serde_json::to_vec(&request_reply).expect("JSON").into(),
        );
        match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok(message)) => {
                break serde_json::from_slice::<Reply>(&message.payload).expect("a Reply")
            }
            other => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "no request/reply answer after the restart: {other:?}"
                );
                tokio::time::sleep(RETRY_PAUSE).await; // retry pause
            }
        }
    };
    assert!(
        matches!(reply, Reply::Accepted { .. } | Reply::Duplicate { .. }),
        "request/reply after the restart: {}",
        reply.to_json()
    );

    let mut expected = acked.clone();
    expected.insert(command_id(&request_reply));
    let events = wait_logged(&*log, &expected).await;
    let mut per_command: HashMap<Uuid, usize> = HashMap::new();
    for event in &events {
        *per_command.entry(event.metadata.command_id).or_default() += 1;
    }
    let doubled: Vec<_> = per_command.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "commands appended twice: {doubled:?}");
    assert_eq!(
        per_command.keys().copied().collect::<HashSet<_>>(),
        expected,
        "the log holds exactly the acknowledged commands"
    );
    let after: HashSet<Uuid> = commands[BEFORE + DURING..].iter().map(command_id).collect();
    replies_until(
        &mut replies,
        "replies to the commands published after the restart",
        |r| r.ids.is_superset(&after),
    )
    .await;

    // JetStream kept every acknowledged command through the kill, each once: the work
    // queue's sequence counts every command it ever stored (handled ones leave it).
    let stored = js
        .get_stream(&config.commands_stream)
        .await
        .expect("the commands stream after the restart")
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    assert_eq!(stored, acked.len() as u64, "commands stored in the stream");

    // The relay, a leased job, resumed too: the whole log, in order, each event once.
    let relayed = wait_relayed(&js, &config, events.len() as u64).await;
    let logged: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).expect("JSON"))
        .collect();
    assert_eq!(relayed, logged, "the events stream is the log");

    assert!(!serve.is_finished(), "serve is still running");
    eprintln!(
        "{} commands in the log once each; {failed_publishes} publish attempts failed and were \
         repeated; {} replies (with redeliveries' duplicates)",
        events.len(),
        replies.borrow().total
    );
    serve.stop().await;
    recording.abort();
}

// ---------------------------------------------------------------------------------------
// TLS.

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA in `dir` (`ca.pem`) and two certificates it signs: `server.pem` for
/// 127.0.0.1 and `client.pem` for a client, each with its key (`*.key`, PKCS#8).
fn throwaway_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=closeloop test CA",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "subjectAltName=DNS:closeloop\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// Encrypted transport, with a throwaway CA: a private nats-server that requires TLS and
/// verifies client certificates, and a private PostgreSQL that refuses TCP without TLS.
/// The store URL's `sslmode=verify-full&sslrootcert=...` is what reaches PostgreSQL (without
/// TLS, or without the CA, `migrate` fails naming why); `serve --nats tls://...` with the CA
/// and a client certificate answers a command sent over TLS, appends it and folds it into
/// the tables over TLS; without the NATS CA it cannot connect and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_to_nats_and_postgresql_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    throwaway_ca(c);
    let path = |name: &str| c.join(name).display().to_string();
    let cluster = PgCluster::start_tls_only(c);
    let store_with = |query: &str| format!("{}?schema=tls_test&{query}", cluster.url());
    let store = store_with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        path("ca.pem")
    ));
    let migrate = |store: &str| {
        Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .args(["--store", store, "migrate"])
            .env("CLOSELOOP_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run closeloop migrate")
    };
    // Without TLS the server turns the connection away; with TLS but without the CA, the
    // server's certificate is not trusted.
    for (query, why) in [
        ("sslmode=disable", "no encryption"),
        ("sslmode=require", "certificate"),
    ] {
        let refused = migrate(&store_with(query));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{query} was accepted");
        assert!(
            stderr.contains(why),
            "{query}: expected `{why}` in: {stderr}"
        );
    }
    let migrated = migrate(&store);
    assert!(
        migrated.status.success(),
        "migrate over TLS: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let server = NatsServer::start_with(vec![
        "--tlsverify".into(),
        "--tlscert".into(),
        path("server.pem"),
        "--tlskey".into(),
        path("server.key"),
        "--tlscacert".into(),
        path("ca.pem"),
    ])
    .await;
    let url = format!("tls://127.0.0.1:{}", server.port);
    let serve = |tls: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_closeloop"));
        command
            .args([
                "--store",
                &store,
                "--nats",
                &url,
                "serve",
                "--insecure-no-auth",
            ])
            .args(["--no-scheduler", "--no-process-managers"]);
        if tls {
            command
                .args(["--nats-ca", &path("ca.pem")])
                .args(["--nats-cert", &path("client.pem")])
                .args(["--nats-key", &path("client.key")]);
        }
        command
            .env("CLOSELOOP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start closeloop serve")
    };

    // Without the CA the server's certificate is not trusted: serve fails to start.
    let mut untrusted = serve(false);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = untrusted.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "serve without the CA kept running"
        );
        tokio::time::sleep(RETRY_PAUSE).await; // poll interval
    };
    assert!(!status.success());

    let mut trusted = serve(true);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(c.join("ca.pem"))
        .add_client_certificate(c.join("client.pem"), c.join("client.key"))
        .require_tls(true)
        .connect(&url)
        .await
        .expect("a TLS client connects");
    let body = serde_json::json!({"command_id": Uuid::now_v7(), "type": "open_ticket",
        "actor": {"id": "crm", "role": "service"},
        "payload": {"ticket_id": Uuid::now_v7(), "customer_id": "c-1", "channel": "email",
                    "category": "incident", "priority": "normal", "subject": "over TLS"}});
    let started = Instant::now();
    let reply = loop {
        let request = client.request(
            "closeloop.v1.commands.open_ticket",
            serde_json::to_vec(&body).unwrap().into(),
        );
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(2), request).await {
            break serde_json::from_slice::<Value>(&message.payload).unwrap();
        }
        if let Some(status) = trusted.try_wait().unwrap() {
            panic!("serve over TLS exited: {status}");
        }
        assert!(
            started.elapsed() < DEADLINE,
            "serve over TLS never answered"
        );
        tokio::time::sleep(RETRY_PAUSE).await; // poll interval
    };
    assert_eq!(reply["status"], "accepted", "{reply}");
    let _ = trusted.kill();
    let _ = trusted.wait();
    drop(server);

    // The log and the tables are read back over TLS: the ticket is there.
    let ticket = body["payload"]["ticket_id"].as_str().unwrap().to_owned();
    let report = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "report", "sla", "--json"])
        .env("CLOSELOOP_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run closeloop report");
    assert!(
        report.status.success(),
        "report over TLS: {}",
        String::from_utf8_lossy(&report.stderr)
    );
    let history = Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "history", &ticket])
        .env("CLOSELOOP_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run closeloop history");
    let shown = String::from_utf8_lossy(&history.stdout);
    assert!(
        history.status.success() && shown.contains("ticket_opened"),
        "history over TLS: {shown}{}",
        String::from_utf8_lossy(&history.stderr)
    );
}
