#!/usr/bin/env python3
"""Reach benchmark: what idgate costs a container's flows against a host process's, and a LAN
machine's flows through a pair of gateways against plain routing; one run, the paths
interleaved, in network namespaces of its own (reach_hosts.py draws them). Run as root:

    python3 benches/e2e/reach.py            # full: 3 repetitions -> benches/results/reach.md, reach.json
    python3 benches/e2e/reach.py --quick    # CI: 1 short repetition; fails unless every scenario gave numbers

See benches/e2e/README.md."""
import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the repo or in tests/e2e
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

import reach_clients as clients  # noqa: E402
import reach_report as report  # noqa: E402
from netns import IDGATE  # noqa: E402
from reach_hosts import Hosts  # noqa: E402
from run import cpu_snapshot  # noqa: E402

# Not "idg*" (the tests' clean-up removes those) nor "ibench*" (the main benchmark's).
PREFIX = "rbench"
MODES = {
    "quick": {"reps": 1, "first_processes": 5, "later_flows": 200, "http": 1, "bulk": 2, "deadline": 300},
    "full": {"reps": 3, "first_processes": 10, "later_flows": 200, "http": 5, "bulk": 5, "deadline": 1800},
}

SCENARIOS = {
    "container": {
        "title": "Container: a container's flows against a host process's",
        "what": "Host A's idgate has `[containers] networks` for its container bridge; the container (a network "
                "namespace behind the bridge, its processes in a `docker-<id>.scope` cgroup) runs its clients as a uid "
                "no host rule selects, and a `container_id` rule gives them their identity. The host process runs as "
                "uid 1001 (a `uid` rule). Both reach host B's nginx on port 8080 through the idgate pair. The floor is "
                "the same container reaching the same nginx on port 8081, which no rule intercepts (both idgates "
                "running): forwarded and masqueraded by host A, no proxy. A second container, alike but for a TCP socket "
                "hash table of its own (its namespace made with `net.ipv4.tcp_child_ehash_entries` = 1024; Linux 6.1 and "
                "later), shows what idgate's lookup in the container's TCP table costs when that table is not the "
                "machine's shared one.",
        "workloads": ["first", "later", "ka1", "ka10"],
        "baseline": "host", "subjects": ["ctr", "ctr_hash"],
    },
    "routed": {
        "title": "Routed: a LAN machine through a gateway pair against direct routing",
        "what": "A machine on host A's LAN (`lan0`) reaches a server on host B's LAN (`srv0`). Through the gateways: "
                "host A's idgate gives the flow its site's identity (`[[workload]] interface + sources`) and tunnels "
                "it to host B's idgate, which lets it reach the server (`[[inbound]] backends`). Direct routing: the "
                "same machine, the same server on a port neither idgate covers (8081; iperf3 5201), routed by both "
                "hosts with no proxy.",
        "workloads": ["bulk", "later", "ka1", "ka10"],
        "baseline": "direct", "subjects": ["gateway"],
    },
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(path, wl, s, script):
    if wl == "first":
        return clients.first_flows(path, s["first_processes"])
    if wl == "later":
        return clients.later_flows(path, s["later_flows"])
    if wl in ("ka1", "ka10"):
        return clients.wrk(path, script, int(wl[2:]), s["http"])
    return clients.iperf3(path, s["bulk"])


def summary(r):
    if "error" in r:
        return "ERROR " + r["error"][:200]
    return ", ".join(f"{k} {v:,.2f}" for k, v in r.items() if isinstance(v, float | int) and k != "n")


def run_scenario(name, paths, rep, s, script):
    """One repetition of one scenario: every path warmed up and checked, then each workload on
    every path in turn (rotated per repetition and workload)."""
    out = {p.key: {} for p in paths}
    ok = []
    for p in paths:
        try:
            if None in clients.flows(p, 3):  # ARP, the tunnel, the server: not timed
                raise RuntimeError("warm-up flow failed")
            p.check()
            ok.append(p)
        except Exception as e:  # noqa: BLE001 - recorded, the path gives no numbers
            log(f"  {name}/{p.key}: {e}")
            out[p.key]["error"] = str(e)[:400]
    for i, wl in enumerate(SCENARIOS[name]["workloads"]):
        k = (rep + i) % len(ok) if ok else 0
        for p in ok[k:] + ok[:k]:
            try:
                out[p.key][wl] = measure(p, wl, s, script)
            except Exception as e:  # noqa: BLE001
                out[p.key][wl] = {"error": str(e)[:400]}
            log(f"  {name}/{p.key} {wl}: {summary(out[p.key][wl])}")
    return out


def machine_notes():
    head = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    version = subprocess.run([str(IDGATE), "--version"], capture_output=True, text=True).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(IDGATE.stat().st_mtime))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "kernel": platform.release(), "cpu": f"{cpu}, {os.cpu_count()} cores",
            "idgate": f"{version} (binary built {built}, repo {head})", "loadavg_start": open("/proc/loadavg").read().split()[:3]}


