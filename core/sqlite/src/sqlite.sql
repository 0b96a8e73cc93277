-- The SQLite event log's schema (schema version 2, kept in PRAGMA user_version; 2 added
-- `log_identity`).
-- Idempotent: run on every open inside one IMMEDIATE transaction, so two processes opening a
-- new file at once cannot half-create it. A later version adds statements guarded by
-- user_version; stored rows are never rewritten.

-- Every event, in commit order. `position` is the rowid: assigned by the single writer as
-- max(position) + 1, so positions are contiguous and in commit order. STRICT makes SQLite
-- refuse values of the wrong type instead of storing them silently.
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    -- The part of `stream` before its first '-': what `read_all`'s category filter matches.
    category       TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_id       TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL, -- JSON
    metadata       TEXT    NOT NULL, -- JSON: command_id, correlation_id, causation_id, actor, occurred_at, recorded_at
    hash           TEXT    NOT NULL, -- lowercase hex SHA-256, chained per stream (hash.rs)
    UNIQUE (stream, version)
) STRICT;

-- Projectors read "the next events of these categories after position p".
CREATE INDEX IF NOT EXISTS events_category_position ON events (category, position);

-- One row per committed append, keyed by the command that made it: a retried command finds
-- its first outcome here and appends nothing.
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT    PRIMARY KEY,
    stream     TEXT    NOT NULL,
    version    INTEGER NOT NULL, -- version of the append's last event
    position   INTEGER NOT NULL, -- position of the append's last event
    events     TEXT    NOT NULL  -- JSON array of the appended event types, in order
) STRICT, WITHOUT ROWID;

-- `verify` reads the records in position order, to check that they tile the log.
CREATE INDEX IF NOT EXISTS commands_position ON commands (position);

-- Records are never changed (docs/contract.md, principle 4): the hash chain proves it, these
-- triggers enforce it for anything that writes through SQLite.
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: UPDATE of the events table is not allowed');
END;

CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: DELETE from the events table is not allowed');
END;

CREATE TRIGGER IF NOT EXISTS commands_no_update BEFORE UPDATE ON commands
BEGIN
    SELECT RAISE(ABORT, 'commands are immutable: UPDATE of the commands table is not allowed');
END;

CREATE TRIGGER IF NOT EXISTS commands_no_delete BEFORE DELETE ON commands
BEGIN
    SELECT RAISE(ABORT, 'commands are immutable: DELETE from the commands table is not allowed');
END;

-- The log's identity: one row, a random UUID (v4) drawn by the code that first opens the file
-- at this schema version (`open_writer` inserts it when the row is missing, in the same
-- transaction as this script), so a file created before it existed gets one on its next open.
-- Exports, the events stream and signed checkpoints carry it.
CREATE TABLE IF NOT EXISTS log_identity (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    log_id     TEXT    NOT NULL CHECK (length(log_id) = 36),
    created_at TEXT    NOT NULL
) STRICT;

CREATE TRIGGER IF NOT EXISTS log_identity_no_update BEFORE UPDATE ON log_identity
BEGIN
    SELECT RAISE(ABORT, 'the log identity is immutable: UPDATE of log_identity is not allowed');
END;

CREATE TRIGGER IF NOT EXISTS log_identity_no_delete BEFORE DELETE ON log_identity
BEGIN
    SELECT RAISE(ABORT, 'the log identity is immutable: DELETE from log_identity is not allowed');
END;

-- Customers' data keys (crypto-shredding, README "Personal data"): the customer fields of
-- events are stored encrypted under them. Unlike the events this table may be deleted from:
-- erasing a customer's data deletes its row, and the events keep their ciphertext and their
-- hashes. `closeloop-sqlite`'s key store sets `secure_delete` and checkpoints the WAL after a
-- delete, so the key's bytes do not linger in the file's free pages or its WAL.
CREATE TABLE IF NOT EXISTS customer_keys (
    customer_id TEXT PRIMARY KEY,
    key         BLOB NOT NULL CHECK (length(key) = 32),
    created_at  TEXT NOT NULL
) STRICT;
