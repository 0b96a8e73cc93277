//! Durable intake over JetStream. Callers publish to `<prefix>.commands.durable.<type>` with
//! `Nats-Msg-Id` = `command_id`; once JetStream has acknowledged the publish, the command
//! is stored in `CLOSELOOP_COMMANDS` whether or not any `serve` runs. Every instance pulls
//! from one durable consumer, so each command goes to one instance at a time. A command is
//! acked only after its append committed or it was rejected; its reply is published on
//! `<prefix>.replies.<command_id>` before the ack. A crash before the ack means redelivery
//! after `ack_wait`, and the log's command-id idempotency turns the retry into `duplicate`.
//!
//! Authentication: the token travels in the stored message's headers and is checked as of
//! the time JetStream stored the message (its stream timestamp), so a command stored while no
//! `serve` ran is not refused for having waited.
//!
//! Order: within an instance, commands of one stream are handled in delivery order, and a
//! directory command (agents, customers, calendars, policies) waits for everything before
//! it and holds everything after it, so "register the agent, then assign" works when
//! published back to back. Across instances JetStream gives no order: callers that depend
//! on an earlier command's effect wait for its reply (or send `expected_version`).

use std::sync::Arc;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use closeloop_core::domain::{ErrorKind, Rejection};
use futures::StreamExt;
use tokio::sync::RwLock;

use super::config::ServeConfig;
use super::error::ServeError;
use super::gate::Gate;
use super::intake::{admit, last_token, log_reply};
use crate::nats::streams::{ensure_consumer, ensure_stream};
use crate::stripes::Stripes;
use crate::{metrics, Handler, Reply};
use closeloop_core::log::Shutdown;

/// Lock stripes for per-stream order; a stream always maps to the same stripe.
const ORDER_STRIPES: usize = 64;

/// The commands stream and its consumer, created when missing.
pub(crate) struct DurableIntake {
    consumer: consumer::Consumer<consumer::pull::Config>,
}

/// Room for the headers (a bearer token, `Nats-Msg-Id`) beside a command's body.
const HEADER_BYTES_MAX: usize = 16 * 1024;

