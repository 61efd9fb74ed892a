#!/usr/bin/env bash
# Builds the Debian packages with debhelper into packaging/deb/out/:
#   idgate_<v>_<arch>.deb    the proxy, its systemd units (idgate.service, the boot guard
#                            idgate-guard.service), /etc/idgate/idgate.toml (a minimal
#                            conffile), man pages, completions, the sysctl it needs
#   idgate-dkms_<v>_all.deb  the kernel module's sources, built by DKMS for each kernel
# from the binary built before (cargo build --release, or IDGATE_BIN). IDGATE_DEB_VERSION
# overrides the version (Cargo.toml's), for a newer build of the same sources;
# IDGATE_PKG_OUT the output directory.
# Needs debhelper and dh-dkms (tests/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
version=${IDGATE_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
bin=${IDGATE_BIN:-target/release/idgate}
[ -x "$bin" ] || { echo "build.sh: $bin missing: cargo build --release first" >&2; exit 1; }
command -v dh_dkms >/dev/null || { echo "build.sh: debhelper and dh-dkms missing (apt install debhelper dh-dkms)" >&2; exit 1; }
out=${IDGATE_PKG_OUT:-packaging/deb/out}
rm -rf "$out" && mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/idgate-$version
mkdir -p "$src"
cp -r packaging/debian "$src/debian"
install -D -m 0644 README.md "$src/README.md"
install -D -m 0644 configs/idgate.toml "$src/configs/idgate.toml"
# What the package installs, as an upstream `make install` would lay it out (in stage/:
# dh_prep empties debian/tmp; debian/rules points dh_install there).
tmp=$src/stage
install -D -m 0755 "$bin" "$tmp/usr/bin/idgate"
install -D -m 0644 packaging/conffile/idgate.toml "$tmp/etc/idgate/idgate.toml"
install -D -m 0644 packaging/systemd/idgate.service "$tmp/lib/systemd/system/idgate.service"
install -D -m 0644 packaging/systemd/idgate-guard.service "$tmp/lib/systemd/system/idgate-guard.service"
install -D -m 0644 packaging/sysctl/60-idgate.conf "$tmp/usr/lib/sysctl.d/60-idgate.conf"
# Man pages and completions, generated from the binary's own command line definition.
"$bin" generate-docs --dir "$work/docs" >/dev/null
mkdir -p "$tmp/man"
cp "$work"/docs/man/man1/*.1 "$tmp/man/"
install -m 0644 packaging/man/idgate.toml.5 "$tmp/man/"
install -D -m 0644 "$work/docs/completions/idgate.bash" "$tmp/usr/share/bash-completion/completions/idgate"
install -D -m 0644 "$work/docs/completions/_idgate" "$tmp/usr/share/zsh/vendor-completions/_idgate"
install -D -m 0644 "$work/docs/completions/idgate.fish" "$tmp/usr/share/fish/vendor_completions.d/idgate.fish"
bash packaging/dkms/stage.sh "$tmp/usr/src/idgate-$version" "$version" "$tmp"
cp "$tmp/usr/src/idgate-$version/dkms.conf" "$src/debian/idgate-dkms.dkms"   # for dh_dkms
cp packaging/logrotate/idgate "$src/debian/idgate.logrotate"                 # for dh_installlogrotate
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat > "$src/debian/changelog" <<CHANGELOG
idgate ($version) unstable; urgency=medium

  * Built from the idgate sources at commit $commit.

 -- idgate developers <dev@idgate.invalid>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}")
CHANGELOG
(cd "$src" && dpkg-buildpackage -b -us -uc > "$work/build.log" 2>&1) || { cat "$work/build.log" >&2; echo "build.sh: dpkg-buildpackage failed" >&2; exit 1; }
cp "$work"/*.deb "$out/"
ls "$out"
