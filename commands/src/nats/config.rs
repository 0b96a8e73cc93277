//! Names and limits of the NATS front door. Defaults are the public names of
//! docs/contract.md (NATS); tests give each run its own prefix and stream names so they never
//! see each other's work.

use std::time::Duration;

use closeloop_core::domain::COMMAND_BYTES_MAX;

use super::auth::Auth;
use super::lease::LeaseConfig;

/// `<prefix>.checkpoints`, for callers that have a prefix but no [`ServeConfig`].
pub fn checkpoints_subject(subject_prefix: &str) -> String {
    format!("{subject_prefix}.checkpoints")
}

/// Configuration of [`run`](super::run).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// First subject tokens: `closeloop.v1` (public), `t<id>.closeloop.v1` in tests.
    pub subject_prefix: String,
    /// Queue group of command and query request/reply (`closeloop`).
    pub queue_group: String,
    /// JetStream stream of durable intake (`CLOSELOOP_COMMANDS`).
    pub commands_stream: String,
    /// Durable pull consumer on it, shared by every instance (`closeloop`).
    pub consumer_name: String,
    /// JetStream stream the relay publishes the log to (`CLOSELOOP_EVENTS`).
    pub events_stream: String,
    /// JetStream stream of durable commands that kept failing (`CLOSELOOP_COMMANDS_DEAD`).
    pub dead_letter_stream: String,
    /// Most bytes the commands stream holds; beyond it, publishes are refused (a work
    /// queue: handled commands leave it).
    pub commands_stream_bytes_max: i64,
    /// Most bytes the events stream holds; beyond it, the oldest events are dropped (the
    /// log keeps them all; the relay resumes from the newest).
    pub events_stream_bytes_max: i64,
    /// Most bytes and longest age of the dead-letter stream (oldest dropped first).
    pub dead_letter_bytes_max: i64,
    pub dead_letter_age_max: Duration,
    /// Deliveries of a durable command whose store stays unavailable before it is moved to
    /// the dead-letter stream (with a `rejected` reply); the pauses between them double from
    /// `unavailable_retry_delay` up to `unavailable_retry_delay_max`.
    pub durable_attempts_max: u32,
    /// Bucket and time-to-live of "run once" leases.
    pub lease: LeaseConfig,
    /// This process, in logs and lease values.
    pub instance_id: String,
    /// Largest command accepted, in bytes; at most [`COMMAND_BYTES_MAX`].
    pub command_bytes_max: usize,
    /// Commands (request/reply and durable, each) and queries handled at once; beyond it,
    /// intake stops reading (back-pressure) and the JetStream consumer stops pulling.
    pub in_flight_max: usize,
    /// JetStream de-duplication window of both streams (same `Nats-Msg-Id` within it is
    /// stored once).
    pub duplicate_window: Duration,
    /// Replicas of the streams and the lease bucket (1 on a single server; 3 in a cluster
    /// for a system of record).
    pub stream_replicas: usize,
    /// How long a request/reply command may take when its `Closeloop-Timeout-Ms` header does
    /// not say; past it the command is answered `unavailable` and not appended.
    pub command_timeout: Duration,
    /// The longest `Closeloop-Timeout-Ms` accepted.
    pub command_timeout_max: Duration,
    /// How long shutdown waits for work in flight; then it is abandoned (durable commands
    /// not acked are redelivered, to this or another instance).
    pub drain_timeout: Duration,
    /// How long JetStream waits for an ack before redelivering a durable command.
    pub ack_wait: Duration,
    /// Pause before a durable command whose store was unavailable is delivered again.
    pub unavailable_retry_delay: Duration,
    pub unavailable_retry_delay_max: Duration,
    /// Serve durable intake (JetStream).
    pub durable_intake: bool,
    /// Run the event relay (one instance at a time).
    pub relay: bool,
    /// Events read from the log and published per relay round.
    pub relay_batch_events_max: usize,
    /// Who is acting: verified tokens (the default; with no keys every request is refused)
    /// or, for development only, the body's word.
    pub auth: Auth,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            subject_prefix: "closeloop.v1".into(),
            queue_group: "closeloop".into(),
            commands_stream: "CLOSELOOP_COMMANDS".into(),
            consumer_name: "closeloop".into(),
            events_stream: "CLOSELOOP_EVENTS".into(),
            dead_letter_stream: "CLOSELOOP_COMMANDS_DEAD".into(),
            commands_stream_bytes_max: 1 << 30,
            events_stream_bytes_max: 8 << 30,
            dead_letter_bytes_max: 1 << 30,
            dead_letter_age_max: Duration::from_secs(30 * 24 * 3600),
            durable_attempts_max: 10,
            lease: LeaseConfig::default(),
            instance_id: uuid::Uuid::now_v7().to_string(),
            command_bytes_max: COMMAND_BYTES_MAX,
            in_flight_max: 256,
            duplicate_window: Duration::from_secs(10 * 60),
            stream_replicas: 1,
            ack_wait: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            command_timeout_max: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            unavailable_retry_delay: Duration::from_secs(1),
            unavailable_retry_delay_max: Duration::from_secs(30),
            durable_intake: true,
            relay: true,
            relay_batch_events_max: 512,
            auth: Auth::default(),
        }
    }
}

