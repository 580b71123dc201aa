#!/usr/bin/env python3
"""A path rule written the naive way, and the spellings that walk past it (chapter 08).

    python3 chapters/scripts/naive_rule.py [TARGET ...]

Starts two servers on free loopback ports, in this process, and stops them when it ends:

- an origin that routes as most web frameworks do, on the path percent-decoded and with its
  dot-segments and repeated slashes resolved: `/admin` is its admin page, anything else 404;
- a proxy in front of it with one access rule, written as a string test on the raw request
  target, `target.startswith("/admin")` -> 403, that forwards everything else untouched.

Then sends each TARGET (by default a few spellings of `/admin`) through the proxy, byte for
byte, and prints the status and what answered. Python 3 standard library only; every socket has
a timeout, and the servers stop with the script.
"""

import http.server
import posixpath
import socket
import sys
import threading
import urllib.parse

SPELLINGS = ["/admin", "/%61dmin", "/./admin", "/x/../admin"]
TIMEOUT = 5  # seconds, for every socket


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        path = posixpath.normpath("/" + path.lstrip("/"))  # /./admin, /x/../admin, //admin
        body = b"the admin page\n" if path == "/admin" else b"not found\n"
        self.send_response(200 if path == "/admin" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class NaiveProxy(http.server.BaseHTTPRequestHandler):
    origin = None  # (host, port), set before serving

    def do_GET(self):
        if self.path.startswith("/admin"):  # the rule: a string test on the raw target
            self.answer(403, b"forbidden by the proxy\n")
            return
        with socket.create_connection(self.origin, timeout=TIMEOUT) as up:
            up.sendall(f"GET {self.path} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := up.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        self.answer(int(head.split()[1]), body)

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = TIMEOUT
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def ask(port, target):
    """Sends `target` exactly as written (no client normalises it first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode().strip()


def main():
    origin = serve(Origin)
    NaiveProxy.origin = origin.server_address
    proxy = serve(NaiveProxy)
    try:
        for target in sys.argv[1:] or SPELLINGS:
            status, body = ask(proxy.server_address[1], target)
            print(f"{target:<13} {status}  {body}")
    finally:
        proxy.shutdown()
        origin.shutdown()


if __name__ == "__main__":
    main()
