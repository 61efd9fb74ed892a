"""Sends RAW_HEX (bytes, in hex) to HOST:PORT and reads until the stream ends or 10 s pass.
Prints JSON: what came back (latin-1) and whether the stream ended.

Usage: raw_http.py HOST PORT RAW_HEX"""
import json
import sys

from http_conn import Conn

host, port, raw = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
c = Conn(host, port, timeout=10)
c.s.sendall(raw)
try:
    data, eof = c.read_to_eof(), True
except TimeoutError:
    data, eof = c.buf, False
print(json.dumps({"data": data.decode("latin-1"), "eof": eof}))
