#!/usr/bin/env python3
"""Mutation check of the chapters' rebuild exercises: stubbing the function an exercise
names must make every test of its commands fail.

    solutions/mutants.py [--list] [--timeout SECONDS] [EXERCISE ...]

A rebuild exercise (an item of a chapter's `## Exercises` that starts with
**Rebuild `F`** and names its file, `(src/...)`) says: replace the body of F with
`todo!()`, and the tests named after "Checked by" fail; its `cargo test` commands run them.
An exercise whose tests stay green with F gone teaches nothing, so for each one this script

1. checks the text: F exists in that file, its body starts with the stub marker
   `crate::exercise::stub!("F");` (src/exercise.rs), every named test exists (a `#[test]`
   in src/, a function of an integration test file in tests/, where a macro may make the
   tests) in a target that one of the commands runs, and no marker is left that no exercise
   names;
2. builds the tests once with `--cfg revproxy_mutants`, into target/mutants so that the
   normal build is left alone (a rebuild per stubbed function would cost tens of seconds
   each); in that build the marker panics as `todo!()` when `REVPROXY_STUB` names F;
3. runs the exercise's commands as written, first without a stub, where every test they run
   must pass (else a failure would prove nothing) and the named tests must be among them,
   then with `REVPROXY_STUB=F` (the stage binaries that integration tests start inherit
   it), where every test they run must fail: a student who stubs F and runs the commands
   sees only failures, so a command that also runs tests of something else is caught too.

EXERCISE selects exercises by chapter (`04`, `hardening`) or by chapter and number (`04.2`).
--list does step 1 only (no build) and prints each exercise. A command that outlives
--timeout (default 300 s) is stopped: its tests that had not finished count as failed, as
a hung test would for a student.

Measured on this 2-core machine while other builds loaded it (load average 9 to 21): cold
(no target/mutants) 7.4 minutes, of which the build took 350 s for 2.7 minutes of CPU; warm
(nothing to rebuild) 70 to 90 s for the 28 exercises, each run twice, 1 to 13 s apiece.

Prints one line per exercise, then "N passed, N failed" alone on the last line. Exit code 0
when every exercise can fail, 1 otherwise, 2 for a usage error. Python 3 standard library
only (it parses Markdown and Rust, and stops a hung command's whole process group, which a
shell script does poorly). It lives beside solutions/check.sh, which proves the other kind
of exercise (extend) can be solved; together they keep every exercise honest, and CI runs
both (.ci/run).
"""

