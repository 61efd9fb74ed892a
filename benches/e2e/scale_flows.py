#!/usr/bin/env python3
"""Scale benchmark, flows: one idgate pair holding 1,000 and then 50,000 concurrent open flows
(keep-alive HTTP connections from one client process in host A to nginx in host B, each having
made one request so that its whole path is set up, then idle). Reports each idgate's RSS per
flow at both counts, the tunnel connections the flows share, and that every flow still answers
at the end. The benchmark raises its open-file limit to what the systemd unit sets
(LimitNOFILE=1048576) and the idgates inherit it, as under the unit. Run as root:

    python3 benches/e2e/scale_flows.py            # 1,000 then 50,000 → benches/results/scale-flows.md, .json
    python3 benches/e2e/scale_flows.py --quick    # 200 then 5,000: checks it runs

See benches/e2e/README.md."""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

from hosts import TRUST_DOMAIN, host_config  # noqa: E402
from netns import IDGATE, Topology  # noqa: E402
from scale_common import rss_kib, start_nginx  # noqa: E402

PREFIX = "iflows"  # not "idg*": the tests' cleanup removes those
CLIENT_UID = 1001  # alice in tests/e2e/hosts.py
PORT = 8080
UNIT_NOFILE = 1048576  # packaging/systemd/idgate.service

# Opens N keep-alive connections, one request on each, prints "ready N"; on a line from stdin
# makes one more request on every one of them and prints how many answered; exits at EOF.
HOLD = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
REQ = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"
def ask(s):
    s.sendall(REQ)
    data = b""
    while not data.endswith(b"hello from host B\n"):
        b = s.recv(4096)
        if not b:
            raise OSError("closed")
        data += b
socks = []
try:
    for i in range(n):
        s = socket.create_connection((host, port), timeout=20)
        ask(s)
        socks.append(s)
    print("ready", len(socks), flush=True)
except OSError as e:
    print("failed", len(socks), repr(e), flush=True)
    sys.exit(1)
sys.stdin.readline()
ok = 0
for s in socks:
    try:
        ask(s)
        ok += 1
    except OSError:
        pass
