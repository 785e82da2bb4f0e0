#!/usr/bin/env bash
# Overload in one command: builds, starts a server on a fresh database, runs the overload
# generator (examples/overload.rs) against it — capacity measured closed loop, then twice that
# offered open loop, then the time to recover — prints its table, stops the server.
#
#   scripts/overload.sh [--factor 2] [--seconds 30] [...]   (flags go to overload)
#
# PROFILE=debug builds without optimisation. Server settings (MAX_IN_FLIGHT, ...) pass
# through from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/server.sh
token=overload-admin
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_server overload ADMIN_TOKEN="$token" SECRET_KEY="$secret"
"$dir/examples/overload" --base "$base" --admin "$token" --secret "$secret" \
  --server-pid "$pid" "$@"
ticks=$(getconf CLK_TCK)
read -r ut st < <(awk '{print $14, $15}' "/proc/$pid/stat")
echo "server CPU: $(( (ut + st) / ticks )) s (user $(( ut / ticks )), system $(( st / ticks )))"
echo "server log: $(grep -c . "$work/server.log" || true) lines, of which errors: $(grep -c ERROR "$work/server.log" || true)"
