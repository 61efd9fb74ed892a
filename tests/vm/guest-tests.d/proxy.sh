#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# The proxy on a real kernel with idgate.ko: identity from the module end to end, the
# exited-process case that procfs cannot handle, fail closed, and lookup cost kmod vs procfs.
# Needs /bin/idgate and /bin/pingpong (run.sh: IDGATE_BIN and IDGATE_EXTRA_BINS).
pass() { echo "PASS: proxy: $*"; }
fail() { echo "FAIL: proxy: $*"; }
# shellcheck source=../guest/proxy-lib.sh
. /etc/idgate/proxy-lib.sh
if ! have_proxy; then
	echo "proxy: skipped: /bin/idgate or /bin/pingpong missing (run.sh needs IDGATE_BIN and IDGATE_EXTRA_BINS)"
	exit 0
fi
proxy_setup || { fail "ca-init"; exit 1; }
count() { srv_status | grep -o "\"source_id\":\"$1\"" | wc -l; }
# shellcheck disable=SC2317 # called through until_ok
new_outbound() { [ "$(outbound_decisions)" -gt "$decided_before" ]; }

nsenter --net=/run/netns/srv pingpong server 0.0.0.0:7000 &
ECHO=$!
start srv srv procfs || exit 1
SRV=$PID
start cli cli kmod || exit 1
CLI=$PID

grep -q "identity backend: kmod" $W/cli.log && pass "kmod backend chosen and logged" || fail "backend not kmod: $(grep ready $W/cli.log)"

# Two executables, concurrently: each gets its own SPIFFE ID, seen by the peer.
in_cli pingpong-a client 10.77.0.2:7000 300 64 > $W/a.out 2>&1 &
A=$!
in_cli pingpong-b client 10.77.0.2:7000 300 64 > $W/b.out 2>&1 &
B=$!
wait $A && wait $B && pass "two clients exchanged data through the tunnel" || fail "tunnel clients: $(cat $W/a.out $W/b.out)"
[ "$(count spiffe://vm.idgate/a)" -ge 1 ] && [ "$(count spiffe://vm.idgate/b)" -ge 1 ] \
	&& pass "peer saw spiffe://vm.idgate/a and spiffe://vm.idgate/b" || fail "peer decisions: $(srv_status)"

# A process that exits right after connect(): the module recorded it at SYN time.
decided_before=$(outbound_decisions)
in_cli pingpong-a fire 10.77.0.2:7000 exited-client
if until_ok new_outbound; then
	case "$(last_outbound)" in
	*'source_id="spiffe://vm.idgate/a"'*'verdict="tunneled"'*) pass "exited process attributed with kmod" ;;
	*) fail "exited process not attributed with kmod: $(last_outbound)" ;;
	esac
else
	fail "no decision within 10 s for the exited process's flow (kmod)"
fi

# Lookup cost side by side: new connections per second with each backend, same client.
kmod_rate=$(in_cli pingpong-a connect 10.77.0.2:7000 300 | head -1)

# Fail closed: with the proxy killed, tagged flows get nowhere.
kill -9 $CLI
wait $CLI 2>/dev/null
if in_cli timeout 5 pingpong-a client 10.77.0.2:7000 1 8 > /dev/null 2>&1; then
	fail "flow went through with the proxy dead"
else
	pass "tagged flow fails with the proxy killed (fail closed)"
fi

# The same exited-process case with the procfs backend: it cannot attribute it.
start cli cli procfs || exit 1
CLI=$PID
# procfs must attribute a live process, or the exited-process comparison below means nothing.
if in_cli pingpong-a client 10.77.0.2:7000 20 64 > /dev/null 2>&1; then
	pass "procfs backend attributes a live process"
else
	fail "procfs backend cannot attribute even a live process: $(grep -m1 denied $W/cli.log)"
fi
procfs_rate=$(in_cli pingpong-a connect 10.77.0.2:7000 300 | head -1)
decided_before=$(outbound_decisions)
in_cli pingpong-a fire 10.77.0.2:7000 exited-client
if ! until_ok new_outbound; then
	fail "procfs: no decision within 10 s for the exited process's flow"
else
	last=$(last_outbound)
	case "$last" in
	*'verdict="tunneled"'* | *'verdict="client_gone"'*)
		echo "proxy: note: procfs happened to find the exited process before it was gone (race won): ${last##*verdict=}" ;;
	*'verdict="denied_no_identity"'* | *'verdict="denied"'*)
		pass "procfs backend cannot attribute an exited process (refused: ${last##*verdict=})" ;;
	*) fail "procfs: exited process: unexpected decision: $last" ;;
	esac
fi
echo "proxy: new connections through idgate, kmod backend: $kmod_rate; procfs backend: $procfs_rate"

kill $CLI $SRV $ECHO 2>/dev/null
wait $CLI $SRV 2>/dev/null
in_cli nft delete table inet idgate 2>/dev/null
in_srv nft delete table inet idgate 2>/dev/null
exit 0
