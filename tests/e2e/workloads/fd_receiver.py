"""Alice's long-running workload: one flow of its own to HOST:PORT (so that idgate knows it as
a recent owner), prints "ready", then accepts a descriptor over the Unix socket at descriptor
UNIX_FD, as a service that takes connections from others does; prints "got <fd>" and holds it
until a line comes on stdin.

Usage: fd_receiver.py HOST PORT UNIX_FD"""
import socket
import sys

host, port, fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
unix = socket.socket(fileno=fd)
c = socket.create_connection((host, port), timeout=10)
c.sendall(b"alice's bytes")
c.shutdown(socket.SHUT_WR)
while c.recv(65536):
    pass
c.close()
print("ready", flush=True)
_, fds, _, _ = socket.recv_fds(unix, 16, 1)
print("got", fds[0], flush=True)
sys.stdin.readline()
