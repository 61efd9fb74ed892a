"""GET /bytes/N from HOST:PORT (http.client). Prints JSON: the status, the body's length and
its sha256.

Usage: http_bytes.py HOST PORT N"""
import hashlib
import http.client
import json
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(host, port, timeout=30)
c.request("GET", f"/bytes/{n}")
r = c.getresponse()
h, total = hashlib.sha256(), 0
while b := r.read(1 << 16):
    h.update(b)
    total += len(b)
print(json.dumps({"status": r.status, "len": total, "sha": h.hexdigest()}))
