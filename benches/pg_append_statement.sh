#!/usr/bin/env bash
# The server's own ceiling for one sequential committer: pgbench replays, with no client of
# ours, the single-event append statement of `core/src/log/postgres.rs` (`append_one`: move
# the head row, insert the event, record the command id, notify) beside a raw single-row
# INSERT of the same row into the same table, each on one connection for BENCH_SECS seconds
# (default 4), three times interleaved. `cargo bench --bench pg_append` compares our appends
# with the raw insert; this shows how much of the gap is the statement itself.
#
# Usage: benches/pg_append_statement.sh [postgres URL]   (needs pgbench and a built closeloop)
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-${CLOSELOOP_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}}
secs=${BENCH_SECS:-4}
schema=cl_stmt_$$
bin=target/release/closeloop
[ -x "$bin" ] || cargo build --release --quiet
dir=$(mktemp -d)
trap 'psql "$url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
sep='?'; case "$url" in *\?*) sep='&' ;; esac
"$bin" --store "$url${sep}schema=$schema" migrate >/dev/null
psql "$url" -qc "CREATE SEQUENCE $schema.raw_position START 1000000000"
row="'ticket-' || gen_random_uuid(), 1, gen_random_uuid(), 'ticket_assigned', 1,
 '{\"ticket_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"agent_id\":\"agent-17\",\"team\":\"front\"}'::jsonb,
 '{\"command_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"correlation_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"causation_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"actor\":{\"id\":\"lead-3\",\"role\":\"supervisor\"},\"occurred_at\":\"2026-11-23T09:15:00Z\",\"recorded_at\":\"2026-11-23T09:15:00Z\"}'::jsonb,
 repeat('a', 64)"
cols="position, stream, version, event_id, type, schema_version, data, metadata, hash"
cat >"$dir/ours.sql" <<SQL
WITH head AS (UPDATE $schema.log_head SET position = position + 1 RETURNING position),
appended AS (INSERT INTO $schema.events ($cols) SELECT position, $row FROM head),
recorded AS (INSERT INTO $schema.commands (command_id, first_position, last_position)
             SELECT gen_random_uuid(), position, position FROM head)
SELECT position, pg_notify('${schema}_head', position::text) FROM head;
SQL
cat >"$dir/raw.sql" <<SQL
INSERT INTO $schema.events ($cols) SELECT nextval('$schema.raw_position'), $row;
SQL
tps() { pgbench "$url" -n -M prepared -T "$secs" -c 1 -f "$1" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
for round in 1 2 3; do
    ours=$(tps "$dir/ours.sql")
    raw=$(tps "$dir/raw.sql")
    awk -v r="$round" -v o="$ours" -v w="$raw" \
        'BEGIN { printf "round %d: append statement %.0f tx/s, raw single-row INSERT %.0f tx/s, ratio %.0f%%\n", r, o, w, 100 * o / w }'
done
