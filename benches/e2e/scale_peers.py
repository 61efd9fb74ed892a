#!/usr/bin/env python3
"""Scale benchmark, peers: one host (A) talking to 100 peer hosts, each a network namespace with
its own idgate and HTTP server (idgate-test-httpd). It reports host A's idgate memory per peer
(one identity, one pooled tunnel connection per peer), the tunnel handshakes per minute at steady
state (new connections to every peer in turn, each a new TCP flow through the pool), and, in the
full mode, that idle connections are retired (the pool's idle timeout, 300 s). Run as root:

    python3 benches/e2e/scale_peers.py            # 100 peers → benches/results/scale-peers.md, .json
    python3 benches/e2e/scale_peers.py --quick    # 10 peers, 10 s of steady state, no idle wait

See benches/e2e/README.md."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

from hosts import TRUST_DOMAIN  # noqa: E402
from netns import IDGATE, WORKLOAD_PYTHON, Topology  # noqa: E402
from scale_common import rss_kib  # noqa: E402
from scale_identities import CLIENT, FIRST_UID, PORT, config, log  # noqa: E402

PREFIX = "ipeers"  # not "idg*": the tests' cleanup removes those
HTTPD = Path(os.environ.get("IDGATE_HTTPD_BIN", REPO / "target" / "release" / "idgate-test-httpd"))
IDLE_TIMEOUT = 300  # the pool's (proxy/src/tunnel/pool.rs), swept every 15 s

# New connections to every peer in turn for SECONDS; prints how many answered.
ROUND_ROBIN = r"""
import socket, sys, time
peers, port, seconds = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end:
    for ip in peers:
        s = socket.create_connection((ip, port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
        s.close()
        n += 1
print(n)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 peers, 10 s of steady state, no idle wait")
    ap.add_argument("--count", type=int, help="peers (default 100; 10 with --quick)")
    args = ap.parse_args()
    count = args.count or (10 if args.quick else 100)
    steady = 10 if args.quick else 60
    work = Path("/tmp/idgate-scale-peers")
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    topo = Topology(prefix=PREFIX)
    try:
        a = topo.add_host("a", 1)
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(work / "ca"), "--trust-domain", TRUST_DOMAIN], check=True, capture_output=True)
        outbound = f'[[outbound]]\ncidrs = ["10.77.0.0/24"]\nports = [{PORT}]\n'
        inbound = f'[[inbound]]\nports = [{PORT}]\nallow = ["spiffe://{TRUST_DOMAIN}/scale/*"]\n'
        log(f"{count} peer hosts, each with idgate and an HTTP server (about {count * 0.4:.0f} s)")
        peers = []
        for i in range(count):
            p = topo.add_host(f"p{i}", 2 + i)
            p.popen(HTTPD, "--listen", f"{p.ip}:{PORT}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.start_idgate(config(f"peer-{i}", work / f"state-p{i}", work / "ca", 0, 3600, inbound), work)
            peers.append(p)
        ida = a.start_idgate(config("host-a", work / "state-a", work / "ca", 1, 3600, outbound), work)
        pid = ida.proc.pid
        rss_before = rss_kib(pid)
        log(f"host A's identity opens its first flow to each of the {count} peers")
        firsts = [int(a.run(WORKLOAD_PYTHON, "-c", CLIENT, p.ip, PORT, uid=FIRST_UID).stdout) for p in peers]
        status = ida.status()
        rss_after = rss_kib(pid)
        dials_before = status["tunnel_dials"]
        log(f"steady state: new connections to every peer in turn for {steady} s")
        flows = int(a.run(WORKLOAD_PYTHON, "-c", ROUND_ROBIN, ",".join(p.ip for p in peers), PORT, steady, uid=FIRST_UID, timeout=steady + 60).stdout)
        status = ida.status()
        dials = status["tunnel_dials"] - dials_before
        result = {
            "peers": count,
            "first_flow_us_median": statistics.median(firsts),
            "rss_kib_before": rss_before,
            "rss_kib_after_all_peers": rss_after,
            "rss_kib_per_peer": (rss_after - rss_before) / count,
            "tunnel_connections": status["tunnel_connections"],
            "steady_seconds": steady,
            "steady_flows": flows,
            "steady_handshakes": dials,
            "handshakes_per_minute": dials * 60 / steady,
            "peer_rss_kib_median": statistics.median(rss_kib(p.idgate.proc.pid) for p in peers),
        }
        if not args.quick:
            log(f"idle: no traffic for {IDLE_TIMEOUT + 30} s (the pool's idle timeout, then its sweep)")
            time.sleep(IDLE_TIMEOUT + 30)
            status = ida.status()
            result["idle_connections_after_timeout"] = status["tunnel_connections"]
            result["rss_kib_after_idle"] = rss_kib(pid)
        print(json.dumps(result, indent=2))
        if args.quick:
            assert result["tunnel_connections"] == count and flows > count, result
        else:
            write_results(result)
        log("done")
    finally:
        topo.cleanup()


def write_results(r):
    out = REPO / "benches" / "results"
    (out / "scale-peers.json").write_text(json.dumps(r, indent=2) + "\n")
    (out / "scale-peers.md").write_text(f"""# Scale: peers

`python3 benches/e2e/scale_peers.py` on {time.strftime('%Y-%m-%d')}: host A's one identity talks to {r['peers']} peer hosts,
each a network namespace with its own idgate and an HTTP server (idgate-test-httpd).

| measure | value |
|---|---:|
| first flow to a peer, median (µs; a tunnel connection dialled) | {r['first_flow_us_median']:,.0f} |
| host A's idgate RSS before / with every peer connected (MiB) | {r['rss_kib_before'] / 1024:.1f} / {r['rss_kib_after_all_peers'] / 1024:.1f} |
| RSS per peer (KiB) | {r['rss_kib_per_peer']:.1f} |
| tunnel connections pooled | {r['tunnel_connections']} |
| steady state: new flows to every peer in turn for {r['steady_seconds']} s | {r['steady_flows']:,} |
| tunnel handshakes in that time (per minute) | {r['steady_handshakes']} ({r['handshakes_per_minute']:.1f}) |
| a peer's idgate RSS, median (MiB) | {r['peer_rss_kib_median'] / 1024:.1f} |
| tunnel connections {IDLE_TIMEOUT + 30} s after the traffic stopped (idle retired) | {r['idle_connections_after_timeout']} |
| host A's idgate RSS then (MiB) | {r['rss_kib_after_idle'] / 1024:.1f} |
""")


if __name__ == "__main__":
    main()
