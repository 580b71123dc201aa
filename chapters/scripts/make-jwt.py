#!/usr/bin/env python3
"""Prints an HS256 JWT for chapter 08's examples (Python's standard library only).

    chapters/scripts/make-jwt.py SECRET SUB [--exp SECONDS] [--alg HS256|none]

`--exp` is the lifetime from now (negative: already expired); `--alg none` makes the unsigned
token of the classic `alg: none` attack (header `{"alg":"none"}`, empty signature).
"""

import argparse
import base64
import hashlib
import hmac
import json
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("secret")
    parser.add_argument("sub")
    parser.add_argument("--exp", type=int, default=300)
    parser.add_argument("--alg", choices=["HS256", "none"], default="HS256")
    args = parser.parse_args()
    header = {"alg": args.alg, "typ": "JWT"}
    claims = {"sub": args.sub, "exp": int(time.time()) + args.exp}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = ""
    if args.alg == "HS256":
        mac = hmac.new(args.secret.encode(), signing_input.encode(), hashlib.sha256)
        signature = b64(mac.digest())
    print(signing_input + "." + signature)


if __name__ == "__main__":
    main()
