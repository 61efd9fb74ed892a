#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# The proxy when the module misbehaves at run time: flows it cannot vouch for are
# refused, never passed in plaintext, and the proxy recovers when the module is
# back. Cases: unload attempted under load (refused: the proxy pins the module),
# a full table (evicted flows), ioctl errors (a module built with
# IDGATE_FAULT=eio, /lib/modules/idgate-eio.ko), the module gone and back.
# Needs /bin/idgate and /bin/pingpong.
pass() { echo "PASS: failclosed: $*"; }
fail() { echo "FAIL: failclosed: $*"; }
# shellcheck source=../guest/proxy-lib.sh
. /etc/idgate/proxy-lib.sh
if ! have_proxy || [ ! -e /lib/modules/idgate-eio.ko ]; then
	echo "failclosed: skipped: needs /bin/idgate, /bin/pingpong and /lib/modules/idgate-eio.ko"
	exit 0
fi
PARAMS="max_entries=512 timeout_ms=60000"
proxy_setup || { fail "ca-init"; exit 1; }
verdicts() { grep -c "flow decision direction=\"outbound\".*verdict=\"$1\"" $W/cli.log; }
stat_of() { cat "/sys/kernel/idgate/stats/$1"; }
client() { in_cli timeout 20 pingpong-a client 10.77.0.2:7000 2 16 > /dev/null 2>&1; }
served() { grep -c 'flow decision direction="inbound"' $W/srv.log; }

in_srv pingpong server 0.0.0.0:7000 &
ECHO=$!
start srv srv procfs || exit 1
SRV=$PID
start cli cli kmod || exit 1
CLI=$PID

# Unload under load: refused while the proxy holds /dev/idgate; flows go on being attributed.
client && pass "a flow through the kmod backend" || fail "no flow through the kmod backend"
if rmmod idgate 2>/dev/null; then
	fail "rmmod succeeded under the proxy"
	# shellcheck disable=SC2086 # PARAMS: the module's parameters, one word each
	insmod /lib/modules/idgate.ko $PARAMS
else
	pass "rmmod refused while the proxy holds /dev/idgate"
fi
before=$(verdicts tunneled)
client && [ "$(verdicts tunneled)" -gt "$before" ] && pass "flows still attributed after the refused unload" ||
	fail "flows after the refused unload: $(last_outbound)"

# A full table: flows whose entries were evicted before the lookup are refused.
# The proxy that looks flows up is the run process's child.
STOPPED="$CLI $(children $CLI)"
# shellcheck disable=SC2086 # a list of pids
kill -STOP $STOPPED
echo 2 > /sys/module/idgate/parameters/max_entries
ev0=$(stat_of evictions) den0=$(verdicts denied_no_identity) tun0=$(verdicts tunneled) rec0=$(stat_of recorded)
i=0 pids=
while [ $i -lt 5 ]; do client & pids="$pids $!"; i=$((i + 1)); done
# All five SYNs recorded before the proxy looks (the handshakes complete in its
# listener's backlog meanwhile); up to 60 s, a debug kernel being slow.
recorded5() { [ $(( $(stat_of recorded) - rec0 )) -ge 5 ]; }
i=0
while ! recorded5 && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
# shellcheck disable=SC2086 # a list of pids
kill -CONT $STOPPED
# shellcheck disable=SC2317 # called through until_ok
wait_clients() { [ "$(( $(verdicts denied_no_identity) - den0 + $(verdicts tunneled) - tun0 ))" -ge 5 ]; }
until_ok wait_clients
# shellcheck disable=SC2086 # a list of pids
wait $pids 2>/dev/null
ev=$(( $(stat_of evictions) - ev0 )) den=$(( $(verdicts denied_no_identity) - den0 )) tun=$(( $(verdicts tunneled) - tun0 ))
echo 512 > /sys/module/idgate/parameters/max_entries
# Entries older than these five (left by earlier tests) may be evicted first.
[ $den -ge 3 ] && [ $tun -eq $((5 - den)) ] && [ $ev -ge $den ] &&
	pass "table full: $den flows whose entries were evicted refused, $tun attributed ($ev evictions)" ||
	fail "table full: evictions $ev, refused $den, tunneled $tun (of 5)"

# ioctl errors: every lookup fails, so every flow is refused, and none reaches the peer.
kill $CLI; wait $CLI 2>/dev/null
# shellcheck disable=SC2086 # PARAMS: the module's parameters, one word each
rmmod idgate && insmod /lib/modules/idgate-eio.ko $PARAMS || fail "loading the EIO module"
start cli cli kmod || exit 1
CLI=$PID
den0=$(verdicts denied_no_identity) srv0=$(served)
client && fail "a flow went through while every lookup failed" || pass "lookup errors: the flow fails"
[ "$(( $(verdicts denied_no_identity) - den0 ))" -ge 1 ] && pass "lookup errors: refused as unknown ($(last_outbound | sed 's/.*verdict=//'))" ||
	fail "lookup errors: no refusal logged: $(last_outbound)"
[ "$(served)" -eq "$srv0" ] && pass "lookup errors: nothing reached the peer" || fail "the peer saw a flow during lookup errors"

# The module gone: an explicit kmod backend does not start; with the module back, it does.
kill $CLI; wait $CLI 2>/dev/null
rmmod idgate || fail "rmmod of the EIO module"
# The proxy stopped (its table stays) and nothing tags flows any more: the table's
# destination rules still send them to the closed capture port, so none leaves in plaintext.
in_cli nft -f - <<'NFT'
table inet probe {
	chain out { type filter hook postrouting priority 300; policy accept; oif != "lo" tcp dport 7000 counter; }
}
NFT
client && fail "a flow went out with the proxy stopped and the module unloaded" || pass "proxy stopped, module unloaded: the flow fails"
leaked=$(in_cli nft list chain inet probe out | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
[ "$leaked" = 0 ] && pass "proxy stopped, module unloaded: no packet to the service left the host" ||
	fail "proxy stopped, module unloaded: $leaked packets to port 7000 left the client host"
in_cli nft delete table inet probe
if start cli cli kmod > /dev/null 2>&1; then
	fail "identity_backend = kmod started without the module"
	kill $PID; wait $PID 2>/dev/null
else
	pass "identity_backend = kmod refuses to start without the module ($(grep -m1 -i 'error' $W/cli.log | cut -c1-120))"
fi
# shellcheck disable=SC2086 # PARAMS: the module's parameters, one word each
insmod /lib/modules/idgate.ko $PARAMS || fail "reloading idgate.ko"
start cli cli kmod || exit 1
CLI=$PID
before=$(verdicts tunneled)
client && [ "$(verdicts tunneled)" -gt "$before" ] && pass "recovered: flows attributed once the module is back" ||
	fail "no recovery: $(last_outbound)"

kill $CLI $SRV $ECHO 2>/dev/null
wait $CLI $SRV 2>/dev/null
in_cli nft delete table inet idgate 2>/dev/null
in_srv nft delete table inet idgate 2>/dev/null
exit 0