impl ServeConfig {
    /// A configuration whose subjects, streams, consumer and lease bucket all carry `tag`,
    /// so concurrent test runs on one server are isolated. `tag` is `[A-Za-z0-9_]`.
    pub fn isolated(tag: &str) -> ServeConfig {
        let upper = tag.to_ascii_uppercase();
        ServeConfig {
            subject_prefix: format!("t{tag}.closeloop.v1"),
            commands_stream: format!("CLOSELOOP_COMMANDS_{upper}"),
            events_stream: format!("CLOSELOOP_EVENTS_{upper}"),
            dead_letter_stream: format!("CLOSELOOP_COMMANDS_DEAD_{upper}"),
            lease: LeaseConfig {
                bucket: format!("CLOSELOOP_LEASES_{upper}"),
                ..LeaseConfig::default()
            },
            ..ServeConfig::default()
        }
    }

    /// `<prefix>.commands.<type>`: request/reply.
    pub fn command_subject(&self, command_type: &str) -> String {
        format!("{}.commands.{command_type}", self.subject_prefix)
    }

    /// `<prefix>.commands.*`: what request/reply intake listens to.
    pub fn commands_wildcard(&self) -> String {
        format!("{}.commands.*", self.subject_prefix)
    }

    /// `<prefix>.commands.durable.<type>`: durable intake, captured by the commands stream.
    /// (Not the request/reply subject itself: a stream on that subject would answer every
    /// request with its own publish acknowledgement, before the command's reply.)
    pub fn durable_subject(&self, command_type: &str) -> String {
        format!("{}.commands.durable.{command_type}", self.subject_prefix)
    }

    /// `<prefix>.commands.durable.*`: the commands stream's subjects.
    pub fn durable_wildcard(&self) -> String {
        format!("{}.commands.durable.*", self.subject_prefix)
    }

    /// `<prefix>.dead.commands.<type>`: the dead-letter stream's subjects (outside the
    /// commands stream's).
    pub fn dead_letter_subject(&self, command_type: &str) -> String {
        format!("{}.dead.commands.{command_type}", self.subject_prefix)
    }

    /// The pause before the next delivery of a durable command delivered `delivered` times
    /// whose store was unavailable: doubling, capped.
    pub fn retry_delay(&self, delivered: i64) -> Duration {
        let doublings = u32::try_from(delivered.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
        self.unavailable_retry_delay
            .saturating_mul(1 << doublings)
            .min(self.unavailable_retry_delay_max)
    }

    /// `<prefix>.replies.<command_id>`: where durable intake publishes replies.
    pub fn reply_subject(&self, command_id: &str) -> String {
        format!("{}.replies.{command_id}", self.subject_prefix)
    }

    /// `<prefix>.events.<stream_category>.<event_type>`.
    pub fn event_subject(&self, category: &str, event_type: &str) -> String {
        format!("{}.events.{category}.{event_type}", self.subject_prefix)
    }

    /// `<prefix>.events.>`: the events stream's subjects.
    pub fn events_wildcard(&self) -> String {
        format!("{}.events.>", self.subject_prefix)
    }

    /// `<prefix>.queries.<name>`.
    pub fn query_subject(&self, name: &str) -> String {
        format!("{}.queries.{name}", self.subject_prefix)
    }

    /// `<prefix>.checkpoints`: the signed checkpoints of `serve --checkpoint-key` and
    /// `closeloop checkpoint --nats`.
    pub fn checkpoints_subject(&self) -> String {
        checkpoints_subject(&self.subject_prefix)
    }

    /// Every subject of the NATS interface but the queries' (`query_subject`, one per
    /// registered query), as `(channel, subject)` with each variable token written
    /// `{name}`: the channels of the AsyncAPI document `schemas/asyncapi.yaml`, which the
    /// root package's `tests/asyncapi.rs` generates from this list and keeps in step. A new
    /// subject goes here, or that test cannot see it.
    pub fn channels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("commands", self.command_subject("{type}")),
            ("durable_commands", self.durable_subject("{type}")),
            ("command_replies", self.reply_subject("{command_id}")),
            ("dead_letters", self.dead_letter_subject("{type}")),
            (
                "events",
                self.event_subject("{stream_category}", "{event_type}"),
            ),
            ("checkpoints", self.checkpoints_subject()),
        ]
    }

    /// The command size limit in force.
    pub fn bytes_max(&self) -> usize {
        self.command_bytes_max.min(COMMAND_BYTES_MAX)
    }
}
