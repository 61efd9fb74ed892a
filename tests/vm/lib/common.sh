# shellcheck shell=bash
# Shared helpers of the VM harness scripts (sourced, not run).
# Cache layout under $CACHE (default /var/cache/idgate-vm), every entry keyed by
# what it was made from; nothing is written into the work tree.
CACHE=${IDGATE_VM_CACHE:-/var/cache/idgate-vm}
export DEBIAN_FRONTEND=noninteractive
export PATH=$PATH:/usr/sbin:/sbin

log() { echo "${LOG_TAG:-vm-harness}: $*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

APT_UPDATED=
apt_update() {
	[ -n "$APT_UPDATED" ] && return
	log "apt-get update"
	apt-get update -qq >&2
	APT_UPDATED=1
}

# Install Debian packages on the host, but never at the price of removing one
# the user has: simulate first and stop with the list if apt would remove any.
apt_install_safe() {
	local removals
	apt_update
	removals=$(apt-get install -s --no-install-recommends "$@" 2>/dev/null | awk '/^Remv / { print $2 }' | tr '\n' ' ')
	if [ -n "$removals" ]; then
		die "installing $* would remove $removals; install it by hand in a way that keeps them (see README, Kernel support)"
	fi
	log "installing $*"
	apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Debian mirrors the host already uses (URIs: of debian.sources, or deb
# lines of sources.list): debian_mirror for the main archive, with
# "security" for the security archive. The private apt configuration below
# and debootstrap use the same ones, so no host name is written anywhere.
debian_mirror() {
	local want=${1:-main} uri
	uri=$( { awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null; } |
		if [ "$want" = security ]; then grep security; else grep -v security; fi | head -n1)
	[ -n "$uri" ] || die "no Debian $want mirror in the host's apt sources"
	echo "${uri%/}"
}

# A private apt configuration with the suites the support matrix covers, under
# $CACHE/apt. It never touches the host's sources, lists or preferences, so the
# host cannot be upgraded by it; it is used for apt-cache queries and downloads.
PAPT_DIR=$CACHE/apt
PAPT_SUITES="bookworm bookworm-security bookworm-backports trixie trixie-security"
papt_setup() {
	local mirror security s m
	mirror=$(debian_mirror)
	security=$(debian_mirror security)
	mkdir -p "$PAPT_DIR"/{lists/partial,cache/archives/partial,etc/preferences.d}
	: > "$PAPT_DIR/etc/sources.list.new"
	for s in $PAPT_SUITES; do
		case "$s" in *-security) m=$security ;; *) m=$mirror ;; esac
		echo "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $m $s main" >> "$PAPT_DIR/etc/sources.list.new"
	done
	mv "$PAPT_DIR/etc/sources.list.new" "$PAPT_DIR/etc/sources.list"
	: > "$PAPT_DIR/status"
	mkdir -p "$PAPT_DIR/etc/sources.list.d"
	# Read through APT_CONFIG by apt-get, apt-cache and the matrix generator alike.
	cat > "$PAPT_DIR/apt.conf" <<CONF
Dir::Etc::SourceList "$PAPT_DIR/etc/sources.list";
Dir::Etc::SourceParts "$PAPT_DIR/etc/sources.list.d";
Dir::Etc::Preferences "$PAPT_DIR/etc/preferences";
Dir::Etc::PreferencesParts "$PAPT_DIR/etc/preferences.d";
Dir::State::Lists "$PAPT_DIR/lists";
Dir::State::status "$PAPT_DIR/status";
Dir::Cache "$PAPT_DIR/cache";
APT::Architectures { "amd64"; "arm64"; };
APT::Sandbox::User "root";
Debug::NoLocking "1";
Acquire::PDiffs "false";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";
CONF
	# Refreshed at most every 6 hours (CI runs reuse the lists of the last run).
	if [ -z "$(find "$PAPT_DIR/lists" -maxdepth 1 -name '*_Packages*' -mmin -360 2>/dev/null | head -n1)" ] ||
		[ "$(find "$PAPT_DIR/lists" -maxdepth 1 -name '*_binary-*_Packages*' | wc -l)" -lt $(( $(echo "$PAPT_SUITES" | wc -w) * 2 )) ]; then
		log "apt-get update (private configuration: $PAPT_SUITES)"
		APT_CONFIG=$PAPT_DIR/apt.conf apt-get update -qq >&2
	fi
}
papt_cache() { APT_CONFIG=$PAPT_DIR/apt.conf apt-cache "$@"; }
# Download packages (NAME=VERSION or NAME:ARCH=VERSION) into the current directory.
papt_download() { APT_CONFIG=$PAPT_DIR/apt.conf apt-get download -q "$@" >&2; }

# sha256 of stdin, short.
hash_of() { sha256sum | cut -c1-16; }
