"""Starts, waits for a line on stdin, then makes one connection to HOST:PORT: sends "hi",
half-closes, reads the answer to its end and prints its length.

Usage: connect_on_go.py HOST PORT"""
import socket
import sys

sys.stdin.readline()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"hi")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(len(data))