import argparse
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = "--cfg revproxy_mutants"
MARKER = re.compile(r'^\s*crate::exercise::stub!\("([^"]+)"\);\s*$')
SPAN = re.compile(r"`([^`]+)`")
TEST_FN = re.compile(r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?fn\s+(\w+)")
# An integration test file may define its tests as plain functions that a macro turns into a
# `#[test]` per stage (tests/proxy_suite.rs): there any `fn` counts, and the run shows it ran.
ANY_FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?fn\s+(\w+)", re.M)
# Not anchored to a line start: a stage that a test started shares the test's stdout, and its
# output can land mid-line (stderr, where the stages log, is read apart).
RESULT = re.compile(r"test (\S+) \.\.\. (ok|FAILED|ignored)")
SUMMARY = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed")


class Exercise:
    def __init__(self, chapter, number, text):
        self.chapter = chapter  # "04", "hardening"
        self.number = number
        self.text = text  # the item, its lines joined
        self.function = None
        self.file = None
        self.tests = []
        self.commands = []

    @property
    def label(self):
        where = f"chapter {self.chapter}" if self.chapter.isdigit() else self.chapter
        return f"{where} exercise {self.number}"


def chapter_files():
    files = sorted(glob.glob(os.path.join(ROOT, "chapters", "[0-9][0-9]-*.md")))
    files += [os.path.join(ROOT, "chapters", n) for n in ("measuring.md", "hardening.md")]
    return [f for f in files if os.path.exists(f)]


def exercise_items(path):
    """(number, text) of each numbered item of the file's `## Exercises` section."""
    items, inside, current = [], False, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                inside = line.strip() == "## Exercises"
                current = None
                continue
            if not inside:
                continue
            m = re.match(r"^(\d+)\.\s+(.*)", line)
            if m:
                current = [int(m.group(1)), m.group(2).strip()]
                items.append(current)
            elif current is not None and line.strip():
                current[1] += " " + line.strip()
    return [(n, t) for n, t in items]


def parse(errors):
    """Every rebuild exercise of the chapters; text errors go to `errors`."""
    exercises = []
    for path in chapter_files():
        name = os.path.basename(path)
        chapter = name[:2] if name[:2].isdigit() else name[: -len(".md")]
        last_file = None
        for number, text in exercise_items(path):
            bold = re.match(r"\*\*(.*?)\*\*", text)
            if not bold or not bold.group(1).startswith("Rebuild"):
                continue
            ex = Exercise(chapter, number, text)
            spans = SPAN.findall(bold.group(1))
            if not spans:
                errors.append(f"{ex.label}: no `function` in its title")
                continue
            ex.function = spans[0]
            file = re.search(r"\(`(src/[^`]+\.rs)`\)", text)
            if file:
                ex.file = file.group(1)
            elif "(same file)" in text:
                ex.file = last_file
            if ex.file is None:
                errors.append(f"{ex.label}: names no file (`src/...`) for `{ex.function}`")
                continue
            last_file = ex.file
            checked = text.split("Checked by", 1)
            if len(checked) < 2:
                errors.append(f"{ex.label}: no \"Checked by\" naming its tests")
                continue
            for span in SPAN.findall(checked[1]):
                if span.startswith("cargo test"):
                    ex.commands += [c.strip() for c in span.split("&&")]
                elif re.fullmatch(r"[a-z][a-z0-9_]*", span):
                    ex.tests.append(span)
            exercises.append(ex)
    return exercises


def function_body_line(source, function):
    """Index of the first line of `function`'s body in `source` (lines), or None.
    `Type::method` is looked up in the `impl` blocks of Type (inherent or trait)."""
    typ, _, method = function.rpartition("::")
    ranges = [(0, len(source))]
    if typ:
        ranges = []
        impl = re.compile(r"^impl\b(?:<[^{]*?>)?\s+(?:[\w:<>, ']+\s+for\s+)?%s\b" % re.escape(typ))
        for i, line in enumerate(source):
            if impl.match(line):
                end = next((j for j in range(i + 1, len(source)) if source[j].startswith("}")), len(source))
                ranges.append((i, end))
    fn = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+%s\b" % re.escape(method))
    for start, end in ranges:
        for i in range(start, end):
            if fn.match(source[i]):
                while i < end and not source[i].rstrip().endswith("{"):
                    i += 1
                return i + 1
    return None


def test_index():
    """Test function name -> the cargo targets (`--lib`, `--test NAME`) that hold it."""
    index = {}
    files = glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True)
    files += glob.glob(os.path.join(ROOT, "tests", "**", "*.rs"), recursive=True)
    for path in files:
        rel = os.path.relpath(path, ROOT)
        parts = rel.split(os.sep)
        if parts[0] == "src":
            if parts[1] == "bin":
                continue
            target = "--lib"
        else:
            target = "--test " + os.path.splitext(parts[1])[0]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for name in (TEST_FN if target == "--lib" else ANY_FN).findall(text):
            index.setdefault(name, set()).add(target)
    return index


def command_targets(command):
    """The targets a `cargo test` command builds: `--lib`, `--test NAME`, or None for all."""
    words = shlex.split(command)
    words = words[: words.index("--")] if "--" in words else words
    targets = []
    for i, w in enumerate(words):
        if w == "--lib":
            targets.append("--lib")
        elif w == "--test" and i + 1 < len(words):
            targets.append("--test " + words[i + 1])
    return targets or None


