"""One exchange: connects to HOST:PORT (TIMEOUT seconds for each step), sends PAYLOAD,
half-closes with "half-close", and reads once (at most 200 bytes). Prints JSON {"answer": what
came back, latin-1} or {"error": the error's repr} and then exits 1.

Usage: exchange.py HOST PORT TIMEOUT PAYLOAD [half-close]"""
import json
import socket
import sys

host, port, timeout, payload = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
try:
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(payload)
    if sys.argv[5:] == ["half-close"]:
        s.shutdown(socket.SHUT_WR)
    print(json.dumps({"answer": s.recv(200).decode("latin-1")}))
except OSError as e:
    print(json.dumps({"error": repr(e)}))
    sys.exit(1)
