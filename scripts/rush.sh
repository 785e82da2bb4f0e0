#!/usr/bin/env bash
# The midnight-rush benchmark in one command: builds, starts a server on a fresh database,
# runs the load generator (examples/rush.rs) against it, prints the table, stops the server.
#
#   scripts/rush.sh [--database sqlite|postgres] [--citizens N] [--concurrency C] [...]
#                                                  (other flags go to rush)
#
# --database postgres starts a throwaway PostgreSQL server for the run (scripts/pg.sh; needs
# the PostgreSQL server installed: Debian `postgresql`). PROFILE=debug builds without
# optimisation (CI checks the harness and the consistency check that way, not the speed). The
# identity provider is simulated with 5 ms latency and 1,024 calls in flight, so the rush
# measures this server rather than the simulated provider; override with IDENTITY_LATENCY_MS /
# IDENTITY_MAX_IN_FLIGHT.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=sqlite
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --database) backend=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

. scripts/server.sh
token=rush-admin
case "$backend" in
  sqlite) db_env=() ;;
  postgres)
    . scripts/pg.sh
    start_pg
    db_env=(DATABASE_URL="$PG_URL" SECRET_KEY=rush-secret DB_POOL_SIZE="${DB_POOL_SIZE:-16}")
    ;;
  *) echo "--database is sqlite or postgres, not $backend" >&2; exit 2 ;;
esac
start_server rush ADMIN_TOKEN="$token" "${db_env[@]}" \
  IDENTITY_LATENCY_MS="${IDENTITY_LATENCY_MS:-5}" IDENTITY_MAX_IN_FLIGHT="${IDENTITY_MAX_IN_FLIGHT:-1024}"
if [ "$backend" = postgres ]; then
  # start_server replaced the EXIT trap: stop the database after the server.
  trap 'stop_server; stop_pg' EXIT
  db=$PG_URL
else
  db=$work/rush.db
fi
echo "backend: $backend"
"$dir/examples/rush" --base "$base" --admin "$token" --db "$db" --server-pid "$pid" "${args[@]}"
