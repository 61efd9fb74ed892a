import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hosts import SERVER_PORT  # noqa: E402
from netns import IDGATE, Topology  # noqa: E402


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("the e2e tests create network namespaces: run them as root", returncode=2)
    if not IDGATE.exists():
        pytest.exit(f"{IDGATE} is missing: cargo build --release first", returncode=2)


class Net:
    """Hosts a (10.77.0.1), b (10.77.0.2, runs the server), c (10.77.0.3), a shared CA."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.topo = Topology()
        self.a = self.topo.add_host("a", 1)
        self.b = self.topo.add_host("b", 2)
        self.c = self.topo.add_host("c", 3)
        self.ca_dir = tmp / "ca"
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(self.ca_dir), "--trust-domain", "demo.idgate"], check=True, capture_output=True)
        self.server_log = tmp / "server.log"
        self.server_log.write_text("")
        os.chmod(tmp, 0o755)
        self.b.start_workload("digest_server", SERVER_PORT, 1 << 20, self.server_log)
        self.b.wait_listening(SERVER_PORT)

    def server_connections(self):
        return [line.split() for line in self.server_log.read_text().splitlines()]


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.topo.cleanup()
