//! The reports: JSON values read from the read models, the same for `closeloop report NAME
//! --json` and the query `closeloop.v1.queries.report_NAME`. Their fields are the stable
//! minimum of docs/contract.md (Reports) plus a few more. "Now" (for running timers) and the filters are explicit
//! parameters; nothing here reads a clock.
//!
//! `query.rs`: what every report is asked with; `values.rs`: how they write their values;
//! one module per report beside them.

mod complaints;
mod deadlines;
mod erasures;
mod inspections;
mod performance;
mod query;
mod satisfaction;
mod sla;
mod values;

pub use complaints::complaints_report;
pub use deadlines::deadlines_report;
pub use erasures::erasures_report;
pub use inspections::{inspection_candidates, inspections_report};
pub use performance::{performance_report, score, Perf};
pub use query::{ReportQuery, ScoreWeights};
pub use satisfaction::{satisfaction_report, By, Callbacks, Ratings};
pub use sla::sla_report;
