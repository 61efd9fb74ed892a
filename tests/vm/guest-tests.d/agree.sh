#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# The two identity backends agree: the same workload (idg-client-a as uid 1005
# in cgroup /idg-agree, connecting from a thread with a name of its own) goes
# through the proxy once with the kmod backend and once with procfs, under a
# rule that selects on exe, comm, cgroup and uid at once. Both must give it the
# same SPIFFE ID, and the peer must see the same uid, gid and exe.
# Needs /bin/idgate and /bin/pingpong.
pass() { echo "PASS: agree: $*"; }
fail() { echo "FAIL: agree: $*"; }
# shellcheck source=../guest/proxy-lib.sh
. /etc/idgate/proxy-lib.sh
if ! have_proxy; then
	echo "agree: skipped: /bin/idgate or /bin/pingpong missing"
	exit 0
fi
proxy_setup || { fail "ca-init"; exit 1; }
# shellcheck disable=SC2089,SC2090 # TOML text for the config's heredoc, never a command's words
PROXY_WORKLOADS='[[workload]]
spiffe_id = "spiffe://vm.idgate/agree"
exe = "/bin/idg-client-a"
comm = "idg-client-a"
cgroup = "/idg-agree"
uid = 1005'
# shellcheck disable=SC2089,SC2090 # TOML text for the config's heredoc, never a command's words
export PROXY_WORKLOADS

in_srv pingpong server 0.0.0.0:7000 &
ECHO=$!
start srv srv procfs || exit 1
SRV=$PID
for backend in kmod procfs; do
	start cli cli $backend || exit 1
	CLI=$PID
	before=$(outbound_decisions)
	in_cli idgate-test spawn /bin/idg-client-a 1005 idg-agree 10.77.0.2 7000 2 > /dev/null
	# shellcheck disable=SC2317 # called through until_ok
	new() { [ "$(outbound_decisions)" -gt "$before" ]; }
	until_ok new || fail "$backend: no decision"
	id=$(last_outbound | sed -n 's/.*source_id="\([^"]*\)".*/\1/p')
	eval "ID_$backend=\$id"
	seen=$(grep 'flow decision direction="inbound"' $W/srv.log | tail -1 | sed -n 's/.*process="pid=[0-9]*;\([^"]*\)".*/\1/p')
	eval "SEEN_$backend=\$seen"
	echo "agree: $backend: source_id=${id:-none} peer saw ${seen:-nothing}"
	kill $CLI
	wait $CLI 2>/dev/null
done
# shellcheck disable=SC2154 # ID_* and SEEN_* are assigned through eval above
[ "$ID_kmod" = "spiffe://vm.idgate/agree" ] && pass "kmod: exe, comm, cgroup and uid selected the workload" ||
	fail "kmod gave ${ID_kmod:-no identity}"
# shellcheck disable=SC2154 # ID_* and SEEN_* are assigned through eval above
[ "$ID_procfs" = "spiffe://vm.idgate/agree" ] && pass "procfs: exe, comm, cgroup and uid selected the workload" ||
	fail "procfs gave ${ID_procfs:-no identity}"
# shellcheck disable=SC2154 # ID_* and SEEN_* are assigned through eval above
[ -n "$SEEN_kmod" ] && [ "$SEEN_kmod" = "$SEEN_procfs" ] && pass "the peer saw the same process from both ($SEEN_kmod)" ||
	fail "the peer saw '$SEEN_kmod' (kmod) and '$SEEN_procfs' (procfs)"
kill $SRV $ECHO 2>/dev/null
wait $SRV 2>/dev/null
in_cli nft delete table inet idgate 2>/dev/null
in_srv nft delete table inet idgate 2>/dev/null
exit 0
