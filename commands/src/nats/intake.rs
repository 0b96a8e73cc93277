//! Request/reply intake: `<prefix>.commands.<type>` in the queue group, so every instance
//! shares the requests. Each request is authenticated (`auth.rs`: the token in its
//! `Authorization` header, checked as of its receipt), checked (size, UTF-8, JSON, schema,
//! subject token = body `type`, body `actor` = the token's), handled, and answered on its reply subject; a request without one is
//! answered on `<prefix>.replies.<command_id>`. Bad input is a `rejected` reply, never a
//! crash and never an append.

use std::sync::Arc;

use closeloop_core::domain::{parse_command, CommandEnvelope, Rejection};

use super::auth::now_seconds;
use super::config::ServeConfig;
use super::error::ServeError;
use super::gate::{Drained, Gate};
use crate::{metrics, Handler, Reply};
use closeloop_core::log::Shutdown;

/// Checks one command as it arrived on a subject whose last token is `subject_type`.
pub(crate) fn check(
    config: &ServeConfig,
    subject_type: &str,
    payload: &[u8],
) -> Result<CommandEnvelope, Reply> {
    let bytes_max = config.bytes_max();
    if payload.len() > bytes_max {
        return Err(Reply::rejected(
            None,
            Rejection::validation(
                "",
                format!(
                    "command is {} bytes; at most {bytes_max} are accepted",
                    payload.len()
                ),
            ),
        ));
    }
    let envelope =
        parse_command(payload).map_err(|f| Reply::rejected(f.command_id, f.rejection))?;
    let body_type = envelope.command.command_type();
    if body_type != subject_type {
        return Err(Reply::rejected(
            Some(envelope.command_id),
            Rejection::validation(
                "/type",
                format!(
                    "the subject names command type `{subject_type}` but the body's type is `{body_type}`; they must be equal"
                ),
            ),
        ));
    }
    Ok(envelope)
}

/// Authenticates a command (its credential as of `now`, Unix seconds), then checks it and
/// binds its actor to the credential's: a missing or invalid credential is `unauthorized`
/// (with no `command_id`: nothing of the body is read), a body actor other than the token's
/// `forbidden` at `/actor`.
pub(crate) fn admit(
    config: &ServeConfig,
    subject_type: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    now: i64,
) -> Result<CommandEnvelope, Reply> {
    let caller = config
        .auth
        .authenticate(headers, now)
        .map_err(|e| Reply::rejected(None, e.rejection()))?;
    let envelope = check(config, subject_type, payload)?;
    caller
        .bind(Some(&envelope.actor))
        .map_err(|r| Reply::rejected(Some(envelope.command_id), r))?;
    Ok(envelope)
}

/// The last token of a subject.
pub(crate) fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

/// Request/reply intake, subscribed and ready to run.
pub(crate) struct Intake {
    subscriber: Drained,
}

impl Intake {
    pub(crate) async fn subscribe(
        config: &ServeConfig,
        client: &async_nats::Client,
    ) -> Result<Intake, ServeError> {
        let subscriber = client
            .queue_subscribe(config.commands_wildcard(), config.queue_group.clone())
            .await
            .map_err(|e| ServeError::nats("subscribing to commands", e))?;
        Ok(Intake {
            subscriber: Drained::new(subscriber, "command"),
        })
    }

    /// Takes requests until shutdown, at most `in_flight_max` at once; then drains the
    /// subscription (requests already delivered are still answered) and waits for every
    /// request in flight.
    pub(crate) async fn run(
        mut self,
        config: Arc<ServeConfig>,
        handler: Arc<Handler>,
        client: async_nats::Client,
        mut shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        let gate = Gate::new(config.in_flight_max);
        while let Some(message) = self.subscriber.next(&mut shutdown).await {
            let received = tokio::time::Instant::now();
            // Load is shed, not buffered: past `in_flight_max` commands in flight a request
            // is answered `unavailable` at once, so memory stays bounded and a stalled store
            // does not leave a backlog to be appended after its callers gave up.
            let Some(permit) = gate.try_enter() else {
                shed(&config, &client, message).await;
                continue;
            };
            let in_flight = metrics::InFlight::new("request");
            let (config, handler, client) = (config.clone(), handler.clone(), client.clone());
            tokio::spawn(async move {
                answer(&config, &handler, &client, message, received).await;
                drop((in_flight, permit));
            });
        }
        gate.all_done().await;
        Ok(())
    }
}

