#!/usr/bin/env python3
"""A small origin that misbehaves on demand, for chapters/scripts/misbehaving-backends.sh and
soak.sh. HTTP/1.1 with keep-alive; every request it receives is logged (one line: method and
the X-Id header) before it decides what to do, so a script can count at the backend what the
proxy really sent, a POST sent twice included.

    fault_backend.py PORT NAME --log FILE [--mode-file FILE]

The mode is read from --mode-file on every request (missing or empty: ok):
    ok       200, body "NAME ID\\n" (ID the request's X-Id), Content-Length; paths under
             /cached say Cache-Control: max-age=5
    garbage  a line that is not HTTP, then close
    reset    close with a reset (SO_LINGER 0), nothing sent
    stall    send nothing for 30 s (the proxy's read timeout must give 504), then close
GET /health answers 200 in every mode but stall (it is how the proxy's active checks see it).
"""

import argparse
import socket
import socketserver
import struct
import sys
import threading
import time

LOCK = threading.Lock()


def mode_of(path):
    if not path:
        return "ok"
    try:
        with open(path) as f:
            return f.read().strip() or "ok"
    except OSError:
        return "ok"


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(30)
        buf = b""
        for _ in range(100000):  # requests per connection, bounded
            while b"\r\n\r\n" not in buf:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                if len(buf) > 65536:
                    return
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                return
            method, target = parts[0], parts[1]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            while len(buf) < length:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
            buf = buf[length:]
            rid = headers.get("x-id", "-")
            mode = mode_of(self.server.mode_file)
            if target != "/health":
                with LOCK:
                    self.server.log.write(f"{method} {rid} {mode}\n")
                    self.server.log.flush()
            elif mode != "stall":
                mode = "ok"
            if mode == "garbage":
                sock.sendall(b"this is not HTTP at all\r\n\r\n")
                return
            if mode == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if mode == "stall":
                time.sleep(30)
                return
            body = f"{self.server.name} {rid}\n".encode()
            close = headers.get("connection", "").lower() == "close"
            cache = b"\r\nCache-Control: max-age=5" if target.startswith("/cached") else b""
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain" + cache + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + (b"\r\nConnection: close" if close else b"")
                + b"\r\n\r\n"
                + body
            )
            if close:
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("name")
    parser.add_argument("--log", required=True)
    parser.add_argument("--mode-file")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.name = args.name
    server.mode_file = args.mode_file
    server.log = open(args.log, "a")
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
