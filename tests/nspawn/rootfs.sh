#!/usr/bin/env bash
# Prints the path of a Debian 12 root file system that boots with systemd under
# `systemd-nspawn -b`, with what idgate's package needs installed (its dependencies, nftables,
# procps) and what the test runs inside (python3, iproute2, rpm for the .rpm's scriptlets).
# Made once with debootstrap (a few minutes, downloads about 60 MB with apt's archive) and
# cached under /var/cache/idgate-nspawn by the hash of its inputs; never changed after.
# Usage: tests/nspawn/rootfs.sh   (as root; needs debootstrap)
set -euo pipefail
suite=bookworm
packages=systemd,systemd-sysv,dbus,nftables,iproute2,procps,python3,libnftnl11,libmnl0,ca-certificates,rpm,less
# The archive apt on this machine uses (deb822 sources first, then sources.list).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "rootfs.sh: no Debian archive in apt's sources" >&2; exit 1; }
# The recipe's inputs name the cache entry: change one and a new root is made.
recipe=1
key=$(printf '%s\n' "$suite" "$packages" minbase "$recipe" | sha256sum | cut -c1-16)
cache=/var/cache/idgate-nspawn
root=$cache/root-$suite-$key
if [ ! -e "$root/.complete" ]; then
	echo "rootfs: debootstrap $suite ($packages) into $root: a few minutes, once" >&2
	mkdir -p "$cache"
	rm -rf "$root.partial"
	debootstrap --variant=minbase --include="$packages" "$suite" "$root.partial" "$mirror" > "$cache/debootstrap-$key.log" 2>&1 \
		|| { echo "rootfs: debootstrap failed, see $cache/debootstrap-$key.log" >&2; exit 1; }
	# Machine id at first boot of each copy; a root password nobody needs (nsenter is used).
	: > "$root.partial/etc/machine-id"
	rm -f "$root.partial/var/cache/apt/archives/"*.deb
	touch "$root.partial/.complete"
	mv "$root.partial" "$root"
fi
echo "$root"
