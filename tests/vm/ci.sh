#!/usr/bin/env bash
# tests/vm/ci.sh - the kernel part of tests/run-all.sh (CI): the stock kernel
# with the module and proxy tests, the debug kernel with churn, the changed
# part of the support matrix, the other kernel lines booted, and the DKMS
# install. IDGATE_VM_FULL=1 (or tests/vm/full.sh) adds the KCSAN kernel, the
# planted faults, every matrix target and the arm64 boot.
# Passes IDGATE_BIN / IDGATE_EXTRA_BINS through to run.sh.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=vm-ci
. "$HERE/lib/common.sh"
FULL=${IDGATE_VM_FULL:-0}
failed=()
T_ALL=$(now)
times=()

step() { # name command...
	local name=$1 t0 rc
	shift
	log "=== $name"
	t0=$(now)
	"$@"
	rc=$?
	times+=("$name: $(since "$t0")s (exit $rc)")
	[ $rc = 0 ] || failed+=("$name")
}

quick_boot() { # target id
	IDGATE_VM_KERNEL=target:$1 IDGATE_VM_HOOKS=0 IDGATE_VM_FLOOD=${IDGATE_VM_BOOT_FLOOD:-4x1000} IDGATE_VM_QUIET=1 \
		bash "$HERE/run.sh"
}

step "stock 6.1: module and proxy tests" bash "$HERE/run.sh"
step "debug kernel (KASAN, KFENCE, lockdep, kmemleak): churn" \
	env IDGATE_VM_KERNEL=debug IDGATE_VM_QUIET=1 bash "$HERE/run.sh"
if [ "$FULL" = 1 ]; then
	step "support matrix: every target" bash "$ROOT/kmod/matrix/build.sh"
else
	step "support matrix: new and changed targets" bash "$ROOT/kmod/matrix/build.sh"
fi
step "boot 6.12 ($(python3 "$ROOT/kmod/matrix/pick.py" 6.12 amd64 trixie))" quick_boot "$(python3 "$ROOT/kmod/matrix/pick.py" 6.12 amd64 trixie)"
step "boot 6.1 rt ($(python3 "$ROOT/kmod/matrix/pick.py" 6.1 rt-amd64))" quick_boot "$(python3 "$ROOT/kmod/matrix/pick.py" 6.1 rt-amd64)"
step "dkms install into a chroot" bash "$HERE/dkms.sh"
if [ "$FULL" = 1 ]; then
	step "KCSAN kernel: churn" env IDGATE_VM_KERNEL=kcsan IDGATE_VM_QUIET=1 bash "$HERE/run.sh"
	step "planted faults" bash "$HERE/faults.sh"
	step "boot arm64 ($(python3 "$ROOT/kmod/matrix/pick.py" 6.1 arm64))" bash "$HERE/arm64.sh" "$(python3 "$ROOT/kmod/matrix/pick.py" 6.1 arm64)"
fi
log "step times:"
for t in "${times[@]}"; do log "  $t"; done
log "kernel tests took $(since "$T_ALL")s"
if [ ${#failed[@]} -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "all kernel steps passed"
