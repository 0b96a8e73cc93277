-- Read-model storage of the projectors on SQLite (the same file as the event log).
-- One row per projector: its whole state as deterministic JSON and the log position it
-- reflects, written together in one statement (one transaction), so state and checkpoint can
-- never disagree. Idempotent; run on every open.
CREATE TABLE IF NOT EXISTS projections (
    name     TEXT    PRIMARY KEY,
    version  INTEGER NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 0),
    state    TEXT    NOT NULL -- JSON
) STRICT;
