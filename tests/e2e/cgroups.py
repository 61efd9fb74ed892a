"""A cgroup (v2) per test host: each host's processes run in it, and its idgate attaches the
cgroup egress guard there, never to the machine's root cgroup (which a real host uses)."""
import os
from pathlib import Path


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
        self.path = root / "idgate-test" / ns
        self.remove()
        self.path.mkdir(parents=True)

    def join_prefix(self):
        """A command prefix that moves the command into this cgroup before it runs."""
        return ["/bin/sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh"]

    def remove(self):
        if not self.path.exists():
            return
        kill = self.path / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in (self.path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                import time

                time.sleep(0.05)
        raise RuntimeError(f"could not remove cgroup {self.path}")
