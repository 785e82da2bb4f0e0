#!/usr/bin/env bash
# The midnight-rush benchmark in one command: builds, starts a server on a fresh database,
# runs the load generator (examples/rush.rs) against it, prints the table, stops the server.
#
#   scripts/rush.sh [--citizens N] [--concurrency C] [...]   (flags go to rush)
#
# PROFILE=debug builds without optimisation (CI checks the harness and the consistency
# check that way, not the speed). The identity provider is simulated with 5 ms latency and
# 1,024 calls in flight, so the rush measures this server rather than the simulated provider;
# override with IDENTITY_LATENCY_MS / IDENTITY_MAX_IN_FLIGHT.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/server.sh
token=rush-admin
start_server rush ADMIN_TOKEN="$token" \
  IDENTITY_LATENCY_MS="${IDENTITY_LATENCY_MS:-5}" IDENTITY_MAX_IN_FLIGHT="${IDENTITY_MAX_IN_FLIGHT:-1024}"
"$dir/examples/rush" --base "$base" --admin "$token" --db "$work/rush.db" --server-pid "$pid" "$@"
