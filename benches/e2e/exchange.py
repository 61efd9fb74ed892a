#!/usr/bin/env python3
"""Credential exchange benchmark: an HTTP-aware idgate path whose rule injects an exchanged
credential (`${credential:api}`, OAuth client credentials at oidc-provider) against the same
path whose rule injects a file token of the same length (`${file:...}`), in one run, the two
interleaved; per request once cached, and the first request with a cold cache. Run as root:

    python3 benches/e2e/exchange.py            # full: 3 repetitions -> benches/results/exchange.md, .json
    python3 benches/e2e/exchange.py --quick    # CI: 1 short repetition; fails unless every figure came out

Namespaces `xbe*` (tests/e2e/netns.py), set up as tests/e2e/test_credentials.py does:
  a 10.77.0.1  idgate; the clients as uid 1001 (spiffe://demo.idgate/app/alice)
  c 10.77.0.3  oidc-provider :8443 (HTTPS; alice a private_key_jwt client, tokens last 1 h),
               idgate-test-httpd :9443 (HTTPS, api.test)
  c:9080 -> api.test:9443 with the file token, c:9081 with the exchanged one (TLS by idgate).
The cold cache: before each first request idgate is reloaded with the source's `timeout`
changed (a new value each time: nothing on the wire changes, but a changed source starts a new
cache, and a value used before would find its old entries); the client is one long-lived
process, started before, so no workload start fetches ahead. The file token's first requests
follow a reload too. See benches/e2e/README.md."""
import argparse
import atexit
import json
import os
import re
import secrets
import shutil
import signal
import statistics
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

from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

import idp  # noqa: E402
import pki  # noqa: E402
from fleet import ca  # noqa: E402
from hosts import TRUST_DOMAIN  # noqa: E402
from http_hosts import HTTPD, Httpd  # noqa: E402
from netns import IDGATE, WORKLOAD_PYTHON, Topology  # noqa: E402
from reach import machine_notes  # noqa: E402
from reach_clients import write_wrk_script  # noqa: E402
from run import cpu_snapshot  # noqa: E402

PREFIX = "xbe"
ALICE, UID = f"spiffe://{TRUST_DOMAIN}/app/alice", 1001
ISSUER, IDP_URL, C = "https://issuer.test/fleet", "https://10.77.0.3:8443", "10.77.0.3"
PORTS = {"file": 9080, "exchange": 9081}
LABELS = {"file": "file token (`${file:...}`)", "exchange": "exchanged credential (`${credential:api}`)"}
MODES = {
    "quick": {"reps": 1, "duration": 2, "cold": 3, "deadline": 120},
    "full": {"reps": 3, "duration": 8, "cold": 10, "deadline": 900},
}

# One long-lived client: for each `PORT PATH` line on stdin, a new connection and one GET, timed
# from connect() to the response's first byte and to its end; one JSON line each.
CLIENT = r"""
import json, socket, sys, time
for line in sys.stdin:
    port, path = line.split()
    s = socket.socket()  # numeric address: no name lookup is timed
    s.settimeout(15)
    t0 = time.perf_counter()
    try:
        s.connect((sys.argv[1], int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(65536)
        first = time.perf_counter()
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + int(
                next((h.split(b":")[1] for h in data.split(b"\r\n") if h.lower().startswith(b"content-length:")), b"0")):
            b = s.recv(65536)
            if not b:
                break
            data += b
        out = {"first_byte_ms": (first - t0) * 1e3, "ms": (time.perf_counter() - t0) * 1e3, "response": data.decode("latin1")}
    except (OSError, ValueError) as e:
        out = {"error": repr(e)}
    s.close()
    print(json.dumps(out), flush=True)
"""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def config_a(w, timeout_ms):
    tls = f'ca_bundle = "{w}/tls/ca.pem"'
    return f"""
trust_domain = "{TRUST_DOMAIN}"
hostname = "host-a"
state_dir = "{w}/state-a"
mode = "strict"
default_action = "deny"

[ca]
source = "files"
cert = "{w}/host-a-ca/ca.pem"
key = "{w}/host-a-ca/ca-key.pem"
trust_bundle = ["{w}/root/ca.pem"]

[listen]
admin = "127.0.0.1:15000"

[http]
jwt_issuer = "{ISSUER}"
jwt_key = "{w}/host-a-ca/jwt-key.pem"

[[workload]]
spiffe_id = "{ALICE}"
uid = {UID}

[[outbound]]
cidrs = ["{C}/32"]
ports = [9080, 9081]
protocol = "http"
tls = {{ server_name = "api.test", port = 9443, {tls} }}

[[credential]]
name = "api"
kind = "oauth_client_credentials"
endpoint = "{IDP_URL}/token"
scope = "read"
timeout = "{timeout_ms}ms"  # changed before each cold first request: a new cache
{tls}

[[http_rule]]
ports = [9080]
set = {{ authorization = "Bearer ${{file:{w}/secrets/token}}" }}

[[http_rule]]
ports = [9081]
set = {{ authorization = "Bearer ${{credential:api}}" }}
"""


