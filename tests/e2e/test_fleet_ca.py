"""Fleet trust: one root (`idgate ca init`), a CA per host under it (`idgate ca issue`) that
may name only that host's addresses, one trust bundle. Three hosts talk to each other through
their own CAs; a host cannot run with an SVID naming another host's address; and the root is
rotated (second root in the bundle, new host CAs, old root retired) by reloads under constant
load without one failed flow."""
import json
import signal
import subprocess
import time

from fleet import ADDRESSES, ca, config, issue
from hosts import SERVER_PORT
from netns import IDGATE


def reload_all(net, daemons):
    for name, d in daemons.items():
        getattr(net, name).run(IDGATE, "reload", "-c", d.config)


def test_three_hosts_with_their_own_cas_and_a_root_rotation_under_load(net):
    root1, root2, bundle = net.tmp / "root1", net.tmp / "root2", net.tmp / "bundle.pem"
    ca("init", "--dir", root1, "--trust-domain", "demo.idgate")
    bundle.write_text((root1 / "ca.pem").read_text())
    net.c.start_workload("digest_server", SERVER_PORT, 1024, net.tmp / "server-c.log")
    net.a.start_workload("digest_server", SERVER_PORT, 1024, net.tmp / "server-a.log")
    daemons = {}
    for name in "abc":
        cfg = config(net, name, issue(net, root1, name, 1), bundle)
        daemons[name] = getattr(net, name).start_idgate(cfg, net.tmp)

    # A host CA may name only its host's addresses: an SVID claiming b's address fails the
    # start-up self-test (the check every peer makes), and the host says why.
    rogue_cfg = config(net, "c", net.tmp / "c-ca1", bundle).replace('[svid]\n', '[svid]\naddresses = ["10.77.0.2"]\n', 1)
    (net.tmp / "rogue.toml").write_text(rogue_cfg)
    rogue = net.c.run(IDGATE, "check", "-c", net.tmp / "rogue.toml", check=False)
    assert rogue.returncode == 1 and b"its CA may not issue for" in rogue.stdout + rogue.stderr, rogue

    # Each connects to the others in turn until SIGUSR1: 100 bytes up, the answer back.
    loads = [net.a.start_workload("load_loop", f"{ADDRESSES['b']},{ADDRESSES['c']}", SERVER_PORT, 5, uid=1001, stdout=subprocess.PIPE, text=True),
             net.c.start_workload("load_loop", f"{ADDRESSES['b']},{ADDRESSES['a']}", SERVER_PORT, 5, uid=1002, stdout=subprocess.PIPE, text=True)]
    time.sleep(1.5)
    # Rotation: the new root joins the bundle; each host moves to a CA under it; the old root goes.
    ca("init", "--dir", root2, "--trust-domain", "demo.idgate")
    bundle.write_text((root1 / "ca.pem").read_text() + (root2 / "ca.pem").read_text())
    reload_all(net, daemons)
    time.sleep(1)
    for name, d in daemons.items():
        old = net.tmp / f"{name}-ca1"
        d.config.write_text(d.config.read_text().replace(str(old), str(issue(net, root2, name, 2))))
        getattr(net, name).run(IDGATE, "reload", "-c", d.config)
        time.sleep(0.5)
    bundle.write_text((root2 / "ca.pem").read_text())
    reload_all(net, daemons)
    time.sleep(1.5)
    for p in loads:
        p.send_signal(signal.SIGUSR1)
    results = [json.loads(p.communicate(timeout=30)[0]) for p in loads]
    assert all(r["failed"] == 0 for r in results) and all(r["ok"] > 50 for r in results), results
    print(f"flows during the rotation: {[r['ok'] for r in results]}, failed: {[r['failed'] for r in results]}")
    for name, d in daemons.items():
        assert "CA and trust bundle replaced" in d.log.read_text(), name
    # Only the new root is trusted now, and new flows still go through: the hosts are on it.
    r = net.a.workload("load_loop", ADDRESSES["b"], SERVER_PORT, 5, "once", uid=1001)
    assert json.loads(r.stdout)["failed"] == 0
    # Decisions on b name callers from both other hosts.
    callers = {d["source_id"] for d in daemons["b"].status()["decisions"] if d["verdict"] == "allowed"}
    assert len(callers) == 2, callers
