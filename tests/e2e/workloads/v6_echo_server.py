"""Serves [ADDRESS]:PORT over IPv6: reads up to 100 bytes of each connection and sends them
back with "ping" replaced by "ok".

Usage: v6_echo_server.py ADDRESS PORT"""
import socket
import sys

s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
while True:
    c, _ = s.accept()
    d = c.recv(100)
    c.sendall(d.replace(b"ping", b"ok"))
    c.close()
