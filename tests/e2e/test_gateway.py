"""Gateways: machines on a LAN that host A routes get the identity of their site (a
[[workload]] rule with interface and sources) for flows to intercepted destinations, tunnelled
like a process's; a site's addresses count only on its interface, and its interface carries
only them (anti-spoofing); a gateway B lets allowed callers reach the servers behind it
([[inbound]] backends) and nothing else; nothing crosses an uplink in plaintext.

    l1 (192.168.10.5) -- lan0 [gateway A] -- uplink 10.77.0.0/24 -- [gateway B] srv0 -- s1 (192.168.20.5)
"""
import json

from hosts import SERVER_PORT, TRUST_DOMAIN, host_config
from sites import NETWORK, NETWORK6, SUBNET, Lan
from test_containers import leaked_syns, sent_by
from test_tunnel import Capture

SITE = f"spiffe://{TRUST_DOMAIN}/tools/site-lan"
SITE_RULE = f"""
[[workload]]
spiffe_id = "{SITE}"
interface = "lan0"
sources = ["{NETWORK}", "{NETWORK6}"]
"""


def start(net):
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=SITE_RULE), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    return a, b


def test_a_machine_behind_the_gateway_gets_its_sites_identity(net):
    machine = Lan(net.a).add("l1", 5)
    a, b = start(net)
    cap = Capture(net.a)
    marker = "SITE-FLOW-MARKER-" + "s" * 16
    r = json.loads(machine.workload("digest_client", net.b.ip, SERVER_PORT, 64 * 1024, marker, uid=1001).stdout)
    assert r["echo_sha"] == r["sent_sha"], r
    assert b.decisions(direction="inbound", source_id=SITE), b.status()["decisions"]
    mine = a.decisions(direction="outbound", source_id=SITE)
    assert mine and mine[0]["process"] == f"routed from {machine.ip} on lan0", mine
    trail = [json.loads(line.split("idgate::trail: ", 1)[1]) for line in a.log.read_text().splitlines() if "idgate::trail: " in line]
    assert any(t.get("routed_from") == {"interface": "lan0", "address": machine.ip} and "process" not in t for t in trail), trail
    frames = sent_by(net.a, cap.finish())
    assert marker.encode() not in b"".join(frames), "the marker left the gateway in plaintext"
    assert [c[0] for c in net.server_connections()] == [net.b.ip]


def test_routed_flows_are_refused_while_idgate_is_stopped_and_the_ruleset_flushed(net):
    """Another program's `nft flush ruleset` while the gateway's idgate is stopped: the LAN's
    flows are routed again, and only the guard on the uplink's egress stands between them and
    the wire."""
    machine = Lan(net.a).add("l1", 5)
    a, _ = start(net)
    assert a.terminate() == 0
    net.a.run("nft", "flush", "ruleset")
    cap = Capture(net.a)
    marker = "SITE-FLUSHED-MARKER-" + "s" * 16
    r = machine.workload("digest_client", net.b.ip, SERVER_PORT, 100, marker, uid=1001, check=False, timeout=30)
    assert r.returncode != 0, r.stdout
    frames = sent_by(net.a, cap.finish())
    assert marker.encode() not in b"".join(frames), "the marker left the gateway in plaintext"
    assert not leaked_syns(frames, SERVER_PORT, "192.168.", net.a.ip), "a SYN to the service left the gateway"
    assert not net.server_connections()


