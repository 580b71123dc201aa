#!/usr/bin/env bash
# A soak: DURATION seconds (default 600) of mixed traffic through stage 9 (GET and POST,
# keep-alive and a new connection every 5th request, cached paths and not) to two backends,
# one of which flaps (killed and restarted every 20 s). Samples the proxy's RSS, threads and
# open descriptors every 10 s. PASS when the proxy never crashed and, at the end, each is flat:
# RSS within 10% + 4 MiB of its value after warm-up, threads within +8, descriptors within
# +32 (the load's own connections come and go), and no client answer was wrong.
#
#   chapters/scripts/soak.sh                          # 10 minutes
#   DURATION=60 STAGE=stage6 BIN=target/debug chapters/scripts/soak.sh
#
# Backends: fault_backend.py; client: fault_client.py (c=32). Warm-up: the first sample at or
# after a fifth of the run (at least 20 s). Stops everything it started by PID on exit.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,14p' "$0"; exit 0; fi
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/release}
STAGE=${STAGE:-stage9}
DURATION=${DURATION:-600}
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 40 && $DURATION -le 7200 ]] || { echo "DURATION: 40 to 7200 seconds" >&2; exit 2; }
ulimit -n 8192 2>/dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

ports=("$(free_port)" "$(free_port)") names=(b1 b2)
declare -a backend_pid
start_backend() {
    python3 "$here/fault_backend.py" "${ports[$1]}" "${names[$1]}" --log "$dir/${names[$1]}.log" &
    backend_pid[$1]=$!
    pids+=("${backend_pid[$1]}")
    "$here/wait-port.sh" "${ports[$1]}" 10
}
start_backend 0
start_backend 1

proxy_port=$(free_port)
cache=""
[[ $STAGE == stage7 || $STAGE == stage9 ]] && cache=$'[cache]\nenabled = true\nmax_size = 8388608\n'
cat >"$dir/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$proxy_port"

[upstreams.app]
servers = ["127.0.0.1:${ports[0]}", "127.0.0.1:${ports[1]}"]
retries = 1
connect_timeout_ms = 1000
read_timeout_ms = 5000

[upstreams.app.health]
path = "/health"
interval_ms = 1000
timeout_ms = 500
rise = 2
fall = 2

$cache
[log]
level = "warn"
TOML
"$BIN/$STAGE" --config "$dir/proxy.toml" >"$dir/proxy.out" 2>"$dir/proxy.err" &
proxy_pid=$!
pids+=("$proxy_pid")
"$here/wait-port.sh" "$proxy_port" 10

python3 "$here/fault_client.py" "$proxy_port" -c 32 --duration "$DURATION" --post-every 5 \
    --close-every 5 --paths "/item,/cached/a,/item/b,/cached/b" --json "$dir/client.json" \
    >"$dir/client.out" &
client_pid=$!
pids+=("$client_pid")

sample() { # -> "rss_kib threads fds"
    local rss threads fds
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$proxy_pid/status" 2>/dev/null) || return 1
    threads=$(awk '/Threads/ {print $2}' "/proc/$proxy_pid/status")
    fds=$(ls "/proc/$proxy_pid/fd" | wc -l)
    echo "$rss $threads $fds"
}
warm_at=$(( DURATION / 5 < 20 ? 20 : DURATION / 5 ))
warm="" last="" crashed=no started=$SECONDS flaps=0
for tick in $(seq 10 10 $((DURATION - 5))); do
    sleep $((started + tick - SECONDS > 0 ? started + tick - SECONDS : 0))
    if ! now=$(sample); then crashed=yes; break; fi
    echo "t=${tick}s rss_kib/threads/fds: $now"
    [[ -z $warm && $tick -ge $warm_at ]] && warm=$now
    last=$now
    # The flapping backend: down at every 20 s mark, up again at the next 10 s sample.
    if (( tick % 20 == 0 )); then
        kill "${backend_pid[1]}" 2>/dev/null || true; wait "${backend_pid[1]}" 2>/dev/null || true
        flaps=$((flaps + 1))
    elif (( tick % 20 == 10 && tick > 10 )); then
        start_backend 1
    fi
done
wait "$client_pid" || true
kill -0 "$proxy_pid" 2>/dev/null || crashed=yes
grep -q panicked "$dir/proxy.err" && crashed=yes
echo "client: $(head -1 "$dir/client.out")"
sed -n '2,$p' "$dir/client.out"
verdict=$(python3 - "$warm" "$last" "$crashed" "$dir/client.json" <<'PY'
import json, sys
warm, last, crashed, client = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3], sys.argv[4]
t = json.load(open(client))["total"]
if crashed == "yes" or not warm or not last:
    print(f"FAIL crashed={crashed} warm={warm} last={last}")
    sys.exit()
(rw, tw, fw), (rl, tl, fl) = map(int, warm), map(int, last)
flat = rl <= rw * 1.10 + 4096 and tl <= tw + 8 and fl <= fw + 32
ok = flat and t["wrong"] == 0 and t["lost_get"] == 0 and t["lost_post"] == 0
print(("PASS" if ok else "FAIL") +
      f" rss_kib {rw}->{rl} threads {tw}->{tl} fds {fw}->{fl} crashes 0"
      f" requests_ok={t['get_ok'] + t['post_ok']} clear_5xx={t['clear_5xx']} wrong={t['wrong']}"
      f" lost={t['lost_get'] + t['lost_post']}")
PY
)
echo "soak ($STAGE, ${DURATION}s, $flaps flaps): $verdict"
[[ $verdict == PASS* ]]
