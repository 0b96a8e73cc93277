//! closeloop-testkit: test support, used only as a dev-dependency (never published).
//!
//! - [`conformance`]: the event-log conformance suite every backend passes, written out as
//!   tests by [`conformance_tests!`], and the fixtures its checks and other log tests share
//!   (`append_request`, `numbered_events`, `commit`, `read_everything`...).

pub mod conformance;
