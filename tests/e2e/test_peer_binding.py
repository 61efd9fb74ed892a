"""A tunnel reaches only the destination's own host: a peer's certificate must name the
address the flow was going to, so another host of the trust domain (compromised, with a valid
certificate of its own) cannot terminate flows that a hijacked route or DNS sends to it."""
import time

from hosts import SERVER_PORT, host_config
from test_tunnel import client, start_pair

HIJACK = """
table ip hijack {
  chain out { type nat hook output priority -99; policy accept;
    ip daddr %s tcp dport 15008 dnat to %s
  }
}
"""


def test_another_host_of_the_trust_domain_cannot_terminate_the_flow(net):
    a, _ = start_pair(net)
    # The path works (bob's pooled connection to B does not serve alice's flows below).
    r = client(net, 1002, n=1000)
    assert r["echo_sha"] == r["sent_sha"]
    # Host C is a member of the trust domain (same CA), with a certificate for its own address.
    net.c.start_idgate(host_config("host-c", net.tmp / "state-c", net.ca_dir), net.tmp)
    # Compromised, it takes B's address for a service of its own...
    net.c.run("ip", "addr", "add", f"{net.b.ip}/32", "dev", "lo")
    time.sleep(1.2)  # idgate re-reads its local addresses at most once a second
    stolen = net.tmp / "stolen.log"
    stolen.write_text("")
    net.c.start_workload("digest_server", SERVER_PORT, 10, stolen)
    net.c.wait_listening(SERVER_PORT)
    # ...and a hijacked route sends A's tunnel connections for B to C.
    net.a.run("nft", "-f", "-", input=(HIJACK % (net.b.ip, net.c.ip)).encode())
    r = client(net, 1001, n=1000, marker="FOR-HOST-B-ONLY", check=False, timeout=30)
    assert not isinstance(r, dict), "the flow went through a host that is not its destination's"
    assert stolen.read_text() == "", "host C received the flow's bytes"
    refused = a.decisions(direction="outbound", verdict="peer_unverified")
    assert refused, a.status()["decisions"]
    assert f"spiffe://demo.idgate/idgate/host/host-c is not the host of {net.b.ip}" in refused[0]["detail"], refused
    assert f"names {net.c.ip}" in refused[0]["detail"], refused


def test_host_certificates_name_the_host_addresses(net):
    a, b = start_pair(net)
    host_svids = [s for s in b.status()["svids"] if s["spiffe_id"].endswith("/idgate/host/host-b")]
    assert host_svids and host_svids[0]["addresses"] == [net.b.ip], host_svids
