#!/usr/bin/env bash
# The rebooking benchmark: a SQLite database of BOOKINGS live bookings (default 1,000,000)
# written straight by bulk SQL (scripts/rebook-seed.sql, no HTTP), the release server started
# on it, a 14-day second-dose shift job started, and the time until the job is done measured,
# while a modest citizen load (examples/rush.rs in open loop: joins, polls, bookings) runs
# against the same server and reports its latencies (p99). The same load runs first for
# --baseline-citizens citizens with no job (the latencies to compare with); the load during
# the job should last about as long as the job (K / R seconds).
#
#   scripts/rebook-bench.sh [--database sqlite|postgres] [--bookings N] [--centers C]
#                           [--arrival-rate R] [--citizens K] [--baseline-citizens B]
#                           [--deadline SECONDS]
#
# --database postgres seeds a throwaway PostgreSQL server (scripts/pg.sh) with
# scripts/rebook-seed-pg.sql through psql instead.
#
# It gives up (exit 1) if the job is not done within --deadline seconds (default 1800).
#
# Needs sqlite3 (or psql) and curl, jq, bc. PROFILE=debug builds without optimisation.
set -euo pipefail
cd "$(dirname "$0")/.."

bookings=1000000
centers=200
rate=50
citizens=15000
baseline=3000
deadline=1800
backend=sqlite
while [ $# -gt 0 ]; do
  case "$1" in
    --bookings) bookings=$2; shift 2 ;;
    --centers) centers=$2; shift 2 ;;
    --arrival-rate) rate=$2; shift 2 ;;
    --citizens) citizens=$2; shift 2 ;;
    --baseline-citizens) baseline=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --database) backend=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done

. scripts/server.sh
token=rebook-bench-admin
# First start: the server creates and migrates the file; then it is stopped and the bulk
# data written into it.
case "$backend" in
  sqlite) db_env=() ;;
  postgres)
    . scripts/pg.sh
    start_pg
    db_env=(DATABASE_URL="$PG_URL" DB_POOL_SIZE="${DB_POOL_SIZE:-16}")
    ;;
  *) echo "--database is sqlite or postgres, not $backend" >&2; exit 2 ;;
esac
start_server rush ADMIN_TOKEN=$token SECRET_KEY=rebook-bench-secret "${db_env[@]}"
if [ "$backend" = postgres ]; then
  # start_server replaced the EXIT trap: stop the database after the server.
  trap 'stop_server; stop_pg' EXIT
  db=$PG_URL
else
  db="$work/rush.db"
fi
kill -TERM "$pid"; wait "$pid" || true
places=$(( bookings / (centers * 14) + 2 ))
base_day=$(TZ=Asia/Seoul date -d tomorrow +%F)
t0=$(date +%s.%N)
subst="s/@BOOKINGS@/$bookings/g; s/@CENTERS@/$centers/g; s/@PLACES@/$places/g; s/@BASE@/$base_day/g"
if [ "$backend" = postgres ]; then
  sed -e "$subst" scripts/rebook-seed-pg.sql | psql -q -v ON_ERROR_STOP=1 "$db" >/dev/null
  size=$(psql -tA "$db" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
else
  sed -e "$subst" scripts/rebook-seed.sql | sqlite3 "$db"
  size=$(du -h "$db" | cut -f1)
fi
t1=$(date +%s.%N)
echo "seeded $bookings bookings over $centers centers in $(echo "$t1 - $t0" | bc) s ($size)"

env DATABASE_URL="$db" BIND_ADDR="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-warn}" \
  ADMIN_TOKEN=$token SECRET_KEY=rebook-bench-secret "${db_env[@]}" "$dir/reservation" \
  >> "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 2000); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.05; done

if [ "$baseline" -gt 0 ]; then
  echo "citizen load with no job (rush --arrival-rate $rate --citizens $baseline):"
  "$dir/examples/rush" --base "$base" --admin "$token" --citizens "$baseline" --concurrency 64 \
    --arrival-rate "$rate"
fi

start=$(date +%s.%N)
job=$(curl -fs -X POST "$base/api/v1/admin/rebookings" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"vaccine": "Moderna", "second_dose_shift_days": 14}' | jq .id)
echo "job $job started at $base"
"$dir/examples/rush" --base "$base" --admin "$token" --citizens "$citizens" --concurrency 64 \
  --arrival-rate "$rate" > "$work/rush.out" 2>&1 &
rush=$!
while :; do
  v=$(curl -fs "$base/api/v1/admin/rebookings/$job" -H "Authorization: Bearer $token" || echo '{}')
  state=$(echo "$v" | jq -r .state)
  [ "$state" = done ] && break
  if [ "$(echo "$(date +%s.%N) - $start > $deadline" | bc)" = 1 ]; then
    echo "the job was not done within $deadline s: $v" >&2
    kill "$rush" 2>/dev/null || true
    exit 1
  fi
  sleep 1
done
end=$(date +%s.%N)
secs=$(echo "$end - $start" | bc)
echo "job done: $v"
echo "rebooking: $(echo "$v" | jq .moved) moved in $secs s ($(echo "$(echo "$v" | jq .moved) / $secs" | bc) moves/s)"
wait "$rush" || true
echo "citizen load during the job (rush --arrival-rate $rate --citizens $citizens):"
cat "$work/rush.out"
grep -E "^rebooking_" <(curl -fs "$base/metrics") || true
