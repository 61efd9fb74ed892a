"""Serves PORT: for each connection, reads until EOF and answers "done\n"; appends to LOG, when
the connection ends, "<bytes> <time of the last byte> <longest silence between two arrivals, s>
<how it ended: eof or the error's name>".

Usage: sink_server.py PORT LOG"""
import socket
import sys
import threading
import time

port, log = int(sys.argv[1]), sys.argv[2]


def serve(c):
    n, gap, last, how = 0, 0.0, None, "eof"
    try:
        while True:
            b = c.recv(4096)
            if not b:
                break
            now = time.time()
            if last is not None:
                gap = max(gap, now - last)
            n, last = n + len(b), now
        c.sendall(b"done\n")
    except OSError as e:
        how = type(e).__name__
    with open(log, "a") as f:
        f.write(f"{n} {last or 0.0} {gap:.3f} {how}\n")
    c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
