#!/usr/bin/env bash
# tests/vm/debug-kernel.sh VARIANT - build (or reuse) a debug kernel for the VM
# harness: Debian's linux-source-6.1 on top of tinyconfig plus
# kmod/debug/base.fragment and kmod/debug/VARIANT.fragment (kasan or kcsan).
# Cached under $CACHE/debug-kernel/VARIANT-<hash>, the hash covering the source
# package version, both fragments, the compiler version and this script; a
# changed input builds a new tree, an unchanged one is reused. Prints the
# build directory (bzImage at arch/x86/boot/bzImage) on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=debug-kernel
. "$HERE/lib/common.sh"

VARIANT=${1:?usage: debug-kernel.sh kasan|kcsan}
FRAG=$ROOT/kmod/debug/$VARIANT.fragment
[ -e "$FRAG" ] || die "no fragment $FRAG"
SRCPKG=linux-source-6.1
JOBS=${IDGATE_KERNEL_JOBS:-2}
# Bump when the way the kernel is built below changes (it is part of the cache key).
RECIPE=1

ensure_build_tools() {
	local missing=() pair
	for pair in flex:flex bison:bison bc:bc gcc-12:gcc-12 make:make cpio:cpio xz:xz-utils; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	[ -e /usr/include/libelf.h ] || missing+=(libelf-dev)
	[ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
	[ ${#missing[@]} -eq 0 ] || apt_install_safe "${missing[@]}"
}

# Version of linux-source-6.1 the archive offers now (the host's lists).
source_version() {
	local v
	v=$(apt-cache policy "$SRCPKG" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		apt_update
		v=$(apt-cache policy "$SRCPKG" | awk '/Candidate:/ { print $2 }')
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then die "$SRCPKG is not in the host's apt sources"; fi
	echo "$v"
}

# Unpacked source tree of one version, shared by the variants.
fetch_source() {
	local v=$1 dir=$CACHE/debug-kernel/src-$1 tmp
	SRC=$dir/linux
	[ -e "$dir/.unpacked" ] && return
	tmp=$CACHE/debug-kernel/src-$v.tmp
	rm -rf "$tmp" "$dir"
	mkdir -p "$tmp"
	log "downloading $SRCPKG=$v (about 140 MB)"
	(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$SRCPKG=$v" >&2)
	dpkg-deb --fsys-tarfile "$tmp"/"$SRCPKG"_*.deb | tar -x -C "$tmp" --wildcards './usr/src/linux-source-6.1.tar.xz'
	log "unpacking the kernel source"
	tar -xJf "$tmp/usr/src/linux-source-6.1.tar.xz" -C "$tmp"
	mkdir -p "$dir"
	mv "$tmp/linux-source-6.1" "$SRC"
	rm -rf "$tmp"
	touch "$dir/.unpacked"
}

# vmlinux's exports for modpost (external modules then link-check against them).
symvers() {
	[ -e "$1/Module.symvers" ] && return
	nice -n 10 make -s -C "$1" CC=gcc-12 HOSTCC=gcc-12 -j"$JOBS" modules >> "$1/build.log" 2>&1 ||
		die "make modules (Module.symvers) failed"
}

main() {
	local t0 v key out
	t0=$(now)
	ensure_build_tools
	v=$(source_version)
	key=$( { echo "$SRCPKG=$v recipe $RECIPE"; cat "$ROOT/kmod/debug/base.fragment" "$FRAG"; gcc-12 --version | head -n1; } | hash_of)
	out=$CACHE/debug-kernel/$VARIANT-$key
	if [ -e "$out/.built" ]; then
		log "$VARIANT kernel cached: $out (inputs unchanged)"
		symvers "$out"
		echo "$out"
		return
	fi
	fetch_source "$v"
	rm -rf "$out"
	mkdir -p "$out"
	log "configuring $VARIANT kernel ($SRCPKG $v, tinyconfig + base + $VARIANT fragments) in $out"
	local mk=(make -s -C "$SRC" O="$out" CC=gcc-12 HOSTCC=gcc-12)
	"${mk[@]}" tinyconfig >/dev/null
	"$SRC/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$ROOT/kmod/debug/base.fragment" "$FRAG" >/dev/null
	"${mk[@]}" olddefconfig >&2
	# merge_config only warns about an option the Kconfig dependencies dropped.
	local opt lost=0
	while read -r opt; do
		case "$opt" in CONFIG_*=n | CONFIG_*=*[!yn]*) continue ;; CONFIG_*=y) ;; *) continue ;; esac
		grep -qx "$opt" "$out/.config" || { log "option lost after olddefconfig: $opt"; lost=1; }
	done < <(cat "$ROOT/kmod/debug/base.fragment" "$FRAG")
	[ $lost = 0 ] || die "the fragments do not hold on $SRCPKG $v (see above)"
	log "building bzImage with -j$JOBS (several minutes; log: $out/build.log)"
	local tb
	tb=$(now)
	if ! nice -n 10 "${mk[@]}" -j"$JOBS" bzImage modules_prepare > "$out/build.log" 2>&1; then
		tail -n 30 "$out/build.log" >&2
		die "kernel build failed"
	fi
	symvers "$out"
	since "$tb" > "$out/build-seconds"
	touch "$out/.built"
	log "$VARIANT kernel built in $(cat "$out/build-seconds")s (total $(since "$t0")s): $out"
	echo "$out"
}

main "$@"; exit $?
