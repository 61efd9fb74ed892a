"""What an authenticated peer sends about its flows is bounded: the flow id and process
description it attaches to each CONNECT are kept only within limits, the header list is capped,
and streams it is refused do not write one trail line each. The peer here is a hand-written
HTTP/2 client holding a valid workload certificate of the trust domain."""
import json
import time

import pki
from eventually import eventually
from hosts import TRUST_DOMAIN, host_config


def peer_certificate(net, sid):
    """A workload certificate for `sid` under the test CA, as another idgate host would hold."""
    d = net.tmp / "peer"
    d.mkdir(exist_ok=True)
    pki.issue(net.ca_dir, d / "cert.pem", d / "key.pem", uris=[sid], cn="peer")
    return d / "cert.pem", d / "key.pem"


def peer(net, authority, flow_len, process_len, streams=1):
    """`streams` CONNECTs from a hand-written HTTP/2 peer, each with a flow id and a process
    description of the given lengths (h2_connect_peer.py)."""
    cert, key = peer_certificate(net, f"spiffe://{TRUST_DOMAIN}/app/alice")
    r = net.a.workload("h2_connect_peer", cert, key, net.b.ip, 15008, authority, flow_len, process_len, streams, check=False, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-1000:]
    return r.stdout.decode()


def inbound_decisions(b):
    return [d for d in b.status()["decisions"] if d["direction"] == "inbound"]


def test_a_peers_flow_id_and_process_are_kept_within_bounds_and_the_header_list_is_capped(net):
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    # Under the header list cap: the flow id is too long to keep, the description is cut.
    peer(net, f"{net.b.ip}:9000", 1000, 8000)
    time.sleep(0.3)
    [d] = inbound_decisions(b)
    problems = []  # all of them at once
    kept = {"flow": len(d["flow"]), "process": len(d["process"] or "")}
    if kept["flow"] > 128 or kept["process"] > 1100:
        problems.append(f"kept what the peer sent: {kept}")
    # Over it: 200 KB of process description (in 13 frames) never reaches a decision, the
    # trail or status.
    peer(net, f"{net.b.ip}:9000", 10, 200_000)
    time.sleep(0.3)
    status = len(json.dumps(b.status()))
    if status > 100_000:
        problems.append(f"status holds {status} bytes after a peer's 200 KB header")
    if "p" * 20_000 in b.log.read_text():
        problems.append("the log holds the peer's 200 KB header")
    assert problems == [] and b.proc.poll() is None, problems


def test_refused_streams_do_not_write_a_trail_line_each(net):
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    # Port 1 is not one alice may reach: every stream is refused (403).
    peer(net, f"{net.b.ip}:1", 10, 10, streams=300)
    eventually(lambda: "more refused tunnel streams" in b.log.read_text(), "the refused streams beyond the budget summed up", timeout=15, interval=0.5)
    text = b.log.read_text()
    records = [line for line in text.splitlines() if "idgate::trail" in line and '"direction":"inbound"' in line and '"verdict":"denied"' in line]
    assert len(records) <= 100, f"{len(records)} trail lines for 300 refused streams"
