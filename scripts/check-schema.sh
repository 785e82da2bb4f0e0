#!/usr/bin/env bash
# Checks that src/db/schema.rs is what `diesel print-schema` writes for the migrations of each
# backend: SQLite (migrations/sqlite) and PostgreSQL (migrations/postgres, on a throwaway
# server). The code uses one schema module for both, so the two must also agree with each
# other: the PostgreSQL print, with its type names spelled as SQLite's (Int4 = Integer,
# Int8 = BigInt, Float8 = Double), must have the same tables and columns as the SQLite print.
# (Not the same `joinable!` lines: on PostgreSQL the bookings' references are checked by the
# writer rather than by foreign keys; see migrations/postgres/2021-09-02-*.)
#
#   scripts/check-schema.sh          (DIESEL=path/to/diesel, else `diesel` on PATH, else
#                                     installs diesel_cli 2.3.14 into target/diesel-cli)
set -euo pipefail
cd "$(dirname "$0")/.."

diesel=${DIESEL:-}
if [ -z "$diesel" ]; then
  if command -v diesel >/dev/null 2>&1; then
    diesel=diesel
  else
    # The PostgreSQL client library of the system (Debian: libpq-dev) links the CLI.
    cargo install diesel_cli --version 2.3.14 --locked --no-default-features \
      --features postgres,sqlite-bundled --root target/diesel-cli --quiet
    diesel=target/diesel-cli/bin/diesel
  fi
fi

work=$(mktemp -d)
# Not diesel.toml: `migration run` would rewrite src/db/schema.rs, the file under test.
printf '[print_schema]\n' > "$work/diesel.toml"
export DIESEL_CONFIG_FILE="$work/diesel.toml"
. scripts/pg.sh
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
start_pg >/dev/null

"$diesel" migration run --migration-dir migrations/sqlite --database-url "$work/s.db" >/dev/null
"$diesel" print-schema --database-url "$work/s.db" > "$work/sqlite.rs"
"$diesel" migration run --migration-dir migrations/postgres --database-url "$PG_URL" >/dev/null
"$diesel" print-schema --database-url "$PG_URL" > "$work/postgres.rs"

status=0
if ! diff -u src/db/schema.rs "$work/sqlite.rs"; then
  echo "src/db/schema.rs differs from what diesel print-schema gives for migrations/sqlite" >&2
  status=1
fi
sed -e 's/-> Int4/-> Integer/; s/-> Int8/-> BigInt/; s/-> Float8/-> Double/' \
  -e 's/Nullable<Int4>/Nullable<Integer>/; s/Nullable<Int8>/Nullable<BigInt>/' \
  "$work/postgres.rs" > "$work/postgres-as-sqlite.rs"
tables() { sed -n '/^diesel::table! {/,/^}/p' "$1"; }
if ! diff -u <(tables "$work/sqlite.rs") <(tables "$work/postgres-as-sqlite.rs"); then
  echo "migrations/postgres and migrations/sqlite give different schemas" >&2
  status=1
fi
[ $status = 0 ] && echo "schema: src/db/schema.rs matches both backends' migrations"
exit $status
