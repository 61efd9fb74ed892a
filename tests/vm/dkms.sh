#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# tests/vm/dkms.sh - install the idgate-dkms and idgate .debs into a bookworm
# chroot that has a target kernel's headers and a kernel tree that cannot
# build anything: the package must build and install idgate.ko for the first,
# report the second without failing, set the module to load at boot, and
# leave a working idgate either way. Needs packaging/deb/build.sh's output
# (run after cargo build --release). Prints PASS/FAIL lines.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=dkms
. "$HERE/lib/common.sh"
. "$HERE/lib/chroot.sh"
TARGET=${IDGATE_DKMS_TARGET:-}
PASSED=0 FAILED=0
pass() { echo "PASS: dkms: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: dkms: $*"; FAILED=$((FAILED + 1)); }

# The newest bookworm amd64 target of the matrix, unless one is named.
[ -n "$TARGET" ] || TARGET=$(python3 -c '
import json, sys
ts = [t for t in json.load(open(sys.argv[1]))["targets"] if t["toolchain"] == "bookworm" and t["flavour"] == "amd64" and t["line"] == "6.1"]
print(ts[-1]["id"] if ts else "")' "$ROOT/kmod/matrix/targets.json")
[ -n "$TARGET" ] || die "no bookworm amd64 target in the matrix"
read -r REL PKGS < <(python3 -c '
import json, sys
t = next(t for t in json.load(open(sys.argv[1]))["targets"] if t["id"] == sys.argv[2])
print(t["release"], " ".join(t["packages"]))' "$ROOT/kmod/matrix/targets.json" "$TARGET")

ls "$ROOT"/packaging/deb/out/idgate-dkms_*_all.deb "$ROOT"/packaging/deb/out/idgate_*.deb >/dev/null 2>&1 ||
	bash "$ROOT/packaging/deb/build.sh" >/dev/null

# A chroot of its own (dkms and idgate's libraries added to the build chroot's
# packages), cached; each run works in a fresh copy.
ensure_chroot bookworm
BASE=$CHROOT
DK=$CACHE/chroot/dkms-$(basename "$BASE")
if [ ! -e "$DK/.ready" ]; then
	log "preparing the dkms chroot (once)"
	rm -rf "$DK" "$DK.tmp"
	cp -a "$BASE" "$DK.tmp"
	rm -rf "$DK.tmp/trees" "$DK.tmp/build"
	in_chroot "$DK.tmp" apt-get install -y -qq --no-install-recommends dkms kmod libnftnl11 libmnl0 nftables >/dev/null 2>&1 ||
		die "installing dkms into the chroot failed"
	in_chroot "$DK.tmp" apt-get clean
	mv "$DK.tmp" "$DK"
	touch "$DK/.ready"
fi
R=$CACHE/dkms-run
rm -rf "$R"
cp -a "$DK" "$R"
# dkms wants /proc and /dev/fd (process substitution) as on a host.
cleanup() {
	umount "$R/dev/pts" "$R/dev" "$R/proc" 2>/dev/null || true
	# Never delete through a mount that is still there (it would be the host's /dev).
	if grep -q " $R/" /proc/mounts; then
		log "warning: mounts left under $R; not removing it"
	else
		rm -rf "$R"
	fi
}
trap cleanup EXIT
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mount --bind /dev/pts "$R/dev/pts"

# The target's headers, installed the way a host has them.
PAPT_SUITES=$(sed -n 's/^suites=//p' "$ROOT/kmod/matrix/window.conf")
mkdir -p "$CACHE/matrix/debs" "$R/tmp/debs"
for p in $PKGS; do
	name=${p%%:*}; arch=${p#*:}; arch=${arch%%=*}; ver=${p#*=}
	deb=$CACHE/matrix/debs/${name}_${ver#*:}_${arch}.deb
	[ -e "$deb" ] || { papt_setup; (cd "$CACHE/matrix/debs" && papt_download "$p"); }
	cp "$deb" "$R/tmp/debs/"
done
in_chroot "$R" sh -c 'dpkg -i --force-depends /tmp/debs/*.deb' >/dev/null 2>&1 || true
# (build is an absolute link: look at it from inside.)
[ -e "$R/usr/src/linux-headers-$REL/Makefile" ] || die "headers of $REL did not install"
# A kernel the module cannot build for (its tree fails every make).
mkdir -p "$R/lib/modules/0.0.0-broken/build"
printf 'modules clean:\n\t@echo "this kernel tree builds nothing" >&2; exit 2\n' > "$R/lib/modules/0.0.0-broken/build/Makefile"

cp "$ROOT"/packaging/deb/out/idgate-dkms_*_all.deb "$ROOT"/packaging/deb/out/idgate_*.deb "$R/tmp/"
log "installing idgate-dkms (builds idgate.ko for $REL)"
if out=$(in_chroot "$R" sh -c 'dpkg -i /tmp/idgate-dkms_*_all.deb' 2>&1); then
	pass "idgate-dkms installs (one kernel builds, one cannot)"
else
	fail "dpkg -i idgate-dkms failed: $out"
fi
# shellcheck disable=SC2001 # a prefix on every line of it
echo "$out" | sed 's/^/dkms: /'
ko=$R/lib/modules/$REL/updates/dkms/idgate.ko
[ -e "$ko" ] || ko=$ko.xz
if [ -e "$ko" ] && [ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$REL" ]; then
	pass "idgate.ko installed for $REL ($(basename "$ko"), vermagic $REL)"
else
	fail "no idgate.ko for $REL under /lib/modules/$REL/updates/dkms"
fi
[ -z "$(modinfo -F planted_fault "$ko" 2>/dev/null)" ] && pass "the packaged module has no planted fault" || fail "planted fault in the packaged module"
echo "$out" | grep -q "does not build for 0.0.0-broken" && pass "the kernel it cannot build for is reported" ||
	fail "the failed build is not reported"
grep -qx idgate "$R/usr/lib/modules-load.d/idgate.conf" && pass "modules-load.d loads idgate at boot" ||
	fail "no /usr/lib/modules-load.d/idgate.conf"
in_chroot "$R" dkms status 2>/dev/null | grep -q "idgate/.*, $REL, .*installed" && pass "dkms status: installed for $REL" ||
	fail "dkms status: $(in_chroot "$R" dkms status 2>&1)"

if out=$(in_chroot "$R" sh -c 'dpkg -i --force-depends /tmp/idgate_*.deb && idgate check -c /etc/idgate/idgate.toml' 2>&1); then
	pass "idgate installs and its packaged config checks next to the dkms package"
else
	fail "idgate does not work next to idgate-dkms: $out"
fi
grep -q '^ExecStartPre=-+/sbin/modprobe -q idgate' "$R/lib/systemd/system/idgate.service" &&
	pass "the unit loads idgate.ko before starting (failure ignored: procfs then)" || fail "the unit does not modprobe idgate"

in_chroot "$R" dpkg --purge idgate-dkms >/dev/null 2>&1 || true
[ ! -e "$ko" ] && pass "removing idgate-dkms removes the module" || fail "module left after removal"
echo "dkms: $PASSED passed, $FAILED failed"
[ $FAILED = 0 ]
