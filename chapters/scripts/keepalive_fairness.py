#!/usr/bin/env python3
"""Keep-alive fairness: N clients, each on ONE keep-alive connection, send GET / in a loop
(optionally pausing between requests, as a browser does) for a fixed time, and report how
many requests EACH client got answered.

wrk reports only totals, so a pool that serves 4 connections and starves 12 looks fine in
wrk's output; this script shows the starved ones. Loopback only; every socket has a timeout
and the run ends at its deadline.

    chapters/scripts/keepalive_fairness.py PORT [--clients 16] [--seconds 10] [--think-ms 0]
"""

import argparse
import socket
import statistics
import threading
import time


def read_response(sock, buf):
    """Reads one response with a Content-Length body; returns (status, rest of buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in body")
        buf += chunk
    return status, buf[length:]


def client(port, deadline, think, result):
    latencies = []
    errors = 0
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while time.monotonic() < deadline:
            # Never wait past the end of the run: a request unanswered by then is starved.
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            start = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            status, buf = read_response(sock, buf)
            if time.monotonic() > deadline:
                break  # answered only after the run: not counted
            if status != 200:
                errors += 1
            latencies.append(time.monotonic() - start)
            if think:
                time.sleep(think)
        sock.close()
    except socket.timeout:
        pass  # still waiting at the deadline: shows up as few (or zero) responses
    except (OSError, ConnectionError, ValueError):
        errors += 1
    result.update(latencies=latencies, errors=errors)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--think-ms", type=float, default=0)
    args = parser.parse_args()

    deadline = time.monotonic() + args.seconds
    results = [dict() for _ in range(args.clients)]
    threads = [
        threading.Thread(target=client, args=(args.port, deadline, args.think_ms / 1000, r))
        for r in results
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 10)

    counts = [len(r.get("latencies", [])) for r in results]
    all_latencies = sorted(x for r in results for x in r.get("latencies", []))
    starved = sum(1 for c in counts if c == 0)
    errors = sum(r.get("errors", 0) for r in results)

    def pct(p):
        if not all_latencies:
            return float("nan")
        return all_latencies[min(len(all_latencies) - 1, int(p * len(all_latencies)))] * 1000

    print(
        f"clients={args.clients} think={args.think_ms:g}ms seconds={args.seconds:g}: "
        f"{sum(counts)} responses, {sum(counts) / args.seconds:.0f} req/s; "
        f"per client min={min(counts)} median={statistics.median(counts):g} max={max(counts)}; "
        f"starved (0 responses)={starved}; p50={pct(0.5):.2f}ms p99={pct(0.99):.2f}ms; "
        f"errors={errors}"
    )


if __name__ == "__main__":
    main()
