"""A client of greeting_server.py that reads to the end of the stream, as the client of a
response without a length does: connects to HOST:PORT, reads the greeting, prints "connected",
then reads until the stream ends. Prints JSON: the greeting, how the stream ended ("eof" or the
error's name) and how long after the greeting.

Usage: greeted_client.py HOST PORT"""
import json
import socket
import sys
import time

s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
first = s.recv(6)
print("connected", flush=True)
t0, how = time.time(), "eof"
try:
    while s.recv(4096):
        pass
except OSError as e:
    how = type(e).__name__
print(json.dumps({"first": first.decode(), "how": how, "after": time.time() - t0}), flush=True)
