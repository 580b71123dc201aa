#!/usr/bin/env bash
# Proves every extension exercise can be solved: applies each reference solution
# (solutions/*.patch) to a scratch copy of the repository's tracked files, and runs there the
# exercise tests its `Tests:` line names (cargo test --test exercises NAME -- --ignored), and
# the library's unit tests (cargo test --lib), so a solution that breaks the rest is caught.
#
#   solutions/check.sh            # every solution
#   solutions/check.sh 05-first-strategy
#
# The copy shares the target directory (CARGO_TARGET_DIR, else the repository's target/), so
# only the patched crate is compiled again. The working tree is never modified.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/revproxy-solutions-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

patches=()
if (($# > 0)); then
    for name in "$@"; do patches+=("$root/solutions/${name%.patch}.patch"); done
else
    shopt -s nullglob
    patches=("$root"/solutions/*.patch)
fi
((${#patches[@]} > 0)) || { echo "check.sh: no solutions found" >&2; exit 1; }

passed=0 failed=0
for patch in "${patches[@]}"; do
    name=$(basename "$patch" .patch)
    tests=$(sed -n 's/^Tests: //p' "$patch" | head -n 1)
    [[ -n $tests ]] || { echo "FAIL $name: no 'Tests:' line"; failed=$((failed + 1)); continue; }
    tree="$scratch/$name"
    mkdir -p "$tree"
    # Tracked files only, with their mtimes (tar keeps them), so cargo reuses what it can.
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$root" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$tree"
    else # not a git checkout: everything but build output
        (cd "$root" && tar --exclude=./target -cf - .) | tar -xf - -C "$tree"
    fi
    if ! (cd "$tree" && git apply "$patch"); then
        echo "FAIL $name: the patch does not apply"
        failed=$((failed + 1))
        continue
    fi
    ok=true
    (cd "$tree" && cargo test --quiet --lib) || ok=false
    for t in $tests; do
        if ! (cd "$tree" && cargo test --quiet --test exercises "$t" -- --ignored); then ok=false; fi
    done
    if $ok; then
        echo "ok   $name ($tests)"
        passed=$((passed + 1))
    else
        echo "FAIL $name ($tests)"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
((failed == 0))
