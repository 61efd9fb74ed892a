"""One HTTP/1.1 request (http.client) to HOST:PORT. Prints JSON: the status, the response's
headers and its body (latin-1).

Usage: http_request.py HOST PORT METHOD PATH HEADERS_JSON [BODY]"""
import http.client
import json
import sys

host, port, method, path, headers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
c = http.client.HTTPConnection(host, port, timeout=30)
c.request(method, path, body=sys.argv[6].encode() if len(sys.argv) > 6 else None, headers=headers)
r = c.getresponse()
body = r.read()
print(json.dumps({"status": r.status, "headers": r.getheaders(), "body": body.decode("latin-1")}))
