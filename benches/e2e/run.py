#!/usr/bin/env python3
"""End-to-end benchmark: idgate against direct TCP and the mTLS proxies a user would pick instead,
in one run, interleaved, with the same server (nginx in host B) and the same clients (wrk,
h2load, iperf3 in host A). Run as root:

    python3 benches/e2e/run.py            # full: 3 interleaved repetitions → benches/results/
    python3 benches/e2e/run.py --quick    # CI: short runs, 1 repetition, checks every scenario ran

See benches/e2e/README.md."""
import argparse
import atexit
import json
import os
import platform
import re
import resource
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

import peers  # noqa: E402
import report  # noqa: E402
from hosts import TRUST_DOMAIN  # noqa: E402
from netns import IDGATE, Topology  # noqa: E402
from peers import BULK_IDGATE, BULK_PLAIN, HTTP_IDGATE, HTTP_PLAIN, SCENARIOS  # noqa: E402

PREFIX = "ibench"  # namespaces ibenchsw/ibencha/ibenchb; not "idg*", which the tests' cleanup removes
CLIENT_UID = 1001  # has a [[workload]] rule in tests/e2e/hosts.py (spiffe://demo.idgate/app/alice)
NEW_IDENTITY_UID = 1002  # spiffe://demo.idgate/app/bob there: no benchmark workload runs as it before
NEW_PROCESSES = 5  # new client processes timed per repetition (their median is the rep's value)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = b"hello from host B\n"

# (key, title, kind, parameters). Durations come from the mode.
WORKLOADS = [
    ("ka1", "keep-alive, 1 connection", "wrk", {"conns": 1}),
    ("ka10", "keep-alive, 10 connections", "wrk", {"conns": 10}),
    ("ka64", "keep-alive, 64 connections", "wrk", {"conns": 64}),
    ("close10", "new connection per request (Connection: close), 10 connections", "wrk", {"conns": 10, "close": True}),
    ("rate1", "constant rate, 1 connection × 1,000 req/s (h2load --rps)", "h2load", {"conns": 1, "rps": 1000}),
    ("rate10", "constant rate, 10 connections × 500 req/s = 5,000 req/s (h2load --rps)", "h2load", {"conns": 10, "rps": 500}),
    ("bulk", "bulk: iperf3, single stream", "iperf3", {}),
]

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.2f,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""

# One GET per new connection, timed from connect() to the end of the response (and to connect()'s
# return and the first response byte): the first one after the pair started (cold: TLS
# handshake, for idgate also the JIT SVID), then warm ones. Idle between connections: the
# optional 4th argument, 50 ms by default.
FIRST_REQUESTS = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gap = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
out = []
for i in range(n):
    s = socket.socket()  # numeric address, no getaddrinfo: nothing cold on the client side is timed
    s.settimeout(10)
    t0 = time.perf_counter()
    try:
        s.connect((host, port))
        connected = time.perf_counter()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET / HTTP/1.1\r\nHost: b.bench\r\nConnection: close\r\n\r\n")
        data = s.recv(65536)
        first_byte = time.perf_counter()
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        ok = data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello from host B\n")
        out.append({"ms": (time.perf_counter() - t0) * 1e3, "connect_ms": (connected - t0) * 1e3,
                    "first_byte_ms": (first_byte - t0) * 1e3, "ok": ok, "head": data[:60].decode("latin1")})
    except OSError as e:
        out.append({"ms": None, "ok": False, "head": repr(e)})
    time.sleep(gap)
print(json.dumps(out))
"""

# Opens N keep-alive connections, makes one request on each (so the whole path is set up), holds
# them until stdin closes or `hold` seconds pass.
IDLE_FLOWS = r"""
import resource, signal, socket, sys
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
signal.alarm(hold)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
try:
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: b.bench\r\n\r\n")
        data = b""
        while not data.endswith(b"hello from host B\n"):
            b = s.recv(4096)
            if not b:
                raise OSError(f"connection {i} closed early")
            data += b
        socks.append(s)
    print("ready", len(socks), flush=True)
except OSError as e:
    print("failed", len(socks), repr(e), flush=True)
