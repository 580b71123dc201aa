#!/usr/bin/env bash
# Chapter 07's numbers: stage 7 in front of a demo backend that takes 20 ms per request.
#   hits   (/cacheable: public, max-age=600) versus misses (/: no freshness information),
#   keep-alive, 64 connections, 5 s each; then 200 concurrent cold requests for one URL and
#   how many reached the backend.
# Run from the repository root after `cargo build --release --workspace`. Uses ports 18000
# and 18090; stops what it starts (by PID).
set -euo pipefail
T=${T:-target/release}
DUR=${DUR:-5s}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

"$T/backends" --port 18000 --name b1 --delay-ms 20 >/dev/null 2>&1 & pids+=($!)
cat > "$tmp/c7.toml" <<TOML
[server]
listen = "127.0.0.1:18090"
[upstreams.app]
servers = ["127.0.0.1:18000"]
[cache]
enabled = true
[log]
level = "warn"
TOML
"$T/stage7" --config "$tmp/c7.toml" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18090/health && break; sleep 0.05; done

echo "== hits: $T/loadtest -c 64 -z $DUR http://127.0.0.1:18090/cacheable?max_age=600"
curl -s -o /dev/null "http://127.0.0.1:18090/cacheable?max_age=600"   # fill
"$T/loadtest" -c 64 -z "$DUR" "http://127.0.0.1:18090/cacheable?max_age=600"
echo "== misses: $T/loadtest -c 64 -z $DUR http://127.0.0.1:18090/"
"$T/loadtest" -c 64 -z "$DUR" "http://127.0.0.1:18090/"

# The backend's /cacheable counts its 200s in the body: read it directly before and after.
count() { curl -s "http://127.0.0.1:18000/cacheable" | awk '{print $3}'; }
before=$(count)
echo "== 200 concurrent cold requests: $T/loadtest -c 200 -n 200 --no-keepalive http://127.0.0.1:18090/cacheable?max_age=601"
"$T/loadtest" -c 200 -n 200 --no-keepalive "http://127.0.0.1:18090/cacheable?max_age=601"
after=$(count)
echo "requests that reached the backend: $((after - before - 1))"
