#!/usr/bin/env python3
"""Scale benchmark, destinations: host A's idgate with 10 `[[outbound]]` (CIDR, ports) pairs
against the same with 10,000 (IPv4 /32s and IPv6 /128s mixed, the flow's own last), switched
by `idgate reload` in alternation. For each size and family: new connections per second (wrk,
10 connections, `Connection: close`) and the added p50 of one new connection per request over
direct TCP. Then a reload between the two files while new connections run: failed flows
(must be 0) and the reload's time. Host A uses the default identity backend (the host
kernel cannot load idgate.ko; the module's own 10,000-rule connect rate is measured in the VM
suite: `ruleset:` lines of tests/vm/run.sh). Run as root:

    python3 benches/e2e/scale_destinations.py          # → benches/results/scale-destinations.md, .json
    python3 benches/e2e/scale_destinations.py --quick  # 1 repetition of 2 s runs: checks it runs

See benches/e2e/README.md."""
import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

from hosts import TRUST_DOMAIN, host_config  # noqa: E402
from netns import IDGATE, Topology  # noqa: E402
from run import WRK_LUA  # noqa: E402
from scale_common import start_nginx  # noqa: E402

PREFIX = "idst"  # not "idg*": the tests' cleanup removes those
CLIENT_UID = 1001  # alice in tests/e2e/hosts.py
PORT, PLAIN = 8080, 8081
SMALL, LARGE = 10, 10000
V6 = ("fd77::1", "fd77::2")

def log(msg):
    print(f"scale-destinations: {msg}", file=sys.stderr, flush=True)


def outbound(count, b_ip):
    """`count` [[outbound]] entries: fillers alternating IPv4 /32 and IPv6 /128 on the measured
    port (so that the port never rules one out early), then host B's two addresses, last: a
    first-match scan would cross every filler."""
    rules = []
    for i in range(count - 2):
        j = i // 2
        cidr = f"10.99.{j // 256}.{j % 256}/32" if i % 2 == 0 else f"fd00:99::{j // 256:x}:{j % 256:x}/128"
        rules.append(f'[[outbound]]\ncidrs = ["{cidr}"]\nports = [{PORT}]\n')
    rules.append(f'[[outbound]]\ncidrs = ["{b_ip}/32"]\nports = [{PORT}]\n')
    # Host B's idgate listens for tunnels on one address (IPv4): IPv6 flows are carried there.
    rules.append(f'[[outbound]]\ncidrs = ["{V6[1]}/128"]\nports = [{PORT}]\npeer = "{b_ip}:15008"\n')
    return "\n".join(rules)


def config_a(work, count, b_ip):
    text = host_config("host-a", work / "state-a", ca_dir=work / "ca")
    # Drop hosts.py's own [[outbound]] and [[inbound]]: only this benchmark's destinations count.
    head = text.split("[[outbound]]", 1)[0]
    return head + outbound(count, b_ip)