/// The header in which a caller gives its command's time limit, in milliseconds.
pub const TIMEOUT_HEADER: &str = "Closeloop-Timeout-Ms";

/// The command's deadline: `received` plus its `Closeloop-Timeout-Ms` (1 to the maximum) or
/// the default.
fn deadline(
    config: &ServeConfig,
    headers: Option<&async_nats::HeaderMap>,
    received: tokio::time::Instant,
) -> Result<tokio::time::Instant, Reply> {
    let Some(value) = headers.and_then(|h| h.get(TIMEOUT_HEADER)) else {
        return Ok(received + config.command_timeout);
    };
    let max = config.command_timeout_max.as_millis() as u64;
    match value.as_str().parse::<u64>() {
        Ok(ms) if (1..=max).contains(&ms) => Ok(received + std::time::Duration::from_millis(ms)),
        _ => Err(Reply::rejected(
            None,
            Rejection::validation(
                "",
                format!(
                    "header {TIMEOUT_HEADER} is `{}`; expected milliseconds, 1 to {max}",
                    value.as_str()
                ),
            ),
        )),
    }
}

/// Answers a request that found `in_flight_max` commands in flight: `unavailable`, nothing
/// read beyond the subject. (A request without a reply inbox cannot be answered.)
async fn shed(config: &ServeConfig, client: &async_nats::Client, message: async_nats::Message) {
    tracing::debug!(subject = %message.subject, "overloaded: request shed");
    metrics::shed();
    let reply = Reply::rejected(
        None,
        Rejection::new(
            closeloop_core::domain::RejectionCode::Unavailable,
            format!(
                "overloaded: {} commands in flight; nothing was done: retry later with the same command_id",
                config.in_flight_max
            ),
        ),
    );
    metrics::answered(
        metrics::type_label(last_token(message.subject.as_str())),
        &reply,
    );
    let Some(inbox) = message.reply else { return };
    if let Err(e) = client.publish(inbox, reply.to_json().into()).await {
        tracing::warn!(error = %e, "publishing a reply");
    }
}

async fn answer(
    config: &ServeConfig,
    handler: &Handler,
    client: &async_nats::Client,
    message: async_nats::Message,
    received: tokio::time::Instant,
) {
    let subject_type = last_token(message.subject.as_str());
    let admitted = deadline(config, message.headers.as_ref(), received).and_then(|deadline| {
        admit(
            config,
            subject_type,
            message.headers.as_ref(),
            &message.payload,
            now_seconds(),
        )
        .map(|envelope| (envelope, deadline))
    });
    let reply = match admitted {
        Ok((envelope, deadline)) => {
            handler
                .handle_until(envelope, handler.now(), Some(deadline))
                .await
        }
        Err(rejected) => {
            // Refused at the door: the handler, which counts the others, never saw it.
            metrics::answered(metrics::type_label(subject_type), &rejected);
            rejected
        }
    };
    log_reply(&reply, message.subject.as_str());
    let to = match (&message.reply, &reply) {
        (Some(inbox), _) => inbox.to_string(),
        (None, Reply::Accepted { command_id, .. })
        | (None, Reply::Duplicate { command_id, .. })
        | (
            None,
            Reply::Rejected {
                command_id: Some(command_id),
                ..
            },
        ) => config.reply_subject(&command_id.to_string()),
        (
            None,
            Reply::Rejected {
                command_id: None, ..
            },
        ) => return,
    };
    if let Err(e) = client.publish(to, reply.to_json().into()).await {
        tracing::warn!(error = %e, "publishing a reply");
    }
}

pub(crate) fn log_reply(reply: &Reply, subject: &str) {
    match reply {
        Reply::Accepted {
            command_id,
            stream,
            position,
            ..
        } => tracing::debug!(%command_id, %stream, position, subject, "accepted"),
        Reply::Duplicate { command_id, .. } => tracing::debug!(%command_id, subject, "duplicate"),
        Reply::Rejected { command_id, error } => tracing::debug!(
            command_id = ?command_id,
            code = ?error.code,
            message = %error.message,
            subject,
            "rejected"
        ),
    }
}
