#!/usr/bin/env bash
# Proves the workbook works as the chapters promise, with the grader:
#   - each reference solution (solution-stageN) gets full marks at its own stage, N = 1..6;
#   - the untouched skeleton, graded at stage 1, fails at once and clearly: its first line of
#     report quotes the todo!() that says where to start and which section to read.
# Uses release builds (`cargo build --release -p grade -p workbook -p workbook-solutions`, which
# it runs first; BIN=DIR to use binaries built elsewhere). Prints one line per check and a last
# `N passed, N failed`; exits 1 if any failed. CI runs it (.ci/run).
#
#   chapters/workbook/check.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
bin=${BIN:-target/release}
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --locked -p grade -p workbook -p workbook-solutions || exit 1
fi
passed=0
failed=0
verdict() { # ok|fail, what
    if [[ $1 == ok ]]; then
        passed=$((passed + 1))
        echo "ok   $2"
    else
        failed=$((failed + 1))
        echo "FAIL $2"
    fi
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for n in 1 2 3 4 5 6; do
    # Bounded: the grader times every check out itself; this is the backstop.
    if timeout 300 "$bin/grade" --stage "$n" -- "$bin/solution-stage$n" >"$out" 2>&1; then
        verdict ok "solution-stage$n: $(tail -n 1 "$out")"
    else
        cat "$out"
        verdict fail "solution-stage$n: $(tail -n 1 "$out")"
    fi
done

started=$SECONDS
timeout 120 "$bin/grade" --stage 1 -- "$bin/workbook-stage1" >"$out" 2>&1
status=$?
took=$((SECONDS - started))
first_note=$(grep -m 1 '^NOTE' "$out" || true)
if [[ $status -eq 1 ]] \
    && [[ "$first_note" == *"not yet implemented: stage 1: write"* ]] \
    && [[ "$first_note" == *"chapters/01-single-connection-forwarder.md#build-it-yourself"* ]] \
    && grep -q "not run: the program is gone" "$out"; then
    verdict ok "the untouched workbook-stage1 fails at its first todo!() (exit 1, ${took} s): ${first_note:0:90}..."
else
    cat "$out"
    verdict fail "the untouched workbook-stage1 (exit $status): its report does not start with the todo!() that says where to begin"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
