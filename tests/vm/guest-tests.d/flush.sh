#!/bin/sh
# shellcheck disable=SC2015 # `check && pass || fail`: pass and fail only print (and count), so fail runs exactly when the check fails
# Another program's ruleset changes, on this kernel: `nft flush ruleset` in the client host
# while a workload connects in a loop. While idgate runs, no connection fails and none reaches
# the service directly (the owned table holds), and the table that outlives idgate is put back
# (how long that took is printed: the window the cgroup guard covers). While idgate is stopped,
# a flush leaves the guard: connections fail and none reaches the service directly.
# Needs /bin/idgate and /bin/pingpong.
pass() { echo "PASS: flush: $*"; }
fail() { echo "FAIL: flush: $*"; }
# shellcheck source=../guest/proxy-lib.sh
. /etc/idgate/proxy-lib.sh
if ! have_proxy; then
	echo "flush: skipped: needs /bin/idgate and /bin/pingpong"
	exit 0
fi
proxy_setup || { fail "ca-init"; exit 1; }
mkdir -p /sys/fs/bpf
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf || { fail "mounting the BPF filesystem"; exit 1; }
kernel=$(uname -r)

in_srv pingpong server 0.0.0.0:7000 &
ECHO=$!
# Both hosts share the guest's one cgroup tree: the guard is the client host's alone.
PROXY_EXTRA='[intercept]
guard_cgroup = "off"'
start srv srv procfs || exit 1
SRV=$PID
PROXY_EXTRA=
start cli cli procfs || exit 1
CLI=$PID
grep -q 'cgroup guard: attached' $W/cli.log && pass "$kernel: cgroup guard attached" ||
	fail "$kernel: cgroup guard not attached: $(grep -m1 'cgroup guard' $W/cli.log | cut -c1-160)"
# Connections that reach the service without the tunnel (the flush is in the client host only).
in_srv nft -f - <<'NFT'
table inet probe {
	chain direct { type filter hook prerouting priority -300; policy accept; iif != "lo" tcp dport 7000 tcp flags & (syn | ack) == syn counter; }
}
NFT
direct() { in_srv nft list chain inet probe direct | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'; }

connect_loop() { # $1 = attempts; prints "ok failed"
	ok=0 bad=0 n=0
	while [ $n -lt "$1" ]; do
		if in_cli timeout 10 pingpong-a client 10.77.0.2:7000 1 16 > /dev/null 2>&1; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
		n=$((n + 1))
	done
	echo "$ok $bad"
}

# While idgate runs: flushes in the middle of a connection loop.
connect_loop 40 > $W/loop.out &
LOOP=$!
sleep 1
in_cli nft flush ruleset
sleep 0.5
in_cli nft flush ruleset
wait $LOOP
read -r ok bad < $W/loop.out
[ "$bad" = 0 ] && [ "$ok" -gt 0 ] && pass "$kernel: running: $ok connections across two flushes, none failed" ||
	fail "$kernel: running: $bad of $((ok + bad)) connections failed across the flushes"
[ "$(direct)" = 0 ] && pass "$kernel: running: no SYN reached the service directly" || fail "$kernel: running: $(direct) SYNs reached the service directly"
back=$(grep -o 'put back in [0-9]* us' $W/cli.log | sed 's/[^0-9]//g' | tr '\n' ' ')
[ -n "$back" ] && pass "$kernel: the table that outlives idgate was put back after each flush in: $back(us)" ||
	fail "$kernel: the table was not put back"
in_cli nft list tables | grep -q 'table inet idgate$' && pass "$kernel: table inet idgate is in place" || fail "$kernel: table inet idgate is missing"

# Stopped: the flush leaves nothing in nftables; the guard drops what would have leaked.
kill $CLI
wait $CLI 2>/dev/null
in_cli nft flush ruleset
[ -z "$(in_cli nft list tables)" ] || fail "$kernel: tables left after the flush: $(in_cli nft list tables)"
# shellcheck disable=SC2046 # two numbers: connections that worked, and that failed
set -- $(connect_loop 3)
[ "$1" = 0 ] && pass "$kernel: stopped and flushed: all $2 connections failed" || fail "$kernel: stopped and flushed: $1 connections went through"
[ "$(direct)" = 0 ] && pass "$kernel: stopped and flushed: no SYN reached the service directly" ||
	fail "$kernel: stopped and flushed: $(direct) SYNs reached the service directly"

# Nothing left behind: the guard goes with `idgate uninstall`.
in_cli idgate uninstall -c $W/cli.toml > /dev/null || fail "idgate uninstall"
[ -z "$(ls /sys/fs/bpf/idgate 2>/dev/null)" ] && pass "uninstall removed the guard" || fail "guard pins left: $(ls /sys/fs/bpf/idgate)"
kill $SRV $ECHO 2>/dev/null
wait $SRV 2>/dev/null
in_srv nft delete table inet probe
in_srv nft delete table inet idgate 2>/dev/null
umount /sys/fs/bpf  # the other hooks run as they did before this one
exit 0
