"""A WebSocket handshake with /ws on HOST:PORT, then N random bytes sent (and the sending side
closed) while reading everything that comes back. Prints JSON: the status, whether the
Sec-WebSocket-Accept is right, and the length and integrity of what came back.

Usage: websocket_echo.py HOST PORT N"""
import base64
import hashlib
import json
import os
import socket
import sys
import threading

from http_conn import Conn

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = Conn(host, port)
key = base64.b64encode(os.urandom(16)).decode()
c.s.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
line, status, headers = c.head()
expect = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
data = os.urandom(n)


def send():
    c.s.sendall(data)
    c.s.shutdown(socket.SHUT_WR)


t = threading.Thread(target=send)
if status == 101:
    t.start()
got = c.read_to_eof() if status == 101 else b""
if status == 101:
    t.join()
print(json.dumps({"status": status, "accept_ok": headers.get("sec-websocket-accept") == [expect],
                  "len": len(got), "intact": got == data}))
