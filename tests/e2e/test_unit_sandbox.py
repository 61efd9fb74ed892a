"""The unit's sandbox lets idgate do its work: every system call idgate makes (both hosts'
daemons under flows, a reload and a revocation, and the `check`, `reload` and `revoke` commands
the unit runs) is allowed by the unit's SystemCallFilter lines, as systemd expands them, and
every socket it opens is of a family RestrictAddressFamilies allows. A call outside the filter
would fail with EPERM on a real host; this test fails first."""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE, Idgate
from test_tunnel import client

UNIT = Path(__file__).resolve().parents[2] / "packaging/systemd/idgate.service"


def groups():
    """systemd's syscall groups, each a list of syscalls and @groups."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    found, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = found.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return found


def expand(names, table):
    out = set()
    for n in names:
        out |= expand(table[n], table) if n.startswith("@") else {n}
    return out


def unit_filter():
    table = groups()
    # As systemd merges the lines: the first (an allow list) sets the default, then each line in
    # order removes (~) calls from the allowed set or adds them back.
    allowed = set()
    for line in UNIT.read_text().splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1]
            if value.startswith("~"):
                allowed -= expand(value[1:].split(), table)
            else:
                allowed |= expand(value.split(), table)
    families = next(line.split("=", 1)[1].split() for line in UNIT.read_text().splitlines() if line.startswith("RestrictAddressFamilies="))
    return allowed, set(families)


def traced(host, trace, *args, env=None, log=None):
    return host.popen("strace", "-f", "-qq", "-o", trace, IDGATE, *args, env=env, stdout=log, stderr=log)


def calls(trace):
    names, families = set(), set()
    for line in Path(trace).read_text().splitlines():
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[ (]", line)
        if m and "resumed>" not in line.split("(", 1)[0]:
            names.add(m.group(1))
        f = re.search(r"\bsocket\((AF_[A-Z0-9]+)", line)
        if f:
            families.add(f.group(1))
    return names, families


def test_every_call_idgate_makes_is_allowed_by_the_units_sandbox(net):
    allowed, families_allowed = unit_filter()
    assert "connect" in allowed and "mount" not in allowed and "setuid" not in allowed  # the parsing works
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    daemons = []
    for name, host in (("a", net.a), ("b", net.b)):
        cfg = net.tmp / f"{name}.toml"
        cfg.write_text(host_config(f"host-{name}", net.tmp / f"state-{name}", net.ca_dir, extra=f'[revocation]\nfile = "{net.tmp}/revoked-{name}"\n'))
        check = net.tmp / f"check-{name}.trace"
        traced(host, check, "check", "-c", cfg).wait(timeout=60)
        log = open(net.tmp / f"{name}.log", "w")
        proc = traced(host, net.tmp / f"run-{name}.trace", "run", "-c", cfg, env=env, log=log)
        d = Idgate(host, proc, net.tmp / f"{name}.log", cfg)
        d.wait_ready(timeout=60)
        daemons.append((d, check))
    a, b = daemons[0][0], daemons[1][0]
    for uid in (1001, 1002, 1003):
        client(net, uid, n=200_000, check=False)
    extra = []
    for d, name in ((a, "a"), (b, "b")):
        for cmd in (["reload"], ["revoke", f"spiffe://{TRUST_DOMAIN}/app/bob"], ["status", "--json"], ["flows"]):
            trace = net.tmp / f"{name}-{cmd[0]}.trace"
            traced(d.host, trace, *cmd, "-c", d.config).wait(timeout=30)
            extra.append(trace)
    time.sleep(0.5)
    for d, _ in daemons:
        # SIGTERM to idgate itself (strace's child), which then exits and strace with it.
        for child in Path(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)
        d.proc.wait(timeout=30)
    used, families = set(), set()
    for trace in [*(net.tmp / f"run-{n}.trace" for n in "ab"), *(c for _, c in daemons), *extra]:
        n, f = calls(trace)
        used |= n
        families |= f
    assert len(used) > 40, sorted(used)
    print(f"{len(used)} distinct system calls, all in the unit's filter: {' '.join(sorted(used))}")
    # strace itself execs the program: execve is the unit's, not idgate's.
    assert sorted(used - allowed - {"execve"}) == [], f"calls the unit's SystemCallFilter would refuse: {sorted(used - allowed)}"
    # `idgate upgrade` (not traced here: its successor outlives the trace) forks, execs, waits
    # for the child and renames the control socket.
    assert {"clone3", "vfork", "execve", "wait4", "rename"} <= allowed
    assert families <= families_allowed, f"socket families the unit refuses: {sorted(families - families_allowed)}"
