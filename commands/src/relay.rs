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
//!
//! Identity and divergence (docs: README, Audit). Every message also carries
//! `Closeloop-Log-Id`, the log's identity ([`EventLog::log_id`]). Before it resumes, the
//! relay checks that the stream's last message belongs to this log's timeline:
//! - a last message carrying another log's id is refused, naming both ids: the stream was
//!   filled from another log (before identities, the relay pointed at a new store silently
//!   skipped every event up to the old stream's last position);
//! - a last message whose position is beyond the log's head, or whose event id differs from
//!   the log's event at that position, means the stream holds events this log does not (the
//!   log was restored from an older backup). The relay then finds the first position where
//!   the stream and the log differ, by comparing event ids (a binary search over the
//!   stream: the two agree on a prefix and differ after it, since event ids are unique), and
//!   stops naming it, instead of splicing the restored log's new events onto the lost ones.
//!
//! Messages published before identities existed carry no `Closeloop-Log-Id`; they are
//! judged by event ids alone, which also catches another log's stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use closeloop_core::log::{
    EventLog, Filter, Position, Shutdown, StoredEvent, Subscription, Waited,
};
use uuid::Uuid;

use crate::nats::config::ServeConfig;
use crate::nats::error::ServeError;
use crate::nats::job::Job;

/// Header holding the event's log position.
pub const POSITION_HEADER: &str = "Closeloop-Position";
/// Header holding the identity of the log the event was published from.
pub const LOG_ID_HEADER: &str = "Closeloop-Log-Id";

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

/// Creates (or brings up to date) the events stream.
pub async fn events_stream(
    config: &RelayConfig,
    js: &jetstream::Context,
) -> Result<stream::Stream, ServeError> {
    crate::nats::streams::ensure_stream(
        js,
        stream::Config {
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
        },
    )
    .await
}

/// What the relay reads of one message of the events stream.
struct Published {
    position: Position,
    event_id: Option<Uuid>,
    log_id: Option<String>,
}

async fn published(stream: &stream::Stream, sequence: u64) -> Result<Published, ServeError> {
    let message = stream.get_raw_message(sequence).await.map_err(|e| {
        ServeError::nats(
            &format!("reading message {sequence} of the events stream"),
            e,
        )
    })?;
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    let position = header(POSITION_HEADER)
        .and_then(|v| v.parse::<Position>().ok())
        .ok_or_else(|| {
            ServeError::Nats(format!(
                "message {sequence} of the events stream has no {POSITION_HEADER} header"
            ))
        })?;
    Ok(Published {
        position,
        event_id: header("Nats-Msg-Id").and_then(|v| v.parse().ok()),
        log_id: header(LOG_ID_HEADER),
    })
}

/// The log position of the events stream's last message (`None` while it is empty): how far
/// the relay has published, whichever instance holds its lease. `serve --metrics` reads it
/// at every scrape.
pub async fn published_position(
    js: &jetstream::Context,
    events_stream: &str,
) -> Result<Option<Position>, ServeError> {
    let stream = js
        .get_stream(events_stream)
        .await
        .map_err(|e| ServeError::nats(&format!("stream {events_stream}"), e))?;
    let state = &stream.cached_info().state;
    if state.messages == 0 {
        return Ok(None);
    }
    Ok(Some(
        published(&stream, state.last_sequence).await?.position,
    ))
}

/// The id of the log's event at `position`, if the log has one there.
async fn event_id_at(log: &dyn EventLog, position: Position) -> Result<Option<Uuid>, ServeError> {
    if position == 0 {
        return Ok(None);
    }
    let found = log
        .read_all(position - 1, 1, Filter::All)
        .await
        .map_err(|e| ServeError::Nats(format!("reading the log at position {position}: {e}")))?;
    Ok(found
        .first()
        .filter(|e| e.position == position)
        .map(|e| e.event_id))
}

/// Whether a published message is the log's own event at its position.
async fn agrees(log: &dyn EventLog, message: &Published) -> Result<bool, ServeError> {
    Ok(message.event_id.is_some() && event_id_at(log, message.position).await? == message.event_id)
}

