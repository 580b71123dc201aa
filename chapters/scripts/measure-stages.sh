#!/usr/bin/env bash
# Measures stages 1-4 (and stage 4's naive `--keep-alive hold` pool) side by side with wrk
# (keep-alive) and ab (a new connection per request), on loopback: the tables of chapters 02
# to 04 come from it. `target/release/loadtest compare` measures a different thing (a backend
# that takes 20 ms, so the concurrency models differ); this script uses a backend that answers
# at once, so the proxy's own cost per request shows.
#
# Then the keep-alive fairness test: FAIR_CLIENTS keep-alive clients (4x FAIR_WORKERS) on one
# connection each, counted per client (chapters/scripts/keepalive_fairness.py), against stage 3 and
# stage 4 with FAIR_WORKERS workers, parking and holding.
#
#   cargo build --release --workspace
#   chapters/scripts/measure-stages.sh
#   TESTS=load STAGES="stage1 stage2 stage3" DURATION=2s chapters/scripts/measure-stages.sh
#
# Settings (environment): DURATION of each wrk run (default 5s; "5" and "5s" both work),
# CONNS "16 64", AB_N 5000, AB_C 16, WORKERS 64, TESTS "load fair", STAGES (default every
# target: "direct stage1 stage2 stage3 park hold"), FAIR_WORKERS 4, FAIR_CLIENTS 16,
# FAIR_SECONDS 10. REVPROXY_QUICK=1 (the chapter runner's quick mode) makes every run short
# (AB_N 1000, FAIR_SECONDS 1) unless they are set. QUIET_MAX_WAIT=60 waits up to 60 s before
# each measurement for the other CPU load to drop under QUIET_PCT (10%); the default, 0, does
# not wait, since a shared machine is never quiet. The output is one Markdown table row per
# measurement, the same columns as the chapters' tables. Compare ratios within one run, not
# absolute numbers; run it three times to see how much a figure moves.
#
# Pinning (as the chapters say): wrk, ab and the demo backend on CPU 0, the proxy alone on
# CPU 1. Every process started here is stopped by PID on exit.
set -euo pipefail

quick=${REVPROXY_QUICK:-}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
CONNS=${CONNS:-"16 64"}
AB_N=${AB_N:-${quick:+1000}}
AB_N=${AB_N:-5000}
AB_C=${AB_C:-16}
WORKERS=${WORKERS:-64}
TESTS=${TESTS:-"load fair"}
STAGES=${STAGES:-"direct stage1 stage2 stage3 park hold"}
FAIR_WORKERS=${FAIR_WORKERS:-4}
FAIR_CLIENTS=${FAIR_CLIENTS:-16}
FAIR_SECONDS=${FAIR_SECONDS:-${quick:+1}}
FAIR_SECONDS=${FAIR_SECONDS:-10}
BIN=${BIN:-target/release}
BACKEND_PORT=${BACKEND_PORT:-19100}
PROXY_PORT=${PROXY_PORT:-19180}
[[ $DURATION =~ ^[0-9]+$ ]] || { echo "DURATION must be a number of seconds, got '$DURATION'" >&2; exit 2; }

for tool in wrk ab taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk apache2-utils util-linux)" >&2; exit 1; }
done

