#!/usr/bin/env python3
"""Scale benchmark, identities: 1,000 `[[workload]]` rules and 1,000 distinct identities live on
one host (host A), each opening its first flow to host B through idgate. It reports how the
first-flow cost of the last identities compares with the first ones' (rules are matched in
order, SVIDs minted per identity, a tunnel connection dialled per identity), the largest
number of SVID mints in any one second while their renewals come due, and idgate's memory per
identity. Run as root:

    python3 benches/e2e/scale_identities.py    # 1,000 identities → benches/results/scale-identities.md, .json
    python3 benches/e2e/scale_identities.py --quick  # 100 identities, a short renewal window: checks it runs

See benches/e2e/README.md."""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from hosts import TRUST_DOMAIN  # noqa: E402
from netns import IDGATE, WORKLOAD_PYTHON, Topology  # noqa: E402
from scale_common import rss_kib  # noqa: E402

PREFIX = "iscale"  # not "idg*": the tests' cleanup removes those
FIRST_UID = 20000
PORT = 8080
SAMPLE = 50  # identities at each end whose first flows are compared

# One flow: connect, one request, the first byte of the answer; prints the time in µs.
CLIENT = r"""
import socket, sys, time
t = time.perf_counter()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
first = s.recv(1)
took = time.perf_counter() - t
assert first == b"H", first
while s.recv(4096):  # the rest of the answer, so that the server is not reset mid-write
    pass
print(int(took * 1e6))
"""

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def log(msg):
    print(f"scale: {msg}", file=sys.stderr, flush=True)


def identity(i):
    return f"spiffe://{TRUST_DOMAIN}/scale/id-{i:04d}"


