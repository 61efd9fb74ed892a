"""N GETs of /one-shot/<i> on one workload connection to HOST:PORT (http.client), 10 ms apart.
Prints JSON: the statuses, the bodies and how many sockets carried them.

Usage: http_same_connection.py HOST PORT N"""
import http.client
import json
import sys
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(host, port, timeout=30)
statuses, bodies, socks = [], [], set()
for i in range(n):
    c.request("GET", f"/one-shot/{i}")
    r = c.getresponse()
    statuses.append(r.status)
    bodies.append(r.read().decode())
    socks.add(id(c.sock))
    time.sleep(0.01)  # the service's close lands while the connection is idle
print(json.dumps({"statuses": statuses, "bodies": bodies, "sockets": len(socks)}))