class Bench:
    def __init__(self, work):
        self.w, self.procs, self.timeout_ms = work, [], 5000
        self.topo = Topology(prefix=PREFIX)
        self.a, self.c = self.topo.add_host("a", 1), self.topo.add_host("c", 3)

    def up(self):
        w = self.w
        ca("init", "--dir", w / "root", "--trust-domain", TRUST_DOMAIN)
        ca("issue", "--dir", w / "root", "--host", "host-a", "--address", "10.77.0.1", "--grant", f"spiffe://{TRUST_DOMAIN}/app/*",
           "--out", w / "host-a-ca")
        ca("jwks", "--dir", w / "root", "--issuer", ISSUER, "--for", ALICE, "--out", w / "alice-jwks")
        alice_jwks = json.loads((w / "alice-jwks" / "jwks.json").read_text())
        pki.make_ca(w / "tls", "idgate bench external CA")
        server = [ExtendedKeyUsageOID.SERVER_AUTH]
        pki.issue(w / "tls", w / "tls/idp.pem", w / "tls/idp-key.pem", ips=[C], cn="idp", usages=server)
        pki.issue(w / "tls", w / "tls/api.pem", w / "tls/api-key.pem", dns=["api.test"], cn="api.test", usages=server)
        (w / "secrets").mkdir(mode=0o700)
        self.write_token(800)
        self.procs.append(idp.start_provider(
            self.c, w, listen=C, port=8443, issuer=IDP_URL, tls_cert=w / "tls/idp.pem", tls_key=w / "tls/idp-key.pem",
            access_token_ttl=3600, resource="https://api.test",
            clients=[{"client_id": ALICE, "jwks": alice_jwks, "scope": "read write", "grant_types": ["client_credentials"]}]))
        self.httpd = Httpd(self.c, f"{C}:9443", w / "c-httpd.log", tls=(w / "tls/api.pem", w / "tls/api-key.pem"))
        self.idgate = self.a.start_idgate(config_a(w, self.timeout_ms), w)
        self.client = self.a.popen(WORKLOAD_PYTHON, "-c", CLIENT, C, uid=UID, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def write_token(self, n):
        """A JWT-shaped token of n characters, root's, mode 0600 (replaced whole: idgate re-reads it)."""
        token = list(("eyJ" + secrets.token_urlsafe(n))[:n])
        token[n // 3] = token[2 * n // 3] = "."
        token = "".join(token)
        tmp = self.w / "secrets/token.new"
        tmp.write_text(token)
        tmp.chmod(0o600)
        tmp.replace(self.w / "secrets/token")
        return token

    def get(self, port, path="/"):
        self.client.stdin.write(f"{port} {path}\n")
        self.client.stdin.flush()
        out = json.loads(self.client.stdout.readline() or '{"error": "the client exited"}')
        if "error" in out:
            raise RuntimeError(f"port {port} {path}: {out['error']}")
        if not out["response"].startswith("HTTP/1.1 200"):
            raise RuntimeError(f"port {port} {path}: {out['response'][:300]}")
        return out

    def authorization(self, port):
        """The authorization header the server received through `port` (its /inspect answer)."""
        body = json.loads(self.get(port, "/inspect")["response"].split("\r\n\r\n", 1)[1])
        return body["headers"]["authorization"][0]

    def match_token_sizes(self):
        """The file token made as long as the exchanged one, and both checked at the server."""
        exchanged = self.authorization(PORTS["exchange"])
        token = self.write_token(len(exchanged) - len("Bearer "))
        for _ in range(50):
            if self.authorization(PORTS["file"]) == f"Bearer {token}":
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the file token was not sent")
        claims = json.loads(__import__("base64").urlsafe_b64decode(exchanged.split(".")[1] + "=="))
        if claims.get("sub") != ALICE:
            raise RuntimeError(f"the exchanged token is not alice's: {claims}")
        return len(exchanged)

    def reload(self):
        """Reloads idgate with the credential source changed (a new cache for it)."""
        self.timeout_ms += 1
        Path(self.idgate.config).write_text(config_a(self.w, self.timeout_ms))
        self.a.run(IDGATE, "reload", "-c", self.idgate.config, timeout=30)

    def exchange_seconds(self):
        text = self.a.run("curl", "-sf", "http://127.0.0.1:15000/metrics", timeout=10).stdout.decode()
        got = dict(re.findall(r"^\w*credential_exchange_seconds_(sum|count) (\S+)$", text, re.M))
        return float(got["sum"]), int(float(got["count"]))

    def cold(self, which):
        """The first request after a reload on a new connection; with the exchange, the exchange's time."""
        self.reload()
        s0, n0 = self.exchange_seconds()
        time.sleep(0.1)
        got = self.get(PORTS[which])
        s1, n1 = self.exchange_seconds()
        if n1 - n0 != (which == "exchange"):
            raise RuntimeError(f"{which}: {n1 - n0} exchange(s) for one cold request")
        return {"first_byte_ms": got["first_byte_ms"], "exchange_ms": (s1 - s0) * 1e3 if n1 > n0 else None}

    def wrk(self, script, port, conns, duration):
        r = self.a.run("wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "2s", "-H", "Host: api.test", "-s", script,
                       f"http://{C}:{port}/", uid=UID, timeout=duration + 30, check=False)
        out = r.stdout.decode()
        line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result (exit {r.returncode}): {out[-300:]} {r.stderr.decode()[-300:]}")
        w = json.loads(line[8:])
        errors = sum(v for k, v in w.items() if k.startswith("err_"))
        if w["requests"] == 0 or errors * 100 > w["requests"]:
            raise RuntimeError(f"wrk: {w['requests']} requests, {errors} errors")
        return {"rps": w["requests"] / (w["duration_us"] / 1e6), "p50": w["p50"], "p90": w["p90"], "requests": w["requests"]}

    def down(self):
        for p in [getattr(self, "client", None), *self.procs]:
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs = []
        self.topo.cleanup()


def rep(b, s, script, i):
    """One repetition: both paths warmed, keep-alive loads in a rotated order, then cold pairs."""
    out = {k: {} for k in PORTS}
    order = list(PORTS) if i % 2 == 0 else list(PORTS)[::-1]
    for k in order:
        b.get(PORTS[k])
        b.wrk(script, PORTS[k], 10, 1)  # warm-up, not counted
    for j, (wl, conns) in enumerate((("ka1", 1), ("ka10", 10))):
        for k in order[j % 2:] + order[:j % 2]:
            out[k][wl] = b.wrk(script, PORTS[k], conns, s["duration"])
            log(f"  {k} {wl}: {out[k][wl]['rps']:,.0f} req/s, p50 {out[k][wl]['p50']} µs, p90 {out[k][wl]['p90']} µs")
    samples = {k: [] for k in PORTS}
    for j in range(s["cold"]):
        for k in order[j % 2:] + order[:j % 2]:
            samples[k].append(b.cold(k))
    for k in PORTS:
        ms = [x["first_byte_ms"] for x in samples[k]]
        out[k]["cold"] = {"p50": statistics.median(ms), "samples": [round(x, 3) for x in ms]}
    ex = [x["exchange_ms"] for x in samples["exchange"]]
    out["exchange"]["cold"].update(exchange_p50=statistics.median(ex), exchange_samples=[round(x, 3) for x in ex],
                                   share=statistics.median(x["exchange_ms"] / x["first_byte_ms"] for x in samples["exchange"]))
    log(f"  cold first request: file {out['file']['cold']['p50']:.2f} ms, exchange {out['exchange']['cold']['p50']:.2f} ms "
        f"(the exchange itself {out['exchange']['cold']['exchange_p50']:.2f} ms)")
    return out


# key: (title, workload, field, digits)
FIGURES = {
    "ka1_p50": ("keep-alive, 1 connection: p50 (µs)", "ka1", "p50", 0),
    "ka1_p90": ("keep-alive, 1 connection: p90 (µs)", "ka1", "p90", 0),
    "ka1_rps": ("keep-alive, 1 connection: req/s", "ka1", "rps", 0),
    "ka10_rps": ("keep-alive, 10 connections: req/s", "ka10", "rps", 0),
    "ka10_p50": ("keep-alive, 10 connections: p50 (µs)", "ka10", "p50", 0),
    "cold": ("first request on a new connection after a reload, connect to first byte, median (ms)", "cold", "p50", 2),
}


def values(res, path, wl, field):
    return [(r.get(path, {}).get(wl) or {}).get(field) for r in res["reps"]]


def agg(vals):
    vals = [v for v in vals if v is not None]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


def fmt(a, digits):
    if a is None:
        return "—"
    f = f"{{:,.{digits}f}}".format
    return f(a[0]) if a[1] == a[2] else f"{f(a[0])} ({f(a[1])}–{f(a[2])})"


def markdown(res):
    m, s, n = res["machine"], res["settings"], len(res["reps"])
    lines = [f"# Credential exchange benchmark ({res['mode']} mode)", "",
             f"{m['date']}; {m['cpu']}; kernel {m['kernel']}; {m['idgate']}. {n} repetition(s), the two paths interleaved in a "
             f"rotated order; {'each figure the median of the repetitions with min–max' if n > 1 else 'one repetition'}; each "
             "ratio is the exchanged credential's figure over the file token's, paired per repetition. "
             f"Load average {m['loadavg_start'][0]} at the start, at most {m.get('loadavg_max', '?')} during the run; CPU used by "
             f"anything else on the machine: {m.get('other_cpu_pct', '?')}% of its capacity (softirq time, network work no process is "
             f"charged and mostly this run's own, not counted: {m.get('softirq_pct', '?')}%); {m.get('seconds', '?')} s in all.", "",
             f"Settings: wrk {s['duration']} s per load (one thread, keep-alive); {s['cold']} cold first requests per path per "
             f"repetition. Both rules set `authorization: Bearer <{res.get('header_bytes', '?')} bytes>` on an HTTP-aware "
             "outbound path with TLS origination (host A's idgate to idgate-test-httpd, HTTPS, on host C); the exchanged one "
             "is an oidc-provider access token (OAuth client credentials, private_key_jwt, lasting 1 h), the file token a "
             "root-owned 0600 file of the same length. The cold cache: idgate reloaded before each first request with the "
             "source's `timeout` changed (a changed source starts a new cache); the file token's first requests follow a "
             "reload too; the client is one process started before them (a workload's start fetches ahead).", "",
             f"| figure | {LABELS['file']} | {LABELS['exchange']} | ratio |", "|---|---:|---:|---:|"]
    for title, wl, field, digits in FIGURES.values():
        f, e = values(res, "file", wl, field), values(res, "exchange", wl, field)
        r = agg([b / a if a and b is not None else None for a, b in zip(f, e, strict=True)])
        lines.append(f"| {title} | {fmt(agg(f), digits)} | {fmt(agg(e), digits)} | {fmt(r, 2)} |")
    ex, share = values(res, "exchange", "cold", "exchange_p50"), values(res, "exchange", "cold", "share")
    added = [b - a if a is not None and b is not None else None for a, b in
             zip(values(res, "file", "cold", "p50"), values(res, "exchange", "cold", "p50"), strict=True)]
    lines += ["", f"Of the cold first request: the exchange itself (`idgate_credential_exchange_seconds`: a TLS connection "
              f"to the token endpoint, the signed assertion, the provider's answer) took {fmt(agg(ex), 2)} ms, "
              f"{fmt(agg([x * 100 if x is not None else None for x in share]), 0)}% of it (median per request); the cold "
              f"request's median less the file token's: {fmt(agg(added), 2)} ms.", ""]
    if missing(res):
        lines += ["## Missing", "", *(f"- {p}" for p in missing(res)), ""]
    return "\n".join(lines)


def missing(res):
    out = [f"rep {r['rep'] + 1}: {r['error']}" for r in res["reps"] if "error" in r]
    for _, wl, field, _ in FIGURES.values():
        for path in PORTS:
            if any(v is None for v in values(res, path, wl, field)):
                out.append(f"{path}: {wl} {field}")
    return out


def softirq_seconds():
    return int(open("/proc/stat").readline().split()[7]) / os.sysconf("SC_CLK_TCK")


def work_dir():
    cache = Path(os.environ.get("IDGATE_BENCH_CACHE", "/var/cache/idgate-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("exchange-*"):  # logs and configs of the previous run only
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="exchange-", dir=cache))
    work.chmod(0o755)  # the client runs as uid 1001 and reads the wrk script here
    return work


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI mode: 1 short repetition, results to a temp dir")
    ap.add_argument("--reps", type=int, help="repetitions (full: 3)")
    ap.add_argument("--out", help="output directory (full: benches/results, quick: a new temp dir)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("exchange.py creates network namespaces: run it as root")
    for need, why in ((IDGATE, "cargo build --release, or set IDGATE_BIN"), (HTTPD, "cargo build --release -p idgate-test-httpd")):
        if not Path(need).exists():
            sys.exit(f"{need} is missing: {why}")
    if not idp.npm_ready():
        sys.exit("tests/idp's packages are not installed: npm ci --prefix tests/idp")
    if not shutil.which("wrk") and subprocess.run(["bash", str(HERE / "setup.sh")]).returncode != 0:
        sys.exit("benches/e2e/setup.sh failed")
    mode = "quick" if args.quick else "full"
    s = dict(MODES[mode], reps=args.reps or MODES[mode]["reps"])
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="idgate-exchange-quick-")) if args.quick else REPO / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)

    t0, snap0, softirq0 = time.time(), cpu_snapshot(), softirq_seconds()
    results = {"mode": mode, "settings": s, "machine": machine_notes(), "reps": []}
    work = work_dir()
    b = Bench(work)
    atexit.register(lambda: (signal.alarm(0), b.down()))  # the deadline never cuts the clean-up short
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _f: sys.exit(128 + signum))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("the run took longer than its deadline")))
    signal.alarm(s["deadline"])
    log(f"work dir {work}")
    b.up()
    results["header_bytes"] = b.match_token_sizes()
    log(f"both paths checked at the server; authorization headers of {results['header_bytes']} bytes")
    for _ in range(5):  # the provider's first exchanges (a cold Node.js) are not counted
        b.cold("exchange")
    script = str(write_wrk_script(work))
    for i in range(s["reps"]):
        load = float(open("/proc/loadavg").read().split()[0])
        results["machine"]["loadavg_max"] = max(results["machine"].get("loadavg_max", 0), load)
        log(f"rep {i + 1}/{s['reps']} (load average {load:.2f})")
        try:
            results["reps"].append({"rep": i, **rep(b, s, script, i)})
        except Exception as e:  # noqa: BLE001 - recorded; the report lists what is missing
            log(f"  rep {i + 1} failed: {e}")
            results["reps"].append({"rep": i, "error": str(e)[:400]})
    signal.alarm(0)
    b.down()
    wall, snap1 = time.time() - t0, cpu_snapshot()
    results["machine"]["seconds"] = round(wall)
    results["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    # CPU the machine spent on anything but this run's processes (as reach.py reports it), less
    # softirq time, which no process is charged and which here is mostly this run's own traffic
    # through the namespaces' veths (reported beside it).
    softirq = softirq_seconds() - softirq0
    results["machine"]["softirq_pct"] = round(100 * softirq / (wall * os.cpu_count()), 1)
    busy = (snap1[0] - snap0[0]) - (snap1[2] - snap0[2]) - softirq
    results["machine"]["other_cpu_pct"] = round(100 * max(0.0, busy) / (wall * os.cpu_count()), 1)
    (out / "exchange.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    md = markdown(results)
    (out / "exchange.md").write_text(md)
    print(md, flush=True)
    log(f"wrote {out / 'exchange.md'} and exchange.json in {results['machine']['seconds']} s")
    problems = missing(results)
    if problems:
        print("some figures are missing:\n  " + "\n  ".join(problems), file=sys.stderr)
    print(f"exchange-bench: {0 if problems else 1} passed, {1 if problems else 0} failed")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
