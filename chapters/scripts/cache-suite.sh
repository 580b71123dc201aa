#!/usr/bin/env bash
# The public HTTP-cache suite (npm `http-cache-tests` 0.4.5, the tests of cache-tests.fyi)
# against stage 7: the suite's origin on 127.0.0.1:18473, stage 7 in front of it on :18474
# with its cache on, and the suite's command-line client pointed at stage 7.
#
#   chapters/scripts/cache-suite.sh [STAGE7] [OUT.json]
#
# STAGE7 defaults to target/debug/stage7 (run from the repository root after `cargo build
# --bin stage7`). Needs node and npm; the suite is installed into a scratch folder, never into
# the repository. Prints the passes among the counted tests (kinds "required" and "optimal",
# the cli's list with its surrogate-control tests: 265) and one line per counted test that
# did not pass; OUT.json keeps the raw results.
set -euo pipefail
stage7=$(realpath "${1:-target/debug/stage7}")
out=${2:-}
[[ -x $stage7 ]] || { echo "cache-suite.sh: $stage7 is not a program" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

(cd "$tmp" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund http-cache-tests@0.4.5 >/dev/null)
suite=$tmp/node_modules/http-cache-tests

(cd "$suite" && npm_config_port=18473 npm_config_protocol=http npm_config_pidfile="$tmp/server.pid" \
    exec node server/server.mjs >"$tmp/server.log" 2>&1) & pids+=($!)
# The suite sets its origin up with PUTs through the proxy, and never wants a response kept
# that says nothing about freshness: no default_ttl.
printf '[server]\nlisten = "127.0.0.1:18474"\n[upstreams.suite]\nservers = ["127.0.0.1:18473"]\n[cache]\nenabled = true\n[log]\nlevel = "warn"\n' >"$tmp/stage7.toml"
"$stage7" --config "$tmp/stage7.toml" >"$tmp/stage7.log" 2>&1 & pids+=($!)
"$here/wait-port.sh" 18473 30
"$here/wait-port.sh" 18474 30

(cd "$suite" && npm_config_base=http://127.0.0.1:18474 npm_config_id= npm_package_config_id= \
    node --no-warnings cli.mjs) >"$tmp/results.json"
[[ -n $out ]] && cp "$tmp/results.json" "$out"

cat >"$suite/summary.mjs" <<'JS'
import fs from 'fs'
import tests from './tests/index.mjs'
import surrogate from './tests/surrogate-control.mjs'
tests.push(surrogate) // as cli.mjs does
const results = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
let counted = 0
let passed = 0
const failed = []
for (const suite of tests) {
  for (const test of suite.tests) {
    const kind = test.kind || 'required'
    if (kind === 'check') continue
    counted++
    const r = results[test.id]
    if (r === true) { passed++; continue }
    const why = r === undefined ? 'not run (browser only)' : (Array.isArray(r) ? r.join(': ') : String(r))
    failed.push(`${kind === 'optimal' ? 'optimal ' : 'REQUIRED'} ${test.id}: ${why}`)
  }
}
console.log(`passed ${passed} of ${counted} counted tests (required and optimal)`)
for (const line of failed) console.log(`  ${line}`)
JS
node "$suite/summary.mjs" "$tmp/results.json"
