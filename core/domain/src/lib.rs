//! closeloop-domain: the pure ticket domain. Nothing here does IO, reads a clock or draws a
//! random number (and the crate depends on no database driver, runtime or IO crate): time and
//! ids arrive in the command or the [`Context`].
//!
//! - `types.rs`: the vocabulary (roles, grades, channels, states).
//! - `command.rs` / `parse.rs`: commands and their strict decoding with JSON-Pointer errors;
//!   `strict.rs`: what the raw JSON must be first (no duplicate keys, no NUL).
//! - `event.rs`: the events the log keeps.
//! - `context.rs`: [`Context`], what a decision may consult besides the stream's own state;
//!   `decide.rs`: [`decide`], any command to the decision of its kind.
//! - `ticket_state.rs`: a ticket's state (`Ticket`); `ticket.rs`: its state machine (`evolve`,
//!   `decide_ticket`).
//! - `directory.rs` / `reference.rs`: agents, customers, calendars, policies.
//! - `authorize.rs`: who may do what; `visibility.rs`: who may see what (the read side's
//!   queries ask it).
//! - `time.rs`: the rule on business time (`occurred_at`): monotonic per stream, not in the
//!   future, backdated only within the actor's role's window.
//! - `rejection.rs`: why a command was refused.
//! - `upcast.rs`: stored events of older schema versions, brought to the current one.

mod authorize;
mod command;
mod context;
mod decide;
mod directory;
mod event;
mod idempotency;
mod limits;
mod parse;
mod personal;
mod reference;
mod rejection;
mod strict;
mod ticket;
mod ticket_state;
mod time;
mod types;
mod upcast;
mod visibility;

pub use command::*;
pub use context::Context;
pub use decide::decide;
pub use directory::*;
pub use event::*;
pub use idempotency::{
    derived_command_id, idempotency_key, system_command, IdScheme, SCHEDULER_NAMESPACE,
};
pub use limits::*;
pub use parse::*;
pub use personal::customer_fields;
pub use reference::decide_directory;
pub use rejection::*;
pub use strict::check as check_strict_json;
pub use ticket::*;
pub use ticket_state::*;
pub use time::{business_time, TimeRules};
pub use types::*;
pub use upcast::upcast;
pub use visibility::{may_read_erasures, may_see_ticket, report_scope, ReportScope};
