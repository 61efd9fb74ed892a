"""N connections to HOST:PORT_A, then N to HOST:PORT_B, one after the other; each sends a byte,
half-closes and counts as answered if anything comes back. Prints how many were answered.

Usage: alternating_ports.py HOST PORT_A PORT_B N"""
import socket
import sys

host, port_a, port_b, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok = 0
for port in [port_a] * n + [port_b] * n:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"x")
    s.shutdown(socket.SHUT_WR)
    ok += len(s.recv(100)) > 0
    s.close()
print(ok)