# Only processes still running are listed, so a PID reused after a process ended is never
# signalled.
backend_pid=""
stage_pid=""
cleanup() {
    for pid in $stage_pid $backend_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# Waits (at most 10 s) until something accepts on 127.0.0.1:$1.
# Ready when the port accepts (10 s at most): the shared helper beside this script.
wait_port() { "$(dirname "$0")/wait-port.sh" "$1" 10; }

# Percent of all CPUs busy over one second, from /proc/stat.
busy_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# The machine may be shared: wait (at most QUIET_MAX_WAIT s) until others are quiet.
wait_quiet() {
    local waited=0 busy
    (( ${QUIET_MAX_WAIT:-0} > 0 )) || return 0
    while busy=$(busy_pct); (( busy > ${QUIET_PCT:-10} && waited < ${QUIET_MAX_WAIT:-0} )); do
        waited=$((waited + 1))
    done
    (( busy <= ${QUIET_PCT:-10} )) || echo "warning: machine ${busy}% busy before measuring" >&2
}

taskset -c 0 "$BIN/backends" --port "$BACKEND_PORT" --name b1 >/dev/null &
backend_pid=$!
wait_port "$BACKEND_PORT"

# CPU time (ms) a process and its reaped children have used, from /proc/PID/stat.
cpu_ms() {
    awk -v tck="$(getconf CLK_TCK)" '{print int(($14 + $15 + $16 + $17) * 1000 / tck)}' "/proc/$1/stat"
}

# One row per run: throughput, latency, and the CPU the measured process spent per request,
# which other load on the machine disturbs far less than req/s.
measure() { # label, port, pid of the measured process
    local label=$1 port=$2 pid=$3 out before n
    for c in $CONNS; do
        wait_quiet
        before=$(cpu_ms "$pid")
        out=$(taskset -c 0 wrk -t2 -c"$c" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
        n=$(awk '/requests in/ {print $1}' <<<"$out")
        printf '| %s | wrk keep-alive c=%s | %s | %s | %s | %s | %s |\n' "$label" "$c" \
            "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
            "$(awk '$1=="50%" {print $2}' <<<"$out")" \
            "$(awk '$1=="99%" {print $2}' <<<"$out")" \
            "$(( ($(cpu_ms "$pid") - before) * 1000 / (n > 0 ? n : 1) ))" \
            "$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | tr '\n' ' ' || true)"
    done
    wait_quiet
    before=$(cpu_ms "$pid")
    out=$(taskset -c 0 ab -q -n "$AB_N" -c "$AB_C" "http://127.0.0.1:$port/" 2>&1)
    sleep 0.5 # let stage 2's last children be reaped, so their CPU is counted
    printf '| %s | ab new connection each, c=%s | %s | %s | %s | %s | %s |\n' "$label" "$AB_C" \
        "$(awk '/Requests per second/ {print $4}' <<<"$out")" \
        "$(awk '$1=="50%" {print $2"ms"}' <<<"$out")" \
        "$(awk '$1=="99%" {print $2"ms"}' <<<"$out")" \
        "$(( ($(cpu_ms "$pid") - before) * 1000 / AB_N ))" \
        "$(awk '/Failed requests|Non-2xx/ {printf "%s ", $0}' <<<"$out")"
}

start_stage() { # binary, extra args...; sets $stage_pid
    local bin=$1
    shift
    taskset -c 1 "$BIN/$bin" --listen "127.0.0.1:$PROXY_PORT" --backend "127.0.0.1:$BACKEND_PORT" \
        --log-level error "$@" >/dev/null &
    stage_pid=$!
    wait_port "$PROXY_PORT"
}
stop_stage() {
    kill "$stage_pid"
    wait "$stage_pid" 2>/dev/null || true
    stage_pid=""
}
run_stage() { # label, binary, extra args...
    local label=$1
    shift
    start_stage "$@"
    measure "$label" "$PROXY_PORT" "$stage_pid"
    stop_stage
}
fairness() { # label, binary, extra args...
    local label=$1 think
    shift
    start_stage "$@"
    for think in 50 0; do
        wait_quiet
        printf '%s: %s\n' "$label" "$(taskset -c 0 python3 "$(dirname "$0")/keepalive_fairness.py" \
            "$PROXY_PORT" --clients "$FAIR_CLIENTS" --seconds "$FAIR_SECONDS" --think-ms "$think")"
    done
    stop_stage
}

wanted() { [[ " $STAGES " == *" $1 "* ]]; }
if [[ " $TESTS " == *" load "* ]]; then
    printf '| target | test | req/s | p50 | p99 | CPU µs/req | errors |\n'
    printf '|---|---|---|---|---|---|---|\n'
    if wanted direct; then measure direct "$BACKEND_PORT" "$backend_pid"; fi
    if wanted stage1; then run_stage stage1 stage1; fi
    if wanted stage2; then run_stage stage2 stage2; fi
    if wanted stage3; then run_stage stage3 stage3; fi
    if wanted park; then run_stage "stage4 park w=$WORKERS" stage4 --workers "$WORKERS"; fi
    if wanted hold; then run_stage "stage4 hold w=$WORKERS" stage4 --workers "$WORKERS" --keep-alive hold; fi
fi
if [[ " $TESTS " == *" fair "* ]]; then
    echo
    fairness stage3 stage3
    fairness "stage4 park w=$FAIR_WORKERS" stage4 --workers "$FAIR_WORKERS"
    fairness "stage4 hold w=$FAIR_WORKERS" stage4 --workers "$FAIR_WORKERS" --keep-alive hold
fi
