#!/usr/bin/env bash
# The server's own cost of a batch of 64 one-event appends, with no client of ours: pgbench
# runs, on one connection for BENCH_SECS seconds each (default 4), twice interleaved, a
# statement of the shape `core/src/log/postgres.rs` sends for a batch (move the head row,
# insert the events, record the command ids, notify) beside the same without the command
# rows, and raw multi-row INSERTs of the same rows (64 and 100 per transaction) into a copy of
# the events table. The rows are made by generate_series, so the figures leave out what the
# real bench also pays: parameters, their transfer and parsing. `cargo bench --bench
# pg_append` compares our appends with the raw 100-row ceiling; this shows what the schema
# itself costs the server.
#
# Usage: benches/pg_batch_statement.sh [postgres URL]   (needs pgbench and a built closeloop)
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-${CLOSELOOP_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}}
secs=${BENCH_SECS:-4}
schema=cl_batch_$$
bin=target/release/closeloop
[ -x "$bin" ] || cargo build --release --quiet
dir=$(mktemp -d)
trap 'psql "$url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
sep='?'; case "$url" in *\?*) sep='&' ;; esac
"$bin" --store "$url${sep}schema=$schema" migrate >/dev/null
psql "$url" -qc "CREATE SEQUENCE $schema.raw_position START 1000000000"
psql "$url" -qc "CREATE TABLE $schema.raw_events (LIKE $schema.events INCLUDING ALL)"
row="'ticket-' || gen_random_uuid(), 1, gen_random_uuid(), 'ticket_assigned', 1,
 '{\"ticket_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"agent_id\":\"agent-17\",\"team\":\"front\"}'::jsonb,
 '{\"command_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"correlation_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"causation_id\":\"0190c7b8-0000-7000-8000-0000000000a5\",\"actor\":{\"id\":\"lead-3\",\"role\":\"supervisor\"},\"occurred_at\":\"2026-11-23T09:15:00Z\",\"recorded_at\":\"2026-11-23T09:15:00Z\"}'::jsonb,
 repeat('a', 64)"
cols="position, stream, version, event_id, type, schema_version, data, metadata, hash"
raw() {
    echo "INSERT INTO $schema.raw_events ($cols)
          SELECT nextval('$schema.raw_position'), $row FROM generate_series(1, $1);"
}
raw 100 >"$dir/raw100.sql"
raw 64 >"$dir/raw64.sql"
cat >"$dir/ours.sql" <<SQL
WITH head AS (UPDATE $schema.log_head SET position = position + 64 RETURNING position),
appended AS (INSERT INTO $schema.events ($cols)
             SELECT head.position - 64 + g, $row FROM head, generate_series(1, 64) AS g),
recorded AS (INSERT INTO $schema.commands (command_id, first_position, last_position)
             SELECT gen_random_uuid(), head.position - 64 + g, head.position - 64 + g
               FROM head, generate_series(1, 64) AS g)
SELECT position, pg_notify('${schema}_head', position::text) FROM head;
SQL
cat >"$dir/no_commands.sql" <<SQL
WITH head AS (UPDATE $schema.log_head SET position = position + 64 RETURNING position),
appended AS (INSERT INTO $schema.events ($cols)
             SELECT head.position - 64 + g, $row FROM head, generate_series(1, 64) AS g)
SELECT position, pg_notify('${schema}_head', position::text) FROM head;
SQL
tps() { pgbench "$url" -n -M prepared -T "$secs" -c 1 -f "$1" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
for round in 1 2; do
    for variant in ours:64 no_commands:64 raw64:64 raw100:100; do
        name=${variant%%:*} rows=${variant##*:}
        t=$(tps "$dir/$name.sql")
        awk -v r="$round" -v n="$name" -v t="$t" -v k="$rows" \
            'BEGIN { printf "round %d: %-12s %6.0f tx/s %8.0f events/s\n", r, n, t, t * k }'
    done
done
