"""Containers on a test host: a bridge in the host's namespace with containers' network
namespaces behind it on veth pairs, forwarded and masqueraded out of eth0, as Docker's and
Podman's default networks are; and Podman itself, with its own storage under the test's
directory.

    container c1 (10.88.0.2) --veth--+
                                      +-- ctr0 (10.88.0.1) in host A -- eth0 (10.77.0.1) -- switch -- B
    container c2 (10.88.0.3) --veth--+
"""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from netns import WORKLOAD_PYTHON, WORKLOADS, sh

SUBNET = "10.88.0"
NETWORK = f"{SUBNET}.0/24"
SUBNET6 = "fd88::"
NETWORK6 = "fd88::/64"
IMAGE = "localhost/idgate-test-busybox:1"


class ContainerNet:
    """Host `host`'s container bridge; `add` plugs in a container's network namespace."""

    def __init__(self, host):
        self.host = host
        ns = host.ns
        run = host.topo.ns_exec
        run(ns, "ip", "link", "add", "ctr0", "type", "bridge")
        run(ns, "ip", "addr", "add", f"{SUBNET}.1/24", "dev", "ctr0")
        run(ns, "ip", "link", "set", "ctr0", "up")
        run(ns, "ip", "-6", "addr", "add", f"{SUBNET6}1/64", "dev", "ctr0", "nodad")
        run(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.masquerade()

    def masquerade(self):
        """The runtime's own rule: containers' flows leave eth0 with the host's address."""
        self.host.topo.ns_exec(self.host.ns, "nft", "add table ip ctrnat; add chain ip ctrnat post { type nat hook postrouting priority 100; }; "
                               f"add rule ip ctrnat post ip saddr {NETWORK} oifname eth0 masquerade")

    def add(self, name, n, container_id, ehash=None):
        """Container `name` at 10.88.0.<n>: its network namespace, and a cgroup named as
        Docker names a container's (`docker-<id>.scope`) under the host's. With `ehash`, the
        namespace has a TCP socket hash table of that size of its own instead of sharing the
        machine's (made from the host's namespace with net.ipv4.tcp_child_ehash_entries set)."""
        ns = f"{self.host.topo.prefix}{name}"
        if ehash:
            sh("nsenter", f"--net=/run/netns/{self.host.ns}", "sh", "-c", f"sysctl -qw net.ipv4.tcp_child_ehash_entries={ehash} && "
               f"ip netns add {ns} && sysctl -qw net.ipv4.tcp_child_ehash_entries=0")
        else:
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"{name}h", "netns", self.host.ns)
        run = self.host.topo.ns_exec
        run(self.host.ns, "ip", "link", "set", f"{name}h", "master", "ctr0", "up")
        run(ns, "ip", "addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0")
        run(ns, "ip", "link", "set", "eth0", "up")
        run(ns, "ip", "link", "set", "lo", "up")
        run(ns, "ip", "route", "add", "default", "via", f"{SUBNET}.1")
        run(ns, "ip", "-6", "addr", "add", f"{SUBNET6}{n:x}/64", "dev", "eth0", "nodad")
        run(ns, "ip", "-6", "route", "add", "default", "via", f"{SUBNET6}1")
        return NetnsContainer(self.host, ns, f"{SUBNET}.{n}", container_id)


