#!/usr/bin/env bash
# The reference benchmark of the course: a revproxy stage beside nginx, HAProxy and Apache
# httpd doing the same job, in front of the same three fast backends, each proxy alone on one
# core.
#
#   cargo build --release --workspace
#   chapters/scripts/bench-kit.sh                       # stage5, two rounds
#   STAGE=stage9 CONFIG=my.toml chapters/scripts/bench-kit.sh   # a config stage
#   ROUNDS=1 DURATION=3 chapters/scripts/bench-kit.sh   # a first look
#   TESTS="/@16 /16k.bin@64 ab16" chapters/scripts/bench-kit.sh   # some rows only
#   PROXIES="nginx apache-event" chapters/scripts/bench-kit.sh    # some peers only
#   PROXIES= ALSO="stage9 examples/blocking_floor" chapters/scripts/bench-kit.sh
#                          # stage 5, stage 9 and the floor in one run, each as a ratio to the floor
#   ROUNDS=6 DURATION=3 ...  # more, shorter rounds: the median ratio shrugs off a noisy one
#
# What it starts (every process by PID, every one stopped on exit, also on Ctrl-C):
#   backends  127.0.0.1:19001-19003  one nginx, `/` answers "hello from N" (13 B),
#                                    /16k.bin and /1m.bin; nginx, so the backends are never
#                                    the bottleneck (our hyper demo backend would be)
#   nginx     127.0.0.1:18080        round robin, upstream keep-alive (KEEPALIVE, 256)
#   HAProxy   127.0.0.1:18081        roundrobin, http-reuse always
#   revproxy  127.0.0.1:18082        STAGE (stage5 by default: --backend x3; a config stage
#                                    gets CONFIG, or a generated file with the 3 backends)
#             127.0.0.1:18085...     each binary of ALSO (paths under BIN), the same way
#   Apache    127.0.0.1:18083        httpd 2.4, mpm_event: a pool of threads and a listener
#                                    thread that parks idle keep-alive connections (stage 4/5's
#                                    design); mod_proxy_balancer, byrequests, kept upstream
#                                    connections
#   Apache    127.0.0.1:18084        the same under mpm_worker: a thread holds its connection
#                                    (stage 4's --keep-alive hold)
#   Both Apache servers are one child process (StartServers 1, ServerLimit 1) of
#   APACHE_THREADS threads (default 320, more than the largest CONNS), plus the parent.
# PROXIES picks the peers (default "nginx haproxy apache-event apache-worker"); STAGE always
# runs. Pinning: wrk, ab and the backends on CPU 0, each proxy alone on CPU 1 (one worker
# process for nginx and HAProxy, one child for Apache; revproxy's threads all on that core too).
#
# What it measures, per proxy: wrk keep-alive at CONNS (default "1 16 64 256") for the small
# body, 64 connections for 16 KiB and 1 MiB, and ab without keep-alive (a new connection per
# request) at 16 (TESTS picks some of those rows). ROUNDS rounds (default 2), the order of the
# proxies reversed in each second round. Around each run it reads each proxy's CPU time from
# /proc (utime + stime of the process and of every process under it, and of the children it
# has reaped) and divides it by the requests the run completed: CPU microseconds per request,
# which moves far less between runs than req/s does. Output: one Markdown row per run (req/s,
# p50, p99, CPU µs per request), then a table of revproxy's ratio to each peer per test and
# round (with the median over rounds, from ROUNDS=3 on), then every proxy's CPU per request.
# Judge by those ratios and by the CPU per request, never by absolute numbers from another
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
PROXIES=${PROXIES-"nginx haproxy apache-event apache-worker"}
APACHE_THREADS=${APACHE_THREADS:-320}
APACHE_MODULES=${APACHE_MODULES:-/usr/lib/apache2/modules}
[[ $DURATION =~ ^[0-9]+$ ]] || { echo "DURATION must be a number of seconds" >&2; exit 2; }
[[ $APACHE_THREADS =~ ^[0-9]+$ ]] || { echo "APACHE_THREADS must be a number" >&2; exit 2; }
declare -A peer_port=([nginx]=18080 [haproxy]=18081 [apache-event]=18083 [apache-worker]=18084)
read -ra peers <<<"$PROXIES"
for peer in "${peers[@]}"; do
  [[ -n ${peer_port[$peer]:-} ]] || { echo "PROXIES: $peer is not nginx, haproxy, apache-event or apache-worker" >&2; exit 2; }
