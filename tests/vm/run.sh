#!/usr/bin/env bash
# tests/vm/run.sh - build kmod/idgate.ko for a kernel, boot that kernel under
# qemu with an initramfs holding the module and the tests, and report. Exit
# status 0 only if every test passed, the VM finished in time and the console
# shows no kernel report (each one is named by its detector: KASAN, KFENCE,
# lockdep, KCSAN, kmemleak, hung task, BUG/WARNING/Oops; lib/detect.sh).
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
#   IDGATE_VM_HOOKS=0|1|"a b"    guest-tests.d hooks: none, all (default), or these by
#                                name (debug kernels: "failclosed agree")
#   IDGATE_VM_FLOOD=PxN          flood test: P processes x N connections (8x12500)
#   IDGATE_VM_APPEND=args        extra kernel command line (slub_debug=FZP on the slabs idgate allocates from)
#   IDGATE_VM_TIMEOUT=seconds    limit for the VM run (900; debug kernels 1800)
#   IDGATE_VM_PREPARE_ONLY=1     download and build everything the run needs, then stop
#                                (ci.sh prepares serially, then boots two VMs at once)
#   IDGATE_VM_CACHE=dir          cache directory (/var/cache/idgate-vm)
#   IDGATE_VM_SMP=n              guest CPUs (2)
#   IDGATE_KERNEL_PKG=name       kernel image package (default: what
#                                linux-image-amd64 depends on)
#   IDGATE_VM_KERNEL=which       stock (default): Debian 12's current kernel;
#                                debug: tinyconfig + KASAN/KFENCE/lockdep/kmemleak
#                                (debug-kernel.sh kasan); kcsan: the KCSAN kernel;
#                                target:ID: a support-matrix target (kmod/matrix),
#                                its image booted with the module the matrix built
#   IDGATE_VM_CHURN=seconds      churn phase (guest/churn.sh); default 90 on the
#                                debug kernels, 0 (none) otherwise
#   IDGATE_VM_FAULT=name         build the module with a planted fault (kmod/fault.h:
#                                uaf, lock, leak); uaf and lock stop the VM soon after the
#                                first report
#   IDGATE_VM_TAG=name           console log name (console-<tag>.log), for parallel runs
# Guest hooks: tests/vm/guest-tests.d/*.sh run inside the guest after the
# module tests (see guest-tests.d/README).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/detect.sh"
TIMEOUT=${IDGATE_VM_TIMEOUT:-}
FLOOD=${IDGATE_VM_FLOOD:-8x12500}
KERNEL=${IDGATE_VM_KERNEL:-stock}
FAULT=${IDGATE_VM_FAULT:-}
SMP=${IDGATE_VM_SMP:-2}
TAG=${IDGATE_VM_TAG:-${KERNEL//[:\/]/_}${FAULT:+-$FAULT}}
BUILD=$CACHE/build/$TAG
case "$KERNEL" in
debug | kcsan)
	# Everything is built in; the flood is smaller, the kernel being many times slower.
	CHURN=${IDGATE_VM_CHURN:-90}
	TIMEOUT=${TIMEOUT:-1800}
	FLOOD=${IDGATE_VM_FLOOD:-4x500}
	BENCH=20
	# The churn runs the proxy already; of the hooks, the ones about the module.
	HOOKS=${IDGATE_VM_HOOKS:-failclosed agree}
	APPEND=${IDGATE_VM_APPEND:-kasan.fault=report}
	;;
*)
	CHURN=${IDGATE_VM_CHURN:-0}
	TIMEOUT=${TIMEOUT:-900}
	BENCH=200
	HOOKS=${IDGATE_VM_HOOKS:-1}
	# Debian's kernel has no KASAN/lockdep: slab poisoning and red zones catch
	# use-after-free writes and overruns in the slabs idgate uses.
	APPEND=${IDGATE_VM_APPEND:-slub_debug=FZP,idgate_flow,pid,kmalloc-1k}
	;;
esac
case "$FAULT" in "" | uaf | lock | leak) ;; *) die "IDGATE_VM_FAULT must be uaf, lock or leak" ;; esac

