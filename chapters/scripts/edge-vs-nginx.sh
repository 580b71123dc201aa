#!/usr/bin/env bash
# Stage 9's edge work beside nginx doing the same, each proxy alone on CPU 1, the load
# generator and the backend on CPU 0:
#   - TLS keep-alive requests per second (small body, wrk over TLS, c=64), and the same over
#     plain http for scale;
#   - new TLS connections per second (full TLS 1.3 ECDSA P-256 handshakes, no resumption,
#     one request each: `loadtest --no-keepalive --no-resume`, c=16);
#   - gzip level 1 and 6 on a 100 KiB JSON body and on 100 KiB of the chapters' text (wrk with
#     Accept-Encoding: gzip, c=16), with each proxy's compressed size.
# One certificate for both proxies, made here with openssl (a CA and a P-256 leaf for
# localhost); nothing is written outside a temp directory, which is removed on exit.
#
#   cargo build --release --workspace
#   chapters/scripts/edge-vs-nginx.sh            # every test, DURATION 5 s each
#   TESTS="tls handshakes" DURATION=3 chapters/scripts/edge-vs-nginx.sh
#   FLOOR=1 TESTS=tls chapters/scripts/edge-vs-nginx.sh   # and the floor of the model: the
#       relay with no HTTP (cargo build --release --example blocking_floor) in stage 9's
#       column, over TLS and plain, on 18463/18464
#
# Needs nginx (nginx-light has ssl and gzip), wrk, openssl, taskset. Ports 19201 (backend),
# 18443/18444 (nginx TLS / plain), 18453/18454 (stage 9 TLS / plain).
set -euo pipefail

BIN=${BIN:-target/release}
DURATION=${DURATION:-5}
DURATION=${DURATION%s}
TESTS=${TESTS:-"tls handshakes gzip"}
ROUNDS=${ROUNDS:-1}
for tool in nginx wrk openssl taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y nginx-light wrk openssl util-linux curl)" >&2; exit 1; }
done
for b in stage9 loadtest; do
  [[ -x $BIN/$b ]] || { echo "no $BIN/$b: run cargo build --release --workspace" >&2; exit 1; }
done
FLOOR=${FLOOR:-0}
if [[ $FLOOR == 1 && ! -x $BIN/examples/blocking_floor ]]; then
  echo "no $BIN/examples/blocking_floor: run cargo build --release --example blocking_floor" >&2
  exit 1
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

# --- one CA and one ECDSA P-256 certificate for localhost ------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=bench CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
  -days 30 -extfile "$tmp/ext" -out "$tmp/leaf.pem" 2>/dev/null

# --- the backend: nginx, a 13-byte `/` and a 100 KiB JSON document ---------------------------
mkdir -p "$tmp/www" "$tmp/b" "$tmp/n"
python3 - "$tmp/www/data.json" <<'PY'
import json, sys
rows = [{"id": i, "name": f"user{i}", "email": f"user{i}@example.test", "active": i % 3 == 0,
         "score": (i * 7919) % 1000, "tags": ["a", "b", "c"][: i % 4]} for i in range(10000)]
