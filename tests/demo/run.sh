#!/usr/bin/env bash
# The demo: builds idgate, makes two network-namespace hosts, shows mTLS through idgate.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/setup.sh
cargo build --release --quiet
exec python3 tests/demo/demo.py
