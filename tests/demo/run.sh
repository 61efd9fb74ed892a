#!/usr/bin/env bash
# The demo: builds idgate, makes two network-namespace hosts, shows mTLS through idgate.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/setup.sh
echo "demo: building idgate (release with whole-program optimisation: about 4 minutes on 2 cores the first time, seconds after)" >&2
cargo build --release --quiet
exec python3 tests/demo/demo.py
