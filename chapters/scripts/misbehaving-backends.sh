#!/usr/bin/env bash
# Three backends, c=64 for DURATION seconds through stage 6 (or 9), while one backend is
# killed, restarted, made to answer garbage, reset connections, then stall. PASS when no
# idempotent request is lost, no POST reached the backends twice, every POST answered 200
# reached them once, and every client response is correct or a clear 502/503/504.
#
#   chapters/scripts/misbehaving-backends.sh            # DURATION=60 by default
#   DURATION=20 STAGE=stage9 chapters/scripts/misbehaving-backends.sh
#   BIN=target/debug chapters/scripts/misbehaving-backends.sh   (default BIN: target/release)
#
# Backends: chapters/scripts/fault_backend.py (logs every request it receives with its X-Id,
# whatever it then does). Client: chapters/scripts/fault_client.py. Everything started here is
# stopped by PID on exit.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,14p' "$0"; exit 0; fi
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release}
STAGE=${STAGE:-stage6}
DURATION=${DURATION:-60}
CONCURRENCY=${CONCURRENCY:-64}
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 10 ]] || { echo "DURATION: seconds, at least 10" >&2; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
ulimit -n 8192 2>/dev/null || true

ports=() names=(b1 b2 b3)
for i in 0 1 2; do ports+=("$(free_port)"); done
start_backend() { # index
    python3 "$here/fault_backend.py" "${ports[$1]}" "${names[$1]}" --log "$dir/${names[$1]}.log" \
        --mode-file "$dir/${names[$1]}.mode" &
    backend_pid[$1]=$!
    pids+=("${backend_pid[$1]}")
    "$here/wait-port.sh" "${ports[$1]}" 10
}
declare -a backend_pid
for i in 0 1 2; do start_backend "$i"; done

proxy_port=$(free_port)
cat >"$dir/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$proxy_port"
workers = 64
queue = 512

[upstreams.app]
servers = ["127.0.0.1:${ports[0]}", "127.0.0.1:${ports[1]}", "127.0.0.1:${ports[2]}"]
retries = 2
connect_timeout_ms = 1000
read_timeout_ms = 2000        # a stalled backend becomes a 504 after 2 s

[upstreams.app.health]
path = "/health"
interval_ms = 500
timeout_ms = 400
rise = 2
fall = 2

[log]
level = "warn"
TOML
"$BIN/$STAGE" --config "$dir/proxy.toml" >"$dir/proxy.out" 2>"$dir/proxy.err" &
proxy_pid=$!
pids+=("$proxy_pid")
"$here/wait-port.sh" "$proxy_port" 10

python3 "$here/fault_client.py" "$proxy_port" -c "$CONCURRENCY" --duration "$DURATION" \
    --json "$dir/client.json" >"$dir/client.out" &
client_pid=$!
pids+=("$client_pid")

# The faults, on b2, spread over the run: each phase a sixth of it.
phase=$((DURATION / 6))
victim=1
sleep "$phase"; echo "fault: kill ${names[$victim]}"; kill "${backend_pid[$victim]}"; wait "${backend_pid[$victim]}" 2>/dev/null || true
sleep "$phase"; echo "fault: restart ${names[$victim]}"; start_backend "$victim"
sleep "$phase"; echo "fault: ${names[$victim]} answers garbage"; echo garbage >"$dir/${names[$victim]}.mode"
sleep "$phase"; echo "fault: ${names[$victim]} resets connections"; echo reset >"$dir/${names[$victim]}.mode"
sleep "$phase"; echo "fault: ${names[$victim]} stalls"; echo stall >"$dir/${names[$victim]}.mode"
wait "$client_pid"
echo "client: $(head -1 "$dir/client.out")"
sed -n '2,$p' "$dir/client.out"

alive=yes
kill -0 "$proxy_pid" 2>/dev/null || alive=no
verdict=$(python3 - "$dir" <<'PY'
import collections, json, sys
d = sys.argv[1]
seen = collections.Counter()
received = 0
for name in ("b1", "b2", "b3"):
    try:
        for line in open(f"{d}/{name}.log"):
            method, rid, _mode = line.split()
            if method == "POST":
                seen[rid] += 1
                received += 1
    except FileNotFoundError:
        pass
client = json.load(open(f"{d}/client.json"))
t = client["total"]
twice = [rid for rid, n in seen.items() if n > 1]
missing = [rid for rid in client["posts_answered"] if seen[rid] != 1]
ok = (t["lost_get"] == 0 and t["lost_post"] == 0 and t["wrong"] == 0 and not twice and not missing
      and t["get_ok"] > 0 and t["threads_done"] > 0)
print(("PASS" if ok else "FAIL") +
      f" lost_get={t['lost_get']} lost_post={t['lost_post']} wrong={t['wrong']}"
      f" clear_5xx={t['clear_5xx']} get_ok={t['get_ok']} post_ok={t['post_ok']}"
      f" posts_at_backends={received} posts_twice={len(twice)} answered_posts_not_seen_once={len(missing)}")
PY
)
[[ $alive == yes ]] || verdict="FAIL the proxy died; ${verdict#* }"
echo "misbehaving-backends ($STAGE, c=$CONCURRENCY, ${DURATION}s): $verdict"
[[ $verdict == PASS* ]]
