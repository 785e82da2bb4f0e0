#!/usr/bin/env bash
# A session with curl, on a server of its own: its own empty data folder, admin token and port.
# An operator opens a cohort, a center and two slots; a citizen joins, is admitted, verifies,
# books, looks the booking up, cancels it; the operator reads the figures. Every answer is
# checked: the script stops with a non-zero status at the first one that is not as it should be,
# and it stops its server in any case. Needs curl and jq.
#   SERVER_BIN  the server binary (default: `cargo run --release --`, built first)
#   PORT        the port to listen on (default 18080; it must be free)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "session.sh needs jq (apt-get install -y jq)" >&2; exit 1; }

PORT=${PORT:-18080}
B=http://127.0.0.1:$PORT
A='Authorization: Bearer session-admin'
if curl -s -o /dev/null --max-time 2 "$B/healthz"; then
  echo "something already answers on port $PORT; set PORT to a free one" >&2
  exit 1
fi
if [ -n "${SERVER_BIN:-}" ]; then
  server=("$SERVER_BIN")
else
  cargo build --release --quiet   # so that the wait below is for the start, not the build
  server=(cargo run --release --quiet --)
fi
data=$(mktemp -d)
ADMIN_TOKEN=session-admin BIND_ADDR=127.0.0.1:$PORT DATABASE_URL=$data/db.sqlite \
  "${server[@]}" >"$data/server.log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ "${1:-0}" = 0 ] || tail -n 20 "$data/server.log" >&2
  rm -rf "$data"
}
trap 'code=$?; stop $code; exit $code' EXIT

# call STATUS CURL-ARGS...: the answer's body, if its status is STATUS; else it fails.
call() {
  local want=$1 out status
  shift
  out=$(curl -sS --max-time 10 -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  echo "$status ${out%$'\n'*}" >&2
  [ "$status" = "$want" ] || { echo "expected $want" >&2; return 1; }
  printf '%s\n' "${out%$'\n'*}"
}

# Wait (at most 30 s) until the server answers.
for _ in $(seq 300); do
  curl -sf -o /dev/null --max-time 1 "$B/healthz" && break
  kill -0 "$pid" 2>/dev/null || { echo "the server exited at start" >&2; exit 1; }
  sleep 0.1
done
call 200 "$B/healthz" >/dev/null

# operator: a cohort open now, a center, a pair of slots dose_interval_days (28) apart
COHORT=$(call 201 -XPOST "$B/api/v1/admin/cohorts" -H "$A" -d '{"name":"55-59세",
  "birth_year_from":1962,"birth_year_to":1966,"opens_at":"2021-07-12T00:00:00+09:00",
  "closes_at":"2099-12-31T00:00:00+09:00","vaccine":"Moderna","dose_interval_days":28,
  "admission_rate_per_s":100}' | jq -r .id)
CENTER=$(call 201 -XPOST "$B/api/v1/admin/centers" -H "$A" \
  -d '{"name":"종로구 예방접종센터","region":"서울","address":"삼봉로 43"}' | jq -r .id)
D1=$(jq -rn 'now + 2*86400 | strftime("%Y-%m-%d")')
D2=$(jq -rn 'now + (2+28)*86400 | strftime("%Y-%m-%d")')
SLOTS=$(call 201 -XPOST "$B/api/v1/admin/centers/$CENTER/slots" -H "$A" -d '{"slots":[
  {"date":"'"$D1"'","start_time":"10:00","end_time":"11:00","capacity":50,"vaccine":"Moderna"},
  {"date":"'"$D2"'","start_time":"10:00","end_time":"11:00","capacity":50,"vaccine":"Moderna"}]}')
FIRST=$(jq -r '.slots[0].id' <<<"$SLOTS")
SECOND=$(jq -r '.slots[1].id' <<<"$SLOTS")

# citizen: join, poll as told until admitted (at most 30 s), verify
T=$(call 201 -XPOST "$B/api/v1/cohorts/$COHORT/queue" | jq -r .ticket)
deadline=$((SECONDS + 30))
while :; do
  Q=$(call 200 "$B/api/v1/queue" -H "Authorization: Bearer $T")
  [ "$(jq -r .state <<<"$Q")" = admitted ] && break
  [ "$SECONDS" -lt "$deadline" ] || { echo "never admitted" >&2; exit 1; }
  sleep "$(jq -r .poll_after_seconds <<<"$Q")"
done
P=$(jq -r .pass <<<"$Q")
S=$(call 201 -XPOST "$B/api/v1/verifications" -H "Authorization: Bearer $P" \
  -d '{"name":"김민영","birth_date":"1965-03-01","phone":"010-1234-5678"}' | jq -r .session)

# citizen: find the center by region (percent-encoded), its slots, and book both doses
call 200 -G "$B/api/v1/centers" --data-urlencode region=서울 |
  jq -e --argjson c "$CENTER" 'map(.id) == [$c]' >/dev/null
call 200 "$B/api/v1/centers/$CENTER/slots" | jq -e 'length == 2' >/dev/null
C=$(call 201 -XPOST "$B/api/v1/bookings" -H "Authorization: Bearer $S" \
  -H 'Idempotency-Key: session-1' -d '{"slot_id":'"$FIRST"'}' |
  jq -er --argjson s "$SECOND" 'select(.state == "confirmed" and .second_dose.slot_id == $s) | .code')

# look it up, cancel it, and see the figures
call 200 -XPOST "$B/api/v1/bookings/lookup" -d '{"code":"'"$C"'","birth_date":"1965-03-01"}' |
  jq -e '.state == "confirmed" and .name == "김*영"' >/dev/null
call 200 -XPOST "$B/api/v1/bookings/$C/cancel" -d '{"birth_date":"1965-03-01"}' |
  jq -e '.state == "cancelled"' >/dev/null
call 200 "$B/api/v1/admin/stats" -H "$A" |
  jq -e '.bookings_confirmed == 0 and .bookings_cancelled == 1 and .cohorts[0].verified == 1' \
    >/dev/null
echo "session: every answer as expected"
