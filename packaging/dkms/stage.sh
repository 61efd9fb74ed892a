#!/usr/bin/env bash
# Copies the kernel module sources and a versioned dkms.conf into DEST (the package's
# /usr/src/idgate-<v>): shared by the .deb and .rpm builds. With ROOT, also the
# modules-load.d entry under ROOT (the package's root).
# Usage: packaging/dkms/stage.sh DEST VERSION [ROOT]
set -euo pipefail
dest=$1 version=$2 root=${3:-}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$dest"
cp -r "$repo/kmod/Kbuild" "$repo/kmod/Makefile" "$repo"/kmod/*.c "$repo"/kmod/*.h "$repo/kmod/include" "$dest/"
sed "s/@VERSION@/$version/" "$repo/packaging/dkms/dkms.conf" > "$dest/dkms.conf"
if [ -n "$root" ]; then
	install -D -m 0644 "$repo/packaging/dkms/modules-load.conf" "$root/usr/lib/modules-load.d/idgate.conf"
fi
