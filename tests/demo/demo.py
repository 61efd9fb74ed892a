"""Two hosts (network namespaces) talking mTLS through idgate, shown step by step."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import aws  # noqa: E402
import pki  # noqa: E402
from netns import IDGATE, REPO, WORKLOAD_PYTHON, Topology  # noqa: E402

WORK = Path("/tmp/idgate-demo")
SERVE = r"""
import http.server, sys
class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"        # keep-alive
    disable_nagle_algorithm = True       # headers and body leave without a 40 ms delay
    def do_GET(self):
        body = b"hello from host B\n"
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Hello).serve_forever()
"""
# Host B's API: answers with the credential headers it received, so the demo can show them.
API = r"""
import http.server, json, sys
class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        seen = {k: self.headers.get_all(k) for k in ("authorization", "x-forwarded-client-cert")}
        body = json.dumps(seen).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Api).serve_forever()
"""
# A workload that sends a forged token: idgate replaces it with the one alice's identity gets.
CALL_API = r"""
import sys, http.client
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
c.request("GET", "/orders", headers={"Authorization": "Bearer made-up-by-the-workload"})
r = c.getresponse(); print(r.status, r.read().decode())
"""
# A workload reading an S3 object in plain HTTP, with no AWS credential of its own.
S3_GET = r"""
import sys, http.client
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
c.request("GET", "/idgate-test/hello.txt", headers={"Host": "s3.us-east-1.amazonaws.com"})
r = c.getresponse(); print(r.status, r.read().decode().strip())
"""
GET = r"""
import sys, time, http.client
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(host, port, timeout=10)
lat = []
for i in range(n):
    t = time.perf_counter(); c.request("GET", "/"); body = c.getresponse().read(); lat.append(time.perf_counter() - t)
lat.sort()
print(body.decode().strip() if n == 1 else f"{lat[len(lat)//2]*1e6:.0f} {lat[int(len(lat)*0.99)]*1e6:.0f}")
"""


def step(msg):
    print(f"\n== {msg}", flush=True)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o755)
    topo = Topology(prefix="idgdemo")
    try:
        a, b = topo.add_host("a", 1), topo.add_host("b", 2)
        step("host A = namespace idgdemoa (10.77.0.1), host B = idgdemob (10.77.0.2), joined by a bridge")
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(WORK / "ca"), "--trust-domain", "demo.idgate"], check=True, capture_output=True)
        for port in (8080, 7070):
            b.popen(WORKLOAD_PYTHON, "-c", SERVE, b.ip, port)
        b.popen(WORKLOAD_PYTHON, "-c", API, b.ip, 8081)
        secrets = WORK / "secrets"
        secrets.mkdir(mode=0o700)
        token = secrets / "alice-api-token"
        token.touch(mode=0o600)
        token.write_text("token-for-alice-v1\n")
        tls = WORK / "aws"  # the certificate "AWS" (moto on host B) shows, and its CA
        pki.make_ca(tls, "idgate demo AWS CA")
        pki.issue(tls, tls / "aws.pem", tls / "aws-key.pem", dns=[aws.S3_HOST, aws.STS_HOST], ips=[b.ip], cn="aws")
        ida = a.start_idgate((REPO / "configs/demo/host-a.toml").read_text(), WORK)
        idb = b.start_idgate((REPO / "configs/demo/host-b.toml").read_text(), WORK)
        print(f"idgate running in both hosts (logs: {WORK}/a-idgate.log, {WORK}/b-idgate.log)")
        print(f"identity backend: {ida.status()['identity_backend']}")
        time.sleep(0.3)

        step("uid 1001 (alice) in host A: plain HTTP GET http://10.77.0.2:8080/")
        out = a.python(GET, b.ip, 8080, 1, uid=1001)
        print("response:", out.stdout.decode().strip())
        seen = idb.decisions(direction="inbound", verdict="allowed")[-1]
        print(f"host B saw caller {seen['source_id']} ({seen['process']})")

        step("uid 1003 (mallory) in host A: the same request")
        out = a.python(GET, b.ip, 8080, 1, uid=1003, check=False)
        print("request failed as it should:", out.stderr.decode().strip().splitlines()[-1])
        denied = idb.decisions(direction="inbound", verdict="denied")[-1]
        print(f"host B denied {denied['source_id']}: {denied['detail']}")

        step("credential injection: alice calls host B's API on 8081 with a made-up token")
        status, body = a.python(CALL_API, b.ip, 8081, uid=1001).stdout.decode().strip().split(" ", 1)
        seen = json.loads(body)
        print(f"API answered {status}; it received authorization={seen['authorization']}")
        print(f"  and x-forwarded-client-cert={seen['x-forwarded-client-cert']}")
        token.write_text("token-for-alice-v2\n")
        seen = json.loads(a.python(CALL_API, b.ip, 8081, uid=1001).stdout.decode().strip().split(" ", 1)[1])
        print(f"after rotating {token} (no restart): authorization={seen['authorization']}")
        out = a.python(CALL_API, b.ip, 8081, uid=1003, check=False).stdout.decode().strip()
        print(f"mallory's call to the API: {out.splitlines()[0] if out else 'refused'}")

        step("no secret on host A: alice reads an S3 object (moto on host B plays AWS, its SigV4 checks on)")
        jwks = WORK / "aws" / "jwks.json"
        jwks.write_text(a.run("curl", "-sf", "http://127.0.0.1:15000/jwks.json").stdout.decode())
        moto_proc, _ = aws.start_moto(b, WORK / "aws", cert=tls / "aws.pem", key=tls / "aws-key.pem", ca=tls / "ca.pem",
                                      issuer="https://issuer.demo.idgate", subjects={aws.READER: "spiffe://demo.idgate/app/alice"}, jwks=jwks)
        try:
            out = a.python(S3_GET, b.ip, uid=1001).stdout.decode().strip()
            print(f"alice: GET http://{b.ip}/idgate-test/hello.txt -> {out}")
            exchanged = ida.status()["credential_exchanges"]
            print(f"idgate exchanged alice's JWT-SVID with STS for role {aws.READER} ({exchanged['exchanges']} exchange) and signed her request")
            out = a.python(S3_GET, b.ip, uid=1003).stdout.decode().strip()
            print(f"mallory, the same request (no rule gives her the role): {out.split(' ', 1)[0]} from S3")
        finally:
            moto_proc.terminate()

        step("the wire between A and B carries only TLS 1.3 (see tests/e2e/test_tunnel.py for the capture test)")
        step("latency, 2000 keep-alive GETs, same client, same server, one run")
        direct = a.python(GET, b.ip, 7070, 2000, uid=1001).stdout.decode().split()
        tunneled = a.python(GET, b.ip, 8080, 2000, uid=1001).stdout.decode().split()
        print(f"{'path':<28}{'p50 µs':>8}{'p99 µs':>8}")
        print(f"{'direct TCP (port 7070)':<28}{direct[0]:>8}{direct[1]:>8}")
        print(f"{'through idgate (port 8080)':<28}{tunneled[0]:>8}{tunneled[1]:>8}")
        print(f"added p50: {int(tunneled[0]) - int(direct[0])} µs")
        st = ida.status()
        print(f"\nhost A status: {st['tunnel_connections']} pooled tunnel connection(s), {st['tunnel_dials']} dial(s), SVIDs: "
              + ", ".join(s["spiffe_id"] for s in st["svids"]))
        print("\ndemo finished")
    finally:
        topo.cleanup()


if __name__ == "__main__":
    main()
