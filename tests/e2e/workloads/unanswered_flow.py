"""Opens a flow to HOST:PORT, sends 100 bytes and prints "open", then waits up to 30 s for an
answer that never comes (digest_server.py answers at the end of the stream). Prints JSON: how
the flow ended ("eof", "data", "reset" or "hung") and when.

Usage: unanswered_flow.py HOST PORT"""
import json
import socket
import sys
import time

s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"x" * 100)
s.settimeout(30)
print("open", flush=True)
try:
    how = "eof" if s.recv(100) == b"" else "data"
except (ConnectionResetError, BrokenPipeError):
    how = "reset"
except TimeoutError:
    how = "hung"
print(json.dumps({"how": how, "at": time.time()}), flush=True)