def work_dir():
    cache = Path(os.environ.get("IDGATE_BENCH_CACHE", "/var/cache/idgate-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("reach-*"):  # logs and configs of the previous run only
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="reach-", dir=cache))
    work.chmod(0o755)  # the clients run as other uids and read the wrk script here
    return work


def exit_on(signum, _frame):
    sys.exit(128 + signum)  # atexit's clean-up runs


def over_time(_signum, _frame):
    raise TimeoutError("the run took longer than its deadline")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI mode: 1 short repetition, results to a temp dir")
    ap.add_argument("--reps", type=int, help="repetitions (full: 3)")
    ap.add_argument("--out", help="output directory (full: benches/results, quick: a new temp dir)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("reach.py creates network namespaces: run it as root")
    if not IDGATE.exists():
        sys.exit(f"{IDGATE} is missing: cargo build --release first, or set IDGATE_BIN")
    if not all(shutil.which(t) for t in ("wrk", "nginx", "iperf3")) and subprocess.run(["bash", str(HERE / "setup.sh")]).returncode != 0:
        sys.exit("benches/e2e/setup.sh failed")
    mode = "quick" if args.quick else "full"
    s = dict(MODES[mode], reps=args.reps or MODES[mode]["reps"])
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="idgate-reach-quick-")) if args.quick else REPO / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)

    t0, snap0 = time.time(), cpu_snapshot()
    hosts = Hosts(PREFIX, work_dir())
    atexit.register(lambda: (signal.alarm(0), hosts.down()))  # the deadline never cuts the clean-up short
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, exit_on)
    signal.signal(signal.SIGALRM, over_time)
    signal.alarm(s["deadline"])
    results = {"mode": mode, "settings": s, "machine": machine_notes(), "scenarios": {}, "reps": []}
    log(f"work dir {hosts.work}")
    hosts.up()
    paths = {"container": hosts.container_paths(), "routed": hosts.routed_paths()}
    for name, scn in SCENARIOS.items():
        results["scenarios"][name] = dict(scn, paths={p.key: p.label for p in paths[name]})
    script = clients.write_wrk_script(hosts.work)
    for rep in range(s["reps"]):
        results["reps"].append(rep_out := {"rep": rep})
        load = float(open("/proc/loadavg").read().split()[0])
        results["machine"]["loadavg_max"] = max(results["machine"].get("loadavg_max", 0), load)
        log(f"rep {rep + 1}/{s['reps']} (load average {load:.2f}): starting both idgates")
        try:
            hosts.start_idgates()
        except Exception as e:  # noqa: BLE001 - every scenario of the rep reports it
            for name in SCENARIOS:
                rep_out[name] = {"error": f"idgate did not start: {str(e)[:300]}"}
            hosts.stop_idgates()
            continue
        names = list(SCENARIOS)
        for name in names[rep % 2:] + names[:rep % 2]:
            rep_out[name] = run_scenario(name, paths[name], rep, s, script)
        hosts.stop_idgates()
    signal.alarm(0)
    hosts.down()
    results["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    wall, snap1 = time.time() - t0, cpu_snapshot()
    results["machine"]["seconds"] = round(wall)
    # CPU the machine spent on anything but this run's processes (a compile beside it moves
    # every number); a few percent even on an idle machine (softirq work no process is charged).
    results["machine"]["other_cpu_pct"] = round(100 * max(0.0, (snap1[0] - snap0[0]) - (snap1[2] - snap0[2])) / (wall * os.cpu_count()), 1)

    (out / "reach.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    md = report.markdown(results)
    (out / "reach.md").write_text(md)
    print(md, flush=True)
    log(f"wrote {out / 'reach.md'} and reach.json in {results['machine']['seconds']} s")
    problems = report.missing(results)
    failed = {p.split(":")[0] for p in problems}
    if problems:
        print("some figures are missing:\n  " + "\n  ".join(problems), file=sys.stderr)
    print(f"reach-bench: {len(SCENARIOS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
