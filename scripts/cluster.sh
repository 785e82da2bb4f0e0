#!/usr/bin/env bash
# A cluster on this machine, for a person to try: a throwaway PostgreSQL, N reservation nodes
# on free loopback ports, and HAProxy in front (deploy/haproxy.cfg). Prints the URLs and waits;
# Ctrl-C (or the end of --seconds) stops everything and removes the temporary folders.
#
#   scripts/cluster.sh [--nodes N] [--port P] [--seconds S] [--rush [RUSH ARGS...]]
#       --nodes    nodes to start (default 3), named node1..nodeN
#       --port     the balancer's port on 127.0.0.1 (default 8080)
#       --seconds  stop by itself after S seconds (default: wait for Ctrl-C)
#       --kill-after S  with --rush: kill -9 node2 S seconds into the rush (what a node's
#                  death costs the rush)
#       --rush     run the midnight-rush load generator (examples/rush.rs) through the
#                  balancer instead of waiting, with the arguments after it (e.g.
#                  --citizens 200000 --concurrency 256), check the database, and stop
#
# PROFILE=debug builds without optimisation (default release). Needs the PostgreSQL server
# programs and HAProxy (Debian: apt-get install postgresql haproxy), curl and python3.
# Settings for the nodes may be given in the environment: IDENTITY_LATENCY_MS (default 5),
# RUST_LOG (default warn), WORKERS.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=3
lb_port=8080
seconds=
rush=
rush_args=()
kill_after=
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --port) lb_port=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --kill-after) kill_after=$2; shift 2 ;;
    --rush) rush=1; shift; rush_args=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$nodes" in ''|*[!0-9]*|0) echo "--nodes takes a number from 1" >&2; exit 2 ;; esac
command -v haproxy >/dev/null 2>&1 || { echo "scripts/cluster.sh needs HAProxy (apt-get install haproxy)" >&2; exit 1; }

profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin reservation ${rush:+--example rush}
  bin=target/release/reservation
else
  cargo build --quiet --bin reservation ${rush:+--example rush}
  bin=target/debug/reservation
fi

work=$(mktemp -d)
pids=()
haproxy_pid=
# Stops HAProxy, then the nodes (SIGTERM, then SIGKILL after 10 s), then (stop_pg, added to
# the EXIT trap by start_pg) the database.
stop_cluster() {
  local p i
  for p in $haproxy_pid "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 100); do
    local alive=0
    for p in $haproxy_pid "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in $haproxy_pid "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop_cluster EXIT
# Ctrl-C / kill: leave through the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

. scripts/pg.sh
start_pg # adds stop_pg after stop_cluster in the EXIT trap

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

admin_token="cluster-admin-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
secret_key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
ports=()
for i in $(seq 1 "$nodes"); do
  port=$(free_port)
  ports+=("$port")
  env DATABASE_URL="$PG_URL" SECRET_KEY="$secret_key" ADMIN_TOKEN="$admin_token" \
    BIND_ADDR="127.0.0.1:$port" NODE_NAME="node$i" TRUSTED_PROXIES=127.0.0.1 \
    IDENTITY_LATENCY_MS="${IDENTITY_LATENCY_MS:-5}" RUST_LOG="${RUST_LOG:-warn}" \
    ${WORKERS:+WORKERS=$WORKERS} \
    "$bin" >"$work/node$i.log" 2>&1 &
  pids+=($!)
done

# Each node ready (migrations run under an advisory lock, so they start together), at most 60 s.
for i in $(seq 1 "$nodes"); do
  port=${ports[$((i - 1))]}
  ok=
  for _ in $(seq 1 600); do
    if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=1; break; fi
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    echo "node$i (port $port) did not become ready; its log:" >&2
    tail -n 30 "$work/node$i.log" >&2
    exit 1
  fi
done

cfg=$work/haproxy.cfg
cp deploy/haproxy.cfg "$cfg"
for i in $(seq 1 "$nodes"); do
  echo "    server node$i 127.0.0.1:${ports[$((i - 1))]}" >>"$cfg"
done
LB_BIND="127.0.0.1:$lb_port" DEPLOY_DIR="$PWD/deploy" haproxy -q -c -f "$cfg"
LB_BIND="127.0.0.1:$lb_port" DEPLOY_DIR="$PWD/deploy" haproxy -db -f "$cfg" >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
lb="http://127.0.0.1:$lb_port"
ok=
for _ in $(seq 1 100); do
  if curl -fs "$lb/readyz" >/dev/null 2>&1; then ok=1; break; fi
  if ! kill -0 "$haproxy_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$ok" ]; then
  echo "HAProxy did not answer on $lb (port taken? try --port); its log:" >&2
  tail -n 20 "$work/haproxy.log" >&2
  exit 1
fi

echo "machine: $(nproc) cores; profile: $profile; PostgreSQL: $PG_URL"
if [ -n "$rush" ]; then
  echo "rush through the balancer $lb, $nodes node(s)"
  if [ -n "$kill_after" ] && [ "$nodes" -ge 2 ]; then
    (sleep "$kill_after"; kill -KILL "${pids[1]}" 2>/dev/null && echo "node2 killed at ${kill_after} s" >&2) &
  fi
  "$(dirname "$bin")/examples/rush" --base "$lb" --admin "$admin_token" --db "$PG_URL" "${rush_args[@]}"
  exit $?
fi
echo "balancer:    $lb"
for i in $(seq 1 "$nodes"); do
  echo "node$i:       http://127.0.0.1:${ports[$((i - 1))]}   (pid ${pids[$((i - 1))]}, log $work/node$i.log)"
done
echo "haproxy log: $work/haproxy.log"
echo "admin token: $admin_token"
echo "try:         curl -s $lb/readyz; curl -s -H 'Authorization: Bearer $admin_token' $lb/api/v1/admin/stats"
echo "             kill -9 <a node's pid> and watch the balancer keep answering"
if [ -n "$seconds" ]; then
  echo "stopping by itself in $seconds s (or Ctrl-C)"
else
  echo "Ctrl-C stops everything"
fi

started=$SECONDS
while kill -0 "$haproxy_pid" 2>/dev/null; do
  if [ -n "$seconds" ] && [ $((SECONDS - started)) -ge "$seconds" ]; then break; fi
  # In the background and waited for, so a signal interrupts the wait at once.
  sleep 1 &
  wait $! || true
done
kill -0 "$haproxy_pid" 2>/dev/null || { echo "HAProxy exited; its log:" >&2; tail -n 20 "$work/haproxy.log" >&2; exit 1; }
