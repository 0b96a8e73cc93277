//! `closeloop`: the command-line front of the engine. Thin by design: each subcommand parses
//! its arguments, opens the store and calls into the library crates.

/// `println!` that returns the write's error instead of panicking: a closed pipe
/// (`closeloop report sla | head -1`) ends the command quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!(::std::io::stdout(), $($arg)*)
    }};
}

/// `print!` that returns the write's error, like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        write!(::std::io::stdout(), $($arg)*)
    }};
}

mod csv;
mod dashboard;
mod demo;
mod http;
mod metrics;
mod progress;
mod replay;
mod report;
mod serve;
mod submit;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use closeloop_core::log::{self, EventLog};
use jiff::Timestamp;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "closeloop",
    version,
    about = "Event-sourced ticketing engine: commands in, audited events out."
)]
struct Cli {
    /// Event store: sqlite://PATH, postgres://..., or memory:
    #[arg(
        long,
        env = "CLOSELOOP_STORE",
        default_value = "sqlite://closeloop.db",
        global = true
    )]
    store: String,
    /// NATS server: where `serve` works (default nats://127.0.0.1:4222), and where
    /// `checkpoint` also appends its checkpoint when given.
    #[arg(long, env = "CLOSELOOP_NATS", global = true)]
    nats: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a realistic generated workload through the real engine and print what it did.
    Demo(demo::DemoArgs),
    /// Serve commands, queries and published events over NATS until SIGINT/SIGTERM.
    Serve(Box<serve::ServeArgs>),
    /// Run the SLA scheduler on its own (its own SLA projector, commands straight to the
    /// store) until SIGINT/SIGTERM; for deployments that run `serve --no-scheduler`.
    Schedule {
        /// How often to look for due warnings and breaches, in milliseconds.
        #[arg(long, env = "CLOSELOOP_SCHEDULER_INTERVAL_MS", default_value_t = 5_000)]
        interval_ms: u64,
        #[command(flatten)]
        log: serve::LogArgs,
    },
    /// Submit commands (JSON lines, or pretty-printed documents) from FILE or stdin; one
    /// reply per command, naming the input line it starts on.
    Submit {
        /// A file of commands; stdin when absent or `-`.
        file: Option<String>,
    },
    /// A ticket's complete history (actor, time, reason), or its state as of a time.
    History {
        /// The ticket: its UUID, or its stream's name `ticket-<uuid>`.
        #[arg(value_parser = ticket_id)]
        ticket_id: Uuid,
        /// Stop at this business time (RFC 3339): what had happened by then.
        #[arg(long)]
        as_of: Option<Timestamp>,
        /// Stop at this recorded time (RFC 3339): what the log held then.
        #[arg(long)]
        as_known_at: Option<Timestamp>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read models as tables or JSON (sla, satisfaction, performance), after catching the
    /// projections up to the head of the log.
    Report(report::ReportArgs),
    /// Rebuild the read-model tables from the log beside the live ones, then switch them in
    /// atomically; with --until, build them as of a position or time under a name of their own.
    Replay(replay::ReplayArgs),
    /// Check hash chains and version/position contiguity, and with --checkpoints the log
    /// against every signed checkpoint; non-zero exit on any break.
    Verify {
        /// Only this ticket's stream: its UUID, or the stream's name `ticket-<uuid>`.
        #[arg(conflicts_with = "checkpoints", value_parser = ticket_id)]
        ticket_id: Option<Uuid>,
        /// A checkpoints file (JSON lines, as `checkpoint` appends them), or `nats` for the
        /// JetStream stream --checkpoints-stream on the --nats server (its message N is then
        /// line N; a file named `nats` is `./nats`).
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The public key the checkpoints must be signed with (`KEYFILE.pub` of `keygen`).
        #[arg(long, requires = "checkpoints")]
        public_key: Option<PathBuf>,
        /// The JetStream stream `--checkpoints nats` reads.
        #[arg(
            long,
            env = "CLOSELOOP_CHECKPOINTS_STREAM",
            default_value = "CLOSELOOP_CHECKPOINTS"
        )]
        checkpoints_stream: String,
    },
    /// Generate an Ed25519 key for signing checkpoints: KEYFILE holds the secret (mode
    /// 0600), KEYFILE.pub the public key, each as 64 hex digits.
    Keygen {
        /// Where to write the secret key (never over an existing file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a checkpoint of the log (its id, head and a root hash over every stream's head
    /// hash) and append it to a JSON-lines file and, with --nats, to JetStream.
    Checkpoint {
        /// The secret key file written by `keygen`.
        #[arg(long, env = "CLOSELOOP_CHECKPOINT_KEY")]
        key: PathBuf,
        /// The checkpoints file the checkpoint is appended to.
        #[arg(long, default_value = "checkpoints.jsonl")]
        out: PathBuf,
        /// The JetStream stream checkpoints are appended to (with --nats).
        #[arg(
            long,
            env = "CLOSELOOP_CHECKPOINTS_STREAM",
            default_value = "CLOSELOOP_CHECKPOINTS"
        )]
        checkpoints_stream: String,
        /// Subject prefix: checkpoints are published on `<prefix>.checkpoints`.
        #[arg(long, env = "CLOSELOOP_SUBJECT_PREFIX", default_value = "closeloop.v1")]
        subject_prefix: String,
    },
    /// Create or upgrade the PostgreSQL schema (`--store postgres://...[?schema=NAME]`).
    Migrate,
    /// Print the log's stored events as JSON lines, with their hashes and the log's id.
    Export {
        /// Only this stream, such as `ticket-<uuid>` (exit 1 when it has no events).
        #[arg(long)]
        stream: Option<String>,
        /// Only events that occurred at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<Timestamp>,
    },
}