/// Creates (or brings up to date) the commands stream: a work queue (a command leaves it once handled)
/// with its duplicate window, a bound on each message and on the whole (beyond it JetStream
/// refuses the publish, so the publisher knows; nothing stored is dropped).
pub(crate) async fn commands_stream(
    config: &ServeConfig,
    js: &jetstream::Context,
) -> Result<stream::Stream, ServeError> {
    ensure_stream(
        js,
        stream::Config {
            name: config.commands_stream.clone(),
            subjects: vec![config.durable_wildcard()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: config.duplicate_window,
            num_replicas: config.stream_replicas.max(1),
            max_bytes: config.commands_stream_bytes_max,
            max_message_size: i32::try_from(config.command_bytes_max + HEADER_BYTES_MAX)
                .unwrap_or(i32::MAX),
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        },
    )
    .await
}

/// Creates (or brings up to date) the dead-letter stream: durable commands that kept failing, kept for
/// an operator to inspect and republish, the oldest dropped beyond its size or age.
pub(crate) async fn dead_letter_stream(
    config: &ServeConfig,
    js: &jetstream::Context,
) -> Result<stream::Stream, ServeError> {
    ensure_stream(
        js,
        stream::Config {
            name: config.dead_letter_stream.clone(),
            subjects: vec![config.dead_letter_subject("*")],
            storage: stream::StorageType::File,
            num_replicas: config.stream_replicas.max(1),
            max_bytes: config.dead_letter_bytes_max,
            max_age: config.dead_letter_age_max,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        },
    )
    .await
}

/// The shared consumer's backlog: (commands stored and not yet delivered, delivered and not
/// yet acknowledged). `serve --metrics` reads it at every scrape.
pub async fn backlog(
    config: &ServeConfig,
    js: &jetstream::Context,
) -> Result<(u64, u64), ServeError> {
    let stream = js
        .get_stream(&config.commands_stream)
        .await
        .map_err(|e| ServeError::nats(&format!("stream {}", config.commands_stream), e))?;
    let info = stream
        .consumer_info(&config.consumer_name)
        .await
        .map_err(|e| ServeError::nats(&format!("consumer {}", config.consumer_name), e))?;
    Ok((info.num_pending, info.num_ack_pending as u64))
}

impl DurableIntake {
    pub(crate) async fn setup(
        config: &ServeConfig,
        js: &jetstream::Context,
    ) -> Result<DurableIntake, ServeError> {
        let stream = commands_stream(config, js).await?;
        dead_letter_stream(config, js).await?;
        let consumer = ensure_consumer(
            &stream,
            consumer::pull::Config {
                durable_name: Some(config.consumer_name.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // A backstop: the intake itself dead-letters a command after
                // `durable_attempts_max` deliveries; deliveries lost to crashes count too.
                max_deliver: i64::from(config.durable_attempts_max.max(1)) * 2,
                max_ack_pending: config.in_flight_max as i64,
                ..Default::default()
            },
        )
        .await?;
        Ok(DurableIntake { consumer })
    }

    pub(crate) async fn run(
        self,
        config: Arc<ServeConfig>,
        handler: Arc<Handler>,
        client: async_nats::Client,
        mut shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        let batch = config.in_flight_max.clamp(1, 256);
        let mut messages = self
            .consumer
            .stream()
            .max_messages_per_batch(batch)
            .messages()
            .await
            .map_err(|e| ServeError::nats("pulling durable commands", e))?;
        let gate = Gate::new(config.in_flight_max);
        let stripes = Stripes::new(ORDER_STRIPES);
        let directory_barrier = Arc::new(RwLock::new(()));
        loop {
            let message = tokio::select! {
                _ = shutdown.wait() => break,
                message = messages.next() => message,
            };
            let message = match message {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Missed heartbeats or a reconnect: the stream recovers by itself.
                    tracing::warn!(error = %e, "pulling durable commands");
                    continue;
                }
            };
            let permit = gate.enter().await;
            let in_flight = metrics::InFlight::new("durable");
            if message.info().is_ok_and(|info| info.delivered > 1) {
                metrics::redelivered();
            }
            // The credential and the business time are judged as of when JetStream stored
            // the command: a backlog must not make a timely command late.
            let received = message
                .info()
                .ok()
                .and_then(|info| {
                    jiff::Timestamp::from_nanosecond(info.published.unix_timestamp_nanos()).ok()
                })
                .unwrap_or_else(jiff::Timestamp::now);
            let stored_at = received.as_second();
            let checked = admit(
                &config,
                last_token(message.subject.as_str()),
                message.headers.as_ref(),
                &message.payload,
                stored_at,
            )
            .and_then(|envelope| same_id(&message, envelope));
            let envelope = match checked {
                Ok(envelope) => envelope,
                Err(rejected) => {
                    // Refused at the door: the handler, which counts the others, never saw it.
                    metrics::answered(
                        metrics::type_label(last_token(message.subject.as_str())),
                        &rejected,
                    );
                    // Rejections of bad input need no order: answer at once.
                    let (config, client) = (config.clone(), client.clone());
                    tokio::spawn(async move {
                        finish(&config, &client, message, rejected).await;
                        drop((in_flight, permit));
                    });
                    continue;
                }
            };
            let stream_name = envelope.command.stream();
            if envelope.command.ticket_id().is_none() {
                // A directory command: after everything before it, before anything after.
                let _all = directory_barrier.clone().write_owned().await;
                let reply = handler.handle_at(envelope, received).await;
                finish(&config, &client, message, reply).await;
                drop((in_flight, permit));
                continue;
            }
            let barrier = directory_barrier.clone().read_owned().await;
            let stripe = stripes.of(&stream_name).clone().lock_owned().await;
            let (config, handler, client) = (config.clone(), handler.clone(), client.clone());
            tokio::spawn(async move {
                let reply = handler.handle_at(envelope, received).await;
                finish(&config, &client, message, reply).await;
                drop((stripe, barrier, in_flight, permit));
            });
        }
        gate.all_done().await;
        Ok(())
    }
}

/// `Nats-Msg-Id`, when given, must be the command id: it is what de-duplicates the publish.
fn same_id(
    message: &jetstream::Message,
    envelope: closeloop_core::domain::CommandEnvelope,
) -> Result<closeloop_core::domain::CommandEnvelope, Reply> {
    let header = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    match header {
        Some(id) if id != envelope.command_id.to_string() => Err(Reply::rejected(
            Some(envelope.command_id),
            Rejection::validation(
                "/command_id",
                format!(
                    "the Nats-Msg-Id header `{id}` differs from command_id; they must be equal"
                ),
            ),
        )),
        _ => Ok(envelope),
    }
}

/// Publishes the reply and acks. A retryable failure (store unavailable) is left for a
/// later redelivery, the pauses doubling, until the command has been delivered
/// `durable_attempts_max` times; then, or at once for a bug (`internal`: a retry would fail
/// the same way), the command is moved to the dead-letter stream and answered `rejected`,
/// so one bad message never holds the consumer.
async fn finish(
    config: &ServeConfig,
    client: &async_nats::Client,
    message: jetstream::Message,
    reply: Reply,
) {
    log_reply(&reply, message.subject.as_str());
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let reply = match reply.rejection().map(|r| r.code.kind()) {
        Some(ErrorKind::Retryable) if delivered < i64::from(config.durable_attempts_max) => {
            let delay = config.retry_delay(delivered);
            tracing::warn!(
                delivered,
                delay_ms = delay.as_millis() as u64,
                "store unavailable: durable command left for redelivery"
            );
            nak(&message, delay).await;
            metrics::retried();
            return;
        }
        Some(ErrorKind::Retryable | ErrorKind::Bug) => {
            let reason = reply
                .rejection()
                .map(|r| r.message.clone())
                .unwrap_or_default();
            if let Err(e) = dead_letter(config, client, &message, delivered, &reason).await {
                tracing::warn!(error = %e, "moving a durable command to the dead-letter stream");
                nak(&message, config.retry_delay(delivered)).await;
                return;
            }
            metrics::dead_lettered();
            tracing::warn!(
                delivered,
                stream = %config.dead_letter_stream,
                reason = %reason,
                "durable command moved to the dead-letter stream"
            );
            dead_lettered(reply, &config.dead_letter_stream, delivered)
        }
        _ => reply,
    };
    let command_id = match &reply {
        Reply::Accepted { command_id, .. } | Reply::Duplicate { command_id, .. } => {
            Some(command_id.to_string())
        }
        Reply::Rejected { command_id, .. } => command_id.map(|id| id.to_string()).or_else(|| {
            // Unreadable body: answer on the id the publisher gave JetStream, if any.
            message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .filter(|id| !id.is_empty() && !id.contains(['.', '*', '>', ' ']))
        }),
    };
    if let Some(id) = command_id {
        if let Err(e) = client
            .publish(config.reply_subject(&id), reply.to_json().into())
            .await
        {
            tracing::warn!(error = %e, "publishing a durable reply");
        }
    }
    // The reply goes out on the same connection before the ack. An ack lost in a crash only
    // means a redelivery, which the log answers with `duplicate`.
    if let Err(e) = message.ack().await {
        tracing::warn!(error = %e, "ack of a durable command");
    }
}

async fn nak(message: &jetstream::Message, delay: std::time::Duration) {
    if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::warn!(error = %e, "nak of a durable command");
    }
}