def test_a_machine_behind_the_gateway_over_ipv6_and_a_foreign_ipv6_source_dropped(net):
    for host, n in ((net.a, 1), (net.b, 2)):
        host.run("ip", "-6", "addr", "add", f"fd77::{n}/64", "dev", "eth0", "nodad")
    net.b.start_workload("v6_greeters", "fd77::2", SERVER_PORT + 1)
    net.b.wait_listening(SERVER_PORT + 1)
    machine = Lan(net.a).add("l1", 5)
    # B's tunnel endpoint listens on IPv4; its certificate names fd77::2 too.
    extra = SITE_RULE + f'\n[[outbound]]\ncidrs = ["fd77::/64"]\nports = [{SERVER_PORT + 1}]\npeer = "{net.b.ip}:15008"\n'
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=extra), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    got = machine.python("import socket\n"
                         f"s = socket.create_connection(('fd77::2', {SERVER_PORT + 1}), timeout=20)\n"
                         "print(s.recv(100).decode())", uid=1001)
    assert got.stdout.decode().strip() == "reached", got
    assert b.decisions(direction="inbound", source_id=SITE)
    mine = a.decisions(direction="outbound", source_id=SITE)
    assert mine and mine[0]["process"] == "routed from fd10::5 on lan0", mine
    # The same machine from an IPv6 address its site does not have: dropped at A.
    machine.run("ip", "-6", "addr", "add", "fd99::5/128", "dev", "eth0", "nodad")
    out = machine.python("import socket, sys\n"
                         "try:\n"
                         f"    socket.create_connection(('fd77::2', {SERVER_PORT + 1}), timeout=3, source_address=('fd99::5', 0))\n"
                         "except OSError as e:\n"
                         "    print(type(e).__name__); sys.exit(0)\n"
                         "print('connected')\n", check=False, timeout=30)
    assert "timeout" in out.stdout.decode().lower(), out
    ruleset = net.a.run("nft", "list", "ruleset").stdout.decode()
    assert any("!= @site_pairs6" in line and "packets 0 " not in line for line in ruleset.splitlines()), ruleset


def spoofed_connect(host, source, dst):
    """A connection attempt from `source` (an address `host` holds only for this): 'timeout'
    when it is dropped on the way."""
    out = host.python(
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('{dst}', {SERVER_PORT}), timeout=3, source_address=('{source}', 0))\n"
        "except OSError as e:\n"
        "    print(type(e).__name__); sys.exit(0)\n"
        "print('connected')\n", check=False, timeout=30)
    return out.stdout.decode().strip().lower()


def test_a_sites_addresses_count_only_on_its_interface_and_it_carries_only_them(net):
    machine = Lan(net.a).add("l1", 5)
    a, _ = start(net)
    cap = Capture(net.a)
    # A LAN machine sending from an address its site does not have.
    machine.run("ip", "addr", "add", "192.168.99.5/32", "dev", "eth0")
    assert "timeout" in spoofed_connect(machine, "192.168.99.5", net.b.ip)
    # A machine on the uplink side claiming the site's address, routed through A.
    net.topo.ns_exec(net.c.ns, "ip", "route", "add", f"{net.b.ip}/32", "via", net.a.ip)
    net.topo.ns_exec(net.c.ns, "ip", "addr", "add", f"{SUBNET}.77/32", "dev", "eth0")
    assert "timeout" in spoofed_connect(net.c, f"{SUBNET}.77", net.b.ip)
    assert not [d for d in a.decisions() if "192.168.99.5" in (d["detail"] or "") + (d["process"] or "") or f"{SUBNET}.77" in (d["process"] or "")]
    ruleset = net.a.run("nft", "list", "ruleset").stdout.decode()
    drops = [line for line in ruleset.splitlines() if "!= @site_pairs4" in line]
    assert len(drops) == 4 and sum("packets 0 " not in line for line in drops) >= 2, ruleset
    frames = sent_by(net.a, cap.finish())
    assert not leaked_syns(frames, SERVER_PORT, "192.168."), "a spoofed SYN left the gateway"
    assert not net.server_connections()


SERVER_SITE = "192.168.20"


