#!/usr/bin/env python3
"""Checks that refused clients read their 503: holds one keep-alive connection to a stage
started with a cap of 1 (`stage3 --max-connections 1`), then opens N more connections one by
one, each sending a request and reading to the end, and counts 503s with Retry-After, resets
and anything else. A reset would mean the proxy closed with unread bytes and destroyed its
answer (see server::refuse_now).

    chapters/scripts/refusals.py PORT [N]
"""

import socket
import sys


def main():
    addr = ("127.0.0.1", int(sys.argv[1]))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    hold = socket.create_connection(addr, timeout=5)
    hold.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    print("holder:", hold.recv(4096).split(b"\r\n")[0].decode())
    ok = reset = other = 0
    for _ in range(n):
        s = socket.create_connection(addr, timeout=5)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: refusals\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data:
                ok += 1
            else:
                other += 1
        except ConnectionResetError:
            reset += 1
        except OSError:
            other += 1
        s.close()
    print(f"503 with Retry-After: {ok}, reset: {reset}, other: {other}")


if __name__ == "__main__":
    main()
