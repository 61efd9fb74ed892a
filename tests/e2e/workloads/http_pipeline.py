"""Three GETs of /inspect/pipe/<i> to HOST:PORT in one write; reads the three responses in
order. Prints JSON: per response, its status, the path the service saw and the authorization
header it got.

Usage: http_pipeline.py HOST PORT"""
import json
import sys

from http_conn import Conn

host, port = sys.argv[1], int(sys.argv[2])
c = Conn(host, port)
c.s.sendall(b"".join(f"GET /inspect/pipe/{i} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for i in range(3)))
out = []
for _ in range(3):
    line, status, headers, body = c.response()
    doc = json.loads(body)
    out.append({"status": status, "path": doc["path"], "authorization": doc["headers"].get("authorization")})
print(json.dumps(out))
