"""Reload (`idgate reload`, SIGHUP) and revocation (`idgate revoke`, the watched deny list):
a policy change reaches open flows (those the new policy denies are closed, on either host,
the others go on untouched), new flows see it at once, a broken file changes nothing and
names its line, and a revoked identity's flow sends no byte a second after the command."""
import json
import os
import re
import signal
import subprocess
import time

from eventually import eventually
from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE
from test_tunnel import client

ALICE = f"spiffe://{TRUST_DOMAIN}/app/alice"
BOB = f"spiffe://{TRUST_DOMAIN}/app/bob"
PORT = 9005  # intercepted on host a, protected on host b, served by sink_server.py


def start(net, name, host):
    # Each host its own deny list (both configs live in one directory, where the default is).
    extra = f'[revocation]\nfile = "{net.tmp}/revoked-{name}"\n'
    cfg = host_config(f"host-{name}", net.tmp / f"state-{name}", net.ca_dir, extra=extra)
    return host.start_idgate(cfg, net.tmp)


def ticker(net, uid, seconds):
    """A byte every 50 ms for `seconds`, then one read of the answer (ticker.py)."""
    return net.a.start_workload("ticker", net.b.ip, PORT, seconds, 0.05, "t", 100, uid=uid, stdout=subprocess.PIPE, text=True)


def ended(p):
    out, _ = p.communicate(timeout=30)
    return json.loads(out)


def edit(idgate, old, new):
    text = idgate.config.read_text()
    assert old in text, old
    idgate.config.write_text(text.replace(old, new))


def reload(net, host, idgate, check=True):
    return host.run(IDGATE, "reload", "-c", idgate.config, check=check)


def timeserver(net):
    """Logs, per connection, the bytes received and the time of the last one (sink_server.py)."""
    log = net.tmp / "timeserver.log"
    net.b.start_workload("sink_server", PORT, log)
    net.b.wait_listening(PORT)
    return log


def test_a_reload_closes_what_the_new_policy_denies_and_nothing_else(net):
    _a, b = start(net, "a", net.a), start(net, "b", net.b)
    timeserver(net)
    alice, bob = ticker(net, 1001, 4), ticker(net, 1002, 4)
    time.sleep(1)
    # Host b stops allowing bob; alice's rule stays.
    edit(b, f'"{BOB}", ', "")
    t0 = time.time()
    out = reload(net, net.b, b).stdout.decode()
    assert "1 open flow(s) closed" in out, out
    got_bob, got_alice = ended(bob), ended(alice)
    print(f"server-side reload: the denied flow's client saw the reset {(got_bob['at'] - t0) * 1000:.0f} ms after the command")
    assert got_bob["how"] != "ok" and got_bob["at"] - t0 < 1.0, got_bob
    assert got_alice["how"] == "ok" and got_alice["sent"] > 60, got_alice
    closed = [d for d in b.status()["decisions"] if d["verdict"] == "closed"]
    assert len(closed) == 1 and closed[0]["source_id"] == BOB and "no longer allowed" in closed[0]["detail"], closed
    # New flows see the new rule at once.
    assert client(net, 1001, n=100)["echo_sha"]
    assert not isinstance(client(net, 1002, n=100, check=False), dict)

    # A broken file changes nothing, and says where it is broken.
    good = b.config.read_text()
    b.config.write_text(good + "\n[[inbound]]\nports = [9000]\nallow = [\"not-a-spiffe-id\"]\n")
    line = len(good.splitlines()) + 4
    r = reload(net, net.b, b, check=False)
    assert r.returncode == 1, r
    assert re.search(rf"{re.escape(str(b.config))}:{line}:\d+: .*spiffe", r.stderr.decode()), r.stderr
    assert "reload refused" in b.log.read_text()
    assert client(net, 1001, n=100)["echo_sha"]
    assert not isinstance(client(net, 1002, n=100, check=False), dict)

    # SIGHUP applies the file too; a setting that cannot change live is named, not applied.
    b.config.write_text(good.replace(f'allow = ["{ALICE}", ', f'allow = ["{ALICE}", "{BOB}", ') + '\n[tunnel]\npeer_timeout = "9s"\n')
    b.proc.send_signal(1)
    eventually(lambda: isinstance(client(net, 1002, n=100, check=False), dict), "SIGHUP applied the config", interval=0.2)
    assert "apply at the next restart: tunnel.peer_timeout" in b.log.read_text()
    assert b.status()["policy_generation"] == 2


def test_a_client_side_reload_closes_flows_of_processes_whose_identity_changed(net):
    a, _b = start(net, "a", net.a), start(net, "b", net.b)
    timeserver(net)
    alice, bob = ticker(net, 1001, 3), ticker(net, 1002, 3)
    time.sleep(1)
    # uid 1002 no longer maps to bob on host a: its open flow carries an identity it no longer has.
    edit(a, f'[[workload]]\nspiffe_id = "{BOB}"\nuid = 1002\n', "")
    t0 = time.time()
    reload(net, net.a, a)
    got_bob, got_alice = ended(bob), ended(alice)
    print(f"client-side reload: the flow's client saw the reset {(got_bob['at'] - t0) * 1000:.0f} ms after the command")
    assert got_bob["how"] != "ok" and got_bob["at"] - t0 < 1.0, got_bob
    assert got_alice["how"] == "ok", got_alice
    closed = [d for d in a.status()["decisions"] if d["verdict"] == "closed"]
    assert len(closed) == 1 and "matches no workload rule any more" in closed[0]["detail"], closed
    assert not isinstance(client(net, 1002, n=100, check=False), dict)


