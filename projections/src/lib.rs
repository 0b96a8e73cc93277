//! closeloop-projections: the read side: the analysts' tables folded from the log, and the
//! reports read from them.
//!
//! - `tables/`: the tables (rows, the pure fold, the stores on memory, SQLite and
//!   PostgreSQL, their reads) and their projector, which commits rows and checkpoint together.
//! - `runtime.rs`: what every projector shares with whoever runs it (`Status`,
//!   `ProjectorError`); `models.rs`: the reports as `serve` and `report` answer them.
//! - `record.rs`: the decoded event a fold takes (from a stored event or its JSON); `fact.rs`:
//!   its lean form (the few fields the clocks read, decoded without copying text).
//! - `calendar.rs`: business-time arithmetic (time zone, weekly hours, holidays, make-up
//!   working days and hours overrides, DST).
//! - `clock.rs`: a ticket's SLA timers.
//! - `report/`: the reports (JSON values) computed from the tables, with "now" and filters as
//!   explicit parameters: `sla.rs`, `satisfaction.rs`, `performance.rs`.
//! - `period.rs`: UTC days, weeks, months; deterministic serialization helpers.
//! - `summary.rs`: tickets by state and grade, for `closeloop demo`.
//!
//! Principle: folds never read the wall clock or the current configuration; everything comes
//! from events, so a replay gives byte for byte the read model that live processing gave.

pub mod calendar;
pub mod clock;
pub mod fact;
pub mod models;
pub mod period;
pub mod record;
pub mod report;
pub mod runtime;
pub mod summary;
pub mod tables;
