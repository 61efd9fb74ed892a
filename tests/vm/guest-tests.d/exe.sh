#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# An exe selector names a file, not a path a user can fake: idg-client-b's file bind-mounted over
# /bin/idg-client-a in a user and mount namespace of the user's own reads /bin/idg-client-a in
# /proc/<pid>/exe and in the module's record alike, and must not be selected by
# `exe = "/bin/idg-client-a"`; the real /bin/idg-client-a must. Kmod backend, same uid for both,
# so only the executable's identity tells them apart. Needs /bin/idgate and /bin/pingpong.
pass() { echo "PASS: exe: $*"; }
fail() { echo "FAIL: exe: $*"; }
# shellcheck source=../guest/proxy-lib.sh
. /etc/idgate/proxy-lib.sh
if ! have_proxy; then
	echo "exe: skipped: /bin/idgate or /bin/pingpong missing"
	exit 0
fi
proxy_setup || { fail "ca-init"; exit 1; }
# shellcheck disable=SC2089,SC2090 # TOML text for the config's heredoc, never a command's words
PROXY_WORKLOADS='[[workload]]
spiffe_id = "spiffe://vm.idgate/exe-a"
exe = "/bin/idg-client-a"
[[workload]]
spiffe_id = "spiffe://vm.idgate/uid-1006"
uid = 1006'
# shellcheck disable=SC2089,SC2090 # TOML text for the config's heredoc, never a command's words
export PROXY_WORKLOADS
[ -e /proc/self/ns/user ] && how="a user namespace of uid 1006" || how="a mount namespace made by root (this kernel has no user namespaces)"

in_srv pingpong server 0.0.0.0:7000 &
ECHO=$!
start srv srv procfs || exit 1
SRV=$PID
start cli cli kmod || exit 1
CLI=$PID
source_of() { # spawn args...: the source_id of the flow it makes
	before=$(outbound_decisions)
	in_cli idgate-test spawn "$@" > /dev/null
	# shellcheck disable=SC2317 # called through until_ok
	new() { [ "$(outbound_decisions)" -gt "$before" ]; }
	until_ok new || { echo none; return; }
	last_outbound | sed -n 's/.*source_id="\([^"]*\)".*/\1/p'
}
real=$(source_of /bin/idg-client-a 1006 idg-exe 10.77.0.2 7000 1)
fake=$(source_of /bin/idg-client-a 1006 idg-exe 10.77.0.2 7000 1 /bin/idg-client-b)
echo "exe: real /bin/idg-client-a: ${real:-no identity}; idg-client-b bind-mounted over it in $how: ${fake:-no identity}"
[ "$real" = "spiffe://vm.idgate/exe-a" ] && pass "the real /bin/idg-client-a is selected by its exe" ||
	fail "the real /bin/idg-client-a got ${real:-no identity}"
[ "$fake" = "spiffe://vm.idgate/uid-1006" ] &&
	pass "another file bind-mounted over /bin/idg-client-a in $how is not (uid rule: $fake)" ||
	fail "another file bind-mounted over /bin/idg-client-a in $how got ${fake:-no identity}"
kill $CLI $SRV $ECHO 2>/dev/null
wait $CLI $SRV 2>/dev/null
in_cli nft delete table inet idgate 2>/dev/null
in_srv nft delete table inet idgate 2>/dev/null
exit 0
