-- 0004 commands_last_position: `verify` reads the idempotency records in position order, to
-- check that they tile the log (every append writes one; a record pointing at missing or
-- other events is a break). One index entry more per append.

CREATE INDEX commands_last_position ON commands (last_position);
