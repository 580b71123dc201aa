#!/usr/bin/env bash
# Run the chapters' servers in the background, and stop exactly those.
#
#   chapters/scripts/serve.sh start NAME [--port PORT] CMD [ARGS...]
#   chapters/scripts/serve.sh stop NAME
#   chapters/scripts/serve.sh stop-all
#   chapters/scripts/serve.sh pid NAME
#   chapters/scripts/serve.sh list
#
# `start` runs CMD in a process group of its own (so `cargo run` and the stage it starts stop
# together), logs its output to $STATE/NAME.log, records its PID in $STATE/NAME.pid, and, with
# --port, returns only once 127.0.0.1:PORT accepts (30 s at most; if CMD exits first, its log
# is shown and start fails). `stop` sends SIGTERM to the group, waits up to 5 s, then SIGKILL.
# STATE is $REVPROXY_SERVE_DIR, by default chapters/.serve in the repository.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${REVPROXY_SERVE_DIR:-$root/chapters/.serve}

die() {
    echo "serve.sh: $*" >&2
    exit 2
}

alive() { # PID: alive and not a zombie
    local stat
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $stat != Z* ]]
}

group_alive() { # PGID: any live member
    local stats
    stats=$(ps -o stat= -g "$1" 2>/dev/null) || return 1
    grep -qv '^Z' <<<"$stats"
}

stop_one() { # NAME
    local name=$1 pidfile="$state/$1.pid" pid
    if [[ ! -f $pidfile ]]; then
        echo "serve.sh: $name is not running (no $pidfile)"
        return 0
    fi
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && group_alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for ((try = 0; try < 50; try++)); do
            group_alive "$pid" || break
            sleep 0.1
        done
        if group_alive "$pid"; then
            echo "serve.sh: $name still running after 5 s, sending SIGKILL" >&2
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        echo "stopped $name (PID $pid)"
    else
        echo "serve.sh: $name (PID $pid) had already exited; its log: ${state#"$root"/}/$name.log"
    fi
    rm -f "$pidfile"
}

cmd=${1:-}
shift || true
case $cmd in
    start)
        name=${1:?usage: serve.sh start NAME [--port PORT] CMD...}
        shift
        [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "NAME may use letters, digits, '.', '_' and '-'"
        port=""
        if [[ ${1:-} == --port ]]; then
            port=${2:?--port needs a number}
            shift 2
        fi
        (($# > 0)) || die "start $name: no command given"
        mkdir -p "$state"
        if [[ -f $state/$name.pid ]] && group_alive "$(<"$state/$name.pid")"; then
            die "$name is already running (PID $(<"$state/$name.pid")); serve.sh stop $name first"
        fi
        log="$state/$name.log"
        # setsid: a new process group whose ID is the PID, so stop reaches every process in it.
        setsid "$@" >"$log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$state/$name.pid"
        if [[ -n $port ]]; then
            deadline=$((SECONDS + 30))
            until (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
                if ! alive "$pid" || ((SECONDS >= deadline)); then
                    echo "serve.sh: $name (PID $pid) does not accept on 127.0.0.1:$port; its log:" >&2
                    sed 's/^/    /' "$log" >&2 || true
                    stop_one "$name" >/dev/null
                    exit 1
                fi
                sleep 0.05
            done
        fi
        echo "started $name (PID $pid${port:+, 127.0.0.1:$port}); log: ${log#"$root"/}"
        ;;
    stop)
        stop_one "${1:?usage: serve.sh stop NAME}"
        ;;
    stop-all)
        shopt -s nullglob
        for f in "$state"/*.pid; do
            stop_one "$(basename "$f" .pid)"
        done
        ;;
    pid)
        name=${1:?usage: serve.sh pid NAME}
        [[ -f $state/$name.pid ]] || die "$name is not running (no $state/$name.pid)"
        cat "$state/$name.pid"
        ;;
    list)
        shopt -s nullglob
        for f in "$state"/*.pid; do
            n=$(basename "$f" .pid)
            if group_alive "$(<"$f")"; then echo "$n PID $(<"$f") running"; else echo "$n PID $(<"$f") exited"; fi
        done
        ;;
    *)
        die "usage: serve.sh start NAME [--port PORT] CMD... | stop NAME | stop-all | pid NAME | list"
        ;;
esac