# qemu from the host's suites; if that would remove a package (qemu-utils from
# bookworm-backports, say), from bookworm-backports through a private apt
# configuration that holds bookworm's suites only, so the host cannot move to
# another release. Stops with a message rather than remove anything.
install_qemu() {
	local pkg=$1 removals sim
	apt_update
	# A simulation that fails (qemu's common parts already from backports) counts as a removal.
	if sim=$(apt-get install -s --no-install-recommends "$pkg" 2>/dev/null); then
		removals=$(echo "$sim" | awk '/^Remv / { print $2 }' | tr '\n' ' ')
		if [ -z "$removals" ]; then
			apt_install_safe "$pkg"
			return
		fi
		log "installing $pkg from bookworm would remove $removals: trying bookworm-backports"
	else
		log "$pkg does not install from bookworm (qemu's common parts are from bookworm-backports here): trying bookworm-backports"
	fi
	local d=$CACHE/apt-host mirror security
	mirror=$(debian_mirror)
	security=$(debian_mirror security)
	mkdir -p "$d/lists/partial"
	cat > "$d/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $security bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main
SRC
	local o=(-o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$d/lists"
		-o Acquire::PDiffs=false -o Acquire::Languages=none)
	apt-get "${o[@]}" update -qq >&2
	sim=$(apt-get "${o[@]}" install -s -t bookworm-backports --no-install-recommends "$pkg" 2>/dev/null) ||
		die "$pkg cannot be installed from bookworm-backports either: install qemu by hand"
	removals=$(echo "$sim" | awk '/^Remv / { print $2 }' | tr '\n' ' ')
	[ -z "$removals" ] || die "installing $pkg would remove $removals even from bookworm-backports: install qemu by hand"
	apt-get "${o[@]}" install -y -qq -t bookworm-backports --no-install-recommends "$pkg" >/dev/null
}

# Host tools: command -> Debian package.
ensure_tools() {
	local missing=() pair cmd pkg
	for pair in cpio:cpio gcc:gcc make:make depmod:kmod ip:iproute2 nft:nftables dpkg-deb:dpkg gzip:gzip \
		timeout:coreutils xz:xz-utils; do
		cmd=${pair%%:*}
		pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	command -v gcc-12 >/dev/null 2>&1 || missing+=(gcc-12)	# the headers' CC
	[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)	# gcc -static
	[ -e /usr/lib/x86_64-linux-gnu/libelf.so.1 ] || missing+=(libelf1)	# kbuild's objtool
	[ ${#missing[@]} -eq 0 ] || apt_install_safe "${missing[@]}"
	command -v qemu-system-x86_64 >/dev/null 2>&1 || install_qemu qemu-system-x86
	if [ "$ARCH" = arm64 ]; then
		command -v qemu-system-aarch64 >/dev/null 2>&1 || install_qemu qemu-system-arm
	fi
}

# Sets ARCH, KREL, KIMG (the image to boot), KROOT (its /lib/modules root, or
# empty when everything is built in), and KO (the module to test).
resolve_kernel() {
	ARCH=amd64
	case "$KERNEL" in
	stock) resolve_stock ;;
	debug) resolve_debug kasan ;;
	kcsan) resolve_debug kcsan ;;
	target:*) resolve_target "${KERNEL#target:}" ;;
	*) die "IDGATE_VM_KERNEL=$KERNEL: expected stock, debug, kcsan or target:ID" ;;
	esac
}

resolve_stock() {
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
	fetch_stock
	KIMG=$KROOT/boot/vmlinuz-$KREL
	build_module "$KDIR"
}

