#!/usr/bin/env bash
# Installs what building, the demo and the tests need on Debian/Ubuntu (idempotent; run as root).
set -euo pipefail
need_apt=()
# strace: the unit sandbox test traces idgate; man-db: the packaging test reads a man page;
# the shellcheck of tests/lint.sh.
for pkg in build-essential pkg-config nftables iproute2 curl util-linux python3 python3-pip rpm strace man-db systemd shellcheck; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# The package tests (tests/nspawn): building with debhelper and dh-dkms, linting, and booting
# Debian under systemd-nspawn (systemd-container; debootstrap makes its root). Without their
# recommendations (dkms would want kernel headers). systemd-container requires the systemd
# of its own version: apt may upgrade systemd to it (never removes a package).
# The container tests (tests/e2e/test_containers.py): Podman with runc (crun refuses a
# hybrid cgroup hierarchy) and a static busybox, the whole root file system of the image the
# test builds (there is no image registry here).
need_norec=()
for pkg in debhelper dh-dkms lintian rpmlint systemd-container debootstrap podman runc busybox-static; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_norec+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ] || [ ${#need_norec[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "setup: installing ${need_apt[*]} ${need_norec[*]} with apt (a minute or two)" >&2
    apt-get update -qq
    [ ${#need_apt[@]} -eq 0 ] || apt-get install -y -qq "${need_apt[@]}" >/dev/null
    [ ${#need_norec[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${need_norec[@]}" >/dev/null
fi
# idgate's cgroup guard pins its programs in the BPF filesystem; systemd mounts it at boot,
# a machine booted without systemd (a container, CI) may not have it.
if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
    echo "setup: mounting the BPF filesystem at /sys/fs/bpf (systemd does so at boot; this machine has not)" >&2
    mount -t bpf bpf /sys/fs/bpf
fi
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install a Rust toolchain (rustup, stable >= 1.85) first" >&2
    exit 1
fi
# The Rust lint gates (tests/lint.sh) need rustfmt and clippy.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || { echo "setup: cargo fmt and cargo clippy are missing, and rustup to add them" >&2; exit 1; }
    echo "setup: adding rustfmt and clippy to the Rust toolchain (rustup)" >&2
    rustup component add rustfmt clippy
fi
# The tests' Python packages: pytest, pytest-timeout, cryptography, ruff, moto, boto3 (pip leaves
# alone what already satisfies tests/requirements.txt).
python3 -c "import pytest, pytest_timeout, cryptography, ruff, moto, boto3, flask" 2>/dev/null ||
    echo "setup: installing pytest, pytest-timeout, cryptography, ruff, moto and boto3 with pip (tests/requirements.txt)" >&2
python3 -m pip install -q -r "$(dirname "$0")/requirements.txt" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages -r "$(dirname "$0")/requirements.txt"
# The credential exchange tests (tests/e2e/test_credentials.py): an OpenID provider and a
# resource server, Node.js packages pinned in tests/idp/package-lock.json.
if ! [ -f "$(dirname "$0")/idp/node_modules/oidc-provider/package.json" ]; then
    if ! command -v npm >/dev/null; then
        echo "setup: installing Node.js and npm with apt (the OpenID provider of the credential tests)" >&2
        apt-get install -y -qq nodejs npm >/dev/null
    fi
    echo "setup: installing oidc-provider and jose with npm (tests/idp)" >&2
    npm ci --prefix "$(dirname "$0")/idp" --no-audit --no-fund --loglevel=error >/dev/null
fi
