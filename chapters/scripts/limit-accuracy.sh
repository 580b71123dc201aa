#!/usr/bin/env bash
# The rate limiter under 10 times overload: stage 8 limits to RATE r/s (burst 5, nodelay),
# and the load tester sends 10 x RATE requests a second on a fixed schedule (open loop) for
# SECONDS. Prints the allowed rate and how far it is from the configured one.
#
#   cargo build --release --workspace
#   chapters/scripts/limit-accuracy.sh [RATE] [SECONDS]
set -euo pipefail
rate=${1:-100} seconds=${2:-10}
BIN=${BIN:-target/release}
BACKEND_PORT=${BACKEND_PORT:-19400}
PROXY_PORT=${PROXY_PORT:-19490}
dir=$(mktemp -d)
backend_pid="" stage_pid=""
cleanup() {
    for pid in $stage_pid $backend_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT
# Ready when the port accepts (10 s at most): the shared helper beside this script.
wait_port() { "$(dirname "$0")/wait-port.sh" "$1" 10; }
cat >"$dir/limit.toml" <<TOML
[server]
listen = "127.0.0.1:$PROXY_PORT"
[upstreams.app]
servers = ["127.0.0.1:$BACKEND_PORT"]
[log]
level = "error"
[access]
limit = { rate = "${rate}r/s", burst = 5, nodelay = true }
TOML
"$BIN/backends" --port "$BACKEND_PORT" >/dev/null &
backend_pid=$!
wait_port "$BACKEND_PORT"
"$BIN/stage8" --config "$dir/limit.toml" >/dev/null 2>&1 &
stage_pid=$!
wait_port "$PROXY_PORT"
"$BIN/loadtest" --rate $((rate * 10)) -z "${seconds}s" -c 32 --json "http://127.0.0.1:$PROXY_PORT/" >"$dir/out.json"
python3 - "$dir/out.json" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rate = int(sys.argv[2])
codes = r["status_codes"]
ok, secs = codes.get("200", 0), r["total_secs"]
# GCRA allows rate x time, plus the burst and the first request.
expected = rate * secs + 5 + 1
print(f"offered {r['requests']} in {secs:.2f} s ({r['requests'] / secs:.0f}/s): "
      f"200 x {ok}, 429 x {codes.get('429', 0)}, others {r['errors_total']}")
print(f"allowed {ok / secs:.1f}/s of {rate}/s configured; {ok} against {expected:.0f} expected "
      f"({(ok - expected) / expected * 100:+.2f}%)")
PY