def config_b(work):
    text = host_config("host-b", work / "state-b", ca_dir=work / "ca")
    head = text.split("[[outbound]]", 1)[0]
    return head + f'[[inbound]]\nports = [{PORT}]\nallow = ["spiffe://{TRUST_DOMAIN}/app/alice"]\n'


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path("/tmp/idgate-scale-destinations")
        subprocess.run(["rm", "-rf", str(self.work)], check=True)
        self.work.mkdir(parents=True)
        self.work.chmod(0o755)
        self.topo = Topology(prefix=PREFIX)
        self.procs = []

    def up(self):
        self.a, self.b = self.topo.add_host("a", 1), self.topo.add_host("b", 2)
        for h, ip6 in ((self.a, V6[0]), (self.b, V6[1])):
            h.run("ip", "-6", "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
            for k, v in (("net.ipv4.ip_local_port_range", "20000 65000"), ("net.ipv4.tcp_tw_reuse", "1")):
                h.run("sysctl", "-qw", f"{k}={v}")
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(self.work / "ca"), "--trust-domain", TRUST_DOMAIN],
                       check=True, capture_output=True)
        self.procs.append(start_nginx(self.b, self.work, [f"{ip}:{port}" for ip in (self.b.ip, f"[{V6[1]}]")
                                                          for port in (PORT, PLAIN)]))
        (self.work / "wrk.lua").write_text(WRK_LUA)
        (self.work / "wrk.lua").chmod(0o644)
        self.b.start_idgate(config_b(self.work), self.work, name="idgate")
        self.cfg = {n: config_a(self.work, n, self.b.ip) for n in (SMALL, LARGE)}
        log(f"host A: idgate with {SMALL} destinations; the {LARGE:,}-destination file is "
            f"{len(self.cfg[LARGE]) // 1024} KiB")
        self.gate = self.a.start_idgate(self.cfg[SMALL], self.work, name="idgate")
        self.size = SMALL

    def down(self):
        for p in self.procs:
            p.stop()
        self.topo.cleanup()

    def switch(self, count):
        """Rewrites host A's config with `count` destinations and reloads; returns the seconds
        `idgate reload` took (it returns when the new policy and nftables sets are in)."""
        self.gate.config.write_text(self.cfg[count])
        t = time.perf_counter()
        r = self.a.run(IDGATE, "reload", "-c", self.gate.config, check=False, timeout=120)
        took = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"reload to {count} destinations failed: {r.stdout} {r.stderr}")
        self.size = count
        return took

    def wrk(self, host, port, conns, seconds):
        url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        r = self.a.run("wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "2s", "-s", self.work / "wrk.lua",
                       "-H", "Connection: close", url, uid=CLIENT_UID, timeout=seconds + 30, check=False)
        stdout = r.stdout.decode(errors="replace")
        line = next((x for x in stdout.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result (exit {r.returncode}): {stdout[-400:]} {r.stderr[-400:]}")
        w = json.loads(line[8:])
        return {"rps": w["requests"] / (w["duration_us"] / 1e6), "p50": w["p50"], "requests": w["requests"],
                "errors": sum(v for k, v in w.items() if k.startswith("err_"))}

    def flows_identified(self):
        return sum(1 for d in self.gate.status()["decisions"] if d.get("verdict") == "tunneled")


def measure(bench, seconds):
    """One pass over both families for the size in force: new conns/s (c10) and p50 (c1), with
    direct's p50 on the same family measured right before."""
    out = {}
    for family, host in (("v4", bench.b.ip), ("v6", V6[1])):
        direct = bench.wrk(host, PLAIN, 1, seconds)
        c1 = bench.wrk(host, PORT, 1, seconds)
        c10 = bench.wrk(host, PORT, 10, seconds)
        errors = c1["errors"] + c10["errors"]
        out[family] = {"rps": c10["rps"], "p50": c1["p50"], "direct_p50": direct["p50"],
                       "added_p50": c1["p50"] - direct["p50"], "errors": errors}
        log(f"  {bench.size:>6,} destinations, {family}: {c10['rps']:,.0f} new conn/s, p50 {c1['p50']} µs "
            f"(direct {direct['p50']} µs), {errors} errors")
    return out


def reload_under_load(bench, seconds):
    """wrk (c10, new connection per request) to host B over IPv4 while host A reloads from 10 to
    10,000 destinations and back, twice each; every request must succeed."""
    times = {SMALL: [], LARGE: []}
    result = {}

    def load():
        result["wrk"] = bench.wrk(bench.b.ip, PORT, 10, seconds)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1)
    for _ in range(2):
        times[LARGE].append(bench.switch(LARGE))
        time.sleep(0.5)
        times[SMALL].append(bench.switch(SMALL))
        time.sleep(0.5)
    t.join()
    w = result["wrk"]
    return {"requests": w["requests"], "errors": w["errors"], "rps": w["rps"],
            "reload_s_to_large": statistics.median(times[LARGE]), "reload_s_to_small": statistics.median(times[SMALL])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 2 s per run, results not written")
    ap.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 5; 2 with --quick)")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    seconds = args.duration or (2 if args.quick else 5)
    bench = Bench(args)
    try:
        bench.up()
        runs = {SMALL: [], LARGE: []}
        log(f"{reps} repetitions, sizes alternating, {seconds:g} s per run "
            f"(about {int(reps * 2 * 6 * (seconds + 1) + 30)} s)")
        for rep in range(reps):
            for count in ((SMALL, LARGE) if rep % 2 == 0 else (LARGE, SMALL)):
                if bench.size != count:
                    took = bench.switch(count)
                    log(f"rep {rep + 1}: reloaded to {count:,} destinations in {took:.2f} s")
                runs[count].append(measure(bench, seconds))
        log("reload under load: 10 → 10,000 → 10 destinations twice while new connections run")
        under_load = reload_under_load(bench, max(8.0, seconds * 2))
        log(f"  {under_load['requests']:,} requests, {under_load['errors']} failed; reload to 10,000 "
            f"{under_load['reload_s_to_large']:.2f} s, back to 10 {under_load['reload_s_to_small']:.2f} s")
        identified = bench.flows_identified()
    finally:
        bench.down()
    result = summarize(runs, under_load, reps, seconds)
    result["decisions_tunneled"] = identified
    print(json.dumps(result, indent=2))
    bad = [k for k, v in result["families"].items() if v["errors"]] + (["reload"] if under_load["errors"] else [])
    if bad:
        sys.exit(f"scale-destinations: failed requests in {', '.join(bad)}")
    if not args.quick:
        write_results(result)
    log("done")


def summarize(runs, under_load, reps, seconds):
    fam = {}
    for family in ("v4", "v6"):
        small = [r[family] for r in runs[SMALL]]
        large = [r[family] for r in runs[LARGE]]
        med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
        fam[family] = {
            "rps_small": med(small, "rps"), "rps_large": med(large, "rps"),
            "added_p50_small": med(small, "added_p50"), "added_p50_large": med(large, "added_p50"),
            "p50_small": med(small, "p50"), "p50_large": med(large, "p50"),
            "errors": sum(x["errors"] for x in small + large),
        }
        fam[family]["rps_ratio"] = fam[family]["rps_large"] / fam[family]["rps_small"]
        fam[family]["p50_ratio"] = fam[family]["p50_large"] / fam[family]["p50_small"]
    return {"destinations": [SMALL, LARGE], "reps": reps, "seconds_per_run": seconds, "families": fam,
            "reload_under_load": under_load, "runs": {str(k): v for k, v in runs.items()}}


def write_results(r):
    out = REPO / "benches" / "results"
    (out / "scale-destinations.json").write_text(json.dumps(r, indent=2) + "\n")
    rows = []
    for family, f in r["families"].items():
        name = "IPv4" if family == "v4" else "IPv6"
        rows.append(f"| {name}: new connections per second (10 conns) | {f['rps_small']:,.0f} | {f['rps_large']:,.0f} | "
                    f"{f['rps_ratio']:.3f} | {'met' if f['rps_ratio'] >= 0.95 else 'missed'} |")
        rows.append(f"| {name}: new connection + request, p50 µs (1 conn) | {f['p50_small']:,.0f} | {f['p50_large']:,.0f} | "
                    f"{f['p50_ratio']:.3f} | {'met' if f['p50_ratio'] <= 1.05 else 'missed'} |")
        rows.append(f"| {name}: added p50 over direct, µs | {f['added_p50_small']:,.0f} | {f['added_p50_large']:,.0f} | "
                    f"{f['added_p50_large'] - f['added_p50_small']:+,.0f} µs | |")
    u = r["reload_under_load"]
    (out / "scale-destinations.md").write_text(f"""# Scale: destinations

`python3 benches/e2e/scale_destinations.py` on {time.strftime('%Y-%m-%d')}: host A's idgate with {SMALL}
`[[outbound]]` (CIDR, ports) pairs against the same with {LARGE:,} (IPv4 /32s and IPv6 /128s
alternating, host B's own two last), switched by `idgate reload`; {r['reps']} repetitions in
alternation, {r['seconds_per_run']:g} s per wrk run, medians. Identity backend: the default
(sock_diag + procfs); the module's connect rate with 10,000 rules is in the VM suite.

| measure | {SMALL} | {LARGE:,} | ratio | target (within 5%) |
|---|---:|---:|---:|---|
{chr(10).join(rows)}

Reload under load (wrk, 10 connections, a new connection per request, IPv4): {u['requests']:,}
requests while host A reloaded 10 → 10,000 → 10 destinations twice: **{u['errors']} failed**.
Reload time (`idgate reload` until it answers): to {LARGE:,} destinations {u['reload_s_to_large']:.2f} s,
back to {SMALL} {u['reload_s_to_small']:.2f} s.
""")


if __name__ == "__main__":
    main()
