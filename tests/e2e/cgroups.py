"""A cgroup (v2) per test host. Each host's processes run in it, inside a cgroup namespace of
their own with the cgroup hierarchy mounted afresh, so that the host's cgroup is the root
they see, as a container's is: idgate's guard (`guard_cgroup = "auto"`: the root) attaches
there, and no test can attach anything to the machine's real root cgroup."""
import os
from pathlib import Path

from eventually import eventually


def cgroup2_root():
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup on a unified system,
    /sys/fs/cgroup/unified on a hybrid one; None without one."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4])
    return None


class HostCgroup:
    """`<root>/idgate-test/<namespace>`, created empty; `remove` kills what is left in it."""

    def __init__(self, ns):
        root = cgroup2_root()
        if root is None:
            raise RuntimeError("no cgroup v2 hierarchy is mounted: the e2e hosts need one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
        self.mountpoint = root
        self.path = root / "idgate-test" / ns
        self.remove()
        self.path.mkdir(parents=True)

    def join_prefix(self):
        """A command prefix that moves the command into this cgroup before it runs."""
        return ["/bin/sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh"]

    def scope_prefix(self):
        """A command prefix (after `join_prefix`) that makes this cgroup the root the command sees:
        a new cgroup namespace, and the hierarchy mounted again in a mount namespace of its own."""
        mount = f"umount -l {self.mountpoint} && mount -t cgroup2 none {self.mountpoint}"
        return ["unshare", "--cgroup", "--mount", "/bin/sh", "-c", f'{mount} && exec "$@"', "sh"]

    def remove(self):
        if not self.path.exists():
            return
        # The guard idgate pinned for this cgroup (named by its inode, which a later cgroup may get).
        pins = Path("/sys/fs/bpf/idgate") / str(self.path.stat().st_ino)
        for pin in pins.glob("*"):
            pin.unlink()
        if pins.exists():
            pins.rmdir()
        for child in sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            child.rmdir()
        kill = self.path / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in (self.path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
        eventually(self._rmdir, f"cgroup {self.path} removed (its processes killed)")

    def _rmdir(self):
        try:
            self.path.rmdir()
            return True
        except OSError:
            return False