/// Where the stream stands, checked against the log: (its last sequence, the log position
/// of its last message). Refuses a stream filled from another log, and one that holds
/// events this log does not have (module doc, "Identity and divergence").
async fn checkpoint(
    config: &RelayConfig,
    stream: &mut stream::Stream,
    log: &dyn EventLog,
    log_id: Uuid,
) -> Result<(u64, Position), ServeError> {
    let state = stream
        .info()
        .await
        .map_err(|e| ServeError::nats("events stream info", e))?
        .state
        .clone();
    let last_sequence = state.last_sequence;
    if last_sequence == 0 || state.messages == 0 {
        return Ok((last_sequence, 0));
    }
    let last = published(stream, last_sequence).await?;
    if let Some(theirs) = &last.log_id {
        if *theirs != log_id.to_string() {
            return Err(ServeError::Nats(format!(
                "the events stream {} was filled from log {theirs}, and this is log {log_id}: \
                 refusing to continue another log's stream (give this log a stream of its own, \
                 --events-stream, or point serve at log {theirs})",
                config.events_stream
            )));
        }
    }
    if agrees(log, &last).await? {
        return Ok((last_sequence, last.position));
    }
    // The stream holds events the log does not: find the last message that agrees. The
    // two timelines share a prefix and differ after it, so agreement is monotone in the
    // stream's sequence and a binary search finds the boundary.
    let head = log
        .head()
        .await
        .map_err(|e| ServeError::Nats(format!("reading the log's head: {e}")))?;
    let (mut agreeing, mut differing) = (None, last_sequence);
    let mut low = state.first_sequence;
    let mut high = last_sequence; // known to differ
    while low < high {
        let middle = low + (high - low) / 2;
        let message = published(stream, middle).await?;
        if agrees(log, &message).await? {
            agreeing = Some(message.position);
            low = middle + 1;
        } else {
            differing = middle;
            high = middle;
        }
    }
    let first = published(stream, differing).await?;
    let logs = match event_id_at(log, first.position).await? {
        Some(id) => format!("event {id}"),
        None => format!("no event (its head is {head})"),
    };
    let streams = first.event_id.map_or_else(
        || "a message without an event id".to_owned(),
        |id| format!("event {id}"),
    );
    let since = match agreeing {
        Some(p) => format!("they agree up to position {p}"),
        None => format!(
            "no message still in the stream agrees (it begins at sequence {})",
            state.first_sequence
        ),
    };
    Err(ServeError::Nats(format!(
        "the events stream {} holds events this log does not have (was the log restored from \
         an older backup?): they diverge at position {}, where the stream has {streams} and \
         the log has {logs}; {since}; the stream ends at position {}, the log at {head}. \
         The relay stops rather than splice two timelines: keep the stream as the record of \
         the lost events and give this log a new one (--events-stream)",
        config.events_stream, first.position, last.position
    )))
}

/// Publishes until `shutdown`: resumes after the stream's last position, then follows the log.
pub async fn run(
    config: &RelayConfig,
    log: &dyn EventLog,
    js: &jetstream::Context,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    let mut stream = events_stream(config, js).await?;
    let log_id = log
        .log_id()
        .await
        .map_err(|e| ServeError::Nats(format!("reading the log's identity: {e}")))?;
    let (mut sequence, position) = checkpoint(config, &mut stream, log, log_id).await?;
    tracing::info!(position, sequence, %log_id, "relay resumes");
    let mut subscription = Subscription::after(position, Filter::All, config.batch_events_max);
    while !shutdown.is_set() {
        let published = subscription.position();
        let batch = subscription
            .next_batch(log)
            .await
            .map_err(|e| ServeError::Nats(format!("reading the log: {e}")))?;
        if batch.events.is_empty() {
            let waited = subscription
                .wait(log, config.idle_wait, &mut shutdown)
                .await
                .map_err(|e| ServeError::Nats(format!("waiting on the log: {e}")))?;
            if waited == Waited::Shutdown {
                break;
            }
            continue;
        }
        match publish_batch(config, js, &batch.events, sequence, log_id).await {
            Ok(last_sequence) => sequence = last_sequence,
            Err(e) => {
                subscription.seek(published);
                tracing::warn!(error = %e, "relay publish failed; resuming from the stream");
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let (last_sequence, position) =
                    checkpoint(config, &mut stream, log, log_id).await?;
                sequence = last_sequence;
                subscription.seek(position);
            }
        }
    }
    tracing::info!(position = subscription.position(), "relay stopped");
    Ok(())
}

/// Publishes a batch pipelined, each publish expecting the one before it; the stream's new
/// last sequence.
async fn publish_batch(
    config: &RelayConfig,
    js: &jetstream::Context,
    batch: &[StoredEvent],
    mut sequence: u64,
    log_id: Uuid,
) -> Result<u64, String> {
    let log_id = log_id.to_string();
    let mut acks = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
        headers.insert(POSITION_HEADER, event.position.to_string().as_str());
        headers.insert(LOG_ID_HEADER, log_id.as_str());
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
