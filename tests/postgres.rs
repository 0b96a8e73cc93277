//! PostgreSQL event log: conformance, concurrency and faults.
