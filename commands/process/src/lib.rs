//! closeloop-process: the process managers, every one of the engine's own reactions in one
//! place. Each submits commands as role `system` (so they pass the same decisions,
//! authorization and audit as any command), with ids derived from what triggers them, so any
//! number of instances, or one restarted from position zero, submit the same commands and
//! the log appends each once.
//!
//! Reactions to the log (through the command handler, `closeloop-commands`):
//! - `managers.rs`: [`ProcessManagers`], the loop that folds the ticket events and runs the
//!   three below at each step.
//! - `assign.rs`: auto-assignment of unassigned open tickets to an available agent of the
//!   ticket's line, of the level the customer's grade calls for, with the least open load.
//! - `coverage.rs`: backup coverage: an away agent's open tickets move to their backup with a
//!   handover note listing what is open, and move back when the agent returns.
//! - `escalation.rs`: a breached ticket (`sla_breached`) is escalated one line up with the
//!   breach as its reason.
//! - `tracked.rs`: [`TrackedTicket`], a ticket as the managers see it.
//!
//! Jobs on a timer (reading the read side's tables, `closeloop-projections`):
//! - `scheduler.rs`: the SLA scheduler: deadlines become `sla_warning_raised` and
//!   `sla_breached` events, unconfirmed resolutions are closed, follow-ups, re-inspections and
//!   absences are marked, exactly once per deadline however many instances run.
//! - `step_deadlines.rs`: the scheduler's step deadlines (warnings and breaches).
//! - `retention.rs`: the scheduler's retention step: customers whose retention policies have
//!   run out get `erase_customer_data`, once per customer and deadline.
//!
//! - `ids.rs`: who each of them acts as, and the managers' command ids. Both id schemes of
//!   the domain's [`derived_command_id`](closeloop_core::domain::derived_command_id) are
//!   used (the managers' and the scheduler's): the commands already in the logs carry them,
//!   and a re-run must derive the same ids.

mod assign;
mod coverage;
mod escalation;
mod ids;
mod managers;
pub mod retention;
pub mod scheduler;
pub mod step_deadlines;
mod tracked;

pub use assign::{required_level, AssignConfig};
pub use ids::{derived_id, ASSIGN_ACTOR, COVERAGE_ACTOR, ESCALATION_ACTOR, SCHEDULER_ACTOR};
pub use managers::{ProcessConfig, ProcessManagers};
pub use tracked::TrackedTicket;
