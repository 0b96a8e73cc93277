//! `serve --metrics ADDR`: the Prometheus scrape endpoint, `GET http://ADDR/metrics`.
//!
//! The counters and histograms are recorded where their facts are known
//! (`closeloop_commands::metrics` names them all); this module installs the recorder and
//! answers scrapes. The gauges that are facts of shared state rather than of this process,
//! the log's head, the tables' checkpoint, the events stream's last position and the durable
//! consumer's backlog, are read when a scrape arrives, so they are exact as of the scrape on
//! every instance, whichever instance holds the projector's or the relay's lease, and cost
//! nothing while nobody scrapes.
//!
//! The endpoint carries no authentication and serves only `GET /metrics`; it is meant for a
//! private interface (README, Metrics). Its cost is bounded: at most [`SCRAPES_MAX`] scrapes
//! are answered at once (beyond that, 503 at once), and each read of shared state gives up
//! after [`SAMPLE_TIMEOUT`], leaving that gauge as it was and counting the failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use closeloop_commands::metrics as names;
use closeloop_commands::nats::ServeConfig;
use closeloop_core::log::EventLog;
use closeloop_projections::tables::TableStore;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Scrapes answered at once; more get 503 (Prometheus scrapes one at a time per target).
pub const SCRAPES_MAX: usize = 4;
/// Longest wait for one read of shared state during a scrape.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the recorder folds recorded histogram samples into their buckets, so memory
/// stays bounded between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bounds of the command-duration buckets, in seconds: a cached ticket's command on
/// SQLite takes well under a millisecond, a contended PostgreSQL append tens of
/// milliseconds, a command's default deadline is 30 s.
const DURATION_BUCKETS_S: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// What the gauges of shared state are read from.
pub struct Sources {
    pub log: Arc<dyn EventLog>,
    pub tables: Arc<dyn TableStore>,
    pub js: jetstream::Context,
    /// The stream and consumer names; the backlog is read only when durable intake is on.
    pub config: ServeConfig,
}

/// The running endpoint; [`Endpoint::stop`] ends it.
pub struct Endpoint {
    tasks: Vec<JoinHandle<()>>,
}

impl Endpoint {
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

struct Scrape {
    handle: PrometheusHandle,
    sources: Sources,
    scrapes: Semaphore,
}

/// Installs the process's metrics recorder and serves it on `addr` (port 0: any free port;
/// the bound address is logged, field `metrics_addr`). Fails if `addr` cannot be bound, so a wrong
/// address stops `serve` at start.
pub async fn start(addr: SocketAddr, sources: Sources) -> anyhow::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    let addr = listener.local_addr()?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::COMMAND_DURATION.to_owned()),
            DURATION_BUCKETS_S,
        )?
        .install_recorder()
        .context("installing the metrics recorder")?;
    names::describe();
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let scrape = Arc::new(Scrape {
        handle,
        sources,
        scrapes: Semaphore::new(SCRAPES_MAX),
    });
    let app = Router::new()
        .route("/metrics", get(answer))
        .with_state(scrape);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    tracing::info!(
        metrics_addr = %addr,
        "metrics at http://{addr}/metrics (no authentication: keep it on a private interface)"
    );
    Ok(Endpoint {
        tasks: vec![upkeep, server],
    })
}

async fn answer(State(scrape): State<Arc<Scrape>>) -> Response {
    let Ok(_turn) = scrape.scrapes.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once\n",
        )
            .into_response();
    };
    sample(&scrape.sources).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.handle.render(),
    )
        .into_response()
}

/// `work`'s value, or `None` (logged and counted under `source`) if it failed or took longer
/// than [`SAMPLE_TIMEOUT`].
async fn read<T, E: std::fmt::Display>(
    source: &'static str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    let failure = match tokio::time::timeout(SAMPLE_TIMEOUT, work).await {
        Ok(Ok(value)) => return Some(value),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} ms", SAMPLE_TIMEOUT.as_millis()),
    };
    tracing::debug!(source, error = %failure, "metrics: reading shared state");
    ::metrics::counter!(names::SAMPLE_FAILURES, "source" => source).increment(1);
    None
}

/// Reads the gauges of shared state. Positions are read before the head: the log is
/// gap-free and only grows, so a position read earlier is never beyond a head read later,
/// and a lag is never negative.
async fn sample(sources: &Sources) {
    let projector = read("tables", sources.tables.checkpoint())
        .await
        .map(|saved| saved.position);
    let relay = read(
        "relay",
        closeloop_commands::relay::published_position(&sources.js, &sources.config.events_stream),
    )
    .await
    .map(|position| position.unwrap_or(0));
    if sources.config.durable_intake {
        if let Some((pending, ack_pending)) = read(
            "durable",
            closeloop_commands::nats::backlog(&sources.config, &sources.js),
        )
        .await
        {
            ::metrics::gauge!(names::DURABLE_BACKLOG).set(pending as f64);
            ::metrics::gauge!(names::DURABLE_ACK_PENDING).set(ack_pending as f64);
        }
    }
    let Some(head) = read("log", sources.log.head()).await else {
        return;
    };
    ::metrics::gauge!(names::LOG_HEAD).set(head as f64);
    if let Some(position) = projector {
        let projector = closeloop_projections::tables::NAME;
        ::metrics::gauge!(names::PROJECTOR_POSITION, "projector" => projector).set(position as f64);
        ::metrics::gauge!(names::PROJECTOR_LAG, "projector" => projector)
            .set(head.saturating_sub(position) as f64);
    }
    if let Some(position) = relay {
        ::metrics::gauge!(names::RELAY_POSITION).set(position as f64);
        ::metrics::gauge!(names::RELAY_LAG).set(head.saturating_sub(position) as f64);
    }
}
