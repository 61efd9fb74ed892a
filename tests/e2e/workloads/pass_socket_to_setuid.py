"""Bob's program: creates a socket and hands it to SETUID_PROGRAM (run with "60", it inherits
the socket), prints that program's pid, waits for a line on stdin, then connects the socket
itself to HOST:PORT, sends, half-closes and reads the answer to its end. Prints JSON: the
answer's length.

Usage: pass_socket_to_setuid.py SETUID_PROGRAM HOST PORT"""
import json
import socket
import subprocess
import sys

setuid_prog, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket()
child = subprocess.Popen([setuid_prog, "60"], pass_fds=[s.fileno()])
print(child.pid, flush=True)
sys.stdin.readline()
s.settimeout(10)
s.connect((host, port))
s.sendall(b"bob's bytes")
s.shutdown(socket.SHUT_WR)
got = b""
while b := s.recv(65536):
    got += b
child.kill()
print(json.dumps({"got": len(got)}), flush=True)
