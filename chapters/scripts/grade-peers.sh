#!/usr/bin/env bash
# The course's grader against nginx and HAProxy (Debian's packages, installed if missing):
# each is started on loopback with the config `grade --print-config` prints, graded with the
# checks of stages 1 to STAGE in --addr mode, stopped by its PID; then one table, a row per
# check, says which passed.
#
#   chapters/scripts/grade-peers.sh [STAGE]      # default 5
#
# GRADE=path/to/grade to use a grade already built (default: cargo build -p grade).
set -euo pipefail
stage=${1:-5}
cd "$(dirname "$0")/../.."
PROXY_PORT=${PROXY_PORT:-19180}
ORIGIN_PORT=${ORIGIN_PORT:-19101}
if [ -z "${GRADE:-}" ]; then
    cargo build -q -p grade
    GRADE=target/debug/grade
fi
for tool in nginx haproxy; do
    if ! command -v "$tool" >/dev/null && ! [ -x "/usr/sbin/$tool" ]; then
        apt-get install -y "$tool" >/dev/null
    fi
done
PATH="$PATH:/usr/sbin"
dir=$(mktemp -d)
peer_pid=""
stop_peer() {
    if [ -n "$peer_pid" ]; then kill "$peer_pid" 2>/dev/null || true; wait "$peer_pid" 2>/dev/null || true; fi
    peer_pid=""
}
cleanup() { stop_peer; rm -rf "$dir"; }
trap cleanup EXIT
wait_port() { "$(dirname "$0")/wait-port.sh" "$1" 10; }

grade_peer() { # NAME: start it, grade it into $dir/NAME.json, stop it
    local name=$1
    mkdir -p "$dir/$name/logs"
    "$GRADE" --print-config "$name" --stage "$stage" --addr "127.0.0.1:$PROXY_PORT" \
        --origin-port "$ORIGIN_PORT" > "$dir/$name/$name.conf"
    case $name in
        nginx) nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" 2> "$dir/nginx/stderr" & ;;
        haproxy) haproxy -db -f "$dir/haproxy/haproxy.conf" 2> "$dir/haproxy/stderr" & ;;
    esac
    peer_pid=$!
    wait_port "$PROXY_PORT"
    # Exit status 1 is "some check failed": expected, the table shows which.
    "$GRADE" --stage "$stage" --addr "127.0.0.1:$PROXY_PORT" --origin-port "$ORIGIN_PORT" \
        --json > "$dir/$name.json" || true
    stop_peer
}

grade_peer nginx
grade_peer haproxy
echo "grade --stage $stage --addr, $(nginx -v 2>&1 | sed 's/.*version: //') and $(haproxy -v | head -n 1 | cut -d' ' -f1-3):"
echo
python3 - "$dir/nginx.json" "$dir/haproxy.json" <<'PY'
import json, sys
reports = [json.load(open(path)) for path in sys.argv[1:]]
print("| check | stage | nginx | HAProxy |")
print("|---|---|---|---|")
for a, b in zip(reports[0]["checks"], reports[1]["checks"]):
    print(f"| `{a['name']}` | {a['stage']} | {a['outcome'].upper()} | {b['outcome'].upper()} |")
print()
for name, r in zip(["nginx", "HAProxy"], reports):
    print(f"{name}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped")
print()
for name, r in zip(["nginx", "HAProxy"], reports):
    for c in r["checks"]:
        if c["outcome"] == "fail":
            print(f"- {name} `{c['name']}`: {c['reason']}")
PY
