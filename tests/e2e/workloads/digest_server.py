"""Serves PORT: for each connection, reads until EOF, then answers with the sha256 (hex) of
what it got, a newline and REPLY_BYTES of a fixed pattern; appends "<peer address> <bytes
received>" to LOG per connection.

Usage: digest_server.py PORT REPLY_BYTES LOG"""
import hashlib
import socket
import sys
import threading

port, reply_bytes, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def pattern(n):
    block = bytes(range(256)) * 256
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


def serve(c, addr):
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    with open(log, "a") as f:
        f.write(f"{addr[0]} {n}\n")
    try:
        c.sendall(h.hexdigest().encode() + b"\n" + pattern(reply_bytes))
    except OSError:
        pass
    c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(128)
while True:
    c, addr = s.accept()
    threading.Thread(target=serve, args=(c, addr), daemon=True).start()
