#!/usr/bin/env bash
# Builds two RPM packages into packaging/rpm/out/ from idgate.spec:
#   idgate-<v>-1.<arch>.rpm        the proxy, its systemd units and preset, the sysctl it
#                                  needs, /etc/idgate/idgate.toml (%config(noreplace), minimal)
#   idgate-dkms-<v>-1.noarch.rpm   the kernel module sources, built by DKMS for each kernel
# from the binary built before (cargo build --release, or IDGATE_BIN). IDGATE_RPM_VERSION
# overrides the version, IDGATE_PKG_OUT the output directory. Needs rpmbuild (Debian: apt install rpm). Build on the distribution
# the package is for: the binary links that system's glibc, and rpmbuild records
# those libraries as the package's dependencies. Where systemd-rpm-macros is missing (on
# Debian) the macros come from macros.fallback and build dependencies are not checked.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v rpmbuild >/dev/null || { echo "build.sh: rpmbuild missing (Debian/Ubuntu: apt install rpm)" >&2; exit 1; }
version=${IDGATE_RPM_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
bin=$(realpath "${IDGATE_BIN:-target/release/idgate}")
[ -x "$bin" ] || { echo "build.sh: $bin missing: cargo build --release first" >&2; exit 1; }
out=$(realpath -m "${IDGATE_PKG_OUT:-packaging/rpm/out}")
rm -rf "$out" && mkdir -p "$out"
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
extra=()
if [ -z "$(rpm --eval '%{?systemd_post:yes}')" ]; then
    extra=(--load "$PWD/packaging/rpm/macros.fallback" --nodeps)
fi
stamp=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
rpmbuild -bb --quiet "${extra[@]}" \
    --define "_topdir $top" \
    --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "idgate_version $version" \
    --define "idgate_bin $bin" \
    --define "idgate_tree $PWD" \
    --define "idgate_commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --define "idgate_changelog_date $(LC_ALL=C date -u -d "@$stamp" '+%a %b %d %Y')" \
    packaging/rpm/idgate.spec
ls "$out"
