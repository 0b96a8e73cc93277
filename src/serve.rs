//! `closeloop serve`: flags and environment in, signal handlers installed, then
//! `closeloop_commands::nats::run`. Also the read-side queries that need `closeloop-replay`
//! (which the commands crate cannot depend on): `ticket_history` and `ticket_state`; and the
//! read side that needs `closeloop-projections` (which the commands crate cannot depend on
//! either): the projectors, the SLA scheduler, the process managers ([`read_side`]) and the
//! `report_*` queries ([`queries`]). `closeloop schedule` ([`schedule`]) runs the SLA
//! scheduler alone.
//!
//! Background work of every instance:
//! - one job per projector (`Job::everywhere`): each instance keeps its own read models
//!   current (the `report_*` queries read them), saving checkpoints in the `--store`;
//! - the SLA scheduler and the process managers (`Job::once`: one instance at a time under a
//!   lease). Their commands carry deterministic ids, so even during a lease hand-over each
//!   deadline's warning or breach and each manager's command is appended once; the lease
//!   only avoids wasted work.
//!
//! Who is acting: over NATS, the actor of every command and query comes from a token verified
//! with `--auth-keys` (`closeloop_commands::nats::auth`); without keys `serve` refuses to
//! start unless `--insecure-no-auth` is given. The SLA scheduler and the process managers
//! act as `system` by calling the handler in process, never through NATS (where `system` is
//! refused).
//!
//! Confidentiality (docs/domain.md, Records, confidentiality and audit) is the domain's:
//! `closeloop_core::domain::report_scope` forces or refuses the filters of the `report_*`
//! queries (request: `actor` plus `agent`, `team`, `from`, `to`, `period`, `at`), and
//! `may_see_ticket` decides from the ticket's whole history whether the actor may see it
//! (`ticket_history`, `ticket_state`). This module reads the history and the directory they
//! need and turns a refusal into a `forbidden` reply. `--http` serves the same reports and
//! the dashboard over HTTP (`crate::http`), authenticated by the same `Auth` and scoped by
//! the same `restrict` ([`report_scope_fn`]).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use closeloop_commands::nats::{
    self, Auth, Job, LeaseConfig, Queries, QueryRequest, ServeConfig, Shutdown, Verifier,
};
use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::{
    may_read_erasures, may_see_ticket, report_scope, Actor, CommandEnvelope, Directory, Rejection,
    RejectionCode, ReportScope, Role,
};
use closeloop_core::log::EventLog;
use closeloop_process::scheduler;
use closeloop_process::{ProcessConfig, ProcessManagers};
use closeloop_projections::models::{ReadModels, PRIVACY_REPORTS, REPORTS};
use closeloop_projections::report::ReportQuery;
use closeloop_projections::runtime::ProjectorError;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::TableStore;
use closeloop_replay::history::{ticket_history_page, Cut, HistoryPage, PAGE_EVENTS_MAX};
use jiff::Timestamp;
use uuid::Uuid;

