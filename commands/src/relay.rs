//! The event relay: publishes the log, in position order, to the JetStream stream
//! `CLOSELOOP_EVENTS` on `<prefix>.events.<stream_category>.<event_type>`, one message per
//! stored event (its JSON as `export` prints it), with `Nats-Msg-Id` = event id.
//!
//! Checkpoint: the stream itself. Each message carries `Closeloop-Position`; on start (and
//! after any publish error) the relay reads the stream's last message and resumes after its
//! position. The checkpoint and the published data are then one write and cannot disagree
//! (a separate KV checkpoint could lag the stream or run ahead of it after a crash). Every
//! publish also carries `Nats-Expected-Last-Sequence`, so when a publish in a pipelined
//! batch fails, every later one fails too: the stream never has a gap below its last
//! message, which is what makes "last message = checkpoint" sound. Re-publication after a
//! crash or during a lease hand-over is removed by `Nats-Msg-Id` within the duplicate window.
//!
//! It runs under a lease (one instance at a time); delivery to subscribers is at least once,
//! de-duplicated by event id.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use closeloop_core::log::{EventLog, Filter, Position, StoredEvent};

use crate::nats::config::ServeConfig;
use crate::nats::error::ServeError;
use crate::nats::job::Job;
use crate::nats::shutdown::Shutdown;

/// Header holding the event's log position.
pub const POSITION_HEADER: &str = "Closeloop-Position";

/// Relay names and limits.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub events_stream: String,
    pub subject_prefix: String,
    pub duplicate_window: Duration,
    pub stream_replicas: usize,
    /// Most bytes the events stream holds; the oldest events are dropped beyond it (never
    /// the newest, whose position is where the relay resumes).
    pub stream_bytes_max: i64,
    /// Events read and published (pipelined) per round.
    pub batch_events_max: usize,
    /// Longest wait for new events before looking again.
    pub idle_wait: Duration,
}

impl RelayConfig {
    pub fn from_serve(config: &ServeConfig) -> RelayConfig {
        RelayConfig {
            events_stream: config.events_stream.clone(),
            subject_prefix: config.subject_prefix.clone(),
            duplicate_window: config.duplicate_window,
            stream_replicas: config.stream_replicas.max(1),
            stream_bytes_max: config.events_stream_bytes_max,
            batch_events_max: config.relay_batch_events_max.clamp(1, 4096),
            idle_wait: Duration::from_millis(500),
        }
    }

    fn subject(&self, event: &StoredEvent) -> String {
        format!(
            "{}.events.{}.{}",
            self.subject_prefix,
            event.category(),
            event.event_type
        )
    }
}

/// The relay as a "run once" job for `serve`.
pub fn job(config: RelayConfig, log: Arc<dyn EventLog>, js: jetstream::Context) -> Job {
    let config = Arc::new(config);
    Job::once(
        "relay",
        Arc::new(move |shutdown| {
            let (config, log, js) = (config.clone(), log.clone(), js.clone());
            Box::pin(async move {
                run(&config, log.as_ref(), &js, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        }),
    )
}

/// Creates (or finds) the events stream.
pub async fn events_stream(
    config: &RelayConfig,
    js: &jetstream::Context,
) -> Result<stream::Stream, ServeError> {
    js.get_or_create_stream(stream::Config {
        name: config.events_stream.clone(),
        subjects: vec![format!("{}.events.>", config.subject_prefix)],
        storage: stream::StorageType::File,
        duplicate_window: config.duplicate_window,
        num_replicas: config.stream_replicas,
        // No age limit: an idle log must not age its last event out of the stream, since
        // the relay resumes after it. Only the oldest go when the stream is full.
        max_bytes: config.stream_bytes_max,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    })
    .await
    .map_err(|e| ServeError::nats(&format!("stream {}", config.events_stream), e))
}

/// Where the stream stands: (its last sequence, the log position of its last message).
async fn checkpoint(stream: &mut stream::Stream) -> Result<(u64, Position), ServeError> {
    let last_sequence = stream
        .info()
        .await
        .map_err(|e| ServeError::nats("events stream info", e))?
        .state
        .last_sequence;
    if last_sequence == 0 {
        return Ok((0, 0));
    }
    let last = stream
        .get_raw_message(last_sequence)
        .await
        .map_err(|e| ServeError::nats("reading the events stream's last message", e))?;
    let position = last
        .headers
        .get(POSITION_HEADER)
        .and_then(|v| v.as_str().parse::<Position>().ok())
        .ok_or_else(|| {
            ServeError::Nats(format!(
                "the last message of the events stream (sequence {last_sequence}) has no {POSITION_HEADER} header"
            ))
        })?;
    Ok((last_sequence, position))
}

/// Publishes until `shutdown`: resumes after the stream's last position, then follows the log.
pub async fn run(
    config: &RelayConfig,
    log: &dyn EventLog,
    js: &jetstream::Context,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    let mut stream = events_stream(config, js).await?;
    let (mut sequence, mut position) = checkpoint(&mut stream).await?;
    tracing::info!(position, sequence, "relay resumes");
    while !shutdown.is_set() {
        let batch = log
            .read_all(position, config.batch_events_max, Filter::All)
            .await
            .map_err(|e| ServeError::Nats(format!("reading the log: {e}")))?;
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.wait() => break,
                waited = log.wait_beyond(position, config.idle_wait) => {
                    waited.map_err(|e| ServeError::Nats(format!("waiting on the log: {e}")))?;
                }
            }
            continue;
        }
        match publish_batch(config, js, &batch, sequence).await {
            Ok(last_sequence) => {
                sequence = last_sequence;
                position = batch.last().expect("non-empty").position;
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay publish failed; resuming from the stream");
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                (sequence, position) = checkpoint(&mut stream).await?;
            }
        }
    }
    tracing::info!(position, "relay stopped");
    Ok(())
}

/// Publishes a batch pipelined, each publish expecting the one before it; the stream's new
/// last sequence.
async fn publish_batch(
    config: &RelayConfig,
    js: &jetstream::Context,
    batch: &[StoredEvent],
    mut sequence: u64,
) -> Result<u64, String> {
    let mut acks = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
        headers.insert(POSITION_HEADER, event.position.to_string().as_str());
        headers.insert(
            "Nats-Expected-Last-Sequence",
            (sequence + i as u64).to_string().as_str(),
        );
        let payload = serde_json::to_vec(event).expect("stored events serialize");
        let ack = js
            .publish_with_headers(config.subject(event), headers, payload.into())
            .await
            .map_err(|e| format!("publishing position {}: {e}", event.position))?;
        acks.push((event.position, ack));
    }
    for (position, ack) in acks {
        let ack = ack
            .await
            .map_err(|e| format!("ack of position {position}: {e}"))?;
        if ack.duplicate {
            // Another relay published it first (lease hand-over): resume from the stream.
            return Err(format!("position {position} was already in the stream"));
        }
        sequence = ack.sequence;
    }
    Ok(sequence)
}
