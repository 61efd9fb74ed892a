"""N keep-alive GETs of /inspect/keepalive/<i> on one connection to HOST:PORT (http.client).
Prints JSON: the statuses seen, how many requests, the authorization headers the service saw,
and how many sockets carried them.

Usage: http_keepalive.py HOST PORT N"""
import http.client
import json
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(host, port, timeout=30)
statuses, auths, socks = [], set(), []
for i in range(n):
    c.request("GET", f"/inspect/keepalive/{i}")
    r = c.getresponse()
    doc = json.loads(r.read())
    statuses.append(r.status)
    auths.add(tuple(doc["headers"].get("authorization", [])))
    assert doc["path"] == f"/inspect/keepalive/{i}", doc["path"]
    socks.append(c.sock)  # kept alive, so ids cannot be reused
print(json.dumps({"statuses": sorted(set(statuses)), "count": len(statuses), "auths": sorted(auths), "sockets": len({id(s) for s in socks})}))
