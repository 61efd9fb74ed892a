"""Serves PORT: answers one request per connection and then closes it without saying so (no
`Connection: close`), like a server whose keep-alive idle timeout just fired.

Usage: one_shot_server.py PORT"""
import socket
import sys
import threading


def serve(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = c.recv(4096)
        if not b:
            c.close()
            return
        buf += b
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
