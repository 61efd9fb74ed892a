#!/usr/bin/env bash
# Builds two Debian packages into packaging/deb/out/:
#   idgate_<v>_<arch>.deb      the proxy, its systemd unit and /etc/idgate/idgate.toml (conffile)
#   idgate-dkms_<v>_all.deb    the kernel module sources, built by DKMS for each installed kernel
# Usage: packaging/deb/build.sh   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=packaging/deb/out
rm -rf "$out" && mkdir -p "$out"
bin=target/release/idgate
[ -x "$bin" ] || { echo "build.sh: $bin missing: cargo build --release first" >&2; exit 1; }

# --- idgate
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root" "${dkms_root:-}"' EXIT
install -D -m 0755 "$bin" "$root/usr/bin/idgate"
strip --strip-debug "$root/usr/bin/idgate"   # the release profile keeps symbols for profiling
install -D -m 0644 configs/idgate.toml "$root/etc/idgate/idgate.toml"
install -D -m 0644 packaging/systemd/idgate.service "$root/lib/systemd/system/idgate.service"
install -D -m 0644 packaging/systemd/idgate-guard.service "$root/lib/systemd/system/idgate-guard.service"
install -D -m 0644 README.md "$root/usr/share/doc/idgate/README.md"
install -D -m 0644 packaging/sysctl/60-idgate.conf "$root/usr/lib/sysctl.d/60-idgate.conf"
# Man pages and completions, generated from the binary's own command line definition.
docs=$(mktemp -d)
"$bin" generate-docs --dir "$docs" >/dev/null
install -d "$root/usr/share/man/man1"
for page in "$docs"/man/man1/*.1; do gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"; done
install -D -m 0644 "$docs/completions/idgate.bash" "$root/usr/share/bash-completion/completions/idgate"
install -D -m 0644 "$docs/completions/_idgate" "$root/usr/share/zsh/vendor-completions/_idgate"
install -D -m 0644 "$docs/completions/idgate.fish" "$root/usr/share/fish/vendor_completions.d/idgate.fish"
rm -rf "$docs"
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CTL
Package: idgate
Version: $version
Architecture: $arch
Maintainer: idgate developers <dev@idgate.invalid>
Depends: libc6 (>= 2.34), libnftnl11 (>= 1.2.4), libmnl0, nftables
Recommends: idgate-dkms, ca-certificates
Section: net
Priority: optional
Description: transparent mTLS proxy with per-process SPIFFE identities
 Intercepts selected outbound TCP flows with nftables, identifies the process that
 opened each one, and tunnels it over pooled HTTP/2 CONNECT + mutual TLS 1.3 to the
 peer host's idgate, which authorizes the caller's SPIFFE ID.
CTL
echo /etc/idgate/idgate.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
sysctl -q --load=/usr/lib/sysctl.d/60-idgate.conf 2>/dev/null || true
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ -z "$2" ]; then
		systemctl enable idgate-guard.service idgate.service >/dev/null
		echo "idgate: edit /etc/idgate/idgate.toml, then: systemctl start idgate"
	elif systemctl is-active -q idgate.service; then
		# An upgrade: the new binary takes over new flows, open ones finish on the old one.
		/usr/bin/idgate upgrade -c /etc/idgate/idgate.toml || systemctl restart idgate.service
	fi
fi
SH
cat > "$root/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
# An upgrade leaves the running idgate alone: postinst hands over to the new binary.
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl stop idgate.service || true
	systemctl disable idgate.service idgate-guard.service >/dev/null || true
fi
# The table outlives idgate on purpose (flows refused, never plaintext) until the package
# goes: then, and only then, the redirect is removed.
if [ "$1" = remove ]; then
	/usr/bin/idgate uninstall -c /etc/idgate/idgate.toml || true
fi
SH
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"
dpkg-deb --root-owner-group --build "$root" "$out/idgate_${version}_${arch}.deb" >/dev/null

# --- idgate-dkms
dkms_root=$(mktemp -d)
chmod 0755 "$dkms_root"
src="$dkms_root/usr/src/idgate-$version"
mkdir -p "$dkms_root/DEBIAN"
bash packaging/dkms/stage.sh "$src" "$version" "$dkms_root"
cat > "$dkms_root/DEBIAN/control" <<CTL
Package: idgate-dkms
Version: $version
Architecture: all
Maintainer: idgate developers <dev@idgate.invalid>
Depends: dkms, kmod
Section: kernel
Priority: optional
Description: idgate kernel module (DKMS)
 idgate.ko records the process that opened each outbound TCP flow at SYN time and
 tags the flow for idgate's redirect; /dev/idgate answers the proxy's lookups.
CTL
{
	echo '#!/bin/sh'
	echo '[ "$1" = configure ] || exit 0'
	sed "s/@VERSION@/$version/" packaging/dkms/postinst.sh
} > "$dkms_root/DEBIAN/postinst"
cat > "$dkms_root/DEBIAN/prerm" <<SH
#!/bin/sh
set -e
dkms remove -m idgate -v $version --all || true
SH
chmod 0755 "$dkms_root/DEBIAN/postinst" "$dkms_root/DEBIAN/prerm"
dpkg-deb --root-owner-group --build "$dkms_root" "$out/idgate-dkms_${version}_all.deb" >/dev/null
ls "$out"
