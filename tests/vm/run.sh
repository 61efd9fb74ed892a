#!/usr/bin/env bash
# tests/vm/run.sh - build kmod/idgate.ko against Debian 12's kernel, boot that
# kernel under qemu with an initramfs holding the module and the tests, and
# report. Exit status 0 only if every test passed, the VM finished in time and
# the console shows no kernel WARNING/BUG/Oops.
#
# Everything downloaded or built goes to $IDGATE_VM_CACHE (default
# /var/cache/idgate-vm), never into the work tree. Needs root for apt-get
# (tools missing on the host are installed; kernel packages are only
# downloaded and unpacked, never installed).
#
# Environment:
#   IDGATE_BIN=/path/to/idgate   copy this binary (and the shared libraries it
#                                needs) into the guest as /bin/idgate
#   IDGATE_EXTRA_BINS="a b"      more binaries (space or colon separated) for the
#                                guest, each copied to /bin/<name> with its libraries
#   IDGATE_VM_HOOKS=0            leave guest-tests.d/*.sh out (module tests only)
#   IDGATE_VM_FLOOD=PxN          flood test: P processes x N connections (8x12500)
#   IDGATE_VM_APPEND=args        extra kernel command line (slub_debug=FZP on the slabs idgate allocates from)
#   IDGATE_VM_TIMEOUT=seconds    limit for the VM run (900)
#   IDGATE_VM_CACHE=dir          cache directory (/var/cache/idgate-vm)
#   IDGATE_VM_SMP=n              guest CPUs (2)
#   IDGATE_KERNEL_PKG=name       kernel image package (default: what
#                                linux-image-amd64 depends on)
# Guest hooks: tests/vm/guest-tests.d/*.sh run inside the guest after the
# module tests (see guest-tests.d/README).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${IDGATE_VM_CACHE:-/var/cache/idgate-vm}
TIMEOUT=${IDGATE_VM_TIMEOUT:-900}
FLOOD=${IDGATE_VM_FLOOD:-8x12500}
# Debian's kernel has no KASAN/lockdep: slab poisoning and red zones catch
# use-after-free writes and overruns in the slabs idgate uses.
APPEND=${IDGATE_VM_APPEND:-slub_debug=FZP,idgate_flow,pid,kmalloc-1k}
SMP=${IDGATE_VM_SMP:-2}
BUILD=$CACHE/build
export DEBIAN_FRONTEND=noninteractive

