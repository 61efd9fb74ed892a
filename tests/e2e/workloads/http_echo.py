"""POSTs N random bytes chunked to /echo on HOST:PORT while reading the echo. Prints JSON: the
status, the length and sha256 of what came back, the sha256 of what it sent, and the
response's framing headers.

Usage: http_echo.py HOST PORT N"""
import hashlib
import json
import os
import sys
import threading

from http_conn import Conn

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = Conn(host, port)
sent = hashlib.sha256()


def send():
    c.s.sendall(f"POST /echo HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\n"
                "Content-Type: application/octet-stream\r\n\r\n".encode())
    left = n
    while left:
        chunk = os.urandom(min(left, 65536))
        sent.update(chunk)
        c.s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        left -= len(chunk)
    c.s.sendall(b"0\r\n\r\n")


t = threading.Thread(target=send)
t.start()
got = hashlib.sha256()
count = [0]


def sink(b):
    got.update(b)
    count[0] += len(b)


line, status, headers, _ = c.response(sink)
t.join()
print(json.dumps({"status": status, "len": count[0], "sent_sha": sent.hexdigest(), "got_sha": got.hexdigest(),
                  "transfer_encoding": headers.get("transfer-encoding"), "content_length": headers.get("content-length")}))
