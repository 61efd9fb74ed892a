#!/usr/bin/env bash
# kmod/checkpatch.sh - the kernel's own style checks on the module's sources:
# scripts/checkpatch.pl --no-tree -f on every kmod/*.c, *.h and the uapi
# header, and scripts/kernel-doc -none -Werror on the same files (kernel-doc
# comments must parse and describe every parameter). Exit status 1 on any
# ERROR or WARNING (CHECK-level notes need --strict and do not fail).
#
# Usage: kmod/checkpatch.sh [checkpatch options...]   e.g. --strict
#
# The one exemption, and why: compat.h is where the module's version guards
# live (it is built out of tree for every kernel line of the support window),
# so checkpatch's LINUX_VERSION_CODE warning ("code should be for the version
# to which it is merged") does not apply to it, nor CONSTANT_COMPARISON,
# which takes LINUX_VERSION_CODE >= KERNEL_VERSION(...) for a constant on the
# left. Both are ignored in compat.h only.
#
# Where the kernel scripts come from (Debian's linux-headers packages do not
# carry them; linux-source-6.1 does), the first that exists:
#   $CHECKPATCH              a checkpatch.pl, kernel-doc next to it
#   /usr/src/linux-*/scripts a kernel tree unpacked there
#   $CACHE/debug-kernel/src-*/linux/scripts   the VM harness's unpacked
#                            linux-source (tests/vm/debug-kernel.sh)
#   $CACHE/checkpatch/<version>   the scripts alone, taken from
#                            linux-source-6.1 downloaded with apt-get download
#                            (about 140 MB, once; nothing is installed)
# $CACHE is /var/cache/idgate-vm (IDGATE_VM_CACHE), as for the VM tests.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export LOG_TAG=checkpatch	# log() of common.sh
# shellcheck source-path=SCRIPTDIR source=../tests/vm/lib/common.sh
. "$ROOT/tests/vm/lib/common.sh"

SRCPKG=linux-source-6.1
# Files the two scripts read besides themselves (checkpatch warns without them).
SCRIPTS="checkpatch.pl kernel-doc spelling.txt const_structs.checkpatch"

# The scripts of linux-source-6.1, unpacked alone into the cache.
fetch_scripts() {
	local v dir tmp f members=()
	v=$(apt-cache policy "$SRCPKG" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		apt_update
		v=$(apt-cache policy "$SRCPKG" | awk '/Candidate:/ { print $2 }')
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		die "$SRCPKG is not in the host's apt sources: set CHECKPATCH=/path/to/checkpatch.pl"
	fi
	dir=$CACHE/checkpatch/$v
	if [ ! -e "$dir/.ready" ]; then
		log "downloading $SRCPKG=$v for its scripts/ (about 140 MB, once; unpacked under $dir, not installed)"
		tmp=$dir.tmp
		rm -rf "$tmp" "$dir"
		mkdir -p "$tmp"
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$SRCPKG=$v" >&2)
		dpkg-deb --fsys-tarfile "$tmp/${SRCPKG}_"*.deb | tar -x -C "$tmp" ./usr/src/linux-source-6.1.tar.xz
		for f in $SCRIPTS; do members+=("linux-source-6.1/scripts/$f"); done
		tar -xJf "$tmp/usr/src/linux-source-6.1.tar.xz" -C "$tmp" "${members[@]}"
		mkdir -p "$dir"
		mv "$tmp/linux-source-6.1/scripts/"* "$dir/"
		rm -rf "$tmp"
		touch "$dir/.ready"
	fi
	echo "$dir/checkpatch.pl"
}

find_checkpatch() {
	local c
	if [ -n "${CHECKPATCH:-}" ]; then
		[ -f "$CHECKPATCH" ] || die "CHECKPATCH=$CHECKPATCH: no such file"
		echo "$CHECKPATCH"
		return
	fi
	for c in /usr/src/linux-*/scripts/checkpatch.pl "$CACHE"/debug-kernel/src-*/linux/scripts/checkpatch.pl \
		"$CACHE"/checkpatch/*/checkpatch.pl; do
		if [ -f "$c" ] && [ -f "$(dirname "$c")/kernel-doc" ]; then
			echo "$c"
			return
		fi
	done
	fetch_scripts
}

# The Perl modules the scripts use beyond perl-base (Debian's perl has them).
perl -MTerm::ANSIColor -MEncode -MPod::Usage -e 1 2>/dev/null || apt_install_safe perl
CP=$(find_checkpatch)
KD=$(dirname "$CP")/kernel-doc
log "using $CP"
cd "$HERE"
FILES=(./*.c ./*.h include/uapi/*.h)
OTHERS=()
for f in "${FILES[@]}"; do [ "$f" = ./compat.h ] || OTHERS+=("$f"); done
# Clean: status 0 and no output (--terse); findings: status 1 and a summary
# line. Anything else is checkpatch itself failing.
run_checkpatch() {
	local rc=0 out
	out=$(perl "$CP" --no-tree --terse --show-types "$@" 2>&1) || rc=$?
	if [ $rc -gt 1 ] || { [ $rc = 1 ] && ! grep -q '^total: ' <<<"$out"; }; then
		die "checkpatch failed (status $rc): $out"
	fi
	echo "$out"
}
out=$(
	run_checkpatch "$@" -f "${OTHERS[@]}"
	# compat.h alone is checked with the exemption described above.
	run_checkpatch "$@" --ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON -f ./compat.h
)
grep -v -e '^total: ' -e '^$' <<<"$out" || true
errors=$(grep -c ': ERROR:' <<<"$out" || true)
warnings=$(grep -c ': WARNING:' <<<"$out" || true)
checks=$(grep -c ': CHECK:' <<<"$out" || true)
status=0
log "$errors errors, $warnings warnings, $checks checks (those only with --strict) in ${#FILES[@]} files"
[ "$errors" = 0 ] && [ "$warnings" = 0 ] || status=1
if ! perl "$KD" -none -Werror "${FILES[@]}"; then
	log "kernel-doc: the warnings above"
	status=1
fi
exit $status
