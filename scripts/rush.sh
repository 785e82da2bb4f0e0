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

profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin reservation --example rush
  dir=target/release
else
  cargo build --quiet --bin reservation --example rush
  dir=target/debug
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=rush-admin
cleanup() {
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

DATABASE_URL="$work/rush.db" BIND_ADDR="127.0.0.1:$port" ADMIN_TOKEN="$token" \
  IDENTITY_LATENCY_MS="${IDENTITY_LATENCY_MS:-5}" IDENTITY_MAX_IN_FLIGHT="${IDENTITY_MAX_IN_FLIGHT:-1024}" \
  RUST_LOG="${RUST_LOG:-warn}" "$dir/reservation" > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; profile: $profile"
"$dir/examples/rush" --base "http://127.0.0.1:$port" --admin "$token" \
  --db "$work/rush.db" --server-pid "$pid" "$@"
