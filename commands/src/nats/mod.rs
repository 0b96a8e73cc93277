//! The NATS front door (`closeloop serve`), mini-redis style: [`run`] takes its dependencies
//! (a [`Handler`], a connected NATS client, the queries and background jobs to serve, a
//! shutdown future) and returns when shutdown has completed.
//!
//! - `auth.rs`: who is acting: the actor from a verified token (`Authorization: Bearer
//!   <jwt>`), never from the body alone; `system` never from outside.
//! - `config.rs`: names (subject prefix, stream names, queue group) and limits.
//! - `intake.rs`: request/reply on `<prefix>.commands.<type>` in the queue group.
//! - `durable.rs`: JetStream intake: stream `CLOSELOOP_COMMANDS`, one pull consumer shared by
//!   every instance, ack after commit, replies on `<prefix>.replies.<command_id>`.
//! - `query.rs`: request/reply on `<prefix>.queries.<name>`, dispatched to registered queries.
//! - `gate.rs`: what the three intakes share: the bound on requests in flight, the wait for
//!   them at shutdown, and a subscription drained at shutdown.
//! - `job.rs`: a background job ([`Job`]); `error.rs`: what stops `serve` ([`ServeError`]).
//! - `lease.rs`: "runs once across instances" for jobs such as the event relay.
//!
//! Every task gets the one stop signal of the workspace, [`Shutdown`] (closeloop-log's, so
//! the read side's jobs take the same type).
//!
//! The event relay (`crate::relay`) runs here as a leased job. It depends on the leaf modules
//! (`config`, `error`, `job`), not on this one, so the two do not import each other.

pub mod auth;
pub(crate) mod config;
mod durable;
pub(crate) mod error;
mod gate;
mod intake;
pub(crate) mod job;
mod lease;
mod query;
pub mod streams;

use std::sync::Arc;

use async_nats::jetstream;
use tokio::task::JoinSet;

pub use auth::{Auth, AuthError, AuthErrorKind, Caller, KeysError, Verifier};
pub use closeloop_core::log::{Shutdown, Trigger};
pub use config::{checkpoints_subject, ServeConfig};
pub use durable::{backlog, DEAD_DELIVERIES_HEADER, DEAD_REASON_HEADER, DEAD_SUBJECT_HEADER};
pub use error::ServeError;
pub use intake::TIMEOUT_HEADER;
pub use job::{Job, JobFn};
pub use lease::{run_leased, Lease, LeaseConfig};
pub use query::{Queries, QueryFn, QueryRequest};

use crate::Handler;

/// Serves commands and queries over NATS and runs the relay and `jobs` until `shutdown`
/// completes; then stops taking work, finishes what is in flight, flushes and returns.
pub async fn run(
    config: ServeConfig,
    handler: Arc<Handler>,
    client: async_nats::Client,
    queries: Queries,
    jobs: Vec<Job>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let (trigger, signal) = Shutdown::new();
    let js = jetstream::new(client.clone());

    // Everything is set up before the first message is taken, so a misconfiguration fails
    // fast instead of half-serving.
    let requests = intake::Intake::subscribe(&config, &client).await?;
    let durable = if config.durable_intake {
        Some(durable::DurableIntake::setup(&config, &js).await?)
    } else {
        None
    };
    let queries_sub = query::QueryIntake::subscribe(&config, &client, queries).await?;
    let leases = if config.relay || jobs.iter().any(|j| j.run_once) {
        Some(lease::Lease::bucket(&js, &config.lease).await?)
    } else {
        None
    };
    tracing::info!(
        prefix = %config.subject_prefix,
        instance = %config.instance_id,
        "serving commands on {}",
        config.commands_wildcard()
    );

    let mut tasks: JoinSet<Result<(), ServeError>> = JoinSet::new();
    tasks.spawn(requests.run(
        config.clone(),
        handler.clone(),
        client.clone(),
        signal.clone(),
    ));
    if let Some(durable) = durable {
        tasks.spawn(durable.run(
            config.clone(),
            handler.clone(),
            client.clone(),
            signal.clone(),
        ));
    }
    tasks.spawn(queries_sub.run(config.clone(), client.clone(), signal.clone()));

    let mut all_jobs = jobs;
    if config.relay {
        all_jobs.push(crate::relay::job(
            crate::relay::RelayConfig::from_serve(&config),
            handler.log().clone(),
            js.clone(),
        ));
    }
    for job in all_jobs {
        let signal = signal.clone();
        let leases = leases.clone();
        let instance = config.instance_id.clone();
        tasks.spawn(async move {
            match (job.run_once, leases) {
                (true, Some(kv)) => run_leased(kv, instance, job, signal).await,
                _ => run_everywhere(job, signal).await,
            }
            Ok(())
        });
    }

    // Stop on the caller's signal, or when a serving task fails.
    let mut failure = None;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutdown requested: draining"),
        Some(done) = tasks.join_next() => {
            failure = Some(flatten(done));
            tracing::error!("a serving task stopped: shutting down");
        }
    }
    trigger.fire();
    let drained_by = tokio::time::Instant::now() + config.drain_timeout;
    loop {
        match tokio::time::timeout_at(drained_by, tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(done)) => {
                if let Err(e) = flatten(done) {
                    tracing::error!(error = %e, "task failed while draining");
                    failure.get_or_insert(Err(e));
                }
            }
            Err(_) => {
                // A stalled store must not hold shutdown: what is in flight is abandoned.
                // Nothing acknowledged is lost: a durable command not yet acked is
                // redelivered, a request/reply caller gets no answer and retries.
                tracing::warn!(
                    tasks = tasks.len(),
                    timeout_ms = config.drain_timeout.as_millis() as u64,
                    "drain timeout: abandoning work in flight"
                );
                tasks.abort_all();
                break;
            }
        }
    }
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flushing NATS at shutdown");
    }
    tracing::info!("drained; bye");
    match failure {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn flatten(done: Result<Result<(), ServeError>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match done {
        Ok(r) => r,
        Err(e) => Err(ServeError::Nats(format!("task panicked: {e}"))),
    }
}

/// Runs a job until shutdown, restarting it after a pause when it fails.
async fn run_everywhere(job: Job, mut signal: Shutdown) {
    while !signal.is_set() {
        match (job.run)(signal.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::error!(job = %job.name, error = %e, "job failed; restarting"),
        }
        tokio::select! {
            _ = signal.wait() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
