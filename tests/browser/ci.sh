#!/usr/bin/env bash
# The browser tests on a fresh Debian machine, as root: installs Chromium, Node and npm if they
# are missing, installs the locked test dependencies, builds the server, and runs the tests.
# Exits non-zero on any failure (a missing browser included: the tests fail, never skip).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# Korean glyphs for the screenshots: the tests pass without them, but the pictures are unreadable.
[ -n "$(fc-list :lang=ko 2>/dev/null)" ] || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "Node $node_major is too old: the tests need Node 20 or later" >&2
  exit 1
fi

cd "$here"
npm ci --no-audit --no-fund

cd "$root"
cargo build --locked
SERVER_BIN="$root/target/debug/reservation" node "$here/run.mjs"
