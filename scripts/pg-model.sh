#!/usr/bin/env bash
# Where a cluster's booking throughput is bounded on one PostgreSQL: the commit rate of small
# durable transactions that take a place on ONE hot slot row (every node's writer waits for the
# row lock in turn) against the same on rows spread over many slots, with 1, 4 and 16 writers
# (nodes), each transaction taking 1 or 100 places (a group commit's batch: one update of
# +100 on the hot row, or about 100 rows updated in id order). pgbench on a
# throwaway server (scripts/pg.sh), synchronous_commit=on, fsync=on.
#
#   scripts/pg-model.sh [SECONDS]      (default 10 s a case)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
. scripts/pg.sh
start_pg
pgbench=$pg_bin/pgbench
psql_() { _pg_as "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d bench "$@"; }
psql_ -c "CREATE TABLE slots (id int PRIMARY KEY, capacity int NOT NULL, booked int NOT NULL DEFAULT 0 CHECK (booked <= capacity));
          INSERT INTO slots SELECT g, 2000000000, 0 FROM generate_series(1, 1000) g;"
work=$(mktemp -d); chmod 755 "$work"
trap 'rm -rf "$work"; stop_pg' EXIT
# One place per transaction.
echo 'UPDATE slots SET booked = booked + 1 WHERE id = 1 AND booked < capacity;' >"$work/hot1.sql"
printf '%s\n' '\set s random(1, 1000)' 'UPDATE slots SET booked = booked + 1 WHERE id = :s AND booked < capacity;' >"$work/spread1.sql"
# A batch of 100 places per transaction, as the writer takes them: one update per slot
# touched, in ascending id order (two writers' batches never wait for each other in a cycle).
echo 'UPDATE slots SET booked = booked + 100 WHERE id = 1 AND booked + 100 <= capacity;' >"$work/hot100.sql"
echo 'UPDATE slots SET booked = booked + 1 WHERE id = ANY (ARRAY(SELECT DISTINCT 1 + (random() * 999)::int FROM generate_series(1, 100) ORDER BY 1)) AND booked < capacity;' >"$work/spread100.sql"
chmod 644 "$work"/*.sql
printf '| rows | places a transaction | writers | transactions/s | places/s |\n|---|---:|---:|---:|---:|\n'
for f in hot1 spread1 hot100 spread100; do
  per=${f//[a-z]/}
  for c in 1 4 16; do
    tps=$(_pg_as "$pgbench" -n -h 127.0.0.1 -p "$pg_port" -U postgres -c "$c" -j "$c" -T "$secs" -f "$work/$f.sql" bench 2>/dev/null \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    rows=${f%%[0-9]*}
    printf '| %s | %s | %s | %.0f | %.0f |\n' "$rows" "$per" "$c" "$tps" "$(echo "$tps * $per" | bc)"
  done
done
