"""`idgate upgrade`: a new idgate process takes over new flows while the old one serves the
open ones until they end. A long-lived flow (a marker every 100 ms) survives an upgrade of the
client host's idgate and one of the server host's with no reset and no gap over a second;
flows opened after each upgrade are served by the new process (its pid in the trail); the old
process exits once its last flow ends; and no byte of the marker crosses the wire in clear."""
import json
import os
import subprocess
import time

from eventually import eventually
from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE
from test_tunnel import Capture, client

PORT = 9006


def ticker(net, uid, seconds):
    """UPGRADE-MARKER every 100 ms for `seconds`, then one read of the answer (ticker.py)."""
    return net.a.start_workload("ticker", net.b.ip, PORT, seconds, 0.1, "UPGRADE-MARKER", 100, uid=uid, stdout=subprocess.PIPE, text=True)


def ended(flow):
    """How a ticker's flow ended: "ok" only if the service's answer ("done\n") came."""
    got = json.loads(flow.communicate(timeout=30)[0])
    if got["how"] == "ok" and got["answer"] != "done\n":
        got["how"] = "no answer"
    return got


def gapserver(net):
    """Logs, per connection, the bytes received and the longest silence (sink_server.py)."""
    log = net.tmp / "gaps.log"
    net.b.start_workload("sink_server", PORT, log)
    net.b.wait_listening(PORT)
    return log


def start(net, name, host):
    host.run("sysctl", "-qw", "net.ipv4.tcp_migrate_req=1")
    extra = f'[trail]\nfile = "{net.tmp}/trail-{name}.jsonl"\n'
    return host.start_idgate(host_config(f"host-{name}", net.tmp / f"state-{name}", net.ca_dir, extra=extra), net.tmp)


def trail(net, name):
    return [json.loads(line) for line in (net.tmp / f"trail-{name}.jsonl").read_text().splitlines()]


def alive(pid):
    try:
        os.kill(pid, 0)
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_a_long_lived_flow_survives_two_upgrades_and_new_flows_go_to_the_new_process(net):
    a, b = start(net, "a", net.a), start(net, "b", net.b)
    log = gapserver(net)
    wire = Capture(net.a)
    flow = ticker(net, 1001, 8)
    time.sleep(1.5)
    old = {}
    for name, host, d in (("a", net.a, a), ("b", net.b, b)):
        old[name] = d.status()["pid"]
        out = host.run(IDGATE, "upgrade", "-c", d.config).stdout.decode()
        new = d.status()["pid"]
        assert new != old[name] and f"upgraded: pid {new}" in out, out
        # The old process drains; the new one takes new flows, on both hosts' side of them.
        r = client(net, 1001, n=1000)
        assert r["echo_sha"], r
        time.sleep(0.3)
        fresh = [t for t in trail(net, name) if t["verdict"] in ("tunneled", "allowed")][-1]
        assert fresh["idgate_pid"] == new, fresh
        assert alive(old[name]), f"the old idgate on {name} left before its flow ended"
        time.sleep(1.5)
    got = ended(flow)
    frames = wire.finish()
    assert len(frames) > 50 and not any(b"UPGRADE-MARKER" in f for f in frames), "the marker crossed the wire in clear"
    n, _last, gap, how = log.read_text().splitlines()[0].split()
    print(f"long-lived flow across two upgrades: {got['sent']} bytes sent, {n} received, longest gap {float(gap) * 1000:.0f} ms, ended: {how}")
    assert got["how"] == "ok" and how == "eof" and int(n) == got["sent"], (got, n, how)
    assert float(gap) < 1.0, gap
    # With its last flow over, each old process exits; the table never left.
    eventually(lambda: not any(alive(p) for p in old.values()), lambda: f"the old processes exited: {old}", interval=0.1)
    records = [t for t in trail(net, "a") if t["bytes_up"] == got["sent"]]
    assert records and records[0]["idgate_pid"] == old["a"], records
    assert client(net, 1001, n=1000)["echo_sha"]
    assert f"spiffe://{TRUST_DOMAIN}/app/alice" in [s["spiffe_id"] for s in a.status()["svids"]]


def test_policy_and_revocation_reach_flows_still_draining_on_the_old_process(net):
    a, _b = start(net, "a", net.a), start(net, "b", net.b)
    gapserver(net)
    tickers = {uid: ticker(net, uid, 20) for uid in (1001, 1002)}  # alice, bob
    time.sleep(1.0)
    old = a.status()["pid"]
    net.a.run(IDGATE, "upgrade", "-c", a.config)
    assert a.status()["pid"] != old and alive(old)
    # Policy tightened on A while both flows drain on the old process: alice is no workload now.
    a.config.write_text(a.config.read_text().replace("uid = 1001\n", "uid = 1999\n", 1))
    t0 = time.time()
    net.a.run(IDGATE, "reload", "-c", a.config)
    got = ended(tickers[1001])
    took = time.time() - t0
    print(f"reload reached the draining old process: alice's flow ended {took * 1000:.0f} ms after the command")
    assert got["how"] != "ok" and took < 3, (got, took)
    # A revocation reaches it too: bob's flow.
    t0 = time.time()
    net.a.run(IDGATE, "revoke", "-c", a.config, f"spiffe://{TRUST_DOMAIN}/app/bob")
    got = ended(tickers[1002])
    took = time.time() - t0
    print(f"revocation reached the draining old process: bob's flow ended {took * 1000:.0f} ms after the command")
    assert got["how"] != "ok" and took < 3, (got, took)
