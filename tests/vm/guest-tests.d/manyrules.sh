#!/bin/sh
# The module takes an intercept set of any size the proxy sends (it held 32 (cidr, ports) pairs
# once): 200 pairs here (below what the nftables table of this version installs), and a
# flow through it is still identified by the module. Needs /bin/idgate and /bin/pingpong.
pass() { echo "PASS: manyrules: $*"; }
fail() { echo "FAIL: manyrules: $*"; }
. /etc/idgate/proxy-lib.sh
if ! have_proxy; then
	echo "manyrules: skipped: /bin/idgate or /bin/pingpong missing"
	exit 0
fi
proxy_setup || { fail "ca-init"; exit 1; }
cidrs=$(i=0; while [ $i -lt 199 ]; do printf '"10.99.%d.%d/32",' $((i / 250)) $((i % 250 + 1)); i=$((i + 1)); done)
PROXY_EXTRA="[[outbound]]
cidrs = [${cidrs%,}]
ports = [7100]"
export PROXY_EXTRA

in_srv pingpong server 0.0.0.0:7000 &
ECHO=$!
start srv srv procfs || exit 1
SRV=$PID
start cli cli kmod || exit 1
CLI=$PID
grep -q 'idgate.ko configured.*rules=200' $W/cli.log && pass "the module took 200 (cidr, ports) pairs" ||
	fail "the module was not configured with 200 pairs: $(grep -m1 -e 'idgate.ko' -e 'identity backend' $W/cli.log)"
before=$(outbound_decisions)
in_cli pingpong-a client 10.77.0.2:7000 20 64 > /dev/null 2>&1 || fail "client through the proxy failed"
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
