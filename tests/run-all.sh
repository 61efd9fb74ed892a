#!/usr/bin/env bash
# The whole test suite: the lint gates (tests/lint.sh), unit tests, the two-host namespace tests (root), the packages under
# systemd-nspawn (tests/nspawn), and the kernel-module
# suites in qemu VMs (tests/vm/ci.sh: stock and debug kernels, the support matrix, DKMS). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
step() { echo "tests: [$(( $(date +%s) - START ))s] $*" >&2; }
bash tests/setup.sh
step "lint gates: shellcheck, ruff, rustfmt, checkpatch on kmod/ (seconds), clippy (about 2 minutes cold)"
bash tests/lint.sh
step "building idgate (release, fat LTO: about 5 minutes cold, seconds warm)"
cargo build --release --locked
step "unit tests, and every bench once in test mode (about 4 minutes cold)"
cargo test --release --locked --all-targets
step "fuzz targets (sanitizer build: about 8 minutes cold, 3 warm; then 45 s each)"
bash tests/fuzz.sh
step "two-host namespace tests (about 3 minutes)"
python3 -m pytest -q tests/e2e
step "packages under a real systemd: two Debian 12 machines under systemd-nspawn -b (about 3 minutes warm; the first run makes their root with debootstrap, a few minutes more)"
bash tests/nspawn/run.sh
step "quick benchmark against the peer proxies (a few minutes; the first run installs them)"
python3 benches/e2e/run.py --quick
step "quick reach benchmark: a container's flows against a host process's, a LAN machine through a gateway pair against direct routing (under a minute)"
python3 benches/e2e/reach.py --quick
step "quick credential exchange benchmark: an exchanged token against a file token, and a cold cache's first request (about 15 s)"
python3 benches/e2e/exchange.py --quick
step "quick scale benchmark: 10 against 10,000 destinations, 100 identities, 10 peers, 5,000 open flows (about 2 minutes)"
python3 benches/e2e/run.py --scale --quick --no-setup
if [ -x tests/vm/run.sh ] && [ "${IDGATE_SKIP_VM:-0}" != 1 ]; then
    step "kernel-module suites in qemu VMs (tests/vm/ci.sh; about 25 minutes warm, longer cold: kernel builds)"
    cargo build --release --locked -p idgate-benches --bin pingpong
    # Stock kernel, debug kernel with churn, the support matrix, other kernel lines, DKMS.
    IDGATE_BIN="$PWD/target/release/idgate" IDGATE_EXTRA_BINS="$PWD/target/release/pingpong" bash tests/vm/ci.sh
fi
step "all tests passed"
