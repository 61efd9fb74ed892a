"""Another program's ruleset changes never turn idgate off: `nft flush ruleset`, a reload of a
Debian-style /etc/nftables.conf (which begins with `flush ruleset`), or deleting idgate's table
send no intercepted flow out in plaintext, while idgate runs and while it is stopped."""
import json
import threading
import time

from eventually import eventually
from hosts import SERVER_PORT, host_config
from test_stop_boot import syns_to
from test_tunnel import Capture, start_pair

# Debian 12's /etc/nftables.conf as shipped; `systemctl restart nftables` runs `nft -f` on it.
DEBIAN_NFTABLES_CONF = """#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
"""


def connect_loop(net, marker, duration=4.0, period=0.02):
    """Alice connecting to B's service every 20 ms on a thread; returns a result holder."""
    result = {}

    def run():
        out = net.a.workload("connect_loop", net.b.ip, SERVER_PORT, duration, period, marker, uid=1001, timeout=duration + 60)
        result.update(json.loads(out.stdout))

    t = threading.Thread(target=run)
    t.start()
    return t, result


def assert_nothing_in_plaintext(net, frames, marker):
    assert marker.encode() not in b"".join(frames), "the marker crossed the wire in plaintext"
    assert not syns_to(frames, SERVER_PORT), f"{len(syns_to(frames, SERVER_PORT))} SYN(s) to the service port left host A"
    direct = [c for c in net.server_connections() if c[0] != net.b.ip]
    assert not direct, f"the service saw {len(direct)} connection(s) that did not come through host B's idgate: {direct[:3]}"


def flush_in_a(net, how, tmp):
    if how == "nft flush ruleset":
        net.a.run("nft", "flush", "ruleset")
    else:
        conf = tmp / "nftables.conf"
        conf.write_text(DEBIAN_NFTABLES_CONF)
        net.a.run("nft", "-f", conf)


def tables(host):
    return host.run("nft", "list", "tables").stdout.decode()


def run_flush_while_running(net, how):
    start_pair(net)
    cap = Capture(net.a)
    marker = "FLUSH-WHILE-RUNNING-MARKER-" + "x" * 20
    t, result = connect_loop(net, marker)
    time.sleep(1.0)
    flush_in_a(net, how, net.tmp)
    time.sleep(0.5)
    flush_in_a(net, how, net.tmp)  # twice: the second lands on what idgate put back
    t.join()
    frames = cap.finish()
    assert_nothing_in_plaintext(net, frames, marker)
    assert result["failed"] == 0, f"connections failed across the flush: {result}"
    assert result["ok"] > 50, f"the workload barely ran: {result}"
    eventually(lambda: "table inet idgate\n" in tables(net.a), "idgate's standing table back", interval=0.02)
    # What kept the flows going: the table the running idgate holds, which nobody else may delete.
    r = net.a.run("nft", "delete", "table", "inet", "idgate_owned", check=False)
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr, r


def test_nft_flush_ruleset_while_idgate_runs_sends_nothing_in_plaintext(net):
    run_flush_while_running(net, "nft flush ruleset")


def test_reloading_debians_nftables_conf_while_idgate_runs_sends_nothing_in_plaintext(net):
    run_flush_while_running(net, "nft -f /etc/nftables.conf")


def test_flush_ruleset_while_idgate_is_stopped_still_refuses_every_flow(net):
    a, _ = start_pair(net)
    assert a.terminate() == 0
    net.a.run("nft", "flush", "ruleset")
    assert "idgate" not in tables(net.a), "flush ruleset is expected to remove a table nobody holds"
    net.server_log.write_text("")
    cap = Capture(net.a)
    marker = "FLUSH-WHILE-STOPPED-MARKER-" + "x" * 20
    t, result = connect_loop(net, marker, duration=2.0, period=0.1)
    t.join()
    frames = cap.finish()
    assert result["ok"] == 0, f"flows went through with idgate stopped and its table flushed: {result}"
    assert_nothing_in_plaintext(net, frames, marker)
    # Started again, idgate puts its table back and tunnels.
    net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir), net.tmp, name="restarted")
    t, result = connect_loop(net, marker, duration=1.0, period=0.1)
    t.join()
    assert result["ok"] > 0 and result["failed"] == 0, result


def syns6_to(frames, port):
    """IPv6 TCP SYNs to `port`, after any extension headers."""
    out = []
    for f in frames:
        if len(f) < 74 or f[12:14] != b"\x86\xdd":
            continue
        nxt, at = f[20], 54
        while nxt in (0, 43, 60) and at + 2 <= len(f):
            nxt, at = f[at], at + (f[at + 1] + 1) * 8
        if nxt == 6 and at + 14 <= len(f) and int.from_bytes(f[at + 2:at + 4], "big") == port and f[at + 13] & 0x02:
            out.append(f)
    return out


def test_the_guard_sees_through_ipv6_extension_headers_and_drops_only_intercepted_ports(net):
    for host, n in ((net.a, 1), (net.b, 2)):
        host.run("ip", "-6", "addr", "add", f"fd77::{n}/64", "dev", "eth0", "nodad")
    net.b.start_workload("v6_greeters", "fd77::2", 9001, 9050)
    net.b.wait_listening(9050)
    extra = '[[outbound]]\ncidrs = ["fd77::/64"]\nports = [9001]\n'
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=extra), net.tmp)
    assert a.terminate() == 0
    net.a.run("nft", "flush", "ruleset")
    cap = Capture(net.a)
    intercepted = net.a.workload("v6_dstopts_clients", "fd77::2", 9001, timeout=30).stdout.decode().split("\n")
    other = net.a.workload("v6_dstopts_clients", "fd77::2", 9050, timeout=30).stdout.decode().split("\n")
    frames = cap.finish()
    assert intercepted[:2] == ["failed TimeoutError", "failed TimeoutError"], intercepted
    assert not syns6_to(frames, 9001), "a SYN to the intercepted IPv6 destination left host A"
    assert other[:2] == ["reached reached", "reached reached"], f"the guard must not touch other ports: {other}"
    syns = syns6_to(frames, 9050)
    assert any(f[20] == 60 for f in syns) and any(f[20] == 6 for f in syns), "SYNs with and without the options header were sent"
