#!/usr/bin/env bash
# Cache hits: stage 7 against nginx's proxy_cache serving the same hits, each proxy alone on
# CPU 1, wrk and the backend on CPU 0, keep-alive, 64 connections, a small body and 16 KiB.
# Both are told to keep responses without freshness information for 10 min (stage 7's
# --cache-ttl 600, nginx's proxy_cache_valid 200 10m). Run from the repository root after
# `cargo build --release --workspace`; needs nginx and wrk. Ports 18000, 18090, 18091.
# ORDER=reverse measures nginx first in each pair (run it both ways: the second proxy of a
# pair runs on a warmer machine).
set -euo pipefail
T=${T:-target/release}
DUR=${DUR:-5s}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

taskset -c 0 "$T/backends" --port 18000 --name b1 >/dev/null 2>&1 & pids+=($!)
printf '[server]\nlisten = "127.0.0.1:18090"\n[upstreams.app]\nservers = ["127.0.0.1:18000"]\n[log]\nlevel = "warn"\n' > "$tmp/c7.toml"
taskset -c 1 "$T/stage7" --config "$tmp/c7.toml" --cache-ttl 600 >/dev/null 2>&1 & pids+=($!)
mkdir -p "$tmp/nginx/cache"
cat > "$tmp/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  proxy_cache_path $tmp/nginx/cache keys_zone=c:10m max_size=64m;
  client_body_temp_path $tmp/nginx; proxy_temp_path $tmp/nginx;
  fastcgi_temp_path $tmp/nginx; uwsgi_temp_path $tmp/nginx; scgi_temp_path $tmp/nginx;
  upstream app { server 127.0.0.1:18000; keepalive 64; }
  server {
    listen 127.0.0.1:18091;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      proxy_cache_valid 200 10m;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
NGINX
taskset -c 1 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & pids+=($!)
for port in 18090 18091; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
done
ports=(18090 18091)
[[ ${ORDER:-} == reverse ]] && ports=(18091 18090)
for path in / /bytes/16384; do
  for port in "${ports[@]}"; do
    name=$([ $port = 18090 ] && echo stage7 || echo nginx)
    curl -s -o /dev/null "http://127.0.0.1:$port$path"; curl -s -o /dev/null "http://127.0.0.1:$port$path"
    echo "== $name $path: $(curl -s -D - -o /dev/null "http://127.0.0.1:$port$path" | grep -i '^x-cache' | tr -d '\r')"
    echo "   taskset -c 0 wrk -t1 -c64 -d$DUR --latency http://127.0.0.1:$port$path"
    taskset -c 0 wrk -t1 -c64 -d"$DUR" --latency "http://127.0.0.1:$port$path" | grep -E "Requests/sec|^ +99%"
  done
done
