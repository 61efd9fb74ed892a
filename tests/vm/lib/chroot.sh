# shellcheck shell=bash
# Build chroots of the suites in the support window (sourced after common.sh).
# One debootstrap --variant=minbase tree per toolchain suite, with that suite's
# compiler (native and aarch64 cross), make, libelf and pahole (BTF of 6.12
# modules): a trixie kernel wants trixie's gcc-14, which the bookworm host
# must not pull in. Cached under $CACHE/chroot/<suite>-<hash of the package
# list and CHROOT_RECIPE> (bump the recipe when the way a chroot is made changes).
CHROOT_RECIPE=1
# shellcheck disable=SC2034 # read through ${!var} below
CHROOT_PKGS_bookworm="make libelf-dev dwarves gcc-12 gcc-12-aarch64-linux-gnu libc6-dev libc6-dev-arm64-cross"
# shellcheck disable=SC2034 # read through ${!var} below
CHROOT_PKGS_trixie="make libelf-dev dwarves gcc-14 gcc-14-aarch64-linux-gnu libc6-dev libc6-dev-arm64-cross"

# Sets CHROOT to the ready tree of suite $1, creating it if needed.
ensure_chroot() {
	local suite=$1 pkgs var key tmp t0
	var=CHROOT_PKGS_$suite
	pkgs=${!var:?no package list for suite $suite}
	key=$(echo "$suite $pkgs recipe $CHROOT_RECIPE" | hash_of)
	CHROOT=$CACHE/chroot/$suite-$key
	[ -e "$CHROOT/.ready" ] && return
	command -v debootstrap >/dev/null || apt_install_safe debootstrap
	t0=$(now)
	tmp=$CHROOT.tmp
	rm -rf "$tmp"
	mkdir -p "$CACHE/chroot"
	log "debootstrap --variant=minbase $suite into $CHROOT (a few minutes, once)"
	debootstrap --variant=minbase --include="${pkgs// /,}" "$suite" "$tmp" "$(debian_mirror)" > "$CACHE/chroot/$suite-$key.log" 2>&1 ||
		{ tail -n 20 "$CACHE/chroot/$suite-$key.log" >&2; die "debootstrap $suite failed"; }
	rm -rf "$tmp"/var/cache/apt/archives/*.deb
	mv "$tmp" "$CHROOT"
	touch "$CHROOT/.ready"
	log "chroot $suite ready in $(since "$t0")s"
}

# Run a command in the chroot of suite $1 (no /proc or /dev needed by kbuild).
in_chroot() {
	local root=$1
	shift
	chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LC_ALL=C.UTF-8 "$@"
}
