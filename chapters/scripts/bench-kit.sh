#!/usr/bin/env bash
# The reference benchmark of the course: a revproxy stage beside nginx and HAProxy doing the
# same job, in front of the same three fast backends, each proxy alone on one core.
#
#   cargo build --release --workspace
#   chapters/scripts/bench-kit.sh                       # stage5, two rounds
#   STAGE=stage9 CONFIG=my.toml chapters/scripts/bench-kit.sh   # a config stage
#   ROUNDS=1 DURATION=3 chapters/scripts/bench-kit.sh   # a first look
#   TESTS="/@16 /16k.bin@64 ab16" chapters/scripts/bench-kit.sh   # some rows only
#
# What it starts (every process by PID, every one stopped on exit, also on Ctrl-C):
#   backends  127.0.0.1:19001-19003  one nginx, `/` answers "hello from N" (13 B),
#                                    /16k.bin and /1m.bin; nginx, so the backends are never
#                                    the bottleneck (our hyper demo backend would be)
#   nginx     127.0.0.1:18080        round robin, upstream keep-alive (KEEPALIVE, 256)
#   HAProxy   127.0.0.1:18081        roundrobin, http-reuse always
#   revproxy  127.0.0.1:18082        STAGE (stage5 by default: --backend x3; a config stage
#                                    gets CONFIG, or a generated file with the 3 backends)
# Pinning: wrk, ab and the backends on CPU 0, each proxy alone on CPU 1 (one worker process
# for nginx and HAProxy; revproxy's threads all on that core too).
#
# What it measures, per proxy: wrk keep-alive at CONNS (default "1 16 64 256") for the small
# body, 64 connections for 16 KiB and 1 MiB, and ab without keep-alive (a new connection per
# request) at 16 (TESTS picks some of those rows). ROUNDS rounds (default 2), the order of the proxies reversed in each second
# round. Output: one Markdown row per run, then a table of revproxy's ratio to nginx and to
# HAProxy per test and round. Judge by those ratios, never by absolute numbers from another
# run; a difference under about 10% is noise on a shared 2-core machine. c=1 measures the
# machine more than the proxy.
set -euo pipefail

BIN=${BIN:-target/release}
STAGE=${STAGE:-stage5}
CONFIG=${CONFIG:-}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
CONNS=${CONNS:-"1 16 64 256"}
AB_N=${AB_N:-10000}
TESTS=${TESTS:-}
KEEPALIVE=${KEEPALIVE:-256}
[[ $DURATION =~ ^[0-9]+$ ]] || { echo "DURATION must be a number of seconds" >&2; exit 2; }
# The peers and the clients come from the distribution (Debian's package names). As root the
# kit installs what is missing itself (INSTALL=0 to refuse); otherwise it says what to run.
declare -A package=([nginx]=nginx-light [haproxy]=haproxy [wrk]=wrk [ab]=apache2-utils [taskset]=util-linux [curl]=curl)
missing=()
for tool in nginx haproxy wrk ab taskset curl; do
  command -v "$tool" >/dev/null || missing+=("${package[$tool]}")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -eq 0 && ${INSTALL:-1} != 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "missing ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
