#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# Churn for the debug kernels, bounded by $1 seconds (run by guest/init when
# the kernel command line has idgtest_churn=SECONDS). At the same time:
#  - storm: processes open and close short connections, a quarter of them
#    exiting between connect() and the lookup (netns "storm", on loopback);
#  - the table bounded at 64 entries, half the flows left unclaimed: eviction;
#  - network namespaces created, given entries, and torn down;
#  - the proxy (when /bin/idgate is there) started with the kmod backend,
#    used, killed with SIGKILL, and the module unloaded and reloaded while
#    it is down (an open /dev/idgate pins the module, so never while it runs).
# Prints PASS/FAIL lines and "churn: ..." counts.
SECS=${1:-60}
PARAMS=${2:-}
pass() { echo "PASS: churn: $*"; }
fail() { echo "FAIL: churn: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
IP=/usr/sbin/ip
END=$(awk "BEGIN { print $(uptime_s) + $SECS }")
running() { awk "BEGIN { exit !($(uptime_s) < $END) }"; }
stat_of() { cat "/sys/kernel/idgate/stats/$1" 2>/dev/null || echo 0; }
stats() { for f in recorded hits evictions expired flushed entries peak_entries; do printf '%s=%s ' $f "$(stat_of $f)"; done; }
# Unload and reload while connections go on: the storm stops opening the device
# (which pins the module) while /tmp/storm.pause exists, but keeps connecting.
reload() {
	evictions=$((evictions + $(stat_of evictions)))
	echo "churn: before unload: $(stats)"
	touch /tmp/storm.pause
	n=0
	until rmmod idgate 2>/dev/null; do
		n=$((n + 1)); [ $n -ge 500 ] && break; usleep 20000
	done
	if [ $n -ge 500 ]; then
		rm -f /tmp/storm.pause
		fail "rmmod never succeeded in 10 s"
		return 1
	fi
	usleep 200000
	# shellcheck disable=SC2086 # PARAMS: the module's parameters, one word each
	insmod /lib/modules/idgate.ko $PARAMS max_entries=64 && reloads=$((reloads + 1))
	rm -f /tmp/storm.pause
}

reloads=0 kills=0 proxied=0 evictions=0
# The proxy's set-up first (slow on a debug kernel), so that the load below
# overlaps its cycles.
PROXY=
if [ -x /bin/idgate ] && [ -x /bin/pingpong ]; then
	# shellcheck source=proxy-lib.sh
	. /etc/idgate/proxy-lib.sh
	proxy_setup
	in_srv pingpong server 0.0.0.0:7000 &
	ECHO=$!
	start srv srv procfs && SRV=$PID && PROXY=1
fi

$IP netns add storm
nsenter --net=/run/netns/storm $IP link set lo up
nsenter --net=/run/netns/storm $IP addr add 10.77.0.2/32 dev lo
nsenter --net=/run/netns/storm $IP -6 addr add fd77::2/128 dev lo nodad
nsenter --net=/run/netns/storm idgate-test serve 8080 9090 &
SERVE=$!
echo 64 > /sys/module/idgate/parameters/max_entries
END=$(awk "BEGIN { print $(uptime_s) + $SECS }")
sleep 1
nsenter --net=/run/netns/storm idgate-test storm "$SECS" 4 > /tmp/storm.out 2>&1 &
STORM=$!

# Namespaces come and go with entries in them.
(
	n=0
	while running; do
		ns=churn$n
		$IP netns add $ns && nsenter --net=/run/netns/$ns $IP link set lo up &&
			nsenter --net=/run/netns/$ns idgate-test leave 10 > /dev/null 2>&1
		$IP netns del $ns
		n=$((n + 1))
	done
	echo $n > /tmp/churn.netns
) &
NETNS=$!

# The proxy: up, used, killed; the module reloaded while it is down. At least
# two cycles however slow the kernel, more while the time lasts.
if [ -n "$PROXY" ]; then
	while running || [ $kills -lt 2 ]; do
		start cli cli kmod || break
		CLI=$PID
		i=0
		while [ $i -lt 5 ] && running; do
			if in_cli pingpong-a client 10.77.0.2:7000 5 64 > /tmp/churn-client.out 2>&1; then
				proxied=$((proxied + 1))
			else
				# Kept for the failure message: what the client and the proxy said.
				{ tail -n 3 /tmp/churn-client.out; grep 'flow decision direction="outbound"' "$W/cli.log" | tail -n 1; } > /tmp/churn-client.failed
			fi
			i=$((i + 1))
		done
		# shellcheck disable=SC2086 # PARAMS: the module's parameters, one word each
		rmmod idgate 2>/dev/null && { fail "rmmod succeeded while the proxy held /dev/idgate"; insmod /lib/modules/idgate.ko $PARAMS; }
		kill -9 "$CLI"
		wait "$CLI" 2>/dev/null
		kills=$((kills + 1))
		reload || break
	done
	# shellcheck disable=SC2086 # SRV is empty when its start failed
	kill $SRV $ECHO 2>/dev/null
	# shellcheck disable=SC2086 # SRV is empty when its start failed
	wait $SRV 2>/dev/null
	in_cli nft delete table inet idgate 2>/dev/null
	in_srv nft delete table inet idgate 2>/dev/null
else
	# Without the proxy, the module still goes and comes back under load.
	while running || [ $reloads -lt 2 ]; do
		sleep 3
		reload || break
	done
fi
wait $STORM
cat /tmp/storm.out
grep -q '^PASS' /tmp/storm.out || fail "storm"
grep '^FAIL' /tmp/storm.out > /dev/null && fail "storm reported failures"
wait $NETNS
cycles=$(cat /tmp/churn.netns)
kill $SERVE 2>/dev/null
$IP netns del storm
conns=$(sed -n 's/^storm: \([0-9]*\) connections.*/\1/p' /tmp/storm.out)
evictions=$((evictions + $(stat_of evictions)))
echo "churn: ${SECS}s: ${conns:-0} storm connections, $proxied proxied client runs, $kills proxy kills, $reloads module reloads, $cycles netns cycles, $evictions evictions"
[ "$cycles" -gt 0 ] && pass "$cycles network namespaces created and torn down under load" || fail "no netns cycle"
[ $reloads -gt 0 ] && pass "$reloads module unload/reload cycles under load" || fail "no module reload"
if [ -x /bin/idgate ]; then
	[ $proxied -gt 0 ] && pass "$proxied client runs through the proxy, killed and restarted $kills times" ||
		fail "no client run got through the proxy; the last one: $(cat /tmp/churn-client.failed 2>/dev/null)"
fi
echo "churn: at the end: $(stats)"
[ $evictions -gt 0 ] && pass "full table evicted entries" || fail "no eviction in a table bounded at 64"
echo 512 > /sys/module/idgate/parameters/max_entries
exit 0
