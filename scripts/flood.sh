#!/usr/bin/env bash
# The join-flood benchmark (issue 17) in one command: starts a server on a fresh SQLite
# database with the default settings, runs examples/flood.rs against it, prints its table,
# stops the server.
#
#   scripts/flood.sh [--flood-seconds 10] [--citizens 1000] [--rate 100] [--difficulty N] [...]
#
# `--flood-seconds 0` is the baseline (no flood). Server settings can be given in the
# environment as for the server (ABSENT_AFTER_SECONDS=…, JOINS_PER_MINUTE=…).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/server.sh
token=flood-admin
passthrough=()
for v in ABSENT_AFTER_SECONDS JOINS_PER_MINUTE MAX_IN_FLIGHT; do
  if [ -n "${!v:-}" ]; then passthrough+=("$v=${!v}"); fi
done
start_server flood ADMIN_TOKEN="$token" "${passthrough[@]}"
"$dir/examples/flood" --base "$base" --admin "$token" "$@"
