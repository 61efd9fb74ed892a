"""A gateway: machines on a LAN that host A routes get the identity of their site (a
[[workload]] rule with interface and sources) for flows to intercepted destinations, tunnelled
like a process's; a site's addresses count only on its interface, and its interface carries
only them (anti-spoofing); nothing crosses the gateway's uplink in plaintext."""
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
