# Sourced by the pgbench scripts beside it (`pg_append_statement.sh`, `pg_batch_statement.sh`),
# with the PostgreSQL URL as "$1" and a schema name prefix in $schema_prefix. Sets up what
# they share, so both replay the same row on the same kind of schema: a scratch schema made
# by `closeloop migrate` (dropped on exit), a raw position sequence, the row and its columns
# ($row, $cols), a temporary directory ($dir) for the scripts, and `tps FILE`, the
# transactions per second of FILE on one connection for BENCH_SECS seconds (default 4).
url=${1:-${CLOSELOOP_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}}
secs=${BENCH_SECS:-4}
schema=${schema_prefix}_$$
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
tps() { pgbench "$url" -n -M prepared -T "$secs" -c 1 -f "$1" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
