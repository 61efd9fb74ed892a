"""Unauthenticated connections to the tunnel port are cheap to hold and bounded: no TLS state
or read buffer before a handshake, a bound on handshakes in progress (per source too), a
deadline, and refusals counted in a metric and summed up in the log, not one line and one
decision record each. Prints the RSS figures it measures."""
import re
import subprocess
import time

from eventually import eventually
from hosts import host_config
from test_tunnel import client, start_pair


def rss_mb(pid):
    text = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def refused_total(host):
    text = host.run("curl", "-sf", "http://127.0.0.1:15000/metrics").stdout.decode()
    return sum(float(m) for m in re.findall(r'^idgate_tunnel_handshakes_refused_total\{reason="[a-z_]+"\} (\S+)$', text, re.M))


def test_five_thousand_idle_connections_cost_little_and_leave_nothing(net):
    held = '[tunnel]\nhandshake_timeout = "120s"\nmax_handshakes = 10000\nmax_handshakes_per_source = 10000\n'
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=held), net.tmp)
    time.sleep(0.5)
    proxy = b.status()["pid"]  # the proxy, child of the main process `idgate run`
    before = rss_mb(proxy)
    idle = net.c.start_workload("idle_connections", net.b.ip, 15008, 5000, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert idle.stdout.readline().strip() == "5000"

    def in_progress():
        return b.status()["handshakes_in_progress"]

    eventually(lambda: in_progress() == 5000, lambda: f"5000 handshakes in progress (now {in_progress()})", timeout=30, interval=0.1)
    holding = rss_mb(proxy)
    idle.stdin.close()
    idle.wait(timeout=30)
    eventually(lambda: in_progress() == 0, lambda: f"no handshake in progress (now {in_progress()})", timeout=30, interval=0.1)
    assert holding <= 40, f"{holding:.1f} MB with 5,000 idle connections"
    # Freed memory goes back after the next refusal summary (every 10 s).
    eventually(lambda: rss_mb(proxy) <= before + 8,
               lambda: f"memory back after the connections closed: {before:.1f} MB before, {rss_mb(proxy):.1f} MB now", timeout=15, interval=0.5)
    after = rss_mb(proxy)
    print(f"\nidgate RSS: {before:.1f} MB before, {holding:.1f} MB holding 5,000 idle pre-handshake connections, {after:.1f} MB after they closed")
    assert refused_total(net.b) >= 5000
    status = b.status()
    assert status["decisions"] == [], "refused handshakes must not fill the decision ring"
    assert len(status["refused_connections"]) == 16 and status["refused_connections"][-1]["remote"].startswith(net.c.ip)
    lines = [line for line in b.log.read_text().splitlines() if "refused" in line and "tunnel connections" in line]
    assert len(lines) <= 3, f"{len(lines)} log lines for 5,000 refusals"


def test_a_flood_from_one_source_does_not_lock_out_other_peers(net):
    a, b = start_pair(net)
    idle = net.c.start_workload("idle_connections", net.b.ip, 15008, 2000, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert idle.stdout.readline().strip() == "2000"
    # At most max_handshakes_per_source (64) of them wait; the rest were closed at once.
    eventually(lambda: refused_total(net.b) >= 2000 - 64, "all but 64 refused", timeout=30, interval=0.1)
    assert b.status()["handshakes_in_progress"] <= 64
    r = client(net, 1001, n=1000)
    assert r["echo_sha"] == r["sent_sha"], "a legitimate peer was locked out by another source's flood"
    assert any(x["reason"] == "source_limit" for x in b.status()["refused_connections"])
    idle.stdin.close()
    idle.wait(timeout=30)


def handshake_reaches_certificate(host, target):
    """Whether a TLS handshake from `host` to `target` gets as far as the server's certificate
    (a connection the gate refused is closed before that)."""
    r = host.run("openssl", "s_client", "-connect", target, input=b"", check=False, timeout=20)
    return b"-----BEGIN CERTIFICATE-----" in r.stdout


HOLD = '[tunnel]\nhandshake_timeout = "120s"\n'


def test_an_ipv6_64_is_one_source_however_many_addresses_it_floods_from(net):
    # c owns a whole /64 (routed to it, every address usable), as a cloud host commonly does.
    for host, addr in ((net.a, "fd77::1"), (net.b, "fd77::2"), (net.c, "fd77::3")):
        host.run("ip", "-6", "addr", "add", f"{addr}/64", "dev", "eth0", "nodad")
    net.c.run("ip", "-6", "route", "add", "local", "fd77:1::/64", "dev", "lo")
    net.c.run("sh", "-c", "echo 1 > /proc/sys/net/ipv6/ip_nonlocal_bind")  # c's namespace only
    net.b.run("ip", "-6", "route", "add", "fd77:1::/64", "via", "fd77::3")
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=HOLD + '[listen]\ninbound = "[::]:15008"\n'), net.tmp)
    sources = ",".join(f"fd77:1::{i:x}" for i in range(1, 1201))
    flood = net.c.start_workload("idle_connections", "fd77::2", 15008, 1, sources, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert flood.stdout.readline().strip() == "1200"
    eventually(lambda: b.status()["handshakes_in_progress"] + refused_total(net.b) >= 1200, "all 1200 held or refused", timeout=30, interval=0.1)
    assert handshake_reaches_certificate(net.a, "[fd77::2]:15008"), "a peer outside the flooding /64 was locked out"
    assert b.status()["handshakes_in_progress"] <= 64, "one /64 holds more than a source's share"
    flood.stdin.close()
    flood.wait(timeout=30)


def test_a_flood_from_many_addresses_leaves_room_for_a_peer_that_is_not_flooding(net):
    # Twenty addresses of c, each at the per-source limit: more than the gate holds in all.
    addrs = [f"10.77.0.{i}" for i in range(100, 120)]
    for addr in addrs:
        net.c.run("ip", "addr", "add", f"{addr}/24", "dev", "eth0")
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=HOLD), net.tmp)
    flood = net.c.start_workload("idle_connections", net.b.ip, 15008, 64, ",".join(addrs), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert flood.stdout.readline().strip() == str(64 * 20)
    eventually(lambda: b.status()["handshakes_in_progress"] == 1024, "1024 handshakes in progress", timeout=30, interval=0.1)
    assert handshake_reaches_certificate(net.a, f"{net.b.ip}:15008"), "a peer that holds no handshake was locked out by the flood"
    assert any(x["reason"] == "evicted" for x in b.status()["refused_connections"]), "no flooder gave up its place"
    flood.stdin.close()
    flood.wait(timeout=30)
