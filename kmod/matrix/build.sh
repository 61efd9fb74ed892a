#!/usr/bin/env bash
# kmod/matrix/build.sh - build idgate.ko for every target of targets.json, each
# in the chroot of its suite's toolchain (arm64 by cross-compiling), against
# that target's headers unpacked inside the chroot. Incremental: a target is
# rebuilt only when its packages, the module's sources or its chroot changed
# since the last build; the diff against the last built manifest is printed.
#
# Output under $CACHE/matrix/out: idgate-<target id>.ko and SHA256SUMS.
# Usage: build.sh [TARGET_ID...]   (no argument: every target)
# Environment: IDGATE_MATRIX=file  another manifest (default: targets.json here)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=matrix
. "$ROOT/tests/vm/lib/common.sh"
. "$ROOT/tests/vm/lib/chroot.sh"
MANIFEST=${IDGATE_MATRIX:-$HERE/targets.json}
M=$CACHE/matrix
OUT=$M/out
STATE=$M/state
mkdir -p "$OUT" "$STATE" "$M/debs"

# Hash of the module's sources (what a .ko is built from besides the headers).
src_hash() {
	(cd "$ROOT/kmod" && find Kbuild Makefile ./*.c ./*.h include -type f | LC_ALL=C sort | xargs sha256sum) | hash_of
}

# One line per target: id toolchain arch release cc abi pkg...
targets() {
	python3 - "$MANIFEST" "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
want = set(sys.argv[2:])
for t in doc["targets"]:
    if want and t["id"] not in want:
        continue
    print(t["id"], t["toolchain"], t["arch"], t["release"], t["cc"], t["abi"], *t["packages"])
PY
}

# Download what is missing from $M/debs (one apt-get call for all of them).
fetch_debs() {
	local need=() p name arch ver
	for p in "$@"; do
		name=${p%%:*}; arch=${p#*:}; arch=${arch%%=*}; ver=${p#*=}
		ls "$M/debs/${name}_${ver#*:}_${arch}.deb" >/dev/null 2>&1 || need+=("$p")
	done
	[ ${#need[@]} -eq 0 ] && return
	log "downloading ${#need[@]} packages"
	(cd "$M/debs" && papt_download "${need[@]}")
}

deb_of() {
	local p=$1 name arch ver
	name=${p%%:*}; arch=${p#*:}; arch=${arch%%=*}; ver=${p#*=}
	echo "$M/debs/${name}_${ver#*:}_${arch}.deb"
}

# Build one target; returns non-zero on failure (the log is kept).
build_one() {
	local id=$1 tc=$2 arch=$3 rel=$4 cc=$5 abi=$6 fp=$7
	shift 7
	# One tree per ABI: its flavours share the common headers and kbuild,
	# each package unpacked once (they install into distinct directories).
	local tree=/trees/$abi kdir p deb log=$M/logs/$id.log
	ensure_chroot "$tc"
	mkdir -p "$M/logs" "$CHROOT$tree/.debs"
	for p in "$@"; do
		deb=$(deb_of "$p")
		[ -e "$CHROOT$tree/.debs/${deb##*/}" ] && continue
		dpkg-deb -x "$deb" "$CHROOT$tree"
		touch "$CHROOT$tree/.debs/${deb##*/}"
	done
	# The headers' Makefile includes the common part by absolute path.
	sed -i "s|^include /usr/src/|include $tree/usr/src/|" "$CHROOT$tree/usr/src/linux-headers-$rel/Makefile"
	kdir=$tree/usr/src/linux-headers-$rel
	rm -rf "$CHROOT/build/$id"
	mkdir -p "$CHROOT/build/$id"
	(cd "$ROOT/kmod" && cp -r Kbuild Makefile ./*.c ./*.h include "$CHROOT/build/$id/")
	local mk=(make -C "$kdir" M="/build/$id" CC="$cc" -j2)
	[ "$arch" = arm64 ] && mk=(make -C "$kdir" M="/build/$id" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC="aarch64-linux-gnu-$cc" -j2)
	if ! nice -n 10 chroot "$CHROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8 "${mk[@]}" modules > "$log" 2>&1; then
		log "FAIL $id: build failed (log: $log)"
		tail -n 15 "$log" >&2
		return 1
	fi
	local vermagic
	vermagic=$(modinfo -F vermagic "$CHROOT/build/$id/idgate.ko")
	case "$vermagic" in "$rel "*) ;; *) log "FAIL $id: vermagic '$vermagic' is not $rel"; return 1 ;; esac
	install -m 0644 "$CHROOT/build/$id/idgate.ko" "$OUT/idgate-$id.ko"
	rm -rf "$CHROOT/build/$id"
	echo "$fp" > "$STATE/$id"
}

main() {
	local t0 src line id tc arch rel cc pkgs fp new=0 changed=0 same=0 failed=() built=0 ids=() only=("$@")
	t0=$(now)
	command -v modinfo >/dev/null || apt_install_safe kmod
	PAPT_SUITES=$(sed -n 's/^suites=//p' "$HERE/window.conf")
	src=$(src_hash)
	declare -A FP
	while read -r line; do
		# shellcheck disable=SC2086 # a target line: whitespace-separated fields, no glob characters
		set -- $line
		id=$1 tc=$2
		ensure_chroot "$tc"
		fp=$(echo "$line $src $CHROOT" | hash_of)
		FP[$id]=$fp
		ids+=("$id")
		if [ ! -e "$STATE/$id" ]; then new=$((new + 1)); elif [ "$(cat "$STATE/$id")" != "$fp" ] || [ ! -e "$OUT/idgate-$id.ko" ]; then changed=$((changed + 1)); else same=$((same + 1)); fi
	done < <(targets "${only[@]}")
	log "${#ids[@]} targets: $new new, $changed changed (packages, module sources or toolchain), $same unchanged"
	local todo=() 
	for id in "${ids[@]}"; do
		[ -e "$STATE/$id" ] && [ "$(cat "$STATE/$id")" = "${FP[$id]}" ] && [ -e "$OUT/idgate-$id.ko" ] || todo+=("$id")
	done
	if [ ${#todo[@]} -gt 0 ]; then
		papt_setup
		local all=()
		# shellcheck disable=SC2086 # a target line: whitespace-separated fields, no glob characters
		while read -r line; do set -- $line; shift 6; all+=("$@"); done < <(targets "${todo[@]}")
		fetch_debs "${all[@]}"
		while read -r line; do
			# shellcheck disable=SC2086 # a target line: whitespace-separated fields, no glob characters
			set -- $line
			id=$1
			log "building $id ($(( built + ${#failed[@]} + 1 ))/${#todo[@]})"
			if build_one "$1" "$2" "$3" "$4" "$5" "$6" "${FP[$id]}" "${@:7}"; then built=$((built + 1)); else failed+=("$id"); fi
		done < <(targets "${todo[@]}")
	fi
	# Outputs of targets that left the manifest are removed with it.
	local ko
	for ko in "$OUT"/idgate-*.ko; do
		[ -e "$ko" ] || continue
		id=${ko##*/idgate-}; id=${id%.ko}
		[ -n "${FP[$id]:-}" ] || [ ${#only[@]} -gt 0 ] || { log "removed from the manifest: $id"; rm -f "$ko" "$STATE/$id"; }
	done
	(cd "$OUT" && for f in idgate-*.ko; do if [ -e "$f" ]; then sha256sum "$f"; fi; done > SHA256SUMS)
	[ ${#only[@]} -gt 0 ] || cp "$MANIFEST" "$M/last-built.json"
	log "built $built, failed ${#failed[@]}, reused $(( ${#ids[@]} - ${#todo[@]} )) in $(since "$t0")s; outputs: $OUT"
	if [ ${#failed[@]} -gt 0 ]; then
		log "failed targets: ${failed[*]}"
		return 1
	fi
}

main "$@"; exit $?
