-- 0003 event_log_exact_times: the analysts' view `event_log` gains the business and recorded
-- times exactly as they were hashed (RFC 3339 text, nanoseconds kept), beside the
-- `timestamptz` columns, which PostgreSQL cuts to microseconds. An auditor recomputing the
-- hash chain from the view reads these; the other columns are unchanged (CREATE OR REPLACE
-- VIEW may only add columns at the end).

CREATE OR REPLACE VIEW event_log AS
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
       hash,
       metadata ->> 'occurred_at' AS occurred_at_hashed,
       metadata ->> 'recorded_at' AS recorded_at_hashed,
       metadata
  FROM events;

COMMENT ON VIEW event_log IS 'closeloop: every event with its metadata as columns (ORDER BY position for log order); occurred_at_hashed, recorded_at_hashed and metadata hold the exact values the hash covers';
