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
schema_prefix=cl_stmt
# shellcheck source=benches/pgbench_setup.sh
. benches/pgbench_setup.sh "$@"
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
for round in 1 2 3; do
    ours=$(tps "$dir/ours.sql")
    raw=$(tps "$dir/raw.sql")
    awk -v r="$round" -v o="$ours" -v w="$raw" \
        'BEGIN { printf "round %d: append statement %.0f tx/s, raw single-row INSERT %.0f tx/s, ratio %.0f%%\n", r, o, w, 100 * o / w }'
done
