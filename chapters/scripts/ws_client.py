#!/usr/bin/env python3
"""Chapter 09's WebSocket client, on the standard library only: opens one WebSocket through
route service2 on 127.0.0.1:8080, sends a text message and reads its echo, then tries a second
WebSocket while the first is open, and one through route service1 (no websocket = true)."""
import base64, os, socket, struct

def handshake(path):
    s = socket.create_connection(("127.0.0.1", 8080), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
               f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head.decode().split("\r\n")

def send_text(s, text):  # a client's frames are masked (RFC 6455 section 5.3)
    data, mask = text.encode(), os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

def read_exactly(s, n):
    data = b""
    while len(data) < n:
        data += s.recv(n - len(data)) or b"?" * n  # closed early: garbage, not a hang
    return data

def read_text(s):  # a server's short unmasked text frame
    first, length = read_exactly(s, 2)
    return read_exactly(s, length).decode()

one, head = handshake("/service2/ws")
print("first: ", head[0])
send_text(one, "hello through the tunnel")
print("echo:  ", read_text(one))
two, head = handshake("/service2/ws")
print("second:", head[0], [h for h in head if h.startswith("Retry-After")])
three, head = handshake("/service1/ws")
print("service1:", head[0])
