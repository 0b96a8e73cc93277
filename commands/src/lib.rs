//! closeloop-commands: the write side.
//!
//! - `handler.rs`: a command's way into the log: parse, check idempotency, load the stream
//!   and the directory, decide, append with the expected version, retry on conflict.
//! - `reply.rs`: the replies of the public contract.
//! - `stripes.rs`: lock stripes, to take the work on one stream in turn.
//! - `nats/`: the NATS front door (`closeloop serve`): request/reply and durable intake,
//!   queries, authentication of callers (signed tokens), leases for run-once jobs,
//!   graceful shutdown.
//! - `relay.rs`: publishes the log to the JetStream events stream, checkpointed by the stream.
//! - `metrics.rs`: the names and meanings of the metrics `serve --metrics` exposes, and the
//!   recording helpers the handler and the intakes call (no-ops until a recorder is
//!   installed).

mod error;
mod handler;
pub mod idempotency;
pub mod metrics;
pub mod nats;
pub mod relay;
mod reply;
mod stripes;

pub use error::Error;
pub use handler::{Clock, Handler, HandlerConfig};
pub use reply::Reply;
