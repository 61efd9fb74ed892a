#!/usr/bin/env bash
# tests/vm/faults.sh - show that the debug-kernel harness can fail: boot the
# KASAN/lockdep/kmemleak kernel once per planted fault (kmod/fault.h), each
# with the module built with IDGATE_FAULT=<name>, and require that the run
# fails with the fault reported by the detector meant to catch it.
#   uaf  -> KASAN    lock -> lockdep    leak -> kmemleak
# Exit 0 only if every planted fault was caught by its detector.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=faults
. "$HERE/lib/common.sh"
rc=0 passed=0 failed=0
for f in ${IDGATE_FAULTS:-uaf lock leak}; do
	case $f in uaf) want=KASAN ;; lock) want=lockdep ;; leak) want=kmemleak ;; *) die "unknown fault $f" ;; esac
	log "planted fault $f: booting the debug kernel (expecting a $want report)"
	t0=$(now)
	out=$(IDGATE_VM_KERNEL=debug IDGATE_VM_FAULT=$f IDGATE_VM_CHURN=0 IDGATE_VM_HOOKS=0 IDGATE_VM_QUIET=1 \
		IDGATE_VM_TIMEOUT=${IDGATE_VM_TIMEOUT:-900} bash "$HERE/run.sh" 2>&1)
	vm_rc=$?
	echo "$out" | grep -E '^vm-harness: (report|kernel reports|vm:|.*passed)' | head -n 12
	# Detectors whose report names the module ("KASAN[idgate]"); a report of
	# the kernel's own does not count for the planted fault.
	detectors=$(echo "$out" | sed -n 's/^vm-harness: report: \([A-Za-z-]*\)\( \[idgate\]\)\{0,1\}: .*/\1\2/p' | tr -d ' ' | sort -u | tr '\n' ' ')
	if [ $vm_rc -ne 0 ] && echo " $detectors" | grep -qF " ${want}[idgate] "; then
		echo "PASS: fault $f: the run failed, reported by $want naming idgate (all detectors: ${detectors% }) in $(since "$t0")s"
		passed=$((passed + 1))
	else
		echo "FAIL: fault $f: run exit $vm_rc, detectors '${detectors% }', expected $want naming idgate"
		failed=$((failed + 1))
		rc=1
	fi
done
echo "faults: $passed passed, $failed failed"
exit $rc