/// Flags of `serve`; each also read from its environment variable.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// First subject tokens of every subject served.
    #[arg(long, env = "CLOSELOOP_SUBJECT_PREFIX", default_value = "closeloop.v1")]
    subject_prefix: String,
    /// Queue group of command and query request/reply.
    #[arg(long, env = "CLOSELOOP_QUEUE_GROUP", default_value = "closeloop")]
    queue_group: String,
    /// JetStream stream of durable intake.
    #[arg(
        long,
        env = "CLOSELOOP_COMMANDS_STREAM",
        default_value = "CLOSELOOP_COMMANDS"
    )]
    commands_stream: String,
    /// Durable pull consumer of durable intake, shared by all instances.
    #[arg(long, env = "CLOSELOOP_COMMANDS_CONSUMER", default_value = "closeloop")]
    commands_consumer: String,
    /// JetStream stream the log is published to.
    #[arg(
        long,
        env = "CLOSELOOP_EVENTS_STREAM",
        default_value = "CLOSELOOP_EVENTS"
    )]
    events_stream: String,
    /// JetStream stream of durable commands that kept failing (dead letters).
    #[arg(
        long,
        env = "CLOSELOOP_DEAD_LETTER_STREAM",
        default_value = "CLOSELOOP_COMMANDS_DEAD"
    )]
    dead_letter_stream: String,
    /// Deliveries of a durable command whose store stays unavailable before it is
    /// dead-lettered (pauses doubling from 1 s to 30 s between them).
    #[arg(long, env = "CLOSELOOP_DURABLE_ATTEMPTS_MAX", default_value_t = 10)]
    durable_attempts_max: u32,
    /// Most MiB the commands stream holds (a work queue: publishes are refused beyond it).
    #[arg(
        long,
        env = "CLOSELOOP_COMMANDS_STREAM_MIB_MAX",
        default_value_t = 1024
    )]
    commands_stream_mib_max: u32,
    /// Most MiB the events stream holds (the oldest events are dropped beyond it).
    #[arg(long, env = "CLOSELOOP_EVENTS_STREAM_MIB_MAX", default_value_t = 8192)]
    events_stream_mib_max: u32,
    /// JetStream KV bucket of "run once" leases (relay, scheduler).
    #[arg(
        long,
        env = "CLOSELOOP_LEASE_BUCKET",
        default_value = "CLOSELOOP_LEASES"
    )]
    lease_bucket: String,
    /// A lease not renewed for this long passes to another instance.
    #[arg(long, env = "CLOSELOOP_LEASE_TTL_MS", default_value_t = 10_000)]
    lease_ttl_ms: u64,
    /// Largest command accepted, in bytes (at most 65536).
    #[arg(long, env = "CLOSELOOP_COMMAND_BYTES_MAX", default_value_t = 64 * 1024)]
    command_bytes_max: usize,
    /// Commands and queries handled at once (each kind); beyond it, back-pressure.
    #[arg(long, env = "CLOSELOOP_IN_FLIGHT_MAX", default_value_t = 256)]
    in_flight_max: usize,
    /// How far before its receipt an agent's or supervisor's `occurred_at` may be.
    #[arg(long, env = "CLOSELOOP_BACKDATE_STAFF_MAX_S", default_value_t = 300)]
    backdate_staff_max_s: u32,
    /// How far before its receipt a service's `occurred_at` may be (records made elsewhere).
    #[arg(long, env = "CLOSELOOP_BACKDATE_SERVICE_MAX_S", default_value_t = 7 * 24 * 3600)]
    backdate_service_max_s: u32,
    /// PEM file of the CA that signed the NATS server's certificate (for `tls://` URLs, or
    /// a server that requires TLS); with it, TLS is required.
    #[arg(long, env = "CLOSELOOP_NATS_CA", value_name = "FILE")]
    nats_ca: Option<std::path::PathBuf>,
    /// PEM client certificate for a NATS server that verifies its clients (with
    /// `--nats-key`).
    #[arg(
        long,
        env = "CLOSELOOP_NATS_CERT",
        value_name = "FILE",
        requires = "nats_key"
    )]
    nats_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--nats-cert`.
    #[arg(
        long,
        env = "CLOSELOOP_NATS_KEY",
        value_name = "FILE",
        requires = "nats_cert"
    )]
    nats_key: Option<std::path::PathBuf>,
    /// How long SIGTERM/SIGINT waits for work in flight before abandoning it.
    #[arg(long, env = "CLOSELOOP_DRAIN_TIMEOUT_MS", default_value_t = 30_000)]
    drain_timeout_ms: u64,
    /// How long a request/reply command may take when its `Closeloop-Timeout-Ms` header does
    /// not say (then it is answered `unavailable` and never appended).
    #[arg(long, env = "CLOSELOOP_COMMAND_TIMEOUT_MS", default_value_t = 30_000)]
    command_timeout_ms: u64,
    /// JetStream de-duplication window of the commands and events streams.
    #[arg(long, env = "CLOSELOOP_DUPLICATE_WINDOW_S", default_value_t = 600)]
    duplicate_window_s: u64,
    /// Replicas of the JetStream streams and lease bucket this creates (3 in a cluster).
    #[arg(long, env = "CLOSELOOP_STREAM_REPLICAS", default_value_t = 1)]
    stream_replicas: usize,
    /// How long JetStream waits for a durable command's ack before redelivering it.
    #[arg(long, env = "CLOSELOOP_ACK_WAIT_MS", default_value_t = 30_000)]
    ack_wait_ms: u64,
    /// Do not serve durable intake (JetStream).
    #[arg(long, env = "CLOSELOOP_NO_DURABLE_INTAKE")]
    no_durable_intake: bool,
    /// Do not run the event relay in this instance.
    #[arg(long, env = "CLOSELOOP_NO_RELAY")]
    no_relay: bool,
    /// Sign a checkpoint of the log with this secret key (`closeloop keygen`) every
    /// --checkpoint-every-s seconds when the log has moved, under a lease, appended to the
    /// JetStream stream --checkpoints-stream (and to --checkpoint-out when given).
    #[arg(long, env = "CLOSELOOP_CHECKPOINT_KEY")]
    checkpoint_key: Option<std::path::PathBuf>,
    /// Seconds between two checkpoints (each reads the whole log once).
    #[arg(long, env = "CLOSELOOP_CHECKPOINT_EVERY_S", default_value_t = 300)]
    checkpoint_every_s: u64,
    /// A checkpoints file (JSON lines) each checkpoint is also appended to.
    #[arg(long, env = "CLOSELOOP_CHECKPOINT_OUT", requires = "checkpoint_key")]
    checkpoint_out: Option<std::path::PathBuf>,
    /// JetStream stream of signed checkpoints (subject `<prefix>.checkpoints`).
    #[arg(
        long,
        env = "CLOSELOOP_CHECKPOINTS_STREAM",
        default_value = "CLOSELOOP_CHECKPOINTS"
    )]
    checkpoints_stream: String,
    /// Name of this instance in logs and leases (random when absent).
    #[arg(long, env = "CLOSELOOP_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Do not run the SLA scheduler in this instance (run `closeloop schedule` instead, or
    /// let another instance run it).
    #[arg(long, env = "CLOSELOOP_NO_SCHEDULER")]
    no_scheduler: bool,
    /// How often the SLA scheduler looks for due warnings and breaches.
    #[arg(long, env = "CLOSELOOP_SCHEDULER_INTERVAL_MS", default_value_t = 5_000)]
    scheduler_interval_ms: u64,
    /// Do not run the process managers (auto-assign, backup coverage, breach escalation) in
    /// this instance.
    #[arg(long, env = "CLOSELOOP_NO_PROCESS_MANAGERS")]
    no_process_managers: bool,
    /// JSON file of the public keys that sign callers' tokens (`Authorization: Bearer <jwt>`),
    /// each with the roles its tokens may assert (README, Integrating from another service).
    #[arg(long, env = "CLOSELOOP_AUTH_KEYS", value_name = "FILE")]
    auth_keys: Option<std::path::PathBuf>,
    /// Require this `iss` claim in every token.
    #[arg(long, env = "CLOSELOOP_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// Require this `aud` claim in every token.
    #[arg(long, env = "CLOSELOOP_AUTH_AUDIENCE")]
    auth_audience: Option<String>,
    /// DEVELOPMENT ONLY: take the actor from the body, unverified (anyone reaching the NATS
    /// subjects may act as any agent, supervisor, service or auditor).
    #[arg(long, env = "CLOSELOOP_INSECURE_NO_AUTH", conflicts_with = "auth_keys")]
    insecure_no_auth: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (README, Metrics), such as
    /// 127.0.0.1:9464 (port 0: any free port, logged). No authentication: bind it to a
    /// private interface. Off when absent.
    #[arg(long, env = "CLOSELOOP_METRICS_ADDR", value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Serve the dashboard and the reports (JSON and CSV) at http://ADDR/ (README, The
    /// dashboard), such as 127.0.0.1:8080 (port 0: any free port, logged); read-only,
    /// authenticated and scoped as the report queries are. Off when absent.
    #[arg(long, env = "CLOSELOOP_HTTP_ADDR", value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    #[command(flatten)]
    log: LogArgs,
}

/// How the logs (on stderr) are written: by `serve` and `schedule`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct LogArgs {
    /// Logs as plain text (coloured only on a terminal), or as JSON lines for a log shipper
    /// (`timestamp`, `level`, `target`, `message` and the event's own fields); the level is
    /// set by CLOSELOOP_LOG (default info).
    #[arg(
        long,
        value_enum,
        env = "CLOSELOOP_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    fn handler_config(&self) -> HandlerConfig {
        let mut config = HandlerConfig::default();
        config.rules.time.backdate_staff_max =
            jiff::SignedDuration::from_secs(self.backdate_staff_max_s.into());
        config.rules.time.backdate_service_max =
            jiff::SignedDuration::from_secs(self.backdate_service_max_s.into());
        config
    }

    fn read_side(&self, store: &str) -> ReadSideConfig {
        ReadSideConfig {
            store: store.to_owned(),
            scheduler_interval: (!self.no_scheduler)
                .then(|| Duration::from_millis(self.scheduler_interval_ms.max(10))),
            process_managers: !self.no_process_managers,
        }
    }

    /// Who is acting: tokens verified with `--auth-keys`, or (explicitly) nobody checks.
    fn auth(&self) -> anyhow::Result<Auth> {
        match (&self.auth_keys, self.insecure_no_auth) {
            (Some(path), _) => {
                let verifier = Verifier::load(path)?
                    .with_issuer(self.auth_issuer.clone())
                    .with_audience(self.auth_audience.clone());
                tracing::info!(keys = ?verifier.kids(), "actors from tokens signed by these keys");
                Ok(Auth::Tokens(Arc::new(verifier)))
            }
            (None, true) => {
                tracing::warn!(
                    "INSECURE: --insecure-no-auth: the actor of every command and query is \
                     whatever its body claims, unverified; for development only, never in \
                     production (configure --auth-keys instead)"
                );
                Ok(Auth::Insecure)
            }
            (None, false) => anyhow::bail!(
                "serve needs the public keys that sign callers' tokens: pass --auth-keys FILE \
                 (env CLOSELOOP_AUTH_KEYS), a JSON file \
                 {{\"keys\":[{{\"kid\":\"crm\",\"alg\":\"EdDSA\",\"pem\":\"-----BEGIN PUBLIC KEY-----\\n...\",\"roles\":[\"service\"]}}]}} \
                 (README, Integrating from another service); or, for development only, \
                 --insecure-no-auth (env CLOSELOOP_INSECURE_NO_AUTH)"
            ),
        }
    }

    fn config(&self) -> anyhow::Result<ServeConfig> {
        let defaults = ServeConfig::default();
        Ok(ServeConfig {
            subject_prefix: self.subject_prefix.clone(),
            queue_group: self.queue_group.clone(),
            commands_stream: self.commands_stream.clone(),
            consumer_name: self.commands_consumer.clone(),
            events_stream: self.events_stream.clone(),
            dead_letter_stream: self.dead_letter_stream.clone(),
            durable_attempts_max: self.durable_attempts_max.max(1),
            commands_stream_bytes_max: i64::from(self.commands_stream_mib_max.max(1)) << 20,
            events_stream_bytes_max: i64::from(self.events_stream_mib_max.max(1)) << 20,
            lease: LeaseConfig {
                bucket: self.lease_bucket.clone(),
                ttl: Duration::from_millis(self.lease_ttl_ms.max(300)),
                replicas: self.stream_replicas.clamp(1, 5),
            },
            instance_id: self.instance_id.clone().unwrap_or(defaults.instance_id),
            command_bytes_max: self.command_bytes_max,
            in_flight_max: self.in_flight_max.clamp(1, 65_536),
            duplicate_window: Duration::from_secs(self.duplicate_window_s.max(1)),
            stream_replicas: self.stream_replicas.clamp(1, 5),
            ack_wait: Duration::from_millis(self.ack_wait_ms.max(100)),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            command_timeout: Duration::from_millis(self.command_timeout_ms.clamp(1, 300_000)),
            durable_intake: !self.no_durable_intake,
            relay: !self.no_relay,
            auth: self.auth()?,
            ..defaults
        })
    }
}

/// Logs to stderr at the level of CLOSELOOP_LOG (default info): text with ANSI colours only
/// when stderr is a terminal (never escape codes in a log file), or JSON lines.
fn init_tracing(log: LogArgs) {
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOSELOOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    let _ = match log.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs `serve` until SIGINT or SIGTERM, then drains and returns success.
pub async fn run(
    log: Arc<dyn EventLog>,
    store: &str,
    nats_url: &str,
    args: ServeArgs,
) -> anyhow::Result<ExitCode> {
    init_tracing(args.log);
    let shutdown = shutdown_signal();
    let config = args.config()?;
    let handler_config = args.handler_config();
    let mut options =
        async_nats::ConnectOptions::new().name(format!("closeloop-serve-{}", config.instance_id));
    // TLS through async-nats's own rustls: a `tls://` URL, or a CA file, requires it.
    if let Some(ca) = &args.nats_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&args.nats_cert, &args.nats_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if nats_url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    let client = options
        .connect(nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {nats_url}"))?;
    let handler = Arc::new(Handler::new(log.clone(), handler_config));
    let (mut jobs, models) = read_side(&log, &handler, &args.read_side(store)).await?;
    if let Some(path) = &args.checkpoint_key {
        // Read now: a bad key stops `serve` at once, not a background job later.
        let key = closeloop_replay::checkpoint::read_secret_key(path)?;
        jobs.push(checkpoint_job(
            CheckpointTarget {
                stream: args.checkpoints_stream.clone(),
                subject: config.checkpoints_subject(),
                file: args.checkpoint_out.clone(),
            },
            Duration::from_secs(args.checkpoint_every_s.max(1)),
            key,
            log.clone(),
            jetstream::new(client.clone()),
        ));
    }
    let metrics = match args.metrics {
        Some(addr) => Some(
            crate::metrics::start(
                addr,
                crate::metrics::Sources {
                    log: log.clone(),
                    tables: models.tables.clone(),
                    js: jetstream::new(client.clone()),
                    config: config.clone(),
                },
            )
            .await?,
        ),
        None => None,
    };
    let http = match args.http {
        Some(addr) => Some(
            crate::http::start(
                addr,
                crate::http::Sources {
                    models: models.clone(),
                    auth: config.auth.clone(),
                    scope: report_scope_fn(handler.clone()),
                },
            )
            .await?,
        ),
        None => None,
    };
    let queries = queries(log, handler.clone(), models);
    let served = nats::run(config, handler, client, queries, jobs, shutdown).await;
    if let Some(endpoint) = metrics {
        endpoint.stop();
    }
    if let Some(endpoint) = http {
        endpoint.stop();
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Where signed checkpoints go: a JetStream stream, and a file when given.
#[derive(Debug, Clone)]
pub struct CheckpointTarget {
    pub stream: String,
    pub subject: String,
    pub file: Option<std::path::PathBuf>,
}

/// Most checkpoints `verify --checkpoints nats` reads (at one every 5 minutes, 95 years).
pub const CHECKPOINTS_READ_MAX: u64 = 10_000_000;

/// The checkpoints of a JetStream stream as `verify` reads a file: one JSON line per
/// message, line N holding message N (an empty line where a message is missing), so a
/// finding's line number is the message's sequence number.
pub async fn read_checkpoints(js: &jetstream::Context, stream: &str) -> anyhow::Result<String> {
    let mut found = js
        .get_stream(stream)
        .await
        .with_context(|| format!("the checkpoints stream {stream}"))?;
    let state = found.info().await?.state.clone();
    anyhow::ensure!(
        state.messages <= CHECKPOINTS_READ_MAX,
        "the checkpoints stream {stream} holds {} messages, more than the {CHECKPOINTS_READ_MAX} verify reads",
        state.messages
    );
    let mut text = String::new();
    for sequence in 1..=state.last_sequence {
        if sequence >= state.first_sequence {
            match found.get_raw_message(sequence).await {
                Ok(message) => {
                    let payload = String::from_utf8_lossy(&message.payload);
                    // A line break inside would split one message into two lines.
                    text.push_str(&payload.replace(['\n', '\r'], " "));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
                    ) => {}
                Err(e) => return Err(e).with_context(|| format!("message {sequence} of {stream}")),
            }
        }
        text.push('\n');
    }
    Ok(text)
}

/// Appends `checkpoint` to the target's JetStream stream, created append-only (deletes and
/// purges denied; deleting the whole stream is an administrator's act, and the file copy
/// remains). `Nats-Msg-Id` is the signature, so a retried publish is stored once.
pub async fn publish_checkpoint(
    js: &jetstream::Context,
    target: &CheckpointTarget,
    checkpoint: &closeloop_replay::checkpoint::Checkpoint,
) -> anyhow::Result<()> {
    closeloop_commands::nats::streams::ensure_stream(
        js,
        jetstream::stream::Config {
            name: target.stream.clone(),
            subjects: vec![target.subject.clone()],
            storage: jetstream::stream::StorageType::File,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("the checkpoints stream {}", target.stream))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", checkpoint.signature.as_str());
    headers.insert(
        closeloop_commands::relay::LOG_ID_HEADER,
        checkpoint.log_id.to_string().as_str(),
    );
    let payload = serde_json::to_vec(checkpoint)?;
    js.publish_with_headers(target.subject.clone(), headers, payload.into())
        .await?
        .await
        .with_context(|| format!("appending to {}", target.stream))?;
    Ok(())
}

/// The head of the newest checkpoint of this log in the stream, if any: a restarted job
/// does not sign the same head again.
async fn last_checkpointed(
    js: &jetstream::Context,
    target: &CheckpointTarget,
    log_id: Uuid,
) -> Option<u64> {
    let mut stream = js.get_stream(&target.stream).await.ok()?;
    let last = stream.info().await.ok()?.state.last_sequence;
    let message = stream.get_raw_message(last).await.ok()?;
    let checkpoint: closeloop_replay::checkpoint::Checkpoint =
        serde_json::from_slice(&message.payload).ok()?;
    (checkpoint.log_id == log_id).then_some(checkpoint.head)
}

/// `serve --checkpoint-key`: a signed checkpoint every `every` when the head has moved,
/// one instance at a time (`Job::once`).
pub fn checkpoint_job(
    target: CheckpointTarget,
    every: Duration,
    key: ed25519_dalek::SigningKey,
    log: Arc<dyn EventLog>,
    js: jetstream::Context,
) -> Job {
    let shared = Arc::new((target, key, log, js));
    Job::once(
        "checkpoint",
        Arc::new(move |mut shutdown: Shutdown| {
            let shared = shared.clone();
            Box::pin(async move {
                let (target, key, log, js) = &*shared;
                let log_id = log.log_id().await.map_err(|e| e.to_string())?;
                let mut signed = last_checkpointed(js, target, log_id).await;
                while !shutdown.is_set() {
                    let head = log.head().await.map_err(|e| e.to_string())?;
                    if signed != Some(head) {
                        let checkpoint = closeloop_replay::checkpoint::take(log.as_ref(), key)
                            .await
                            .map_err(|e| format!("checkpoint: {e}"))?;
                        if let Some(file) = &target.file {
                            closeloop_replay::checkpoint::append_to_file(file, &checkpoint)
                                .map_err(|e| format!("checkpoint: {}: {e}", file.display()))?;
                        }
                        publish_checkpoint(js, target, &checkpoint)
                            .await
                            .map_err(|e| format!("checkpoint: {e:#}"))?;
                        tracing::info!(head = checkpoint.head, root = %checkpoint.root, "checkpoint signed");
                        signed = Some(checkpoint.head);
                    }
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
                Ok(())
            })
        }),
    )
}

/// What [`read_side`] runs.
#[derive(Debug, Clone)]
pub struct ReadSideConfig {
    /// The `--store` URL: the read models keep their state and checkpoints there.
    pub store: String,
    /// Run the SLA scheduler (under a lease), ticking this often.
    pub scheduler_interval: Option<Duration>,
    /// Run the process managers (under a lease).
    pub process_managers: bool,
}

/// Tries at opening the read-model storage.
const OPEN_ATTEMPTS: u32 = 5;

/// Opens the projectors on the store and returns the background jobs of the read side (one
/// `Job::everywhere` per projector; `Job::once` for the SLA scheduler and the process
/// managers, which submit commands through `handler` as role `system`) and the shared read
/// models the `report_*` queries answer from.
pub async fn read_side(
    log: &Arc<dyn EventLog>,
    handler: &Arc<Handler>,
    config: &ReadSideConfig,
) -> anyhow::Result<(Vec<Job>, ReadModels)> {
    // Several instances starting at once all run the (idempotent) tables' DDL on
    // PostgreSQL; one may lose a race on the catalog: try again shortly.
    let tables = open_tables_retrying(&config.store).await?;
    // Reports read through a connection of their own on PostgreSQL, so a long report never
    // holds up the projector's commits (SQLite stores read on their own connection already;
    // memory stores must be the same instance).
    let reader = if config.store.starts_with("postgres") {
        open_tables_retrying(&config.store).await?
    } else {
        tables.clone()
    };
    let projector = TableProjector::open(log.clone(), tables, TableConfig::default())
        .await
        .context("opening the tables' projector")?;
    let models = ReadModels::new(reader.clone(), vec![projector.status()]).with_log(log.clone());
    let mut jobs = vec![tables_job(projector)];
    if let Some(interval) = config.scheduler_interval {
        let (tables, handler) = (reader.clone(), handler.clone());
        jobs.push(Job::once(
            "sla-scheduler",
            Arc::new(move |shutdown: Shutdown| {
                let (tables, handler) = (tables.clone(), handler.clone());
                Box::pin(async move {
                    scheduler::run(
                        tables,
                        jiff::Timestamp::now,
                        |command| submit(handler.clone(), command),
                        interval,
                        shutdown,
                    )
                    .await;
                    Ok(())
                })
            }),
        ));
    }
    if config.process_managers {
        let handler = handler.clone();
        jobs.push(Job::once(
            "process-managers",
            Arc::new(move |shutdown: Shutdown| {
                let managers = ProcessManagers::new(handler.clone(), ProcessConfig::default());
                Box::pin(async move {
                    managers
                        .run(shutdown)
                        .await
                        .map_err(|e| format!("process managers: {e}"))
                })
            }),
        ));
    }
    Ok((jobs, models))
}

/// Submits one of the engine's own commands; a refusal is only logged (the scheduler asks
/// again at its next tick if the deadline is still due).
async fn submit(handler: Arc<Handler>, command: CommandEnvelope) {
    let kind = closeloop_commands::metrics::scheduler_kind(&command.command);
    let reply = handler.handle(command).await;
    closeloop_commands::metrics::scheduler_answered(kind, &reply);
    if let Reply::Rejected { error, .. } = &reply {
        tracing::debug!(error = ?error, "a scheduled command was refused");
    }
}

/// The tables' DDL may lose a race with another instance's: try again shortly.
async fn open_tables_retrying(store: &str) -> anyhow::Result<Arc<dyn TableStore>> {
    let mut attempt = 1;
    loop {
        match closeloop_projections::tables::open_tables(store).await {
            Ok(tables) => return Ok(tables),
            Err(e) if attempt < OPEN_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "opening the read-model tables; retrying");
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("opening the read-model tables in {store}"))
            }
        }
    }
}

/// The tables' projector's tail loop ([`TableProjector::tail`]) until shutdown. A store error
/// ends the job with `Err` (restarted after a pause, from the state it holds). An event it
/// cannot fold stops it for good (its status says so in every report) and the job then just
/// waits for shutdown.
async fn tail(
    projector: Arc<tokio::sync::Mutex<TableProjector>>,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let mut projector = projector.lock().await;
    match projector.tail(&mut shutdown).await {
        Ok(()) => Ok(()),
        Err(ProjectorError::Apply { .. }) => {
            shutdown.wait().await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The tables' projector: one writer per deployment, under the lease (`Job::once`); every
/// instance answers reports from the shared tables, and reads the writer's progress from
/// their checkpoint. Its commits are also fenced by the checkpoint, so during a lease
/// hand-over, when two instances fold the same batch, one commit wins and the other reloads
/// and goes on: no event takes effect twice.
fn tables_job(projector: TableProjector) -> Job {
    let projector = Arc::new(tokio::sync::Mutex::new(projector));
    Job::once(
        "projector-tables",
        Arc::new(move |shutdown: Shutdown| {
            let projector = projector.clone();
            Box::pin(async move { tail(projector, shutdown).await })
        }),
    )
}

/// `closeloop schedule`: the SLA scheduler on its own, with its own SLA projector (state and
/// checkpoint in `store`), submitting straight to the log, until SIGINT or SIGTERM.
pub async fn schedule(
    log: Arc<dyn EventLog>,
    store: &str,
    interval: Duration,
    log_args: LogArgs,
) -> anyhow::Result<ExitCode> {
    init_tracing(log_args);
    let shutdown = shutdown_signal();
    let tables = closeloop_projections::tables::open_tables(store)
        .await
        .with_context(|| format!("opening the read-model tables in {store}"))?;
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
    let (stop, stopped) = Shutdown::new();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        stop.fire();
    });
    tracing::info!(
        every_ms = interval.as_millis() as u64,
        "SLA scheduler running"
    );
    scheduler::run_standalone(
        log,
        tables,
        jiff::Timestamp::now,
        |command| submit(handler.clone(), command),
        interval,
        stopped,
    )
    .await
    .context("SLA scheduler")?;
    Ok(ExitCode::SUCCESS)
}

/// A future that completes on SIGINT or SIGTERM.
///
/// The handlers are registered when this is called, not when the future is first polled:
/// `serve` answers its first request before its select loop polls the shutdown future, and a
/// SIGTERM landing in between would otherwise find the default disposition and kill the
/// process instead of draining it. Call it before anything serves.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The queries served: ticket history and state; `report_sla`, `report_satisfaction` and
/// `report_performance` from `models`.
pub fn queries(log: Arc<dyn EventLog>, handler: Arc<Handler>, models: ReadModels) -> Queries {
    let mut queries = Queries::new();
    for name in REPORTS {
        let (models, handler) = (models.clone(), handler.clone());
        queries.register(
            &format!("report_{name}"),
            Arc::new(move |request| {
                let (models, handler) = (models.clone(), handler.clone());
                Box::pin(async move { report(&models, &handler, name, request).await })
            }),
        );
    }
    for name in PRIVACY_REPORTS {
        let (models, handler) = (models.clone(), handler.clone());
        queries.register(
            &format!("report_{name}"),
            Arc::new(move |request| {
                let (models, handler) = (models.clone(), handler.clone());
                Box::pin(async move { report(&models, &handler, name, request).await })
            }),
        );
    }
    {
        let (log, handler) = (log.clone(), handler.clone());
        queries.register(
            "ticket_history",
            Arc::new(move |request| {
                let (log, handler) = (log.clone(), handler.clone());
                Box::pin(async move {
                    request.only(&[
                        "ticket_id",
                        "as_of",
                        "as_known_at",
                        "after_version",
                        "limit",
                    ])?;
                    let history = visible_history(&log, &handler, &request).await?;
                    Ok(serde_json::to_value(history).expect("histories serialize"))
                })
            }),
        );
    }
    queries.register(
        "ticket_state",
        Arc::new(move |request| {
            let (log, handler) = (log.clone(), handler.clone());
            Box::pin(async move {
                request.only(&["ticket_id", "as_of"])?;
                let history = visible_history(&log, &handler, &request).await?;
                Ok(serde_json::json!({
                    "stream": history.stream,
                    "version": history.state.version,
                    "state": history.state,
                }))
            })
        }),
    );
    queries
}

/// A report query: the parameters of `closeloop report NAME` (`at` is the report time, the
/// wall clock when absent), restricted to what the actor may see (module doc).
async fn report(
    models: &ReadModels,
    handler: &Handler,
    name: &str,
    request: QueryRequest,
) -> Result<serde_json::Value, Rejection> {
    let at: Option<Timestamp> = request.param("at", false)?;
    let mut params = request.params.clone();
    params.remove("at");
    let mut query = ReportQuery::from_params(&params).map_err(|(path, message)| {
        // `at` is taken here, before the report's own parameters.
        Rejection::validation(
            &path,
            message.replace("expected actor, ", "expected actor, at, "),
        )
    })?;
    if PRIVACY_REPORTS.contains(&name) {
        may_read_erasures(&request.actor)?;
    } else {
        restrict(&request.actor, handler, &mut query).await?;
    }
    models
        .report(name, &query, at.unwrap_or_else(Timestamp::now))
        .await
        .map_err(|e| Rejection::new(RejectionCode::Unavailable, e.to_string()))?
        .ok_or_else(|| Rejection::not_found("", format!("no report `{name}`")))
}

/// [`restrict`] for the HTTP endpoint: its reports are scoped exactly as the queries.
pub fn report_scope_fn(handler: Arc<Handler>) -> crate::http::ScopeFn {
    Arc::new(move |actor, mut query| {
        let handler = handler.clone();
        Box::pin(async move {
            restrict(&actor, &handler, &mut query).await?;
            Ok(query)
        })
    })
}

/// Forces the filters of a report query to what `actor` may see, or refuses it
/// (`report_scope`, the domain's rule).
async fn restrict(
    actor: &Actor,
    handler: &Handler,
    query: &mut ReportQuery,
) -> Result<(), Rejection> {
    // Only a supervisor's scope depends on the directory (the team they lead).
    let directory = match actor.role {
        Role::Supervisor => Some(
            handler
                .directory()
                .await
                .map_err(|e| Rejection::new(RejectionCode::Unavailable, e.to_string()))?,
        ),
        _ => None,
    };
    match report_scope(
        actor,
        query.agent.as_deref(),
        query.team.as_deref(),
        directory.as_deref(),
    )? {
        ReportScope::All => {}
        ReportScope::Agent(agent) => query.agent = Some(agent),
        ReportScope::Team(team) => query.team = Some(team),
    }
    Ok(())
}

/// A page of the ticket's history (cut at `as_of` and `as_known_at`, after `after_version`,
/// at most `limit` events and at most what one reply carries), if the actor may see the
/// ticket. Memory holds a page, however long the ticket.
async fn visible_history(
    log: &Arc<dyn EventLog>,
    handler: &Handler,
    request: &QueryRequest,
) -> Result<HistoryPage, Rejection> {
    let ticket_id: Uuid = request.param("ticket_id", true)?.expect("required");
    let cut = Cut {
        as_of: request.param("as_of", false)?,
        as_known_at: request.param("as_known_at", false)?,
    };
    let after_version: u64 = request.param("after_version", false)?.unwrap_or(0);
    let limit: usize = request.param("limit", false)?.unwrap_or(PAGE_EVENTS_MAX);
    if !(1..=PAGE_EVENTS_MAX).contains(&limit) {
        return Err(Rejection::validation(
            "/limit",
            format!("must be 1 to {PAGE_EVENTS_MAX}"),
        ));
    }
    let whole = ticket_history_page(
        log.as_ref(),
        ticket_id,
        Cut::default(),
        after_version,
        limit,
    )
    .await
    .map_err(|e| history_error(e, ticket_id))?;
    let directory = handler
        .directory()
        .await
        .map_err(|e| Rejection::new(RejectionCode::Unavailable, e.to_string()))?;
    if !may_see(&request.actor, &whole, &directory) {
        // The same answer as for a ticket that does not exist: a reader who may not see a
        // ticket does not learn that it exists.
        return Err(history_error(
            closeloop_replay::Error::TicketNotFound(ticket_id),
            ticket_id,
        ));
    }
    let mut page = if cut == Cut::default() {
        whole
    } else {
        ticket_history_page(log.as_ref(), ticket_id, cut, after_version, limit)
            .await
            .map_err(|e| match e {
                closeloop_replay::Error::TicketNotFound(_) => Rejection::not_found(
                    if cut.as_of.is_some() {
                        "/as_of"
                    } else {
                        "/as_known_at"
                    },
                    format!("ticket {ticket_id} did not exist yet{}", cut.describe()),
                ),
                other => Rejection::new(RejectionCode::Unavailable, other.to_string()),
            })?
    };
    page.fit(request.reply_bytes_max);
    Ok(page)
}

fn history_error(e: closeloop_replay::Error, ticket_id: Uuid) -> Rejection {
    match e {
        closeloop_replay::Error::TicketNotFound(_) => {
            Rejection::not_found("/ticket_id", format!("no ticket {ticket_id}"))
        }
        other => Rejection::new(RejectionCode::Unavailable, other.to_string()),
    }
}

/// The confidentiality rule of the module doc, decided by the domain (`may_see_ticket`) from
/// the ticket's whole history: its state, who opened it, its assignments and escalations.
fn may_see(actor: &Actor, history: &HistoryPage, directory: &Directory) -> bool {
    may_see_ticket(
        actor,
        &history.state,
        &history.handovers,
        history.opened_by.as_ref(),
        directory,
    )
}
