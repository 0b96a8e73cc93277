//! The pure ticket domain. Nothing here does IO, reads a clock or draws a random number.
//!
//! - `types.rs`: the vocabulary (roles, grades, channels, states).
//! - `command.rs` / `parse.rs`: commands and their strict decoding with JSON-Pointer errors.
//! - `event.rs`: the events the log keeps.
//! - `rejection.rs`: why a command was refused.

mod command;
mod event;
mod rejection;
mod types;

pub use command::*;
pub use event::*;
pub use rejection::*;
pub use types::*;