log() { echo "vm-harness: $*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

APT_UPDATED=
apt_update() {
	[ -n "$APT_UPDATED" ] && return
	log "apt-get update"
	apt-get update -qq >&2
	APT_UPDATED=1
}

# Host tools: command -> Debian package.
ensure_tools() {
	local missing=() pair cmd pkg
	for pair in qemu-system-x86_64:qemu-system-x86 cpio:cpio gcc:gcc make:make \
		depmod:kmod ip:iproute2 nft:nftables dpkg-deb:dpkg gzip:gzip timeout:coreutils; do
		cmd=${pair%%:*}
		pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	command -v gcc-12 >/dev/null 2>&1 || missing+=(gcc-12)	# the headers' CC
	[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)	# gcc -static
	[ -e /usr/lib/x86_64-linux-gnu/libelf.so.1 ] || missing+=(libelf1)	# kbuild's objtool
	if [ ${#missing[@]} -gt 0 ]; then
		apt_update
		log "installing ${missing[*]}"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	fi
	export PATH=$PATH:/usr/sbin:/sbin
}

# Kernel image package and release, e.g. linux-image-6.1.0-56-amd64 / 6.1.0-56-amd64.
resolve_kernel() {
	KPKG=${IDGATE_KERNEL_PKG:-}
	if [ -z "$KPKG" ]; then
		KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		if [ -z "$KPKG" ]; then
			apt_update
			KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		fi
	fi
	[ -n "$KPKG" ] || die "cannot resolve the kernel package from linux-image-amd64"
	KREL=${KPKG#linux-image-}
	case "$KREL" in 6.1.*-amd64) ;; *) log "warning: expected a 6.1 amd64 kernel, got $KREL" ;; esac
	KCACHE=$CACHE/kernel/$KREL
	KROOT=$KCACHE/root
	KDIR=$KROOT/usr/src/linux-headers-$KREL
}

# Download and unpack image, headers and kbuild packages (once per release).
fetch_kernel() {
	[ -e "$KCACHE/.unpacked" ] && return
	local kbuild common pkgs deb
	common=linux-headers-${KREL%-amd64}-common
	kbuild=$(apt-cache depends "linux-headers-$KREL" 2>/dev/null | awk '/Depends: linux-kbuild-/ { print $2; exit }')
	if [ -z "$kbuild" ]; then
		apt_update
		kbuild=$(apt-cache depends "linux-headers-$KREL" | awk '/Depends: linux-kbuild-/ { print $2; exit }')
	fi
	[ -n "$kbuild" ] || die "cannot resolve the kbuild package of linux-headers-$KREL"
	pkgs=("$KPKG" "linux-headers-$KREL" "$common" "$kbuild")
	log "downloading ${pkgs[*]}"
	rm -rf "$KCACHE"
	mkdir -p "$KCACHE/debs"
	(cd "$KCACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >&2) || {
		apt_update
		(cd "$KCACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >&2)
	}
	for deb in "$KCACHE"/debs/*.deb; do
		dpkg-deb -x "$deb" "$KROOT"
	done
	# The headers' Makefile includes the common tree by absolute path.
	sed -i "s|^include /usr/src/|include $KROOT/usr/src/|" "$KDIR/Makefile"
	depmod -b "$KROOT" "$KREL"
	rm -rf "$KCACHE/debs"
	touch "$KCACHE/.unpacked"
}

# busybox-static, unpacked into the cache (the host's busybox is left alone).
fetch_busybox() {
	BUSYBOX=$CACHE/busybox/bin/busybox
	[ -x "$BUSYBOX" ] && return
	local d=$CACHE/busybox.tmp
	rm -rf "$d" "$CACHE/busybox"
	mkdir -p "$d"
	(cd "$d" && apt-get download -q -o APT::Sandbox::User=root busybox-static >&2) || {
		apt_update
		(cd "$d" && apt-get download -q -o APT::Sandbox::User=root busybox-static >&2)
	}
	dpkg-deb -x "$d"/busybox-static_*.deb "$d/root"
	mkdir -p "$CACHE/busybox/bin"
	cp "$d/root/bin/busybox" "$BUSYBOX"
	rm -rf "$d"
}

build_module() {
	rm -rf "$BUILD/kmod"
	mkdir -p "$BUILD/kmod"
	(cd "$ROOT/kmod" && tar --exclude='*.o' --exclude='*.ko' --exclude='*.mod*' --exclude='.*.cmd' \
		--exclude=Module.symvers --exclude=modules.order -cf - .) | tar -xf - -C "$BUILD/kmod"
	make -s -C "$BUILD/kmod" KDIR="$KDIR" >&2
	local vermagic
	vermagic=$(modinfo -F vermagic "$BUILD/kmod/idgate.ko")
	case "$vermagic" in "$KREL "*) ;; *) die "vermagic '$vermagic' does not match $KREL" ;; esac
}

build_tests() {
	gcc -static -O2 -Wall -Wextra -Werror -Wno-unused-parameter -I"$ROOT/kmod/include/uapi" \
		"$HERE/idgate-test.c" -o "$BUILD/idgate-test"
}

# Copy an ELF binary and the shared libraries it needs (plus the loader).
copy_with_libs() {
	local src=$1 dst=$2 lib
	install -D -m 0755 "$src" "$IR$dst"
	if ldd "$src" >/dev/null 2>&1; then
		for lib in $(ldd "$src" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'); do
			[ -e "$IR$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$IR$lib"
		done
	fi
}

# Kernel modules needed by the tests, in load order, from modules.dep.
module_order() {
	local dep=$KROOT/lib/modules/$KREL/modules.dep
	# crc32c_generic first: busybox insmod ignores libcrc32c's softdep on crc32c.
	awk -v want="crc32c_generic veth nf_tables nft_chain_nat nft_redir nft_ct nft_reject_inet nft_socket nf_nat nf_conntrack nf_conntrack_netlink inet_diag tcp_diag" '
		BEGIN { n = split(want, w, " ") }
		{ path = $1; sub(/:$/, "", path); name = path; sub(/.*\//, "", name); sub(/\.ko.*$/, "", name)
		  deps[name] = ""; for (i = 2; i <= NF; i++) { d = $i; sub(/.*\//, "", d); sub(/\.ko.*$/, "", d); deps[name] = deps[name] " " d }
		  file[name] = path }
		function visit(m,   k, a, c) {
			if (m in done) return
			done[m] = 1
			c = split(deps[m], a, " ")
			for (k = c; k >= 1; k--) visit(a[k])
			print file[m]
		}
		END { for (i = 1; i <= n; i++) { if (!(w[i] in file)) { print "missing module " w[i] > "/dev/stderr"; exit 1 } visit(w[i]) } }
	' "$dep"
}

build_initramfs() {
	IR=$BUILD/initramfs
	rm -rf "$IR"
	mkdir -p "$IR"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc/idgate/guest-tests.d,lib/modules}
	cp "$BUSYBOX" "$IR/bin/busybox"
	ln -s busybox "$IR/bin/sh"
	install -m 0755 "$HERE/guest/init" "$IR/init"
	install -m 0755 "$BUILD/idgate-test" "$IR/bin/idgate-test"
	# Separate files, so flows come from distinct executables.
	install -m 0755 "$BUILD/idgate-test" "$IR/bin/idg-client-a"
	install -m 0755 "$BUILD/idgate-test" "$IR/bin/idg-client-b"
	install -m 0644 "$BUILD/kmod/idgate.ko" "$IR/lib/modules/idgate.ko"
	copy_with_libs "$(command -v ip)" /usr/sbin/ip
	copy_with_libs "$(command -v nft)" /usr/sbin/nft
	if [ -n "${IDGATE_BIN:-}" ]; then
		[ -x "$IDGATE_BIN" ] || die "IDGATE_BIN=$IDGATE_BIN is not an executable"
		copy_with_libs "$IDGATE_BIN" /bin/idgate
		# Debug info only makes the initramfs bigger.
		command -v strip >/dev/null && strip --strip-debug "$IR/bin/idgate"
	fi
	local extra extras=${IDGATE_EXTRA_BINS:-}
	for extra in ${extras//:/ }; do
		[ -x "$extra" ] || die "IDGATE_EXTRA_BINS: $extra is not an executable"
		copy_with_libs "$extra" "/bin/$(basename "$extra")"
		command -v strip >/dev/null && strip --strip-debug "$IR/bin/$(basename "$extra")"
	done
	local t m
	if [ "${IDGATE_VM_HOOKS:-1}" = 1 ]; then
		for t in "$HERE"/guest-tests.d/*.sh; do
			[ -e "$t" ] && install -m 0755 "$t" "$IR/etc/idgate/guest-tests.d/"
		done
	fi
	: > "$IR/lib/modules/load.list"
	for m in $(module_order); do
		install -D -m 0644 "$KROOT/lib/modules/$KREL/$m" "$IR/lib/modules/$KREL/$m"
		echo "/lib/modules/$KREL/$m" >> "$IR/lib/modules/load.list"
	done
	echo "root:x:0:0:root:/:/bin/sh" > "$IR/etc/passwd"
	(cd "$IR" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 > "$BUILD/initramfs.gz"
}

# KVM only if /dev/kvm exists and a short boot to a kernel panic works.
# Multi-threaded TCG mishandles the kernel's live patching of static branches (module load
# and unload toggle nf_hooks_needed while the other vCPU runs through NF_HOOK): seen as a
# vCPU spinning forever on a patched jmp in ip6_xmit. One host thread for both vCPUs keeps
# SMP semantics (IPIs, preemption) without that emulator race.
choose_accel() {
	ACCEL=tcg,thread=single
	[ -w /dev/kvm ] || return 0
	if timeout 15 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic -no-reboot \
		-kernel "$KROOT/boot/vmlinuz-$KREL" -append "console=ttyS0 panic=-1 rdinit=/none init=/none" \
		</dev/null 2>&1 | grep -q 'Kernel panic'; then
		ACCEL=kvm
	fi
}

run_vm() {
	local console=$BUILD/console.log cpu=max rc=0
	[ "${ACCEL%%,*}" = kvm ] && cpu=host
	log "booting $KREL under qemu ($ACCEL, $SMP cpus, timeout ${TIMEOUT}s); console log: $console"
	VM_START=$(now)
	timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" -cpu "$cpu" -smp "$SMP" -m 1G \
		-nodefaults -display none -serial stdio -no-reboot \
		-kernel "$KROOT/boot/vmlinuz-$KREL" -initrd "$BUILD/initramfs.gz" \
		-append "console=ttyS0 panic=-1 loglevel=5 $APPEND idgtest_flood=$FLOOD" \
		</dev/null 2>&1 | tee "$console" || rc=$?
	VM_SECS=$(since "$VM_START")
	return $rc
}

check_console() {
	local console=$BUILD/console.log bad=0 summary
	if tr -d '\r' < "$console" | grep -vE '^(PASS|FAIL|dmesg): ' |
		grep -E 'WARNING:|BUG:|Oops|KASAN|Kernel panic|general protection fault' >&2; then
		log "kernel warnings on the console"
		bad=1
	fi
	summary=$(tr -d '\r' < "$console" | grep -E '^vm: [0-9]+ passed, [0-9]+ failed' | tail -n1 || true)
	if [ -z "$summary" ]; then
		log "no summary line: the VM did not finish (timeout or crash)"
		bad=1
	elif ! echo "$summary" | grep -q ', 0 failed'; then
		bad=1
	fi
	tr -d '\r' < "$console" | grep '^FAIL:' >&2 || true
	log "${summary:-no result}; VM ran ${VM_SECS}s ($ACCEL)"
	return $bad
}

main() {
	local t0 rc=0
	t0=$(now)
	mkdir -p "$CACHE" "$BUILD"
	ensure_tools
	resolve_kernel
	fetch_kernel
	fetch_busybox
	log "kernel $KREL; preparing took $(since "$t0")s"
	t0=$(now)
	build_module
	build_tests
	build_initramfs
	log "module, tests and initramfs built in $(since "$t0")s"
	choose_accel
	run_vm || rc=$?
	[ "$rc" = 124 ] && log "qemu timed out after ${TIMEOUT}s"
	check_console || rc=1
	[ "$rc" = 0 ] && log "PASS" || log "FAIL"
	return $rc
}

main "$@"
