#!/usr/bin/env bash
# The second demo: a container on an idgate host and two sites joined by their gateways
# (network namespaces: host A with a container bridge and a LAN, host B with a server LAN).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/setup.sh
echo "demo: building idgate (release with whole-program optimisation: about 4 minutes on 2 cores the first time, seconds after)" >&2
cargo build --release --quiet
exec python3 tests/demo/gateway.py
