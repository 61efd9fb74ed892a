"""The packages under a real systemd: Debian 12 booted with `systemd-nspawn -b` as two hosts,
driven the way an operator drives them. Install (units enabled and started, the sysctl set),
the fleet CA and a first protected flow (the README's walkthrough), status and metrics, the
journal's priorities, reload, restart, an upgrade to a newer build with a flow open (handed
over, not restarted, no conffile prompt on an edited config), a stop after the upgrade (no
SIGKILL, the flow drained then reset), a reboot (guard before the network, idgate after),
`systemctl restart nftables`, a start retried while its address is missing, the admin's
enable/disable choice across upgrade and reinstall, remove, reinstall, purge (nothing
left), an image build (installed in a chroot, started at first boot), and the .rpm's
scriptlets (%systemd_* macros, preset) under the same systemd.

The tests run in order and share the machines (module fixture): each step starts from what
the one before left."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from machine import Machine, Network, say, sh

REPO = Path(__file__).resolve().parents[2]
IDGATE = Path(os.environ.get("IDGATE_BIN", REPO / "target/release/idgate"))
TD = "fleet.test"
PORT = 9000

SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
def serve(c):
    how, n = "eof", 0
    try:
        c.sendall(b"hello\n")
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
        c.sendall(b"got %d\n" % n)
    except OSError as e:
        how = type(e).__name__
    with open(sys.argv[2], "a") as f: f.write(f"{n} {how}\n")
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Connects, sends `seconds` of markers (one every 100 ms), half-closes and reads the answer;
# or with seconds < 0 holds the flow open reading until it ends. Prints how it ended.
CLIENT = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
first, secs, sent, how, rest = s.recv(6), float(sys.argv[3]), 0, "ok", b""
print("connected", flush=True)
try:
    end = time.time() + secs
    while time.time() < end:
        s.sendall(b"MARKER"); sent += 6; time.sleep(0.1)
    if secs >= 0:
        s.shutdown(socket.SHUT_WR)
    while True:
        b = s.recv(4096)
        if not b: break
        rest += b
    how = "eof"
except OSError as e:
    how = type(e).__name__
print(json.dumps({"first": first.decode(), "sent": sent, "answer": rest.decode(), "how": how}), flush=True)
"""


def config(me, peer_ip, extra=""):
    return f"""# edited by the operator
trust_domain = "{TD}"

[ca]
source = "files"
cert = "/etc/idgate/ca/ca.pem"
key = "/etc/idgate/ca/ca-key.pem"
trust_bundle = ["/etc/idgate/fleet-root.pem"]

[trail]
file = "/var/log/idgate/trail.jsonl"

[[workload]]
spiffe_id = "spiffe://{TD}/app/alice"
uid = 1001

[[outbound]]
cidrs = ["{peer_ip}/32"]
ports = [{PORT}]

[[inbound]]
ports = [{PORT}]
allow = ["spiffe://{TD}/app/alice"]
{extra}"""


class Fleet:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="idgate-nspawn-"))
        self.net = None
        self.machines = []
        self.debs, self.rpms = {}, {}
        self.lint = {}

    def close(self):
        for p in self.lint.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for m in self.machines:
            m.destroy()
        if self.net:
            self.net.delete()
        shutil.rmtree(self.tmp, ignore_errors=True)


