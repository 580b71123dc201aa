#!/usr/bin/env python3
"""Mixed traffic for the fault scripts: C threads, each a keep-alive connection (or, with
--close-every N, a new connection every N requests), sending GET and POST requests with a
unique X-Id for DURATION seconds, and judging every answer.

    fault_client.py PORT [-c 64] [--duration 20] [--post-every 4] [--close-every 0]
                    [--paths /a,/b] [--json FILE]

A response is correct when it is 200 and its body names its X-Id (what fault_backend.py
answers; for a path under /cached, any backend's body, since a cache may answer), or a clear
502, 503 or 504. Anything else is "wrong"; a request that gets no
response at all (reset, timeout) is "lost". The POST ids that were answered 200 are written to
--json, so the caller can check at the backends that each was received exactly once.
"""

import argparse
import http.client
import json
import sys
import threading
import time


def worker(n, args, deadline, out):
    conn = None
    sent = 0
    stats = {"get_ok": 0, "post_ok": 0, "clear_5xx": 0, "wrong": 0, "lost_get": 0,
             "lost_post": 0, "posts_answered": [], "examples": []}
    paths = args.paths.split(",")
    while time.monotonic() < deadline and sent < 10_000_000:
        sent += 1
        rid = f"{n}-{sent}"
        post = args.post_every > 0 and sent % args.post_every == 0
        method = "POST" if post else "GET"
        path = paths[sent % len(paths)]
        headers = {"X-Id": rid, "Host": "fault.test"}
        close = args.close_every > 0 and sent % args.close_every == 0
        if close:
            headers["Connection"] = "close"
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
            conn.request(method, path, body=(f"body of {rid}" if post else None), headers=headers)
            res = conn.getresponse()
            body = res.read()
            if res.status == 200 and body.decode(errors="replace").split()[-1:] == [rid]:
                stats["post_ok" if post else "get_ok"] += 1
                if post:
                    stats["posts_answered"].append(rid)
            elif res.status == 200 and path.startswith("/cached") and body.startswith(b"b"):
                # A cached answer names the request that filled the cache, not this one.
                stats["get_ok"] += 1
            elif res.status in (502, 503, 504):
                stats["clear_5xx"] += 1
            else:
                stats["wrong"] += 1
                if len(stats["examples"]) < 5:
                    stats["examples"].append(f"{method} {rid}: {res.status} {body[:80]!r}")
            if close or res.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as err:
            stats["lost_post" if post else "lost_get"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append(f"{method} {rid}: no response ({err!r})")
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    out[n] = stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--post-every", type=int, default=4)
    parser.add_argument("--close-every", type=int, default=0)
    parser.add_argument("--paths", default="/item")
    parser.add_argument("--timeout", type=float, default=15)
    parser.add_argument("--json")
    args = parser.parse_args()
    deadline = time.monotonic() + args.duration
    out = {}
    threads = [threading.Thread(target=worker, args=(n, args, deadline, out)) for n in range(args.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + args.timeout + 30)
    total = {k: 0 for k in ("get_ok", "post_ok", "clear_5xx", "wrong", "lost_get", "lost_post")}
    answered, examples = [], []
    for stats in out.values():
        for k in total:
            total[k] += stats[k]
        answered += stats["posts_answered"]
        examples += stats["examples"]
    total["threads_done"] = len(out)
    print(" ".join(f"{k}={v}" for k, v in total.items()))
    for e in examples[:10]:
        print("  e.g.", e)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"total": total, "posts_answered": answered}, f)


if __name__ == "__main__":
    sys.exit(main())
