"""The reach benchmark's hosts, built with the e2e tests' helpers: host A with a container
network and a LAN behind it (a gateway), host B with servers on it and a LAN of servers behind
it, idgate on both, and the paths a client takes through them.

    container c1 10.88.0.2 -- ctr0 [host A 10.77.0.1] lan0 -- l1 192.168.10.5 (LAN machine)
                                      | switch
    nginx 10.77.0.2 :8080 :8081 -- [host B 10.77.0.2] srv0 -- s1 192.168.20.5 (nginx :8080 :8081,
                                                                iperf3 :5202 :5201)

Port 8080 (and 5202) is intercepted, 8081 (and 5201) is not: the floors reach the same server
through the same namespaces with both idgates running, on a port no rule covers."""
import os
import signal
import subprocess
from pathlib import Path

from cgroups import cgroup2_root
from containers import NETWORK as CTR_NETWORK
from containers import ContainerNet
from eventually import eventually
from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE, Topology, sh
from peers import Proc, wait_listening
from sites import NETWORK as LAN_NETWORK
from sites import Lan

HTTP_IDGATE, HTTP_PLAIN = 8080, 8081
BULK_IDGATE, BULK_PLAIN = 5202, 5201
SERVER_SITE = "192.168.20"
CTR_ID = "c7" * 32
CTR_SPIFFE = f"spiffe://{TRUST_DOMAIN}/tools/reach-ctr"
# A second container whose namespace has a TCP socket hash table of its own (see ContainerNet.add).
HASH_CTR_ID = "c8" * 32
HASH_CTR_SPIFFE = f"spiffe://{TRUST_DOMAIN}/tools/reach-ctr-own-hash"
OWN_EHASH = 1024
CHILD_EHASH = Path("/proc/sys/net/ipv4/tcp_child_ehash_entries")  # Linux 6.1 and later
SITE_SPIFFE = f"spiffe://{TRUST_DOMAIN}/tools/reach-site"
HOST_UID = 1001  # alice in tests/e2e/hosts.py
CTR_UID = 1005  # no host rule selects it: only the container rule can
LAN_UID = 1006  # no rule at all: the LAN machine is another machine, its processes unknown to A
MAIN_PROCESS_SECONDS = 3600

A_EXTRA = f"""
[containers]
networks = ["{CTR_NETWORK}"]

[[workload]]
spiffe_id = "{CTR_SPIFFE}"
container_id = "{CTR_ID}"

[[workload]]
spiffe_id = "{HASH_CTR_SPIFFE}"
container_id = "{HASH_CTR_ID}"

[[workload]]
spiffe_id = "{SITE_SPIFFE}"
interface = "lan0"
sources = ["{LAN_NETWORK}"]

[[outbound]]
cidrs = ["{SERVER_SITE}.0/24"]
ports = [{HTTP_IDGATE}, {BULK_IDGATE}]
peer = "10.77.0.2:15008"
"""

B_EXTRA = f"""
[[inbound]]
ports = [{HTTP_IDGATE}, {BULK_IDGATE}]
allow = ["{SITE_SPIFFE}"]
backends = ["{SERVER_SITE}.5/32"]
"""

NGINX = """
worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/{name}-tmp/body;
  proxy_temp_path {work}/{name}-tmp/proxy;
  fastcgi_temp_path {work}/{name}-tmp/fastcgi;
  uwsgi_temp_path {work}/{name}-tmp/uwsgi;
  scgi_temp_path {work}/{name}-tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  tcp_nodelay on;
  server {{
    listen {ip}:{p1} backlog=4096;
    listen {ip}:{p2} backlog=4096;
    location / {{ default_type text/plain; return 200 "hello from host B\\n"; }}
  }}
}}
"""


class ClientPath:
    """Where one kind of client runs and what it connects to."""

    def __init__(self, key, label, runner, http, bulk=None, check=None):
        self.key, self.label, self.runner = key, label, runner
        self.http, self.bulk, self.check = http, bulk, check

    def run(self, *args, timeout):
        """Runs a client program on this path; text output."""
        return self.runner([str(a) for a in args], timeout)


