//! The event-log conformance suite, run against every backend.