class NetnsContainer:
    """Processes in a container's network namespace and cgroup (without a runtime)."""

    def __init__(self, host, ns, ip, container_id):
        self.host, self.ns, self.ip, self.id = host, ns, ip, container_id
        self.cgroup = host.cgroup.path / f"docker-{container_id}.scope"
        self.cgroup.mkdir()

    def run(self, *args, uid, timeout=60, check=True):
        cmd = ["/bin/sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh",
               "nsenter", f"--net=/run/netns/{self.ns}", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *args]
        return subprocess.run(list(map(str, cmd)), capture_output=True, timeout=timeout, check=check, text=True)

    def start_workload(self, name, *args, uid, **kw):
        """Starts workloads/<name>.py in the container (stopped with its host)."""
        cmd = ["/bin/sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh", "nsenter", f"--net=/run/netns/{self.ns}",
               "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", WORKLOAD_PYTHON, WORKLOADS / f"{name}.py", *args]
        p = subprocess.Popen(list(map(str, cmd)), **kw)
        self.host.procs.append(p)
        return p

    def workload(self, name, *args, uid, timeout=60, check=True):
        return self.run(WORKLOAD_PYTHON, WORKLOADS / f"{name}.py", *args, uid=uid, timeout=timeout, check=check)


class Podman:
    """Podman with storage of its own under `tmp`, its API served on a socket there (`podman
    system service`), and the test image: a static busybox, imported (no registry here).
    runc, since crun refuses a hybrid cgroup hierarchy; a private cgroup namespace, since runc
    cannot mount such a hierarchy into the container otherwise."""

    def __init__(self, tmp):
        self.dir = Path(tmp) / "podman"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "api.sock"
        # Podman refuses a runroot path of more than 50 characters.
        self.runroot = Path(tempfile.mkdtemp(prefix="idgate-podman-"))
        self.base = ["podman", "--root", self.dir / "root", "--runroot", self.runroot, "--cgroup-manager", "cgroupfs",
                     "--runtime", "runc"]
        # Events (idgate follows them) in a file of the test's own, not the host's journal.
        conf = self.dir / "containers.conf"
        conf.write_text(f'[engine]\nevents_logger = "file"\nevents_logfile_path = "{self.dir / "events.log"}"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        rootfs = self.dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        sh("cp", "/bin/busybox", rootfs / "bin/busybox")
        sh("tar", "-C", rootfs, "-cf", self.dir / "image.tar", ".")
        self.podman("import", self.dir / "image.tar", IMAGE)
        self.service = subprocess.Popen([*map(str, self.base), "system", "service", "--time=0", f"unix://{self.socket}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            assert self.service.poll() is None and time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.1)

    def podman(self, *args, check=True, timeout=120):
        p = subprocess.run(list(map(str, [*self.base, *args])), capture_output=True, text=True, timeout=timeout, env=self.env)
        assert p.returncode == 0 or not check, f"podman {' '.join(map(str, args))}: exit {p.returncode}\n{p.stdout}{p.stderr}"
        return p

    def start(self, container, cgroup_parent, name, labels, *cmd):
        """Starts `cmd` in a new container joined to `container`'s network namespace, its
        cgroup under `cgroup_parent` (a path in the cgroup v2 hierarchy); returns its id."""
        label_args = [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
        p = self.podman("run", "-d", "--network", f"ns:/run/netns/{container.ns}", "--cgroupns=private", "--cgroup-parent", cgroup_parent,
                        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--name", name, *label_args, IMAGE, *cmd)
        return p.stdout.strip()

    def run(self, container, cgroup_parent, name, labels, *cmd):
        """`start`, then waits for it to end; returns (its logs, exit code, container id)."""
        cid = self.start(container, cgroup_parent, name, labels, *cmd)
        self.podman("wait", cid, timeout=60)
        return self.podman("logs", cid), int(self.podman("inspect", "-f", "{{.State.ExitCode}}", cid).stdout), cid

    def close(self):
        self.podman("rm", "-a", "-f", check=False)
        self.service.terminate()
        try:
            self.service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.service.kill()
        shutil.rmtree(self.runroot, ignore_errors=True)
        # The overlay driver's private mount of its own directory outlives the service.
        overlay = self.dir / "root" / "overlay"
        if os.path.ismount(overlay):
            subprocess.run(["umount", str(overlay)], check=False)


def podman_available():
    return all(os.access(p, os.X_OK) for p in ("/usr/bin/podman", "/usr/sbin/runc", "/bin/busybox"))
