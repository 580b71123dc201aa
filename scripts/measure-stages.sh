#!/usr/bin/env bash
# Measures stages 1-4 (and stage 4's naive `--keep-alive hold` pool) side by side with wrk
# (keep-alive) and ab (a new connection per request), on loopback.
#
# A stopgap until `cargo run --release --bin loadtest -- compare` exists; the figures in
# chapters/02-04 come from this script. Compare ratios within one run, not absolute numbers.
#
#   cargo build --release --workspace
#   scripts/measure-stages.sh            # DURATION=5 CONNS="16 64" AB_N=5000 AB_C=16
#
# Pinning (as shared/bench does): wrk, ab and the demo backend on CPU 0, the proxy alone on
# CPU 1. Every process started here is stopped by PID on exit.
set -euo pipefail

DURATION=${DURATION:-5}
CONNS=${CONNS:-"16 64"}
AB_N=${AB_N:-5000}
AB_C=${AB_C:-16}
WORKERS=${WORKERS:-16}
BIN=${BIN:-target/release}
BACKEND_PORT=${BACKEND_PORT:-19100}
PROXY_PORT=${PROXY_PORT:-19180}

for tool in wrk ab taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk apache2-utils)" >&2; exit 1; }
done

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Waits (at most 10 s) until something accepts on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

taskset -c 0 "$BIN/backends" --port "$BACKEND_PORT" --name b1 --workers 16 >/dev/null &
pids+=($!)
wait_port "$BACKEND_PORT"

printf '| target | test | req/s | p50 | p99 | errors |\n|---|---|---|---|---|---|\n'
measure() { # label, port
    local label=$1 port=$2 out
    for c in $CONNS; do
        out=$(taskset -c 0 wrk -t2 -c"$c" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
        printf '| %s | wrk keep-alive c=%s | %s | %s | %s | %s |\n' "$label" "$c" \
            "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
            "$(awk '$1=="50%" {print $2}' <<<"$out")" \
            "$(awk '$1=="99%" {print $2}' <<<"$out")" \
            "$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | tr '\n' ' ' || true)"
    done
    out=$(taskset -c 0 ab -q -n "$AB_N" -c "$AB_C" "http://127.0.0.1:$port/" 2>&1)
    printf '| %s | ab new connection each, c=%s | %s | %s | %s | %s |\n' "$label" "$AB_C" \
        "$(awk '/Requests per second/ {print $4}' <<<"$out")" \
        "$(awk '$1=="50%" {print $2"ms"}' <<<"$out")" \
        "$(awk '$1=="99%" {print $2"ms"}' <<<"$out")" \
        "$(awk '/Failed requests|Non-2xx/ {printf "%s ", $0}' <<<"$out")"
}

measure direct "$BACKEND_PORT"
run_stage() { # label, binary, extra args...
    local label=$1 bin=$2
    shift 2
    taskset -c 1 "$BIN/$bin" --listen "127.0.0.1:$PROXY_PORT" --backend "127.0.0.1:$BACKEND_PORT" \
        --log-level error "$@" >/dev/null &
    local pid=$!
    pids+=("$pid")
    wait_port "$PROXY_PORT"
    measure "$label" "$PROXY_PORT"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
run_stage stage1 stage1
run_stage stage2 stage2
run_stage stage3 stage3
run_stage "stage4 park w=$WORKERS" stage4 --workers "$WORKERS"
run_stage "stage4 hold w=$WORKERS" stage4 --workers "$WORKERS" --keep-alive hold
