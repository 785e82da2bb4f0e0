#!/usr/bin/env bash
# Instructions per booking, split by layer, from a fixed rush: counts that do not depend on the
# machine's noise (valgrind's callgrind counts instructions, whatever else the machine does).
#
#   scripts/profile.sh [--citizens N] [--concurrency C] [--database sqlite|postgres]
#
# Builds the release server, runs it under callgrind, runs the rush (examples/rush.rs) with
# `--callgrind` so that the server's counters are zeroed as the journey phase starts and dumped
# as it ends, and prints the layers per confirmed booking (scripts/callgrind-layers.py). The
# profile stays in target/profile/ for `callgrind_annotate` or for
# `scripts/callgrind-layers.py PROFILE BOOKINGS --callees NAME`.
#
# Under valgrind the server runs 30-50 times slower and SHA-256 takes its portable code (the
# CPU's SHA extensions are not emulated), so the token layer weighs more here than natively;
# compare profiles with each other, not with wall-clock figures.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (Debian: valgrind)" >&2; exit 1; }

out_dir=target/profile
mkdir -p "$out_dir"
out="$out_dir/callgrind.$(date +%Y%m%d-%H%M%S)"
log="$out.rush.txt"
# The defaults go first: rush takes the last value of a flag given twice, so the caller's win.
SERVER_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$PWD/$out" PROFILE=release \
  scripts/rush.sh --citizens 2000 --concurrency 64 "$@" --callgrind | tee "$log"
booked=$(awk -F'|' '/^\| confirmed bookings \|/{gsub(/ /,"",$3); print $3}' "$log")
# The dump the rush asked for is part 1; the file without a suffix is the rest of the run.
python3 scripts/callgrind-layers.py "$out.1" "$booked"
echo "profile: $out.1 ($booked bookings)"
