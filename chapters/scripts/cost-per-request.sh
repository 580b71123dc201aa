#!/usr/bin/env bash
# What one keep-alive request costs each proxy: CPU time, system calls and context switches
# per request, counted on the proxy's process while wrk drives it, next to req/s and p99.
# Throughput on a shared machine says how much CPU a proxy was given; CPU per request says
# what it did with it, and holds much better from run to run.
#
#   cargo build --release --workspace
#   chapters/scripts/cost-per-request.sh                      # stage4 to stage9, then nginx
#   chapters/scripts/cost-per-request.sh stage5 nginx         # some of them
#   ROUNDS=3 DURATION=5 CONNS=64 chapters/scripts/cost-per-request.sh stage5 stage9 nginx
#   IDLE=10000 chapters/scripts/cost-per-request.sh stage5   # beside 10,000 idle clients
#   chapters/scripts/cost-per-request.sh blocking_floor stage5 nginx   # and the floor (build
#                                         it first: cargo build --release --examples); parsing_floor
#                                         is the floor that also parses both heads
#   chapters/scripts/cost-per-request.sh stage5 stage5-hold   # stage 5 without its parker
#                                         (--keep-alive hold): what the hand-off costs (its 64
#                                         workers each hold a connection: CONNS and IDLE under 64)
#
# Each proxy runs alone on CPU 1 in front of three nginx backends on CPU 0, with wrk on CPU 0
# (one thread, CONNS connections, DURATION seconds, after a 1 s warm-up). The config stages
# get a file with the three backends and nothing else turned on (no cache, no rules, one
# route), so the table shows what each layer costs when its features are off. With `perf`
# (Debian: linux-perf) the counts come from the kernel's tracepoints; without it, CPU and
# context switches come from /proc and the system calls column says "-". The split of the
# CPU into user space and the kernel always comes from /proc (100 Hz ticks, over wrk's run;
# perf's total covers a second more), so the two do not quite add up. With IDLE=N, N idle
# keep-alive clients (chapters/scripts/idle_connections.py, one request each) are held open
# during the measurement, and the proxy's RSS with them is printed (`ulimit -n` must allow).
# Every process is started here and stopped by PID on exit.
set -euo pipefail

BIN=${BIN:-target/release}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
CONNS=${CONNS:-64}
if (($# > 0)); then targets=("$@"); else targets=(stage4 stage5 stage6 stage7 stage8 stage9 nginx); fi
[[ $DURATION =~ ^[0-9]+$ ]] || { echo "DURATION must be a number of seconds" >&2; exit 2; }
for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y nginx-light wrk util-linux)" >&2; exit 1; }
done
use_perf=false
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
  use_perf=true
fi
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

temp_paths() {
  echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"
}
mkdir -p "$tmp/b" "$tmp/n"
{
  echo "daemon off; master_process off; worker_processes 1; pid $tmp/b/pid;"
  echo "error_log $tmp/b/error.log warn; events { worker_connections 4096; }"
  echo "http { access_log off; $(temp_paths "$tmp/b") keepalive_requests 1000000;"
  for n in 1 2 3; do
    echo "  server { listen 127.0.0.1:1920$n; location = / { return 200 'hello from $n\n'; } }"
  done
  echo "}"
} >"$tmp/b/nginx.conf"
taskset -c 0 nginx -p "$tmp/b" -c "$tmp/b/nginx.conf" 2>/dev/null &
pids+=($!)
cat >"$tmp/n/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $tmp/n/pid;
error_log $tmp/n/error.log warn; events { worker_connections 4096; }
http {
  access_log off; $(temp_paths "$tmp/n") keepalive_requests 1000000;
  upstream app { server 127.0.0.1:19201; server 127.0.0.1:19202; server 127.0.0.1:19203;
                 keepalive 256; }
  server { listen 127.0.0.1:18282;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
printf '[server]\nlisten = "127.0.0.1:18282"\n[upstreams.app]\nservers = ["127.0.0.1:19201", "127.0.0.1:19202", "127.0.0.1:19203"]\n[log]\nlevel = "warn"\n' >"$tmp/proxy.toml"
for port in 19201 19202 19203; do "$here/wait-port.sh" "$port" 10; done

# Starts one target on 127.0.0.1:18282, alone on CPU 1; prints its PID.
start_target() {
  local target=$1
  case $target in
    nginx) taskset -c 1 nginx -p "$tmp/n" -c "$tmp/n/nginx.conf" >/dev/null 2>&1 & ;;
    stage4) taskset -c 1 "$BIN/stage4" --listen 127.0.0.1:18282 --backend 127.0.0.1:19201 --log-level warn >/dev/null 2>&1 & ;;
    stage5) taskset -c 1 "$BIN/stage5" --listen 127.0.0.1:18282 --backend 127.0.0.1:19201 \
      --backend 127.0.0.1:19202 --backend 127.0.0.1:19203 --log-level warn >/dev/null 2>&1 & ;;
    # Stage 5 whose workers keep their connections (no parker): what the hand-off costs.
    stage5-hold) taskset -c 1 "$BIN/stage5" --keep-alive hold --listen 127.0.0.1:18282 \
      --backend 127.0.0.1:19201 --backend 127.0.0.1:19202 --backend 127.0.0.1:19203 \
      --log-level warn >/dev/null 2>&1 & ;;
    # The relay with no HTTP in it (examples/blocking_floor.rs): the floor of the model; and
    # the same relay parsing both heads (examples/parsing_floor.rs): an HTTP proxy's floor.
    blocking_floor | parsing_floor) taskset -c 1 "$BIN/examples/$target" --listen 127.0.0.1:18282 \
      --backend 127.0.0.1:19201 --backend 127.0.0.1:19202 --backend 127.0.0.1:19203 >/dev/null 2>&1 & ;;
    stage*) taskset -c 1 "$BIN/$target" --config "$tmp/proxy.toml" >/dev/null 2>&1 & ;;
    *) echo "unknown target $target (stage4 to stage9, stage5-hold, blocking_floor, parsing_floor, or nginx)" >&2; return 1 ;;
  esac
  echo $!
}

