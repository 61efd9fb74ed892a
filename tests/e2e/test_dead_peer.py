"""A peer that goes silent (its host died, or its packets are dropped) is noticed within
peer_timeout: its connection and the flows on it are closed, a CONNECT sent meanwhile fails
within dial_timeout, and the next flow dials afresh."""
import json
import subprocess
import time

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

# Opens a flow, sends a little, then waits for an answer that never comes (the server answers
# at EOF): prints when and how the flow ended.
LONG_FLOW = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"x" * 100); s.settimeout(30)
print("open", flush=True)
try:
    how = "eof" if s.recv(100) == b"" else "data"
except (ConnectionResetError, BrokenPipeError):
    how = "reset"
except socket.timeout:
    how = "hung"
print(json.dumps({"how": how, "at": time.time()}), flush=True)
"""


def test_a_silent_peer_is_detected_and_its_flows_closed(net):
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=TUNNEL), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=TUNNEL), net.tmp)
    flow = net.a.popen("/usr/bin/python3", "-c", LONG_FLOW, net.b.ip, SERVER_PORT, uid=1001, stdout=subprocess.PIPE, text=True)
    assert flow.stdout.readline().strip() == "open"
    deadline = time.time() + 5
    while not b.decisions(direction="inbound", verdict="allowed") and time.time() < deadline:
        time.sleep(0.05)
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


# Sends a byte every 100 ms for `seconds`, then half-closes and reads the answer.
TICKER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
end = time.time() + float(sys.argv[3])
while time.time() < end:
    s.sendall(b"t"); time.sleep(0.1)
s.shutdown(socket.SHUT_WR)
print(len(s.recv(200)))
"""


def test_old_connections_take_no_new_flows_and_open_flows_finish(net):
    age = '[tunnel]\nmax_connection_age = "2s"\n'
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=age), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, extra=age), net.tmp)
    ticker = net.a.popen("/usr/bin/python3", "-c", TICKER, net.b.ip, SERVER_PORT, 4, uid=1001, stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)  # past the connection's maximum age (and B's GOAWAY)
    r = client(net, 1001, n=100)
    assert r["echo_sha"] == r["sent_sha"]
    assert a.status()["tunnel_dials"] == 2, "a connection past its maximum age took a new flow"
    out, _ = ticker.communicate(timeout=20)
    assert ticker.returncode == 0 and int(out) > 64, "the open flow broke when its connection retired"
    assert len(b.decisions(direction="inbound", verdict="allowed")) == 2
