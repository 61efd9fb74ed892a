"""Debian 12 machines booted with systemd as their init under `systemd-nspawn -b`, each in a
network namespace of its own; two joined by a veth pair make two hosts. Each boots from an
overlay over the cached root file system (tests/nspawn/rootfs.sh), so the cache never
changes and a machine's own changes survive its reboots."""
import json
import os
import subprocess
import time
from pathlib import Path

START = time.time()
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def say(msg):
    print(f"nspawn: [{time.time() - START:5.1f}s] {msg}", flush=True)


def sh(*args, check=True, **kw):
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True, **kw)


class Network:
    """Namespaces `<prefix>a` and `<prefix>b`, joined by a veth pair: 10.78.0.1 and 10.78.0.2."""

    SUBNET = "10.78.0"

    def __init__(self, prefix):
        self.names = {"a": f"{prefix}a", "b": f"{prefix}b"}
        self.delete()
        for ns in self.names.values():
            sh("ip", "netns", "add", ns)
        a, b = self.names["a"], self.names["b"]
        sh("ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b)
        for i, ns in enumerate((a, b), start=1):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.SUBNET}.{i}/24", "dev", "eth0")

    def delete(self):
        for ns in self.names.values():
            sh("ip", "netns", "del", ns, check=False)


class Machine:
    def __init__(self, name, netns, lower, workdir, ip):
        self.name, self.netns, self.ip = name, netns, ip
        self.dir = Path(workdir) / name
        self.root = self.dir / "root"
        for d in ("upper", "work", "root"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}", self.root)
        # Each machine its own host name, as on a fleet (debootstrap copied the build host's).
        (self.root / "etc/hostname").write_text(f"{name}\n")
        self.proc = None
        self.leader = None
        self.boots = 0

    # --- lifecycle

    def boot(self, wait=True):
        self.boots += 1
        log = open(self.dir / f"nspawn-{self.boots}.log", "w")
        self.proc = subprocess.Popen(
            # --private-network as well: only then is /proc/sys/net writable inside (the sysctl).
            ["systemd-nspawn", "-b", "-D", str(self.root), f"--machine=pk-{self.name}", f"--network-namespace-path=/run/netns/{self.netns}",
             "--private-network", "--register=no", "--keep-unit", "--console=passive", "--capability=CAP_NET_ADMIN"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_booted()

    def wait_booted(self, timeout=90):
        deadline = time.time() + timeout
        self.leader = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: systemd-nspawn exited {self.proc.returncode}: {self.nspawn_log()}")
            self.leader = self.leader or self.find_leader()
            if self.leader:
                state = self.run("systemctl is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    if state == "degraded":
                        say(f"{self.name}: booted degraded: {self.run('systemctl --failed --no-legend', check=False).stdout.strip()}")
                    return
            time.sleep(0.2)
        jobs = "no init found"
        if self.leader:
            r = self.run("systemctl is-system-running; systemctl list-jobs --no-pager", check=False)
            jobs = f"init {self.leader}: {r.stdout} {r.stderr}"
        raise TimeoutError(f"{self.name} did not finish booting: {jobs}\n{self.nspawn_log()}")

    def find_leader(self):
        """The container's init: the child of this boot's systemd-nspawn that is pid 1 in its
        own pid namespace."""
        for pid in sh("ip", "netns", "pids", self.netns, check=False).stdout.split():
            try:
                status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
            except (FileNotFoundError, ProcessLookupError):
                continue
            nspid = status.get("NSpid", "").split()
            if len(nspid) > 1 and nspid[-1] == "1" and status.get("PPid", "").strip() == str(self.proc.pid):
                return int(pid)
        return None

    def nspawn_log(self):
        return (self.dir / f"nspawn-{self.boots}.log").read_text()[-2000:]

    def reboot(self):
        """`systemctl reboot` inside: systemd-nspawn exits (133), and the machine boots again."""
        self.run("systemctl reboot", check=False)
        code = self.proc.wait(timeout=60)
        say(f"{self.name}: rebooted (systemd-nspawn exited {code}), booting again")
        self.boot()

    def poweroff(self):
        if self.proc and self.proc.poll() is None:
            self.run("systemctl poweroff", check=False)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self):
        self.poweroff()
        sh("umount", self.root, check=False)

    # --- inside

    def run(self, command, check=True, timeout=120, input=None):
        """A shell command inside the machine, as root, in all its namespaces."""
        env = {"PATH": PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", command],
                           capture_output=True, text=True, timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name}: `{command}` exited {r.returncode}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
        return r

    def out(self, command, **kw):
        return self.run(command, **kw).stdout.strip()

    def popen(self, command, **kw):
        env = ["PATH=" + PATH, "LANG=C.UTF-8"]
        return subprocess.Popen(["nsenter", "-t", str(self.leader), "-a", "/usr/bin/env", "-i", *env, "/bin/sh", "-c", command], text=True, **kw)

    def show(self, unit, *props):
        """`systemctl show` properties of a unit, as a dict."""
        text = self.out(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def journal(self, unit, *extra):
        return self.out(f"journalctl --no-pager -b -u {unit} " + " ".join(extra), check=False)

    def put(self, path, text, mode=0o644):
        """Writes a file into the machine's root from outside."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, mode)

    def status(self):
        return json.loads(self.out("idgate status --json"))
