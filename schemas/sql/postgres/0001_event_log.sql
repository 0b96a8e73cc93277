-- 0001 event_log: the PostgreSQL event log of closeloop-core (core/src/log/postgres.rs).
--
-- Runs once per schema, inside the migration transaction, with `search_path` set to the
-- target schema (default `closeloop`): names below are unqualified on purpose, so the same
-- file serves every schema (each test gets its own).
--
-- Tables: `log_head` (the one-row position counter whose row lock orders all appends),
-- `events` (the log itself), `commands` (one row per append, for idempotency).
-- Views for analysts: `event_log`, `ticket_events`, `streams`.
-- Immutability: UPDATE, DELETE and TRUNCATE on `events` and `commands` raise an error.

-- The position of the last committed event. Every append transaction locks this row before
-- it reads anything and keeps the lock until COMMIT: appends commit one at a time, in
-- position order, and positions are contiguous (see the module doc of postgres.rs).
CREATE TABLE log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position bigint NOT NULL CHECK (position >= 0)
);
INSERT INTO log_head (singleton, position) VALUES (true, 0);

CREATE TABLE events (
    position bigint PRIMARY KEY CHECK (position > 0),
    stream text NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    event_id uuid NOT NULL,
    type text NOT NULL,
    schema_version integer NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    -- Lowercase hex SHA-256 over the previous event's hash and this event (hash.rs).
    hash text NOT NULL CHECK (length(hash) = 64),
    -- Stream reads (`read_stream`) and the stream head lookup of every append.
    CONSTRAINT events_stream_version UNIQUE (stream, version)
);

-- One row per successful append: a command id appends at most once.
CREATE TABLE commands (
    command_id uuid PRIMARY KEY,
    first_position bigint NOT NULL,
    last_position bigint NOT NULL,
    CHECK (first_position > 0 AND last_position >= first_position)
);

CREATE FUNCTION reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'closeloop: % on %.% is forbidden: the event log is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING HINT = 'Stored events are never changed; append a correcting event instead.';
END
$$;

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();
CREATE TRIGGER commands_immutable BEFORE UPDATE OR DELETE ON commands
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER commands_no_truncate BEFORE TRUNCATE ON commands
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

-- The head's row is never removed. (It is updated by every append; a row trigger checking
-- that it only moves forward would double the cost of a lone append, so that is left to the
-- writer's guard, `WHERE position = <the head it read>`, and to privileges: grant the
-- application role, not analysts, write access to this schema.)
CREATE TRIGGER log_head_kept BEFORE DELETE ON log_head
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER log_head_no_truncate BEFORE TRUNCATE ON log_head
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

-- Analysts' views: plain SQL over the log. Writes through them hit the triggers above.
CREATE VIEW event_log AS
SELECT position,
       stream,
       split_part(stream, '-', 1) AS category,
       version,
       event_id,
       type,
       schema_version,
       (metadata ->> 'occurred_at')::timestamptz AS occurred_at,
       (metadata ->> 'recorded_at')::timestamptz AS recorded_at,
       metadata -> 'actor' ->> 'id' AS actor_id,
       metadata -> 'actor' ->> 'role' AS actor_role,
       (metadata ->> 'command_id')::uuid AS command_id,
       (metadata ->> 'correlation_id')::uuid AS correlation_id,
       (metadata ->> 'causation_id')::uuid AS causation_id,
       data,
       hash
  FROM events;

CREATE VIEW ticket_events AS
SELECT position,
       substr(stream, length('ticket-') + 1) AS ticket_id,
       version,
       event_id,
       type,
       occurred_at,
       recorded_at,
       actor_id,
       actor_role,
       command_id,
       data
  FROM event_log
 WHERE stream LIKE 'ticket-%';

CREATE VIEW streams AS
SELECT stream,
       split_part(stream, '-', 1) AS category,
       max(version) AS version,
       count(*) AS events,
       min(position) AS first_position,
       max(position) AS last_position,
       min((metadata ->> 'recorded_at')::timestamptz) AS first_recorded_at,
       max((metadata ->> 'recorded_at')::timestamptz) AS last_recorded_at
  FROM events
 GROUP BY stream;

COMMENT ON TABLE log_head IS 'closeloop: position of the last committed event; its row lock orders appends';
COMMENT ON TABLE events IS 'closeloop: the event log (append-only; per-stream SHA-256 hash chain)';
COMMENT ON TABLE commands IS 'closeloop: one row per append, keyed by command id (idempotency)';
COMMENT ON VIEW event_log IS 'closeloop: every event with its metadata as columns (ORDER BY position for log order)';
COMMENT ON VIEW ticket_events IS 'closeloop: the events of ticket streams';
COMMENT ON VIEW streams IS 'closeloop: one row per stream: category, version, event count, first and last position';