# CPU ticks in user space and in the kernel, and context switches, of every thread of $1,
# from /proc.
proc_counts() {
  local pid=$1 ticks switches
  ticks=$(awk '{print $14, $15}' "/proc/$pid/stat")
  switches=$(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')
  echo "$ticks $switches"
}
# Clock ticks as µs per request: TICKS REQUESTS ("-" when no request completed).
per_request_us() { awk -v t="$1" -v hz="$hz" -v r="${2:-0}" 'BEGIN {if (r > 0) printf "%.1f", t * 1e6 / hz / r; else print "-"}'; }

echo "| round | proxy | req/s | p99 | CPU µs/request | of it user, system | syscalls/request | context switches/request |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
  order=("${targets[@]}")
  if ((round % 2 == 0)); then # every second round in reverse order
    order=()
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[i]}"); done
  fi
  for target in "${order[@]}"; do
    binary=$BIN/$target
    [[ $target == *_floor ]] && binary=$BIN/examples/$target
    [[ $target == stage5-hold ]] && binary=$BIN/stage5
    [[ $target == nginx || -x $binary ]] || { echo "no $binary: cargo build --release --workspace --examples" >&2; exit 1; }
    pid=$(start_target "$target")
    pids+=("$pid")
    "$here/wait-port.sh" 18282 10
    if [[ -n ${IDLE:-} ]]; then
      taskset -c 0 python3 "$here/idle_connections.py" 18282 --count "$IDLE" --hold $((DURATION + 10)) >"$tmp/idle" &
      pids+=($!)
      for _ in $(seq 1200); do grep -q holding "$tmp/idle" && break; sleep 0.1; done
      grep -q holding "$tmp/idle" || { echo "the $IDLE idle connections were not all opened" >&2; exit 1; }
      echo "$target: $(cat "$tmp/idle"), RSS $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") KiB" >&2
    fi
    taskset -c 0 wrk -t1 -c"$CONNS" -d1s http://127.0.0.1:18282/ >/dev/null
    if $use_perf; then
      perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pid" \
        -o "$tmp/stat" -- sleep $((DURATION + 1)) &
      counter=$!
    fi
    # The split between user space (the proxy's own work) and the kernel (system calls and
    # wake-ups) comes from /proc in either case: 100 Hz ticks, enough over DURATION seconds.
    read -r user0 system0 switches0 < <(proc_counts "$pid")
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency http://127.0.0.1:18282/)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    read -r user1 system1 switches1 < <(proc_counts "$pid")
    user_system_us="$(per_request_us $((user1 - user0)) "$requests"), $(per_request_us $((system1 - system0)) "$requests")"
    if $use_perf; then
      wait "$counter"
      read -r cpu syscalls switches < <(awk -F, '$3=="task-clock" {c=$1} $3=="context-switches" {s=$1}
        $3=="raw_syscalls:sys_enter" {y=$1} END {print c, y, s}' "$tmp/stat")
      cpu_us=$(awk -v c="$cpu" -v r="${requests:-0}" 'BEGIN {if (r > 0) printf "%.1f", c * 1000 / r; else print "-"}')
      per_syscalls=$(awk -v y="$syscalls" -v r="${requests:-0}" 'BEGIN {if (r > 0) printf "%.1f", y / r; else print "-"}')
    else
      cpu_us=$(per_request_us $((user1 - user0 + system1 - system0)) "$requests")
      switches=$((switches1 - switches0))
      per_syscalls=-
    fi
    per_switches=$(awk -v s="$switches" -v r="${requests:-0}" 'BEGIN {if (r > 0) printf "%.2f", s / r; else print "-"}')
    echo "| $round | $target | $(awk '/Requests\/sec/ {print $2}' <<<"$out") | $(awk '$1=="99%" {print $2}' <<<"$out") | $cpu_us | $user_system_us | $per_syscalls | $per_switches |"
    grep -E "Non-2xx|Socket errors" <<<"$out" >&2 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/18282) 2>/dev/null || break; sleep 0.05; done
  done
done