sys.stdin.read()
"""

NGINX_SERVER = """
worker_processes 1;
worker_rlimit_nofile 16384;
pid {work}/server-nginx.pid;
error_log {work}/server-nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-tmp/body;
  proxy_temp_path {work}/nginx-tmp/proxy;
  fastcgi_temp_path {work}/nginx-tmp/fastcgi;
  uwsgi_temp_path {work}/nginx-tmp/uwsgi;
  scgi_temp_path {work}/nginx-tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  tcp_nodelay on;
  server {{
    listen {ip}:{p1} reuseport backlog=4096;
    listen {ip}:{p2} reuseport backlog=4096;
    listen 127.0.0.1:{p2} backlog=4096;
    location / {{ default_type text/plain; return 200 "hello from host B\\n"; }}
    # What the HTTP-aware idgate scenario added to the request (checked once per start, not timed).
    location = /authcheck {{ default_type text/plain;
      return 200 "authorization=$http_authorization\\nxfcc=$http_x_forwarded_client_cert\\n"; }}
  }}
}}
"""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- process accounting

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])  # ppid, utime + stime (ticks, all threads)


def tree(roots):
    """The root pids and all their descendants that are alive now."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid, _ = _stat(int(d))
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo += children.get(p, [])
    return out


def cpu_seconds(roots):
    total = 0
    for p in tree(roots):
        try:
            total += _stat(p)[1]
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def mem_kib(roots, field):
    total = 0
    for p in tree(roots):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def pctl(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        for old in self.cache_dir().glob("run-*"):  # logs and configs of the previous run only
            shutil.rmtree(old, ignore_errors=True)
        self.work = Path(tempfile.mkdtemp(prefix="run-", dir=self.cache_dir()))
        self.work.chmod(0o755)
        self.client_dir = self.work / "client"
        self.client_dir.mkdir()
        self.client_dir.chmod(0o777)
        self.topo = None
        self.servers = []

    @staticmethod
    def cache_dir():
        d = Path(os.environ.get("IDGATE_BENCH_CACHE", "/var/cache/idgate-bench"))
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- setup
    def up(self):
        log(f"work dir {self.work}")
        self.topo = Topology(PREFIX)
        self.a = self.topo.add_host("a", 1)
        self.b = self.topo.add_host("b", 2)
        for h in (self.a, self.b):
            # Same for every scenario: room for ~10k new connections/s without running out of ports.
            for k, v in (("net.ipv4.ip_local_port_range", "20000 65000"), ("net.ipv4.tcp_tw_reuse", "1")):
                subprocess.run(h.cmd("sysctl", "-qw", f"{k}={v}"), check=True)
        self.certs = self.work / "certs"
        peers.make_certs(self.certs)
        self.idgate_ca = self.work / "idgate-ca"
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(self.idgate_ca), "--trust-domain", TRUST_DOMAIN],
                       check=True, capture_output=True)
        (self.work / "nginx-tmp").mkdir()
        conf = self.work / "server-nginx.conf"
        conf.write_text(NGINX_SERVER.format(work=self.work, ip=self.b.ip, p1=HTTP_IDGATE, p2=HTTP_PLAIN))
        self.servers.append(peers.Proc(self.b, ["nginx", "-c", conf, "-g", "daemon off;"], self.work / "server-nginx.log"))
        for port in (BULK_PLAIN, BULK_IDGATE):
            self.servers.append(peers.Proc(self.b, ["iperf3", "-s", "-p", port], self.work / f"server-iperf3-{port}.log"))
        peers.wait_listening(self.b, [HTTP_IDGATE, HTTP_PLAIN, BULK_PLAIN, BULK_IDGATE], self.servers)
        # Resolve neighbours now, so that no scenario's first request pays for ARP.
        subprocess.run(self.a.cmd("/usr/bin/python3", "-c", "import socket,sys; socket.create_connection((sys.argv[1], "
                                  "int(sys.argv[2])), timeout=5).close()", self.b.ip, HTTP_PLAIN), capture_output=True)
        (self.client_dir / "wrk.lua").write_text(WRK_LUA)
        (self.client_dir / "wrk.lua").chmod(0o644)

    def down(self):
        for p in self.servers:
            p.stop()
        self.servers = []
        if self.topo:
            self.topo.cleanup()
            self.topo = None

    def client(self, *args, timeout, uid=CLIENT_UID):
        return subprocess.run(self.a.cmd(*args, uid=uid), capture_output=True, text=True, timeout=timeout)

    # -- measurements
    def url(self, scn):
        host, port = scn.http_addr()
        return f"http://{host}:{port}/"

    def wrk(self, scn, conns, duration, close=False):
        pids = scn.pids()
        c0 = cpu_seconds(pids)
        args = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "2s", "-s", self.client_dir / "wrk.lua"]
        if close:
            args += ["-H", "Connection: close"]
        r = self.client(*args, self.url(scn), timeout=duration + 30)
        c1 = cpu_seconds(pids)
        line = next((entry for entry in r.stdout.splitlines() if entry.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result (exit {r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
        w = json.loads(line[8:])
        errors = sum(v for k, v in w.items() if k.startswith("err_"))
        if w["requests"] == 0:
            raise RuntimeError(f"wrk made no request ({errors} errors)")
        return {"rps": w["requests"] / (w["duration_us"] / 1e6), "requests": w["requests"], "errors": errors,
                "p50": w["p50"], "p90": w["p90"], "p99": w["p99"], "p999": w["p999"],
                "cpu10k": (c1 - c0) / w["requests"] * 1e4 if pids else None}

    def h2load(self, scn, conns, rps, duration):
        pids = scn.pids()
        logf = self.client_dir / f"h2load-{scn.key}.log"
        if logf.exists():
            logf.unlink()
        c0 = cpu_seconds(pids)
        r = self.client("h2load", "--h1", "-t1", f"-c{conns}", "-m1", f"--rps={rps}", f"-D{duration}",
                        "--warm-up-time=1" if not self.quick else "--warm-up-time=0", f"--log-file={logf}",
                        self.url(scn), timeout=duration + 30)
        c1 = cpu_seconds(pids)
        if not logf.exists():
            raise RuntimeError(f"h2load wrote no log (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
        lat, bad = [], 0
        for line in logf.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                if parts[1] == "200":
                    lat.append(int(parts[2]))
                else:
                    bad += 1
        if not lat:
            raise RuntimeError(f"h2load: no successful request: {r.stdout[-400:]}")
        m = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", r.stdout)
        if m:  # requests that never completed are not in the log
            bad = max(bad, sum(int(x) for x in m.groups()))
        lat.sort()
        achieved = len(lat) / duration
        target = conns * rps
        return {"rps": achieved, "target_rps": target, "requests": len(lat), "errors": bad,
                "p50": pctl(lat, 50), "p90": pctl(lat, 90), "p99": pctl(lat, 99), "p999": pctl(lat, 99.9),
                "cpu10k": (c1 - c0) / len(lat) * 1e4 if pids else None}

    def iperf3(self, scn, duration):
        host, port = scn.bulk_addr()
        pids = scn.pids()
        c0 = cpu_seconds(pids)
        r = self.client("iperf3", "-c", host, "-p", port, "-t", duration, "-J", "--connect-timeout", "3000",
                        timeout=duration + 30)
        c1 = cpu_seconds(pids)
        try:
            j = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 gave no JSON (exit {r.returncode}): {r.stdout[-300:]} {r.stderr[-300:]}") from None
        if "error" in j:
            raise RuntimeError(f"iperf3: {j['error']}")
        recv = j["end"]["sum_received"]
        gib = recv["bytes"] / (1 << 30)
        return {"gbps": recv["bits_per_second"] / 1e9, "bytes": recv["bytes"],
                "cpu_gib": (c1 - c0) / gib if pids and gib else None}

    def first_requests(self, scn):
        host, port = scn.http_addr()
        r = self.client("/usr/bin/python3", "-c", FIRST_REQUESTS, host, port, 4, timeout=60)
        out = json.loads(r.stdout)
        if not out[0]["ok"]:
            raise RuntimeError(f"first request through {scn.label} failed: {out[0]['head']!r}")
        warm = sorted(x["ms"] for x in out[1:] if x["ok"])

        def new_process(uid=CLIENT_UID):
            x = json.loads(self.client("/usr/bin/python3", "-c", FIRST_REQUESTS, host, port, 1, timeout=60, uid=uid).stdout)[0]
            return x["ms"] if x["ok"] else None

        # New processes of the same workload: its identity is known and (with idgate's process
        # events) its connection warm; only the process is new. Several, as one sample of a
        # path of six process wake-ups is at the mercy of the scheduler.
        nxt = sorted(x for x in (new_process() for _ in range(NEW_PROCESSES)) if x is not None)
        res = {"first_ms": out[0]["ms"], "warm_ms": warm[len(warm) // 2] if warm else None,
               "next_process_ms": nxt[len(nxt) // 2] if nxt else None, "next_process_samples": nxt}
        if hasattr(scn, "restart_client_side"):
            # The first process of an identity host A's idgate has never seen (bob), on a host
            # whose idgate has been running (it has talked to host B).
            res["new_identity_ms"] = new_process(NEW_IDENTITY_UID)
            # The client side's proxy restarts (upgrade, reboot); then a new process of the
            # same workload makes its first request.
            scn.restart_client_side()
            res["after_restart_ms"] = new_process()
        return res

    def idle_flows(self, scn, n):
        by_side = scn.pids_by_side()
        before = {s: mem_kib(p, "VmRSS") for s, p in by_side.items()}
        host, port = scn.http_addr()
        p = subprocess.Popen(self.a.cmd("/usr/bin/python3", "-c", IDLE_FLOWS, host, port, n, 120, uid=CLIENT_UID),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"could not hold {n} flows: {' '.join(line)} {p.stderr.read()[-300:] if p.poll() is not None else ''}")
            time.sleep(1.0)
            during = {s: mem_kib(pids, "VmRSS") for s, pids in by_side.items()}
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return {"n": n, "rss_before_kib": before, "rss_kib": during}

    # -- one scenario, one repetition
    def run_scenario(self, scn, d):
        res = {}
        t0 = time.time()
        try:
            scn.start()
        except Exception as e:  # noqa: BLE001 - recorded in the table
            scn.stop()
            return {"error": f"start failed: {e}"}
        try:
            try:
                res["first"] = self.first_requests(scn)
                scn.verify()
            except Exception as e:  # noqa: BLE001
                return {"error": str(e)}
            # Warm-up, not recorded.
            try:
                self.client("wrk", "-t1", "-c10", f"-d{d['warmup']}s", self.url(scn), timeout=30)
            except subprocess.TimeoutExpired:
                pass
            # Bulk first: it is measured before the new-connection workload fills conntrack with
            # thousands of TIME_WAIT entries, so each workload starts from the same clean state.
            for key, _title, kind, prm in sorted(WORKLOADS, key=lambda w: w[2] != "iperf3"):
                try:
                    if kind == "wrk":
                        res[key] = self.wrk(scn, prm["conns"], d["http"], prm.get("close", False))
                    elif kind == "h2load":
                        if not shutil.which("h2load"):
                            res[key] = {"error": "h2load not installed (Debian nghttp2-client)"}
                            continue
                        res[key] = self.h2load(scn, prm["conns"], prm["rps"], d["http"])
                    else:
                        res[key] = self.iperf3(scn, d["bulk"])
                except Exception as e:  # noqa: BLE001
                    res[key] = {"error": str(e)[:400]}
                time.sleep(0.3)
            if scn.pids():
                res["hwm_kib"] = {s: mem_kib(p, "VmHWM") for s, p in scn.pids_by_side().items()}
                try:
                    res["idle"] = self.idle_flows(scn, d["idle_flows"])
                except Exception as e:  # noqa: BLE001
                    res["idle"] = {"error": str(e)[:400]}
            dead = [p for p in scn.pids() if not os.path.exists(f"/proc/{p}")]
            if dead:
                res["warning"] = f"proxy process(es) {dead} died during the run"
        finally:
            scn.stop()
            res["seconds"] = round(time.time() - t0, 1)
        return res


def cpu_snapshot():
    """(machine busy seconds, steal seconds, this benchmark's CPU seconds incl. reaped children)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK,
            me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)


def machine_notes():
    def version(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "kernel": platform.release(),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "versions": {
            "idgate": f"{version([str(IDGATE), '--version'])}, binary built "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(IDGATE.stat().st_mtime))}, repo HEAD "
                      + subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                       capture_output=True, text=True).stdout.strip(),
            "nginx": version(["nginx", "-v"]),
            "haproxy": version(["haproxy", "-v"]).split(" - ")[0],
            "stunnel": next((line.strip() for line in subprocess.run(["stunnel4", "-version"], capture_output=True, text=True)
                             .stderr.splitlines() if line.startswith("stunnel ")), "?") if shutil.which("stunnel4") else "not installed",
            "envoy": version([str(peers.ENVOY), "--version"]) if peers.ENVOY.exists() else "not installed",
            "wrk": version(["wrk", "-v"]),
            "h2load": version(["h2load", "--version"]) if shutil.which("h2load") else "not installed",
            "iperf3": version(["iperf3", "--version"]),
        },
    }


def reexec_for_matplotlib():
    """The chart needs matplotlib; Debian's python3-matplotlib lives in /usr/bin/python3, which may not
    be the python3 first on PATH (pyenv). Re-run under it when that is the only one that has it."""
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    sysp = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(sysp) and os.path.exists(sysp) and \
            subprocess.run([sysp, "-c", "import matplotlib"], capture_output=True).returncode == 0:
        os.execv(sysp, [sysp, str(Path(__file__).resolve()), *sys.argv[1:]])


# The scale mode's parts, each its own script (see its docstring), in this order.
SCALE_PARTS = ["scale_destinations.py", "scale_identities.py", "scale_peers.py", "scale_flows.py"]


def scale_mode(quick):
    """Runs the four scale benchmarks one after another; in the full mode each writes its
    results and scale_report.py joins them into benches/results/scale.md and scale.png.
    Returns the exit status: non-zero if any part failed."""
    t0 = time.time()
    failed = []
    for part in SCALE_PARTS:
        log(f"scale mode: {part}{' --quick' if quick else ''}")
        r = subprocess.run([sys.executable, str(HERE / part)] + (["--quick"] if quick else []))
        if r.returncode != 0:
            failed.append(part)
    if not quick:
        import scale_report
        md, png = scale_report.write(wall=time.time() - t0)
        print(md.read_text())
        log(f"wrote {md}" + (f" and {png}" if png else " (no chart: matplotlib missing)"))
    print(f"scale: {len(SCALE_PARTS) - len(failed)} passed, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI mode: short runs, 1 repetition, results to a temp dir")
    ap.add_argument("--reps", type=int, help="repetitions (full: 3)")
    ap.add_argument("--duration", type=float, help="seconds per HTTP workload (full: 8, quick: 1)")
    ap.add_argument("--only", help="comma-separated scenario keys (direct is always included)")
    ap.add_argument("--out", help="output directory (full: benches/results, quick or --only: a new temp dir)")
    ap.add_argument("--no-setup", action="store_true", help="do not run benches/e2e/setup.sh first")
    ap.add_argument("--scale", action="store_true",
                    help="the scale mode instead: destinations, identities, peers, flows (full: about 20 minutes → "
                         "benches/results/scale.md; with --quick: about 3 minutes, nothing written)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py creates network namespaces: run it as root")
    if not IDGATE.exists():
        sys.exit(f"{IDGATE} is missing: cargo build --release first")
    if not args.no_setup and not os.environ.get("IDGATE_BENCH_SETUP_DONE"):
        r = subprocess.run(["bash", str(HERE / "setup.sh")] + ([] if args.quick else ["--full"]))
        if r.returncode != 0:
            sys.exit("benches/e2e/setup.sh failed")
        os.environ["IDGATE_BENCH_SETUP_DONE"] = "1"
    reexec_for_matplotlib()
    if args.scale:
        sys.exit(scale_mode(args.quick))
    d = ({"http": 1, "bulk": 2, "warmup": 0.5, "idle_flows": 1000, "reps": 1} if args.quick else
         {"http": 8, "bulk": 5, "warmup": 1, "idle_flows": 1000, "reps": 3})
    if args.duration:
        d["http"] = args.duration
    if args.reps:
        d["reps"] = args.reps
    d["http"] = int(d["http"]) if float(d["http"]).is_integer() else d["http"]
    # A partial (--only) run never replaces benches/results/latest.*: without --out it goes to a temp dir.
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="idgate-bench-quick-")) if args.quick else
                                           Path(tempfile.mkdtemp(prefix="idgate-bench-only-")) if args.only
                                           else REPO / "benches" / "results")
    out.mkdir(parents=True, exist_ok=True)

    bench = Bench(args)
    atexit.register(bench.down)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = set(args.only.split(",")) | {"direct"} if args.only else None
    scenarios = [cls(bench) for cls in SCENARIOS if only is None or cls.key in only]
    results = {"mode": "quick" if args.quick else "full", "durations": d, "machine": machine_notes(),
               "workloads": [(k, t) for k, t, _, _ in WORKLOADS], "scenarios": {}}
    for s in scenarios:
        results["scenarios"][s.key] = {"label": s.label, "short": s.short, "what": s.what, "missing": s.missing(),
                                       "reps": []}
    t_start = time.time()
    snap0 = cpu_snapshot()
    bench.up()
    runnable = [s for s in scenarios if not s.missing()]
    for s in scenarios:
        if s.missing():
            log(f"{s.label}: {s.missing()}")
    for rep in range(d["reps"]):
        order = runnable[rep % len(runnable):] + runnable[:rep % len(runnable)]  # rotate: no fixed position
        for s in order:
            load1 = float(open("/proc/loadavg").read().split()[0])
            results["machine"]["loadavg_max"] = max(results["machine"].get("loadavg_max", 0), load1)
            log(f"rep {rep + 1}/{d['reps']}: {s.label} (load average {load1:.2f})")
            r = bench.run_scenario(s, d)
            r["rep"] = rep
            results["scenarios"][s.key]["reps"].append(r)
            summary = ", ".join(f"{k} {v['rps']:.0f}/s p50 {v['p50']}µs" if "rps" in v else
                                (f"{k} {v['gbps']:.2f} Gbit/s" if "gbps" in v else f"{k} ERROR")
                                for k, v in r.items() if isinstance(v, dict) and k in dict((w[0], 1) for w in WORKLOADS))
            log(f"  {r.get('error') or summary} ({r.get('seconds')} s)")
    bench.down()
    snap1 = cpu_snapshot()
    wall = time.time() - t_start
    # CPU the machine spent on anything but this benchmark's processes (includes softirq network work
    # not charged to a process, so a few percent even on an idle machine).
    results["machine"]["other_cpu_pct"] = round(100 * max(0.0, (snap1[0] - snap0[0]) - (snap1[2] - snap0[2]))
                                                 / (wall * os.cpu_count()), 1)
    results["machine"]["steal_pct"] = round(100 * (snap1[1] - snap0[1]) / (wall * os.cpu_count()), 1)
    results["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    results["machine"]["seconds"] = round(time.time() - t_start)

    (out / "latest.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    md = report.markdown(results)
    (out / "latest.md").write_text(md)
    chart = report.chart(results, out / "latest.png")
    print(md)
    log(f"wrote {out / 'latest.md'}" + (f" and {chart}" if chart else " (no chart: matplotlib missing)"))

    problems = report.missing_numbers(results)
    if args.quick:
        if problems:
            print("QUICK CHECK FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
            bad = {p.split()[0].rstrip(":") for p in problems}
            print(f"bench: {len(runnable) - len(bad & {s.key for s in runnable})} passed, {len(bad)} failed, "
                  f"{len(scenarios) - len(runnable)} skipped")
            sys.exit(1)
        print(f"bench: {len(runnable)} passed, 0 failed, {len(scenarios) - len(runnable)} skipped")
    elif problems:
        print("some scenarios produced no numbers:\n  " + "\n  ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