done
uses() { [[ " $PROXIES " == *" $1 "* ]]; }
# The peers and the clients come from the distribution (Debian's package names). As root the
# kit installs what is missing itself (INSTALL=0 to refuse); otherwise it says what to run.
# nginx is always needed: it serves the three backends.
declare -A package=([nginx]=nginx-light [haproxy]=haproxy [apache2]=apache2 [wrk]=wrk [ab]=apache2-utils [taskset]=util-linux [curl]=curl)
needed=(nginx wrk ab taskset curl)
uses haproxy && needed+=(haproxy)
{ uses apache-event || uses apache-worker; } && needed+=(apache2)
missing=()
for tool in "${needed[@]}"; do
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
read -ra also <<<"${ALSO:-}"
for binary in "$STAGE" "${also[@]}"; do
  [[ -x $BIN/$binary ]] || { echo "no $BIN/$binary: run cargo build --release --workspace --examples" >&2; exit 1; }
done
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
declare -A main_pid  # the process whose CPU time is counted for each port (with all under it)
uses nginx && { taskset -c 1 nginx -p "$tmp/n" -c "$tmp/n/nginx.conf" 2>/dev/null & pids+=($!); main_pid[18080]=$!; }
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
uses haproxy && { taskset -c 1 haproxy -f "$tmp/h/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!); main_pid[18081]=$!; }

# --- Apache httpd 2.4 as a proxy, under mpm_event and under mpm_worker ---------------------
# One child process (StartServers 1, ServerLimit 1) with a thread for every connection the
# largest row opens, so neither MPM runs out of threads where the others do not; the
# parent (which only watches the child) is pinned with it. As root, the child runs as
# nobody, like Debian's own www-data setup; every file it needs is in $tmp.
apache_conf() { # MPM PORT DIR
  local mpm=$1 port=$2 dir=$3
  mkdir -p "$dir"
  cat > "$dir/httpd.conf" <<APACHE
ServerRoot $dir
ServerName localhost
Listen 127.0.0.1:$port
PidFile $dir/pid
DefaultRuntimeDir $dir
ErrorLog $dir/error.log
LogLevel warn
LoadModule mpm_${mpm}_module $APACHE_MODULES/mod_mpm_${mpm}.so
LoadModule authz_core_module $APACHE_MODULES/mod_authz_core.so
LoadModule slotmem_shm_module $APACHE_MODULES/mod_slotmem_shm.so
LoadModule proxy_module $APACHE_MODULES/mod_proxy.so
LoadModule proxy_http_module $APACHE_MODULES/mod_proxy_http.so
LoadModule proxy_balancer_module $APACHE_MODULES/mod_proxy_balancer.so
LoadModule lbmethod_byrequests_module $APACHE_MODULES/mod_lbmethod_byrequests.so
$( [[ $(id -u) -eq 0 ]] && echo "User nobody" )
$( [[ $(id -u) -eq 0 ]] && echo "Group nogroup" )
StartServers 1
ServerLimit 1
ThreadLimit $APACHE_THREADS
ThreadsPerChild $APACHE_THREADS
MaxRequestWorkers $APACHE_THREADS
MinSpareThreads 1
MaxSpareThreads $APACHE_THREADS
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
Timeout 30
<Proxy balancer://app>
  BalancerMember http://127.0.0.1:19001
  BalancerMember http://127.0.0.1:19002
  BalancerMember http://127.0.0.1:19003
  ProxySet lbmethod=byrequests
</Proxy>
ProxyPass / balancer://app/
ProxyPassReverse / balancer://app/
APACHE
}
for mpm in event worker; do
  uses "apache-$mpm" || continue
  apache_conf "$mpm" "${peer_port[apache-$mpm]}" "$tmp/a-$mpm"
  [[ $(id -u) -eq 0 ]] && chown nobody "$tmp/a-$mpm"
  taskset -c 1 apache2 -f "$tmp/a-$mpm/httpd.conf" -DFOREGROUND >/dev/null 2>"$tmp/a-$mpm/stderr" & pids+=($!)
  main_pid[${peer_port[apache-$mpm]}]=$!
done

# --- revproxy ---------------------------------------------------------------------------------
backends=(127.0.0.1:19001 127.0.0.1:19002 127.0.0.1:19003)
start_revproxy() { # BINARY PORT: a config stage gets CONFIG (or a generated file), the others --backend x3
  local binary=$1 port=$2 config=$CONFIG
  if "$BIN/$binary" --help 2>/dev/null | grep -q -- '--config'; then
    if [[ -z $config ]]; then
      config=$tmp/revproxy.toml
      printf '[server]\nlisten = "127.0.0.1:18082"\n[upstreams.app]\nservers = ["%s", "%s", "%s"]\n[log]\nlevel = "warn"\n' \
        "${backends[@]}" > "$config"
    fi
    taskset -c 1 "$BIN/$binary" --config "$config" --listen "127.0.0.1:$port" --log-level warn >/dev/null 2>&1 & pids+=($!)
  else
    local args=()
    for b in "${backends[@]}"; do args+=(--backend "$b"); done
    taskset -c 1 "$BIN/$binary" --listen "127.0.0.1:$port" "${args[@]}" --log-level warn >/dev/null 2>&1 & pids+=($!)
  fi
  main_pid[$port]=$!
}
start_revproxy "$STAGE" 18082
# ALSO: more of our binaries beside STAGE, on 18085 and up (e.g. stage9 and the floor).
also_ports=()
for binary in "${also[@]}"; do
  port=$((18085 + ${#also_ports[@]}))
  start_revproxy "$binary" "$port"
  also_ports+=("$port")
done

proxy_ports=()
for peer in "${peers[@]}"; do proxy_ports+=("${peer_port[$peer]}"); done
proxy_ports+=(18082 "${also_ports[@]}")
for port in 19001 19002 19003 "${proxy_ports[@]}"; do
  "$here/wait-port.sh" "$port" 10 || {
    echo "nothing listens on $port after 10 s" >&2
    cat "$tmp"/a-*/stderr "$tmp"/a-*/error.log 2>/dev/null | tail -5 >&2
    exit 1
  }
done
# Every proxy must actually reach every backend and serve the files whole.
for port in "${proxy_ports[@]}"; do
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

declare -A names=([18080]=nginx [18081]=haproxy [18082]=$STAGE [18083]=apache-event [18084]=apache-worker)
for i in "${!also_ports[@]}"; do names[${also_ports[$i]}]=$(basename "${also[$i]}"); done
for port in "${proxy_ports[@]}"; do
  [[ -n ${main_pid[$port]:-} && -d /proc/${main_pid[$port]} ]] || { echo "cannot find the process of ${names[$port]}" >&2; exit 1; }
done
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # PID -> utime + stime of it and of every live process under it, plus its reaped children
  local pid=$1 total=0 child f
  # Fields after the command name (which may hold spaces): utime stime cutime cstime are
  # fields 14 to 17 of /proc/PID/stat.
  read -r -a f <<<"$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || { echo 0; return; }
  total=$(( ${f[11]:-0} + ${f[12]:-0} + ${f[13]:-0} + ${f[14]:-0} ))
  for child in $(pgrep -P "$pid" || true); do
    total=$(( total + $(cpu_ticks "$child") ))
  done
  echo "$total"
}
declare -A result cost
measure() { # port test -> "req/s µs-per-request" on stdout, its table row on stderr
  local port=$1 test=$2 out before after rps requests us label p50="" p99="" errors=""
  before=$(cpu_ticks "${main_pid[$port]}")
  case $test in
    ab16)
      out=$(taskset -c 0 ab -q -n "$AB_N" -c 16 "http://127.0.0.1:$port/" 2>&1)
      rps=$(awk '/Requests per second/ {print $4}' <<<"$out")
      requests=$(awk '/Complete requests/ {print $3}' <<<"$out")
      errors=$(awk '/Failed requests/ && $3 > 0 {print "failed " $3}' <<<"$out")
      label="ab -c16 no keep-alive"
      ;;
    *)
      local conns=${test#*@} path=${test%@*}
      out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "http://127.0.0.1:$port$path" 2>&1)
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
      label="$path c=$conns"
      ;;
  esac
  after=$(cpu_ticks "${main_pid[$port]}")
  us=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="${requests:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
  echo "| $(date -u +%T) | ${names[$port]} | $label | ${rps:-0} | $p50 | $p99 | $us | $errors |" >&2
  echo "${rps:-0} $us"
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

echo "| time | proxy | test | req/s | p50 | p99 | CPU µs/req | errors |" >&2
echo "|---|---|---|---:|---:|---:|---:|---|" >&2
reversed=()
for ((i = ${#proxy_ports[@]} - 1; i >= 0; i--)); do reversed+=("${proxy_ports[$i]}"); done
for round in $(seq "$ROUNDS"); do
  order=("${proxy_ports[@]}")
  ((round % 2 == 0)) && order=("${reversed[@]}")
  for test in "${tests[@]}"; do
    for port in "${order[@]}"; do
      read -r rps us < <(measure "$port" "$test")
      result[$round,$port,$test]=$rps
      cost[$round,$port,$test]=$us
    done
  done
done

label_of() { local label=${1/@/ c=}; [[ $1 == ab16 ]] && label="ab -c16, no keep-alive"; echo "$label"; }
# The median of the numbers given (the mean of the middle two for an even count).
median() { printf '%s\n' "$@" | LC_ALL=C sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# A table of req/s ratios, one column per round and pair; a pair is NUMERATOR_PORT/DENOMINATOR_PORT/LABEL.
# From three rounds on, a last column per pair gives the median of its rounds' ratios: one round
# that a neighbour on the machine slowed (one proxy's few seconds, not the other's) moves it
# less than it moves a mean.
ratio_table() {
  local header="| test |" rule="|---|" r pair test row num den ratio
  local -A ratios
  for r in $(seq "$ROUNDS"); do
    for pair in "$@"; do header+=" round $r: ${pair#*/*/} |"; rule+="---:|"; done
  done
  if ((ROUNDS >= 3)); then
    for pair in "$@"; do header+=" median: ${pair#*/*/} |"; rule+="---:|"; done
  fi
  echo "$header"
  echo "$rule"
  for test in "${tests[@]}"; do
    row="| $(label_of "$test") |"
    ratios=()
    for r in $(seq "$ROUNDS"); do
      for pair in "$@"; do
        num=${pair%%/*} den=${pair#*/} den=${den%%/*}
        # The ratio for the median, then the cell: "0.9231 0.92 (45342 / 49118)".
        read -r ratio cell < <(awk -v o="${result[$r,$num,$test]:-0}" -v t="${result[$r,$den,$test]:-0}" \
          'BEGIN { q = (t > 0 ? o / t : 0); printf "%.4f %.2f (%d / %d)\n", q, q, o, t }')
        ratios[$pair]+=" $ratio"
        row+=" $cell |"
      done
    done
    if ((ROUNDS >= 3)); then
      # shellcheck disable=SC2086 # the ratios are words by design
      for pair in "$@"; do row+=" $(median ${ratios[$pair]}) |"; done
    fi
    echo "$row"
  done
}
if ((${#peers[@]} > 0)); then
  echo
  echo "revproxy ($STAGE) as a ratio to each peer (its req/s / theirs), each alone on CPU 1, per round:"
  echo
  pairs=()
  for peer in "${peers[@]}"; do pairs+=("18082/${peer_port[$peer]}/vs $peer"); done
  ratio_table "${pairs[@]}"
fi
if ((${#also_ports[@]} > 0)); then
  # The last of ALSO is the yardstick (the floor, when it is examples/blocking_floor).
  base=${also_ports[-1]}
  echo
  echo "Each of ours as a ratio to ${names[$base]} (req/s / its req/s), per round:"
  echo
  pairs=()
  for port in 18082 "${also_ports[@]:0:${#also_ports[@]}-1}"; do pairs+=("$port/$base/${names[$port]}"); done
  ratio_table "${pairs[@]}"
fi

echo
echo "CPU microseconds per request, each proxy's process and those under it (/proc), per round:"
echo
header="| test |" rule="|---|"
for port in "${proxy_ports[@]}"; do header+=" ${names[$port]} |"; rule+="---:|"; done
echo "$header"
echo "$rule"
for test in "${tests[@]}"; do
  row="| $(label_of "$test") |"
  for port in "${proxy_ports[@]}"; do
    values=()
    for r in $(seq "$ROUNDS"); do values+=("${cost[$r,$port,$test]:--}"); done
    row+=" $(IFS=,; echo "${values[*]}" | sed 's/,/, /g') |"
  done
  echo "$row"
done
