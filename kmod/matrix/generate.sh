#!/usr/bin/env bash
# kmod/matrix/generate.sh - regenerate kmod/matrix/targets.json from
# window.conf and what Debian's archive offers now (apt-cache through a private
# apt configuration under the VM cache; the host's sources are not touched).
# Commit the result: it is the list of kernels idgate claims to support.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=matrix
. "$HERE/../../tests/vm/lib/common.sh"
PAPT_SUITES=$(sed -n 's/^suites=//p' "$HERE/window.conf")
papt_setup
APT_CONFIG=$PAPT_DIR/apt.conf python3 "$HERE/generate.py"
