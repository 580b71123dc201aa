#!/usr/bin/env bash
# Is the course's load tester the bottleneck? `loadtest -c 64` and `wrk -t2 -c64` against the
# same target, one after the other, ROUNDS times; each line gives both rates and their ratio.
#
#   cargo build --release --workspace
#   chapters/scripts/loadtest-vs-wrk.sh                  # nginx on CPU 1, the testers on CPU 0
#   PIN= chapters/scripts/loadtest-vs-wrk.sh             # testers unpinned (both cores)
#   TARGET=demo chapters/scripts/loadtest-vs-wrk.sh      # the demo backend instead of nginx
#   ORDER=reverse ROUNDS=5 DURATION=3 chapters/scripts/loadtest-vs-wrk.sh
#
# The target is the fastest thing at hand: nginx answering `return 200` from one worker on
# CPU 1 (TARGET=nginx, needs nginx), or the demo backend (TARGET=demo, a few event-loop
# threads on both cores, so it competes with the testers). A tester that keeps up with wrk
# here keeps up with any proxy, all of which are slower than this. ORDER=reverse runs the
# load tester first in each round. Every process is started here and stopped by PID on exit.
set -euo pipefail

BIN=${BIN:-target/release}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
TARGET=${TARGET:-nginx}
PIN=${PIN-taskset -c 0}
[[ $DURATION =~ ^[0-9]+$ ]] || { echo "DURATION must be a number of seconds" >&2; exit 2; }
for tool in wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk util-linux python3)" >&2; exit 1; }
done
[[ -x $BIN/loadtest ]] || { echo "no $BIN/loadtest: run cargo build --release --workspace" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
port=19031
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case $TARGET in
  nginx)
    command -v nginx >/dev/null || { echo "missing nginx (apt-get install -y nginx-light), or TARGET=demo" >&2; exit 1; }
    cat >"$tmp/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $tmp/pid;
error_log $tmp/error.log warn; events { worker_connections 4096; }
http { access_log off; client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; location = / { return 200 'hello\n'; } } }
NGINX
    taskset -c 1 nginx -p "$tmp" -c "$tmp/nginx.conf" 2>/dev/null &
    pids+=($!)
    ;;
  demo)
    taskset -c 1 "$BIN/backends" --port "$port" --name b1 >/dev/null 2>&1 &
    pids+=($!)
    ;;
  *) echo "TARGET is nginx or demo" >&2; exit 2 ;;
esac
"$here/wait-port.sh" "$port" 10

url=http://127.0.0.1:$port/
wrk_rate() { $PIN wrk -t2 -c64 -d"${DURATION}s" "$url" | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
loadtest_rate() {
  $PIN "$BIN/loadtest" -c 64 -z "${DURATION}s" --json "$url" |
    python3 -c 'import json, sys; print(round(json.load(sys.stdin)["requests_per_sec"]))'
}

echo "target $TARGET on $url; testers: ${PIN:-unpinned}; ${DURATION}s per run; order ${ORDER:-wrk first}"
for round in $(seq "$ROUNDS"); do
  if [[ ${ORDER:-} == reverse ]]; then
    l=$(loadtest_rate); w=$(wrk_rate)
  else
    w=$(wrk_rate); l=$(loadtest_rate)
  fi
  awk -v r="$round" -v w="$w" -v l="$l" \
    'BEGIN { printf "round %d: wrk -t2 -c64 %d req/s, loadtest -c64 %d req/s, loadtest/wrk %.2f\n", r, w, l, l / w }'
done
