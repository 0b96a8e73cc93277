//! closeloop-commands: the write side.
//!
//! - `handler.rs`: a command's way into the log: parse, check idempotency, load the stream
//!   and the directory, decide, append with the expected version, retry on conflict.
//! - `reply.rs`: the replies of the public contract.
//! - `workload.rs`: the seeded, realistic generated workload that `closeloop demo` and the
//!   benchmarks drive through the handler.

mod error;
mod handler;
mod reply;
pub mod workload;

pub use error::Error;
pub use handler::{Clock, Handler, HandlerConfig};
pub use reply::Reply;
