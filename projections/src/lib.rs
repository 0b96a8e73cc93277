//! closeloop-projections: read models folded from the log, and the runtime that keeps them.
//!
//! - `runtime.rs`: the [`runtime::Projection`] trait (a named, versioned, pure fold with a
//!   deterministic JSON state) and the [`runtime::Runner`] that catches a projection up from
//!   the log, tails it, and saves state and checkpoint together; `store.rs`: where they are
//!   saved (memory, the SQLite file's `projections` table, PostgreSQL's `closeloop_read`
//!   schema in `pg_store.rs`).
//! - `record.rs`: the decoded event a fold takes (from a stored event or its JSON); `fact.rs`:
//!   its lean form, what the report folds read (decoded from JSON without copying text).
//! - `calendar.rs`: business-time arithmetic (time zone, weekly hours, holidays, DST).
//! - `clock.rs`: a ticket's SLA timers, shared by the SLA and performance folds.
//! - `sla.rs`, `satisfaction.rs`, `performance.rs`: the three read models; `report.rs`: the
//!   reports (JSON values) read from them, with "now" and filters as explicit parameters.
//! - `scheduler.rs`: the SLA scheduler: deadlines become `sla_warning_raised` and
//!   `sla_breached` events, exactly once per deadline however many instances run.
//! - `period.rs`: UTC days, weeks, months; deterministic serialization helpers.
//! - `summary.rs`: tickets by state and grade, for `closeloop demo`.
//!
//! Principle: folds never read the wall clock or the current configuration; everything comes
//! from events, so a replay gives byte for byte the read model that live processing gave.

pub mod calendar;
pub mod clock;
pub mod fact;
pub mod models;
pub mod performance;
pub mod period;
pub mod pg_store;
pub mod record;
pub mod report;
pub mod runtime;
pub mod satisfaction;
pub mod scheduler;
pub mod sla;
pub mod store;
pub mod summary;
pub mod tables;
