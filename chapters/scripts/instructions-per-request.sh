#!/usr/bin/env bash
# What one keep-alive request costs a proxy in user-space instructions: the figure that holds
# on a noisy machine. CPU time per request (cost-per-request.sh) moves by 10 to 30% between
# runs here, with the neighbours' load and the CPU's clock; the number of instructions a
# request executes does not, so a change of a few percent in the proxy's own work shows.
#
#   cargo build --release --workspace --examples
#   chapters/scripts/instructions-per-request.sh                        # stage5, stage9, the floor
#   chapters/scripts/instructions-per-request.sh stage5 stage5_before   # any binaries in $BIN
#
# Each target runs under valgrind's callgrind (Debian: valgrind) in front of three nginx
# backends, and wrk -c16 drives it twice, SHORT and LONG seconds; the count is
#   (instructions after LONG - instructions after SHORT) / (requests of LONG - those of SHORT)
# so that start-up and the warm-up cancel out. What it counts: the instructions the proxy's
# own code and its libraries execute in user space, not the kernel's work (the system calls
# and the sleeps, which are most of a small request's CPU: cost-per-request.sh counts them).
# Under valgrind the threads take turns, so every hand-off between threads happens in full
# (the parker wakes for each request), where a loaded proxy batches some of them: read the
# figure as a comparison between builds, not as what a request costs outside valgrind. Runs
# of one build agree within 1% (measured: 21,454, 21,484 and 21,622).
# Every process is started here and stopped by PID on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../../target/release}
SHORT=${SHORT:-2}
LONG=${LONG:-6}
if (($# > 0)); then targets=("$@"); else targets=(stage5 stage9 blocking_floor); fi
[[ $SHORT =~ ^[0-9]+$ && $LONG =~ ^[0-9]+$ && $LONG -gt $SHORT ]] ||
  { echo "SHORT and LONG are seconds, LONG > SHORT" >&2; exit 2; }
for tool in nginx wrk valgrind callgrind_annotate callgrind_control; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y nginx-light wrk valgrind)" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/b"
{
  echo "daemon off; master_process off; worker_processes 1; pid $tmp/b/pid;"
  echo "error_log $tmp/b/error.log warn; events { worker_connections 4096; }"
  echo "http { access_log off; keepalive_requests 1000000;"
  echo "  client_body_temp_path $tmp/b; proxy_temp_path $tmp/b; fastcgi_temp_path $tmp/b;"
  echo "  uwsgi_temp_path $tmp/b; scgi_temp_path $tmp/b;"
  for n in 1 2 3; do
    echo "  server { listen 127.0.0.1:1921$n; location = / { return 200 'hello from $n\n'; } }"
  done
  echo "}"
} >"$tmp/b/nginx.conf"
nginx -p "$tmp/b" -c "$tmp/b/nginx.conf" 2>/dev/null &
pids+=($!)
for port in 19211 19212 19213; do "$here/wait-port.sh" "$port" 10; done
printf '[server]\nlisten = "127.0.0.1:18292"\n[upstreams.app]\nservers = ["127.0.0.1:19211", "127.0.0.1:19212", "127.0.0.1:19213"]\n[log]\nlevel = "warn"\n' >"$tmp/proxy.toml"

# Runs $1 under callgrind and wrk for $2 seconds, and sets REQUESTS and INSTRUCTIONS. Called
# in this shell, not in a $(...), so that the cleanup knows the PID whatever fails.
count() {
  local binary=$1 seconds=$2 help args pid out
  help=$("$binary" --help 2>/dev/null || true)
  if [[ $help == *--config* ]]; then
    args=(--config "$tmp/proxy.toml" --log-level warn)
  else
    args=(--backend 127.0.0.1:19211 --backend 127.0.0.1:19212 --backend 127.0.0.1:19213 --log-level warn)
  fi
  rm -f "$tmp"/callgrind.*
  valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.%p" \
    "$binary" --listen 127.0.0.1:18292 "${args[@]}" >/dev/null 2>"$tmp/valgrind.log" &
  pid=$!
  pids+=("$pid")
  "$here/wait-port.sh" 18292 60 || { echo "$binary did not listen:" >&2; tail -5 "$tmp/valgrind.log" >&2; exit 1; }
  out=$(wrk -t1 -c16 -d"${seconds}s" http://127.0.0.1:18292/)
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "$binary answered with errors:" >&2
    grep -E "Non-2xx|Socket errors" <<<"$out" >&2
    exit 1
  fi
  REQUESTS=$(awk '/requests in/ {print $1}' <<<"$out")
  # A dump while it runs (`callgrind_control -d`), then the process is killed: the stages
  # stop gracefully on a signal, which would count the shutdown too.
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  INSTRUCTIONS=$(callgrind_annotate "$tmp"/callgrind.*.1 2>/dev/null |
    awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  [[ $REQUESTS =~ ^[0-9]+$ && $INSTRUCTIONS =~ ^[0-9]+$ ]] ||
    { echo "$binary: no count (requests '$REQUESTS', instructions '$INSTRUCTIONS')" >&2; exit 1; }
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/18292) 2>/dev/null || break; sleep 0.05; done
}

echo "| proxy | user-space instructions/request | requests (${SHORT} s, ${LONG} s under valgrind) |"
echo "|---|---:|---|"
for target in "${targets[@]}"; do
  binary=$BIN/$target
  [[ -x $binary ]] || binary=$BIN/examples/$target
  [[ -x $binary ]] || { echo "no $BIN/$target: cargo build --release --workspace --examples" >&2; exit 1; }
  count "$binary" "$SHORT"
  short_requests=$REQUESTS short_count=$INSTRUCTIONS
  count "$binary" "$LONG"
  long_requests=$REQUESTS long_count=$INSTRUCTIONS
  ((long_requests > short_requests)) || { echo "$target: no more requests in $LONG s than in $SHORT s" >&2; exit 1; }
  per=$(((long_count - short_count) / (long_requests - short_requests)))
  echo "| $target | $per | $short_requests, $long_requests |"
done
