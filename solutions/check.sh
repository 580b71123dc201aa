#!/usr/bin/env bash
# Proves every extension exercise can be solved: applies the reference solutions
# (solutions/*.patch) to a scratch copy of the repository's tracked files and runs there the
# exercise tests their `Tests:` lines name (ignored tests, so with `--ignored`) and the
# library's unit tests (cargo test --lib), so a solution that breaks the rest is caught.
#
#   solutions/check.sh            # every solution
#   solutions/check.sh 05-first-strategy [08-rule-methods ...]
#
# Building is what costs (about a minute of CI per tree), so every solution goes into ONE
# scratch tree, built once: `cargo test --lib` runs once, and every solution's exercise tests
# run in one `cargo test --test exercises -- --ignored NAME...`. So that a solution that only
# applies on top of another one is still caught, each patch is first checked alone against
# the pristine files (`git apply --check`). A patch that applies alone but not after the
# others (two solutions editing the same lines) is checked in a scratch tree of its own, and
# the output says so.
#
# The copies share the target directory (CARGO_TARGET_DIR, else the repository's target/),
# so only the patched crate is compiled again. The working tree is never modified. Cargo
# tells a path crate's sources by their path relative to the package and their mtimes, and
# the copies keep the repository's mtimes, so after a run the repository's own sources look
# older than the (patched) build, and its next `cargo test` would run the solutions: the
# crate's fingerprints are removed on exit, so that next build compiles it again instead.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/revproxy-solutions-XXXXXX")
forget_builds() {
    rm -rf "$scratch"
    rm -rf "$CARGO_TARGET_DIR"/debug/.fingerprint/revproxy-*
}
trap forget_builds EXIT

patches=()
if (($# > 0)); then
    for name in "$@"; do patches+=("$root/solutions/${name%.patch}.patch"); done
else
    shopt -s nullglob
    patches=("$root"/solutions/*.patch)
fi
((${#patches[@]} > 0)) || { echo "check.sh: no solutions found" >&2; exit 1; }

# copy_tree DIR: the repository's tracked files (the working tree's version of them), with
# their mtimes (tar keeps them), so cargo reuses what it can.
copy_tree() {
    mkdir -p "$1"
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$root" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$1"
    else # not a git checkout: everything but build output
        (cd "$root" && tar --exclude=./target -cf - .) | tar -xf - -C "$1"
    fi
}

# check_tree DIR NAME...: builds DIR once, runs the library's tests and the exercise tests
# of the solutions NAME... (their `Tests:` filters, in one invocation), and prints a line per
# solution. Returns the number of solutions that failed.
tests_of() { sed -n 's/^Tests: //p' "$root/solutions/$1.patch" | head -n 1; }
check_tree() {
    local tree=$1 log=$1.log name filters=() lib_ok=true run_ok=true failed=0
    shift
    for name in "$@"; do
        # shellcheck disable=SC2207 # the filters are words without spaces
        filters+=($(tests_of "$name"))
    done
    if ! (cd "$tree" && cargo test --quiet --no-run --lib --test exercises); then
        for name in "$@"; do echo "FAIL $name: does not build with ${*}"; done
        return $#
    fi
    (cd "$tree" && cargo test --quiet --lib) || lib_ok=false
    (cd "$tree" && cargo test --quiet --test exercises -- --ignored "${filters[@]}") 2>&1 |
        tee "$log" || run_ok=false
    # libtest lists each failed test as `    module::name` under "failures:".
    local failures
    failures=$(awk '/^failures:$/ { list = "" } /^    [^ ]+$/ { list = list $1 "\n" } END { printf "%s", list }' "$log")
    for name in "$@"; do
        local tests mine=true t
        tests=$(tests_of "$name")
        for t in $tests; do
            if grep -qF -- "$t" <<<"$failures"; then mine=false; fi
        done
        # A run that failed without a failure list (a crash, a test binary that aborted) is
        # everyone's failure.
        if ! $run_ok && [[ -z $failures ]]; then mine=false; fi
        if $lib_ok && $mine; then
            echo "ok   $name ($tests)"
        else
            $lib_ok || echo "FAIL $name: cargo test --lib fails with ${*} applied"
            $mine || echo "FAIL $name ($tests)"
            failed=$((failed + 1))
        fi
    done
    return "$failed"
}

passed=0 failed=0 together=() alone=()
copy_tree "$scratch/all"
for patch in "${patches[@]}"; do
    name=$(basename "$patch" .patch)
    if [[ ! -f $patch ]]; then
        echo "FAIL $name: no such solution"
        failed=$((failed + 1))
    elif [[ -z $(tests_of "$name") ]]; then
        echo "FAIL $name: no 'Tests:' line"
        failed=$((failed + 1))
    elif ! (cd "$root" && git apply --check "$patch"); then
        echo "FAIL $name: the patch does not apply to the repository's files alone"
        failed=$((failed + 1))
    elif (cd "$scratch/all" && git apply "$patch" 2>/dev/null); then
        together+=("$name")
    else
        echo "note $name conflicts with an earlier solution: checked in a tree of its own"
        alone+=("$name")
    fi
done

if ((${#together[@]} > 0)); then
    echo "checking ${together[*]} in one tree"
    n=0; check_tree "$scratch/all" "${together[@]}" || n=$?
    passed=$((passed + ${#together[@]} - n)) failed=$((failed + n))
fi
for name in ${alone[@]+"${alone[@]}"}; do
    copy_tree "$scratch/$name"
    (cd "$scratch/$name" && git apply "$root/solutions/$name.patch")
    n=0; check_tree "$scratch/$name" "$name" || n=$?
    passed=$((passed + 1 - n)) failed=$((failed + n))
done
echo "$passed passed, $failed failed"
((failed == 0))
