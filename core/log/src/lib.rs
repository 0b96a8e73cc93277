//! closeloop-log: the event log, the only truth (docs/contract.md, principle 2). One trait,
//! [`EventLog`], that every backend implements: [`memory`] here (always available, the
//! reference), SQLite (`closeloop-sqlite`, the embedded default) and PostgreSQL
//! (`closeloop-postgres`, many processes on one database). Every backend passes the same
//! conformance suite (`closeloop-testkit`).
//!
//! Layout:
//! - `lib.rs` (this file): the modules and what they export, nothing else;
//! - `types.rs`: the log's types (requests, stored events, outcomes, filters) and limits;
//! - `event_log.rs`: the [`EventLog`] trait, and [`paged_scan`], the scan of any backend
//!   through `read_all`;
//! - `append.rs`: the pure helpers every backend uses to check and seal an append, so that
//!   all of them decide the same way and compute the same bytes;
//! - `error.rs`: the log's one [`Error`] enum, free of any database driver's types;
//! - `hash.rs`: the per-stream SHA-256 hash chain;
//! - `rules.rs`: the append rules, one pure function every backend calls to decide an append;
//! - `memory.rs`: the in-memory backend;
//! - `subscription.rs`: [`Subscription`], the one way to follow the log (catch up, next
//!   batch, wait for news or shutdown), with the short-batch rule written once;
//! - `shutdown.rs`: [`Shutdown`], the one stop signal every follower of the log takes;
//! - `scan.rs`: [`EventLog::scan`]'s types ([`ScannedEvent`], [`ScanBatch`]).
//!
//! Invariants every backend keeps:
//! - an append is atomic: all of its events or none, checked against its expected version;
//! - stream versions start at 1 and are contiguous;
//! - global positions start at 1, are strictly increasing in commit order and contiguous, so a
//!   reader that has seen position p never later finds an event at or below p;
//! - a `command_id` appends at most once; a retry gets the first append's outcome;
//! - each stream is a SHA-256 hash chain (`hash.rs`).

mod append;
mod error;
mod event_log;
mod hash;
mod keys;
pub mod memory;
pub mod rules;
mod scan;
pub mod shred;
mod shutdown;
mod subscription;
mod types;

pub use append::{check_expected, check_request, committed_of, seal};
pub use error::Error;
pub use event_log::{paged_scan, EventLog};
pub use keys::{DataKey, KeyStore, MemoryKeys};

pub use scan::{Scan, ScanBatch, ScannedEvent};
pub use shutdown::{Shutdown, Trigger};
pub use subscription::{Batch, Subscription, Waited};

pub use hash::{chain_hash, verify_chain, ChainBreak, LogVerifier, GENESIS_HASH};
pub use types::{
    stream_category, AppendOutcome, AppendRequest, CommandRecord, Committed, ExpectedVersion,
    Filter, Metadata, NewEvent, Position, StoredEvent, Unchanged, APPEND_EVENTS_MAX,
    READ_BATCH_MAX,
};
