# Sourced by the benchmark scripts (rush.sh, overload.sh): builds the server and one example,
# starts the server on a fresh database and a free loopback port, and stops it on exit.
#
#   start_server EXAMPLE [VAR=value ...]    (the assignments go to the server's environment)
#
# Sets `profile`, `dir` (where the binaries are), `work` (a temporary folder, removed on exit),
# `port`, `base` and `pid`. PROFILE=debug builds without optimisation. SERVER_WRAPPER runs the
# server under a command (scripts/profile.sh puts it under valgrind's callgrind).
# SERVER_BIN runs another build of the server (a before-and-after comparison).

start_server() {
  local example=$1
  shift
  profile="${PROFILE:-release}"
  if [ "$profile" = release ]; then
    cargo build --release --quiet --bin reservation --example "$example"
    dir=target/release
  else
    cargo build --quiet --bin reservation --example "$example"
    dir=target/debug
  fi
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  trap stop_server EXIT
  env DATABASE_URL="$work/$example.db" BIND_ADDR="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-warn}" \
    "$@" ${SERVER_WRAPPER:-} "${SERVER_BIN:-$dir/reservation}" > "$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 2000); do
    curl -fs "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; profile: $profile"
}

stop_server() {
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$work"
}
