#!/usr/bin/env bash
# The whole test suite: unit tests, the two-host namespace tests (root), and the kernel-module
# suites in qemu VMs (tests/vm/ci.sh: stock and debug kernels, the support matrix, DKMS). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo build --release --locked
cargo test --release --locked --all-targets   # benches run once each in test mode
bash tests/fuzz.sh
python3 -m pytest -q tests/e2e
python3 benches/e2e/run.py --quick
if [ -x tests/vm/run.sh ] && [ "${IDGATE_SKIP_VM:-0}" != 1 ]; then
    cargo build --release --locked -p idgate-benches --bin pingpong
    # Stock kernel, debug kernel with churn, the support matrix, other kernel lines, DKMS.
    IDGATE_BIN="$PWD/target/release/idgate" IDGATE_EXTRA_BINS="$PWD/target/release/pingpong" bash tests/vm/ci.sh
fi
