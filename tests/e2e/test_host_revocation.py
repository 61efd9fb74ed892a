"""A peer host, its CA or any certificate of its chain can be revoked: on the client host its
open flows are reset within a second, its pooled connections closed, and new dials to it fail
with a `denied` decision saying why; on the server host the flows of callers whose certificate
its CA issued are reset and their handshakes refused. Both hosts run CAs from `idgate ca issue`
under one root (a caller's host is known only through its CA's grant)."""
import time

from eventually import eventually
from fleet import config, host_id, init_root, issue, serial_of
from hosts import host_config
from netns import IDGATE
from test_reload import ended, ticker, timeserver
from test_tunnel import client

PORT = 9005


def start(net, name, host, ca_dir, bundle=None):
    extra = f'[revocation]\nfile = "{net.tmp}/revoked-{name}"\n'
    if bundle is None:
        cfg = host_config(f"host-{name}", net.tmp / f"state-{name}", ca_dir, extra=extra)
    else:
        cfg = config(net, name, ca_dir, bundle, extra=extra)
    return host.start_idgate(cfg, net.tmp)


def fleet(net):
    root = init_root(net.tmp / "root")
    cas = {name: issue(net, root, name) for name in "ab"}
    a = start(net, "a", net.a, cas["a"], root / "ca.pem")
    b = start(net, "b", net.b, cas["b"], root / "ca.pem")
    return a, b, cas


def deny(net, name, *entries):
    """Replaces host `name`'s deny list the way a fleet distributes it: a new file renamed into place."""
    tmp = net.tmp / f"revoked-{name}.new"
    tmp.write_text("".join(f"{e}\n" for e in entries))
    tmp.rename(net.tmp / f"revoked-{name}")


def last_byte(log):
    n, last, _gap, _how = log.read_text().splitlines()[-1].split()
    return int(n), float(last)


def works(net, uid=1001):
    return isinstance(client(net, uid, n=100, check=False), dict)


def cut_within_a_second(net, log, flow, t0, what):
    got = ended(flow)
    n, last = last_byte(log)
    print(f"{what}: last byte at the server {(last - t0) * 1000:.0f} ms after the revocation, the client saw the reset after {(got['at'] - t0) * 1000:.0f} ms")
    assert got["how"] != "ok", (what, got)
    assert n > 10 and last - t0 < 1.0, (what, n, last - t0)


def test_a_revoked_peer_host_loses_its_flows_and_is_not_dialled_again(net):
    a, b, cas = fleet(net)
    log = timeserver(net)

    # By the peer's host ID, with `idgate revoke` on the client host.
    alice = ticker(net, 1001, 4)
    time.sleep(1)
    t0 = time.time()
    out = net.a.run(IDGATE, "revoke", host_id("b"), "-c", a.config).stdout.decode()
    cut_within_a_second(net, log, alice, t0, "peer host revoked by ID")
    assert "1 open flow(s) closed, 1 pooled connection(s) closed" in out, out
    assert a.status()["tunnel_connections"] == 0
    assert not works(net)
    denied = [d for d in a.decisions(direction="outbound", verdict="denied") if host_id("b") in (d["detail"] or "")]
    assert denied and f"{host_id('b')} is revoked" in denied[-1]["detail"], a.status()["decisions"]

    # Lifted, b is dialled again.
    deny(net, "a")
    eventually(lambda: works(net), "flows to b resumed once b's revocation was lifted", timeout=3)

    # By the serial of b's host CA, by the file alone.
    ca_serial = serial_of(cas["b"] / "ca.pem")
    alice = ticker(net, 1001, 4)
    time.sleep(1)
    t0 = time.time()
    deny(net, "a", ca_serial)
    cut_within_a_second(net, log, alice, t0, "peer host's CA revoked by serial")
    assert not works(net)
    details = [d["detail"] or "" for d in a.decisions(direction="outbound", verdict="denied")]
    assert any(f"serial {ca_serial}" in d and "revoked" in d for d in details), details

    # By the serial of b's own certificate.
    deny(net, "a")
    eventually(lambda: works(net), "flows to b resumed once its CA's revocation was lifted", timeout=3)
    leaf = next(s["serial"] for s in b.status()["svids"] if s["spiffe_id"] == host_id("b"))
    deny(net, "a", leaf)
    eventually(lambda: not works(net), "b's revoked certificate refused", timeout=3)
    details = [d["detail"] or "" for d in a.decisions(direction="outbound", verdict="denied")]
    assert any(f"serial {leaf} is revoked" in d for d in details), details


def test_a_revoked_host_or_host_ca_cannot_call_in(net):
    a, b, cas = fleet(net)
    log = timeserver(net)

    # On the server host, by the calling host's ID: its workloads' flows are reset.
    alice = ticker(net, 1001, 4)
    time.sleep(1)
    t0 = time.time()
    out = net.b.run(IDGATE, "revoke", host_id("a"), "-c", b.config).stdout.decode()
    cut_within_a_second(net, log, alice, t0, "calling host revoked by ID")
    assert "1 open flow(s) closed" in out, out
    assert not works(net)
    refused = [r["detail"] for r in b.status()["refused_connections"]]
    assert any(host_id("a") in r and "revoked" in r for r in refused), refused

    deny(net, "b")
    eventually(lambda: works(net), "flows from a resumed once a's revocation was lifted", timeout=3)

    # By the serial of the calling host's CA.
    ca_serial = serial_of(cas["a"] / "ca.pem")
    alice = ticker(net, 1001, 4)
    time.sleep(1)
    t0 = time.time()
    deny(net, "b", ca_serial)
    cut_within_a_second(net, log, alice, t0, "calling host's CA revoked by serial")
    assert not works(net)
    refused = [r["detail"] for r in b.status()["refused_connections"]]
    assert any(f"serial {ca_serial}" in r and "revoked" in r for r in refused), refused


def test_with_one_shared_ca_a_peer_host_is_revoked_by_its_id(net):
    # No host CAs: the client host still knows the server host by its certificate's ID.
    a = start(net, "a", net.a, net.ca_dir)
    start(net, "b", net.b, net.ca_dir)
    log = timeserver(net)
    bob = ticker(net, 1002, 4)
    time.sleep(1)
    t0 = time.time()
    net.a.run(IDGATE, "revoke", host_id("b"), "-c", a.config)
    cut_within_a_second(net, log, bob, t0, "peer host revoked by ID, one shared CA")
    assert not works(net, 1002)
    assert a.decisions(direction="outbound", verdict="denied")
