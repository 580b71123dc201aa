#!/usr/bin/env python3
"""Run the chapters' commands as a student would type them, and fail where they fail.

    chapters/run.py [--quick] [--keep] [--committed] [-v] [--figures] [CHAPTER.md ...]

Reads each chapter's fenced blocks (the convention is at the top of chapters/README.md):
```sh blocks run, in order, each in a fresh `bash` with `set -euo pipefail`, from the root of
a scratch clone of this repository; ```sh background blocks (or a block after
`<!-- run: background -->`) start a server that the runner stops when the chapter ends; every
other block (```text, ```console, ```rust, a bare ```) is shown output or code and never runs.
Without CHAPTER arguments it runs every chapter linked from chapters/README.md, in the order
of its table, in one clone, as a student reading them in order would.

Measured figures are checked first (`unmarked_figures`): a table or output block of measured
figures either is the output of a block the runner runs, or has `<!-- recorded: COMMAND -->`
right before it. `--figures` runs only that check, on every chapter, in a second.

--quick exports DURATION=1s and REVPROXY_QUICK=1 (the chapters' timed runs honour them) and
skips blocks marked `<!-- run: skip-quick -->`. A block that fails, or outlives its timeout,
fails its chapter with the file and line of the command; a chapter that leaves a server
running fails too. Every process the runner starts runs in a process group of its own, and
every group is stopped when its chapter ends, on failure and on Ctrl-C as well.

Prints one line per chapter, then "N passed, N failed" alone on the last line. Exit code 0
when every chapter passed, 1 otherwise, 2 for a usage error. Python 3 standard library only.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TIMEOUT = 120  # seconds per block, unless `<!-- run: timeout=N -->` says otherwise
COURSE_PORTS = (8080, 8000, 8001, 8002, 8081, 8090)  # proxy, backends, C programs, extra stages
RUN_COMMENT = re.compile(r"^\s*<!--\s*run:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`]*)$")
HEADER = """\
set -euo pipefail
trap 'echo "$LINENO" >"$REVPROXY_RUN_ERR"' ERR
exec {__trace}>>"$REVPROXY_RUN_TRACE"
BASH_XTRACEFD=$__trace
PS4='+${LINENO}: '
set -x
"""
HEADER_LINES = HEADER.count("\n")


class Block:
    def __init__(self, path, line, text, options):
        self.path = path  # the chapter, relative to the repository
        self.line = line  # line of the first command (1-based)
        self.text = text
        self.background = "background" in options
        self.skip = "skip" in options
        self.skip_quick = "skip-quick" in options
        self.timeout = int(options.get("timeout", DEFAULT_TIMEOUT))


def parse_options(words):
    options = {}
    for word in words.split():
        key, _, value = word.partition("=")
        options[key] = value
    return options


def blocks_of(path, rel):
    """The runnable blocks of a chapter, with their options and line numbers."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, pending, i = [], {}, 0
    while i < len(lines):
        comment = RUN_COMMENT.match(lines[i])
        if comment:
            pending = parse_options(comment.group(1))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                pending = {}  # a run comment applies only to the block right after it
            i += 1
            continue
        marker, info = fence.group(2), fence.group(3).split()
        start = i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            i += 1
        if i >= len(lines):
            raise ValueError(f"{rel}:{start}: this block's fence is never closed")
        body = "\n".join(lines[start:i]) + "\n"
        i += 1  # the closing fence
        if info and info[0] in ("sh", "bash"):
            options = dict(pending)
            options.update(parse_options(" ".join(info[1:])))
            blocks.append(Block(rel, start + 1, body, options))
        pending = {}
    return blocks


# A measured figure: a number with a unit of time, rate or size, as a load test prints it.
FIGURE = re.compile(r"\d(?:[\d,.]*\d)?\s?(?:k\s)?(?:req/s|requests/s|Requests/sec|µs|us|ms|KiB|MiB|GiB)\b"
                    r"|\d\.\d+ ?s\b|\d/s\b|Requests/sec:")
# A table is a measurement when its header names one of these, or a cell holds a figure.
MEASURED_HEADER = re.compile(r"req/s|µs|\bp50\b|\bp99\b|\bCPU\b|/ ?nginx|/ ?wrk|bodies/s|ratio", re.I)
RECORDED = re.compile(r"^\s*<!--\s*recorded:\s*(.*?)\s*-->\s*$")


