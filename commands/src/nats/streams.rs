//! JetStream streams and consumers as the engine configures them, on a new server and on
//! one an older version (or an operator) set up differently.
//!
//! `get_or_create` alone keeps whatever exists, so a deployment made before a limit was
//! introduced would never get it: an unbounded commands stream, a consumer redelivering a
//! poison message for ever. [`ensure_stream`] and [`ensure_consumer`] bring the limits the
//! engine manages up to date in place, and refuse what JetStream cannot change in place
//! (a stream's retention), naming the fix, rather than run with a limit silently missing.

use async_nats::jetstream::consumer::FromConsumer;
use async_nats::jetstream::{self, consumer, stream};

use crate::nats::error::ServeError;

/// The limits of `have` that differ from `wanted`'s, by name. Zero and negative sizes both
/// mean "no limit" to JetStream (it reports -1), and a zero duplicate window means "the
/// server's default", so those compare equal.
fn stream_drift(have: &stream::Config, wanted: &stream::Config) -> Vec<&'static str> {
    let unlimited = |v: i64| if v <= 0 { -1 } else { v };
    let mut drift = Vec::new();
    if have.subjects != wanted.subjects {
        drift.push("subjects");
    }
    if unlimited(have.max_bytes) != unlimited(wanted.max_bytes) {
        drift.push("max_bytes");
    }
    if unlimited(i64::from(have.max_message_size)) != unlimited(i64::from(wanted.max_message_size))
    {
        drift.push("max_message_size");
    }
    if have.max_age != wanted.max_age {
        drift.push("max_age");
    }
    if have.discard != wanted.discard {
        drift.push("discard");
    }
    if !wanted.duplicate_window.is_zero() && have.duplicate_window != wanted.duplicate_window {
        drift.push("duplicate_window");
    }
    if have.deny_delete != wanted.deny_delete || have.deny_purge != wanted.deny_purge {
        drift.push("deny_delete/deny_purge");
    }
    drift
}

/// Creates the stream `wanted` describes or, when one of that name exists, sets the limits
/// the engine manages (subjects, sizes, age, discard policy, duplicate window, delete and
/// purge denial) to `wanted`'s, leaving the rest (replicas, placement) to the operator.
/// A stream whose retention differs is refused: JetStream cannot change it in place.
pub async fn ensure_stream(
    js: &jetstream::Context,
    wanted: stream::Config,
) -> Result<stream::Stream, ServeError> {
    let name = wanted.name.clone();
    let context = format!("stream {name}");
    let mut found = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| ServeError::nats(&context, e))?;
    let have = found
        .info()
        .await
        .map_err(|e| ServeError::nats(&context, e))?
        .config
        .clone();
    if have.retention != wanted.retention {
        return Err(ServeError::Nats(format!(
            "{context} has retention {:?} where the engine needs {:?}, which JetStream cannot \
             change in place: once nothing in it is needed (no serve running, its messages \
             handled), delete it (`nats stream rm {name}`) and serve creates it anew",
            have.retention, wanted.retention
        )));
    }
    let drift = stream_drift(&have, &wanted);
    if drift.is_empty() {
        return Ok(found);
    }
    let updated = stream::Config {
        subjects: wanted.subjects,
        max_bytes: wanted.max_bytes,
        max_message_size: wanted.max_message_size,
        max_age: wanted.max_age,
        discard: wanted.discard,
        duplicate_window: if wanted.duplicate_window.is_zero() {
            have.duplicate_window
        } else {
            wanted.duplicate_window
        },
        deny_delete: wanted.deny_delete,
        deny_purge: wanted.deny_purge,
        ..have
    };
    js.update_stream(updated)
        .await
        .map_err(|e| ServeError::nats(&format!("updating {context}"), e))?;
    tracing::warn!(stream = %name, changed = ?drift, "brought the stream's limits up to date");
    js.get_stream(&name)
        .await
        .map_err(|e| ServeError::nats(&context, e))
}

/// Creates the durable pull consumer `wanted` describes or, when it exists, sets the limits
/// the engine manages (redeliveries, acknowledgement wait, unacknowledged messages) to
/// `wanted`'s.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    wanted: consumer::pull::Config,
) -> Result<consumer::Consumer<consumer::pull::Config>, ServeError> {
    let name = wanted.durable_name.clone().unwrap_or_default();
    let context = format!("consumer {name}");
    let mut found: consumer::Consumer<consumer::pull::Config> = stream
        .get_or_create_consumer(&name, wanted.clone())
        .await
        .map_err(|e| ServeError::nats(&context, e))?;
    let have = found
        .info()
        .await
        .map_err(|e| ServeError::nats(&context, e))?
        .config
        .clone();
    let differs = have.max_deliver != wanted.max_deliver
        || have.ack_wait != wanted.ack_wait
        || have.max_ack_pending != wanted.max_ack_pending;
    if differs {
        found = stream
            .update_consumer(consumer::pull::Config {
                max_deliver: wanted.max_deliver,
                ack_wait: wanted.ack_wait,
                max_ack_pending: wanted.max_ack_pending,
                ..consumer::pull::Config::try_from_consumer_config(have.clone())
                    .map_err(|e| ServeError::nats(&context, e))?
            })
            .await
            .map_err(|e| ServeError::nats(&format!("updating {context}"), e))?;
        tracing::warn!(
            consumer = %name,
            max_deliver = wanted.max_deliver,
            "brought the consumer's limits up to date"
        );
    }
    Ok(found)
}