[[ -x $BIN/$STAGE ]] || { echo "no $BIN/$STAGE: run cargo build --release --workspace" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the three backends: one nginx, three ports -------------------------------------------
mkdir -p "$tmp/www" "$tmp/b" "$tmp/n" "$tmp/h"
head -c 16384 /dev/zero | tr '\0' 'x' > "$tmp/www/16k.bin"
head -c 1048576 /dev/zero | tr '\0' 'x' > "$tmp/www/1m.bin"
temp_paths() {
  echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"
}
{
  echo "daemon off; master_process off; worker_processes 1; pid $tmp/b/pid;"
  echo "error_log $tmp/b/error.log warn; events { worker_connections 4096; }"
  echo "http { access_log off; $(temp_paths "$tmp/b") keepalive_requests 100000;"
  for n in 1 2 3; do
    echo "  server { listen 127.0.0.1:1900$n; root $tmp/www;"
    echo "    location = / { add_header X-Backend b$n; return 200 'hello from $n\n'; } }"
  done
  echo "}"
} > "$tmp/b/nginx.conf"
taskset -c 0 nginx -p "$tmp/b" -c "$tmp/b/nginx.conf" 2>/dev/null & pids+=($!)

# --- nginx and HAProxy as proxies -----------------------------------------------------------
cat > "$tmp/n/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $tmp/n/pid;
error_log $tmp/n/error.log warn; events { worker_connections 4096; }
http {
  access_log off; $(temp_paths "$tmp/n") keepalive_requests 100000;
  upstream app { server 127.0.0.1:19001; server 127.0.0.1:19002; server 127.0.0.1:19003;
                 keepalive $KEEPALIVE; }
  server { listen 127.0.0.1:18080;
    location / { proxy_pass http://app; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering on; } }
}
NGINX
taskset -c 1 nginx -p "$tmp/n" -c "$tmp/n/nginx.conf" 2>/dev/null & pids+=($!)
cat > "$tmp/h/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:18081
  default_backend app
backend app
  balance roundrobin
  server b1 127.0.0.1:19001
  server b2 127.0.0.1:19002
  server b3 127.0.0.1:19003
HAPROXY
taskset -c 1 haproxy -f "$tmp/h/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)

# --- revproxy ---------------------------------------------------------------------------------
backends=(127.0.0.1:19001 127.0.0.1:19002 127.0.0.1:19003)
if "$BIN/$STAGE" --help 2>/dev/null | grep -q -- '--config'; then
  if [[ -z $CONFIG ]]; then
    CONFIG=$tmp/revproxy.toml
    printf '[server]\nlisten = "127.0.0.1:18082"\n[upstreams.app]\nservers = ["%s", "%s", "%s"]\n[log]\nlevel = "warn"\n' \
      "${backends[@]}" > "$CONFIG"
  fi
  taskset -c 1 "$BIN/$STAGE" --config "$CONFIG" --listen 127.0.0.1:18082 --log-level warn >/dev/null 2>&1 & pids+=($!)
else
  args=()
  for b in "${backends[@]}"; do args+=(--backend "$b"); done
  taskset -c 1 "$BIN/$STAGE" --listen 127.0.0.1:18082 "${args[@]}" --log-level warn >/dev/null 2>&1 & pids+=($!)
fi

for port in 19001 19002 19003 18080 18081 18082; do
  "$here/wait-port.sh" "$port" 10 || { echo "nothing listens on $port after 10 s" >&2; exit 1; }
done
# Every proxy must actually reach every backend and serve the files whole.
for port in 18080 18081 18082; do
  seen=$(for _ in 1 2 3 4 5 6; do curl -s "http://127.0.0.1:$port/"; done | sort -u | wc -l)
  size=1048576
  # (Asked only when a row needs it: a relay that cannot frame a large body can still be
  # measured on the small rows, `examples/blocking_floor.rs`.)
  [[ -z $TESTS || $TESTS == *1m.bin* ]] && size=$(curl -s "http://127.0.0.1:$port/1m.bin" | wc -c)
  if [[ $seen -ne 3 || $size -ne 1048576 ]]; then
    echo "port $port: $seen backends seen in 6 requests, /1m.bin gave $size bytes" >&2
    exit 1
  fi
done

names=([18080]=nginx [18081]=haproxy [18082]=$STAGE)
declare -A result
measure() { # round port test -> req/s on stdout
  local port=$1 test=$2 out
  case $test in
    ab16)
      out=$(taskset -c 0 ab -q -n "$AB_N" -c 16 "http://127.0.0.1:$port/" 2>&1)
      awk '/Requests per second/ {print $4}' <<<"$out"
      ;;
    *)
      local conns=${test#*@} path=${test%@*}
      out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "http://127.0.0.1:$port$path" 2>&1)
      awk '/Requests\/sec/ {print $2}' <<<"$out"
      echo "| $(date -u +%T) | ${names[$port]} | $path c=$conns | $(awk '/Requests\/sec/ {print $2}' <<<"$out") | $(awk '$1=="50%" {print $2}' <<<"$out") | $(awk '$1=="99%" {print $2}' <<<"$out") | $(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out") |" >&2
      ;;
  esac
}
tests=()
if [[ -n $TESTS ]]; then
  read -ra tests <<<"$TESTS"
  for test in "${tests[@]}"; do
    [[ $test =~ ^(/[^@]*@[0-9]+|ab16)$ ]] || { echo "TESTS: $test is not PATH@CONNS or ab16" >&2; exit 2; }
  done
else
  for c in $CONNS; do tests+=("/@$c"); done
  tests+=("/16k.bin@64" "/1m.bin@64" ab16)
fi

echo "| time | proxy | test | req/s | p50 | p99 | errors |" >&2
echo "|---|---|---|---:|---:|---:|---|" >&2
for round in $(seq "$ROUNDS"); do
  order=(18080 18081 18082)
  ((round % 2 == 0)) && order=(18082 18081 18080)
  for test in "${tests[@]}"; do
    for port in "${order[@]}"; do
      rps=$(measure "$port" "$test")
      [[ $test == ab16 ]] && echo "| $(date -u +%T) | ${names[$port]} | ab -c16 no keep-alive | $rps | | | |" >&2
      result[$round,$port,$test]=$rps
    done
  done
done

echo
echo "revproxy ($STAGE) as a ratio to nginx and HAProxy, each alone on CPU 1, per round:"
echo
echo "| test | $(for r in $(seq "$ROUNDS"); do printf 'round %s: vs nginx | vs HAProxy | ' "$r"; done)"
echo "|---|$(for _ in $(seq "$ROUNDS"); do printf -- '---:|---:|'; done)"
for test in "${tests[@]}"; do
  label=${test/@/ c=}
  [[ $test == ab16 ]] && label="ab -c16, no keep-alive"
  row="| $label |"
  for r in $(seq "$ROUNDS"); do
    ours=${result[$r,18082,$test]:-0} ng=${result[$r,18080,$test]:-0} ha=${result[$r,18081,$test]:-0}
    row+=$(awk -v o="$ours" -v n="$ng" -v h="$ha" 'BEGIN { printf " %.2f (%d / %d) | %.2f (%d / %d) |", (n>0?o/n:0), o, n, (h>0?o/h:0), o, h }')
  done
  echo "$row"
done
