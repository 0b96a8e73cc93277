//! `closeloop serve`: flags and environment in, signal handlers installed, then
//! `closeloop_commands::nats::run`. Also the read-side queries that need `closeloop-replay`
//! (which the commands crate cannot depend on): `ticket_history` and `ticket_state`.
//!
//! Confidentiality (DOMAIN.md) of ticket queries, decided from the ticket's whole history:
//! - `auditor`, `system`: every ticket.
//! - `agent`: tickets that are or were assigned (or escalated) to them, tickets assigned to
//!   an away agent they cover, and tickets of customers they are account manager of.
//! - `supervisor` (a registered team lead): tickets that are or were with their team.
//! - `service`: tickets it opened (it acts for those customers).
//!
//! Anything else is `forbidden`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use closeloop_commands::nats::{self, Job, LeaseConfig, Queries, QueryRequest, ServeConfig};
use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::domain::{Actor, Directory, Event, Rejection, RejectionCode, Role};
use closeloop_core::log::EventLog;
use closeloop_replay::history::{ticket_history, History};
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
    /// Name of this instance in logs and leases (random when absent).
    #[arg(long, env = "CLOSELOOP_INSTANCE_ID")]
    instance_id: Option<String>,
}

impl ServeArgs {
    fn config(&self) -> ServeConfig {
        let defaults = ServeConfig::default();
        ServeConfig {
            subject_prefix: self.subject_prefix.clone(),
            queue_group: self.queue_group.clone(),
            commands_stream: self.commands_stream.clone(),
            consumer_name: self.commands_consumer.clone(),
            events_stream: self.events_stream.clone(),
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
            durable_intake: !self.no_durable_intake,
            relay: !self.no_relay,
            ..defaults
        }
    }
}

/// Runs `serve` until SIGINT or SIGTERM, then drains and returns success.
pub async fn run(
    log: Arc<dyn EventLog>,
    nats_url: &str,
    args: ServeArgs,
) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOSELOOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = args.config();
    let client = async_nats::ConnectOptions::new()
        .name(format!("closeloop-serve-{}", config.instance_id))
        .connect(nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {nats_url}"))?;
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
    let jobs = jobs(&log, &handler);
    let queries = queries(log, handler.clone());
    nats::run(config, handler, client, queries, jobs, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Background jobs besides the relay: the place where projector runners (`Job::everywhere`
/// or `Job::once`), the SLA scheduler and the process managers (`Job::once`: they submit
/// commands through `handler`) are added. A job gets a `Shutdown` (`wait().await`,
/// `is_set()`) and returns soon after it fires; `Job::once` jobs hold a lease, so exactly one
/// instance runs each, and another takes over within the lease TTL when that one dies.
fn jobs(_log: &Arc<dyn EventLog>, _handler: &Arc<Handler>) -> Vec<Job> {
    Vec::new()
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The queries served: ticket history and state here; `report_sla`, `report_satisfaction`
/// and `report_performance` are registered the same way by the read models.
pub fn queries(log: Arc<dyn EventLog>, handler: Arc<Handler>) -> Queries {
    let mut queries = Queries::new();
    {
        let (log, handler) = (log.clone(), handler.clone());
        queries.register(
            "ticket_history",
            Arc::new(move |request| {
                let (log, handler) = (log.clone(), handler.clone());
                Box::pin(async move {
                    request.only(&["ticket_id", "as_of"])?;
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

/// The ticket's history (up to `as_of`), if the actor may see the ticket.
async fn visible_history(
    log: &Arc<dyn EventLog>,
    handler: &Handler,
    request: &QueryRequest,
) -> Result<History, Rejection> {
    let ticket_id: Uuid = request.param("ticket_id", true)?.expect("required");
    let as_of: Option<Timestamp> = request.param("as_of", false)?;
    let full = ticket_history(log.as_ref(), ticket_id, None)
        .await
        .map_err(|e| history_error(e, ticket_id))?;
    let directory = handler
        .directory()
        .await
        .map_err(|e| Rejection::new(RejectionCode::Unavailable, e.to_string()))?;
    if !may_see(&request.actor, &full, &directory) {
        return Err(Rejection::at(
            RejectionCode::Forbidden,
            "/ticket_id",
            format!(
                "ticket {ticket_id} is not in the care of {} `{}`",
                request.actor.role, request.actor.id
            ),
        ));
    }
    match as_of {
        None => Ok(full),
        Some(as_of) => ticket_history(log.as_ref(), ticket_id, Some(as_of))
            .await
            .map_err(|e| match e {
                closeloop_replay::Error::TicketNotFound(_) => Rejection::not_found(
                    "/as_of",
                    format!("ticket {ticket_id} did not exist yet at {as_of}"),
                ),
                other => Rejection::new(RejectionCode::Unavailable, other.to_string()),
            }),
    }
}

fn history_error(e: closeloop_replay::Error, ticket_id: Uuid) -> Rejection {
    match e {
        closeloop_replay::Error::TicketNotFound(_) => {
            Rejection::not_found("/ticket_id", format!("no ticket {ticket_id}"))
        }
        other => Rejection::new(RejectionCode::Unavailable, other.to_string()),
    }
}

/// The confidentiality rule of the module doc.
fn may_see(actor: &Actor, history: &History, directory: &Directory) -> bool {
    let events = || history.events.iter().filter_map(|e| e.decode().ok());
    match actor.role {
        Role::Auditor | Role::System => true,
        Role::Service => history
            .events
            .first()
            .is_some_and(|e| e.metadata.actor == *actor),
        Role::Agent => {
            let me = actor.id.as_str();
            let assigned = events().any(|e| match e {
                Event::TicketAssigned(a) => a.agent_id == me,
                Event::TicketEscalated(x) => x.to_agent_id.as_deref() == Some(me),
                _ => false,
            });
            let covering = history
                .state
                .assignee
                .as_deref()
                .and_then(|a| directory.agents.get(a))
                .is_some_and(|a| !a.available && a.covered_by.as_deref() == Some(me));
            let manager = directory
                .customers
                .get(&history.state.customer_id)
                .is_some_and(|c| c.account_manager_id.as_deref() == Some(me));
            assigned || covering || manager
        }
        Role::Supervisor => {
            let Some(me) = directory.agents.get(&actor.id).filter(|a| a.team_lead) else {
                return false;
            };
            history.state.team.as_deref() == Some(me.team.as_str())
                || events().any(|e| match e {
                    Event::TicketAssigned(a) => a.team == me.team,
                    Event::TicketEscalated(x) => x.to_team.as_deref() == Some(me.team.as_str()),
                    _ => false,
                })
        }
    }
}