def test_two_sites_joined_by_their_gateways_and_a_host_reaching_a_server_behind_one(net):
    machine = Lan(net.a).add("l1", 5)
    server = Lan(net.b, bridge="srv0", subnet=SERVER_SITE, subnet6="fd20::").add("s1", 5)
    log = net.tmp / "s1.log"
    log.write_text("")
    server.start_workload("digest_server", SERVER_PORT, 1 << 16, log)
    server.wait_listening(SERVER_PORT)
    # A: the site's rule, and the servers behind B reached through B.
    a_extra = SITE_RULE + (f'\n[[outbound]]\ncidrs = ["{SERVER_SITE}.0/24", "192.168.30.0/24"]\nports = [{SERVER_PORT}]\npeer = "{net.b.ip}:15008"\n')
    # B: the site and alice may reach s1's service and nothing else behind B; B's certificate
    # names the addresses callers dial through it.
    b_extra = (f'\n[[inbound]]\nports = [{SERVER_PORT}]\nallow = ["{SITE}", "spiffe://{TRUST_DOMAIN}/app/alice"]\n'
               f'backends = ["{SERVER_SITE}.5/32"]\n\n[svid]\naddresses = ["{net.b.ip}", "{SERVER_SITE}.5", "{SERVER_SITE}.6", "192.168.30.5"]\n')
    b_config = host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=b_extra).replace('[svid]\nttl = "1h"\n', "")
    b_config = b_config.replace('addresses = [', 'ttl = "1h"\naddresses = [')
    net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=a_extra), net.tmp)
    b = net.b.start_idgate(b_config, net.tmp)
    cap_a, cap_b = Capture(net.a), Capture(net.b)
    marker = "TWO-SITES-MARKER-" + "t" * 16
    r = json.loads(machine.workload("digest_client", server.ip, SERVER_PORT, 4096, marker, uid=1001).stdout)
    assert r["echo_sha"] == r["sent_sha"], r
    # A host process on gateway A reaches the server behind B too (alice's identity; A needs
    # a route there for its connect, which the table then redirects).
    net.topo.ns_exec(net.a.ns, "ip", "route", "add", f"{SERVER_SITE}.0/24", "via", net.b.ip)
    r2 = json.loads(net.a.workload("digest_client", server.ip, SERVER_PORT, 4096, marker + "-alice", uid=1001).stdout)
    assert r2["echo_sha"] == r2["sent_sha"], r2
    seen = {d["source_id"] for d in b.decisions(direction="inbound", verdict="allowed")}
    assert {SITE, f"spiffe://{TRUST_DOMAIN}/app/alice"} <= seen, b.status()["decisions"]
    assert [line.split()[0] for line in log.read_text().splitlines()] == [f"{SERVER_SITE}.1"] * 2, "s1 saw only gateway B"
    # bob may not reach the backend; nothing behind B but the backend is reachable.
    denied = net.a.workload("digest_client", server.ip, SERVER_PORT, 100, marker + "-bob", uid=1002, check=False, timeout=30)
    assert denied.returncode != 0
    assert b.decisions(direction="inbound", source_id=f"spiffe://{TRUST_DOMAIN}/app/bob", verdict="denied")
    for other in (f"{SERVER_SITE}.6", "192.168.30.5"):
        out = machine.workload("digest_client", other, SERVER_PORT, 100, marker, uid=1001, check=False, timeout=30)
        assert out.returncode != 0, other
        refused = [d for d in b.decisions(direction="inbound", verdict="denied") if d["destination"] == f"{other}:{SERVER_PORT}"]
        assert refused and "neither a local address nor a backend" in refused[-1]["detail"], b.status()["decisions"]
    # Strict mode on B: plaintext routed to the backend from the uplink is dropped.
    net.topo.ns_exec(net.c.ns, "ip", "route", "add", f"{SERVER_SITE}.0/24", "via", net.b.ip)
    plain = net.c.workload("digest_client", server.ip, SERVER_PORT, 100, marker + "-plain", uid=1001, check=False, timeout=40)
    assert plain.returncode != 0 and "timed out" in plain.stderr.decode(), plain.stderr
    assert len(log.read_text().splitlines()) == 2, "plaintext reached the server behind B"
    ruleset = net.b.run("nft", "list", "ruleset").stdout.decode()
    assert any("@backend4" in line and "packets 0 " not in line for line in ruleset.splitlines()), ruleset
    for host, cap in ((net.a, cap_a), (net.b, cap_b)):
        frames = sent_by(host, cap.finish())
        assert marker.encode() not in b"".join(frames), f"the marker left {host.name} in plaintext"
