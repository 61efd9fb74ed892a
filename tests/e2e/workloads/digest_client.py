"""Sends N bytes (MARKER, then random bytes) to HOST:PORT, half-closes, reads the answer of
digest_server.py and prints JSON: the sha256 of what it sent, the digest the server echoed,
the length and sha256 of the rest of the answer, and its own pid.

Usage: digest_client.py HOST PORT N MARKER"""
import hashlib
import json
import os
import socket
import sys

host, port, n, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
data = marker + os.urandom(max(0, n - len(marker)))
s = socket.create_connection((host, port), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    got += b
digest, _, body = bytes(got).partition(b"\n")
print(json.dumps({"sent_sha": hashlib.sha256(data).hexdigest(), "echo_sha": digest.decode(), "body_len": len(body),
                  "body_sha": hashlib.sha256(body).hexdigest(), "pid": os.getpid()}))
