#!/usr/bin/env bash
# What N idle keep-alive clients cost a stage: threads, processes, memory (RSS, and PSS, which
# shares copy-on-write pages fairly between a parent and its forked children).
#
#   cargo build --release --workspace
#   chapters/scripts/idle-cost.sh stage3 1000 --max-connections 2000
#   chapters/scripts/idle-cost.sh stage4 1000
#   chapters/scripts/idle-cost.sh stage2 200 --max-children 300
#
# Starts a demo backend and the stage on loopback, opens the connections with
# chapters/scripts/idle_connections.py, reads /proc while they are held, then stops both by PID.
set -euo pipefail
stage=$1 count=$2
shift 2
BIN=${BIN:-target/release}
BACKEND_PORT=${BACKEND_PORT:-19100}
PROXY_PORT=${PROXY_PORT:-19190}
out=$(mktemp)
backend_pid="" stage_pid="" idle_pid=""
cleanup() {
    for pid in $idle_pid $stage_pid $backend_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$out"
}
trap cleanup EXIT

# Ready when the port accepts (10 s at most): the shared helper beside this script.
wait_port() { "$(dirname "$0")/wait-port.sh" "$1" 10; }

"$BIN/backends" --port "$BACKEND_PORT" >/dev/null &
backend_pid=$!
wait_port "$BACKEND_PORT"
"$BIN/$stage" --listen "127.0.0.1:$PROXY_PORT" --backend "127.0.0.1:$BACKEND_PORT" --log-level error "$@" >/dev/null &
stage_pid=$!
wait_port "$PROXY_PORT"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$stage_pid/status")

python3 "$(dirname "$0")/idle_connections.py" "$PROXY_PORT" --count "$count" --hold 5 >"$out" &
idle_pid=$!
for _ in $(seq 300); do grep -q holding "$out" && break; sleep 0.1; done
grep -q holding "$out" || { echo "the connections were not all opened" >&2; exit 1; }

children=$(ps --ppid "$stage_pid" -o pid= | tr '\n' ' ' || true)
pss=0
for pid in $stage_pid $children; do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    pss=$((pss + ${kb:-0}))
done
printf '%s, %s: RSS %s KiB before, %s KiB with them; threads %s; child processes %s (RSS sum %s KiB); PSS of all %s KiB\n' \
    "$stage" "$(cat "$out")" "$rss_before" \
    "$(awk '/VmRSS/ {print $2}' "/proc/$stage_pid/status")" \
    "$(awk '/Threads/ {print $2}' "/proc/$stage_pid/status")" \
    "$(wc -w <<<"$children")" \
    "$( (ps --ppid "$stage_pid" -o rss= || true) | awk '{s += $1} END {print s + 0}')" \
    "$pss"
