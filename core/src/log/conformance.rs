//! The event-log conformance suite (to be written).