def unmarked_figures(path, rel):
    """Measured figures that neither come from a block the runner runs nor say how they were
    measured, as (line, message) pairs.

    A figure is a table whose header names a measure (req/s, µs, p99, CPU...) or whose cells
    hold a number with a unit (12 ms, 3.4 KiB, 2,830 req/s), or an output block (```text,
    ```console, a bare ```) with such a number. It passes when `<!-- recorded: COMMAND -->`
    stands right before it (blank lines aside), naming the command that produced it, or, for an
    output block only, when the nearest block before it is an ```sh block the runner runs (not
    `skip`): the output shown is that block's (a ```console transcript, which shows its own
    `$ command`, always needs the marker). A table summarising runs always says how it was
    measured. Numbers in prose are not checked.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    problems = []
    recorded = None  # (line, command) of a marker waiting for its figure
    last_fence = None  # "run" when the nearest fenced block before this point runs, else "other"
    pending_run = {}
    i = 0

    def marked(kind, line):
        nonlocal recorded
        if recorded is None:
            return False
        if not recorded[1]:
            problems.append((recorded[0], "`<!-- recorded: -->` names no command"))
        recorded = None
        return True

    while i < len(lines):
        line = lines[i]
        marker = RECORDED.match(line)
        if marker:
            if recorded is not None:
                problems.append((recorded[0], "a `<!-- recorded: ... -->` marker with no table or output block after it"))
            recorded = (i + 1, marker.group(1))
            i += 1
            continue
        run_comment = RUN_COMMENT.match(line)
        if run_comment:
            pending_run = parse_options(run_comment.group(1))
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            marker_text, info = fence.group(2), fence.group(3).split()
            start = i
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker_text):
                i += 1
            body = lines[start + 1:i]
            i += 1
            lang = info[0] if info else ""
            if lang in ("sh", "bash"):
                options = dict(pending_run)
                options.update(parse_options(" ".join(info[1:])))
                runs = "skip" not in options and "background" not in options
                if recorded is not None:
                    problems.append((recorded[0], "a `<!-- recorded: ... -->` marker before a command block; put it before the figures"))
                    recorded = None
                last_fence = "run" if runs else "other"
            elif lang in ("", "text", "console"):
                has_figure = any(FIGURE.search(l) for l in body)
                # A ```console transcript shows its own `$ command`: never the output of the
                # block before it.
                from_run = last_fence == "run" and lang != "console"
                if has_figure and not marked("output", start + 1) and not from_run:
                    problems.append((start + 1, "measured figures in an output block that no block the runner runs "
                                     "produced: mark it `<!-- recorded: COMMAND -->` with the command that did"))
                elif not has_figure and recorded is not None:
                    marked("output", start + 1)
            else:
                last_fence = "other"
            pending_run = {}
            continue
        if line.startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            table = lines[start:i]
            measured = MEASURED_HEADER.search(table[0]) or any(FIGURE.search(l) for l in table[2:])
            if measured and not marked("table", start + 1):
                problems.append((start + 1, "a table of measured figures without `<!-- recorded: COMMAND -->` "
                                 "right before it (the command that produced them)"))
            elif not measured and recorded is not None:
                marked("table", start + 1)
            continue
        if line.strip():
            pending_run = {}
            if recorded is not None:
                problems.append((recorded[0], "a `<!-- recorded: ... -->` marker with no table or output block right after it"))
                recorded = None
        i += 1
    if recorded is not None:
        problems.append((recorded[0], "a `<!-- recorded: ... -->` marker with no table or output block after it"))
    return [(line, f"{rel}:{line}: {message}") for line, message in problems]


def chapters_in_readme():
    readme = os.path.join(ROOT, "chapters", "README.md")
    with open(readme, encoding="utf-8") as f:
        rows = [l for l in f if l.startswith("|")]  # the reading-order table only
    names = re.findall(r"\]\(([\w.-]+\.md)\)", "".join(rows))
    seen = []
    for name in names:
        if name not in seen and os.path.exists(os.path.join(ROOT, "chapters", name)):
            seen.append(name)
    return ["chapters/" + name for name in seen]


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group of zombies only: its members have exited.
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return any(not s.startswith("Z") for s in out.split())


def stop_groups(groups, grace=3.0):
    """SIGTERM every group, wait up to `grace` seconds, then SIGKILL what is left."""
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_alive(g) for g in groups):
        time.sleep(0.05)
    for pgid in groups:
        if group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Chapter:
    def __init__(self, rel, clone, env, quick, logdir, verbose=False):
        self.rel, self.clone, self.env, self.quick = rel, clone, env, quick
        self.verbose = verbose
        self.logdir = logdir
        self.groups = []  # process groups started for this chapter
        self.procs = []
        self.started = []  # the block of each process in procs
        self.ran = self.skipped = self.background = 0

    def script(self, block, n):
        path = os.path.join(self.logdir, f"block{n}.sh")
        with open(path, "w", encoding="utf-8") as f:
            f.write(HEADER + block.text)
        return path

    def chapter_line(self, block, script_line):
        return block.line + max(script_line - HEADER_LINES - 1, 0)

    def last_traced_line(self, trace):
        try:
            with open(trace, encoding="utf-8", errors="replace") as f:
                lines = [l for l in f if re.match(r"^\+\d+: ", l)]
        except OSError:
            return None
        return int(re.match(r"^\+(\d+): ", lines[-1]).group(1)) if lines else None

    def block_line_text(self, block, line):
        index = line - block.line
        lines = block.text.split("\n")
        return lines[index].strip() if 0 <= index < len(lines) else ""

    def run_block(self, block, n):
        script = self.script(block, n)
        out = os.path.join(self.logdir, f"block{n}.out")
        err_file = os.path.join(self.logdir, f"block{n}.err")
        trace = os.path.join(self.logdir, f"block{n}.trace")
        env = dict(self.env, REVPROXY_RUN_ERR=err_file, REVPROXY_RUN_TRACE=trace)
        with open(out, "wb") as log:
            proc = subprocess.Popen(
                ["bash", script], cwd=self.clone, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.groups.append(proc.pid)
        self.procs.append(proc)
        self.started.append(block)
        if block.background:
            self.background += 1
            return None
        try:
            code = proc.wait(timeout=block.timeout)
        except subprocess.TimeoutExpired:
            stop_groups([proc.pid])
            proc.wait()
            line = self.last_traced_line(trace)
            where = self.chapter_line(block, line) if line else block.line
            return (where, f"still running after {block.timeout}s (timeout): "
                    f"{self.block_line_text(block, where)}", out)
        if code != 0:
            line = None
            try:
                with open(err_file, encoding="utf-8") as f:
                    line = int(f.read().strip() or 0) or None
            except (OSError, ValueError):
                pass
            if line is None:
                line = self.last_traced_line(trace)
            where = self.chapter_line(block, line) if line else block.line
            return (where, f"exit {code}: {self.block_line_text(block, where)}", out)
        return None

    def leftovers(self):
        """What the chapter left running that a student would trip over in the next one."""
        left = []
        listed = subprocess.run(["chapters/scripts/serve.sh", "list"], cwd=self.clone, env=self.env,
                                capture_output=True, text=True).stdout
        left += [l.split()[0] + " (serve.sh)" for l in listed.splitlines() if l.endswith("running")]
        pids = os.path.join(self.clone, "backends", ".pids")
        if os.path.exists(pids):
            with open(pids) as f:
                for pid in f.read().split():
                    state = subprocess.run(["ps", "-o", "stat=", "-p", pid], capture_output=True,
                                           text=True).stdout.strip()
                    if state and not state.startswith("Z"):
                        left.append(f"backend PID {pid} (backends/.pids)")
        # A command started with `&` in a block and never stopped is still in the block's group.
        for proc, block in zip(self.procs, self.started):
            if not block.background and group_alive(proc.pid):
                args = subprocess.run(["ps", "-o", "args=", "-g", str(proc.pid)], capture_output=True,
                                      text=True).stdout.split("\n")
                left += [f"'{a.strip()}' (from line {block.line})" for a in args if a.strip()]
        return left

    def cleanup(self):
        # Servers of background blocks are the runner's to stop (a student presses Ctrl-C);
        # whatever else is still running is stopped too, after being reported.
        for script in (["chapters/scripts/serve.sh", "stop-all"], ["backends/stop.sh"]):
            if os.path.exists(os.path.join(self.clone, script[0])):
                subprocess.run(script, cwd=self.clone, env=self.env, capture_output=True, timeout=30)
        stop_groups(self.groups)
        for proc in self.procs:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def run(self):
        path = os.path.join(self.clone, self.rel)
        if not os.path.exists(path):
            return f"{self.rel}: no such chapter", None
        failure = None
        try:
            try:
                blocks = blocks_of(path, self.rel)
            except ValueError as err:
                return None, (None, str(err), None)
            figures = unmarked_figures(path, self.rel)
            if figures:
                more = f" (and {len(figures) - 1} more: run.py --figures)" if len(figures) > 1 else ""
                line, message = figures[0]
                return None, (line, message.split(": ", 1)[1] + more, None)
            for n, block in enumerate(blocks):
                if block.skip or (self.quick and block.skip_quick):
                    self.skipped += 1
                    continue
                self.ran += 1
                began = time.monotonic()
                failure = self.run_block(block, n)
                if self.verbose:
                    kind = "background" if block.background else f"{time.monotonic() - began:.1f}s"
                    print(f"     {self.rel}:{block.line}: {kind}", flush=True)
                if failure:
                    break
            if not failure:
                left = self.leftovers()
                if left:
                    failure = (None, "left running at the end of the chapter: " + ", ".join(left), None)
        finally:
            self.cleanup()
        return None, failure


def prepare_clone(committed, chapters):
    clone = tempfile.mkdtemp(prefix="revproxy-chapters-")
    is_repo = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT,
                             capture_output=True).returncode == 0
    if not is_repo:
        # Not a git checkout (an unpacked archive): copy the tree, without build output.
        os.rmdir(clone)
        shutil.copytree(ROOT, clone, symlinks=True,
                        ignore=shutil.ignore_patterns("target", ".git", ".serve", ".pids", ".logs"))
        return clone
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, clone], check=True)
    if not committed:
        # The working tree's version of every tracked file, so uncommitted edits are tested
        # too; untracked files stay out.
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.split(b"\0")
        for name in filter(None, files):
            src = os.path.join(ROOT, os.fsdecode(name))
            dst = os.path.join(clone, os.fsdecode(name))
            if os.path.isfile(src) and not os.path.islink(src):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
    for rel in chapters:  # a chapter named on the command line, even before `git add`
        if os.path.isfile(os.path.join(ROOT, rel)) and not committed:
            shutil.copy2(os.path.join(ROOT, rel), os.path.join(clone, rel))
    return clone


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter files (default: all, in order)")
    parser.add_argument("--quick", action="store_true", help="short durations (DURATION=1s)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone and logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each block's time")
    parser.add_argument("--committed", action="store_true",
                        help="test the last commit only, not the working tree's edits")
    parser.add_argument("--figures", action="store_true",
                        help="only check that every measured figure is run or marked as recorded")
    args = parser.parse_args()
    chapters = [os.path.relpath(os.path.abspath(c), ROOT) for c in args.chapters] or chapters_in_readme()

    if args.figures:
        problems = [m for rel in chapters for _, m in unmarked_figures(os.path.join(ROOT, rel), rel)]
        for message in problems:
            print(message)
        bad = {m.split(":", 1)[0] for m in problems}
        print(f"{len(chapters) - len(bad)} passed, {len(bad)} failed")
        return 1 if problems else 0

    busy = [p for p in COURSE_PORTS if port_accepts(p)]
    if busy:
        print(f"ports {busy} already accept connections; stop what holds them first", file=sys.stderr)
        print(f"0 passed, {len(chapters)} failed")
        return 1

    env = dict(os.environ)
    target = env.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    env["CARGO_TARGET_DIR"] = os.path.abspath(target)
    if args.quick:
        env.update(DURATION="1s", REVPROXY_QUICK="1")
    env.pop("REVPROXY_SERVE_DIR", None)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signum)

    signal.signal(signal.SIGTERM, interrupted)
    clone = prepare_clone(args.committed, chapters)
    # `target/release/...` in the chapters: the build the runner shares with the repository.
    os.makedirs(env["CARGO_TARGET_DIR"], exist_ok=True)
    if not os.path.exists(os.path.join(clone, "target")):
        os.symlink(env["CARGO_TARGET_DIR"], os.path.join(clone, "target"))
    logs = os.path.join(clone, ".chapter-logs")
    passed = failed = 0
    began = time.monotonic()
    try:
        for rel in chapters:
            logdir = os.path.join(logs, os.path.basename(rel))
            os.makedirs(logdir, exist_ok=True)
            chapter = Chapter(rel, clone, env, args.quick, logdir, args.verbose)
            started = time.monotonic()
            missing, failure = chapter.run()
            took = time.monotonic() - started
            if missing:
                failed += 1
                print(f"FAIL {missing}", flush=True)
                continue
            counts = f"{chapter.ran} blocks run, {chapter.background} background, {chapter.skipped} skipped"
            if failure is None:
                passed += 1
                print(f"ok   {rel} ({counts}) {took:.1f}s", flush=True)
                continue
            failed += 1
            line, message, out = failure
            where = f"{rel}:{line}" if line else rel
            print(f"FAIL {where}: {message} ({counts}) {took:.1f}s", flush=True)
            if out and os.path.exists(out):
                with open(out, encoding="utf-8", errors="replace") as f:
                    tail = f.read().splitlines()[-25:]
                for l in tail:
                    print(f"     | {l}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        failed += len(chapters) - passed - failed
    finally:
        if args.keep:
            print(f"scratch clone and logs kept in {clone}", file=sys.stderr)
        else:
            shutil.rmtree(clone, ignore_errors=True)
    print(f"{len(chapters)} chapter(s) in {time.monotonic() - began:.0f}s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
