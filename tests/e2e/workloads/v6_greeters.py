"""Serves [ADDRESS]:PORT over IPv6 for each PORT given: reads what a connection sent first (if
anything within half a second), sends "reached" and closes it. Reading first makes the close a
FIN: closing with unread bytes would reset the connection, and whether "reached" arrived before
that reset would depend on timing.

Usage: v6_greeters.py ADDRESS PORT..."""
import socket
import sys
import threading


def serve(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(8)
    while True:
        c, _ = s.accept()
        c.settimeout(0.5)
        try:
            c.recv(4096)
        except OSError:
            pass
        c.sendall(b"reached")
        c.close()


for port in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(port),), daemon=True).start()
threading.Event().wait()
