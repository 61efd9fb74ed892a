#!/usr/bin/env bash
# The packages under a real systemd (tests/nspawn/test_packages.py): builds the .deb and .rpm
# packages (two versions), boots two Debian 12 machines with systemd-nspawn -b, and runs what
# an operator does with them. Needs systemd-container, debootstrap, debhelper, dh-dkms,
# lintian, rpm and rpmlint (tests/setup.sh installs them). The root file system is made once
# with debootstrap (a few minutes) and cached in /var/cache/idgate-nspawn; a warm run takes
# about 3 minutes. IDGATE_BIN picks the binary (default target/release/idgate).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m pytest -q -s -p no:cacheprovider tests/nspawn "$@"
