#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# The module takes an intercept set of any size the proxy sends (it held 32 (cidr, ports) pairs
# once): 10,000 destinations here, IPv4 and IPv6, the flow's own (10.77.0.0/24) among them,
# and a flow through them is identified by the module. Needs /bin/idgate and
# /bin/pingpong.
pass() { echo "PASS: manyrules: $*"; }
fail() { echo "FAIL: manyrules: $*"; }
# shellcheck source=../guest/proxy-lib.sh
. /etc/idgate/proxy-lib.sh
if ! have_proxy; then
	echo "manyrules: skipped: /bin/idgate or /bin/pingpong missing"
	exit 0
fi
proxy_setup || { fail "ca-init"; exit 1; }
# 5,000 IPv4 /32s and 4,999 IPv6 /128s, one [[outbound]] each; with the default one, 10,000 pairs.
PROXY_EXTRA=$(awk 'BEGIN {
	for (i = 0; i < 9999; i++)
		if (i % 2) printf "[[outbound]]\ncidrs = [\"fd00:99::%x:%x/128\"]\nports = [7100]\n", int(i / 256), i % 256
		else printf "[[outbound]]\ncidrs = [\"10.99.%d.%d/32\"]\nports = [7100]\n", int(i / 256), i % 256 }')
# Not exported: config() reads it in this shell, and 300 KB in the environment fails every exec.

in_srv pingpong server 0.0.0.0:7000 &
ECHO=$!
start srv srv procfs || exit 1
SRV=$PID
start cli cli kmod || exit 1
CLI=$PID
grep -q 'idgate.ko configured.*rules=10000' $W/cli.log && pass "the module took 10000 (cidr, ports) pairs" ||
	fail "the module was not configured with 10000 pairs: $(grep -m1 -e 'idgate.ko' -e 'identity backend' $W/cli.log)"
before=$(outbound_decisions)
in_cli pingpong-a client 10.77.0.2:7000 20 64 > /dev/null 2>&1 || fail "client through the proxy failed"
# shellcheck disable=SC2317 # called through until_ok
new() { [ "$(outbound_decisions)" -gt "$before" ]; }
until_ok new && case "$(last_outbound)" in
*'source_id="spiffe://vm.idgate/a"'*'verdict="tunneled"'*) pass "a flow among them is identified by the module and tunneled" ;;
*) fail "flow not identified: $(last_outbound)" ;;
esac || fail "no decision within 10 s"
kill $CLI $SRV $ECHO 2>/dev/null
wait $CLI $SRV 2>/dev/null
in_cli nft delete table inet idgate 2>/dev/null
in_srv nft delete table inet idgate 2>/dev/null
exit 0
