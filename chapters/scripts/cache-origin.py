#!/usr/bin/env python3
"""A small origin for chapter 07's examples: answers whose caching headers the demo backend
does not send.

    chapters/scripts/cache-origin.py [--port 8000]

  /lang   `Vary: Accept-Language`, `max-age=60`; the body names the language asked for and
          counts the answers made, so a cached variant shows an old count
  /news   `max-age=1, stale-if-error=60`: stale after a second, then served stale by a cache
          for a minute if the origin fails
  /health 200

Every answer carries `Content-Length` and the connection is kept (HTTP/1.1). Stop it with
Ctrl-C (or `chapters/scripts/serve.sh stop NAME` when it was started through serve.sh).
"""

import argparse
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = itertools.count(1)
LOCK = threading.Lock()


def next_answer():
    with LOCK:
        return next(ANSWERS)


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, headers, body):
        data = body.encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/lang":
            lang = self.headers.get("Accept-Language", "none")
            self.answer(
                200,
                [("Cache-Control", "public, max-age=60"), ("Vary", "Accept-Language")],
                f"language {lang}, answer {next_answer()}\n",
            )
        elif path == "/news":
            self.answer(
                200,
                [("Cache-Control", "public, max-age=1, stale-if-error=60")],
                f"news, answer {next_answer()}\n",
            )
        elif path == "/health":
            self.answer(200, [], "ok\n")
        else:
            self.answer(404, [], "not found\n")

    do_HEAD = do_GET

    def log_message(self, format, *args):  # one line per request, on stderr
        super().log_message(format, *args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Origin)
    server.daemon_threads = True
    print(f"cache-origin listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