def check_text(exercises, errors):
    """Step 1: functions, markers and tests named by the chapters exist and agree."""
    tests = test_index()
    for ex in exercises:
        path = os.path.join(ROOT, ex.file)
        if not os.path.exists(path):
            errors.append(f"{ex.label}: {ex.file} does not exist")
            continue
        with open(path, encoding="utf-8") as f:
            source = f.read().split("\n")
        body = function_body_line(source, ex.function)
        if body is None:
            errors.append(f"{ex.label}: no function `{ex.function}` in {ex.file}")
            continue
        m = MARKER.match(source[body]) if body < len(source) else None
        if not m or m.group(1) != ex.function:
            errors.append(
                f"{ex.label}: `{ex.function}` ({ex.file}:{body + 1}) does not start with "
                f'crate::exercise::stub!("{ex.function}");'
            )
        if not ex.tests:
            errors.append(f"{ex.label}: names no test")
        if not ex.commands:
            errors.append(f"{ex.label}: gives no `cargo test` command")
        targets = set()
        for c in ex.commands:
            targets.update(command_targets(c) or ["all"])
        for t in ex.tests:
            if t not in tests:
                errors.append(f"{ex.label}: no test `{t}` in src/ or tests/")
            elif "all" not in targets and not tests[t] & targets:
                errors.append(f"{ex.label}: `{t}` is in {', '.join(sorted(tests[t]))}, which no command runs")
    named = {ex.function for ex in exercises}
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                m = MARKER.match(line)
                if m and m.group(1) not in named:
                    rel = os.path.relpath(path, ROOT)
                    errors.append(f"{rel}:{n}: stub marker for `{m.group(1)}`, which no exercise names")


def cargo_env(target_dir, stub=None):
    env = dict(os.environ)
    env.pop("CARGO_ENCODED_RUSTFLAGS", None)  # it would override RUSTFLAGS
    env["RUSTFLAGS"] = (env.get("RUSTFLAGS", "") + " " + CFG).strip()
    env["CARGO_TARGET_DIR"] = target_dir
    env["CARGO_TERM_COLOR"] = "never"
    env.pop("REVPROXY_STUB", None)
    if stub:
        env["REVPROXY_STUB"] = stub
    return env


