//! `closeloop`: the command-line front of the engine. Thin by design: each subcommand parses
//! its arguments, opens the store and calls into the library crates.

mod demo;
mod replay;
mod report;
mod serve;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use closeloop_commands::{Handler, HandlerConfig, Reply};
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
    /// NATS server (for `serve`).
    #[arg(
        long,
        env = "CLOSELOOP_NATS",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    nats: String,
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
    },
    /// Submit one command, or a JSON-lines stream of them, from FILE or stdin; one reply per line.
    Submit {
        /// A file of commands; stdin when absent or `-`.
        file: Option<String>,
    },
    /// A ticket's complete history (actor, time, reason), or its state as of a time.
    History {
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
    /// Rebuild projections from the log beside the live ones, with progress, then switch
    /// atomically; with --until, build them as of a position or time under `<name>@<until>`.
    Replay(replay::ReplayArgs),
    /// Check hash chains and version/position contiguity; non-zero exit on any break.
    Verify {
        /// Only this ticket's stream.
        ticket_id: Option<Uuid>,
    },
    /// Create or upgrade the PostgreSQL schema (`--store postgres://...[?schema=NAME]`).
    Migrate,
    /// Stored events as JSON lines with their hashes.
    Export {
        /// A stream name such as `ticket-<uuid>`.
        #[arg(long)]
        stream: Option<String>,
        /// Only events that occurred at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<Timestamp>,
    },
}

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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Cmd::Migrate = cli.command {
        return migrate(&cli.store).await;
    }
    let log = log::open(&cli.store)
        .await
        .with_context(|| format!("opening store {}", cli.store))?;
    match cli.command {
        Cmd::Demo(args) => demo::run(log, &cli.store, args).await,
        Cmd::Submit { file } => submit(log, file).await,
        Cmd::Serve(args) => serve::run(log, &cli.store, &cli.nats, *args).await,
        Cmd::Schedule { interval_ms } => {
            serve::schedule(
                log,
                &cli.store,
                std::time::Duration::from_millis(interval_ms.max(10)),
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
        Cmd::Verify { ticket_id } => verify(log, ticket_id).await,
        Cmd::Migrate => unreachable!("handled before the store is opened"),
        Cmd::Export { stream, since } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            closeloop_replay::export::export(log.as_ref(), stream.as_deref(), since, &mut out)
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One command (the whole input is one JSON value), or JSON lines: every line is handled and
/// answered in order. Exit code 1 when any command was rejected.
async fn submit(log: Arc<dyn EventLog>, file: Option<String>) -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    match file.as_deref() {
        None | Some("-") => {
            std::io::stdin()
                .read_to_end(&mut input)
                .context("reading stdin")?;
        }
        Some(path) => input = std::fs::read(path).with_context(|| format!("reading {path}"))?,
    }
    // Local, like the store it opens: its input's actor and business time are trusted (any
    // past time; still monotonic per stream and not in the future).
    let handler = Handler::new(log, HandlerConfig::trusting());
    let single = serde_json::from_slice::<serde_json::Value>(&input).is_ok();
    let commands: Vec<&[u8]> = if single {
        vec![&input[..]]
    } else {
        input
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .collect()
    };
    let mut rejected = 0;
    let mut out = std::io::stdout().lock();
    for command in commands {
        let reply = handler.handle_bytes(command).await;
        if matches!(reply, Reply::Rejected { .. }) {
            rejected += 1;
        }
        writeln!(out, "{}", reply.to_json())?;
    }
    Ok(if rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
        println!("BROKEN {b}");
    }
    println!(
        "{} events in {} streams checked: {}",
        report.events,
        report.streams,
        if report.ok() {
            "hash chains intact, versions and positions contiguous".to_owned()
        } else {
            format!("{} breaks", report.breaks.len())
        }
    );
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
        println!(
            "schema {} is up to date at version {}",
            done.schema, done.version
        );
    } else {
        for (version, name) in &done.applied {
            println!("applied {version:04} {name} to schema {}", done.schema);
        }
        println!("schema {} is now at version {}", done.schema, done.version);
    }
    Ok(ExitCode::SUCCESS)
}