impl Cmd {
    /// Whether the command reads a log that must exist (and so never creates one). `replay`
    /// and `checkpoint` write beside the log (tables, a checkpoints file) but a missing log
    /// would only give them an empty one to rebuild or sign.
    fn reads_the_log_only(&self) -> bool {
        match self {
            Cmd::History { .. }
            | Cmd::Report(_)
            | Cmd::Replay(_)
            | Cmd::Verify { .. }
            | Cmd::Checkpoint { .. }
            | Cmd::Export { .. } => true,
            Cmd::Demo(_)
            | Cmd::Serve(_)
            | Cmd::Schedule { .. }
            | Cmd::Submit { .. }
            | Cmd::Keygen { .. }
            | Cmd::Migrate => false,
        }
    }
}

/// A ticket id as `history` and `verify` take it: the UUID, or the stream name that
/// `history` prints and `export` writes (`ticket-<uuid>`).
fn ticket_id(text: &str) -> Result<Uuid, String> {
    let id = text.strip_prefix("ticket-").unwrap_or(text);
    Uuid::parse_str(id)
        .map_err(|e| format!("expected a ticket id, a UUID or `ticket-<uuid>` ({e})"))
}

/// The NATS server `serve` uses when `--nats` is not given.
const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

/// mimalloc rather than the system allocator: the PostgreSQL writer frees, on its own thread,
/// what request handlers allocated on theirs, and glibc's malloc spent a fifth of the
/// process's CPU on that at 64 committers (`cargo bench --bench pg_append`), mimalloc 9%.
/// Built without transparent huge pages (`no_thp`): with them a replay spent a fifth of its
/// CPU in the kernel zeroing 2 MiB pages each time freed memory was taken up again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        // The reader went away (`closeloop report sla | head -1`): it had what it wanted.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether writing to stdout failed because its reader closed the pipe.
fn closed_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(BrokenPipe))
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Cmd::Migrate = cli.command {
        return migrate(&cli.store).await;
    }
    if let Cmd::Keygen { out } = &cli.command {
        return keygen(out);
    }
    // Commands that only read the log never create one: a mistyped path would otherwise
    // become an empty log that `verify` calls intact.
    let opened = if cli.command.reads_the_log_only() {
        log::open_existing(&cli.store).await
    } else {
        log::open(&cli.store).await
    };
    let log = match opened {
        Ok(log) => log,
        Err(e @ closeloop_core::Error::NoStore(_)) => return Err(e.into()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("opening store {}", cli.store))),
    };
    match cli.command {
        Cmd::Demo(args) => demo::run(log, &cli.store, args).await,
        Cmd::Submit { file } => submit::run(log, file).await,
        Cmd::Serve(args) => {
            let nats = cli.nats.as_deref().unwrap_or(DEFAULT_NATS);
            serve::run(log, &cli.store, nats, *args).await
        }
        Cmd::Schedule {
            interval_ms,
            log: log_args,
        } => {
            serve::schedule(
                log,
                &cli.store,
                std::time::Duration::from_millis(interval_ms.max(10)),
                log_args,
            )
            .await
        }
        Cmd::History {
            ticket_id,
            as_of,
            as_known_at,
            json,
        } => {
            let cut = closeloop_replay::history::Cut { as_of, as_known_at };
            history(log, ticket_id, cut, json).await
        }
        Cmd::Report(args) => report::run(log, &cli.store, args).await,
        Cmd::Replay(args) => replay::run(log, &cli.store, args).await,
        Cmd::Verify {
            ticket_id,
            checkpoints: Some(checkpoints),
            public_key: Some(public_key),
            checkpoints_stream,
        } => {
            debug_assert!(ticket_id.is_none());
            let source = if checkpoints.as_os_str() == "nats" {
                let Some(url) = cli.nats.as_deref() else {
                    eprintln!(
                        "verify --checkpoints nats reads the stream {checkpoints_stream} from \
                         NATS: give the server with --nats URL (or CLOSELOOP_NATS)"
                    );
                    return Ok(ExitCode::from(2));
                };
                CheckpointSource::Nats {
                    url,
                    stream: checkpoints_stream,
                }
            } else {
                CheckpointSource::File(checkpoints)
            };
            verify_checkpoints(log, source, &public_key).await
        }
        Cmd::Verify { ticket_id, .. } => verify(log, ticket_id).await,
        Cmd::Checkpoint {
            key,
            out,
            checkpoints_stream,
            subject_prefix,
        } => {
            let nats = cli.nats.as_deref().map(|url| CheckpointNats {
                url,
                target: serve::CheckpointTarget {
                    stream: checkpoints_stream,
                    subject: closeloop_commands::nats::checkpoints_subject(&subject_prefix),
                    file: None,
                },
            });
            checkpoint(log, &key, &out, nats).await
        }
        Cmd::Migrate | Cmd::Keygen { .. } => unreachable!("handled before the store is opened"),
        Cmd::Export { stream, since } => export(log, stream, since).await,
    }
}

