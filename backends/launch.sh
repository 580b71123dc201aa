#!/usr/bin/env bash
# Start N demo backends in the background: b1 on port 8000, b2 on 8001, ... (default N=3).
#
#   backends/launch.sh [N] [extra args for each backend, e.g. --delay-ms 20 --workers 4]
#   backends/launch.sh --only I [extra args]   # (re)start backend bI alone, e.g. after a kill
#   backends/stop.sh
#
# Builds the release binary first, records the PIDs in backends/.pids, logs to backends/.logs/,
# and returns once every port accepts connections (or fails after 10 s per backend).
# Do not pass --port or --name in the extra args: each backend gets its own.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
pids_file="$here/.pids"
logs="$here/.logs"
first_port=8000
wait_seconds=10

die() {
    echo "launch.sh: $*" >&2
    exit 1
}

# --only I: start bI alone and add its PID to .pids, beside backends that may still run, so
# that stop.sh stops it with the others.
only=""
if [[ ${1:-} == --only ]]; then
    only=${2:-}
    shift 2 || die "--only needs a backend number"
    [[ $only =~ ^[1-9][0-9]*$ ]] && ((only <= 100)) || die "--only needs a number from 1 to 100, got '$only'"
    n=$only
else
    n=${1:-3}
    if (($# > 0)); then
        shift
    fi
fi
if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 100)); then
    die "N must be a number from 1 to 100, got '$n'"
fi
first=${only:-1}

# The address to probe: the one given with --host, if any (not 0.0.0.0 or ::, which are not
# addresses one can connect to; 127.0.0.1 reaches those).
probe_host=127.0.0.1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --host) probe_host=${args[i + 1]:-$probe_host} ;;
        --host=*) probe_host=${args[i]#--host=} ;;
        --port | --port=* | --name | --name=*) die "${args[i]%%=*} is set by launch.sh" ;;
    esac
done
case $probe_host in
    0.0.0.0) probe_host=127.0.0.1 ;;
    :: | "[::]") probe_host=::1 ;;
esac

# A PID from .pids that is alive, not a zombie, and still our binary (PIDs get reused).
ours() {
    local state comm
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    comm=$(ps -o comm= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* && $comm == backends ]]
}

# Refuse to start twice: a second set would fail to bind, and the PIDs of the first be lost.
if [[ -z $only && -f $pids_file ]]; then
    live=()
    while read -r pid; do
        if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"; then
            live+=("$pid")
        fi
    done <"$pids_file"
    if ((${#live[@]} > 0)); then
        die "backends already running (PIDs ${live[*]}); run backends/stop.sh first"
    fi
    rm -f "$pids_file"
fi

echo "building the backends binary (release)..."
(cd "$root" && cargo build --release --quiet -p backends)
bin="${CARGO_TARGET_DIR:-$root/target}/release/backends"
[[ -x $bin ]] || die "built binary not found at $bin"

mkdir -p "$logs"
started=()

# On any failure, stop what this run started, so nothing is left behind unrecorded.
cleanup() {
    if ((${#started[@]} > 0)); then
        kill "${started[@]}" 2>/dev/null || true
    fi
    if [[ -z $only ]]; then
        rm -f "$pids_file"
    fi
}
trap 'cleanup' ERR

port_open() {
    # bash opens a TCP connection for /dev/tcp/HOST/PORT; on loopback it never hangs.
    (: <>"/dev/tcp/$1/$2") 2>/dev/null
}

for ((i = first; i <= n; i++)); do
    name="b$i"
    port=$((first_port + i - 1))
    "$bin" --port "$port" --name "$name" "$@" >"$logs/$name.log" 2>&1 &
    pid=$!
    started+=("$pid")
    echo "$pid" >>"$pids_file"

    ready=false
    for ((try = 0; try < wait_seconds * 10; try++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break # exited: port taken, bad flag...
        fi
        # The ready line proves this process bound the port (another may hold it); the probe,
        # that it accepts.
        if grep -q "listening on" "$logs/$name.log" && port_open "$probe_host" "$port"; then
            ready=true
            break
        fi
        sleep 0.1
    done
    if [[ $ready != true ]]; then
        echo "launch.sh: backend $name (PID $pid) is not accepting on $probe_host:$port; its log:" >&2
        sed 's/^/    /' "$logs/$name.log" >&2 || true
        cleanup
        exit 1
    fi
    echo "started $name (PID $pid) on http://$probe_host:$port  log: ${logs#"$root"/}/$name.log"
done

echo "$((n - first + 1)) backend(s) started; PIDs in ${pids_file#"$root"/}; stop them with backends/stop.sh"
