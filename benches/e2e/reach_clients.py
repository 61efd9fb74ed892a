"""The reach benchmark's measurements, each run by a client on one path (reach_hosts.ClientPath)
and bounded in count and time."""
import json
import statistics
from pathlib import Path

from netns import WORKLOAD_PYTHON
from run import WRK_LUA, pctl

# One GET per new connection, back to back, each timed from connect() to the end of the
# response; prints one JSON list of milliseconds (None for a failed one).
FLOWS = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for i in range(n):
    s = socket.socket()  # numeric address: no name lookup is timed
    s.settimeout(10)
    t0 = time.perf_counter()
    try:
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET / HTTP/1.1\r\nHost: b.bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        ok = data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello from host B\n")
        out.append((time.perf_counter() - t0) * 1e3 if ok else None)
    except OSError:
        out.append(None)
    finally:
        s.close()
print(json.dumps(out))
"""


def flows(path, n, timeout=60):
    host, port = path.http
    r = path.run(WORKLOAD_PYTHON, "-c", FLOWS, host, port, n, timeout=timeout)
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"flow client gave no result (exit {r.returncode}): {r.stderr[-400:]}") from None


def first_flows(path, processes):
    """The first flow of each of `processes` new client processes (connect to response); their median."""
    got = [flows(path, 1)[0] for _ in range(processes)]
    ok = sorted(x for x in got if x is not None)
    if len(ok) < len(got):
        raise RuntimeError(f"{len(got) - len(ok)} of {len(got)} first flows failed")
    return {"p50": statistics.median(ok), "samples": [round(x, 3) for x in ok]}


def later_flows(path, n):
    """`n` new connections of one process after its first (which is not counted): p50, p90."""
    got = flows(path, n + 1, timeout=60 + n // 10)[1:]
    ok = sorted(x for x in got if x is not None)
    if len(ok) < len(got):
        raise RuntimeError(f"{len(got) - len(ok)} of {len(got)} later flows failed")
    return {"p50": pctl(ok, 50), "p90": pctl(ok, 90), "n": len(ok)}


def write_wrk_script(d: Path):
    f = d / "wrk.lua"
    f.write_text(WRK_LUA)
    f.chmod(0o644)
    return f


def wrk(path, script, conns, duration):
    """Keep-alive load, one thread, `conns` connections: req/s and p50 (µs)."""
    host, port = path.http
    r = path.run("wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "2s", "-s", script, f"http://{host}:{port}/",
                 timeout=duration + 30)
    line = next((x for x in r.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {r.returncode}): {r.stdout[-300:]} {r.stderr[-300:]}")
    w = json.loads(line[8:])
    errors = sum(v for k, v in w.items() if k.startswith("err_"))
    if w["requests"] == 0 or errors * 100 > w["requests"]:
        raise RuntimeError(f"wrk: {w['requests']} requests, {errors} errors")
    return {"rps": w["requests"] / (w["duration_us"] / 1e6), "p50": w["p50"], "p90": w["p90"], "requests": w["requests"], "errors": errors}


def iperf3(path, duration):
    """One bulk stream for `duration` seconds: Gbit/s received."""
    host, port = path.bulk
    r = path.run("iperf3", "-c", host, "-p", port, "-t", duration, "-J", "--connect-timeout", "3000", timeout=duration + 30)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3 gave no JSON (exit {r.returncode}): {r.stderr[-300:]}") from None
    if "error" in j:
        raise RuntimeError(f"iperf3: {j['error']}")
    return {"gbps": j["end"]["sum_received"]["bits_per_second"] / 1e9}
