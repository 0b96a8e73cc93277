-- 0002 log_identity: the log's identity, a random UUID (v4) drawn once, when this migration
-- runs: for a new schema right after 0001, for an existing log when it is upgraded. Exports,
-- the events stream (header `Closeloop-Log-Id`) and signed checkpoints carry it, so that a
-- copy of the log can be told apart from another log's. `gen_random_uuid()` is built in
-- from PostgreSQL 13.

CREATE TABLE log_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    log_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO log_identity (log_id) VALUES (gen_random_uuid());

CREATE TRIGGER log_identity_immutable BEFORE UPDATE OR DELETE ON log_identity
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER log_identity_no_truncate BEFORE TRUNCATE ON log_identity
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

COMMENT ON TABLE log_identity IS 'closeloop: the log''s identity (a random UUID drawn once; never changed)';
