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
schema_prefix=cl_batch
# shellcheck source=benches/pgbench_setup.sh
. benches/pgbench_setup.sh "$@"
psql "$url" -qc "CREATE TABLE $schema.raw_events (LIKE $schema.events INCLUDING ALL)"
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
for round in 1 2; do
    for variant in ours:64 no_commands:64 raw64:64 raw100:100; do
        name=${variant%%:*} rows=${variant##*:}
        t=$(tps "$dir/$name.sql")
        awk -v r="$round" -v n="$name" -v t="$t" -v k="$rows" \
            'BEGIN { printf "round %d: %-12s %6.0f tx/s %8.0f events/s\n", r, n, t, t * k }'
    done
done
