import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("the nspawn tests boot machines with systemd-nspawn: run them as root", returncode=2)
