"""Listens on ADDRESS:PORT (a port idgate means to use) and prints the first 200 bytes of each
connection that reaches it.

Usage: squatter.py ADDRESS PORT"""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
while True:
    c, _ = s.accept()
    print(c.recv(200).decode(errors="replace"), flush=True)
    c.close()