def run(command, env, timeout):
    """Runs `command` in a process group of its own; (stdout, stderr, timed out). On a
    timeout the whole group (cargo, the test binary, the stages it started) is stopped."""
    proc = subprocess.Popen(
        shlex.split(command), cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return out, err, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return out, err, True


class Run:
    """What an exercise's commands did: every test's (path, outcome) as listed, the totals
    of libtest's summaries, and the commands stopped at the timeout or that ran no test."""

    def __init__(self):
        self.results, self.passed, self.failed, self.hung, self.empty = [], 0, 0, [], []

    def outcomes(self, outcome):
        return [p for p, o in self.results if o == outcome]

    def lost(self, outcome, total):
        """The tests a summary counted but whose line the output lost, as a list entry."""
        n = total - len(self.outcomes(outcome))
        return [f"{n} more (their names lost in the output)"] if n > 0 else []


def run_commands(ex, env, timeout):
    run_ = Run()
    for command in ex.commands:
        out, err, timed_out = run(command, env, timeout)
        ran = [(m.group(1), m.group(2)) for m in RESULT.finditer(out)]
        for m in SUMMARY.finditer(out):
            run_.passed += int(m.group(1))
            run_.failed += int(m.group(2))
        if timed_out:
            run_.hung.append(command)
        elif not ran:
            tail = "\n".join((out + err).splitlines()[-15:])
            run_.empty.append(f"`{command}` runs no test:\n{tail}")
        run_.results += ran
    return run_


def last(path):
    return path.rsplit("::", 1)[-1]


def check_exercise(ex, target_dir, timeout):
    """Step 3 for one exercise: (problems, commands stopped at the timeout, tests failed with
    the stub); no problem when every test its commands run passes without the stub and fails
    with it."""
    # Without a stub first: a test that fails anyway would fail with the stub too, and prove
    # nothing about the exercise.
    control = run_commands(ex, cargo_env(target_dir), timeout)
    problems = control.empty
    broken = control.outcomes("FAILED") + control.lost("FAILED", control.failed)
    if broken or control.hung:
        problems.append(
            "without any stub these fail already, so the check proves nothing for them: "
            + ", ".join(broken + [f"`{c}` (stopped after {timeout} s)" for c in control.hung])
        )
    passed = {last(p) for p in control.outcomes("ok")}
    missing = [t for t in ex.tests if t not in passed]
    if missing and not broken and not control.hung:
        problems.append(f"its commands do not run (or ignore): {', '.join(missing)}")
    stubbed = run_commands(ex, cargo_env(target_dir, ex.function), timeout)
    passing = stubbed.outcomes("ok") + stubbed.lost("ok", stubbed.passed)
    if passing:
        problems.insert(
            0, f"with `{ex.function}` stubbed, these tests still pass: {', '.join(passing)}"
        )
    return problems, stubbed.hung, max(stubbed.failed, len(stubbed.outcomes("FAILED")))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("exercises", nargs="*", metavar="EXERCISE",
                        help="chapter (04, hardening) or chapter.number (04.2); default: all")
    parser.add_argument("--list", action="store_true",
                        help="check the chapters' text and markers only, and list the exercises")
    parser.add_argument("--timeout", type=int, default=300,
                        help="seconds per cargo test command (default 300)")
    parser.add_argument("--target-dir", default=os.path.join(ROOT, "target", "mutants"),
                        help="where the stubbed build goes (default target/mutants)")
    args = parser.parse_args()

    errors = []
    exercises = parse(errors)
    check_text(exercises, errors)
    if args.exercises:
        wanted = set(args.exercises)
        exercises = [e for e in exercises if e.chapter in wanted or f"{e.chapter}.{e.number}" in wanted]
        if not exercises:
            parser.error(f"no rebuild exercise matches {' '.join(args.exercises)}")
    for e in errors:
        print(f"error: {e}")
    if args.list:
        for ex in exercises:
            print(f"{ex.label}: {ex.function} ({ex.file}); tests: {', '.join(ex.tests)}")
            for c in ex.commands:
                print(f"    {c}")
        print(f"{len(exercises)} rebuild exercises, {len(errors)} errors")
        return 1 if errors else 0
    if errors:
        print(f"0 passed, {len(exercises)} failed")
        return 1

    targets = []
    for ex in exercises:
        for c in ex.commands:
            for t in command_targets(c) or ["--all-targets"]:
                if t not in targets:
                    targets.append(t)
    build = "cargo test --locked --no-run " + " ".join(targets)
    print(f"building once, with {CFG}, into {os.path.relpath(args.target_dir, ROOT)}: {build}", flush=True)
    started = time.monotonic()
    built = subprocess.run(shlex.split(build), cwd=ROOT, env=cargo_env(args.target_dir))
    if built.returncode != 0:
        print(f"0 passed, {len(exercises)} failed")
        return 1
    print(f"built in {time.monotonic() - started:.0f} s", flush=True)

    passed = failed = 0
    for i, ex in enumerate(exercises, 1):
        started = time.monotonic()
        problems, hung, failed_tests = check_exercise(ex, args.target_dir, args.timeout)
        took = time.monotonic() - started
        head = f"[{i}/{len(exercises)}] {ex.label}: {ex.function}"
        note = f"; stopped after {args.timeout} s: {'; '.join(hung)}" if hung else ""
        if problems:
            failed += 1
            print(f"FAIL {head} ({took:.0f} s{note})")
            for p in problems:
                print(f"     {ex.label}: {p}")
        else:
            passed += 1
            print(f"ok   {head}: {failed_tests} tests fail, {len(ex.tests)} named ({took:.0f} s{note})")
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
