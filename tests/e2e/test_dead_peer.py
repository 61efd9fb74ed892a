"""A peer that goes silent (its host died, or its packets are dropped) is noticed within
peer_timeout: its connection and the flows on it are closed, a CONNECT sent meanwhile fails
within dial_timeout, and the next flow dials afresh."""
import json
import subprocess
import time

from eventually import eventually
from hosts import SERVER_PORT, host_config
from test_tunnel import client

TUNNEL = '[tunnel]\npeer_timeout = "3s"\ndial_timeout = "2s"\n'

# Drops every packet into and out of the host, as a dead host or a partition would.
BLACKHOLE = """
table inet blackhole {
  chain in { type filter hook input priority -300; policy drop; }
  chain out { type filter hook output priority -300; policy drop; }
}
"""


def test_a_silent_peer_is_detected_and_its_flows_closed(net):
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=TUNNEL), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=TUNNEL), net.tmp)
    flow = net.a.start_workload("unanswered_flow", net.b.ip, SERVER_PORT, uid=1001, stdout=subprocess.PIPE, text=True)
    assert flow.stdout.readline().strip() == "open"
    eventually(lambda: b.decisions(direction="inbound", verdict="allowed"), "host b allowed the flow")
    assert a.status()["tunnel_connections"] == 1

    net.b.run("nft", "-f", "-", input=BLACKHOLE.encode())
    silenced = time.time()
    # A new flow on the pooled connection: its CONNECT gets no answer and must fail in time.
    started = time.time()
    r = client(net, 1001, n=100, check=False, timeout=30)
    assert not isinstance(r, dict), "a flow went through a blackholed peer"
    assert time.time() - started < 2 + 1.5, f"a CONNECT to a silent peer took {time.time() - started:.1f}s to fail"

    out, _ = flow.communicate(timeout=40)
    ended = json.loads(out.strip().splitlines()[-1])
    assert ended["how"] in ("reset", "eof"), f"the open flow was not closed: {ended}"
    assert ended["at"] - silenced < 3 + 1.5, f"the dead peer was noticed after {ended['at'] - silenced:.1f}s"
    assert "peer idgate taken for dead" in a.log.read_text()
    assert a.status()["tunnel_connections"] == 0
    assert a.decisions(direction="outbound", verdict="peer_unreachable")

    net.b.run("nft", "delete", "table", "inet", "blackhole")
    dials = a.status()["tunnel_dials"]
    r = client(net, 1001, n=100)
    assert r["echo_sha"] == r["sent_sha"]
    assert a.status()["tunnel_dials"] == dials + 1, "the next flow must dial afresh"


def test_old_connections_take_no_new_flows_and_open_flows_finish(net):
    age = '[tunnel]\nmax_connection_age = "2s"\n'
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=age), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=age), net.tmp)
    # A byte every 100 ms for 4 s, then one read of the answer.
    ticker = net.a.start_workload("ticker", net.b.ip, SERVER_PORT, 4, 0.1, "t", 200, uid=1001, stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)  # past the connection's maximum age (and B's GOAWAY)
    r = client(net, 1001, n=100)
    assert r["echo_sha"] == r["sent_sha"]
    assert a.status()["tunnel_dials"] == 2, "a connection past its maximum age took a new flow"
    out, _ = ticker.communicate(timeout=20)
    assert ticker.returncode == 0 and json.loads(out)["answer_len"] > 64, f"the open flow broke when its connection retired: {out}"
    assert len(b.decisions(direction="inbound", verdict="allowed")) == 2
