#!/usr/bin/env bash
# tests/vm/arm64.sh TARGET - boot an arm64 target of the support matrix under
# qemu-system-aarch64 (TCG, no KVM) with the module the matrix cross-compiled
# for it, and run the module suite (the proxy is not cross-built: its tests
# are left out). Slow: a small flood.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${1:-$(python3 "$ROOT/kmod/matrix/pick.py" 6.1 arm64)}
exec env "IDGATE_VM_KERNEL=target:$TARGET" IDGATE_VM_HOOKS=0 "IDGATE_VM_FLOOD=${IDGATE_VM_FLOOD:-2x300}" \
	"IDGATE_VM_TIMEOUT=${IDGATE_VM_TIMEOUT:-1800}" "IDGATE_VM_QUIET=${IDGATE_VM_QUIET:-1}" bash "$HERE/run.sh"
