#!/usr/bin/env python3
"""Profile one scenario under one workload of the end-to-end benchmark: the same two hosts,
servers and clients as run.py, one scenario started, the workload run once while `perf record`
samples the proxies (or the whole machine). Prints the workload's numbers, CPU per request, and
perf's top symbols. Run as root, after `cargo build --release`:

    python3 benches/e2e/profile.py idgate ka10            # perf on host A's and B's idgate
    python3 benches/e2e/profile.py idgate close10 --side A --callers
    python3 benches/e2e/profile.py idgate ka1 --no-perf   # numbers only (repeatable A/B checks)
    python3 benches/e2e/profile.py idgate close10 --syscalls --side A   # which syscalls, per request
    python3 benches/e2e/profile.py idgate ka1 --dso --side A    # kernel vs idgate vs libc share
    python3 benches/e2e/profile.py idgate_http ka10 --no-perf --sides   # CPU per request, each host
    python3 benches/e2e/profile.py idgate ka10,close10 --instructions A   # instructions per request
    python3 benches/e2e/profile.py idgate newconn --no-perf   # one new connection at a time

--instructions runs one side's idgate under callgrind (instrumented only while each workload
runs) and prints the instructions it executed per request: the same for the same binary and
load whatever else the machine does, so two binaries compare where req/s and CPU time are too
noisy to (this VM has no hardware counters for `perf stat`).

Workload keys are run.py's: ka1 ka10 ka64 close10 bulk idle, and `newconn`: one client makes
200 new connections one after another, each a GET timed from connect() to the response's first
byte, first with 50 ms of idle between them (as the first-request figures are taken: every
process on the path wakes from idle) and then back to back; it prints the medians of both, and
of connect() alone."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))
import netns  # noqa: E402
import run  # noqa: E402
from peers import SCENARIOS  # noqa: E402


def new_connections(bench, scn):
    """Medians of connect() and of connect-to-first-byte, after idle gaps and back to back."""
    host, port = scn.http_addr()
    parts = []
    for label, gap in (("50 ms idle between", 0.05), ("back to back", 0.0)):
        r = bench.client("/usr/bin/python3", "-c", run.FIRST_REQUESTS, host, port, 200, gap, timeout=120)
        samples = json.loads(r.stdout)[20:]  # the first ones warm the client's own code paths
        failed = [x["head"] for x in samples if not x["ok"]]
        if failed:
            raise RuntimeError(f"new connections through {scn.label}: {len(failed)} failed, first: {failed[0]!r}")
        connect, first_byte = (statistics.median(x[k] * 1e3 for x in samples) for k in ("connect_ms", "first_byte_ms"))
        parts.append(f"{label}: first byte {first_byte:.0f} µs (connect {connect:.0f} µs)")
    return "; ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", help="scenario key, e.g. idgate, idgate_http, envoy")
    ap.add_argument("workload", help="ka1 | ka10 | ka64 | close10 | bulk | idle | newconn, or several: bulk,idle")
    ap.add_argument("--duration", type=float, default=5, help="seconds of load (default 5)")
    ap.add_argument("--repeat", type=int, default=1, help="run the workload this many times, print each")
    ap.add_argument("--side", choices=["A", "B", "both"], default="both", help="whose proxy perf samples")
    ap.add_argument("--no-perf", action="store_true", help="numbers only")
    ap.add_argument("--stat", action="store_true", help="count syscalls and context switches per request instead of sampling")
    ap.add_argument("--syscalls", action="store_true", help="like --stat, but each syscall's count per request")
    ap.add_argument("--dso", action="store_true", help="perf report by binary (kernel, idgate, libc) instead of by symbol")
    ap.add_argument("--callers", action="store_true", help="perf report with call graphs (slower)")
    ap.add_argument("--top", type=int, default=40, help="symbols to print")
    ap.add_argument("--sides", action="store_true", help="also print each side's proxy CPU per request (µs)")
    ap.add_argument("--instructions", choices=["A", "B"], help="run this side's idgate under callgrind; print instructions per request")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile.py creates network namespaces: run it as root")
    classes = {c.key: c for c in SCENARIOS}
    if args.scenario not in classes:
        sys.exit(f"unknown scenario {args.scenario!r}; one of {', '.join(classes)}")
    kinds = {k: (kind, prm) for k, _t, kind, prm in run.WORKLOADS if kind in ("wrk", "iperf3")}
    workloads = args.workload.split(",")
    for w in workloads:
        if w not in kinds and w not in ("idle", "newconn"):
            sys.exit(f"unknown workload {w!r}; one of {', '.join(kinds)}, idle, newconn")

    bench = run.Bench(argparse.Namespace(quick=False))
    if args.instructions:
        args.no_perf = True
        counted = CallgrindSide(args.instructions)
    try:
        bench.up()
        scn = classes[args.scenario](bench)
        if scn.missing():
            sys.exit(scn.missing())
        scn.start()
        first = bench.first_requests(scn)
        print(f"{args.scenario} first requests, ms: " + ", ".join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in first.items()
                                                             if k.endswith("_ms") and v is not None))
        scn.verify()
        bench.client("wrk", "-t1", "-c10", "-d1s", bench.url(scn), timeout=30)  # warm-up
        pids = scn.pids_by_side() if hasattr(scn, "pids_by_side") else {}
        # With their children: idgate's main process runs the proxy as its child.
        targets = run.tree([p for s, ps in pids.items() if args.side in (s, "both") for p in ps])
        data = bench.work / "perf.data"
        perf = None
        if args.stat or args.syscalls:
            events = "syscalls:sys_enter_*" if args.syscalls else "raw_syscalls:sys_enter,context-switches,cpu-migrations"
            cmd = ["perf", "stat", "-x", ",", "-o", str(data), "-e", events]
            cmd += ["-p", ",".join(map(str, targets))] if targets else ["-a"]
            perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif not args.no_perf:
            cmd = ["perf", "record", "-F", "2999", "-o", str(data)] + (["-g"] if args.callers else [])
            cmd += ["-p", ",".join(map(str, targets))] if targets else ["-a"]
            perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for workload in [w for _ in range(args.repeat) for w in workloads]:
            if workload == "idle":
                print(bench.idle_flows(scn, 1000))
                continue
            if workload == "newconn":
                print(f"{args.scenario} newconn: {new_connections(bench, scn)}")
                continue
            kind, prm = kinds[workload]
            dur = int(args.duration) if float(args.duration).is_integer() else args.duration
            sides = scn.pids_by_side() if args.sides and hasattr(scn, "pids_by_side") else {}
            before = {side: run.cpu_seconds(p) for side, p in sides.items()}
            if args.instructions:
                counted.start(scn.pids_by_side()[args.instructions][0])
            r = (bench.wrk(scn, prm["conns"], dur, prm.get("close", False)) if kind == "wrk"
                 else bench.iperf3(scn, dur))
            if args.instructions and r.get("requests"):
                n = counted.stop()
                print(f"{args.scenario} {workload}: side {args.instructions} idgate ran {n / r['requests']:,.0f} instructions "
                      f"per request ({n:,} over {r['requests']:,} requests, under callgrind)")
            if sides and r.get("requests"):
                per = {side: (run.cpu_seconds(p) - before[side]) / r["requests"] * 1e6 for side, p in sides.items()}
                print(f"{args.scenario} {workload}: proxy CPU per request " + ", ".join(f"{side} {us:.2f} µs" for side, us in sorted(per.items())))
            if sides and r.get("bytes"):
                per = {side: (run.cpu_seconds(p) - before[side]) / (r["bytes"] / (1 << 30)) for side, p in sides.items()}
                print(f"{args.scenario} {workload}: proxy CPU per GiB " + ", ".join(f"{side} {s:.2f} s" for side, s in sorted(per.items())))
            requests = r.get("requests", 0)
            if "rps" in r:
                print(f"{args.scenario} {workload}: {r['rps']:.0f} req/s p50 {r['p50']} µs p99 {r['p99']} µs "
                      f"errors {r['errors']} cpu/10k {r['cpu10k']:.3f} s" if r.get("cpu10k") is not None else r)
            else:
                print(f"{args.scenario} {workload}: {r['gbps']:.2f} Gbit/s cpu/GiB {r.get('cpu_gib')}")
        if perf and (args.stat or args.syscalls):
            perf.send_signal(2)
            perf.wait(timeout=60)
            counts = [(int(f[0]), f[2]) for f in (line.split(",") for line in data.read_text().splitlines())
                      if len(f) > 2 and f[0].strip().isdigit() and int(f[0]) > 0]
            for n, event in sorted(counts, reverse=True) if args.syscalls else counts:
                per = f" = {n / requests:.1f} per request" if requests else ""
                print(f"{event.removeprefix('syscalls:sys_enter_')}: {n}{per} (side {args.side}, last workload)")
        elif perf:
            perf.send_signal(2)
            perf.wait(timeout=60)
            rep = ["perf", "report", "-i", str(data), "--stdio", "--percent-limit", "0.5"]
            # --callers: inclusive time per function (where the time goes, by caller), flat otherwise.
            if args.dso:
                rep += ["--sort", "dso"]
            else:
                rep += ["--children", "--sort", "sym", "-g", "none"] if args.callers else ["--sort", "comm,dso,sym"]
            out = subprocess.run(rep, capture_output=True, text=True).stdout.splitlines()
            lines = [line for line in out if line and not line.startswith("#")]
            print("\n".join(lines[: args.top * (3 if args.callers else 1)]))
        scn.stop()
    finally:
        bench.down()


class CallgrindSide:
    """Wraps the idgate binary so that `run` on one side's config starts under callgrind with
    instrumentation off; `start`/`stop` bracket a workload and return the instructions run."""

    def __init__(self, side):
        if not shutil.which("callgrind_control"):
            sys.exit("--instructions needs valgrind (apt install valgrind)")
        self.dir = Path(tempfile.mkdtemp(prefix="idgate-callgrind-"))
        real = netns.IDGATE
        wrapper = self.dir / "idgate"
        # The main process runs as the wrapper (argv[0]), so that it starts its proxy
        # (`run --worker`) through it too: the proxy is the one run under callgrind.
        wrapper.write_text(f"""#!/bin/bash
if [ "$1" = run ] && [ "$2" = --worker ]; then
  case "$*" in *{side.lower()}-idgate*)
    exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={self.dir}/out.%p {real} "$@" ;;
  esac
fi
exec -a "$0" {real} "$@"
""")
        wrapper.chmod(0o755)
        netns.IDGATE = wrapper  # only the hosts' idgate is started through it

    def start(self, root):
        # The proxy: the root's descendant running under valgrind.
        self.pid = next(p for p in run.tree([root]) if "valgrind" in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace"))
        subprocess.run(["callgrind_control", "-z", str(self.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-i", "on", str(self.pid)], capture_output=True, check=True)

    def stop(self):
        subprocess.run(["callgrind_control", "-i", "off", str(self.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(self.pid)], capture_output=True, check=True)
        dump = max(self.dir.glob(f"out.{self.pid}.*"), key=lambda f: f.stat().st_mtime)
        return next(int(line.split()[1]) for line in dump.read_text().splitlines() if line.startswith("totals:"))


if __name__ == "__main__":
    main()
