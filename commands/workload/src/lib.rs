//! closeloop-workload: a seeded, realistic generated workload: the engine's `closeloop demo`
//! and its benchmarks.
//!
//! It models the operations of docs/domain.md: teams of at most eight on three support lines,
//! backup agents covering leave, graded customers, tickets arriving by hour of day and day of
//! week over simulated weeks, first answers, requests for information, escalations, priority
//! changes, notes, resolutions, reopenings, surveys and quality callbacks. Everything goes
//! through the real command handler, so the demo exercises authorization and the state
//! machine: a rejected command in the demo is a bug, and the runner counts them.
//!
//! Time is simulated: each command carries its `occurred_at`. The run is cut into days; a
//! day's directory commands (leave starting or ending) run first, then its tickets' commands,
//! each ticket in order and different tickets concurrently. [`run_with_ticks`] cuts each day
//! further into ticks (say an hour) and calls a hook at the end of each, once every command
//! before the tick's end is done: the demo runs the SLA scheduler there, so a deadline that
//! passes at 10:00 is recorded before the ticket's 12:00 resolution is appended.
//!
//! - `generate.rs`: [`generate_lazy`] makes the commands day by day as they are needed,
//!   [`generate`] all at once (pure: no log, no clock; depends on `closeloop-core` alone).
//! - `run.rs`: [`run`] (a [`Workload`] held whole) and [`run_with_ticks`] (a
//!   [`LazyWorkload`], consumed day by day) drive them through a
//!   `closeloop_commands::Handler` and count the replies.

mod error;
mod generate;
mod run;

pub use error::Error;
pub use generate::{
    generate, generate_lazy, Day, Days, LazyWorkload, Workload, WorkloadConfig, INSPECTOR,
};
pub use run::{run, run_with_ticks, RunStats};
