#!/usr/bin/env python3
"""Holds N slow connections to a proxy for S seconds: half trickle a request head one byte a
second (never finishing it), half connect and send nothing. A connection the proxy closes is
counted and opened again, so the pressure stays at N. Prints "holding N" once all are open,
and a summary line at the end.

    slow_clients.py PORT [--count 2000] [--hold 30]
"""

import argparse
import select
import socket
import sys
import time

HEAD = b"GET /slow-client HTTP/1.1\r\nHost: slow.test\r\nUser-Agent: " + b"x" * 4000


def open_one(port):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=30)
    args = parser.parse_args()
    conns = {}  # socket -> bytes of HEAD sent (None: a silent one)
    failed_opens = 0
    for i in range(args.count):
        try:
            conns[open_one(args.port)] = 0 if i % 2 == 0 else None
        except OSError:
            failed_opens += 1
    print(f"holding {len(conns)} (failed to open {failed_opens})", flush=True)
    closed = 0
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        tick = time.monotonic() + 1
        # What the proxy closed (or answered: a 408 or 503 also ends them) is replaced.
        # poll, not select: descriptors past 1024 are beyond select's reach.
        poller = select.poll()
        by_fd = {s.fileno(): s for s in conns}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for fd, _events in poller.poll(0):
            s = by_fd[fd]
            kind = conns.pop(s)
            s.close()
            closed += 1
            try:
                conns[open_one(args.port)] = None if kind is None else 0
            except OSError:
                failed_opens += 1
        for s, sent in list(conns.items()):
            if sent is None or sent >= len(HEAD):
                continue
            try:
                s.send(HEAD[sent:sent + 1])
                conns[s] = sent + 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                conns.pop(s)
                s.close()
                closed += 1
        time.sleep(max(0.0, tick - time.monotonic()))
    print(f"slow clients: {args.count} held {args.hold:.0f} s, {closed} closed by the proxy and "
          f"reopened, {failed_opens} failed to open", flush=True)
    for s in conns:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