text = json.dumps(rows)
open(sys.argv[1], "w").write(text[: 100 * 1024 - 1] + "]")
PY
# Real text beside the generated JSON: the course's own chapters, cut to 100 KiB (so its
# figures move a little as the chapters are edited).
cat "$here"/../*.md > "$tmp/chapters.md"
head -c $((100 * 1024)) "$tmp/chapters.md" > "$tmp/www/chapters.txt"
temp_paths() { echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"; }
cat > "$tmp/b/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $tmp/b/pid;
error_log $tmp/b/error.log warn; events { worker_connections 4096; }
http { access_log off; $(temp_paths "$tmp/b") keepalive_requests 100000;
  types { application/json json; text/plain txt; }
  server { listen 127.0.0.1:19201; root $tmp/www;
    location = / { return 200 'hello from b1\n'; } } }
NGINX
taskset -c 0 nginx -p "$tmp/b" -c "$tmp/b/nginx.conf" 2>/dev/null & pids+=($!)

# --- nginx: TLS on 18443, plain with gzip on 18444 --------------------------------------------
nginx_conf() { # gzip level
  cat <<NGINX
daemon off; master_process off; worker_processes 1; pid $tmp/n/pid;
error_log $tmp/n/error.log warn; events { worker_connections 4096; }
http { access_log off; $(temp_paths "$tmp/n") keepalive_requests 100000;
  upstream app { server 127.0.0.1:19201; keepalive 64; }
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on; ssl_session_cache shared:s:1m;
  gzip on; gzip_comp_level $1; gzip_types application/json text/plain; gzip_proxied any; gzip_min_length 256;
  server { listen 127.0.0.1:18443 ssl; ssl_certificate $tmp/leaf.pem; ssl_certificate_key $tmp/leaf.key;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18444;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
}

# --- stage 9: the same two listeners -----------------------------------------------------------
stage9_conf() { # gzip level
  cat <<TOML
[server]
listen = "127.0.0.1:18454"
[upstreams.app]
servers = ["127.0.0.1:19201"]
[tls]
listen = "127.0.0.1:18453"
certificates = [{ cert = "$tmp/leaf.pem", key = "$tmp/leaf.key" }]
[compression]
enabled = true
gzip_level = $1
prefer = ["gzip"]
types = ["application/json", "text/plain"]
[log]
level = "warn"
TOML
}

start_pair() { # gzip level
  nginx_conf "$1" > "$tmp/n/nginx.conf"
  stage9_conf "$1" > "$tmp/stage9.toml"
  taskset -c 1 nginx -p "$tmp/n" -c "$tmp/n/nginx.conf" 2>/dev/null & nginx_pid=$!
  taskset -c 1 "$BIN/stage9" --config "$tmp/stage9.toml" >"$tmp/stage9.log" 2>&1 & stage9_pid=$!
  pids+=("$nginx_pid" "$stage9_pid")
  ports=(19201 18443 18444 18453 18454)
  floor_pids=()
  if [[ $FLOOR == 1 ]]; then
    floor=$BIN/examples/blocking_floor
    taskset -c 1 "$floor" --listen 127.0.0.1:18463 --backend 127.0.0.1:19201 \
      --tls "$tmp/leaf.pem" "$tmp/leaf.key" 2>/dev/null & floor_pids+=($!)
    taskset -c 1 "$floor" --listen 127.0.0.1:18464 --backend 127.0.0.1:19201 2>/dev/null & floor_pids+=($!)
    pids+=("${floor_pids[@]}")
    ports+=(18463 18464)
  fi
  for port in "${ports[@]}"; do
    "$here/wait-port.sh" "$port" 10 || { echo "nothing on $port; stage 9 said:" >&2; cat "$tmp/stage9.log" >&2; exit 1; }
  done
  for url in https://localhost:18443/ https://localhost:18453/; do
    curl -sf --cacert "$tmp/ca.pem" "$url" >/dev/null || { echo "$url does not answer over TLS" >&2; exit 1; }
  done
  for port in 18444 18454; do
    for path in data.json chapters.txt; do
      enc=$(curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/$path" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
      [[ $enc == gzip ]] || { echo "port $port does not gzip /$path (Content-Encoding: '$enc')" >&2; exit 1; }
    done
  done
}
stop_pair() {
  kill "$nginx_pid" "$stage9_pid" "${floor_pids[@]}" 2>/dev/null || true
  wait "$nginx_pid" "$stage9_pid" "${floor_pids[@]}" 2>/dev/null || true
}

# req/s, or 0 (and the reason on stderr) when any answer was not a 2xx or 3xx or a socket
# failed: a proxy that answers errors fast must not look fast.
wrk_rps() {
  local out
  out=$(taskset -c 0 wrk "$@" 2>&1)
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "wrk $*: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2
    echo 0
  else
    awk '/Requests\/sec/ {print $2}' <<<"$out"
  fi
}
gzip_rps() { # port path
  wrk_rps -t1 -c16 -d"${DURATION}s" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$1/$2"
}
gzip_bytes() { # port path: the compressed body's size
  local n
  n=$(curl -sf -H 'Accept-Encoding: gzip' "http://127.0.0.1:$1/$2" | wc -c) && ((n > 0)) ||
    { echo "port $1 gave no body for /$2" >&2; return 1; }
  echo "$n"
}
row() { # test nginx ours command
  awk -v t="$1" -v n="$2" -v o="$3" -v c="$4" 'BEGIN { printf "| %s | %.0f | %.0f | %.2f | `%s` |\n", t, n, o, (n > 0 ? o / n : 0), c }'
}

# nginx's TLS and plain listeners against ours on TLS_PORT and PLAIN_PORT, one row each.
keepalive_rows() { # tls_port plain_port tls_label plain_label
  local n o
  n=$(wrk_rps -t1 -c64 -d"${DURATION}s" https://localhost:18443/)
  o=$(wrk_rps -t1 -c64 -d"${DURATION}s" "https://localhost:$1/")
  row "$3" "$n" "$o" "taskset -c 0 wrk -t1 -c64 -d${DURATION}s https://localhost:PORT/"
  n=$(wrk_rps -t1 -c64 -d"${DURATION}s" http://127.0.0.1:18444/)
  o=$(wrk_rps -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$2/")
  row "$4" "$n" "$o" "taskset -c 0 wrk -t1 -c64 -d${DURATION}s http://127.0.0.1:PORT/"
}

echo "| test | nginx | stage 9 | stage 9 / nginx | command (port 18443/18444 nginx, 18453/18454 stage 9) |"
echo "|---|---:|---:|---:|---|"
for round in $(seq "$ROUNDS"); do
  if [[ " $TESTS " == *" tls "* || " $TESTS " == *" handshakes "* ]]; then
    start_pair 6
    if [[ " $TESTS " == *" tls "* ]]; then
      keepalive_rows 18453 18454 "TLS keep-alive, 13 B, c=64" "plain keep-alive, 13 B, c=64 (for scale)"
      if [[ $FLOOR == 1 ]]; then
        keepalive_rows 18463 18464 "TLS keep-alive, c=64, the floor in stage 9's column" \
          "plain keep-alive, c=64, the floor in stage 9's column"
      fi
    fi
    if [[ " $TESTS " == *" handshakes "* ]]; then
      hs() { taskset -c 0 "$BIN/loadtest" -c16 -z "${DURATION}s" --no-keepalive --no-resume --cacert "$tmp/ca.pem" --json "https://localhost:$1/" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["connections"]/r["total_secs"] if r["errors_total"]==0 else 0)'; }
      n=$(hs 18443); o=$(hs 18453)
      row "new TLS connections/s, c=16" "$n" "$o" "taskset -c 0 loadtest -c16 -z ${DURATION}s --no-keepalive --no-resume --cacert ca.pem https://localhost:PORT/"
    fi
    stop_pair
  fi
  if [[ " $TESTS " == *" gzip "* ]]; then
    for level in 1 6; do
      start_pair "$level"
      for doc in "data.json:100 KiB JSON" "chapters.txt:100 KiB of this course's chapters"; do
        path=${doc%%:*}
        # One assignment each, so that either failing stops the script (set -e).
        nginx_bytes=$(gzip_bytes 18444 "$path")
        stage9_bytes=$(gzip_bytes 18454 "$path")
        sizes="$nginx_bytes and $stage9_bytes B"
        # Even rounds measure stage 9 first.
        if ((round % 2 == 0)); then
          o=$(gzip_rps 18454 "$path"); n=$(gzip_rps 18444 "$path")
        else
          n=$(gzip_rps 18444 "$path"); o=$(gzip_rps 18454 "$path")
        fi
        row "gzip level $level, ${doc#*:} ($sizes), c=16" "$n" "$o" "taskset -c 0 wrk -t1 -c16 -d${DURATION}s -H 'Accept-Encoding: gzip' http://127.0.0.1:PORT/$path"
      done
      stop_pair
    done
  fi
done
