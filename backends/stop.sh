#!/usr/bin/env bash
# Stop the backends started by backends/launch.sh: exactly the PIDs in backends/.pids, and only
# those still alive and still a `backends` process (a PID may have been reused since).
# Sends SIGTERM, waits up to 5 s, then SIGKILL for any that remain; removes the file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pids_file="$here/.pids"
wait_seconds=5

if [[ ! -f $pids_file ]]; then
    echo "stop.sh: nothing to stop (no ${pids_file})"
    exit 0
fi

# Alive, not a zombie, and running our binary.
ours() {
    local state comm
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    comm=$(ps -o comm= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* && $comm == backends ]]
}

targets=()
while read -r pid; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if ours "$pid"; then
        targets+=("$pid")
    else
        echo "PID $pid: already gone"
    fi
done <"$pids_file"

if ((${#targets[@]} > 0)); then
    kill -TERM "${targets[@]}" 2>/dev/null || true
    for ((try = 0; try < wait_seconds * 10; try++)); do
        remaining=()
        for pid in "${targets[@]}"; do
            if ours "$pid"; then
                remaining+=("$pid")
            fi
        done
        ((${#remaining[@]} == 0)) && break
        sleep 0.1
    done
    if ((${#remaining[@]} > 0)); then
        echo "stop.sh: still running after ${wait_seconds}s, sending SIGKILL: ${remaining[*]}" >&2
        kill -KILL "${remaining[@]}" 2>/dev/null || true
    fi
    echo "stopped PIDs ${targets[*]}"
fi

rm -f "$pids_file"