def build(fleet):
    """Two builds of the same sources, the second a newer version (what an upgrade installs),
    as .deb and .rpm, all four at once."""
    version = re.search(r'^version = "(.*)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
    say(f"building the .deb and .rpm packages of versions {version} and {version}+t2 (debhelper, rpmbuild)")
    builds = []
    for tag, v in (("old", version), ("new", f"{version}+t2")):
        out = fleet.tmp / tag
        env = dict(os.environ, IDGATE_BIN=str(IDGATE), IDGATE_PKG_OUT=str(out), IDGATE_DEB_VERSION=v, IDGATE_RPM_VERSION=v.replace("+", "."))
        for script in ("packaging/deb/build.sh", "packaging/rpm/build.sh"):
            builds.append((script, subprocess.Popen(["bash", str(REPO / script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for script, p in builds:
        log = p.communicate()[0]
        assert p.returncode == 0, f"{script}: {log}"
    for tag in ("old", "new"):
        fleet.debs[tag] = next((fleet.tmp / tag).glob("idgate_*.deb"))
        fleet.rpms[tag] = next((fleet.tmp / tag).glob("idgate-[0-9]*.rpm"))


@pytest.fixture(scope="module")
def fleet():
    f = Fleet()
    try:
        build(f)
        debs = sorted(f.debs["old"].parent.glob("*.deb"))
        rpms = sorted(f.rpms["old"].parent.glob("*.rpm"))
        f.lint = {
            "lintian": subprocess.Popen(["lintian", "--pedantic", "--fail-on", "error,warning,pedantic", *map(str, debs)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            "rpmlint": subprocess.Popen(["rpmlint", "-c", str(REPO / "packaging/rpm/rpmlint.toml"), "-r", str(REPO / "packaging/rpm/idgate.rpmlintrc"),
                                         *map(str, rpms)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        }
        say("root file system (tests/nspawn/rootfs.sh: debootstrap once, then cached)")
        lower = sh("bash", REPO / "tests/nspawn/rootfs.sh").stdout.strip()
        f.net = Network(os.environ.get("IDGATE_NETNS_PREFIX", "idgn"))
        for i, name in enumerate("ab", start=1):
            f.machines.append(Machine(name, f.net.names[name], lower, f.tmp, f"{Network.SUBNET}.{i}"))
        say("booting two Debian 12 machines under systemd-nspawn -b")
        for m in f.machines:
            m.boot(wait=False)
        for m in f.machines:
            m.wait_booted()
        for m in f.machines:
            for tag in ("old", "new"):
                shutil.copy(f.debs[tag], m.root / "root" / f"{tag}.deb")
                shutil.copy(f.rpms[tag], m.root / "root" / f"{tag}.rpm")
            m.put("/srv/server.py", SERVER)
            m.put("/srv/client.py", CLIENT)
        yield f
    finally:
        f.close()


def flow(a, b, seconds=0.5):
    """Alice's flow from host a to host b's service: what the client saw."""
    r = a.run(f"setpriv --reuid=1001 --regid=1001 --clear-groups python3 /srv/client.py {b.ip} {PORT} {seconds}", timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def held_flow(a, b, seconds):
    p = a.popen(f"setpriv --reuid=1001 --regid=1001 --clear-groups python3 /srv/client.py {b.ip} {PORT} {seconds}", stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == "connected"
    return p


def main_and_proxy(m):
    main = int(m.show("idgate", "MainPID")["MainPID"])
    return main, m.status()["pid"]


def test_install_enables_and_starts_both_units_and_sets_the_sysctl(fleet):
    for m in fleet.machines:
        m.run("sysctl -qw net.ipv4.tcp_migrate_req=0")
        say(f"{m.name}: apt-get install ./idgate.deb")
        m.run("apt-get install -y -q /root/old.deb")
        assert m.out("systemctl is-enabled idgate.service idgate-guard.service").split() == ["enabled", "enabled"]
        assert m.out("systemctl is-active idgate.service idgate-guard.service").split() == ["active", "active"]
        assert m.out("sysctl -n net.ipv4.tcp_migrate_req") == "1"
        # The shipped config is the minimal one; the annotated example is in the docs.
        assert "trust_domain" in m.out("cat /etc/idgate/idgate.toml") and "[[outbound]]" not in m.out("cat /etc/idgate/idgate.toml")
        m.run("test -f /usr/share/doc/idgate/examples/idgate.toml*")
        assert "idgate.toml" in m.out("man -w idgate.toml 2>/dev/null || ls /usr/share/man/man5/")
    a = fleet.machines[0]
    for unit, most in (("idgate.service", 4.0), ("idgate-guard.service", 4.0)):
        score = a.out(f"systemd-analyze security {unit} --no-pager | tail -1")
        say(f"systemd-analyze security {unit}: {score}")
        exposure = float(re.search(r"exposure level .*?: ([0-9.]+)", score).group(1))
        assert exposure <= most, score


def test_fleet_ca_and_a_first_protected_flow(fleet):
    """The walkthrough: `ca init` once, `ca issue` per host, the config, a flow."""
    a, b = fleet.machines
    say("ca init on host a (the fleet root), ca issue for each host, configs, reload")
    a.run(f"idgate ca init --dir /root/fleet --trust-domain {TD}")
    for m in (a, b):
        a.run(f"idgate ca issue --dir /root/fleet --host {m.name} --address {m.ip} --grant spiffe://{TD}/app/alice --out /root/issued-{m.name}")
        for f, mode in (("ca.pem", 0o644), ("ca-key.pem", 0o600)):
            m.put(f"/etc/idgate/ca/{f}", (a.root / f"root/issued-{m.name}/{f}").read_text(), mode)
        m.put("/etc/idgate/fleet-root.pem", (a.root / "root/fleet/ca.pem").read_text())
        m.put("/etc/idgate/idgate.toml", config(m.name, (b if m is a else a).ip))
        assert "ok" in m.out("idgate check")
        # The trust domain differs from the shipped one: that takes a restart (later edits reload).
        m.run("systemctl restart idgate")
    b.popen(f"python3 /srv/server.py {PORT} /root/server.log", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    got = flow(a, b)
    assert got["first"] == "hello\n" and got["answer"] == "got 30\n" and got["how"] == "eof", got
    trail = [json.loads(line) for line in b.out("cat /var/log/idgate/trail.jsonl").splitlines()]
    assert any(t.get("spiffe_id") == f"spiffe://{TD}/app/alice" for t in trail), trail
    say("first protected flow: a -> b as spiffe://fleet.test/app/alice, in b's trail file")


def test_status_and_metrics_show_the_ca_and_bundle_expiry(fleet):
    a = fleet.machines[0]
    text = a.out("idgate status")
    print(text.splitlines()[:8])
    assert re.search(r"CA expires in 8[89]d", text), text
    assert re.search(r"trust bundle: 1 certificate\(s\), the first expires in \d+d", text), text
    metrics = a.out("python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/metrics').read().decode())\"")
    ca = re.search(r"^idgate_ca_expiry_timestamp_seconds (\d+)", metrics, re.M)
    bundle = re.search(r"^idgate_trust_bundle_expiry_timestamp_seconds (\d+)", metrics, re.M)
    assert ca and bundle and int(ca.group(1)) > time.time() + 88 * 86400 and int(bundle.group(1)) >= int(ca.group(1)), metrics


def test_the_journal_gets_priorities_and_one_timestamp(fleet):
    a = fleet.machines[0]
    # A refused reload logs an error.
    good = a.out("cat /etc/idgate/idgate.toml")
    a.put("/etc/idgate/idgate.toml", good + "\nnot valid [\n")
    assert a.run("systemctl reload idgate", check=False).returncode != 0
    a.put("/etc/idgate/idgate.toml", good)
    time.sleep(0.5)
    errors = a.journal("idgate", "-p", "err", "-o", "cat")
    say(f"journalctl -p err -u idgate: {errors.splitlines()[-1:]}")
    assert "reload" in errors and "ERROR" in errors, errors
    infos = a.journal("idgate", "-p", "info", "-o", "cat").splitlines()
    ready = [line for line in infos if "idgate ready" in line]
    # No timestamp of idgate's own before the level: the journal stamps each entry.
    assert ready and all(line.lstrip().startswith("INFO") for line in ready), ready
    assert not a.journal("idgate", "-p", "err", "-o", "cat", "--grep", "idgate ready")


def test_reload_and_restart(fleet):
    a, b = fleet.machines
    a.run("systemctl reload idgate")
    assert flow(a, b)["how"] == "eof"
    before = main_and_proxy(a)
    a.run("systemctl restart idgate")
    assert main_and_proxy(a) != before
    assert flow(a, b)["how"] == "eof"
    assert "SIGKILL" not in a.journal("idgate")


def test_an_upgrade_hands_over_without_a_restart_or_a_prompt(fleet):
    """The admin's choice stays: b's idgate was disabled and stays so; a's stays enabled."""
    a, b = fleet.machines
    b.run("systemctl disable idgate.service")
    ticker = held_flow(a, b, 6)
    old = {m.name: main_and_proxy(m) for m in fleet.machines}
    for m in fleet.machines:
        say(f"{m.name}: apt-get install ./idgate (newer build) with an edited config, no terminal")
        t0 = time.time()
        r = m.run("apt-get install -y -q /root/new.deb < /dev/null", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "edited by the operator" in m.out("cat /etc/idgate/idgate.toml"), "the edited config was replaced"
        main, proxy = main_and_proxy(m)
        say(f"{m.name}: upgraded in {time.time() - t0:.1f} s: main process {old[m.name][0]} -> {main}, proxy {old[m.name][1]} -> {proxy}")
        assert main == old[m.name][0], "the service's main process must stay the same"
        assert proxy != old[m.name][1], "the new binary's proxy must serve"
        assert "+t2" in m.out("dpkg-query -W -f '${Version}' idgate")
    got = json.loads(ticker.communicate(timeout=30)[0].splitlines()[-1])
    assert got["how"] == "eof" and got["answer"] == f"got {got['sent']}\n", got
    assert b.out("systemctl is-enabled idgate.service", check=False) == "disabled"
    assert a.out("systemctl is-enabled idgate.service") == "enabled"
    for m in fleet.machines:
        assert "not our child" not in m.journal("idgate")
    assert flow(a, b)["how"] == "eof"


def test_a_stop_after_the_upgrade_drains_and_resets_without_sigkill(fleet):
    a, b = fleet.machines
    finishing = held_flow(a, b, 2)      # ends within the drain
    holding = held_flow(a, b, -1)       # never ends by itself
    time.sleep(0.3)
    t0 = time.time()
    a.run("systemctl stop idgate")
    took = time.time() - t0
    done = json.loads(finishing.communicate(timeout=30)[0].splitlines()[-1])
    held = json.loads(holding.communicate(timeout=30)[0].splitlines()[-1])
    journal = a.journal("idgate")
    props = a.show("idgate", "Result", "ExecMainStatus", "ExecMainCode")
    say(f"a: stop after upgrade took {took:.1f} s, {props}; finishing flow {done['how']}, held flow {held['how']}")
    assert props["Result"] == "success" and props["ExecMainStatus"] == "0", (props, journal[-2000:])
    assert "SIGKILL" not in journal and "Killing process" not in journal, journal[-2000:]
    assert done["how"] == "eof" and done["answer"] == f"got {done['sent']}\n", done
    assert held["how"] == "ConnectionResetError", held
    assert 4 < took < 10, took
    a.run("systemctl start idgate")


def test_a_reboot_orders_the_guard_before_the_network_and_idgate_after(fleet):
    a, b = fleet.machines
    a.reboot()
    t = {u: int(a.show(u, "ActiveEnterTimestampMonotonic")["ActiveEnterTimestampMonotonic"])
         for u in ("idgate-guard.service", "network-pre.target", "network-online.target", "idgate.service")}
    say(f"a: after reboot, active since (monotonic us): {t}")
    # (network-online.target has nothing to wait for in this machine: no network manager.)
    assert 0 < t["idgate-guard.service"] <= t["network-pre.target"], t
    assert t["idgate-guard.service"] <= t["idgate.service"] and t["network-online.target"] <= t["idgate.service"], t
    guard = a.show("idgate-guard.service", "After", "Before")
    assert "nftables.service" in guard["After"] and "network-pre.target" in guard["Before"], guard
    assert "inet idgate" in a.out("nft list tables")
    assert flow(a, b)["how"] == "eof"


def test_restarting_nftables_with_debians_flush_ruleset(fleet):
    """Debian's /etc/nftables.conf starts with `flush ruleset`: a flow held open across
    `systemctl restart nftables` goes on, the table idgate holds is untouched, the one that
    outlives it is back at once, and the log names who removed it."""
    a, b = fleet.machines
    held = held_flow(a, b, 3)
    a.run("systemctl restart nftables")
    tables = a.out("nft list tables").splitlines()
    say(f"a: right after systemctl restart nftables: {tables}")
    assert "table inet idgate_owned" in tables, "the flush removed the table idgate holds"
    deadline = time.time() + 2
    while "table inet idgate" not in a.out("nft list tables").splitlines():
        assert time.time() < deadline, "idgate did not put its table back"
        time.sleep(0.05)
    out, _ = held.communicate(timeout=60)
    assert json.loads(out.splitlines()[-1])["how"] == "eof", out
    assert flow(a, b)["how"] == "eof"
    assert "was deleted by pid" in a.journal("idgate"), "the log must name the process that removed the table"


def test_a_start_that_fails_for_an_address_not_up_yet_is_retried_until_it_comes(fleet):
    a = fleet.machines[0]
    good = a.out("cat /etc/idgate/idgate.toml")
    # The host SVID names only the address its CA was issued for, whatever else comes up.
    a.put("/etc/idgate/idgate.toml", good + '\n[listen]\ninbound = "10.78.0.99:15008"\n\n[svid]\naddresses = ["10.78.0.1"]\n')
    a.run("systemctl restart idgate", check=False)
    deadline = time.time() + 40
    while int(a.show("idgate", "NRestarts")["NRestarts"]) < 4:
        assert time.time() < deadline, a.show("idgate", "ActiveState", "NRestarts", "Result")
        assert a.show("idgate", "ActiveState")["ActiveState"] != "failed", a.journal("idgate")[-2000:]
        time.sleep(1)
    say(f"a: address missing: {a.show('idgate', 'ActiveState', 'NRestarts')}; adding it")
    a.run("ip addr add 10.78.0.99/32 dev lo")
    deadline = time.time() + 15
    while a.show("idgate", "ActiveState")["ActiveState"] != "active":
        assert time.time() < deadline, a.journal("idgate")[-2000:]
        time.sleep(0.5)
    a.put("/etc/idgate/idgate.toml", good)
    a.run("ip addr del 10.78.0.99/32 dev lo && systemctl restart idgate")


def test_check_catches_what_run_would_trip_over_in_the_sandbox(fleet):
    """A trail file outside the unit's writable directories: the directory exists, so a check
    in a shell passes, but the unit's sandbox (ProtectSystem=strict) makes it read-only, and
    the unit's own check (ExecStartPre) says so, before `run` would."""
    a = fleet.machines[0]
    good = a.out("cat /etc/idgate/idgate.toml")
    a.run("mkdir -p /var/log/idgate-trail")
    a.put("/etc/idgate/idgate.toml", good.replace("/var/log/idgate/trail.jsonl", "/var/log/idgate-trail/trail.jsonl"))
    assert "ok" in a.out("idgate check")
    r = a.run("systemctl restart idgate", check=False)
    log = a.journal("idgate", "-o", "cat", "-n", "30")
    say(f"a: trail file in /var/log/idgate-trail: {[line for line in log.splitlines() if 'trail file' in line][-1:]}")
    assert r.returncode != 0 and "idgate.toml:11:8: trail file: /var/log/idgate-trail/trail.jsonl: read-only file system" in log, log
    assert "Control process exited" in log, log  # the check, not run
    a.put("/etc/idgate/idgate.toml", good)
    a.run("rmdir /var/log/idgate-trail && systemctl restart idgate")


def test_remove_reinstall_keeps_the_choice_and_purge_leaves_nothing(fleet):
    a, b = fleet.machines
    for m in fleet.machines:
        say(f"{m.name}: apt-get remove idgate")
        m.run("apt-get remove -y -q idgate")
        assert m.out("systemctl is-active idgate.service idgate-guard.service", check=False).split() == ["inactive", "inactive"]
        assert "inet idgate" not in m.out("nft list tables")
        assert "edited by the operator" in m.out("cat /etc/idgate/idgate.toml")
        say(f"{m.name}: apt-get install ./idgate again")
        m.run("apt-get install -y -q /root/new.deb < /dev/null")
    assert a.out("systemctl is-enabled idgate.service") == "enabled"
    assert b.out("systemctl is-enabled idgate.service", check=False) == "disabled", "reinstall must keep the admin's choice"
    assert a.out("systemctl is-active idgate.service") == "active"
    a.run(f"idgate revoke spiffe://{TD}/app/mallory")  # the deny list, /etc/idgate/revoked
    for m in fleet.machines:
        say(f"{m.name}: apt-get purge idgate")
        m.run("apt-get purge -y -q idgate")
        left = m.out("ls -d /etc/idgate/* /var/lib/idgate /var/log/idgate /lib/systemd/system/idgate* /etc/logrotate.d/idgate "
                     "/etc/systemd/system/*/idgate* /var/lib/systemd/deb-systemd-helper-enabled/*idgate* 2>/dev/null", check=False)
        # What the operator put there stays theirs: the host CA and the fleet's root.
        assert left.split() == ["/etc/idgate/ca", "/etc/idgate/fleet-root.pem"], left
        assert "inet idgate" not in m.out("nft list tables")
        assert "idgate" not in m.out("systemctl list-unit-files --no-legend 'idgate*'", check=False)
        # (systemd may still remember a unit it ran as "not-found", until it forgets it.)
        assert " loaded " not in m.out("systemctl list-units --all --no-legend 'idgate*'")


def test_an_image_built_in_a_chroot_starts_idgate_at_first_boot(fleet):
    b = fleet.machines[1]
    b.poweroff()
    say("b: installing the .deb in its root with chroot (an image build: no systemd running)")
    r = sh("chroot", b.root, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive",
           "apt-get", "install", "-y", "-q", "/root/old.deb", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (b.root / "etc/systemd/system/multi-user.target.wants/idgate.service").is_symlink()
    assert (b.root / "etc/systemd/system/sysinit.target.wants/idgate-guard.service").is_symlink()
    b.boot()
    assert b.out("systemctl is-active idgate.service idgate-guard.service").split() == ["active", "active"]
    assert b.out("sysctl -n net.ipv4.tcp_migrate_req") == "1"


def test_the_rpm_scriptlets_under_systemd(fleet):
    """rpm (with its own database) in the Debian machine: %systemd_post enables by the preset,
    an upgrade hands over, removal disables, stops and cleans up. Not a Fedora root: none can
    be had here (no Fedora archive is reachable), so Fedora's systemd-rpm-macros are not
    the ones expanded unless the build host has them (see packaging/rpm/build.sh)."""
    a = fleet.machines[0]
    say("a: rpm -i idgate.rpm (scriptlets run under the machine's systemd)")
    a.run("rpm -i --nodeps /root/old.rpm")
    assert a.out("systemctl is-enabled idgate.service idgate-guard.service").split() == ["enabled", "enabled"]
    a.run("systemctl start idgate")
    before = main_and_proxy(a)
    a.run("rpm -U --nodeps /root/new.rpm")
    after = main_and_proxy(a)
    say(f"a: rpm -U: main process {before[0]} -> {after[0]}, proxy {before[1]} -> {after[1]}")
    assert after[0] == before[0] and after[1] != before[1]
    a.run("rpm -e --nodeps idgate")
    assert a.out("systemctl is-active idgate.service idgate-guard.service", check=False).split() == ["inactive", "inactive"]
    assert a.out("systemctl is-enabled idgate.service", check=False) != "enabled"
    assert "inet idgate" not in a.out("nft list tables")
    assert a.out("ls -d /var/lib/idgate /var/log/idgate 2>/dev/null", check=False) == ""


def test_lintian_and_rpmlint(fleet):
    """lintian and rpmlint (run in the background since the packages were built) find nothing
    that is not overridden with a reason (packaging/debian/*.lintian-overrides,
    packaging/rpm/idgate.rpmlintrc)."""
    lint = fleet.lint["lintian"].communicate()[0]
    rl = fleet.lint["rpmlint"].communicate()[0]
    say("lintian and rpmlint: " + " / ".join(out.strip().splitlines()[-1] if out.strip() else "nothing" for out in (lint, rl)))
    assert fleet.lint["lintian"].returncode == 0, lint
    assert re.search(r"\b0 errors, 0 warnings", rl), rl
