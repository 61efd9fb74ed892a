"""Serves PORT: greets each connection with "hello\n", then reads until the stream ends and
appends how it ended to LOG ("eof", or the error's name).

Usage: greeting_server.py PORT LOG"""
import socket
import sys
import threading

port, log = int(sys.argv[1]), sys.argv[2]


def serve(c):
    how = "eof"
    try:
        c.sendall(b"hello\n")
        while c.recv(4096):
            pass
    except OSError as e:
        how = type(e).__name__
    with open(log, "a") as f:
        f.write(how + "\n")


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
