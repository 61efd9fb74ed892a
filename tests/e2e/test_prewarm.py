"""Process events (the proc connector): a workload whose process has just started gets its SVID
minted and a tunnel connection to where this host's flows go before it calls connect(); its
first flow then uses that connection. Without the events (a container, another network
namespace) idgate says why and flows do the same work themselves.

The connector answers only in the initial network namespace, and these hosts are namespaces of
one machine: host a opens its events socket there (IDGATE_PROC_EVENTS_NETNS), as an idgate on a
real host does without being told."""
import json
import os
import subprocess

from eventually import eventually
from hosts import SERVER_PORT, TRUST_DOMAIN, host_config
from netns import IDGATE
from test_tunnel import client

ALICE = f"spiffe://{TRUST_DOMAIN}/app/alice"
# The test runner runs in the initial network namespace.
EVENTS = {"IDGATE_PROC_EVENTS_NETNS": f"/proc/{os.getpid()}/ns/net"}


def status(host, idg):
    return json.loads(host.run(IDGATE, "status", "--json", "-c", idg.config).stdout)


def start(net, name, host, env=None):
    return host.start_idgate(host_config(f"host-{name}", net.tmp / f"state-{name}", net.ca_dir), net.tmp, env=env)


def test_a_new_workload_is_ready_before_its_first_connect(net):
    a, _b = start(net, "a", net.a, EVENTS), start(net, "b", net.b)
    events = status(net.a, a)["process_events"]
    assert events["available"], events
    # Bob's flow shows host a where its flows go; alice has never been seen.
    assert isinstance(client(net, 1002), dict)
    before = status(net.a, a)
    assert ALICE not in [s["spiffe_id"] for s in before["svids"]], before["svids"]
    late = net.a.start_workload("connect_on_go", net.b.ip, SERVER_PORT, uid=1001, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # Before alice's process connects: her SVID exists and a connection of hers is dialled.
        ready = eventually(lambda: (lambda st: st if ALICE in [s["spiffe_id"] for s in st["svids"]]
                                  and st["tunnel_dials"] == before["tunnel_dials"] + 1 else None)(status(net.a, a)),
                         "alice's SVID minted and her tunnel connection dialled ahead of her flow")
        assert ready["process_events"]["workloads_prepared"] > before["process_events"]["workloads_prepared"]
        late.stdin.write("go\n")
        late.stdin.flush()
        assert late.wait(timeout=20) == 0 and int(late.stdout.read()) > 0
    finally:
        late.kill()
    after = status(net.a, a)
    assert after["tunnel_dials"] == ready["tunnel_dials"], "the first flow dialled again instead of using the warmed connection"
    assert after["svids_minted"] == ready["svids_minted"], "the first flow minted again"


def test_after_a_restart_known_workloads_find_their_connection_dialled_ahead(net):
    a, _b = start(net, "a", net.a, EVENTS), start(net, "b", net.b)
    assert isinstance(client(net, 1002), dict)  # bob's flows go to host b
    assert a.terminate() == 0
    history = json.loads((net.tmp / "state-a" / "peer-history.json").read_text())
    assert [i["spiffe_id"] for i in history["identities"]] == [f"spiffe://{TRUST_DOMAIN}/app/bob"], history
    assert oct((net.tmp / "state-a" / "peer-history.json").stat().st_mode & 0o777) == "0o600"
    a = start(net, "a", net.a, EVENTS)
    assert "target history of 1 identities read" in a.log.read_text()
    before = status(net.a, a)
    assert before["tunnel_dials"] == 0, before
    late = net.a.start_workload("connect_on_go", net.b.ip, SERVER_PORT, uid=1002, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = eventually(lambda: (lambda st: st if st["tunnel_dials"] == 1 else None)(status(net.a, a)),
                         "bob's tunnel connection dialled from the saved history ahead of his first flow")
        late.stdin.write("go\n")
        late.stdin.flush()
        assert late.wait(timeout=20) == 0 and int(late.stdout.read()) > 0
    finally:
        late.kill()
    assert status(net.a, a)["tunnel_dials"] == ready["tunnel_dials"], "the first flow after the restart dialled again"


def test_a_history_file_that_is_not_ours_is_ignored_at_start(net):
    state = net.tmp / "state-a"
    state.mkdir(parents=True, exist_ok=True)
    (state / "peer-history.json").write_text('{"version": 1, "identities": [{"spiffe_id": "not an id"}]}')
    a, _b = start(net, "a", net.a, EVENTS), start(net, "b", net.b)
    assert "target history not read; starting without it" in a.log.read_text()
    r = client(net, 1001)
    assert isinstance(r, dict) and r["echo_sha"] == r["sent_sha"], r


def test_without_process_events_idgate_says_why_and_flows_still_work(net):
    a, _b = start(net, "a", net.a), start(net, "b", net.b)
    events = status(net.a, a)["process_events"]
    assert not events["available"] and "unavailable" in events["reason"] and "namespace" in events["reason"], events
    assert "process events unavailable" in net.a.run(IDGATE, "status", "-c", a.config).stdout.decode()
    r = client(net, 1001)
    assert isinstance(r, dict) and r["echo_sha"] == r["sent_sha"], r
