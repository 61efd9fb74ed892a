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

# The two long runs side by side: each qemu (TCG, one thread) keeps one core busy. What they
# share (tools, kernels, the debug kernel's build, busybox) is prepared first, one at a time.
side_by_side() { # name1 env1 name2 env2: each run's output goes to a log, printed when both ended
	local logs=$CACHE/build t0 pids=() names=("$1" "$3") envs=("$2" "$4") i rc
	for i in 0 1; do
		# shellcheck disable=SC2086 # envs[i]: NAME=value words for env
		step "prepare: ${names[$i]}" env ${envs[$i]} IDGATE_VM_PREPARE_ONLY=1 IDGATE_VM_QUIET=1 bash "$HERE/run.sh"
	done
	log "=== ${names[0]} | ${names[1]}: side by side (about 10 minutes; logs $logs/ci-vm-0.log, $logs/ci-vm-1.log)"
	t0=$(now)
	for i in 0 1; do
		# shellcheck disable=SC2086 # envs[i]: NAME=value words for env
		env ${envs[$i]} bash "$HERE/run.sh" > "$logs/ci-vm-$i.log" 2>&1 &
		pids+=($!)
	done
	for i in 0 1; do
		rc=0
		wait "${pids[$i]}" || rc=$?
		log "=== ${names[$i]} (exit $rc):"
		cat "$logs/ci-vm-$i.log" >&2
		times+=("${names[$i]}: $(since "$t0")s side by side (exit $rc)")
		[ $rc = 0 ] || failed+=("${names[$i]}")
	done
}

side_by_side "stock 6.1: module and proxy tests" "IDGATE_VM_KERNEL=stock" \
	"debug kernel (KASAN, KFENCE, lockdep, kmemleak): churn" "IDGATE_VM_KERNEL=debug IDGATE_VM_QUIET=1"
if [ "$FULL" = 1 ]; then
	step "support matrix: every target" bash "$ROOT/kmod/matrix/build.sh"
else
	# One target per compiler, line and architecture (and the booted rt one); each is rebuilt
	# only when it changed. tests/vm/full.sh builds all of them.
	# shellcheck disable=SC2046 # the target ids pick.py prints, one argument each
	step "support matrix: representative targets, new and changed" bash "$ROOT/kmod/matrix/build.sh" $(python3 "$ROOT/kmod/matrix/pick.py" --representative)
fi
boot_env() { # target id: a module-tests-only boot
	echo "IDGATE_VM_KERNEL=target:$1 IDGATE_VM_HOOKS=0 IDGATE_VM_FLOOD=${IDGATE_VM_BOOT_FLOOD:-4x1000} IDGATE_VM_QUIET=1"
}
k612=$(python3 "$ROOT/kmod/matrix/pick.py" 6.12 amd64 trixie)
krt=$(python3 "$ROOT/kmod/matrix/pick.py" 6.1 rt-amd64)
side_by_side "boot 6.12 ($k612)" "$(boot_env "$k612")" "boot 6.1 rt ($krt)" "$(boot_env "$krt")"
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