def test_revocation_reaches_open_flows_within_a_second_on_either_host(net):
    a, b = start(net, "a", net.a), start(net, "b", net.b)
    log = timeserver(net)

    # On the server host: the caller's streams are reset, new ones refused.
    alice = ticker(net, 1001, 4)
    time.sleep(1)
    t0 = time.time()
    out = net.b.run(IDGATE, "revoke", ALICE, "-c", b.config).stdout.decode()
    got = ended(alice)
    assert "1 open flow(s) closed" in out, out
    assert got["how"] != "ok", got
    n, last, _gap, how = log.read_text().splitlines()[-1].split()
    server_side = float(last) - t0
    print(f"revoked on the server host: last byte {server_side * 1000:.0f} ms after the command, client saw the reset after {(got['at'] - t0) * 1000:.0f} ms")
    assert server_side < 1.0 and int(n) > 10, (n, last, how, t0)
    assert not isinstance(client(net, 1001, n=100, check=False), dict)
    # Its tunnel connection went with its flows; a new one is refused at the handshake.
    refused = [r for r in b.status()["refused_connections"] if f"{ALICE} is revoked" in r["detail"]]
    assert refused, b.status()["refused_connections"]
    assert b.status()["revoked_entries"] == 1

    # On the client host, by the file alone (as a fleet's distribution writes it): bob's
    # flow is closed, its pooled connection closed and its SVID dropped.
    bob = ticker(net, 1002, 4)
    time.sleep(1)
    assert BOB in [s["spiffe_id"] for s in a.status()["svids"]]
    revoked = net.tmp / "revoked-a"
    tmp = net.tmp / "revoked-a.new"
    tmp.write_text(f"{BOB}\n")
    t0 = time.time()
    tmp.rename(revoked)
    got = ended(bob)
    print(f"revoked on the client host by the file: client saw the reset after {(got['at'] - t0) * 1000:.0f} ms")
    assert got["how"] != "ok" and got["at"] - t0 < 1.0, got
    st = a.status()
    assert BOB not in [s["spiffe_id"] for s in st["svids"]], st["svids"]
    assert not isinstance(client(net, 1002, n=100, check=False), dict)
    assert [d for d in a.status()["decisions"] if d["verdict"] == "revoked"], a.status()["decisions"]


def test_a_revoked_serial_is_replaced_on_the_client_host(net):
    a, _b = start(net, "a", net.a), start(net, "b", net.b)
    timeserver(net)
    first = client(net, 1001, n=100)
    assert first["echo_sha"]
    serial = next(s["serial"] for s in a.status()["svids"] if s["spiffe_id"] == ALICE)
    alice = ticker(net, 1001, 3)
    time.sleep(1)
    net.a.run(IDGATE, "revoke", serial, "-c", a.config)
    assert ended(alice)["how"] != "ok"
    # The next flow gets a fresh SVID (a new serial) and goes through.
    assert client(net, 1001, n=100)["echo_sha"]
    now = next(s["serial"] for s in a.status()["svids"] if s["spiffe_id"] == ALICE)
    assert now != serial
    # A bad entry is refused by the command and changes nothing.
    r = net.a.run(IDGATE, "revoke", "not-an-entry", "-c", a.config, check=False)
    assert r.returncode != 0 and b"neither a SPIFFE ID" in r.stderr, r


# Drops the SYNs of connections to PORT on a host (its service is slow to take them): the
# inbound side's dial to the service hangs until the table goes and the SYN is sent again.
SLOW_SERVICE = f"""
table inet slowsvc {{
  chain out {{ type filter hook output priority -300; policy accept;
    tcp dport {PORT} tcp flags & (syn | ack) == syn drop
  }}
}}
"""


def test_a_revocation_during_a_slow_dial_closes_the_flow_on_either_host(net):
    a, b = start(net, "a", net.a), start(net, "b", net.b)
    log = timeserver(net)

    # Client host: b's proxy is stopped, so a's dial to it hangs in the TLS handshake while
    # alice is revoked; the flow is reset then, not let through when b answers.
    proxy = b.status()["pid"]
    os.kill(proxy, signal.SIGSTOP)
    try:
        alice = ticker(net, 1001, 3)
        time.sleep(0.5)
        t0 = time.time()
        net.a.run(IDGATE, "revoke", ALICE, "-c", a.config)
        time.sleep(1)
    finally:
        os.kill(proxy, signal.SIGCONT)
    got = ended(alice)
    print(f"revoked during the client host's dial: the client saw the reset after {(got['at'] - t0) * 1000:.0f} ms")
    assert got["how"] != "ok" and got["at"] - t0 < 1.0, got
    closed = [d for d in a.decisions(direction="outbound", verdict="closed") if d["source_id"] == ALICE]
    assert len(closed) == 1 and "is revoked" in closed[0]["detail"], a.status()["decisions"]

    # Server host: b's connection to the service hangs while bob is revoked there.
    net.b.run("nft", "-f", "-", input=SLOW_SERVICE.encode())
    bob = ticker(net, 1002, 3)
    time.sleep(0.4)
    t0 = time.time()
    net.b.run(IDGATE, "revoke", BOB, "-c", b.config)
    time.sleep(0.3)
    net.b.run("nft", "delete", "table", "inet", "slowsvc")
    got = ended(bob)
    print(f"revoked during the server host's dial: the client saw the reset after {(got['at'] - t0) * 1000:.0f} ms")
    assert got["how"] != "ok" and got["at"] - t0 < 1.0, got
    time.sleep(0.3)
    served = log.read_text() if log.exists() else ""
    assert all(line.split()[0] == "0" for line in served.splitlines()), f"the service received a revoked flow's bytes: {served}"
    closed = [d for d in b.decisions(direction="inbound", verdict="closed") if d["source_id"] == BOB]
    assert len(closed) == 1 and "is revoked" in closed[0]["detail"], b.status()["decisions"]
