"""Network-namespace test hosts for idgate: a switch namespace with a bridge, and hosts
attached to it by veth pairs. Everything lives in namespaces this module creates; nothing
touches the root namespace's network."""
import ctypes
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from cgroups import HostCgroup
from eventually import eventually

REPO = Path(__file__).resolve().parents[2]
IDGATE = Path(os.environ.get("IDGATE_BIN", REPO / "target" / "release" / "idgate"))
WORKLOADS = Path(__file__).resolve().parent / "workloads"
SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000
WORKLOAD_PYTHON = "/usr/bin/python3"  # world-executable, unlike a per-user pyenv


def sh(*args, check=True, **kw):
    return subprocess.run(list(map(str, args)), check=check, capture_output=True, text=True, **kw)


class Topology:
    """A bridge in namespace `<prefix>sw`; hosts get 10.77.0.<n>/24 on eth0."""

    def __init__(self, prefix=None):
        # Another prefix lets a second test run share the machine (its namespaces are its own).
        self.prefix = prefix or os.environ.get("IDGATE_NETNS_PREFIX", "idg")
        self.switch = f"{self.prefix}sw"
        self.hosts = {}
        self.cleanup()
        sh("ip", "netns", "add", self.switch)
        self.ns_exec(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        self.ns_exec(self.switch, "ip", "link", "set", "br0", "up")

    def ns_exec(self, ns, *cmd, check=True):
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def add_host(self, name, n):
        ns = f"{self.prefix}{name}"
        sh("ip", "netns", "add", ns)
        port = f"{self.prefix}{name}p"
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
        self.ns_exec(self.switch, "ip", "link", "set", port, "master", "br0", "up")
        self.ns_exec(ns, "ip", "addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0")
        self.ns_exec(ns, "ip", "link", "set", "eth0", "up")
        self.ns_exec(ns, "ip", "link", "set", "lo", "up")
        host = Host(self, name, ns, f"{SUBNET}.{n}")
        self.hosts[name] = host
        return host

    def cleanup(self):
        for h in list(self.hosts.values()):
            h.stop_all()
            h.cgroup.remove()
        out = sh("ip", "netns", "list", check=False).stdout
        for line in out.splitlines():
            ns = line.split()[0] if line.split() else ""
            if ns.startswith(self.prefix):
                # Kill anything still running inside before deleting the namespace.
                pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                sh("ip", "netns", "del", ns, check=False)
        self.hosts = {}


class Host:
    def __init__(self, topo, name, ns, ip):
        self.topo, self.name, self.ns, self.ip = topo, name, ns, ip
        self.cgroup = HostCgroup(ns)
        self.procs = []
        self.idgate = None

    def cmd(self, *args, uid=None):
        # nsenter rather than `ip netns exec`, which mounts a sysfs of its own over /sys and so
        # hides the cgroup hierarchy the host's idgate attaches its guard to.
        prefix = [*self.cgroup.join_prefix(), "nsenter", f"--net=/run/netns/{self.ns}", *self.cgroup.scope_prefix()]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return prefix + [str(a) for a in args]

    def run(self, *args, uid=None, timeout=60, check=True, input=None):
        return subprocess.run(self.cmd(*args, uid=uid), capture_output=True, timeout=timeout, check=check, input=input)

    def popen(self, *args, uid=None, **kw):
        p = subprocess.Popen(self.cmd(*args, uid=uid), **kw)
        self.procs.append(p)
        return p

    def python(self, code, *args, uid=None, timeout=60, check=True, input=None):
        """Runs a program given as text (the demo's)."""
        return self.run(WORKLOAD_PYTHON, "-c", code, *args, uid=uid, timeout=timeout, check=check, input=input)

    def workload(self, name, *args, uid=None, timeout=60, check=True, input=None):
        """Runs the workload program workloads/<name>.py to its end."""
        return self.run(WORKLOAD_PYTHON, WORKLOADS / f"{name}.py", *args, uid=uid, timeout=timeout, check=check, input=input)

    def start_workload(self, name, *args, uid=None, **kw):
        """Starts the workload program workloads/<name>.py (stopped with the host)."""
        return self.popen(WORKLOAD_PYTHON, WORKLOADS / f"{name}.py", *args, uid=uid, **kw)

    def wait_listening(self, port, address=""):
        """Waits (5 s at most) until something listens on `port` (at `address`, if given)."""
        self.run("sh", "-c", f"for i in $(seq 100); do ss -ltn | grep -q '{address}:{port} ' && exit 0; sleep 0.05; done; exit 1")

    def start_idgate(self, config_text, workdir, name="idgate", wait=True, env=None):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / f"{self.name}-{name}.toml"
        cfg.write_text(config_text)
        log = workdir / f"{self.name}-{name}.log"
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), NO_COLOR="1", **(env or {}))
        logf = open(log, "w")
        p = subprocess.Popen(self.cmd(IDGATE, "run", "-c", cfg), stdout=logf, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        self.idgate = Idgate(self, p, log, cfg)
        if wait:
            self.idgate.wait_ready()
        return self.idgate

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs = []

    def socket(self, family, type_, proto=0):
        """A socket created inside this host's namespace (from a helper thread)."""
        return in_netns(self.ns, lambda: __import__("socket").socket(family, type_, proto))


class Idgate:
    def __init__(self, host, proc, log, config):
        self.host, self.proc, self.log, self.config = host, proc, log, config

    def wait_ready(self, timeout=20):
        def ready():
            text = self.log.read_text()
            if self.proc.poll() is not None and "idgate ready" not in text:
                raise RuntimeError(f"idgate on {self.host.name} exited {self.proc.returncode}:\n{text}")
            return "idgate ready" in text

        eventually(ready, lambda: f"idgate on {self.host.name} ready:\n{self.log.read_text()}", timeout)

    def status(self):
        """The status document, read from the control socket with `idgate status --json`."""
        out = self.host.run(IDGATE, "status", "--json", "-c", self.config).stdout
        return json.loads(out)

    def decisions(self, **match):
        return [d for d in self.status()["decisions"] if all(d.get(k) == v for k, v in match.items())]

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def terminate(self):
        self.proc.terminate()
        return self.proc.wait(timeout=15)


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns, fn):
    """Runs fn() on a thread that has joined namespace `ns`; returns its result.
    Sockets keep the namespace they were created in."""
    result = {}

    def target():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            result["value"] = fn()
        except BaseException as e:  # re-raised on the caller's thread
            result["error"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
