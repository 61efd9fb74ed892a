"""Containers and sites: host A runs a container and routes a LAN (a gateway); host B is the
gateway of a server LAN. Every flow goes through idgate with the identity of the process in
the container, or of the LAN machine's site, shown step by step.

    container web (10.88.0.2) --+                                        +-- server s1 (192.168.20.5)
                                 +-- gateway A -- 10.77.0.0/24 -- gateway B
    LAN machine l1 (192.168.10.5)+     (idgate)                  (idgate)
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from containers import ContainerNet  # noqa: E402
from demo import step  # noqa: E402
from hosts import host_config  # noqa: E402
from netns import IDGATE, Topology  # noqa: E402
from sites import Lan  # noqa: E402

WORK = Path("/tmp/idgate-gateway-demo")
TD = "demo.idgate"
WEB_ID = "3f" * 32
HELLO = r"""
import http.server, sys
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {sys.argv[1]}, you came from {self.client_address[0]}\n".encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Hello).serve_forever()
"""
GET = r"""
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())
except Exception as e:
    print(f"failed: {e}")
"""
A_EXTRA = f"""
[containers]
networks = ["10.88.0.0/24"]

[[workload]]
spiffe_id = "spiffe://{TD}/tools/web-container"
container_id = "{WEB_ID}"

[[workload]]
spiffe_id = "spiffe://{TD}/tools/branch-lan"
interface = "lan0"
sources = ["192.168.10.0/24"]

[[outbound]]
cidrs = ["192.168.20.0/24"]
ports = [9000]
peer = "10.77.0.2:15008"
"""
B_EXTRA = f"""
[[inbound]]
ports = [9000]
allow = ["spiffe://{TD}/tools/branch-lan"]
backends = ["192.168.20.5/32"]
"""


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o755)
    topo = Topology(prefix="gwdemo")
    try:
        a, b = topo.add_host("a", 1), topo.add_host("b", 2)
        containers = ContainerNet(a)
        web, stray = containers.add("web", 2, WEB_ID), containers.add("stray", 3, "9c" * 32)
        l1 = Lan(a).add("l1", 5)
        s1 = Lan(b, bridge="srv0", subnet="192.168.20", subnet6="fd20::").add("s1", 5)
        step("host A (10.77.0.1): container 'web' (10.88.0.2), container 'stray' (10.88.0.3), LAN machine l1 (192.168.10.5) on lan0")
        step("host B (10.77.0.2): its own service on 9000, and server s1 (192.168.20.5) behind it on srv0")
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(WORK / "ca"), "--trust-domain", TD], check=True, capture_output=True)
        b.popen("/usr/bin/python3", "-c", HELLO, b.ip, 9000)
        s1.popen("/usr/bin/python3", "-c", HELLO, s1.ip, 9000)
        # B's certificate names the backend's address too: A dials B for it.
        b_config = host_config("host-b", WORK / "state-b", WORK / "ca", extra=B_EXTRA)
        b_config = b_config.replace('ttl = "1h"', 'ttl = "1h"\naddresses = ["10.77.0.2", "192.168.20.5"]')
        ida = a.start_idgate(host_config("host-a", WORK / "state-a", WORK / "ca", extra=A_EXTRA), WORK)
        idb = b.start_idgate(b_config, WORK)
        print(f"idgate running on both (configs: {ida.config}, {idb.config}; logs next to them)")

        step("the process in container 'web' calls http://10.77.0.2:9000/ in plain HTTP")
        print(web.run("/usr/bin/python3", "-c", GET, "http://10.77.0.2:9000/", uid=1005).stdout.strip())
        seen = idb.decisions(direction="inbound", verdict="allowed")[-1]
        print(f"host B saw caller {seen['source_id']}; host A: {ida.decisions(direction='outbound')[-1]['process']}")

        step("the same program in container 'stray', which no rule names")
        print(stray.run("/usr/bin/python3", "-c", GET, "http://10.77.0.2:9000/", uid=1005).stdout.strip())
        print(f"host A: {ida.decisions(direction='outbound')[-1]['detail']}")

        step("LAN machine l1 behind gateway A calls server s1 behind gateway B")
        print(l1.python(GET, "http://192.168.20.5:9000/").stdout.decode().strip())
        seen = idb.decisions(direction="inbound", verdict="allowed")[-1]
        print(f"gateway B saw caller {seen['source_id']} ({seen['process']}) and forwarded to {seen['destination']}")

        step("l1 claims an address its site does not have (192.168.99.5)")
        l1.run("ip", "addr", "add", "192.168.99.5/32", "dev", "eth0")
        spoof = l1.python("import socket\ntry:\n socket.create_connection(('192.168.20.5', 9000), 3, ('192.168.99.5', 0)); print('connected')\n"
                          "except OSError as e:\n print('failed:', type(e).__name__)", check=False).stdout.decode().strip()
        print(f"{spoof}: gateway A's table dropped it (nothing reached idgate or the wire)")
        print("\nhost A's trail (the last record):")
        trail = [line.split("idgate::trail: ", 1)[1] for line in ida.log.read_text().splitlines() if "idgate::trail: " in line]
        print(json.dumps(json.loads(trail[-1]), indent=1) if trail else "(none yet)")
        print("\ndemo finished")
    finally:
        topo.cleanup()


if __name__ == "__main__":
    main()
