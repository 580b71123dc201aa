#!/usr/bin/env bash
# The cost of stage 8's access checks: the same stage with access off, then with an API key
# check, an IP list of 1,000 CIDRs (none of them matching the loopback client) and a
# rate limit too high to refuse anything; c=64 keep-alive, the proxy pinned to one core and
# the load tester to another.
#
#   cargo build --release --workspace
#   chapters/scripts/access-cost.sh [SECONDS] [ROUNDS]
#
# Prints req/s of each run and the ratio; each round swaps which mode runs first.
set -euo pipefail
seconds=${1:-5} rounds=${2:-2}
BIN=${BIN:-target/release}
BACKEND_PORT=${BACKEND_PORT:-19300}
PROXY_PORT=${PROXY_PORT:-19390}
dir=$(mktemp -d)
backend_pid="" stage_pid=""
stop_stage() {
    if [ -n "$stage_pid" ]; then kill "$stage_pid" 2>/dev/null || true; wait "$stage_pid" 2>/dev/null || true; fi
    stage_pid=""
}
cleanup() {
    stop_stage
    if [ -n "$backend_pid" ]; then kill "$backend_pid" 2>/dev/null || true; wait "$backend_pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

# Ready when the port accepts (10 s at most): the shared helper beside this script.
wait_port() { "$(dirname "$0")/wait-port.sh" "$1" 10; }

base="[server]\nlisten = \"127.0.0.1:$PROXY_PORT\"\n[upstreams.app]\nservers = [\"127.0.0.1:$BACKEND_PORT\"]\n[log]\nlevel = \"error\"\n"
printf "$base" >"$dir/off.toml"
{
    printf "$base"
    printf '[access]\nauth = "key"\nlimit = { rate = "1000000r/s", burst = 100000, nodelay = true }\nip = [\n'
    # 1,000 ranges in 10.0.0.0/8, none of them loopback, then "allow all".
    for i in $(seq 0 999); do printf '  "deny 10.%d.%d.0/24",\n' $((i / 250)) $((i % 250)); done
    printf '  "allow all",\n]\n[access.keys]\nlist = [{ name = "bench", key = "bench-key-0123456789" }]\n'
} >"$dir/on.toml"

# Every answer must be a 200, or the run measured refusals instead of checks.
cat >"$dir/rps.py" <<'PY'
import json, sys
r = json.load(sys.stdin)
if set(r["status_codes"]) != {"200"} or r["errors_total"]:
    sys.exit("unexpected answers: %s, errors %s" % (r["status_codes"], r["errors"]))
print("%.0f" % r["requests_per_sec"])
PY

taskset -c 1 "$BIN/backends" --port "$BACKEND_PORT" >/dev/null &
backend_pid=$!
wait_port "$BACKEND_PORT"

run() {
    taskset -c 0 "$BIN/stage8" --config "$dir/$1.toml" >/dev/null 2>&1 &
    stage_pid=$!
    wait_port "$PROXY_PORT"
    local rps ticks
    rps=$(taskset -c 1 "$BIN/loadtest" -c 64 -z "${seconds}s" --json -H "X-API-Key: bench-key-0123456789" \
        "http://127.0.0.1:$PROXY_PORT/" | python3 "$dir/rps.py" | tr -d '\n')
    # The proxy's own CPU time (utime + stime, in clock ticks): whether the proxy's core was
    # the bottleneck or not, CPU per request is what the checks cost.
    ticks=$(awk '{print $14 + $15}' "/proc/$stage_pid/stat")
    stop_stage
    python3 -c "rps=$rps; t=$ticks/$(getconf CLK_TCK); print(rps, round(t * 1e6 / (rps * $seconds), 2))"
}

declare -A total=([off]=0 [on]=0) cpu_total=([off]=0 [on]=0)
for round in $(seq "$rounds"); do
    # Alternate which goes first, so whatever the order favours hits both.
    order="off on"
    if [ $((round % 2)) -eq 0 ]; then order="on off"; fi
    for mode in $order; do
        read -r rps cpu < <(run "$mode")
        echo "round $round, access $mode: $rps req/s, proxy CPU $cpu us per request"
        total[$mode]=$(python3 -c "print(${total[$mode]} + float('$rps'))")
        cpu_total[$mode]=$(python3 -c "print(${cpu_total[$mode]} + float('$cpu'))")
    done
done
python3 -c "off=${total[off]}; on=${total[on]}; print(f'req/s, access on / off: {on/off:.3f} ({(1-on/off)*100:.1f}% fewer)')"
python3 -c "off=${cpu_total[off]}; on=${cpu_total[on]}; print(f'proxy CPU per request, on / off: {on/off:.3f} ({(on/off-1)*100:.1f}% more)')"
