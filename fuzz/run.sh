#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: the CI step, and a quick local check.
#   SECONDS_PER_TARGET=60 fuzz/run.sh          # all targets, 60 s each (default 20)
#   fuzz/run.sh chunked config                 # only these
# The targets are those `cargo fuzz list` names (fuzz/Cargo.toml): request_head, response_head,
# chunked, request_framing, config, http_date, path_normalise, cidr, cache_control, jwt,
# content_range.
# No sanitizer (`-s none`), so it works on a stable toolchain; the working corpus grows in
# fuzz/corpus/TARGET (ignored by git), seeded from fuzz/seeds/TARGET (committed).
# Prints one PASS/FAIL line per target and exits 1 if any target found a crash.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${SECONDS_PER_TARGET:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz missing: installing it"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# Build all targets first, so the time limit below is spent fuzzing, not compiling.
build_log="$(mktemp)"
if ! cargo fuzz build -s none >"$build_log" 2>&1; then
  tail -40 "$build_log"
  echo "FAIL build of the fuzz targets"
  exit 1
fi
rm -f "$build_log"

failed=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  started=$(date +%s)
  if cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "PASS $target: $runs runs in $(( $(date +%s) - started )) s"
  else
    failed=1
    echo "FAIL $target: see below"
    # The panic message, and the artifact with the command that replays it.
    grep -E -A4 'panicked|SUMMARY|Test unit written|cargo fuzz run' "$log" | head -40 || tail -40 "$log"
  fi
  rm -f "$log"
done
exit "$failed"
