"""Bob's program: creates a socket and sends it (SCM_RIGHTS) over the Unix socket at descriptor
UNIX_FD, prints "sent", waits for a line on stdin, then connects the socket itself to
HOST:PORT, sends, half-closes and reads the answer to its end. Prints JSON: the answer's length.

Usage: fd_sender.py HOST PORT UNIX_FD"""
import json
import socket
import sys

host, port, fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
unix = socket.socket(fileno=fd)
s = socket.socket()
socket.send_fds(unix, [b"x"], [s.fileno()])
print("sent", flush=True)
sys.stdin.readline()
s.settimeout(10)
s.connect((host, port))
s.sendall(b"bob's bytes")
s.shutdown(socket.SHUT_WR)
got = b""
while b := s.recv(65536):
    got += b
print(json.dumps({"got": len(got)}), flush=True)