/// Header naming why a command was dead-lettered, and after how many deliveries.
pub const DEAD_REASON_HEADER: &str = "Closeloop-Dead-Reason";
pub const DEAD_DELIVERIES_HEADER: &str = "Closeloop-Deliveries";
/// The subject the command was published on.
pub const DEAD_SUBJECT_HEADER: &str = "Closeloop-Subject";

/// Copies `message` to the dead-letter stream (its body and headers, without the bearer
/// token: the credential is not kept beyond the command's own stream) and waits for
/// JetStream to store it. `Nats-Msg-Id` is kept, so a copy made twice (a crash before the
/// ack) is stored once.
async fn dead_letter(
    config: &ServeConfig,
    client: &async_nats::Client,
    message: &jetstream::Message,
    delivered: i64,
    reason: &str,
) -> Result<(), ServeError> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(original) = message.headers.as_ref() {
        for (name, values) in original.iter() {
            if AsRef::<str>::as_ref(name).eq_ignore_ascii_case("authorization") {
                continue;
            }
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    // Header values are one line: the reason is cut to a printable line.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    headers.insert(DEAD_REASON_HEADER, reason.as_str());
    headers.insert(DEAD_DELIVERIES_HEADER, delivered.to_string().as_str());
    headers.insert(DEAD_SUBJECT_HEADER, message.subject.as_str());
    let subject = config.dead_letter_subject(last_token(message.subject.as_str()));
    let js = jetstream::new(client.clone());
    js.publish_with_headers(subject, headers, message.payload.clone())
        .await
        .map_err(|e| ServeError::nats("dead-letter publish", e))?
        .await
        .map_err(|e| ServeError::nats("dead-letter publish ack", e))?;
    Ok(())
}

/// The reply of a dead-lettered command: its rejection, saying where the command went.
fn dead_lettered(reply: Reply, stream: &str, delivered: i64) -> Reply {
    match reply {
        Reply::Rejected {
            command_id,
            mut error,
        } => {
            error.message = format!(
                "{} (moved to the dead-letter stream {stream} after {delivered} deliveries; nothing was appended)",
                error.message
            );
            Reply::Rejected { command_id, error }
        }
        other => other,
    }
}