def config(host, state, ca_dir, count, ttl, extra):
    rules = "".join(f'[[workload]]\nspiffe_id = "{identity(i)}"\nuid = {FIRST_UID + i}\n\n' for i in range(count))
    return f"""
trust_domain = "{TRUST_DOMAIN}"
hostname = "{host}"
state_dir = "{state}"
mode = "strict"
default_action = "deny"

[ca]
source = "files"
cert = "{ca_dir}/ca.pem"
key = "{ca_dir}/ca-key.pem"

[svid]
ttl = "{ttl}s"

{rules}
{extra}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 identities, short renewal window (the test command's mode)")
    ap.add_argument("--count", type=int, help="identities (default 1,000; 100 with --quick)")
    args = ap.parse_args()
    count = args.count or (100 if args.quick else 1000)
    ttl = 60 if args.quick else 240
    work = Path("/tmp/idgate-scale")
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    topo = Topology(prefix=PREFIX)
    try:
        a, b = topo.add_host("a", 1), topo.add_host("b", 2)
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(work / "ca"), "--trust-domain", TRUST_DOMAIN], check=True, capture_output=True)
        b.popen(WORKLOAD_PYTHON, "-c", SERVER, b.ip, PORT)
        b.wait_listening(PORT)
        outbound = f'[[outbound]]\ncidrs = ["{b.ip}/32"]\nports = [{PORT}]\n'
        inbound = f'[[inbound]]\nports = [{PORT}]\nallow = ["spiffe://{TRUST_DOMAIN}/scale/*"]\n'
        log(f"host A: idgate with {count} [[workload]] rules (SVID lifetime {ttl} s); host B: an HTTP server behind idgate")
        ida = a.start_idgate(config("host-a", work / "state-a", work / "ca", count, ttl, outbound), work)
        b.start_idgate(config("host-b", work / "state-b", work / "ca", 0, 3600, inbound), work)
        pid = ida.proc.pid
        rss_before = rss_kib(pid)
        minted_before = ida.status()["svids_minted"]
        log(f"{count} identities open their first flow, one after another (about {count * 60 // 1000 + 1} s)")
        firsts = []
        started = time.monotonic()
        for i in range(count):
            out = a.run(WORKLOAD_PYTHON, "-c", CLIENT, b.ip, PORT, uid=FIRST_UID + i).stdout
            firsts.append(int(out))
        spent = time.monotonic() - started
        status = ida.status()
        rss_after = rss_kib(pid)
        connections = status["tunnel_connections"]
        log(f"all {count} flows answered in {spent:.0f} s; {connections} tunnel connections pooled")
        # Renewals come due from half the lifetime on (spread to seven tenths): count mints a second.
        watch = int(ttl * 0.8)
        log(f"watching SVID mints for {watch} s while the renewals come due")
        per_second = []
        last = ida.status()["svids_minted"]
        end = time.monotonic() + watch
        while time.monotonic() < end:
            time.sleep(1)
            now = ida.status()["svids_minted"]
            per_second.append(now - last)
            last = now
        # Rule order alone: a fresh idgate (nothing live), the first rules' identities and the
        # last rules' alternating, each its first flow.
        log(f"rule order alone: idgate restarted, the first and the last {SAMPLE} rules' identities alternate")
        ida.terminate()
        ida = a.start_idgate(config("host-a", work / "state-a", work / "ca", count, ttl, outbound), work)
        early, late = [], []
        for k in range(SAMPLE):
            for uid_index, into in ((count - 1 - k, late), (k, early)) if k % 2 else ((k, early), (count - 1 - k, late)):
                into.append(int(a.run(WORKLOAD_PYTHON, "-c", CLIENT, b.ip, PORT, uid=FIRST_UID + uid_index).stdout))
        head, tail = firsts[:SAMPLE], firsts[-SAMPLE:]
        result = {
            "identities": count,
            "svid_ttl_s": ttl,
            "first_flow_us_first": statistics.median(head),
            "first_flow_us_last": statistics.median(tail),
            "first_flow_ratio_last_to_first": statistics.median(tail) / statistics.median(head),
            "first_flow_us_p90_all": sorted(firsts)[int(len(firsts) * 0.9)],
            "fresh_first_rules_us": statistics.median(early),
            "fresh_last_rules_us": statistics.median(late),
            "fresh_ratio_last_to_first": statistics.median(late) / statistics.median(early),
            "mints_during_first_flows": status["svids_minted"] - minted_before,
            "renewals_watched_s": watch,
            "renewals_in_window": sum(per_second),
            "max_mints_in_one_second": max(per_second) if per_second else 0,
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_after,
            "rss_kib_per_identity": (rss_after - rss_before) / count,
            "tunnel_connections": connections,
        }
        print(json.dumps(result, indent=2))
        if not args.quick:
            write_results(result)
        else:
            assert result["renewals_in_window"] > 0, "no SVID renewed in the window"
            assert result["first_flow_ratio_last_to_first"] < 3, result
        log("done")
    finally:
        topo.cleanup()


def write_results(r):
    out = REPO / "benches" / "results"
    (out / "scale-identities.json").write_text(json.dumps(r, indent=2) + "\n")
    target = "met" if r["first_flow_ratio_last_to_first"] <= 1.10 else "missed"
    (out / "scale-identities.md").write_text(f"""# Scale: identities

`python3 benches/e2e/scale_identities.py` on {time.strftime('%Y-%m-%d')}: {r['identities']:,} `[[workload]]` rules and as many
identities on host A, each opening its first flow to host B (connect to the first byte of the
answer, one identity after another; SVID, rule match, a tunnel connection dialled per identity).

| measure | value |
|---|---:|
| first flow, median of the first {SAMPLE} identities (µs) | {r['first_flow_us_first']:,.0f} |
| first flow, median of the last {SAMPLE} identities (µs) | {r['first_flow_us_last']:,.0f} |
| last / first (target ≤ 1.10: {target}) | {r['first_flow_ratio_last_to_first']:.2f} |
| rule order alone, fresh idgate: first / last {SAMPLE} rules' identities (µs) | {r['fresh_first_rules_us']:,.0f} / {r['fresh_last_rules_us']:,.0f} |
| rule order alone: last / first | {r['fresh_ratio_last_to_first']:.2f} |
| SVID mints while renewals came due ({r['renewals_watched_s']} s of a {r['svid_ttl_s']} s lifetime) | {r['renewals_in_window']:,} |
| largest number of mints in one second | {r['max_mints_in_one_second']} |
| idgate RSS before / after (MiB) | {r['rss_kib_before'] / 1024:.1f} / {r['rss_kib_after'] / 1024:.1f} |
| RSS per identity, SVID and pooled connection included (KiB) | {r['rss_kib_per_identity']:.1f} |
| tunnel connections pooled | {r['tunnel_connections']:,} |
""")


if __name__ == "__main__":
    main()
