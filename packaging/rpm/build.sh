#!/usr/bin/env bash
# Builds two RPM packages into packaging/rpm/out/ from idgate.spec:
#   idgate-<v>-1.<arch>.rpm        the proxy, its systemd unit, /etc/idgate/idgate.toml (%config)
#   idgate-dkms-<v>-1.noarch.rpm   the kernel module sources, built by DKMS for each kernel
# Usage: packaging/rpm/build.sh   (after cargo build --release; needs rpmbuild: apt install rpm)
# Build on the distribution the package is for: the binary links that system's glibc and
# libnftnl, and rpmbuild records those libraries as the package's dependencies.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v rpmbuild >/dev/null || { echo "build.sh: rpmbuild missing (Debian/Ubuntu: apt install rpm)" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -x target/release/idgate ] || { echo "build.sh: target/release/idgate missing: cargo build --release first" >&2; exit 1; }
out=$PWD/packaging/rpm/out
rm -rf "$out" && mkdir -p "$out"
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "idgate_version $version" \
    --define "idgate_tree $PWD" \
    packaging/rpm/idgate.spec
ls "$out"
