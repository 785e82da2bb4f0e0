#!/usr/bin/env bash
# CI: schemathesis (pinned, from PyPI, in a virtualenv under target/) against a release server,
# every check, every phase. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/schemathesis-venv
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q 4.32.5; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt-get update && apt-get install -y python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet "schemathesis==4.32.5"
fi
cargo build --release --locked
PATH="$PWD/$VENV/bin:$PATH" python3 tests/schemathesis/run.py --max-examples "${ST_MAX_EXAMPLES:-200}" "$@"