print("answered", ok, flush=True)
sys.stdin.read()
"""


def log(msg):
    print(f"scale-flows: {msg}", file=sys.stderr, flush=True)


def hold(a, ip, n):
    """Starts the client holding n flows; returns the process once they are all open."""
    p = subprocess.Popen(a.cmd("/usr/bin/python3", "-c", HOLD, ip, PORT, n, uid=CLIENT_UID),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if not line or line[0] != "ready":
        p.kill()
        raise RuntimeError(f"could not open {n} flows: {' '.join(line)} {p.stderr.read()[-400:]}")
    return p


def measure(a, b, gates, n):
    t = time.monotonic()
    before = {side: rss_kib(g.proc.pid) for side, g in gates.items()}
    p = hold(a, b.ip, n)
    opened = time.monotonic() - t
    time.sleep(2)
    during = {side: rss_kib(g.proc.pid) for side, g in gates.items()}
    status = gates["A"].status()
    p.stdin.write("\n")
    p.stdin.flush()
    answered = p.stdout.readline().split()
    p.stdin.close()
    p.wait(timeout=120)
    ok = int(answered[1]) if len(answered) == 2 and answered[0] == "answered" else 0
    r = {"flows": n, "open_s": round(opened, 1), "answered_again": ok, "tunnel_connections": status["tunnel_connections"],
         "rss_kib_before": before, "rss_kib": during,
         "per_flow_bytes": {s: (during[s] - before[s]) * 1024 / n for s in during}}
    log(f"{n:,} flows open in {opened:.1f} s over {r['tunnel_connections']} tunnel connections; "
        f"RSS A {during['A'] / 1024:.1f} MiB ({r['per_flow_bytes']['A']:,.0f} B/flow), "
        f"B {during['B'] / 1024:.1f} MiB ({r['per_flow_bytes']['B']:,.0f} B/flow); {ok:,} answered again")
    return r


def fit_open_files(flows):
    """Raises this process's open-file limit to the unit's, which the idgates inherit. Where it
    cannot (no CAP_SYS_RESOURCE, as in some containers and sandboxes), fewer flows are held,
    as many as the hard limit allows each process (a flow is one descriptor in the client, in
    host A's idgate and in host B's), and the results say so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (UNIT_NOFILE, UNIT_NOFILE))
        return flows, None
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fits = (hard - 1000) // 1000 * 1000
    if fits >= flows:
        return flows, None
    why = (f"the hard open-file limit here is {hard:,} and this process may not raise it (no CAP_SYS_RESOURCE): "
           f"{fits:,} flows held instead of {flows:,}")
    log(why)
    return fits, why


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 then 5,000 flows, results not written")
    args = ap.parse_args()
    small, large = (200, 5000) if args.quick else (1000, 50000)
    large, limited = fit_open_files(large)
    work = Path("/tmp/idgate-scale-flows")
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    work.chmod(0o755)
    topo = Topology(prefix=PREFIX)
    procs = []
    try:
        a, b = topo.add_host("a", 1), topo.add_host("b", 2)
        for h in (a, b):
            # One client address to one server port: 50,000 flows need that many source ports.
            h.run("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535")
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(work / "ca"), "--trust-domain", TRUST_DOMAIN],
                       check=True, capture_output=True)
        procs.append(start_nginx(b, work, [f"{b.ip}:{PORT}"], connections=120000))
        gates = {"B": b.start_idgate(host_config("host-b", work / "state-b", ca_dir=work / "ca"), work),
                 "A": a.start_idgate(host_config("host-a", work / "state-a", ca_dir=work / "ca"), work)}
        hold(a, b.ip, 1).communicate("\n", timeout=30)  # SVID, first tunnel connection: not per flow
        log(f"{small:,} flows, then {large:,} (about {large // 2500 + 20} s)")
        results = {"small": measure(a, b, gates, small), "large": measure(a, b, gates, large)}
    finally:
        for p in procs:
            p.stop()
        topo.cleanup()
    s, l_ = results["small"], results["large"]
    results["limited"] = limited
    results["ratio_per_flow"] = {side: l_["per_flow_bytes"][side] / s["per_flow_bytes"][side]
                                 if s["per_flow_bytes"][side] > 0 else None for side in ("A", "B")}
    print(json.dumps(results, indent=2))
    short = [r for r in (s, l_) if r["answered_again"] != r["flows"]]
    if short:
        sys.exit(f"scale-flows: flows stopped answering: {[(r['flows'], r['answered_again']) for r in short]}")
    if not args.quick:
        write_results(results)
    log("done")


def write_results(r):
    out = REPO / "benches" / "results"
    (out / "scale-flows.json").write_text(json.dumps(r, indent=2) + "\n")
    s, l_ = r["small"], r["large"]
    limit = "this machine's hard limit (see below)" if r.get("limited") else f"the unit's (LimitNOFILE={UNIT_NOFILE})"
    rows = []
    for side in ("A", "B"):
        ratio = r["ratio_per_flow"][side]
        verdict = "met" if ratio is not None and ratio <= 1.0 else "missed"
        rows.append(f"| host {side}: RSS per flow (bytes) | {s['per_flow_bytes'][side]:,.0f} | {l_['per_flow_bytes'][side]:,.0f} | "
                    f"{ratio:.2f} | {verdict} |")
        rows.append(f"| host {side}: RSS (MiB) | {s['rss_kib'][side] / 1024:.1f} | {l_['rss_kib'][side] / 1024:.1f} | | |")
    (out / "scale-flows.md").write_text(f"""# Scale: flows

`python3 benches/e2e/scale_flows.py` on {time.strftime('%Y-%m-%d')}: one idgate pair, one client process in host A
holding {s['flows']:,} and then {l_['flows']:,} keep-alive HTTP connections to nginx in host B through it (TCP
path), each having made one request, then idle. RSS per flow = (RSS with the flows − RSS before)
/ flows, of each side's idgate worker. Open-file limit: {limit}.

| measure | {s['flows']:,} flows | {l_['flows']:,} flows | ratio | target (no worse than at {s['flows']:,}) |
|---|---:|---:|---:|---|
{chr(10).join(rows)}
| tunnel connections carrying them | {s['tunnel_connections']} | {l_['tunnel_connections']} | | |
| seconds to open them all (one client, one after another) | {s['open_s']} | {l_['open_s']} | | |
| flows answering a second request after that | {s['answered_again']:,} | {l_['answered_again']:,} | | |
""" + (f"\nNot the full count: {r['limited']}.\n" if r.get("limited") else ""))


if __name__ == "__main__":
    main()
