#!/usr/bin/env bash
# Slow clients at scale: 2,000 connections that trickle a request head one byte a second, or
# open and send nothing, against 16 normal keep-alive clients (the loadtest binary). Measures
# the p99 latency of the 16 without the slow ones, then with them. PASS when with <= 2x
# without, for stage 4 and later; stages 2 and 3 run to their caps (--max-children,
# --max-connections) and their numbers are printed, with no verdict.
#
#   chapters/scripts/slow-clients.sh                       # stage4, 20 s per measurement
#   STAGES="stage2 stage3 stage4" DURATION=10 chapters/scripts/slow-clients.sh
#   STAGES="stage4 stage9" chapters/scripts/slow-clients.sh   # stages 6-9 get a config file
#   SLOW=2000 BIN=target/debug chapters/scripts/slow-clients.sh  (default BIN: target/release)
#
# Starts a demo backend and each stage on free loopback ports; stops everything it started
# by PID on exit.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,14p' "$0"; exit 0; fi
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release}
STAGES=${STAGES:-stage4}
DURATION=${DURATION:-20}
SLOW=${SLOW:-2000}
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 2 && $DURATION -le 600 ]] || { echo "DURATION: 2 to 600 seconds" >&2; exit 2; }
# Each slow client is a descriptor here and one in the proxy.
ulimit -n $((SLOW * 2 + 1024)) || { echo "cannot raise ulimit -n to $((SLOW * 2 + 1024))" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

backend_port=$(free_port)
"$BIN/backends" --port "$backend_port" --name b1 >/dev/null 2>&1 &
pids+=($!)
"$here/wait-port.sh" "$backend_port" 10

p99() { # port label -> prints p99 in microseconds and the error count
    # A stage at its cap may not let the load tester connect at all: that is a result too.
    if ! "$BIN/loadtest" -c 16 -z "${DURATION}s" --json "http://127.0.0.1:$1/" >"$dir/$2.json" 2>"$dir/$2.err"; then
        echo "unreachable -"
        return 0
    fi
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); e=j.get("errors", 0); print(j["latency_us"]["p99"], sum(e.values()) if isinstance(e, dict) else e)' "$dir/$2.json"
}

status=0
for stage in $STAGES; do
    case $stage in
        stage2) extra=(--max-children 256) ;;
        stage3) extra=(--max-connections 512) ;;
        *) extra=() ;;
    esac
    port=$(free_port)
    case $stage in
        stage[6-9]) # the config stages: a file with the backend and nothing else turned on
            printf '[server]\nlisten = "127.0.0.1:%s"\n[upstreams.app]\nservers = ["127.0.0.1:%s"]\n[log]\nlevel = "error"\n' \
                "$port" "$backend_port" >"$dir/$stage.toml"
            args=(--config "$dir/$stage.toml") ;;
        *) args=(--listen "127.0.0.1:$port" --backend "127.0.0.1:$backend_port" --log-level error) ;;
    esac
    "$BIN/$stage" "${args[@]}" "${extra[@]}" >/dev/null 2>"$dir/$stage.err" &
    stage_pid=$!
    pids+=("$stage_pid")
    "$here/wait-port.sh" "$port" 10
    read -r without without_err < <(p99 "$port" "$stage-without")
    python3 "$here/slow_clients.py" "$port" --count "$SLOW" --hold $((DURATION + 30)) >"$dir/slow.out" &
    slow_pid=$!
    pids+=("$slow_pid")
    for _ in $(seq 600); do grep -q holding "$dir/slow.out" && break; sleep 0.1; done
    grep -q holding "$dir/slow.out" || { echo "the slow clients did not open" >&2; exit 1; }
    sleep 2 # let the trickle start: every slow connection has sent its first bytes
    read -r with with_err < <(p99 "$port" "$stage-with")
    threads=$(awk '/Threads/ {print $2}' "/proc/$stage_pid/status")
    kill "$slow_pid" 2>/dev/null || true; wait "$slow_pid" 2>/dev/null || true
    kill "$stage_pid" 2>/dev/null || true; wait "$stage_pid" 2>/dev/null || true
    if [[ $with =~ ^[0-9]+$ && $without =~ ^[0-9]+$ ]]; then
        ratio=$(python3 -c "print(f'{$with / max($without, 1):.2f}')")
    else
        ratio=none
    fi
    line="$stage: p99 of 16 keep-alive clients ${without} us alone (errors $without_err), ${with} us beside $SLOW slow clients (errors $with_err), ratio $ratio; proxy threads $threads; $(head -1 "$dir/slow.out")"
    case $stage in
        stage2|stage3) echo "CAPPED $line" ;;
        *)
            if [[ $ratio != none ]] && python3 -c "import sys; sys.exit(0 if $with <= 2 * $without and $with_err == 0 else 1)"; then
                echo "PASS $line"
            else
                echo "FAIL $line"; status=1
            fi ;;
    esac
done
exit "$status"
