# Sourced by the benchmark scripts: a throwaway PostgreSQL server in a temporary folder, on a
# free port of 127.0.0.1 (and a Unix socket inside that folder), stopped and removed on exit.
#
#   start_pg      sets PG_URL (postgres://postgres@127.0.0.1:PORT/bench, database created),
#                 pg_dir (the folder: data/, s/ (socket), postgres.log), pg_port, pg_bin
#   stop_pg       immediate stop, then removes pg_dir (also run on exit)
#
# PG_SETTINGS adds settings, e.g. PG_SETTINGS="-c work_mem=64MB -c max_connections=800".
# PG_BIN is the folder of initdb/postgres/pg_ctl (default: pg_config --bindir if it has the
# server, else the newest /usr/lib/postgresql/*/bin). As root the server runs as the
# `postgres` user (it refuses root).
#
# stop_pg is added to the EXIT trap that is already set, so call start_pg after start_server
# (server.sh sets `trap stop_server EXIT`, which would replace this one). Whatever happens to
# the traps, a watchdog stops the server and removes the folder within ~0.5 s once this shell
# is gone, even after kill -9.

_pg_missing="PostgreSQL benchmarks need the PostgreSQL server (Debian: apt-get install postgresql; or set PG_BIN to its bin folder)"

# Runs a command as the server's user.
_pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_find_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    pg_bin=$PG_BIN
  elif command -v pg_config >/dev/null && [ -x "$(pg_config --bindir 2>/dev/null)/postgres" ]; then
    pg_bin=$(pg_config --bindir)
  else
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -n 1)
  fi
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/postgres" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "$_pg_missing" >&2
    return 1
  fi
}

start_pg() {
  _pg_find_bin || return 1
  # As root, /tmp rather than a TMPDIR the postgres user may not be able to traverse.
  local base=${TMPDIR:-/tmp}
  if [ "$(id -u)" = 0 ]; then base=/tmp; fi
  pg_dir=$(mktemp -d "$base/pg.XXXXXX")
  chmod 755 "$pg_dir"
  mkdir -m 700 "$pg_dir/data" "$pg_dir/s"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pg_dir/data" "$pg_dir/s"; fi

  # stop_pg after whatever the EXIT trap already does (e.g. stop the server that uses it).
  local prev
  prev=$(trap -p EXIT)
  if [ -n "$prev" ]; then
    eval "set -- $prev" # trap -- 'COMMANDS' EXIT
    trap -- "$3"$'\n'"stop_pg" EXIT
  else
    trap stop_pg EXIT
  fi
  # The watchdog: outside this shell's jobs (so `wait` never waits for it) and its process
  # group; polls whether this shell is alive.
  (setsid sh -c '
    while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
    if [ -f "$2/data/postmaster.pid" ]; then
      if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$3/pg_ctl" -D "$2/data" stop -m immediate -w -t 30
      else
        "$3/pg_ctl" -D "$2/data" stop -m immediate -w -t 30
      fi
    fi
    rm -rf "$2"' pg-watchdog "$$" "$pg_dir" "$pg_bin" </dev/null >/dev/null 2>&1 &)

  if ! (cd "$pg_dir" && _pg_as "$pg_bin/initdb" -D "$pg_dir/data" --auth=trust -U postgres \
    --encoding=UTF8 --locale=C --no-sync) >"$pg_dir/initdb.log" 2>&1; then
    cat "$pg_dir/initdb.log" >&2
    return 1
  fi

  : >"$pg_dir/postgres.log"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pg_dir/postgres.log"; fi
  local attempt
  for attempt in 1 2 3 4 5; do
    pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # pg_ctl -w returns once the server accepts connections, or fails (bounded by -t).
    if (cd "$pg_dir" && _pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
      -o "-p $pg_port -k $pg_dir/s -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=400 -c shared_buffers=128MB -c huge_pages=off ${PG_SETTINGS:-}" \
      start) >/dev/null 2>&1; then
      break
    fi
    # The free port was taken in between: try another.
    if [ "$attempt" -lt 5 ] && grep -q -e 'could not bind' -e 'could not create any TCP/IP sockets' "$pg_dir/postgres.log"; then
      continue
    fi
    echo "PostgreSQL did not start; its log:" >&2
    tail -n 30 "$pg_dir/postgres.log" >&2
    return 1
  done
  PG_URL="postgres://postgres@127.0.0.1:$pg_port/bench"
  local psql=$pg_bin/psql
  [ -x "$psql" ] || psql=psql
  "$psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c 'create database bench' >/dev/null
  export PG_URL
}

stop_pg() {
  if [ -n "${pg_dir:-}" ] && [ -d "$pg_dir" ]; then
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
      _pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    rm -rf "$pg_dir"
  fi
}
