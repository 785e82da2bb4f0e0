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

profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin reservation --example overload
  dir=target/release
else
  cargo build --quiet --bin reservation --example overload
  dir=target/debug
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=overload-admin
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cleanup() {
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

DATABASE_URL="$work/overload.db" BIND_ADDR="127.0.0.1:$port" ADMIN_TOKEN="$token" \
  SECRET_KEY="$secret" RUST_LOG="${RUST_LOG:-warn}" "$dir/reservation" > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; profile: $profile"
"$dir/examples/overload" --base "http://127.0.0.1:$port" --admin "$token" --secret "$secret" \
  --server-pid "$pid" "$@"
ticks=$(getconf CLK_TCK)
read -r ut st < <(awk '{print $14, $15}' "/proc/$pid/stat")
echo "server CPU: $(( (ut + st) / ticks )) s (user $(( ut / ticks )), system $(( st / ticks )))"
echo "server log: $(grep -c . "$work/server.log" || true) lines, of which errors: $(grep -c ERROR "$work/server.log" || true)"
