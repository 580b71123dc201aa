#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one request on each, reads the answer,
then keeps them all open and idle for S seconds (prints "holding N" when ready) before
closing them. Used to measure what an idle keep-alive client costs each concurrency model
(threads, processes, memory) from /proc while this runs.

    chapters/scripts/idle_connections.py PORT [--count 1000] [--hold 10]
"""

import argparse
import socket
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=10)
    args = parser.parse_args()
    conns, answered = [], 0
    for _ in range(args.count):
        s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"HTTP/1.1 200"):
            answered += 1
        conns.append(s)
    print(f"holding {len(conns)} ({answered} answered 200)", flush=True)
    time.sleep(args.hold)
    for s in conns:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