# Download and unpack image, headers and kbuild packages (once per release).
fetch_stock() {
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

resolve_debug() {
	local out
	out=$(bash "$HERE/debug-kernel.sh" "$1")
	KREL=$(cat "$out/include/config/kernel.release")
	KIMG=$out/arch/x86/boot/bzImage
	KROOT=
	build_module "$out"
}

# A support-matrix target: its module from kmod/matrix/build.sh (incremental),
# its image package unpacked (once) for the kernel and the modules the tests load.
resolve_target() {
	local id=$1 line
	line=$(python3 -c '
import json, sys
for t in json.load(open(sys.argv[1]))["targets"]:
    if t["id"] == sys.argv[2]:
        print(t["arch"], t["release"], t["image"])' "$ROOT/kmod/matrix/targets.json" "$id")
	[ -n "$line" ] || die "no target $id in kmod/matrix/targets.json"
	# shellcheck disable=SC2086 # arch, release and image: three words
	set -- $line
	ARCH=$1 KREL=$2
	bash "$ROOT/kmod/matrix/build.sh" "$id" >&2
	KO=$CACHE/matrix/out/idgate-$id.ko
	KCACHE=$CACHE/kernel/$KREL
	KROOT=$KCACHE/root
	if [ ! -e "$KCACHE/.unpacked" ]; then
		PAPT_SUITES=$(sed -n 's/^suites=//p' "$ROOT/kmod/matrix/window.conf")
		papt_setup
		rm -rf "$KCACHE"
		mkdir -p "$KCACHE/debs"
		log "downloading $3"
		(cd "$KCACHE/debs" && papt_download "$3")
		dpkg-deb -x "$KCACHE"/debs/*.deb "$KROOT"
		# trixie's packages put modules under /usr/lib (merged /usr).
		if [ ! -d "$KROOT/lib/modules" ] && [ -d "$KROOT/usr/lib/modules" ]; then
			mkdir -p "$KROOT/lib"
			ln -s ../usr/lib/modules "$KROOT/lib/modules"
		fi
		depmod -b "$KROOT" "$KREL"
		rm -rf "$KCACHE/debs"
		touch "$KCACHE/.unpacked"
	fi
	KIMG=$KROOT/boot/vmlinuz-$KREL
}

# Build the module (with the planted fault, if asked) against kernel tree $1.
build_module() {
	local kdir=$1 vermagic
	rm -rf "$BUILD/kmod"
	mkdir -p "$BUILD/kmod"
	(cd "$ROOT/kmod" && cp -r Kbuild Makefile ./*.c ./*.h include "$BUILD/kmod/")
	make -s -C "$BUILD/kmod" KDIR="$kdir" CC=gcc-12 ${FAULT:+IDGATE_FAULT=$FAULT} >&2
	KO=$BUILD/kmod/idgate.ko
	vermagic=$(modinfo -F vermagic "$KO")
	case "$vermagic" in "$KREL "*) ;; *) die "vermagic '$vermagic' does not match $KREL" ;; esac
	# A lookup-error build, loaded by guest-tests.d/failclosed.sh in place of
	# the real one to show that the proxy refuses what the module cannot vouch for.
	rm -rf "$BUILD/kmod-eio"
	cp -r "$BUILD/kmod" "$BUILD/kmod-eio"
	make -s -C "$BUILD/kmod-eio" KDIR="$kdir" CC=gcc-12 clean >&2
	make -s -C "$BUILD/kmod-eio" KDIR="$kdir" CC=gcc-12 IDGATE_FAULT=eio >&2
}

# busybox-static, unpacked into the cache (the host's busybox is left alone).
fetch_busybox() {
	if [ "$ARCH" = arm64 ]; then
		fetch_arm64_userland
		return
	fi
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

# arm64 guests: busybox, iproute2 and nftables with their libraries, from
# bookworm's arm64 packages (dependency closure as apt resolves it on an empty
# system), unpacked into $CACHE/arm64-userland once.
fetch_arm64_userland() {
	local d=$CACHE/arm64-userland
	BUSYBOX=$d/root/bin/busybox
	USERLAND=$d/root
	[ -e "$d/.ready" ] && return
	PAPT_SUITES=$(sed -n 's/^suites=//p' "$ROOT/kmod/matrix/window.conf")
	papt_setup
	rm -rf "$d"
	mkdir -p "$d/debs" "$d/root"
	local pkgs
	pkgs=$(APT_CONFIG=$PAPT_DIR/apt.conf apt-get install -s -t bookworm --no-install-recommends \
		busybox-static:arm64 iproute2:arm64 nftables:arm64 2>/dev/null |
		awk '/^Inst / && $2 ~ /:arm64$/ { v = $3; gsub(/[()]/, "", v); print $2 "=" v }')
	[ -n "$pkgs" ] || die "cannot resolve arm64 iproute2/nftables"
	log "downloading $(echo "$pkgs" | wc -l) arm64 packages (busybox, iproute2, nftables and libraries)"
	# shellcheck disable=SC2086 # one package=version a line, each an argument
	(cd "$d/debs" && papt_download $pkgs)
	local deb
	for deb in "$d"/debs/*.deb; do dpkg-deb -x "$deb" "$d/root"; done
	rm -rf "$d/debs" "$d/root/usr/share"
	touch "$d/.ready"
}

build_tests() {
	if [ "$ARCH" = arm64 ]; then
		# Cross-compiled in the bookworm chroot (its aarch64 gcc and libc).
		. "$HERE/lib/chroot.sh"
		ensure_chroot bookworm
		rm -rf "$CHROOT/build/vm-test"
		mkdir -p "$CHROOT/build/vm-test"
		cp -r "$HERE/test" "$ROOT/kmod/include/uapi" "$CHROOT/build/vm-test/"
		in_chroot "$CHROOT" sh -c 'cd /build/vm-test && aarch64-linux-gnu-gcc-12 -static -O2 -Wall -Wextra -Werror \
			-Wno-unused-parameter -Iuapi test/*.c -o idgate-test' >&2
		cp "$CHROOT/build/vm-test/idgate-test" "$BUILD/idgate-test"
		return
	fi
	gcc -static -O2 -Wall -Wextra -Werror -Wno-unused-parameter -I"$ROOT/kmod/include/uapi" \
		"$HERE"/test/*.c -o "$BUILD/idgate-test"
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
	awk -v want="crc32c_generic veth nf_tables nft_chain_nat nft_redir nft_ct nft_reject_inet nft_socket nft_fib_inet nf_nat nf_conntrack nf_conntrack_netlink inet_diag tcp_diag overlay" '
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
	install -m 0755 "$HERE/guest/churn.sh" "$IR/etc/idgate/churn.sh"
	install -m 0644 "$HERE/guest/proxy-lib.sh" "$IR/etc/idgate/proxy-lib.sh"
	install -m 0644 "$ROOT/kmod/debug/kmemleak.supp" "$IR/etc/idgate/kmemleak.supp"
	install -m 0755 "$BUILD/idgate-test" "$IR/bin/idgate-test"
	# Separate files, so flows come from distinct executables.
	install -m 0755 "$BUILD/idgate-test" "$IR/bin/idg-client-a"
	install -m 0755 "$BUILD/idgate-test" "$IR/bin/idg-client-b"
	install -m 0644 "$KO" "$IR/lib/modules/idgate.ko"
	[ -e "$BUILD/kmod-eio/idgate.ko" ] && [ "${KO#"$BUILD"}" != "$KO" ] &&
		install -m 0644 "$BUILD/kmod-eio/idgate.ko" "$IR/lib/modules/idgate-eio.ko"
	if [ "$ARCH" = arm64 ]; then
		# The arm64 packages' libraries and loader, and their ip and nft.
		local dir
		for dir in lib usr/lib; do
			[ -d "$USERLAND/$dir" ] && mkdir -p "$IR/$dir" && cp -a "$USERLAND/$dir/." "$IR/$dir/"
		done
		# shellcheck disable=SC2012 # the first of fixed paths that exists
		install -m 0755 "$(ls "$USERLAND"/bin/ip "$USERLAND"/sbin/ip "$USERLAND"/usr/bin/ip "$USERLAND"/usr/sbin/ip 2>/dev/null | head -n1)" "$IR/usr/sbin/ip"
		# shellcheck disable=SC2012 # the first of fixed paths that exists
		install -m 0755 "$(ls "$USERLAND"/usr/sbin/nft "$USERLAND"/sbin/nft 2>/dev/null | head -n1)" "$IR/usr/sbin/nft"
	else
		copy_with_libs "$(command -v ip)" /usr/sbin/ip
		copy_with_libs "$(command -v nft)" /usr/sbin/nft
	fi
	# The proxy binaries are the host's (amd64): not for an arm64 guest.
	[ "$ARCH" = arm64 ] && unset IDGATE_BIN IDGATE_EXTRA_BINS
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
	case "$HOOKS" in
	0) ;;
	1) for t in "$HERE"/guest-tests.d/*.sh; do install -m 0755 "$t" "$IR/etc/idgate/guest-tests.d/"; done ;;
	*) for t in $HOOKS; do install -m 0755 "$HERE/guest-tests.d/$t.sh" "$IR/etc/idgate/guest-tests.d/"; done ;;
	esac
	: > "$IR/lib/modules/load.list"
	if [ -n "$KROOT" ]; then
		for m in $(module_order); do
			# Compressed modules (6.12) are unpacked: busybox insmod reads plain ELF.
			case "$m" in
			*.ko.xz) mkdir -p "$(dirname "$IR/lib/modules/$KREL/${m%.xz}")"
				xz -dc "$KROOT/lib/modules/$KREL/$m" > "$IR/lib/modules/$KREL/${m%.xz}"; m=${m%.xz} ;;
			*.ko.zst) mkdir -p "$(dirname "$IR/lib/modules/$KREL/${m%.zst}")"
				zstd -qdc "$KROOT/lib/modules/$KREL/$m" > "$IR/lib/modules/$KREL/${m%.zst}"; m=${m%.zst} ;;
			*) install -D -m 0644 "$KROOT/lib/modules/$KREL/$m" "$IR/lib/modules/$KREL/$m" ;;
			esac
			echo "/lib/modules/$KREL/$m" >> "$IR/lib/modules/load.list"
		done
	fi
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
	[ -w /dev/kvm ] && [ "$ARCH" = amd64 ] || return 0
	if timeout 15 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic -no-reboot \
		-kernel "$KIMG" -append "console=ttyS0 panic=-1 rdinit=/none init=/none" \
		</dev/null 2>&1 | grep -q 'Kernel panic'; then
		ACCEL=kvm
	fi
}

run_vm() {
	local cpu=max rc=0 qpid
	CONSOLE=$CACHE/build/console-$TAG.log
	[ "${ACCEL%%,*}" = kvm ] && cpu=host
	log "booting $KREL under qemu ($ACCEL, $SMP cpus, timeout ${TIMEOUT}s); console log: $CONSOLE"
	VM_START=$(now)
	: > "$CONSOLE"
	local qemu=(qemu-system-x86_64 -cpu "$cpu") tty=ttyS0
	# arm64: the virt board, its PL011 serial, a Cortex-A57 (TCG).
	[ "$ARCH" = arm64 ] && qemu=(qemu-system-aarch64 -M virt -cpu cortex-a57) tty=ttyAMA0
	timeout --foreground -k 10 "$TIMEOUT" "${qemu[@]}" -accel "$ACCEL" -smp "$SMP" -m 1G \
		-nodefaults -display none -serial stdio -no-reboot \
		-kernel "$KIMG" -initrd "$BUILD/initramfs.gz" \
		-append "console=$tty panic=-1 loglevel=5 $APPEND idgtest_flood=$FLOOD idgtest_churn=$CHURN idgtest_bench=$BENCH" \
		</dev/null > "$CONSOLE" 2>&1 &
	qpid=$!
	# The console as it comes (PASS/FAIL and result lines only with IDGATE_VM_QUIET=1).
	if [ "${IDGATE_VM_QUIET:-0}" = 1 ]; then
		tail -n +1 -f --pid=$qpid "$CONSOLE" | sed -u 's/\r$//' | grep --line-buffered -E '^(PASS|FAIL|vm|churn|storm|flood|proxy|bench): ' &
	else
		tail -n +1 -f --pid=$qpid "$CONSOLE" &
	fi
	# A report before the suite starts is the kernel's own (the module is not
	# loaded yet, and lockdep turns itself off after one): boot again. With a
	# planted use-after-free or lock, stop 20 s after the first report (a held
	# lock hangs the suite; a use-after-free repeats on every lookup). A leak
	# runs to the end, where kmemleak scans.
	local seen=
	BOOT_REPORT=
	while kill -0 $qpid 2>/dev/null; do
		sleep 2
		if ! grep -q '^vm: booted' "$CONSOLE" && ! detect_boot_reports "$CONSOLE" >/dev/null; then
			BOOT_REPORT=1
			kill $qpid 2>/dev/null || true
			break
		fi
		if { [ "$FAULT" = uaf ] || [ "$FAULT" = lock ]; } && [ -z "$seen" ] && ! detect_reports "$CONSOLE" >/dev/null; then
			seen=$(now)
			log "planted fault reported; stopping the VM in 20 s"
		fi
		if [ -n "$seen" ] && [ "$(since "$seen" | cut -d. -f1)" -ge 20 ]; then
			kill $qpid 2>/dev/null || true
			break
		fi
	done
	wait $qpid || rc=$?
	wait || true
	VM_SECS=$(since "$VM_START")
	[ -n "$seen" ] && rc=0
	return $rc
}

# Returns 0 only for a clean run; prints each kernel report with its detector.
check_console() {
	local bad=0 summary reports
	reports=$(DETECT_IGNORE=$ROOT/kmod/debug/kcsan.supp detect_reports "$CONSOLE" || true)
	if [ -n "$reports" ]; then
		# shellcheck disable=SC2001 # a prefix on every line of it
		echo "$reports" | sed 's/^/vm-harness: report: /' >&2
		log "kernel reports by detector: $(echo "$reports" | cut -d: -f1 | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')"
		bad=1
	fi
	summary=$(tr -d '\r' < "$CONSOLE" | grep -E '^vm: [0-9]+ passed, [0-9]+ failed' | tail -n1 || true)
	if [ -z "$summary" ]; then
		log "no summary line: the VM did not finish (timeout, crash or stopped after a report)"
		bad=1
	elif ! echo "$summary" | grep -q ', 0 failed'; then
		bad=1
	fi
	tr -d '\r' < "$CONSOLE" | grep '^FAIL:' >&2 || true
	log "${summary:-no result}; VM ran ${VM_SECS}s ($ACCEL)"
	return $bad
}

main() {
	local t0 rc=0
	t0=$(now)
	mkdir -p "$CACHE" "$BUILD"
	ARCH=amd64
	ensure_tools
	resolve_kernel
	[ "$ARCH" = amd64 ] || ensure_tools
	fetch_busybox
	# A planted fault must never reach a normal run, and only a fault run has one.
	if [ -n "$(modinfo -F planted_fault "$KO")" ] && [ -z "$FAULT" ]; then die "$KO has a planted fault"; fi
	log "kernel $KREL ($KERNEL${FAULT:+, planted fault $FAULT}); preparing took $(since "$t0")s"
	t0=$(now)
	build_tests
	build_initramfs
	log "tests and initramfs built in $(since "$t0")s"
	if [ "${IDGATE_VM_PREPARE_ONLY:-0}" = 1 ]; then
		log "prepared (IDGATE_VM_PREPARE_ONLY=1): not booting"
		return 0
	fi
	choose_accel
	local attempt=1
	while :; do
		rc=0
		run_vm || rc=$?
		if [ -z "$BOOT_REPORT" ] || [ "$attempt" -ge 3 ]; then break; fi
		log "kernel report while booting, before the suite (idgate not loaded yet): $(detect_boot_reports "$CONSOLE" | head -n1)"
		cp "$CONSOLE" "$CONSOLE.boot-report-$attempt"
		log "booting again (attempt $((attempt + 1)) of 3; that console is kept as $CONSOLE.boot-report-$attempt)"
		attempt=$((attempt + 1))
	done
	[ "$rc" = 124 ] && log "qemu timed out after ${TIMEOUT}s"
	check_console || rc=1
	if [ "$rc" = 0 ]; then log "PASS"; else log "FAIL"; fi
	return $rc
}

main "$@"; exit $?
