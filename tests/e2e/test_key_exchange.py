"""Tunnels prefer the hybrid post-quantum key exchange X25519MLKEM768 (so that traffic recorded
today cannot be decrypted later); classical groups are used only where the config lists them:
a host configured for X25519MLKEM768 alone refuses a peer that offers only X25519, and a host
with the default list reaches such a peer over X25519 (a fleet mid-upgrade)."""
import re

from hosts import host_config
from test_tunnel import client


def key_exchanges(host):
    text = host.run("curl", "-sf", "http://127.0.0.1:15000/metrics").stdout.decode()
    return {(side, group): int(n) for side, group, n in re.findall(r'^idgate_tunnel_key_exchanges_total\{side="(\w+)",group="(\w+)"\} (\d+)$', text, re.M)}


def start(net, a_groups=None, b_groups=None):
    def extra(groups):
        return f"[tunnel]\nkey_exchange = {groups}\n" if groups else ""
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=extra(a_groups)), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=extra(b_groups)), net.tmp)
    return a, b


def test_tunnels_negotiate_x25519mlkem768_by_default(net):
    start(net)
    assert client(net, 1001, n=1000)["echo_sha"]
    assert key_exchanges(net.a).get(("client", "X25519MLKEM768")) == 1, key_exchanges(net.a)
    assert key_exchanges(net.b).get(("server", "X25519MLKEM768")) == 1, key_exchanges(net.b)


def test_classical_groups_only_as_configured(net):
    # B still offers only X25519 (an idgate of before post-quantum, say).
    start(net, a_groups='["X25519MLKEM768"]', b_groups='["X25519"]')
    r = client(net, 1001, n=100, check=False, timeout=30)
    assert not isinstance(r, dict), "a host configured for X25519MLKEM768 alone must not fall back to X25519"
    assert not any(g == "X25519" for _, g in key_exchanges(net.a)), key_exchanges(net.a)


def test_the_default_list_reaches_a_classical_peer_over_x25519(net):
    start(net, b_groups='["X25519"]')
    assert client(net, 1001, n=1000)["echo_sha"]
    assert key_exchanges(net.a).get(("client", "X25519")) == 1, key_exchanges(net.a)