/// `closeloop export`: the whole log, or one stream, which must have events: a stream name
/// with none is a mistake (a bare UUID, a typo), not an empty stream.
async fn export(
    log: Arc<dyn EventLog>,
    stream: Option<String>,
    since: Option<Timestamp>,
) -> anyhow::Result<ExitCode> {
    if let Some(name) = &stream {
        if log.read_stream_page(name, 0, 1).await?.is_empty() {
            let hint = match Uuid::parse_str(name) {
                Ok(id) => format!(" (a ticket's stream is named ticket-{id})"),
                Err(_) => String::new(),
            };
            eprintln!("no stream {name} in the log: it has no events{hint}");
            return Ok(ExitCode::from(1));
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    closeloop_replay::export::export(log.as_ref(), stream.as_deref(), since, &mut out).await?;
    Ok(ExitCode::SUCCESS)
}

async fn history(
    log: Arc<dyn EventLog>,
    ticket_id: Uuid,
    cut: closeloop_replay::history::Cut,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let history =
        match closeloop_replay::history::ticket_history(log.as_ref(), ticket_id, cut).await {
            Ok(h) => h,
            Err(closeloop_replay::Error::TicketNotFound(id)) => {
                eprintln!("no ticket {id}{}", cut.describe());
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e.into()),
        };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &history)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Every text from an event is printed through `printable`: no forged rows, no colours.
    use closeloop_replay::history::printable;
    let s = &history.state;
    writeln!(
        out,
        "{}  status {}  line {}  assignee {}  priority {}  grade {}  customer {}{}",
        history.stream,
        s.status,
        s.line,
        printable(s.assignee.as_deref().unwrap_or("-")),
        s.priority,
        s.grade,
        printable(&s.customer_id),
        match cut.describe() {
            d if d.is_empty() => d,
            d => format!("  ({})", d.trim_start()),
        }
    )?;
    writeln!(
        out,
        "{:>3}  {:<20}  {:<9}  {:<28}  {:<24}  what",
        "v", "occurred at", "recorded", "actor (role)", "event"
    )?;
    for e in &history.events {
        let actor = format!(
            "{} ({})",
            printable(&e.metadata.actor.id),
            e.metadata.actor.role
        );
        writeln!(
            out,
            "{:>3}  {:<20}  {:<9}  {:<28}  {:<24}  {}",
            e.version,
            e.metadata
                .occurred_at
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string(),
            closeloop_replay::history::recorded_gap(&e.metadata),
            actor,
            e.event_type,
            printable(&closeloop_replay::history::describe(e))
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(log: Arc<dyn EventLog>, ticket_id: Option<Uuid>) -> anyhow::Result<ExitCode> {
    let report = match ticket_id {
        Some(id) => {
            closeloop_replay::verify::verify_stream(log.as_ref(), &format!("ticket-{id}")).await?
        }
        None => closeloop_replay::verify::verify_log(log.as_ref(), |_| {}).await?,
    };
    if let (Some(id), 0) = (ticket_id, report.events) {
        eprintln!("no ticket {id}");
        return Ok(ExitCode::from(1));
    }
    for b in &report.breaks {
        outln!("BROKEN {b}")?;
    }
    outln!(
        "{} events in {} streams checked: {}",
        report.events,
        report.streams,
        if report.ok() {
            "hash chains intact, versions and positions contiguous".to_owned()
        } else {
            format!("{} breaks", report.breaks.len())
        }
    )?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `closeloop keygen`: a new checkpoint signing key; prints where it went and the public key.
fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let public = closeloop_replay::checkpoint::keygen(out)?;
    let public_path = closeloop_replay::checkpoint::public_key_path(out);
    outln!(
        "secret key: {} (mode 0600: keep it away from the database and its operators)",
        out.display()
    )?;
    outln!("public key: {} ({public})", public_path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Where `checkpoint` publishes, when NATS is configured.
struct CheckpointNats<'a> {
    url: &'a str,
    target: serve::CheckpointTarget,
}

/// `closeloop checkpoint`: signs a checkpoint of the log as of its head, appends it to the
/// file and, with NATS, to the JetStream stream (created append-only: no deletes, no purge).
async fn checkpoint(
    log: Arc<dyn EventLog>,
    key: &Path,
    out: &Path,
    nats: Option<CheckpointNats<'_>>,
) -> anyhow::Result<ExitCode> {
    use closeloop_replay::checkpoint;
    let key = checkpoint::read_secret_key(key)?;
    let taken = checkpoint::take(log.as_ref(), &key).await?;
    checkpoint::append_to_file(out, &taken)
        .with_context(|| format!("appending the checkpoint to {}", out.display()))?;
    if let Some(nats) = &nats {
        let client = async_nats::connect(nats.url)
            .await
            .with_context(|| format!("connecting to NATS at {}", nats.url))?;
        let js = async_nats::jetstream::new(client.clone());
        serve::publish_checkpoint(&js, &nats.target, &taken).await?;
        client.flush().await?;
    }
    outln!(
        "checkpoint of log {} at position {} ({} streams, root {}) appended to {}{}",
        taken.log_id,
        taken.head,
        taken.stream_count,
        taken.root,
        out.display(),
        nats.map_or_else(String::new, |n| format!(" and to {}", n.target.stream))
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Where `verify` reads checkpoints from.
enum CheckpointSource<'a> {
    File(PathBuf),
    /// The JetStream stream `checkpoint` and `serve` append to.
    Nats {
        url: &'a str,
        stream: String,
    },
}

/// `closeloop verify --checkpoints FILE|nats --public-key PUBFILE`.
async fn verify_checkpoints(
    log: Arc<dyn EventLog>,
    source: CheckpointSource<'_>,
    public_key: &Path,
) -> anyhow::Result<ExitCode> {
    use closeloop_replay::checkpoint;
    let public = checkpoint::read_public_key(public_key)?;
    let text = match &source {
        CheckpointSource::File(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        CheckpointSource::Nats { url, stream } => {
            let client = async_nats::connect(*url)
                .await
                .with_context(|| format!("connecting to NATS at {url}"))?;
            let js = async_nats::jetstream::new(client);
            serve::read_checkpoints(&js, stream).await?
        }
    };
    let report = checkpoint::verify(log.as_ref(), &text, &public).await?;
    for b in &report.log.breaks {
        outln!("BROKEN {b}")?;
    }
    for finding in &report.findings {
        outln!("BROKEN {finding}")?;
    }
    outln!(
        "{} events in {} streams checked: {}",
        report.log.events,
        report.log.streams,
        if report.log.ok() {
            "hash chains intact, versions and positions contiguous".to_owned()
        } else {
            format!("{} breaks", report.log.breaks.len())
        }
    )?;
    let covered = match &report.covered {
        Some(c) => format!(
            "the newest valid checkpoint (line {}, {}) covers positions 1..={} (the log's head is {})",
            c.line, c.created_at, c.head, report.head
        ),
        None => "no valid checkpoint covers any of it".to_owned(),
    };
    outln!(
        "log {}: {} checkpoints read, {} findings; {covered}",
        report.log_id,
        report.checkpoints,
        report.findings.len()
    )?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `closeloop migrate`: applies the pending PostgreSQL migrations (safe to run from several
/// processes at once: they serialise on an advisory lock).
async fn migrate(store: &str) -> anyhow::Result<ExitCode> {
    if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
        eprintln!("migrate works on PostgreSQL stores (--store postgres://...); SQLite and memory stores create their schema on open");
        return Ok(ExitCode::from(2));
    }
    let done = log::postgres::PostgresLog::migrate(store)
        .await
        .context("migrating")?;
    if done.applied.is_empty() {
        outln!(
            "schema {} is up to date at version {}",
            done.schema,
            done.version
        )?;
    } else {
        for (version, name) in &done.applied {
            outln!("applied {version:04} {name} to schema {}", done.schema)?;
        }
        outln!("schema {} is now at version {}", done.schema, done.version)?;
    }
    Ok(ExitCode::SUCCESS)
}
