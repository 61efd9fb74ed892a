# shellcheck shell=sh
# Shared by the guest scripts that run the proxy (guest-tests.d/proxy.sh,
# guest-tests.d/failclosed.sh, guest/churn.sh); sourced, installed as
# /etc/idgate/proxy-lib.sh. Needs /bin/idgate and /bin/pingpong.
# shellcheck disable=SC2034 # used by the scripts that source this file
IP=/usr/sbin/ip
in_cli() { nsenter --net=/run/netns/cli "$@"; }
in_srv() { nsenter --net=/run/netns/srv "$@"; }
W=/tmp/proxy
have_proxy() { [ -x /bin/idgate ] && [ -x /bin/pingpong ]; }

proxy_setup() {
	mkdir -p $W
	[ -e /bin/pingpong-a ] || cp /bin/pingpong /bin/pingpong-a
	[ -e /bin/pingpong-b ] || cp /bin/pingpong /bin/pingpong-b
	[ -e $W/ca/ca.pem ] || idgate ca-init --dir $W/ca --trust-domain vm.idgate > /dev/null
}

config() { # $1 = host name, $2 = identity backend; PROXY_EXTRA: more top-level lines,
	# PROXY_WORKLOADS: more [[workload]] tables (ahead of the others: the first match wins)
	cat <<CFG
trust_domain = "vm.idgate"
hostname = "$1"
state_dir = "$W/state-$1"
identity_backend = "$2"
${PROXY_EXTRA:-}
[ca]
source = "files"
cert = "$W/ca/ca.pem"
key = "$W/ca/ca-key.pem"
${PROXY_WORKLOADS:-}
[[workload]]
spiffe_id = "spiffe://vm.idgate/a"
exe = "/bin/pingpong-a"
[[workload]]
spiffe_id = "spiffe://vm.idgate/b"
exe = "/bin/pingpong-b"
[[outbound]]
cidrs = ["10.77.0.0/24"]
ports = [7000]
[[inbound]]
ports = [7000]
allow = ["spiffe://vm.idgate/*"]
CFG
}

start() { # $1 = netns, $2 = host, $3 = backend; sets PID (idgate itself, not a subshell)
	config "$2" "$3" > "$W/$2.toml"
	# A fresh, empty log before the start: the background job opens it later than this shell
	# greps, and a previous instance's "idgate ready" must not pass for this one's.
	: > "$W/$2.log"
	# The tests read decision lines, which idgate logs at debug level.
	RUST_LOG=${RUST_LOG:-info,idgate::decisions=debug} nsenter --net="/run/netns/$1" idgate run -c "$W/$2.toml" >> "$W/$2.log" 2>&1 &
	PID=$!
	i=0
	while ! grep -q "idgate ready" "$W/$2.log"; do
		i=$((i + 1))
		if [ $i -gt 300 ] || ! kill -0 $PID 2>/dev/null; then
			cat "$W/$2.log"
			fail "idgate on $2 did not start"
			return 1
		fi
		sleep 0.1
	done
}
# The processes `idgate run` started (its proxy: the run process stays their parent), to stop
# and continue along with it.
children() { awk -v p="$1" '$4 == p { print $1 }' /proc/[0-9]*/stat 2>/dev/null; }
srv_status() { idgate status --json -c $W/srv.toml; }  # the control socket, as root
# Polls a condition for up to 10 s (a TCG guest is slow, and slower still on a busy CI host).
until_ok() {
	i=0
	while ! "$@"; do
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		sleep 0.1
	done
}
# The client host's own decision log: complete, where /status keeps only the last 512 flows.
outbound_decisions() { grep -c 'flow decision direction="outbound"' $W/cli.log; }
last_outbound() { grep 'flow decision direction="outbound"' $W/cli.log | tail -1; }
