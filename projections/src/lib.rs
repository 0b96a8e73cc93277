//! closeloop-projections: read models folded from the log.
//!
//! - `summary.rs`: tickets by state and grade, escalations, satisfaction: what `closeloop
//!   demo` prints. A pure fold of stored events, so replaying the log always rebuilds it.

pub mod summary;