def host_runner(host, uid):
    def run(args, timeout):
        return subprocess.run(host.cmd(*args, uid=uid), capture_output=True, text=True, timeout=timeout)
    return run


def container_runner(ctr, uid):
    def run(args, timeout):
        return ctr.run(*args, uid=uid, timeout=timeout, check=False)
    return run


class Hosts:
    def __init__(self, prefix, work: Path):
        self.prefix, self.work = prefix, work
        self.servers, self.gates = [], []
        self.topo, self.ctrs = None, []

    def up(self):
        # What a run killed before its clean-up is cleaned up here (the topology's own clean-up
        # cannot remove host A's cgroup while the container's, under it, still has processes).
        root = cgroup2_root()
        if root is not None:
            for cid in (CTR_ID, HASH_CTR_ID):
                kill_cgroup(root / "idgate-test" / f"{self.prefix}a" / f"docker-{cid}.scope")
        self.topo = Topology(self.prefix)
        self.a = self.topo.add_host("a", 1)
        self.b = self.topo.add_host("b", 2)
        net = ContainerNet(self.a)
        self.ctrs.append(net.add("c1", 2, CTR_ID))
        self.hash_ctr = None
        if CHILD_EHASH.exists():
            self.hash_ctr = net.add("c2", 3, HASH_CTR_ID, ehash=OWN_EHASH)
            self.ctrs.append(self.hash_ctr)
        self.ctr = self.ctrs[0]
        for ctr in self.ctrs:
            # The container's main process, as every container has one for its life (idgate
            # reads the container's TCP table through a process in it); bounded in time.
            ctr.run("/bin/sh", "-c", f"sleep {MAIN_PROCESS_SECONDS} >/dev/null 2>&1 &", uid=0)
        self.lan = Lan(self.a).add("l1", 5)
        self.site = Lan(self.b, bridge="srv0", subnet=SERVER_SITE, subnet6="fd20::").add("s1", 5)
        # Plain routing between the two LANs, for the direct-routing floor (and A's own connects).
        self.topo.ns_exec(self.a.ns, "ip", "route", "add", f"{SERVER_SITE}.0/24", "via", self.b.ip)
        self.topo.ns_exec(self.b.ns, "ip", "route", "add", LAN_NETWORK, "via", self.a.ip)
        self.ca = self.work / "ca"
        sh(IDGATE, "ca-init", "--dir", self.ca, "--trust-domain", TRUST_DOMAIN)
        self.start_servers()

    def start_servers(self):
        for host in (self.b, self.site):
            name = f"nginx-{host.name}"
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (self.work / f"{name}-tmp" / sub).mkdir(parents=True, exist_ok=True)
            conf = self.work / f"{name}.conf"
            conf.write_text(NGINX.format(work=self.work, name=name, ip=host.ip, p1=HTTP_IDGATE, p2=HTTP_PLAIN))
            self.servers.append(Proc(host, ["nginx", "-c", conf, "-g", "daemon off;"], self.work / f"{name}.log"))
        for port in (BULK_PLAIN, BULK_IDGATE):
            self.servers.append(Proc(self.site, ["iperf3", "-s", "-p", port], self.work / f"iperf3-{port}.log"))
        wait_listening(self.b, [HTTP_IDGATE, HTTP_PLAIN], self.servers)
        wait_listening(self.site, [HTTP_IDGATE, HTTP_PLAIN, BULK_IDGATE, BULK_PLAIN], self.servers)

    def start_idgates(self):
        """Both idgates afresh (each repetition measures a pair that just started)."""
        b_conf = host_config("host-b", self.work / "state-b", self.ca, extra=B_EXTRA)
        svid = '[svid]\nttl = "1h"\n'
        assert b_conf.count(svid) == 1, "tests/e2e/hosts.py's [svid] changed"
        # B's certificate names the addresses callers dial through it.
        b_conf = b_conf.replace(svid, f'{svid}addresses = ["{self.b.ip}", "{SERVER_SITE}.5"]\n')
        a_conf = host_config("host-a", self.work / "state-a", self.ca, extra=A_EXTRA)
        # Hosts are namespaces of one machine: process events answer only in the initial one.
        env = {"IDGATE_PROC_EVENTS_NETNS": f"/proc/{os.getpid()}/ns/net"}
        for host, conf in ((self.b, b_conf), (self.a, a_conf)):
            (self.work / f"state-{host.name}" / "peer-history.json").unlink(missing_ok=True)
            self.gates.append(host.start_idgate(conf, self.work, name="reach", env=env))
        self.gate_a = self.gates[-1]

    def stop_idgates(self):
        for g in self.gates:
            if g.proc.poll() is None:
                try:
                    g.terminate()
                except subprocess.TimeoutExpired:
                    g.kill()
            if g.proc in g.host.procs:
                g.host.procs.remove(g.proc)
        self.gates = []

    def container_paths(self):
        b = self.b.ip
        return [
            ClientPath("host", "host process via idgate", host_runner(self.a, HOST_UID), (b, HTTP_IDGATE),
                       check=lambda: self.expect_decision("alice", f"{b}:{HTTP_IDGATE}", "")),
            ClientPath("ctr", "container via idgate", container_runner(self.ctr, CTR_UID), (b, HTTP_IDGATE),
                       check=lambda: self.expect_decision(CTR_SPIFFE, f"{b}:{HTTP_IDGATE}", f"in container {CTR_ID[:12]}")),
            ClientPath("floor", "container direct (not intercepted)", container_runner(self.ctr, CTR_UID), (b, HTTP_PLAIN),
                       check=lambda: self.expect_no_decision(f"{b}:{HTTP_PLAIN}")),
        ] + ([ClientPath("ctr_hash", "container with a TCP hash of its own, via idgate", container_runner(self.hash_ctr, CTR_UID),
                         (b, HTTP_IDGATE),
                         check=lambda: self.expect_decision(HASH_CTR_SPIFFE, f"{b}:{HTTP_IDGATE}", f"in container {HASH_CTR_ID[:12]}"))]
             if self.hash_ctr else [])

    def routed_paths(self):
        s = self.site.ip
        run = host_runner(self.lan, LAN_UID)
        return [
            ClientPath("direct", "direct routing", run, (s, HTTP_PLAIN), (s, BULK_PLAIN),
                       check=lambda: self.expect_no_decision(f"{s}:{HTTP_PLAIN}")),
            ClientPath("gateway", "gateway pair", run, (s, HTTP_IDGATE), (s, BULK_IDGATE),
                       check=lambda: self.expect_decision(SITE_SPIFFE, f"{s}:{HTTP_IDGATE}", f"routed from {self.lan.ip} on lan0")),
        ]

    def expect_decision(self, source, destination, process):
        """Host A's idgate tunnelled a flow from `source` (or a SPIFFE ID ending in it) to
        `destination`, opened by a process whose description has `process` in it."""
        got = [d for d in self.gate_a.status()["decisions"]
               if d.get("direction") == "outbound" and d.get("destination") == destination and d.get("verdict") == "tunneled"
               and (d.get("source_id") or "").endswith(source) and process in (d.get("process") or "")]
        if not got:
            raise RuntimeError(f"host A's idgate shows no tunnelled flow from {source} to {destination}")

    def expect_no_decision(self, destination):
        if [d for d in self.gate_a.status()["decisions"] if d.get("destination") == destination]:
            raise RuntimeError(f"host A's idgate saw a flow to {destination}, which should not be intercepted")

    def down(self):
        self.stop_idgates()
        for p in self.servers:
            p.stop()
        self.servers = []
        for ctr in self.ctrs:
            kill_cgroup(ctr.cgroup)  # under host A's, which the topology's clean-up removes
        self.ctrs = []
        if self.topo is not None:
            self.topo.cleanup()
            self.topo = None


def kill_cgroup(path):
    """Kills what runs in cgroup `path` and removes it (if it exists)."""
    if not path.exists():
        return
    if (path / "cgroup.kill").exists():
        (path / "cgroup.kill").write_text("1")
    else:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    eventually(lambda: not path.exists() or _rmdir(path), f"cgroup {path} removed")


def _rmdir(path):
    try:
        path.rmdir()
        return True
    except OSError:
        return False
